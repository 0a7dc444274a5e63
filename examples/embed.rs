//! An application that embeds cutpoint: classify one input with LeNet, split between this
//! device and a cloud, at the cut that is fastest for the link as it is now.
//!
//! ```sh
//! cargo run --release --example serve -- 127.0.0.1:4433 /tmp/cutpoint-example &
//! cargo run --release --example embed -- 127.0.0.1:4433 /tmp/cutpoint-example/token
//! ```

use models::{Backend, HostTensor, zoo};
use runtime::{EdgeConfig, EdgeSession, LoadedModel, WeightsSource, default_cache_dir};
use transport::{ClientConfig, ServerTrust, Token};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let server = args.next().unwrap_or_else(|| "127.0.0.1:4433".into());
    let token = Token::from_file(
        args.next()
            .unwrap_or_else(|| "cutpoint-example/token".into())
            .as_ref(),
    )?;

    let net = zoo::build("lenet")?;
    // Layer costs come from this machine's quick profile, swept once and cached.
    let profiles = runtime::quick_profile(
        &default_cache_dir()?,
        Backend::Flex,
        std::slice::from_ref(&net),
        None,
        true,
    )?;
    let model = LoadedModel::load(
        net,
        &WeightsSource::Seeded(runtime::DEFAULT_SEED),
        Backend::Flex,
    )?;
    let mut session = EdgeSession::with_profiles(
        model,
        &profiles.edge,
        &profiles.cloud,
        EdgeConfig::default(),
    )?;

    // Trust on first use: the server's fingerprint is pinned in this file.
    let known = std::env::temp_dir().join("cutpoint-example-known-servers");
    session
        .connect(ClientConfig::new(
            server,
            ServerTrust::KnownServers(known),
            token,
        ))
        .await?;

    let input = HostTensor::new(vec![1, 1, 32, 32], vec![0.5; 32 * 32])?;
    let outcome = session.infer(input).await?;
    println!(
        "cloud ran {} of {} nodes; predicted {:.1} ms, measured {:.1} ms; output shape {:?}{}",
        outcome.cloud_nodes.len(),
        session.graph().len(),
        outcome.predicted.total_ms,
        outcome.measured.total_ms,
        outcome.output.shape(),
        outcome
            .fallback
            .map(|why| format!(" (ran locally: {why})"))
            .unwrap_or_default()
    );
    Ok(())
}
