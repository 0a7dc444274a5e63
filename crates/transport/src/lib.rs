//! The wire between edge and cloud.
//!
//! This crate will own the QUIC endpoints (quinn + rustls, TLS 1.3), server pinning by
//! certificate fingerprint, token authentication, the length-framed MessagePack protocol with
//! bounded decoding, `WireTensor`, and the passive bandwidth / RTT estimator. It knows bytes,
//! shapes and dtypes, never Burn.
//!
//! Status: not built yet; see the transport issue in the tracker.
