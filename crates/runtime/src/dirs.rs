//! Where cutpoint keeps its files on this machine, after the XDG base directory convention:
//! the per-user directories ([`UserDir`]), the edge's known-servers file
//! ([`default_known_servers`]) and a cloud server's state directory ([`StateDir`]).

use std::path::{Path, PathBuf};

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

/// The file where an edge pins the servers' certificates unless told otherwise:
/// `known_servers` in [`UserDir::Config`].
pub fn default_known_servers() -> Result<PathBuf, RuntimeError> {
    Ok(UserDir::Config.path()?.join("known_servers"))
}

/// Where a cloud server keeps what it must keep across restarts: its identity (a self-signed
/// certificate and key) and the token edges present. `cutpoint-cloud serve` creates them
/// there; `cutpoint-cloud check` reads them back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir(PathBuf);

impl StateDir {
    /// `dir`, or [`UserDir::Data`] when `None`. The directory is not created.
    pub fn new(dir: Option<PathBuf>) -> Result<StateDir, RuntimeError> {
        Ok(StateDir(match dir {
            Some(dir) => dir,
            None => UserDir::Data.path()?,
        }))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The directory of the server's identity ([`transport::ServerIdentity::load_or_create`]).
    pub fn identity(&self) -> PathBuf {
        self.0.join("identity")
    }

    /// The token file.
    pub fn token_file(&self) -> PathBuf {
        self.0.join("token")
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

    #[test]
    fn a_state_dir_holds_the_identity_and_the_token() {
        let state = StateDir::new(Some(PathBuf::from("/srv/cutpoint"))).expect("given");
        assert_eq!(state.path(), Path::new("/srv/cutpoint"));
        assert_eq!(state.identity(), PathBuf::from("/srv/cutpoint/identity"));
        assert_eq!(state.token_file(), PathBuf::from("/srv/cutpoint/token"));
    }
}
