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
    pub checks: ChecksConfig,
    pub report: ReportConfig,
}

/// The executive PDF.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportConfig {
    /// Labels and month names: `en` or `ko`.
    pub locale: finops_report::pdf::Locale,
    /// Months in the spend trend, this one included (earlier months come from the output root,
    /// else from the source).
    pub history_months: u32,
}

impl Default for ReportConfig {
    fn default() -> Self {
        ReportConfig { locale: finops_report::pdf::Locale::En, history_months: 12 }
    }
}

/// What a run warns about (on the terminal and in the manifest) without failing.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChecksConfig {
    /// Warn when less than this share (0..1) of the allocated total reaches a team.
    pub min_coverage: f64,
}

impl Default for ChecksConfig {
    fn default() -> Self {
        ChecksConfig { min_coverage: 0.8 }
    }
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

/// The committed CUR 2.0 fixtures: the default source, relative to the repository root (where
/// the README's commands run). Anywhere else, [`Config::check_defaults`] says what to pass.
pub const DEFAULT_SOURCE: &str = "fixtures/cur2";
/// The rule set shipped for the fixtures.
pub const DEFAULT_RULES: &str = "rules/example.toml";
/// The committed recorded GPU usage.
pub const DEFAULT_GPU_USAGE: &str = "fixtures/gpu";

/// The committed recorded GPU usage.
pub fn default_gpu_usage() -> PathBuf {
    PathBuf::from(DEFAULT_GPU_USAGE)
}

/// The committed CUR 2.0 fixtures.
pub fn default_fixtures() -> PathBuf {
    PathBuf::from(DEFAULT_SOURCE)
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
        self.rules.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_RULES))
    }

    /// Reads a config file. Its relative paths (source and output folders, rules, recorded GPU
    /// usage) are relative to the file's own folder, so a config works from any directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        let mut config = Config::parse(&text).map_err(|message| ConfigError::Invalid { path: path.to_path_buf(), message })?;
        let base = path.parent().unwrap_or(Path::new(""));
        let relative = |p: &Path| !p.as_os_str().is_empty() && p.is_relative();
        let resolve = |location: &mut String| {
            if !location.starts_with("s3://") && relative(Path::new(location.as_str())) {
                *location = base.join(location.as_str()).display().to_string();
            }
        };
        if text_sets(&text, "source", "location") {
            resolve(&mut config.source.location);
        }
        if text_sets(&text, "output", "location") {
            resolve(&mut config.output.location);
        }
        for path in [config.rules.as_mut(), config.gpu.recorded.as_mut()].into_iter().flatten() {
            if relative(path) {
                *path = base.join(&*path);
            }
        }
        Ok(config)
    }

    /// The defaults are the repository's files, relative to its root: run elsewhere without
    /// naming a source or rules, this says what to do instead of a bare "not found".
    pub fn check_defaults(&self) -> Result<(), String> {
        let here = std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_else(|_| ".".into());
        if self.source.location == DEFAULT_SOURCE && !Path::new(DEFAULT_SOURCE).is_dir() {
            return Err(format!(
                "no billing source given, and the default ({DEFAULT_SOURCE}, the committed fixtures) is not under {here}: run from the repository root, or pass --source <folder or s3://bucket/prefix> (or set [source] location in a --config file)"
            ));
        }
        if self.rules.is_none() && !Path::new(DEFAULT_RULES).is_file() {
            return Err(format!(
                "no rule set given, and the default ({DEFAULT_RULES}) is not under {here}: run from the repository root, or pass --rules <file> (or set rules in a --config file)"
            ));
        }
        Ok(())
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

/// Whether the TOML text sets `key` in `[table]` (a default is not a path the file wrote).
fn text_sets(text: &str, table: &str, key: &str) -> bool {
    toml::from_str::<toml::Table>(text).ok().and_then(|t| t.get(table)?.as_table()?.get(key).cloned()).is_some()
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
