//! The cloud side in a few lines: serve the model zoo over QUIC until Ctrl-C.
//!
//! ```sh
//! cargo run --release --example serve -- 127.0.0.1:4433 /tmp/cutpoint-example
//! ```
//!
//! The directory keeps the server's certificate and the token edges must present (`DIR/token`).

use std::sync::Arc;

use runtime::{CloudConfig, CloudServer};
use transport::{Server, ServerConfig, ServerIdentity, Token};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let listen = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:4433".into())
        .parse()?;
    let dir = std::path::PathBuf::from(args.next().unwrap_or_else(|| "cutpoint-example".into()));

    let identity = ServerIdentity::load_or_create(&dir)?;
    let token = Token::load_or_create(&dir.join("token"))?;
    // Zoo models load on first use, with the same seeded weights as the edge's by default.
    let cloud = Arc::new(CloudServer::new(CloudConfig::default())?);
    let server = Server::bind(ServerConfig::new(listen, identity, token), cloud)?;
    println!(
        "serving on {} (fingerprint {}); token in {}",
        server.local_addr()?,
        server.fingerprint(),
        dir.join("token").display()
    );
    let closer = server.closer();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        closer.close();
    });
    server.run().await;
    Ok(())
}
