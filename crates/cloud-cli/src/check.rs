//! `cutpoint-cloud check`: connects to a server as an edge would, authenticates and asks for
//! its status; the readiness probe of a pool member.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use runtime::StateDir;
use transport::{Client, ClientConfig, Fingerprint, ServerIdentity, ServerTrust, Token};

/// Check that a cloud server is ready: connect, authenticate and ask for its status.
///
/// Exits 0 and prints the server's load when it answers; exits 1 and says why when it does
/// not (unreachable, another certificate, the token refused, no answer in time). Reads the
/// same identity and token files as `serve`, so in a container it needs the flags `serve` was
/// given: it is meant as the readiness probe of a pool member.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The server, as HOST:PORT.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:4433")]
    connect: String,
    /// File holding the server's token [default: <state-dir>/token].
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// The certificate fingerprint the server must present (`sha256:...`, as `serve` prints
    /// it) [default: the fingerprint of the identity `serve` uses: --cert, or
    /// <state-dir>/identity].
    #[arg(long, value_name = "FINGERPRINT", conflicts_with_all = ["cert", "key"])]
    fingerprint: Option<String>,
    /// The server's TLS certificate chain (PEM), with --key, as given to `serve`.
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// The server's TLS private key (PEM), with --cert, as given to `serve`.
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// Where `serve` keeps its certificate and token [default: $XDG_DATA_HOME/cutpoint, or
    /// ~/.local/share/cutpoint].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Seconds allowed for connecting and for the status answer.
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    timeout: u64,
}

/// Runs the check; returns the line that says the server is ready.
pub fn check(args: &CheckArgs) -> Result<String> {
    if args.timeout == 0 {
        bail!("--timeout must be at least 1 second");
    }
    let state_dir = || StateDir::new(args.state_dir.clone()).context("give --state-dir DIR");
    let fingerprint = match (&args.fingerprint, &args.cert, &args.key) {
        (Some(text), _, _) => Fingerprint::parse(text)?,
        (None, Some(cert), Some(key)) => ServerIdentity::from_pem_files(cert, key)?.fingerprint(),
        _ => {
            let dir = state_dir()?.identity();
            if !dir.join("cert.pem").exists() {
                bail!(
                    "no server identity in {}; give the flags `serve` was given (--state-dir, or --cert and --key), or --fingerprint",
                    dir.display()
                );
            }
            ServerIdentity::load_or_create(&dir)?.fingerprint()
        }
    };
    let token_file = match &args.token_file {
        Some(path) => path.clone(),
        None => state_dir()?.token_file(),
    };
    let token = Token::from_file(&token_file)?;
    let mut config = ClientConfig::new(
        args.connect.clone(),
        ServerTrust::Fingerprint(fingerprint),
        token,
    );
    let timeout = Duration::from_secs(args.timeout);
    config.connect_timeout = timeout;
    config.client_name = "cutpoint-cloud check".into();
    runtime::async_runtime()?.block_on(async {
        let client = Client::connect(config)
            .await
            .with_context(|| format!("{} is not ready", args.connect))?;
        let state = tokio::time::timeout(timeout, client.status())
            .await
            .with_context(|| format!("{} did not answer its status within {timeout:?}", args.connect))?
            .with_context(|| format!("{} did not answer its status", args.connect))?;
        let models = client.welcome().models.len();
        client.close();
        Ok(format!(
            "ready: {} offers {models} model(s); {} request(s) in the system, expected wait {:.0} ms\n",
            args.connect, state.in_system, state.wait_ms
        ))
    })
}
