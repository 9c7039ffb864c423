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
    pub alerts: AlertsConfig,
    pub reconcile: ReconcileConfig,
    /// The Athena table and its limits, for `[source] engine = "athena"` or `"auto"`.
    pub athena: finops_ingest::athena::AthenaSettings,
}

/// The check of a month's export against another view of the same bill (`[reconcile]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconcileConfig {
    /// Compare the export's total with Cost Explorer's for the same metric (one GetCostAndUsage
    /// call, $0.01, per month read). Needs `ce:GetCostAndUsage`.
    pub cost_explorer: bool,
    /// A difference above this share of Cost Explorer's total (0.005 = 0.5%) is a warning.
    pub tolerance: f64,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        ReconcileConfig { cost_explorer: false, tolerance: 0.005 }
    }
}

/// Spike, budget and idle-GPU alerts and their Slack delivery (`[alerts]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Days in a daily spike's trailing baseline.
    pub baseline_days: usize,
    /// A spike's least excess over the expected day, in the rule set's currency.
    pub min_excess: f64,
    /// A spike's least excess as a share of the expected day.
    pub min_ratio: f64,
    /// A spike's least excess in the series' standard deviations (robust: 1.4826 × the baseline's
    /// median absolute deviation). Replaces `mad_multiple`, which counted raw MADs.
    pub sigmas: f64,
    /// Per team, its own spike thresholds (keys as above; the others stay global).
    pub teams: std::collections::BTreeMap<String, TeamThresholds>,
    /// A month-over-month move (up or down) needs this much money and this share.
    pub monthly_min_change: f64,
    pub monthly_min_ratio: f64,
    /// Shares of a team's budget that alert when actual or forecast spend reaches them.
    pub budget_thresholds: Vec<f64>,
    /// GPU-hours a namespace may hold idle in a day before it is alerted.
    pub idle_gpu_hours: f64,
    /// The most days one scheduled daily check goes back to catch up after an outage (older
    /// unchecked days are skipped, and it says so).
    pub catch_up_days: u32,
    /// Where alerts of teams without a `slack` route, and service alerts, go.
    pub default_route: String,
    /// Where the monthly untagged-cost message goes (the platform team's route); the default
    /// route when unset.
    pub untagged_route: Option<String>,
    /// Route -> webhook URL. Prefer the environment (`FINOPS_SLACK_WEBHOOK_<ROUTE>`, from SSM or
    /// Secrets Manager in AWS): a URL here is a secret in a file.
    pub webhooks: std::collections::BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TeamThresholds {
    pub min_excess: Option<f64>,
    pub min_ratio: Option<f64>,
    pub sigmas: Option<f64>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        let t = finops_allocate::alerts::Thresholds::default();
        AlertsConfig {
            baseline_days: t.baseline_days,
            min_excess: t.min_excess,
            min_ratio: t.min_ratio,
            sigmas: t.sigmas,
            teams: Default::default(),
            monthly_min_change: 500.0,
            monthly_min_ratio: 0.2,
            budget_thresholds: vec![0.5, 0.8, 1.0],
            idle_gpu_hours: 4.0,
            catch_up_days: 7,
            default_route: "finops".into(),
            untagged_route: None,
            webhooks: Default::default(),
        }
    }
}

impl AlertsConfig {
    /// The spike thresholds for a subject: a team's own where it has them.
    pub fn thresholds(&self, subject: &finops_allocate::alerts::Subject) -> finops_allocate::alerts::Thresholds {
        let own = match subject {
            finops_allocate::alerts::Subject::Team(t) => self.teams.get(t),
            finops_allocate::alerts::Subject::Service(_) => None,
        };
        finops_allocate::alerts::Thresholds {
            baseline_days: self.baseline_days,
            min_excess: own.and_then(|o| o.min_excess).unwrap_or(self.min_excess),
            min_ratio: own.and_then(|o| o.min_ratio).unwrap_or(self.min_ratio),
            sigmas: own.and_then(|o| o.sigmas).unwrap_or(self.sigmas),
        }
    }
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
    /// Unpublished trend months one run may allocate from the source (newest first); the rest are
    /// left out of the trend and named in the warnings. Each costs a read of its month.
    pub recompute_months: u32,
}

impl Default for ReportConfig {
    fn default() -> Self {
        ReportConfig { locale: finops_report::pdf::Locale::En, history_months: 12, recompute_months: 4 }
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
    /// The month's own CUR 2.0 split cost allocation data: AWS's request-based split of each
    /// GPU node over its pods (no utilisation).
    Scad,
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

impl GpuConfig {
    /// `--gpu-usage` / `FINOPS_GPU_USAGE`: `prometheus`, `scad`, `none`, or a folder of recorded
    /// usage.
    pub fn set_usage(&mut self, value: &str) {
        match value {
            "prometheus" => self.source = GpuSourceKind::Prometheus,
            "scad" => self.source = GpuSourceKind::Scad,
            "none" => self.source = GpuSourceKind::None,
            folder => {
                self.source = GpuSourceKind::Recorded;
                self.recorded = Some(PathBuf::from(folder));
            }
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrometheusConfig {
    /// Base URL of the Prometheus HTTP API, e.g. `http://prometheus:9090`; needed by metric shares
    /// with `source = "prometheus"`. For Amazon Managed Service for Prometheus, the workspace's
    /// URL: `https://aps-workspaces.<region>.amazonaws.com/workspaces/<id>`.
    pub url: Option<String>,
    pub auth: PrometheusAuthKind,
    /// For basic and bearer: a Secrets Manager secret id or ARN, or `ssm:/parameter/name` (a
    /// SecureString). Never the credentials themselves.
    pub secret: Option<String>,
    /// For sigv4: the workspace's region (default: `[aws] region`, then the SDK's chain).
    pub region: Option<String>,
    /// The credentials once read (the Lambda reads them at start, once per container).
    #[serde(skip)]
    pub resolved: Option<finops_ingest::prometheus::PrometheusAuth>,
}

/// How Prometheus queries authenticate (`[prometheus] auth`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrometheusAuthKind {
    #[default]
    None,
    Basic,
    Bearer,
    /// Amazon Managed Service for Prometheus: SigV4 with the role's credentials.
    Sigv4,
}

impl std::str::FromStr for PrometheusAuthKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(PrometheusAuthKind::None),
            "basic" => Ok(PrometheusAuthKind::Basic),
            "bearer" => Ok(PrometheusAuthKind::Bearer),
            "sigv4" => Ok(PrometheusAuthKind::Sigv4),
            other => Err(format!("`{other}`: use none, basic, bearer or sigv4")),
        }
    }
}

impl PrometheusConfig {
    /// The settings fit together: a secret where one is needed, and only there.
    pub fn check(&self) -> Result<(), String> {
        match (self.auth, &self.secret) {
            (PrometheusAuthKind::Basic | PrometheusAuthKind::Bearer, None) => Err(format!(
                "[prometheus] auth = \"{}\" needs [prometheus] secret (FINOPS_PROMETHEUS_SECRET): a Secrets Manager secret id or ARN, or ssm:/parameter/name",
                if self.auth == PrometheusAuthKind::Basic { "basic" } else { "bearer" }
            )),
            (PrometheusAuthKind::None | PrometheusAuthKind::Sigv4, Some(_)) => {
                Err("[prometheus] secret (FINOPS_PROMETHEUS_SECRET) is set but [prometheus] auth is not basic or bearer: set auth, or remove the secret".into())
            }
            _ if self.auth != PrometheusAuthKind::None && self.url.is_none() => Err("[prometheus] auth is set but [prometheus] url (FINOPS_PROMETHEUS_URL) is not".into()),
            _ => Ok(()),
        }
    }

    /// Reads the credentials once, into `resolved`, when a Prometheus is configured: a run then
    /// queries with them without reading the secret again (a missing one fails here, first).
    pub async fn resolve(&mut self, aws: &AwsSettings) -> Result<(), finops_ingest::Error> {
        if self.url.is_some() && self.resolved.is_none() {
            self.resolved = Some(self.credentials(aws).await?);
        }
        Ok(())
    }

    /// The credentials queries carry: read from the secret store (basic, bearer), or the SDK's
    /// credential chain (sigv4); the `resolved` ones once read.
    pub async fn credentials(&self, aws: &AwsSettings) -> Result<finops_ingest::prometheus::PrometheusAuth, finops_ingest::Error> {
        use finops_ingest::prometheus::PrometheusAuth;
        if let Some(resolved) = &self.resolved {
            return Ok(resolved.clone());
        }
        let setting = "[prometheus] secret (FINOPS_PROMETHEUS_SECRET)";
        match self.auth {
            PrometheusAuthKind::None => Ok(PrometheusAuth::None),
            PrometheusAuthKind::Basic | PrometheusAuthKind::Bearer => {
                let reference = self.secret.as_deref().unwrap_or_default();
                let text = finops_ingest::secrets::read_secret(aws, reference, setting).await?;
                PrometheusAuth::from_secret(if self.auth == PrometheusAuthKind::Basic { "basic" } else { "bearer" }, &text, setting)
            }
            PrometheusAuthKind::Sigv4 => {
                let shared = aws.sdk_config().await;
                let region = self.region.clone().or_else(|| shared.region().map(|r| r.to_string())).ok_or_else(|| finops_ingest::Error::Prometheus {
                    at: "[prometheus] region".into(),
                    message: "auth = \"sigv4\" needs the workspace's region: set [prometheus] region or [aws] region (AWS_REGION)".into(),
                })?;
                let credentials = shared
                    .credentials_provider()
                    .ok_or_else(|| finops_ingest::Error::Prometheus { at: "[prometheus] auth".into(), message: "auth = \"sigv4\" found no AWS credentials to sign with".into() })?;
                Ok(PrometheusAuth::SigV4 { region, credentials })
            }
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    /// A local folder or `s3://bucket/prefix`: the CUR 2.0 export folder (holding `data/` and
    /// `metadata/`), a legacy CUR report folder, a folder of FOCUS files, or `cost-explorer`.
    pub location: String,
    pub format: Format,
    /// What runs the month's one pass: `local` (polars here), `athena` (the `[athena]` table),
    /// or `auto` (Athena for months over `[athena] auto_min_bytes`).
    pub engine: finops_ingest::Engine,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig { location: default_fixtures().display().to_string(), format: Format::Auto, engine: finops_ingest::Engine::Local }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// A local folder, or `s3://bucket/prefix`; one folder per billing period under it.
    pub location: String,
    /// How a team's monthly message links its CSV (docs/publishing.md): `console` (the AWS
    /// console's page for the object: needs an AWS sign-in, never expires), `presigned` (a
    /// download link without credentials, valid 7 days at most and never past the signing
    /// credentials' expiry: hours when signed by a Lambda role), or `none`. A local output root
    /// links the file's path whatever this says.
    pub links: LinkKind,
    /// SSE-KMS key (ARN or alias) for the outputs in S3; SSE-S3 without one.
    pub kms_key: Option<String>,
    /// How long a run waits for another run of the same month (or of alert delivery) to finish
    /// before it stops saying which run holds it.
    pub lock_wait_seconds: u64,
    /// Whether the month gets `focus-allocated.parquet` and `.csv` (docs/design.md §6): every
    /// allocated piece of the bill as a FOCUS 1.3 row. On by default; off saves its write on a
    /// month of millions of grain rows.
    pub focus_allocated: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkKind {
    #[default]
    Console,
    Presigned,
    None,
}

impl std::str::FromStr for LinkKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "console" => Ok(LinkKind::Console),
            "presigned" => Ok(LinkKind::Presigned),
            "none" => Ok(LinkKind::None),
            other => Err(format!("`{other}`: use console, presigned or none")),
        }
    }
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig { location: "out".into(), links: LinkKind::Console, kms_key: None, lock_wait_seconds: 300, focus_allocated: true }
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

/// The committed fixtures' recorded GPU usage when `source` is the committed CUR 2.0 fixtures,
/// spelled relatively, absolutely or through a config file's folder: a folder `cur2` inside a
/// folder `fixtures` that has `gpu/` beside it. The path keeps the source's spelling (so a
/// relative run's outputs stay the same on every machine).
pub fn fixtures_gpu_usage(source: &str) -> Option<PathBuf> {
    let canonical = std::fs::canonicalize(source).ok()?;
    let fixtures = canonical.parent()?;
    if canonical.file_name()? != "cur2" || fixtures.file_name()? != "fixtures" || !fixtures.join("gpu").is_dir() {
        return None;
    }
    Some(Path::new(source).parent().map_or_else(|| PathBuf::from("gpu"), |p| p.join("gpu")))
}

/// The committed CUR 2.0 fixtures.
pub fn default_fixtures() -> PathBuf {
    PathBuf::from(DEFAULT_SOURCE)
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name}: {message}")]
    Setting { name: &'static str, message: String },
    #[error("{path}: {source}", path = path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}", path = path.display())]
    Invalid { path: PathBuf, message: String },
}

impl Config {
    /// The GPU usage source `auto` stands for.
    pub fn gpu_source(&self) -> GpuSourceKind {
        match self.gpu.source {
            GpuSourceKind::Auto if fixtures_gpu_usage(&self.source.location).is_some() => GpuSourceKind::Recorded,
            GpuSourceKind::Auto if self.prometheus.url.is_some() => GpuSourceKind::Prometheus,
            GpuSourceKind::Auto => GpuSourceKind::None,
            other => other,
        }
    }

    /// Where recorded GPU usage is read from: `[gpu] recorded`, else the committed fixtures'
    /// `gpu/` beside the committed CUR 2.0 fixtures (however the source is spelled), else
    /// `fixtures/gpu`.
    pub fn recorded_gpu_usage(&self) -> PathBuf {
        self.gpu.recorded.clone().or_else(|| fixtures_gpu_usage(&self.source.location)).unwrap_or_else(default_gpu_usage)
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
            if !location.starts_with("s3://") && location != "cost-explorer" && relative(Path::new(location.as_str())) {
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

    /// The configuration of a Lambda container: `FINOPS_CONFIG` (a TOML file packaged with the
    /// function), then these environment variables over it — `FINOPS_SOURCE`, `FINOPS_FORMAT`,
    /// `FINOPS_OUTPUT`, `FINOPS_RULES`, `FINOPS_PROMETHEUS_URL`, `FINOPS_GPU_USAGE`
    /// (`prometheus`, `none` or a folder), `FINOPS_RECONCILE` (`cost-explorer` or `none`), `FINOPS_ENGINE`,
    /// `FINOPS_ATHENA_DATABASE`, `_TABLE`, `_WORKGROUP`, `_OUTPUT`, `_AUTO_MIN_BYTES`,
    /// `FINOPS_AWS_ENDPOINT_URL`. A Lambda has no repository
    /// checkout, so the source and the rules must be named; an unset or bad one fails the start.
    pub fn from_environment() -> Result<Config, ConfigError> {
        Config::from_environment_with(None)
    }

    /// As [`Config::from_environment`], with the text of an `s3://` `FINOPS_CONFIG` already
    /// fetched (the caller has the S3 client).
    pub fn from_environment_with(fetched: Option<&str>) -> Result<Config, ConfigError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let mut config = match (var("FINOPS_CONFIG"), fetched) {
            (Some(uri), Some(text)) => Config::parse(text).map_err(|message| ConfigError::Invalid { path: PathBuf::from(uri), message })?,
            (Some(path), None) if path.starts_with("s3://") => return Err(ConfigError::Setting { name: "FINOPS_CONFIG", message: format!("{path}: an S3 config must be fetched first") }),
            (Some(path), None) => Config::load(Path::new(&path))?,
            (None, _) => Config::default(),
        };
        if let Some(source) = var("FINOPS_SOURCE") {
            config.source.location = source;
        }
        if let Some(format) = var("FINOPS_FORMAT") {
            config.source.format = format.parse().map_err(|message| ConfigError::Setting { name: "FINOPS_FORMAT", message })?;
        }
        if let Some(output) = var("FINOPS_OUTPUT") {
            config.output.location = output;
        }
        if let Some(links) = var("FINOPS_LINKS") {
            config.output.links = links.parse().map_err(|message| ConfigError::Setting { name: "FINOPS_LINKS", message })?;
        }
        if let Some(key) = var("FINOPS_KMS_KEY") {
            config.output.kms_key = Some(key);
        }
        if let Some(rules) = var("FINOPS_RULES") {
            config.rules = Some(PathBuf::from(rules));
        }
        if let Some(url) = var("FINOPS_PROMETHEUS_URL") {
            config.prometheus.url = Some(url);
        }
        if let Some(auth) = var("FINOPS_PROMETHEUS_AUTH") {
            config.prometheus.auth = auth.parse().map_err(|message| ConfigError::Setting { name: "FINOPS_PROMETHEUS_AUTH", message })?;
        }
        if let Some(secret) = var("FINOPS_PROMETHEUS_SECRET") {
            config.prometheus.secret = Some(secret);
        }
        config.prometheus.check().map_err(|message| ConfigError::Setting { name: "FINOPS_PROMETHEUS_AUTH", message })?;
        if let Some(endpoint) = var("FINOPS_AWS_ENDPOINT_URL") {
            config.aws.endpoint_url = Some(endpoint);
        }
        if let Some(usage) = var("FINOPS_GPU_USAGE") {
            config.gpu.set_usage(&usage);
        }
        if let Some(engine) = var("FINOPS_ENGINE") {
            config.source.engine = engine.parse().map_err(|message| ConfigError::Setting { name: "FINOPS_ENGINE", message })?;
        }
        if let Some(database) = var("FINOPS_ATHENA_DATABASE") {
            config.athena.database = database;
        }
        if let Some(table) = var("FINOPS_ATHENA_TABLE") {
            config.athena.table = table;
        }
        if let Some(workgroup) = var("FINOPS_ATHENA_WORKGROUP") {
            config.athena.workgroup = Some(workgroup);
        }
        if let Some(output) = var("FINOPS_ATHENA_OUTPUT") {
            config.athena.output_location = Some(output);
        }
        if let Some(bytes) = var("FINOPS_ATHENA_AUTO_MIN_BYTES") {
            config.athena.auto_min_bytes = bytes.parse().map_err(|_| ConfigError::Setting { name: "FINOPS_ATHENA_AUTO_MIN_BYTES", message: format!("`{bytes}` is not a number of bytes") })?;
        }
        if let Some(reconcile) = var("FINOPS_RECONCILE") {
            config.reconcile.cost_explorer = match reconcile.as_str() {
                "cost-explorer" => true,
                "none" => false,
                other => return Err(ConfigError::Setting { name: "FINOPS_RECONCILE", message: format!("`{other}`: use cost-explorer or none") }),
            };
        }
        let named = |name: &'static str, what: &str| ConfigError::Setting { name, message: format!("not set: {what} (or set it in the FINOPS_CONFIG file)") };
        if config.source.location == DEFAULT_SOURCE {
            return Err(named("FINOPS_SOURCE", "the billing export, e.g. s3://my-cur-bucket/cur2/my-export"));
        }
        if config.rules.is_none() {
            return Err(named("FINOPS_RULES", "the rule set file packaged with the function"));
        }
        if config.output.location == OutputConfig::default().location {
            return Err(named("FINOPS_OUTPUT", "where reports go, e.g. s3://my-report-bucket/finops"));
        }
        if let Some(rules) = &config.rules {
            if !rules.is_file() {
                return Err(ConfigError::Setting { name: "FINOPS_RULES", message: format!("{}: no such file in the function package", rules.display()) });
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
            return Err(format!("no rule set given, and the default ({DEFAULT_RULES}) is not under {here}: run from the repository root, or pass --rules <file> (or set rules in a --config file)"));
        }
        Ok(())
    }

    /// Parses the TOML text; the error carries line and column.
    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let position = e.span().map(|span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                format!("line {line}, column {column}: ")
            });
            // A key that changed meaning says what to write now.
            let renamed = if e.message().contains("unknown field `mad_multiple`") {
                " (renamed `sigmas` and counted in standard deviations, not raw MADs: sigmas = mad_multiple / 1.48; the default is 5, see the README's daily spikes)"
            } else {
                ""
            };
            format!("{}{}{renamed}", position.unwrap_or_default(), e.message())
        })?;
        config.prometheus.check()?;
        Ok(config)
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
    fn the_old_mad_multiple_says_what_it_became() {
        let e = Config::parse("[alerts]\nmad_multiple = 3.0\n").unwrap_err();
        assert!(e.starts_with("line 2, column 1: unknown field `mad_multiple`") && e.contains("renamed `sigmas`") && e.contains("mad_multiple / 1.48"), "{e}");
    }

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
