//! Running the real `cutpoint-edge` binary as a user does, shared by the integration tests.

#![allow(dead_code)]

use std::process::{Command, Output};

/// Runs `cutpoint-edge` with `args` (and without any token file from the environment).
pub fn edge(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cutpoint-edge"))
        .args(args)
        .env_remove("CUTPOINT_TOKEN_FILE")
        .output()
        .expect("the binary runs")
}

/// A success that printed JSON; returns it.
pub fn json_output(out: Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

/// A success; returns stdout.
pub fn ok(args: &[&str]) -> String {
    let out = edge(args);
    assert!(
        out.status.success(),
        "{args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("stdout is UTF-8")
}

/// A failure: non-zero exit, one line on stderr, no panic. Returns that line.
pub fn one_line_error(args: &[&str]) -> String {
    let out = edge(args);
    assert!(!out.status.success(), "expected a failure for {args:?}");
    let err = String::from_utf8_lossy(&out.stderr).trim_end().to_string();
    assert_eq!(
        err.lines().count(),
        1,
        "stderr for {args:?} is not one line:\n{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.starts_with("error:"), "{err}");
    err
}

/// `cutpoint-edge profile` of this machine into `dir`, as small as it goes (8 samples per
/// class, no networks timed inside their passes): seconds, enough to train a profile from.
/// Returns what it printed.
pub fn tiny_sweep(dir: &str) -> String {
    ok(&[
        "profile",
        "--out",
        dir,
        "--quick",
        "--samples",
        "8",
        "--in-pass",
        "none",
        "--no-progress",
    ])
}
