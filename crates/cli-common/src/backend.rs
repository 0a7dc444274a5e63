//! The `--backend` flag every command that runs a network takes.

use clap::Args;
use models::Backend;

/// Which backend runs the networks.
#[derive(Args, Debug, Clone, Copy)]
pub struct BackendArg {
    /// Backend: flex (default, fastest on CPU), ndarray, or wgpu (Vulkan); ndarray and wgpu
    /// need the cargo feature of the same name.
    #[arg(long, value_name = "NAME", default_value = "flex", value_parser = parse_backend)]
    pub backend: Backend,
}

/// Parses `--backend` (a clap `value_parser`): a backend this program was built with, naming
/// the choices on a typo and the cargo feature for a backend left out of the build.
pub fn parse_backend(name: &str) -> Result<Backend, String> {
    let backend = name.parse::<Backend>().map_err(|e| e.to_string())?;
    if !backend.is_compiled_in() {
        let built: Vec<&str> = Backend::available().iter().map(|b| b.name()).collect();
        return Err(format!(
            "this program was built without the {backend} backend; rebuild it with `--features {backend}`, or pick one of: {}",
            built.join(", ")
        ));
    }
    Ok(backend)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flex_is_always_there_and_typos_name_the_choices() {
        assert_eq!(parse_backend("flex"), Ok(Backend::Flex));
        let err = parse_backend("flux").expect_err("a typo");
        assert!(err.contains("flex"), "{err}");
    }

    #[test]
    fn a_backend_left_out_of_the_build_names_its_feature() {
        for backend in Backend::ALL.into_iter().filter(|b| !b.is_compiled_in()) {
            let err = parse_backend(backend.name()).expect_err("not built in");
            assert!(err.contains(&format!("--features {backend}")), "{err}");
        }
    }
}
