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
    /// The rule set file (default: the one shipped for the fixtures, `rules/example.toml`).
    pub rules: Option<PathBuf>,
    pub prometheus: PrometheusConfig,
    pub gpu: GpuConfig,
}

/// Where GPU usage comes from, for rule sets with `[gpu]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GpuSourceKind {
    /// Recorded files when the billing source is the committed fixtures, Prometheus when
    /// `[prometheus] url` is set, else none.
    #[default]
    Auto,
    /// Per-hour aggregates in `recorded` (YYYY-MM.csv.gz).
    Recorded,
    /// DCGM exporter series in the `[prometheus]` server.
    Prometheus,
    /// No GPU usage: GPU line items go through the other rules.
    None,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GpuConfig {
    pub source: GpuSourceKind,
    /// Folder of recorded usage (default: the committed `fixtures/gpu`).
    pub recorded: Option<PathBuf>,
    /// DCGM metric and label names, scrape step and query window.
    pub prometheus: finops_ingest::gpu::DcgmConfig,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrometheusConfig {
    /// Base URL of the Prometheus HTTP API, e.g. `http://prometheus:9090`; needed by metric shares
    /// with `source = "prometheus"`.
    pub url: Option<String>,
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

/// A file of the repository (`fixtures/cur2`, `rules/example.toml`): under the current folder when
/// run from the repository, else beside the sources this binary was built from.
pub fn repository_path(relative: &str) -> PathBuf {
    let local = Path::new(relative);
    if local.exists() {
        local.to_path_buf()
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(relative)
    }
}

/// The committed recorded GPU usage.
pub fn default_gpu_usage() -> PathBuf {
    repository_path("fixtures/gpu")
}

/// The committed CUR 2.0 fixtures.
pub fn default_fixtures() -> PathBuf {
    repository_path("fixtures/cur2")
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}", path = path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}", path = path.display())]
    Invalid { path: PathBuf, message: String },
}

impl Config {
    /// The GPU usage source `auto` stands for.
    pub fn gpu_source(&self) -> GpuSourceKind {
        match self.gpu.source {
            GpuSourceKind::Auto if Path::new(&self.source.location) == default_fixtures() => GpuSourceKind::Recorded,
            GpuSourceKind::Auto if self.prometheus.url.is_some() => GpuSourceKind::Prometheus,
            GpuSourceKind::Auto => GpuSourceKind::None,
            other => other,
        }
    }

    pub fn rules_path(&self) -> PathBuf {
        self.rules.clone().unwrap_or_else(|| repository_path("rules/example.toml"))
    }

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
            "rules = \"r.toml\"\n[source]\nlocation = \"s3://b/p\"\nformat = \"cur2\"\n[output]\nlocation = \"o\"\n[aws]\nregion = \"us-east-1\"\nendpoint_url = \"http://127.0.0.1:5000\"\n",
        )
        .unwrap();
        assert_eq!(config.source.format, Format::Cur2);
        assert_eq!(config.aws.endpoint_url.as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(config.rules_path(), PathBuf::from("r.toml"));
    }
}
