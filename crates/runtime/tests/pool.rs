//! Several cloud servers on loopback: requests spread across them, survive the loss of one,
//! and a server whose certificate changed is dropped alone. A name's servers follow its
//! records (a resolver the test controls) as they change, and its first pin is decided once.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    Cloud, closure, edge_config, input, lenet, load, local_forward, start, start_at, wait_for,
};
use models::{Net, relative_difference};
use partition_core::Graph;
use runtime::{CloudConfig, EdgeConfig, EdgeSession, Lookup, Resolve, Servers, SplitMode};
use transport::{ClientConfig, ServerTrust, Token};

/// Concurrent sessions in the runs below.
const SESSIONS: usize = 6;
/// Requests each session sends.
const REQUESTS: usize = 12;

/// LeNet's costs with a cloud slow enough (half the edge's 10 MFLOP/s time) that one request
/// in flight outweighs any difference between two loopback links: equal servers take turns,
/// and a busy one is avoided.
fn pool_graph(net: &Net) -> Graph {
    let edge_ms: Vec<f64> = net
        .nodes()
        .iter()
        .map(|n| n.spec().flops as f64 / 1e4)
        .collect();
    let cloud_ms: Vec<f64> = edge_ms.iter().map(|ms| ms / 2.0).collect();
    net.graph(&edge_ms, &cloud_ms).expect("graph")
}

/// A token shared by every server of a pool: each server's directory gets a copy of the
/// first one's.
fn share_token(from: &Path, to: &Path) {
    std::fs::copy(from.join("token"), to.join("token")).expect("token copied");
}

/// Client settings for every cloud, each pinned to its own fingerprint.
fn pool(clouds: &[&Cloud], token_dir: &Path) -> Servers {
    let token = Token::from_file(&token_dir.join("token")).expect("token");
    Servers::new(
        clouds
            .iter()
            .map(|cloud| {
                let mut config = ClientConfig::new(
                    cloud.addr.to_string(),
                    ServerTrust::Fingerprint(cloud.fingerprint),
                    token.clone(),
                );
                config.connect_timeout = Duration::from_secs(1);
                config
            })
            .collect(),
    )
}

/// `count` clouds, each with its own identity and the first one's token.
async fn start_pool(count: usize) -> (Vec<tempfile::TempDir>, Vec<Cloud>) {
    let dirs: Vec<tempfile::TempDir> = (0..count)
        .map(|_| tempfile::tempdir().expect("temp dir"))
        .collect();
    let mut clouds = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        if i > 0 {
            Token::load_or_create(&dirs[0].path().join("token")).expect("token");
            share_token(dirs[0].path(), dir.path());
        }
        clouds.push(start(dir.path(), CloudConfig::default(), &[]).await);
    }
    (dirs, clouds)
}

/// A LeNet session (seed 0 weights) planning with [`pool_graph`], connected to `servers`.
async fn pool_session(net: &Net, servers: &Servers, config: EdgeConfig) -> EdgeSession {
    let mut session = EdgeSession::new(load(net, 0), pool_graph(net), config).expect("session");
    let warning = session
        .connect_or_run_locally(servers.clone())
        .await
        .expect("connects");
    assert_eq!(warning, None);
    session
}

/// What one request ended with: its relative error against a local run, the server that
/// answered and any fallback.
struct Ended {
    error: f64,
    server: Option<String>,
    fallback: Option<String>,
}

/// Runs [`SESSIONS`] sessions of [`REQUESTS`] requests each against `servers`, with
/// `split`; once `served` requests have been served in all, stops `victim` (if any) while the
/// rest run. Returns every request's end.
async fn run_sessions(
    servers: &Servers,
    split: SplitMode,
    clouds: &[Cloud],
    victim: Option<Cloud>,
    served: u64,
) -> Vec<Ended> {
    let net = lenet();
    let reference = load(&net, 0);
    let mut tasks = Vec::new();
    for s in 0..SESSIONS {
        let mut session = pool_session(&net, servers, edge_config(split.clone())).await;
        let net = net.clone();
        tasks.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for r in 0..REQUESTS {
                let seed = (s * REQUESTS + r) as u32;
                let outcome = session
                    .infer(input(&net, 1, seed))
                    .await
                    .expect("every request ends");
                outcomes.push((seed, outcome));
            }
            outcomes
        }));
    }
    if let Some(victim) = victim {
        let all = |c: &[Cloud], v: &Cloud| {
            c.iter().map(|c| c.server.stats().served).sum::<u64>() + v.server.stats().served
        };
        // The victim stops once it has served some of them (sessions take turns, so it gets
        // its share): what it was still to serve must go elsewhere.
        wait_for(
            "requests to be served, some by the victim",
            Duration::from_secs(60),
            || all(clouds, &victim) >= served && victim.server.stats().served > 0,
        )
        .await;
        victim.stop().await;
    }
    let mut ended = Vec::new();
    for task in tasks {
        for (seed, outcome) in task.await.expect("session task") {
            let expected = local_forward(&reference, &input(&net, 1, seed));
            ended.push(Ended {
                error: relative_difference(&outcome.output, &expected),
                server: outcome.server,
                fallback: outcome.fallback,
            });
        }
    }
    ended
}

/// Asserts that every request ended with a correct result, served by a cloud.
fn assert_none_lost(ended: &[Ended]) {
    assert_eq!(ended.len(), SESSIONS * REQUESTS, "every request ended");
    for e in ended {
        assert!(e.error <= 1e-4, "relative error {}", e.error);
        assert_eq!(e.fallback, None, "a server was always left to answer");
        assert!(e.server.is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_share_the_load_and_survive_the_loss_of_one() {
    let (_dirs, mut clouds) = start_pool(2).await;
    let servers = pool(&clouds.iter().collect::<Vec<_>>(), _dirs[0].path());
    let victim = clouds.pop();
    let survivor = clouds[0].addr.to_string();
    let ended = run_sessions(
        &servers,
        SplitMode::CloudOnly,
        &clouds,
        victim,
        (SESSIONS * REQUESTS / 4) as u64,
    )
    .await;
    assert_none_lost(&ended);
    let by_survivor = ended
        .iter()
        .filter(|e| e.server.as_deref() == Some(survivor.as_str()))
        .count() as u64;
    assert_eq!(clouds[0].server.stats().served, by_survivor);
    assert!(
        by_survivor < ended.len() as u64,
        "the other server served some"
    );
    for cloud in clouds {
        cloud.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_servers_lose_one_mid_run_at_a_split_and_lose_no_request() {
    let (_dirs, mut clouds) = start_pool(3).await;
    let servers = pool(&clouds.iter().collect::<Vec<_>>(), _dirs[0].path());
    let net = lenet();
    // The cloud runs from the second convolution on: a boundary tensor crosses.
    let cut = SplitMode::Fixed(closure(&net, 3));
    let victim = clouds.remove(1);
    let ended = run_sessions(
        &servers,
        cut,
        &clouds,
        Some(victim),
        (SESSIONS * REQUESTS / 3) as u64,
    )
    .await;
    assert_none_lost(&ended);
    for cloud in &clouds {
        assert!(
            cloud.server.stats().served > 0,
            "every surviving server served"
        );
    }
    for cloud in clouds {
        cloud.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sessions_spread_over_every_server() {
    let (_dirs, clouds) = start_pool(3).await;
    let servers = pool(&clouds.iter().collect::<Vec<_>>(), _dirs[0].path());
    let ended = run_sessions(&servers, SplitMode::CloudOnly, &clouds, None, 0).await;
    assert_none_lost(&ended);
    let served: Vec<u64> = clouds.iter().map(|c| c.server.stats().served).collect();
    assert_eq!(served.iter().sum::<u64>(), ended.len() as u64);
    assert!(
        served.iter().all(|&n| n > 0),
        "served per server: {served:?}"
    );
    for cloud in clouds {
        cloud.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_changed_certificate_stops_only_that_server() {
    let (dirs, clouds) = start_pool(2).await;
    let net = lenet();
    let reference = load(&net, 0);
    let known_servers = dirs[0].path().join("known_servers");
    let token = Token::from_file(&dirs[0].path().join("token")).expect("token");
    let servers = Servers::new(
        clouds
            .iter()
            .map(|c| config_for(c.addr, &known_servers, &token))
            .collect(),
    );
    let mut session = pool_session(&net, &servers, edge_config(SplitMode::CloudOnly)).await;
    // Equal servers take requests in turn, but a server whose measured wait runs more than the
    // tolerance above the other's (a loaded test machine) is passed over: a few requests more
    // until both have served.
    let served = || -> Vec<u64> { clouds.iter().map(|c| c.server.stats().served).collect() };
    for seed in 0..40 {
        let outcome = session.infer(input(&net, 1, seed)).await.expect("served");
        assert_eq!(outcome.fallback, None);
        if seed >= 3 && served().iter().all(|&n| n > 0) {
            break;
        }
    }
    assert!(
        served().iter().all(|&n| n > 0),
        "both pinned and used: {:?}",
        served()
    );

    // The second server comes back at its address with another key.
    let mut clouds = clouds;
    let changed = clouds.pop().expect("two clouds");
    let addr = changed.addr;
    changed.stop().await;
    let other_key = tempfile::tempdir().expect("temp dir");
    share_token(dirs[0].path(), other_key.path());
    let impostor = start_at(other_key.path(), addr, CloudConfig::default(), &[]).await;
    // Requests go on (to the first server) while the session finds the second gone and
    // tries to reconnect.
    let deadline = Instant::now() + Duration::from_secs(60);
    let refused = |session: &EdgeSession| {
        session
            .server_errors()
            .iter()
            .any(|(_, error)| error.contains("presented certificate"))
    };
    while !refused(&session) {
        assert!(
            Instant::now() < deadline,
            "gave up waiting for the refusal: {:?}",
            session.server_errors()
        );
        let outcome = session.infer(input(&net, 1, 9)).await.expect("served");
        assert_eq!(outcome.fallback, None);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let errors = session.server_errors();
    let (server, error) = &errors[0];
    assert_eq!(server, &addr.to_string(), "the message names the server");
    assert!(
        error.contains("delete the line"),
        "and says what to do: {error}"
    );
    assert!(session.is_connected(), "the other server is still used");
    for seed in 10..16 {
        let outcome = session.infer(input(&net, 1, seed)).await.expect("served");
        assert_eq!(outcome.fallback, None);
        assert_eq!(outcome.server, Some(clouds[0].addr.to_string()));
        let expected = local_forward(&reference, &input(&net, 1, seed));
        assert!(relative_difference(&outcome.output, &expected) <= 1e-4);
    }
    assert_eq!(
        impostor.server.stats().served,
        0,
        "the changed server is not used"
    );

    // A new session reading the same pins says so at connect time, and uses the other.
    let mut fresh = EdgeSession::new(
        load(&net, 0),
        pool_graph(&net),
        edge_config(SplitMode::CloudOnly),
    )
    .expect("session");
    let warning = fresh
        .connect_or_run_locally(servers.clone())
        .await
        .expect("one server is usable")
        .expect("a warning about the other");
    assert!(warning.contains(&addr.to_string()), "{warning}");
    assert!(warning.contains("delete the line"), "{warning}");
    let outcome = fresh.infer(input(&net, 1, 1)).await.expect("served");
    assert_eq!(outcome.server, Some(clouds[0].addr.to_string()));
    assert_eq!(impostor.server.stats().served, 0);
    impostor.stop().await;
    for cloud in clouds {
        cloud.stop().await;
    }
    // With the only server refused, connecting is an error, not a silent local run.
    let only = Servers::new(vec![config_for(addr, &known_servers, &token)]);
    let impostor = start_at(other_key.path(), addr, CloudConfig::default(), &[]).await;
    let err = EdgeSession::new(
        load(&net, 0),
        pool_graph(&net),
        edge_config(SplitMode::CloudOnly),
    )
    .expect("session")
    .connect_or_run_locally(only)
    .await
    .expect_err("refused");
    assert!(err.to_string().contains("delete the line"), "{err}");
    impostor.stop().await;
}

/// Client settings for `addr` trusting the pins in `known_servers`.
fn config_for(addr: std::net::SocketAddr, known_servers: &Path, token: &Token) -> ClientConfig {
    let mut config = ClientConfig::new(
        addr.to_string(),
        ServerTrust::KnownServers(known_servers.to_path_buf()),
        token.clone(),
    );
    config.connect_timeout = Duration::from_secs(1);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_stands_for_its_addresses_and_pins_under_the_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cloud = start(dir.path(), CloudConfig::default(), &[]).await;
    let net = lenet();
    let known_servers = dir.path().join("known_servers");
    let token = Token::from_file(&dir.path().join("token")).expect("token");
    let name = format!("localhost:{}", cloud.addr.port());
    let mut config = config_for(cloud.addr, &known_servers, &token);
    config.server = name.clone();
    let mut session = EdgeSession::new(
        load(&net, 0),
        pool_graph(&net),
        edge_config(SplitMode::CloudOnly),
    )
    .expect("session");
    // `localhost` may also name ::1, where nothing listens: that address is a warning only.
    let warning = session
        .connect_or_run_locally(config)
        .await
        .expect("the IPv4 address answers");
    let servers = session.servers();
    assert!(
        servers.contains(&format!("{name} ({})", cloud.addr)),
        "{servers:?}"
    );
    if servers.len() > 1 {
        let warning = warning.expect("the other address is unreachable");
        assert!(warning.contains("using the other servers"), "{warning}");
    }
    let outcome = session.infer(input(&net, 1, 3)).await.expect("served");
    assert_eq!(outcome.fallback, None);
    let pins = std::fs::read_to_string(&known_servers).expect("pinned");
    assert!(
        pins.starts_with(&format!("{name} {}", cloud.fingerprint)),
        "{pins}"
    );
    cloud.stop().await;
}

/// The name the tests' resolver answers for.
const POOL_NAME: &str = "pool.test:4433";

/// A resolver whose answer for [`POOL_NAME`] the test sets, standing in for a DNS server
/// whose records change as a pool scales.
#[derive(Debug, Default)]
struct Records(std::sync::Mutex<Vec<std::net::SocketAddr>>);

impl Records {
    /// [`POOL_NAME`] stands for `addrs` from now on.
    fn set(&self, addrs: &[std::net::SocketAddr]) {
        *self.0.lock().expect("records") = addrs.to_vec();
    }
}

impl Resolve for Records {
    fn lookup(&self, server: &str) -> Lookup {
        let found = if server == POOL_NAME {
            Ok(self.0.lock().expect("records").clone())
        } else {
            Err(format!("the test's resolver knows only {POOL_NAME}"))
        };
        Box::pin(async move { found })
    }
}

/// [`POOL_NAME`] looked up by `records`, pinned in `known_servers`.
fn named_pool(records: &Arc<Records>, known_servers: &Path, token: &Token) -> Servers {
    let mut config = config_for("127.0.0.1:1".parse().expect("addr"), known_servers, token);
    config.server = POOL_NAME.to_string();
    Servers::new(vec![config]).with_resolver(records.clone())
}

/// How messages name the server at `addr` behind [`POOL_NAME`].
fn member(addr: std::net::SocketAddr) -> String {
    format!("{POOL_NAME} ({addr})")
}

/// Sends requests until one is served by `server` (at most `most`), checking each result;
/// returns how many it took.
async fn until_served_by(session: &mut EdgeSession, server: &str, most: u32) -> u32 {
    let net = lenet();
    let reference = load(&net, 0);
    for seed in 0..most {
        let outcome = session.infer(input(&net, 1, seed)).await.expect("ends");
        let expected = local_forward(&reference, &input(&net, 1, seed));
        assert!(relative_difference(&outcome.output, &expected) <= 1e-4);
        if outcome.server.as_deref() == Some(server) {
            return seed + 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "no request served by {server} in {most}; servers {:?}, errors {:?}",
        session.servers(),
        session.server_errors()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_added_behind_the_name_is_used_and_one_removed_is_dropped() {
    // Two servers of one pool: one identity and token (as from one Secret).
    let dir = tempfile::tempdir().expect("temp dir");
    let first = start(dir.path(), CloudConfig::default(), &[]).await;
    let second = start(dir.path(), CloudConfig::default(), &[]).await;
    assert_eq!(first.fingerprint, second.fingerprint);
    let token = Token::from_file(&dir.path().join("token")).expect("token");
    let records = Arc::new(Records::default());
    records.set(&[first.addr]);
    let servers = named_pool(&records, &dir.path().join("known_servers"), &token);
    let config = EdgeConfig {
        resolve_interval: Duration::ZERO,
        ..edge_config(SplitMode::CloudOnly)
    };
    let net = lenet();
    let mut session = pool_session(&net, &servers, config).await;
    assert_eq!(session.servers(), [member(first.addr)]);
    assert_eq!(
        until_served_by(&mut session, &member(first.addr), 1).await,
        1
    );

    // The pool grows: the name now gives both. The new server joins and takes requests.
    records.set(&[first.addr, second.addr]);
    until_served_by(&mut session, &member(second.addr), 100).await;
    assert!(second.server.stats().served > 0);
    assert_eq!(session.servers(), [member(first.addr), member(second.addr)]);
    let pins = std::fs::read_to_string(dir.path().join("known_servers")).expect("pins");
    assert_eq!(pins.lines().count(), 1, "one pin, under the name: {pins}");

    // The pool shrinks: the first server stops and leaves the name. Requests go to the
    // second, and the first, no longer connected, is dropped.
    records.set(&[second.addr]);
    first.stop().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while session.servers() != [member(second.addr)] {
        assert!(
            Instant::now() < deadline,
            "the stopped server was not dropped: {:?}",
            session.servers()
        );
        let outcome = session.infer(input(&net, 1, 5)).await.expect("ends");
        assert_eq!(outcome.fallback, None, "the second server answers");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_whose_servers_are_all_down_is_looked_up_again_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let old = start(dir.path(), CloudConfig::default(), &[]).await;
    let token = Token::from_file(&dir.path().join("token")).expect("token");
    let records = Arc::new(Records::default());
    records.set(&[old.addr]);
    let servers = named_pool(&records, &dir.path().join("known_servers"), &token);
    // Never due by the interval: only the name's servers all being down looks it up again.
    let config = EdgeConfig {
        resolve_interval: Duration::from_secs(3600),
        ..edge_config(SplitMode::CloudOnly)
    };
    let net = lenet();
    let mut session = pool_session(&net, &servers, config).await;
    assert_eq!(until_served_by(&mut session, &member(old.addr), 1).await, 1);

    // The pod is rescheduled: the name moves to a new address.
    let new = start(dir.path(), CloudConfig::default(), &[]).await;
    records.set(&[new.addr]);
    old.stop().await;
    until_served_by(&mut session, &member(new.addr), 100).await;
    assert!(new.server.stats().served > 0);
    new.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_addresses_of_a_name_with_different_keys_pin_one_and_stop_the_other() {
    let (dirs, clouds) = start_pool(2).await;
    assert_ne!(clouds[0].fingerprint, clouds[1].fingerprint);
    let token = Token::from_file(&dirs[0].path().join("token")).expect("token");
    let known_servers = dirs[0].path().join("known_servers");
    let records = Arc::new(Records::default());
    records.set(&[clouds[0].addr, clouds[1].addr]);
    let servers = named_pool(&records, &known_servers, &token);
    let net = lenet();
    let mut session = EdgeSession::new(
        load(&net, 0),
        pool_graph(&net),
        edge_config(SplitMode::CloudOnly),
    )
    .expect("session");
    // Both addresses connect at once; the name is pinned to whichever is first.
    let warning = session
        .connect_or_run_locally(servers)
        .await
        .expect("one server is usable")
        .expect("a warning about the other");
    let pins = std::fs::read_to_string(&known_servers).expect("pinned");
    let lines: Vec<&str> = pins.lines().collect();
    assert_eq!(lines.len(), 1, "the name is pinned once: {pins}");
    let pinned = clouds
        .iter()
        .position(|c| lines[0] == format!("{POOL_NAME} {}", c.fingerprint))
        .expect("pinned to one of the two");
    let (winner, loser) = (&clouds[pinned], &clouds[1 - pinned]);
    // The other is stopped with a message naming it and the certificate it presented.
    let presented = format!("presented certificate {}", loser.fingerprint);
    assert!(warning.contains(&member(loser.addr)), "{warning}");
    assert!(warning.contains(&presented), "{warning}");
    let errors = session.server_errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let (server, error) = &errors[0];
    assert_eq!(server, &member(loser.addr));
    assert!(error.contains(&presented), "{error}");
    assert!(error.contains(&winner.fingerprint.to_string()), "{error}");
    for _ in 0..4 {
        assert_eq!(
            until_served_by(&mut session, &member(winner.addr), 1).await,
            1
        );
    }
    assert_eq!(loser.server.stats().served, 0);
    for cloud in clouds {
        cloud.stop().await;
    }
}
