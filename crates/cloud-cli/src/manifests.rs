//! The deployment files pass `cutpoint-cloud` only flags it has: every command line in the
//! Kubernetes manifests (deploy/k8s) and the Containerfile's default command is parsed with
//! the CLI's own definition.

use std::path::PathBuf;

use clap::Parser;
use serde::Deserialize;

use crate::Cli;

/// The parts of a Kubernetes Deployment that run the binary.
#[derive(Deserialize)]
struct Deployment {
    spec: DeploymentSpec,
}

#[derive(Deserialize)]
struct DeploymentSpec {
    template: PodTemplate,
}

#[derive(Deserialize)]
struct PodTemplate {
    spec: PodSpec,
}

#[derive(Deserialize)]
struct PodSpec {
    containers: Vec<Container>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Container {
    args: Vec<String>,
    readiness_probe: Probe,
}

#[derive(Deserialize)]
struct Probe {
    exec: Exec,
}

#[derive(Deserialize)]
struct Exec {
    command: Vec<String>,
}

/// The parts of a Kubernetes Service that make it a pool's: headless, over UDP.
#[derive(Deserialize)]
struct Service {
    spec: ServiceSpec,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServiceSpec {
    #[serde(rename = "clusterIP")]
    cluster_ip: String,
    ports: Vec<ServicePort>,
}

#[derive(Deserialize)]
struct ServicePort {
    port: u16,
    protocol: String,
}

fn repository_file(path: &str) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Why the CLI refuses `args` (after the program's name), if it does.
fn refusal(args: &[String]) -> Option<clap::Error> {
    let argv = std::iter::once("cutpoint-cloud").chain(args.iter().map(String::as_str));
    Cli::try_parse_from(argv).err()
}

/// Fails, naming the file, when the CLI refuses `args`.
fn parses(file: &str, args: &[String]) {
    if let Some(e) = refusal(args) {
        panic!("{file} passes flags cutpoint-cloud refuses: {args:?}\n{e}");
    }
}

#[test]
fn the_manifests_pass_only_flags_the_cli_has() {
    let file = "deploy/k8s/deployment.yaml";
    let deployment: Deployment =
        serde_saphyr::from_str(&repository_file(file)).expect("the deployment parses");
    let containers = &deployment.spec.template.spec.containers;
    assert!(!containers.is_empty());
    for container in containers {
        assert_eq!(container.args.first().map(String::as_str), Some("serve"));
        parses(file, &container.args);
        let probe = &container.readiness_probe.exec.command;
        assert_eq!(probe.first().map(String::as_str), Some("cutpoint-cloud"));
        assert_eq!(probe.get(1).map(String::as_str), Some("check"));
        parses(file, &probe[1..]);
    }

    let file = "deploy/k8s/service.yaml";
    let service: Service =
        serde_saphyr::from_str(&repository_file(file)).expect("the service parses");
    assert_eq!(
        service.spec.cluster_ip, "None",
        "headless: DNS returns every pod"
    );
    assert!(
        service
            .spec
            .ports
            .iter()
            .any(|p| p.port == 4433 && p.protocol == "UDP"),
        "QUIC over UDP"
    );
}

#[test]
fn the_containerfile_default_command_parses() {
    let text = repository_file("Containerfile");
    let cmd = text
        .lines()
        .find_map(|l| l.strip_prefix("CMD "))
        .expect("a CMD line");
    let args: Vec<String> = serde_json::from_str(cmd).expect("CMD in exec form");
    parses("Containerfile", &args);
}

#[test]
fn a_flag_the_cli_lacks_is_caught() {
    let refused = refusal(&["serve", "--no-such-flag"].map(String::from));
    assert!(refused.is_some_and(|e| e.to_string().contains("--no-such-flag")));
    let refused = refusal(&["check", "--timeout", "soon"].map(String::from));
    assert!(refused.is_some_and(|e| e.to_string().contains("soon")));
}
