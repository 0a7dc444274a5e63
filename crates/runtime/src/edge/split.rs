//! How an [`crate::EdgeSession`] chooses its cut.

use std::fmt;
use std::str::FromStr;

use crate::error::RuntimeError;

/// Which nodes run on the cloud.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SplitMode {
    /// The solver's cut for the live link and load, kept until a new one saves enough.
    #[default]
    Auto,
    /// Everything on the edge; the network is never used.
    EdgeOnly,
    /// Everything but the input on the cloud.
    CloudOnly,
    /// Exactly these nodes on the cloud (a successor-closed set without `input`).
    Fixed(Vec<String>),
}

impl FromStr for SplitMode {
    type Err = RuntimeError;

    /// `auto`, `edge`, `cloud`, or a comma-separated list of node ids.
    fn from_str(s: &str) -> Result<SplitMode, RuntimeError> {
        match s.trim() {
            "auto" => Ok(SplitMode::Auto),
            "edge" => Ok(SplitMode::EdgeOnly),
            "cloud" => Ok(SplitMode::CloudOnly),
            "" => Err(RuntimeError::Config {
                name: "split",
                reason: "empty; use auto, edge, cloud or a comma-separated list of node ids".into(),
            }),
            list => {
                let ids: Vec<String> = list.split(',').map(|id| id.trim().to_string()).collect();
                if ids.iter().any(String::is_empty) {
                    return Err(RuntimeError::Config {
                        name: "split",
                        reason: format!(
                            "`{list}` has an empty node id; separate ids with single commas"
                        ),
                    });
                }
                Ok(SplitMode::Fixed(ids))
            }
        }
    }
}

impl fmt::Display for SplitMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SplitMode::Auto => f.write_str("auto"),
            SplitMode::EdgeOnly => f.write_str("edge"),
            SplitMode::CloudOnly => f.write_str("cloud"),
            SplitMode::Fixed(ids) => f.write_str(&ids.join(",")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_every_mode() {
        for (text, mode) in [
            ("auto", SplitMode::Auto),
            ("edge", SplitMode::EdgeOnly),
            ("cloud", SplitMode::CloudOnly),
            (
                "fc,relu",
                SplitMode::Fixed(vec!["fc".into(), "relu".into()]),
            ),
        ] {
            assert_eq!(text.parse::<SplitMode>().expect("parses"), mode);
            assert_eq!(mode.to_string(), text);
        }
        assert!("".parse::<SplitMode>().is_err());
        let msg = "fc,,relu"
            .parse::<SplitMode>()
            .expect_err("empty id")
            .to_string();
        assert!(msg.contains("empty node id"), "{msg}");
    }
}
