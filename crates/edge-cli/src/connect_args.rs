//! Flags shared by every command that connects to the cloud: which servers, the token they
//! expect and where their certificates are pinned.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use runtime::{Servers, default_known_servers};
use transport::Token;

/// The environment variable naming the token file when --token-file is not given.
pub const TOKEN_FILE_ENV: &str = "CUTPOINT_TOKEN_FILE";

/// Which cloud servers, and how to authenticate to them and trust them.
#[derive(Args, Debug)]
pub struct ConnectArgs {
    /// The cloud server as HOST:PORT (`cutpoint-cloud serve` listens on UDP port 4433), or
    /// several separated by commas. A host name stands for every address it resolves to (a
    /// pool behind one DNS name), looked up again every 30 s while the command runs, sooner
    /// when all its servers are down; each request goes to the server that plans cheapest,
    /// and to the next when one fails.
    #[arg(long, value_name = "HOST:PORT[,HOST:PORT...]")]
    connect: String,
    /// File holding the servers' token (`cutpoint-cloud serve` prints its path at start-up)
    /// [default: the file named by $CUTPOINT_TOKEN_FILE].
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// File of pinned server certificates: the first connection to a server pins its
    /// fingerprint there under the HOST:PORT given, later ones must match [default:
    /// $XDG_CONFIG_HOME/cutpoint/known_servers, or ~/.config/cutpoint/known_servers].
    #[arg(long, value_name = "FILE")]
    known_servers: Option<PathBuf>,
}

impl ConnectArgs {
    /// The servers as given (`HOST:PORT`, or several separated by commas).
    pub fn server(&self) -> &str {
        &self.connect
    }

    /// The client settings of every server: trust on first use through the known-servers
    /// file, and the token.
    pub fn client_config(&self) -> Result<Servers> {
        let servers = Servers::parse_list(&self.connect)
            .with_context(|| format!("--connect {}", self.connect))?;
        let token_file = match &self.token_file {
            Some(path) => path.clone(),
            None => match std::env::var_os(TOKEN_FILE_ENV).filter(|v| !v.is_empty()) {
                Some(path) => PathBuf::from(path),
                None => bail!(
                    "no token for {}: give --token-file FILE or set {TOKEN_FILE_ENV}; `cutpoint-cloud serve` prints the path of its token file at start-up, copy that file to this machine",
                    self.connect
                ),
            },
        };
        let token = Token::from_file(&token_file)?;
        let known_servers = match &self.known_servers {
            Some(path) => path.clone(),
            None => default_known_servers().context("give --known-servers FILE")?,
        };
        Ok(Servers::pinned(servers, &token, &known_servers))
    }
}
