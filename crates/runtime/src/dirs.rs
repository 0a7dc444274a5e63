//! Where cutpoint keeps its files on this machine, after the XDG base directory convention.

use std::path::PathBuf;

use crate::error::RuntimeError;

/// A kind of per-user directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserDir {
    /// What cutpoint builds for itself and can rebuild (the quick profile):
    /// `$XDG_CACHE_HOME/cutpoint`, or `~/.cache/cutpoint`.
    Cache,
    /// What the user configures or pins (known servers): `$XDG_CONFIG_HOME/cutpoint`, or
    /// `~/.config/cutpoint`.
    Config,
    /// What a server must keep (its identity and token): `$XDG_DATA_HOME/cutpoint`, or
    /// `~/.local/share/cutpoint`.
    Data,
}

impl UserDir {
    /// The environment variable that names the base directory.
    fn variable(self) -> &'static str {
        match self {
            UserDir::Cache => "XDG_CACHE_HOME",
            UserDir::Config => "XDG_CONFIG_HOME",
            UserDir::Data => "XDG_DATA_HOME",
        }
    }

    /// The base directory below `$HOME` when the variable is not set.
    fn under_home(self) -> &'static str {
        match self {
            UserDir::Cache => ".cache",
            UserDir::Config => ".config",
            UserDir::Data => ".local/share",
        }
    }

    /// What the directory is for, in errors.
    fn purpose(self) -> &'static str {
        match self {
            UserDir::Cache => "cache directory",
            UserDir::Config => "configuration directory",
            UserDir::Data => "data directory",
        }
    }

    /// cutpoint's directory of this kind: `$XDG_…_HOME/cutpoint`, or the conventional place
    /// under `$HOME`. An empty variable counts as unset. It is not created.
    pub fn path(self) -> Result<PathBuf, RuntimeError> {
        let from_env = |var: &str| std::env::var_os(var).map(PathBuf::from);
        self.path_from(from_env(self.variable()), from_env("HOME"))
    }

    /// [`UserDir::path`] for the given value of its variable and of `HOME`.
    fn path_from(
        self,
        variable: Option<PathBuf>,
        home: Option<PathBuf>,
    ) -> Result<PathBuf, RuntimeError> {
        let set = |v: Option<PathBuf>| v.filter(|p| !p.as_os_str().is_empty());
        let base = match (set(variable), set(home)) {
            (Some(base), _) => base,
            (None, Some(home)) => home.join(self.under_home()),
            (None, None) => {
                return Err(RuntimeError::Config {
                    name: self.purpose(),
                    reason: format!(
                        "neither {} nor HOME is set; set one of them",
                        self.variable()
                    ),
                });
            }
        };
        Ok(base.join("cutpoint"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variable_wins_then_home_and_empty_counts_as_unset() {
        let p = |s: &str| Some(PathBuf::from(s));
        let path = UserDir::Cache.path_from(p("/x/cache"), p("/home/u"));
        assert_eq!(path.expect("set"), PathBuf::from("/x/cache/cutpoint"));
        let path = UserDir::Data.path_from(p(""), p("/home/u"));
        assert_eq!(
            path.expect("home"),
            PathBuf::from("/home/u/.local/share/cutpoint")
        );
        let path = UserDir::Config.path_from(None, p("/home/u"));
        assert_eq!(
            path.expect("home"),
            PathBuf::from("/home/u/.config/cutpoint")
        );
        let err = UserDir::Config.path_from(None, p("")).expect_err("neither");
        assert!(
            err.to_string().contains("XDG_CONFIG_HOME nor HOME"),
            "{err}"
        );
    }
}
