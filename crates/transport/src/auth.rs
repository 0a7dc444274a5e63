//! The pre-shared client token: read from a file or an environment variable, never a flag.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Shortest token accepted, in characters.
pub const MIN_TOKEN_CHARS: usize = 16;
/// Longest token accepted, in characters (and the most read from a token file).
pub const MAX_TOKEN_CHARS: usize = 4096;

/// Why a token could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token file could not be read.
    #[error(
        "cannot read token file {path}: {source}; create it with the token the server printed, or point to the right file"
    )]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O failure.
        source: std::io::Error,
    },
    /// The token file could not be written.
    #[error("cannot write token file {path}: {source}; check the directory exists and is writable")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O failure.
        source: std::io::Error,
    },
    /// The environment variable is not set.
    #[error("environment variable {var} is not set; export it with the token, or use a token file")]
    MissingEnv {
        /// The variable.
        var: String,
    },
    /// The token is too short, too long or not printable.
    #[error(
        "token from {origin} is invalid: it must be {MIN_TOKEN_CHARS} to {MAX_TOKEN_CHARS} printable ASCII characters without spaces"
    )]
    Invalid {
        /// Where the token came from.
        origin: String,
    },
    /// The system random generator failed.
    #[error("the system random generator failed; cannot create a token")]
    Random,
}

/// A pre-shared token. Its `Debug` output never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    /// Checks and wraps a token string. `origin` names where it came from, for errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, TokenError> {
        let text = text.trim();
        let ok = (MIN_TOKEN_CHARS..=MAX_TOKEN_CHARS).contains(&text.len())
            && text.bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            return Err(TokenError::Invalid {
                origin: origin.to_owned(),
            });
        }
        Ok(Token(text.to_owned()))
    }

    /// Reads a token from a file (surrounding whitespace ignored; at most 4 KiB is read).
    pub fn from_file(path: &Path) -> Result<Self, TokenError> {
        use std::io::Read;
        let read_err = |source| TokenError::Read {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_err)?;
        let mut text = String::new();
        file.take(MAX_TOKEN_CHARS as u64 + 64)
            .read_to_string(&mut text)
            .map_err(read_err)?;
        Token::parse(&text, &path.display().to_string())
    }

    /// Reads a token from the environment variable `var`.
    pub fn from_env(var: &str) -> Result<Self, TokenError> {
        let text = std::env::var(var).map_err(|_| TokenError::MissingEnv {
            var: var.to_owned(),
        })?;
        Token::parse(&text, &format!("${var}"))
    }

    /// A fresh random token: 32 random bytes as 64 hex characters.
    pub fn generate() -> Result<Self, TokenError> {
        use ring::rand::SecureRandom;
        let mut bytes = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| TokenError::Random)?;
        Ok(Token(hex(&bytes)))
    }

    /// Reads the token in `path`, or creates a random one there (mode 0600 on Unix) when the
    /// file does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, TokenError> {
        if path.exists() {
            return Token::from_file(path);
        }
        let token = Token::generate()?;
        write_private(path, format!("{}\n", token.0).as_bytes()).map_err(|source| {
            TokenError::Write {
                path: path.to_owned(),
                source,
            }
        })?;
        Ok(token)
    }

    /// The secret itself, to put in a [`crate::Hello`].
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares with `candidate` in time independent of where they differ.
    pub fn matches(&self, candidate: &str) -> bool {
        let a = Sha256::digest(self.0.as_bytes());
        let b = Sha256::digest(candidate.as_bytes());
        a.iter()
            .zip(b.iter())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
    }
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes a file readable by its owner only (on Unix), creating parent directories.
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_rejects_short_and_spaced_tokens() {
        assert!(Token::parse("short", "test").is_err());
        assert!(Token::parse("has a space in the middle", "test").is_err());
        assert!(Token::parse("  0123456789abcdef\n", "test").is_ok());
    }

    #[test]
    fn matches_only_the_same_token() {
        let t = Token::parse("0123456789abcdef", "test").expect("valid");
        assert!(t.matches("0123456789abcdef"));
        assert!(!t.matches("0123456789abcdeg"));
        assert!(!t.matches(""));
    }

    #[test]
    fn debug_hides_the_secret() {
        let t = Token::parse("0123456789abcdef", "test").expect("valid");
        assert!(!format!("{t:?}").contains("0123"));
    }

    #[test]
    fn load_or_create_persists() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sub").join("token");
        let a = Token::load_or_create(&path).expect("creates");
        let b = Token::load_or_create(&path).expect("reads");
        assert_eq!(a, b);
        assert_eq!(a.expose().len(), 64);
    }

    #[test]
    fn missing_env_names_the_variable() {
        let err = Token::from_env("CUTPOINT_TEST_SURELY_UNSET_VAR").expect_err("unset");
        assert!(err.to_string().contains("CUTPOINT_TEST_SURELY_UNSET_VAR"));
    }
}
