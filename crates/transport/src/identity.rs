//! TLS identities and trust: the server's certificate, its SHA-256 fingerprint, the client's
//! known-servers file (trust on first use, as ssh does) and CA files.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::auth::{hex, write_private};

/// Largest known-servers file read, in bytes.
const MAX_KNOWN_SERVERS_BYTES: u64 = 1024 * 1024;

/// Why an identity or trust file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O failure.
        source: std::io::Error,
    },
    /// A PEM file holds no usable certificate or key.
    #[error(
        "{path}: {what}; give a PEM file with a certificate chain and a PKCS#8, PKCS#1 or SEC1 key"
    )]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is missing or wrong.
        what: String,
    },
    /// The self-signed certificate could not be generated.
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(String),
    /// A line of the known-servers file is not `host:port sha256:<64 hex digits>`.
    #[error(
        "{path}, line {line}: expected `host:port sha256:<64 hex digits>`; fix or delete the line"
    )]
    KnownServersSyntax {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
    /// The known-servers file is larger than 1 MiB.
    #[error("{path} is larger than 1 MiB; it is not a known-servers file")]
    KnownServersTooLarge {
        /// The file.
        path: PathBuf,
    },
    /// A fingerprint string is not `sha256:<64 hex digits>`.
    #[error("`{0}` is not a fingerprint; expected sha256: followed by 64 hex digits")]
    BadFingerprint(String),
    /// rustls refused the configuration.
    #[error("TLS configuration refused: {0}")]
    Tls(#[from] rustls::Error),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
    move |source| IdentityError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A SHA-256 fingerprint of a DER certificate, shown as `sha256:<hex>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER-encoded certificate.
    pub fn of_der(der: &[u8]) -> Self {
        Fingerprint(Sha256::digest(der).into())
    }

    /// Parses `sha256:<64 hex digits>` (the prefix is optional, colons between bytes allowed).
    pub fn parse(text: &str) -> Result<Self, IdentityError> {
        let bad = || IdentityError::BadFingerprint(text.to_owned());
        let digits: String = text
            .trim()
            .strip_prefix("sha256:")
            .unwrap_or(text.trim())
            .chars()
            .filter(|&c| c != ':')
            .collect();
        if digits.len() != 64 || !digits.is_ascii() {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&digits[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Fingerprint(out))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex(&self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The server's certificate chain and private key.
#[derive(Debug)]
pub struct ServerIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Clone for ServerIdentity {
    fn clone(&self) -> Self {
        ServerIdentity {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

/// Names a self-signed certificate is issued for.
const SELF_SIGNED_NAMES: [&str; 2] = ["cutpoint", "localhost"];

impl ServerIdentity {
    /// A new self-signed certificate (ECDSA P-256) for `cutpoint` and `localhost`.
    pub fn self_signed() -> Result<Self, IdentityError> {
        let names: Vec<String> = SELF_SIGNED_NAMES.iter().map(|s| s.to_string()).collect();
        let certified = rcgen::generate_simple_self_signed(names)
            .map_err(|e| IdentityError::Generate(e.to_string()))?;
        Ok(ServerIdentity {
            chain: vec![certified.cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into()),
        })
    }

    /// Loads `cert.pem` and `key.pem` from `dir`, or creates a self-signed pair there (the key
    /// with mode 0600) when neither exists.
    pub fn load_or_create(dir: &Path) -> Result<Self, IdentityError> {
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        if cert.exists() || key.exists() {
            return ServerIdentity::from_pem_files(&cert, &key);
        }
        let names: Vec<String> = SELF_SIGNED_NAMES.iter().map(|s| s.to_string()).collect();
        let certified = rcgen::generate_simple_self_signed(names)
            .map_err(|e| IdentityError::Generate(e.to_string()))?;
        write_private(&key, certified.signing_key.serialize_pem().as_bytes())
            .map_err(io_err(&key))?;
        std::fs::write(&cert, certified.cert.pem()).map_err(io_err(&cert))?;
        ServerIdentity::from_pem_files(&cert, &key)
    }

    /// Loads a PEM certificate chain and private key.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, IdentityError> {
        let pem = |path: &Path, what: String| IdentityError::Pem {
            path: path.to_owned(),
            what,
        };
        let bytes = std::fs::read(cert).map_err(io_err(cert))?;
        let chain = CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem(cert, e.to_string()))?;
        if chain.is_empty() {
            return Err(pem(cert, "no certificate found".into()));
        }
        let bytes = std::fs::read(key).map_err(io_err(key))?;
        let key_der = PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| pem(key, e.to_string()))?;
        Ok(ServerIdentity {
            chain,
            key: key_der,
        })
    }

    /// The fingerprint clients pin: SHA-256 of the leaf certificate.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of_der(self.chain.first().map(|c| c.as_ref()).unwrap_or(&[]))
    }

    pub(crate) fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.chain.clone()
    }

    pub(crate) fn key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }
}

/// A known-servers file: one `host:port sha256:<hex>` per line, `#` starts a comment.
#[derive(Debug, Clone)]
pub struct KnownServers {
    path: PathBuf,
    entries: Vec<(String, Fingerprint)>,
}

impl KnownServers {
    /// Reads the file; a missing file is an empty list.
    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        let text = match std::fs::File::open(path) {
            Ok(file) => {
                use std::io::Read;
                let mut text = String::new();
                file.take(MAX_KNOWN_SERVERS_BYTES + 1)
                    .read_to_string(&mut text)
                    .map_err(io_err(path))?;
                if text.len() as u64 > MAX_KNOWN_SERVERS_BYTES {
                    return Err(IdentityError::KnownServersTooLarge {
                        path: path.to_owned(),
                    });
                }
                text
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io_err(path)(e)),
        };
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let syntax = || IdentityError::KnownServersSyntax {
                path: path.to_owned(),
                line: i + 1,
            };
            let mut parts = line.split_whitespace();
            let (Some(host), Some(fp), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(syntax());
            };
            let fp = Fingerprint::parse(fp).map_err(|_| syntax())?;
            entries.push((host.to_owned(), fp));
        }
        Ok(KnownServers {
            path: path.to_owned(),
            entries,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pinned fingerprint of `host` (`host:port`), if any.
    pub fn get(&self, host: &str) -> Option<Fingerprint> {
        self.entries
            .iter()
            .find(|(h, _)| h == host)
            .map(|(_, fp)| *fp)
    }

    /// Pins `host` to `fingerprint` and appends the line to the file.
    pub fn add(&mut self, host: &str, fingerprint: Fingerprint) -> Result<(), IdentityError> {
        use std::io::Write;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.path)
            .map_err(io_err(&self.path))?;
        // One write of the whole line: a reader of the file (another connection checking its
        // pin) never sees half of it.
        file.write_all(format!("{host} {fingerprint}\n").as_bytes())
            .map_err(io_err(&self.path))?;
        self.entries.push((host.to_owned(), fingerprint));
        Ok(())
    }
}

/// One lock per known-servers file and name not pinned yet: see [`first_use_turn`].
type FirstUseLocks = HashMap<(PathBuf, String), Arc<tokio::sync::Mutex<()>>>;

static FIRST_USE: LazyLock<Mutex<FirstUseLocks>> = LazyLock::new(Mutex::default);

/// Waits for this connection's turn to pin `host` in the known-servers file at `path`, and
/// holds it while the guard lives. Connections to a name that has no pin yet (the addresses
/// of one pool name, connecting together) take turns, so that the first pin is decided once:
/// each connection after the first finds the pin and is checked against it. Turns are taken
/// within this process only.
pub(crate) async fn first_use_turn(path: &Path, host: &str) -> tokio::sync::OwnedMutexGuard<()> {
    let lock = {
        let mut locks = FIRST_USE.lock().unwrap_or_else(PoisonError::into_inner);
        // Locks nobody holds or waits for are dropped, so the map stays as small as the
        // names being pinned now.
        locks.retain(|_, lock| Arc::strong_count(lock) > 1);
        locks
            .entry((path.to_owned(), host.to_owned()))
            .or_default()
            .clone()
    };
    lock.lock_owned().await
}

/// Loads the certificates of a PEM CA file into a root store.
pub(crate) fn load_ca_file(path: &Path) -> Result<rustls::RootCertStore, IdentityError> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        let cert = cert.map_err(|e| IdentityError::Pem {
            path: path.to_owned(),
            what: e.to_string(),
        })?;
        roots.add(cert)?;
    }
    if roots.is_empty() {
        return Err(IdentityError::Pem {
            path: path.to_owned(),
            what: "no CA certificate found".into(),
        });
    }
    Ok(roots)
}

/// Accepts exactly the server certificate whose fingerprint is `expected`, or any certificate
/// when `expected` is `None` (first use). Records the fingerprint it saw either way, so the
/// caller can pin it or explain a refusal.
#[derive(Debug)]
pub(crate) struct PinVerifier {
    expected: Option<Fingerprint>,
    seen: Mutex<Option<Fingerprint>>,
    provider: Arc<CryptoProvider>,
}

impl PinVerifier {
    pub(crate) fn new(expected: Option<Fingerprint>, provider: Arc<CryptoProvider>) -> Self {
        PinVerifier {
            expected,
            seen: Mutex::new(None),
            provider,
        }
    }

    /// The fingerprint the server presented, if the handshake got that far.
    pub(crate) fn seen(&self) -> Option<Fingerprint> {
        self.seen.lock().ok().and_then(|s| *s)
    }
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let fp = Fingerprint::of_der(end_entity.as_ref());
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(fp);
        }
        match self.expected {
            Some(expected) if expected != fp => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            )),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // The client configuration allows TLS 1.3 only.
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_display_parses_back() {
        let fp = Fingerprint::of_der(b"certificate");
        let text = fp.to_string();
        assert!(text.starts_with("sha256:"));
        assert_eq!(Fingerprint::parse(&text).expect("parses"), fp);
        assert!(Fingerprint::parse("sha256:abc").is_err());
        assert!(Fingerprint::parse(&"é".repeat(64)).is_err());
    }

    #[test]
    fn identity_persists_across_loads() {
        let dir = tempfile::tempdir().expect("temp dir");
        let a = ServerIdentity::load_or_create(dir.path()).expect("creates");
        let b = ServerIdentity::load_or_create(dir.path()).expect("loads");
        assert_eq!(a.fingerprint(), b.fingerprint());
        let c = ServerIdentity::self_signed().expect("creates");
        assert_ne!(a.fingerprint(), c.fingerprint());
    }

    #[test]
    fn half_an_identity_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("cert.pem"), "not pem").expect("writes");
        let err = ServerIdentity::load_or_create(dir.path()).expect_err("broken");
        assert!(err.to_string().contains("cert.pem"), "{err}");
    }

    #[test]
    fn known_servers_round_trip_and_syntax_errors() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("known_servers");
        let mut known = KnownServers::load(&path).expect("missing file is empty");
        assert_eq!(known.get("a:1"), None);
        let fp = Fingerprint::of_der(b"x");
        known.add("a:1", fp).expect("appends");
        let again = KnownServers::load(&path).expect("reads");
        assert_eq!(again.get("a:1"), Some(fp));
        std::fs::write(&path, "# comment\nhost:1 sha256:zz\n").expect("writes");
        let err = KnownServers::load(&path).expect_err("bad line");
        assert!(err.to_string().contains("line 2"), "{err}");
    }
}
