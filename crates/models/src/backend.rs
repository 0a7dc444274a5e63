//! The one backend choice the CLIs expose (`--backend flex|ndarray|wgpu`).
//!
//! In burn 0.22 the backend is a run-time [`Device`], so the model code carries no backend type.
//! `flex` (pure Rust, SIMD and rayon) is always built and is the default: it was the fastest CPU
//! backend measured here. `ndarray` and `wgpu` need the crate features of the same names.

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;

use crate::error::ModelError;

/// A Burn backend to run models on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Backend {
    /// `burn-flex`: pure-Rust CPU kernels with SIMD and rayon. The default.
    #[default]
    Flex,
    /// `burn-ndarray` on the CPU (deprecated upstream; needs the `ndarray` feature).
    Ndarray,
    /// `burn-wgpu` on the default adapter, e.g. Mesa's lavapipe on a CPU-only machine (needs the
    /// `wgpu` feature).
    Wgpu,
}

impl Backend {
    /// Every backend, compiled in or not.
    pub const ALL: [Backend; 3] = [Backend::Flex, Backend::Ndarray, Backend::Wgpu];

    /// The backends this build can run.
    pub fn available() -> Vec<Backend> {
        Backend::ALL
            .into_iter()
            .filter(|b| b.is_compiled_in())
            .collect()
    }

    /// The name the CLIs accept.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Flex => "flex",
            Backend::Ndarray => "ndarray",
            Backend::Wgpu => "wgpu",
        }
    }

    /// Whether this build includes the backend.
    pub fn is_compiled_in(self) -> bool {
        match self {
            Backend::Flex => true,
            Backend::Ndarray => cfg!(feature = "ndarray"),
            Backend::Wgpu => cfg!(feature = "wgpu"),
        }
    }

    /// The backend's device, or an error that says which cargo feature to build with.
    pub fn device(self) -> Result<Device, ModelError> {
        match self {
            Backend::Flex => Ok(Device::flex()),
            #[cfg(feature = "ndarray")]
            #[allow(deprecated)]
            // upstream prefers flex; ndarray stays selectable for comparison
            Backend::Ndarray => Ok(Device::ndarray()),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
            #[allow(unreachable_patterns)] // every backend may be compiled in
            other => Err(ModelError::UnknownName {
                what: "backend (not compiled in; rebuild with `--features`)",
                name: other.name().to_string(),
                choices: Backend::available()
                    .iter()
                    .map(|b| b.name())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Backend, ModelError> {
        Backend::ALL
            .into_iter()
            .find(|b| b.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| ModelError::UnknownName {
                what: "backend",
                name: s.to_string(),
                choices: Backend::ALL.map(Backend::name).join(", "),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_flex_is_default() {
        assert_eq!(Backend::default(), Backend::Flex);
        for b in Backend::ALL {
            assert_eq!(b.name().parse::<Backend>().expect("parses"), b);
        }
        assert!("cuda".parse::<Backend>().is_err());
        assert!(Backend::available().contains(&Backend::Flex));
        Backend::Flex.device().expect("flex is always built");
    }

    #[test]
    fn missing_backend_says_how_to_get_it() {
        if !Backend::Ndarray.is_compiled_in() {
            let msg = Backend::Ndarray
                .device()
                .expect_err("not built")
                .to_string();
            assert!(msg.contains("--features"), "{msg}");
        }
    }
}
