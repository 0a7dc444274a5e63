//! The cloud servers a session spreads its requests over.
//!
//! [`Servers`] is what the application gives: one server or several, a name standing for every
//! address it resolves to. Each resolved server becomes a [`Member`] of the session with its
//! own connection (and pinned certificate), link estimate, published costs, reported wait,
//! and count of requests in flight to it.

use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use std::path::Path;

use transport::{ClientConfig, ClientError, ServerTrust, Token};

use super::connection::CloudLink;
use super::inputs::WaitEstimate;
use super::published::ServerCosts;
use crate::error::RuntimeError;

/// Longest wait for one name's lookup.
pub(crate) const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// The addresses a name resolves to, or why it does not resolve.
pub type Lookup = Pin<Box<dyn Future<Output = Result<Vec<SocketAddr>, String>> + Send>>;

/// Looks server names up: the system's resolver in production ([`SystemResolver`]); tests
/// and embedding applications may give their own (see [`Servers::with_resolver`]).
pub trait Resolve: Send + Sync + Debug {
    /// The addresses `server` (`host:port`) stands for now.
    fn lookup(&self, server: &str) -> Lookup;
}

/// The operating system's resolver (`getaddrinfo`, through [`tokio::net::lookup_host`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn lookup(&self, server: &str) -> Lookup {
        let server = server.to_owned();
        Box::pin(async move {
            tokio::net::lookup_host(server)
                .await
                .map(Iterator::collect)
                .map_err(|e| e.to_string())
        })
    }
}

/// The cloud servers an [`crate::EdgeSession`] connects to: one or several.
///
/// A server given by name stands for every address the name resolves to (a pool behind one
/// DNS name, such as a headless Kubernetes service), each a server of its own that shares
/// the name's pinned certificate; servers given apart are pinned apart. The session looks
/// names up again while it runs (see [`crate::EdgeConfig::resolve_interval`]), so that
/// servers added behind a name are used and servers gone from it are dropped. Sessions
/// connected with clones of one `Servers` value share their counts of requests in flight to
/// each address, so that concurrent sessions spread their requests instead of all choosing
/// the same idle server.
#[derive(Debug, Clone)]
pub struct Servers {
    configs: Vec<ClientConfig>,
    resolver: Arc<dyn Resolve>,
    in_flight: Arc<Mutex<HashMap<SocketAddr, Arc<AtomicUsize>>>>,
}

/// One resolved server: which name (or address) it came from, how to reach it, what to call
/// it, and its shared in-flight count.
pub(crate) struct Resolved {
    /// The index of the client settings it came from, in [`Servers::configs`].
    pub origin: usize,
    /// The address it is reached at (also `config.address`).
    pub address: SocketAddr,
    pub config: ClientConfig,
    pub label: String,
    pub in_flight: Arc<AtomicUsize>,
}

impl Servers {
    /// These servers, each with its own client settings (address, trust, token), names looked
    /// up with the system's resolver.
    pub fn new(configs: Vec<ClientConfig>) -> Servers {
        Servers {
            configs,
            resolver: Arc::new(SystemResolver),
            in_flight: Arc::default(),
        }
    }

    /// The servers of a list such as `cutpoint-edge --connect` takes: `HOST:PORT` entries
    /// separated by commas, spaces around them ignored; an error names the first entry that
    /// is not `HOST:PORT`.
    pub fn parse_list(text: &str) -> Result<Vec<String>, RuntimeError> {
        let servers: Vec<String> = text.split(',').map(|s| s.trim().to_string()).collect();
        match servers.iter().find(|s| {
            s.rsplit_once(':')
                .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
        }) {
            Some(bad) => Err(RuntimeError::NotHostPort { entry: bad.clone() }),
            None => Ok(servers),
        }
    }

    /// `servers` (`HOST:PORT` each), all expecting `token`, each trusted on first use: its
    /// certificate is pinned in the known-servers file `known_servers` under the `HOST:PORT`
    /// given, and must match there later ([`ServerTrust::KnownServers`]).
    pub fn pinned(servers: Vec<String>, token: &Token, known_servers: &Path) -> Servers {
        Servers::new(
            servers
                .into_iter()
                .map(|server| {
                    ClientConfig::new(
                        server,
                        ServerTrust::KnownServers(known_servers.to_path_buf()),
                        token.clone(),
                    )
                })
                .collect(),
        )
    }

    /// The same servers, their names looked up by `resolver`.
    pub fn with_resolver(self, resolver: Arc<dyn Resolve>) -> Servers {
        Servers { resolver, ..self }
    }

    /// The client settings as given, one per server or name.
    pub fn configs(&self) -> &[ClientConfig] {
        &self.configs
    }

    /// Whether the settings at `origin` name their server by a host name to look up (not by
    /// an address).
    pub(crate) fn is_name(&self, origin: usize) -> bool {
        self.configs[origin].address.is_none()
            && self.configs[origin].server.parse::<SocketAddr>().is_err()
    }

    /// Every server to connect to, in the order given: a name expanded to each of its
    /// addresses (an address listed twice counts once), or the name with why it does not
    /// resolve.
    pub(crate) async fn resolve(&self) -> Vec<Result<Resolved, (String, ClientError)>> {
        let mut seen = Vec::new();
        let mut out = Vec::new();
        for origin in 0..self.configs.len() {
            let addrs = match self.addresses(origin).await {
                Ok(addrs) => addrs,
                Err(e) => {
                    out.push(Err((self.configs[origin].server.clone(), e)));
                    continue;
                }
            };
            for addr in addrs {
                if seen.contains(&addr) {
                    continue;
                }
                seen.push(addr);
                out.push(Ok(self.member(origin, addr)));
            }
        }
        out
    }

    /// The server at `addr` under the settings at `origin`.
    pub(crate) fn member(&self, origin: usize, addr: SocketAddr) -> Resolved {
        let mut config = self.configs[origin].clone();
        config.address = Some(addr);
        Resolved {
            origin,
            address: addr,
            label: label(&config.server, addr),
            config,
            in_flight: self.counter(addr),
        }
    }

    /// The addresses the settings at `origin` reach: their own address when set, else every
    /// address their server name resolves to within [`LOOKUP_TIMEOUT`] (none is an error).
    pub(crate) async fn addresses(&self, origin: usize) -> Result<Vec<SocketAddr>, ClientError> {
        let config = &self.configs[origin];
        if let Some(addr) = config.address {
            return Ok(vec![addr]);
        }
        let resolve_err = |reason: String| ClientError::Resolve {
            server: config.server.clone(),
            reason,
        };
        let lookup = tokio::time::timeout(LOOKUP_TIMEOUT, self.resolver.lookup(&config.server));
        let mut addrs = lookup
            .await
            .map_err(|_| resolve_err(format!("no answer within {LOOKUP_TIMEOUT:?}")))?
            .map_err(resolve_err)?;
        let mut seen = Vec::with_capacity(addrs.len());
        addrs.retain(|a| {
            let new = !seen.contains(a);
            seen.push(*a);
            new
        });
        if addrs.is_empty() {
            return Err(resolve_err("no address found".into()));
        }
        Ok(addrs)
    }

    /// The in-flight count of `addr`, shared by every session connected from this value.
    fn counter(&self, addr: SocketAddr) -> Arc<AtomicUsize> {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(addr)
            .or_default()
            .clone()
    }
}

impl Default for Servers {
    /// No server.
    fn default() -> Servers {
        Servers::new(Vec::new())
    }
}

impl From<ClientConfig> for Servers {
    fn from(config: ClientConfig) -> Servers {
        Servers::new(vec![config])
    }
}

impl From<Vec<ClientConfig>> for Servers {
    fn from(configs: Vec<ClientConfig>) -> Servers {
        Servers::new(configs)
    }
}

/// How messages name a server: its address, after its name when it was given by name.
fn label(server: &str, addr: SocketAddr) -> String {
    if server == addr.to_string() {
        server.to_string()
    } else {
        format!("{server} ({addr})")
    }
}

/// One server as a session sees it.
#[derive(Debug)]
pub(crate) struct Member {
    /// The connection, reconnecting in the background after a fault.
    pub link: CloudLink,
    /// The index of the client settings (name or address) it came from, in
    /// [`Servers::configs`].
    pub origin: usize,
    /// The address it is reached at.
    pub address: SocketAddr,
    /// How messages name the server.
    pub label: String,
    /// The connection generation whose welcome was checked.
    pub seen_generation: u64,
    /// The connection generation whose published costs `costs` reflects.
    pub costs_generation: u64,
    /// The costs the planner uses for this server.
    pub costs: ServerCosts,
    /// The server's last reported expected wait, fading with age.
    pub wait: WaitEstimate,
    /// Requests in flight to this server, shared by the sessions connected from one
    /// [`Servers`].
    pub in_flight: Arc<AtomicUsize>,
}

impl Member {
    /// The wait a new request should expect here, ms: the reported wait faded with age, plus
    /// one whole network's cloud time for each request in flight to the server now (from
    /// this session or its siblings), which the report may not count yet.
    pub fn expected_wait_ms(&self, now: std::time::Instant) -> f64 {
        let graph = &self.costs.graph;
        let network_ms: f64 = (0..graph.len()).map(|v| graph.cloud_ms(v)).sum();
        let in_flight = self.in_flight.load(Ordering::Relaxed) as f64;
        self.wait.value(now) + in_flight * network_ms
    }
}

/// Counts one request in flight to a server while it lives.
pub(crate) struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    /// Counts a request to the server of `counter`.
    pub fn start(counter: &Arc<AtomicUsize>) -> InFlight {
        counter.fetch_add(1, Ordering::Relaxed);
        InFlight(counter.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The option to use among `values` (the plans' objective values, one per server, in the
/// session's order): the cheapest, or, among those within `tolerance` (a share) of the
/// cheapest, the first at or after `turn` counting round the list, so that equal servers take
/// requests in turn. `None` when `values` is empty.
pub(crate) fn pick(values: &[f64], tolerance: f64, turn: usize) -> Option<usize> {
    let best = values.iter().copied().fold(f64::INFINITY, f64::min);
    let n = values.len();
    (0..n)
        .map(|k| (turn + k) % n)
        .find(|&i| values[i] <= best + best.abs() * tolerance)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_takes_one_server_or_several() {
        assert_eq!(Servers::parse_list("a:1").expect("one"), ["a:1"]);
        assert_eq!(
            Servers::parse_list("a:1, 10.0.0.2:4433,[::1]:9").expect("three"),
            ["a:1", "10.0.0.2:4433", "[::1]:9"]
        );
        for bad in ["", "a:1,", "a", "a:port", ":1", "a:1,,b:2"] {
            let err = Servers::parse_list(bad).expect_err(bad).to_string();
            assert!(err.contains("HOST:PORT"), "{err}");
        }
    }

    #[test]
    fn equal_servers_take_turns_and_a_cheaper_one_wins() {
        assert_eq!(pick(&[], 0.05, 0), None);
        let equal = [10.0, 10.2, 10.1];
        let turns: Vec<usize> = (0..6).filter_map(|t| pick(&equal, 0.05, t)).collect();
        assert_eq!(turns, [0, 1, 2, 0, 1, 2]);
        let one_cheaper = [10.0, 5.0, 10.0];
        assert!((0..3).all(|t| pick(&one_cheaper, 0.05, t) == Some(1)));
    }

    #[test]
    fn a_name_expands_to_its_addresses_and_an_address_counts_once() {
        let rt = crate::async_runtime().expect("runtime");
        let token = transport::Token::generate().expect("token");
        let trust = transport::ServerTrust::Fingerprint(transport::Fingerprint::of_der(b"x"));
        let config = |server: &str| ClientConfig::new(server, trust.clone(), token.clone());
        let servers = Servers::new(vec![
            config("127.0.0.1:4433"),
            config("127.0.0.1:4434"),
            config("127.0.0.1:4433"),
            config("no-such-host.invalid:4433"),
        ]);
        let resolved = rt.block_on(servers.resolve());
        let labels: Vec<String> = resolved
            .iter()
            .map(|r| match r {
                Ok(r) => r.label.clone(),
                Err((server, _)) => format!("unresolved {server}"),
            })
            .collect();
        assert_eq!(
            labels,
            [
                "127.0.0.1:4433",
                "127.0.0.1:4434",
                "unresolved no-such-host.invalid:4433"
            ]
        );
        assert_eq!(
            label("pool:1", "10.0.0.2:1".parse().expect("addr")),
            "pool:1 (10.0.0.2:1)"
        );
    }
}
