//! [`LocalCloud`]: a [`CloudServer`] on loopback QUIC inside this process, for the demo, the
//! examples and tests, with a fresh identity and token and nothing written to disk.

use std::net::SocketAddr;
use std::sync::Arc;

use models::Net;
use transport::{
    ClientConfig, Fingerprint, Server, ServerCloser, ServerConfig, ServerIdentity, ServerTrust,
    Token,
};

use crate::cloud::{CloudConfig, CloudServer};
use crate::error::RuntimeError;

/// A cloud server running on a free loopback port of this process.
///
/// It serves the zoo plus the networks given to [`LocalCloud::start`]. Clients pin its
/// certificate by fingerprint ([`LocalCloud::client_config`]). Stop it with
/// [`LocalCloud::stop`]; dropping it leaves the server running until the async runtime ends.
#[derive(Debug)]
pub struct LocalCloud {
    addr: SocketAddr,
    fingerprint: Fingerprint,
    token: Token,
    server: Arc<CloudServer>,
    closer: ServerCloser,
    task: tokio::task::JoinHandle<()>,
}

impl LocalCloud {
    /// Starts a server with `config`, serving the zoo and `nets`. Must be called inside a
    /// Tokio runtime.
    pub fn start(config: CloudConfig, nets: &[Net]) -> Result<LocalCloud, RuntimeError> {
        let start_error = |reason: String| RuntimeError::LocalCloud { reason };
        let identity = ServerIdentity::self_signed().map_err(|e| start_error(e.to_string()))?;
        let token = Token::generate().map_err(|e| start_error(e.to_string()))?;
        let mut cloud = CloudServer::new(config)?;
        for net in nets {
            cloud.register(net.clone());
        }
        let server = Arc::new(cloud);
        let listen = SocketAddr::from(([127, 0, 0, 1], 0));
        let bound = Server::bind(
            ServerConfig::new(listen, identity, token.clone()),
            server.clone(),
        )
        .map_err(|e| start_error(e.to_string()))?;
        let addr = bound
            .local_addr()
            .map_err(|e| start_error(format!("no local address: {e}")))?;
        Ok(LocalCloud {
            addr,
            fingerprint: bound.fingerprint(),
            token,
            server,
            closer: bound.closer(),
            task: tokio::spawn(bound.run()),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The SHA-256 fingerprint of its certificate.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The token clients must present.
    pub fn token(&self) -> &Token {
        &self.token
    }

    /// The cloud server itself (queue statistics, preloading).
    pub fn server(&self) -> &Arc<CloudServer> {
        &self.server
    }

    /// Client settings that reach this server: its address, its pinned fingerprint and its
    /// token, with the transport's defaults for everything else.
    pub fn client_config(&self) -> ClientConfig {
        ClientConfig::new(
            self.addr.to_string(),
            ServerTrust::Fingerprint(self.fingerprint),
            self.token.clone(),
        )
    }

    /// Stops the server and waits until it has wound down.
    pub async fn stop(self) {
        self.closer.close();
        // The task only ends by returning; a join error means it panicked, which the server's
        // own logs have reported.
        let _ = self.task.await;
    }
}
