//! `cutpoint-cloud serve` as a user runs it: the real binary on a free loopback port, its
//! start-up report read from stdout, and an edge session from the library talking to it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use models::{Backend, zoo};
use runtime::{EdgeConfig, EdgeSession, LoadedModel, SplitMode, WeightsSource};
use transport::{ClientConfig, Fingerprint, ServerTrust, Token};

/// The server process, killed when the test ends however it ends.
struct Serving {
    child: Child,
    addr: String,
    fingerprint: Fingerprint,
    token_file: String,
    report: Vec<String>,
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads the start-up report up to its last line.
fn report(stdout: ChildStdout) -> Vec<String> {
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("stdout is UTF-8");
        let last = line.contains("Ctrl-C");
        lines.push(line);
        if last {
            break;
        }
    }
    lines
}

fn field<'a>(lines: &'a [String], name: &str) -> &'a str {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(name))
        .unwrap_or_else(|| panic!("no `{name}` line in:\n{}", lines.join("\n")))
        .trim()
}

fn serve(state_dir: &Path, extra: &[&str]) -> Serving {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cutpoint-cloud"))
        .args(["serve", "--listen", "127.0.0.1:0", "--state-dir"])
        .arg(state_dir)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let lines = report(child.stdout.take().expect("stdout"));
    let addr = field(&lines, "listening:")
        .split_whitespace()
        .next()
        .expect("an address")
        .to_string();
    Serving {
        fingerprint: Fingerprint::parse(field(&lines, "fingerprint:")).expect("a fingerprint"),
        token_file: field(&lines, "token file:").to_string(),
        addr,
        report: lines,
        child,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_prints_how_to_connect_and_serves_an_edge_until_killed() {
    let state = tempfile::tempdir().expect("temp dir");
    let mut server = serve(state.path(), &["--preload", "lenet"]);
    assert!(
        server
            .report
            .iter()
            .any(|l| l.starts_with("loaded 1 model")),
        "{:?}",
        server.report
    );
    // Each preloaded model's measured pass, as the server publishes it.
    assert!(
        server
            .report
            .iter()
            .any(|l| l.trim_start().starts_with("lenet") && l.contains("a pass costs")),
        "{:?}",
        server.report
    );
    assert!(
        Path::new(&server.token_file).starts_with(state.path()),
        "{}",
        server.token_file
    );
    assert!(field(&server.report, "models:").contains("lenet"));

    let net = zoo::build("lenet").expect("lenet");
    let model =
        LoadedModel::load(net.clone(), &WeightsSource::Seeded(0), Backend::Flex).expect("model");
    let zeros = vec![0.0; net.len()];
    let graph = net.graph(&zeros, &zeros).expect("graph");
    let config = EdgeConfig {
        split: SplitMode::CloudOnly,
        request_timeout: Duration::from_secs(3),
        ..EdgeConfig::default()
    };
    let mut session = EdgeSession::new(model, graph, config).expect("session");
    let token = Token::from_file(Path::new(&server.token_file)).expect("token file");
    let mut client = ClientConfig::new(
        server.addr.clone(),
        ServerTrust::Fingerprint(server.fingerprint),
        token,
    );
    client.connect_timeout = Duration::from_secs(2);
    session.connect(client).await.expect("connects");
    let input = models::HostTensor::new(vec![1, 1, 32, 32], vec![0.25; 1024]).expect("input");
    let outcome = session.infer(input.clone()).await.expect("served");
    assert_eq!(outcome.fallback, None);
    // Preloaded: the first request loads nothing, and the session plans with the server's
    // own costs.
    assert_eq!(outcome.measured.load_ms, 0.0);
    assert!(matches!(
        session.cloud_cost_source(),
        runtime::CloudCostSource::Published { .. }
    ));
    assert_eq!(outcome.output.shape(), &[1, 10]);

    // Killed without a goodbye: the next request times out or finds the server gone, and
    // finishes locally with the same result.
    server.child.kill().expect("kill");
    let _ = server.child.wait();
    let local = session.infer(input).await.expect("completes locally");
    assert!(local.fallback.is_some());
    assert!(models::relative_difference(&local.output, &outcome.output) <= 1e-5);

    // A restart keeps the certificate and the token.
    let token_before = std::fs::read_to_string(&server.token_file).expect("token");
    let again = serve(state.path(), &[]);
    assert_eq!(again.fingerprint, server.fingerprint);
    assert_eq!(
        std::fs::read_to_string(&again.token_file).expect("token"),
        token_before
    );
}

#[test]
fn bad_flags_fail_on_one_line() {
    let state = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_cutpoint-cloud"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "0",
            "--state-dir",
        ])
        .arg(state.path())
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("workers"), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_cutpoint-cloud"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--model-spec",
            "/nonexistent/spec.json",
            "--state-dir",
        ])
        .arg(state.path())
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/spec.json"), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_cutpoint-cloud"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--preload",
            "lenet5",
            "--state-dir",
        ])
        .arg(state.path())
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("lenet5") && err.contains("lenet,"), "{err}");
}

#[test]
fn the_limits_are_flags_that_say_what_they_protect_against() {
    let out = Command::new(env!("CARGO_BIN_EXE_cutpoint-cloud"))
        .args(["serve", "--help"])
        .output()
        .expect("runs");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--max-batch",
        "--max-frame-mib",
        "--memory-mib",
        "--connection-memory-mib",
        "--host-share",
        "--max-clients",
        "--max-authenticating",
        "--max-authenticating-per-address",
        "--hello-timeout",
        "--frame-timeout",
        "--request-timeout",
        "--reply-timeout",
        "--max-probe-reply-kib",
    ] {
        let at = help
            .find(&format!("{flag} <"))
            .unwrap_or_else(|| panic!("{flag} is not in:\n{help}"));
        let text = &help[at..];
        // Up to the next option's line.
        let end = ["\n      -", "\n  -"]
            .iter()
            .filter_map(|next| text[2..].find(next))
            .min()
            .map_or(text.len(), |e| e + 2);
        let entry = &text[..end];
        assert!(
            entry.contains("Protects"),
            "{flag} says not what it protects against:\n{entry}"
        );
        assert!(
            entry.contains("[default: "),
            "{flag} has no default:\n{entry}"
        );
    }

    // Limits that do not fit together fail on one line that says what to change.
    let state = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_cutpoint-cloud"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--max-frame-mib",
            "64",
            "--connection-memory-mib",
            "100",
            "--state-dir",
        ])
        .arg(state.path())
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("per-connection memory budget"), "{err}");
}

/// Runs `cutpoint-cloud check` with `args`: whether it succeeded, its stdout and its stderr.
fn check(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cutpoint-cloud"))
        .arg("check")
        .args(args)
        .output()
        .expect("runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_passes_on_a_ready_server_and_says_why_otherwise() {
    let state = tempfile::tempdir().expect("temp dir");
    let state_dir = state.path().to_str().expect("UTF-8 path");
    let server = serve(state.path(), &["--metrics", "127.0.0.1:0"]);

    let (ok, out, err) = check(&["--connect", &server.addr, "--state-dir", state_dir]);
    assert!(ok, "{err}");
    assert!(out.starts_with("ready:"), "{out}");

    // Another token: refused, on one line naming the server.
    let wrong = state.path().join("wrong-token");
    std::fs::write(&wrong, "x".repeat(40)).expect("writes");
    let wrong = wrong.to_str().expect("UTF-8 path");
    let (ok, _, err) = check(&[
        "--connect",
        &server.addr,
        "--state-dir",
        state_dir,
        "--token-file",
        wrong,
    ]);
    assert!(!ok);
    assert!(err.contains(&server.addr) && err.contains("token"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");

    // Another certificate expected: refused.
    let other = Fingerprint::of_der(b"another server").to_string();
    let (ok, _, err) = check(&[
        "--connect",
        &server.addr,
        "--state-dir",
        state_dir,
        "--fingerprint",
        &other,
    ]);
    assert!(!ok);
    assert!(err.contains("certificate"), "{err}");

    // The metrics endpoint the report names answers with the counters.
    let url = field(&server.report, "metrics:");
    let metrics_addr = url
        .strip_prefix("http://")
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .expect("http://ADDR/metrics");
    let mut stream = std::net::TcpStream::connect(metrics_addr).expect("connects");
    std::io::Write::write_all(&mut stream, b"GET /metrics HTTP/1.1\r\n\r\n").expect("sends");
    let mut reply = String::new();
    std::io::Read::read_to_string(&mut stream, &mut reply).expect("reads");
    assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
    assert!(reply.contains("cutpoint_queue_waiting 0"), "{reply}");

    // Nothing listening any more: not ready.
    drop(server);
    let (ok, _, err) = check(&[
        "--connect",
        "127.0.0.1:9",
        "--state-dir",
        state_dir,
        "--timeout",
        "1",
    ]);
    assert!(!ok);
    assert!(err.contains("not ready"), "{err}");
}
