//! Flags shared by every command that connects to a cloud server: where it is, the token it
//! expects and where its certificate is pinned.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use runtime::UserDir;
use transport::{ClientConfig, ServerTrust, Token};

/// The environment variable naming the token file when --token-file is not given.
pub const TOKEN_FILE_ENV: &str = "CUTPOINT_TOKEN_FILE";

/// Which cloud server, and how to authenticate to it and trust it.
#[derive(Args, Debug)]
pub struct ConnectArgs {
    /// The cloud server, as HOST:PORT (`cutpoint-cloud serve` listens on UDP port 4433).
    #[arg(long, value_name = "HOST:PORT")]
    connect: String,
    /// File holding the server's token (`cutpoint-cloud serve` prints its path at start-up)
    /// [default: the file named by $CUTPOINT_TOKEN_FILE].
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// File of pinned server certificates: the first connection to a server pins its
    /// fingerprint there, later ones must match [default: $XDG_CONFIG_HOME/cutpoint/known_servers,
    /// or ~/.config/cutpoint/known_servers].
    #[arg(long, value_name = "FILE")]
    known_servers: Option<PathBuf>,
}

impl ConnectArgs {
    /// `HOST:PORT` of the server.
    pub fn server(&self) -> &str {
        &self.connect
    }

    /// The client settings: the server, trust on first use through the known-servers file, and
    /// the token.
    pub fn client_config(&self) -> Result<ClientConfig> {
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
            None => default_known_servers()?,
        };
        Ok(ClientConfig::new(
            self.connect.clone(),
            ServerTrust::KnownServers(known_servers),
            token,
        ))
    }
}

/// `known_servers` in cutpoint's configuration directory ([`UserDir::Config`]).
fn default_known_servers() -> Result<PathBuf> {
    let dir = UserDir::Config
        .path()
        .context("give --known-servers FILE")?;
    Ok(dir.join("known_servers"))
}
