//! The estimator against a real shaped link: two network namespaces joined by a veth pair, with
//! `tc tbf` at 5 Mbit/s on both ends. Needs root and iproute2, so it is ignored in a plain run; `.ci/run` runs it where it can.
//!
//! The test binary runs itself in each namespace (`ip netns exec`) as a helper process: one
//! serves, the other makes the transfers and prints its estimates.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use transport::{Client, ClientConfig, ServerIdentity, ServerTrust, Token, WireTensor};

const RATE_MBIT: f64 = 5.0;
const PORT: u16 = 4433;
const ENV_DIR: &str = "CUTPOINT_SHAPED_LINK_DIR";
const ENV_ADDR: &str = "CUTPOINT_SHAPED_LINK_ADDR";

/// Deletes the namespaces (and with them the veth pair) however the test ends.
struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Kills a helper process this test started.
struct Helper(Child);

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", args[0]))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn build_link(tag: &str) -> Result<(Namespaces, String, String), String> {
    let (a, b) = (format!("cpa{tag}"), format!("cpb{tag}"));
    run(&["ip", "netns", "add", &a])?;
    let mut guard = Namespaces(vec![a.clone()]);
    run(&["ip", "netns", "add", &b])?;
    guard.0.push(b.clone());
    let (va, vb) = (format!("va{tag}"), format!("vb{tag}"));
    run(&[
        "ip", "link", "add", &va, "netns", &a, "type", "veth", "peer", "name", &vb, "netns", &b,
    ])?;
    for (ns, dev, ip) in [(&a, &va, "10.231.0.1/24"), (&b, &vb, "10.231.0.2/24")] {
        run(&["ip", "-n", ns, "addr", "add", ip, "dev", dev])?;
        run(&["ip", "-n", ns, "link", "set", dev, "up"])?;
        run(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
        run(&[
            "ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate",
            "5mbit", "burst", "16kb", "latency", "200ms",
        ])?;
    }
    Ok((guard, a, b))
}

fn helper(ns: &str, name: &str, dir: &Path) -> Result<Child, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(exe)
        .args([
            "--exact",
            name,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ENV_DIR, dir)
        .env(ENV_ADDR, format!("10.231.0.2:{PORT}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start helper {name}: {e}"))
}

/// Run by `.ci/run` where it can shape (as root with iproute2):
/// `cargo test -p transport --test shaped_link -- --ignored --exact <this name>`.
#[test]
#[ignore = "needs root and iproute2 (network namespaces and tc)"]
fn estimator_lands_within_15_percent_of_a_5_mbit_tbf_link_after_3_transfers() {
    let tag = std::process::id() % 100_000;
    let (_namespaces, a, b) = build_link(&tag.to_string()).unwrap_or_else(|why| {
        panic!("cannot build network namespaces ({why}); run as root with iproute2 installed")
    });
    let dir = tempfile::tempdir().expect("temp dir");
    ServerIdentity::load_or_create(&dir.path().join("identity")).expect("identity");
    Token::load_or_create(&dir.path().join("token")).expect("token");

    let _server = Helper(helper(&b, "helper_shaped_link_server", dir.path()).expect("server"));
    let client = helper(&a, "helper_shaped_link_client", dir.path()).expect("client");
    let out = client.wait_with_output().expect("client finishes");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "client helper failed:\n{stdout}");
    let uplinks: Vec<f64> = stdout
        .lines()
        .filter_map(|l| l.split("uplink_mbps=").nth(1))
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    eprintln!("estimates on a {RATE_MBIT} Mbit/s tbf link:\n{stdout}");
    assert_eq!(uplinks.len(), 3, "expected 3 estimates:\n{stdout}");
    let last = uplinks[2];
    assert!(
        (last - RATE_MBIT).abs() / RATE_MBIT <= 0.15,
        "uplink estimate {last:.2} Mbit/s is not within 15 % of {RATE_MBIT}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "helper process of the shaped-link test; does nothing when run alone"]
async fn helper_shaped_link_server() {
    let (Ok(dir), Ok(addr)) = (std::env::var(ENV_DIR), std::env::var(ENV_ADDR)) else {
        return;
    };
    let addr = addr.parse().expect("address");
    let server = common::start_in(Path::new(&dir), addr).await;
    println!("ready");
    // The parent kills this process; the timeout only stops a forgotten helper.
    let _ = tokio::time::timeout(Duration::from_secs(120), server.task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "helper process of the shaped-link test; does nothing when run alone"]
async fn helper_shaped_link_client() {
    let (Ok(dir), Ok(addr)) = (std::env::var(ENV_DIR), std::env::var(ENV_ADDR)) else {
        return;
    };
    let dir = Path::new(&dir);
    let identity = ServerIdentity::load_or_create(&dir.join("identity")).expect("identity");
    let config = ClientConfig::new(
        addr,
        ServerTrust::Fingerprint(identity.fingerprint()),
        common::token(dir),
    );
    // The server may still be starting.
    let mut client = None;
    for _ in 0..100 {
        match Client::connect(config.clone()).await {
            Ok(c) => {
                client = Some(c);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let client = client.expect("connects to the helper server");
    // 1 MB of f32 per transfer.
    let values = common::varied_f32(250_000, 9);
    for _ in 0..3 {
        let t = WireTensor::from_f32(&[values.len()], &values).expect("tensor");
        let back = client.infer(common::request(t)).await.expect("answer");
        assert_eq!(back.output.bytes.len(), 1_000_000);
        let link = client.link();
        println!(
            "uplink_mbps={:.3}",
            link.uplink.map_or(f64::NAN, |u| u.mbps)
        );
        println!(
            "downlink_mbps={:.3} rtt_ms={:.2}",
            link.downlink.map_or(f64::NAN, |d| d.mbps),
            link.rtt_ms.unwrap_or(f64::NAN)
        );
    }
}
