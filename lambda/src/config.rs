//! `finops.toml`: where billing data comes from and where outputs go. Strict: an unknown key is
//! an error, not a silent default. Every field has a default that runs on the committed fixtures.

use std::path::{Path, PathBuf};

use finops_ingest::store::AwsSettings;
use finops_ingest::Format;
use serde::Deserialize;

/// The validated configuration the jobs run with.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub source: SourceConfig,
    pub output: OutputConfig,
    pub aws: AwsSettings,
    pub tags: TagConfig,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    /// A local folder or `s3://bucket/prefix`: the CUR 2.0 export folder (holding `data/` and
    /// `metadata/`), a legacy CUR report folder, or a folder of FOCUS files.
    pub location: String,
    pub format: Format,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig { location: default_fixtures().display().to_string(), format: Format::Auto }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// A local folder; one sub-folder per billing period is written under it.
    pub location: String,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig { location: "out".into() }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TagConfig {
    /// Tag keys to read from the billing data, in priority order.
    pub keys: Vec<String>,
}

impl Default for TagConfig {
    fn default() -> Self {
        TagConfig { keys: vec!["team".into(), "Team".into(), "owner".into()] }
    }
}

/// The committed CUR 2.0 fixtures: `fixtures/cur2` under the current folder when run from the
/// repository, else the copy beside the sources this binary was built from.
pub fn default_fixtures() -> PathBuf {
    let local = Path::new("fixtures/cur2");
    if local.is_dir() {
        local.to_path_buf()
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/cur2")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}", path = path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}", path = path.display())]
    Invalid { path: PathBuf, message: String },
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Config::parse(&text).map_err(|message| ConfigError::Invalid { path: path.to_path_buf(), message })
    }

    /// Parses the TOML text; the error carries line and column.
    pub fn parse(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| {
            let position = e.span().map(|span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                format!("line {line}, column {column}: ")
            });
            format!("{}{}", position.unwrap_or_default(), e.message())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_errors_with_a_position() {
        let err = Config::parse("[source]\nlocaton = \"x\"\n").unwrap_err();
        assert!(err.starts_with("line 2, column 1: "), "{err}");
        assert!(err.contains("locaton"), "{err}");
    }

    #[test]
    fn reads_every_section() {
        let config = Config::parse(
            "[source]\nlocation = \"s3://b/p\"\nformat = \"cur2\"\n[output]\nlocation = \"o\"\n[aws]\nregion = \"us-east-1\"\nendpoint_url = \"http://127.0.0.1:5000\"\n[tags]\nkeys = [\"team\"]\n",
        )
        .unwrap();
        assert_eq!(config.source.format, Format::Cur2);
        assert_eq!(config.aws.endpoint_url.as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(config.tags.keys, vec!["team".to_string()]);
    }
}
