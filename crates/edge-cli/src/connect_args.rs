//! Flags shared by every command that connects to the cloud: which servers, the token they
//! expect and where their certificates are pinned.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use runtime::{Servers, UserDir};
use transport::{ClientConfig, ServerTrust, Token};

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
        let addresses = server_list(&self.connect)?;
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
        Ok(Servers::new(
            addresses
                .into_iter()
                .map(|server| {
                    ClientConfig::new(
                        server,
                        ServerTrust::KnownServers(known_servers.clone()),
                        token.clone(),
                    )
                })
                .collect(),
        ))
    }
}

/// The servers of a `--connect` value: `HOST:PORT` entries separated by commas (spaces
/// around them ignored).
fn server_list(text: &str) -> Result<Vec<String>> {
    let servers: Vec<String> = text.split(',').map(|s| s.trim().to_string()).collect();
    if let Some(bad) = servers.iter().find(|s| {
        s.rsplit_once(':')
            .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
    }) {
        bail!(
            "--connect {text}: `{bad}` is not HOST:PORT; give one server as HOST:PORT, or several separated by commas"
        );
    }
    Ok(servers)
}

/// `known_servers` in cutpoint's configuration directory ([`UserDir::Config`]).
fn default_known_servers() -> Result<PathBuf> {
    let dir = UserDir::Config
        .path()
        .context("give --known-servers FILE")?;
    Ok(dir.join("known_servers"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_takes_one_server_or_several() {
        assert_eq!(server_list("a:1").expect("one"), ["a:1"]);
        assert_eq!(
            server_list("a:1, 10.0.0.2:4433,[::1]:9").expect("three"),
            ["a:1", "10.0.0.2:4433", "[::1]:9"]
        );
        for bad in ["", "a:1,", "a", "a:port", ":1", "a:1,,b:2"] {
            let err = server_list(bad).expect_err(bad).to_string();
            assert!(err.contains("HOST:PORT"), "{err}");
        }
    }
}
