//! The steps every job shares: the rule set, the billing source, a month read to its grain and
//! allocated, the output root, and the error a job fails with.

use std::path::Path;

use finops_allocate::gpu::GpuUsageReport;
use finops_allocate::{allocate_with_gpu, Allocation, RuleSet};
use finops_ingest::gpu::{GpuUsageSource, PrometheusGpuUsage, RecordedGpuUsage};
use finops_ingest::store::Location;
use finops_ingest::BillingSource;
use finops_ingest::{IngestOptions, IngestedMonth, Progress};
use finops_report::manifest::sha256_hex;
use finops_report::sink::OutputRoot;

use crate::config::{Config, GpuSourceKind};

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Ingest(#[from] finops_ingest::Error),
    #[error(transparent)]
    Report(#[from] finops_report::Error),
    #[error("{0}")]
    Rules(String),
    #[error(transparent)]
    RuleSet(#[from] finops_allocate::RulesError),
    #[error(transparent)]
    Allocate(#[from] finops_allocate::engine::AllocateError),
    #[error("{0}")]
    Output(String),
}

impl JobError {
    /// Whether running the job again can help: storage, network and Prometheus faults and a
    /// month held by another run pass; bad data, bad rules and bad settings do not.
    pub fn retryable(&self) -> bool {
        match self {
            JobError::Ingest(e) => matches!(e, finops_ingest::Error::S3 { .. } | finops_ingest::Error::Prometheus { .. }),
            JobError::Report(e) => e.retryable(),
            JobError::Rules(_) | JobError::RuleSet(_) | JobError::Allocate(_) | JobError::Output(_) => false,
        }
    }
}

/// A rule set loaded from disk, with the hash the manifest records.
pub struct LoadedRules {
    pub rules: RuleSet,
    pub path: String,
    pub sha256: String,
}

pub fn load_rules(path: &Path) -> Result<LoadedRules, JobError> {
    let text = std::fs::read_to_string(path).map_err(|e| JobError::Rules(format!("{}: {e}", path.display())))?;
    let rules = RuleSet::parse(path, &text)?;
    let sha256 = sha256_hex(text.as_bytes());
    Ok(LoadedRules { rules, path: path.display().to_string(), sha256 })
}

/// A month read and allocated.
pub struct AllocatedMonth {
    /// Exact totals per (billing period, account, service), from the grain.
    pub service_totals: Vec<finops_allocate::ServiceTotal>,
    pub ingested: IngestedMonth,
    pub allocation: Allocation,
    pub gpu_usage: Option<GpuUsageReport>,
}

/// The period's GPU usage from the configured source, when the rules charge GPUs.
async fn gpu_usage(config: &Config, rules: &RuleSet, period: &str) -> Result<Option<GpuUsageReport>, JobError> {
    let Some(gpu) = &rules.gpu else { return Ok(None) };
    let usage = match config.gpu_source() {
        GpuSourceKind::None | GpuSourceKind::Auto => None,
        GpuSourceKind::Recorded => {
            let dir = config.recorded_gpu_usage();
            RecordedGpuUsage { dir }.usage(period, gpu.idle_threshold).await?
        }
        GpuSourceKind::Prometheus => {
            let Some(url) = &config.prometheus.url else {
                return Err(JobError::Output("[gpu] source = \"prometheus\" needs [prometheus] url in the config (or --prometheus-url)".into()));
            };
            let source = PrometheusGpuUsage { prometheus: prometheus_at(config, url).await?, config: config.gpu.prometheus.clone() };
            source.usage(period, gpu.idle_threshold).await?
        }
    };
    Ok(usage)
}

/// The configured Prometheus at `url`, with its credentials.
async fn prometheus_at(config: &Config, url: &str) -> Result<finops_ingest::prometheus::PrometheusSource, JobError> {
    let auth = config.prometheus.credentials(&config.aws).await?;
    Ok(finops_ingest::prometheus::PrometheusSource::with_auth(url, auth)?)
}

/// Reads and allocates one month (the latest present when `month` is `None`).
pub async fn allocate_month(config: &Config, store: &BillingSource, rules: &RuleSet, month: Option<String>, progress: &dyn Progress) -> Result<AllocatedMonth, JobError> {
    let ingested = ingest(config, store, rules, month, progress).await?;
    allocate_ingested(config, rules, ingested).await
}

/// The configured billing source: export files in a folder or under an S3 prefix, or the Cost
/// Explorer API.
pub async fn open_source(config: &Config) -> Result<BillingSource, JobError> {
    let location = Location::parse(&config.source.location)?;
    let source = BillingSource::open(&location, config.source.format, &config.aws).await?;
    Ok(source.with_engine(config.source.engine, &config.athena, &config.aws).await?)
}

/// Reads one month to its grain (the latest present when `month` is `None`).
pub async fn ingest(config: &Config, store: &BillingSource, rules: &RuleSet, month: Option<String>, progress: &dyn Progress) -> Result<IngestedMonth, JobError> {
    let options = IngestOptions {
        format: config.source.format,
        month,
        tag_keys: rules.tag_keys(),
        cost_basis: rules.cost_basis,
        team_tag: rules.team_tags.first().cloned(),
        team_tag_keys: rules.team_tags.len(),
    };
    Ok(store.ingest_month(&options, progress).await?)
}

/// Allocates a month read to its grain: its usage drivers and GPU usage, then the engine.
pub async fn allocate_ingested(config: &Config, rules: &RuleSet, mut ingested: IngestedMonth) -> Result<AllocatedMonth, JobError> {
    let prometheus = match config.prometheus.url.as_deref() {
        Some(url) => Some(prometheus_at(config, url).await?),
        None => None,
    };
    let drivers = finops_ingest::usage::load_drivers(rules, &ingested.month, prometheus.as_ref()).await?;
    let gpu_usage = gpu_usage(config, rules, &ingested.month).await?;
    let started = std::time::Instant::now();
    let service_totals = ingested.grain.service_totals().to_vec();
    let lines = ingested.grain.take_cost_lines();
    tracing::info!(month = %ingested.month, lines = lines.len(), seconds = started.elapsed().as_secs_f64(), "cost lines from the grain");
    let started = std::time::Instant::now();
    let allocation = allocate_with_gpu(rules, lines, &drivers, gpu_usage.as_ref())?;
    tracing::info!(month = %ingested.month, pieces = allocation.pieces.len(), seconds = started.elapsed().as_secs_f64(), "allocated");
    Ok(AllocatedMonth { service_totals, ingested, allocation, gpu_usage })
}

/// One month read once and allocated under two rule sets (`finops diff`): the grain carries the
/// tag keys of both, and each allocation gets its lines with the tags its rules read, in their
/// order. Returns the month and the two allocations.
pub async fn allocate_twice(
    config: &Config,
    store: &BillingSource,
    base: &RuleSet,
    proposed: &RuleSet,
    month: Option<String>,
    progress: &dyn Progress,
) -> Result<(String, Allocation, Allocation), JobError> {
    if base.cost_basis != proposed.cost_basis {
        return Err(JobError::Rules(format!(
            "{} allocates at cost basis {}, {} at {}: a preview compares one basis; give the proposed rules the same cost_basis",
            base.file,
            base.cost_basis.name(),
            proposed.file,
            proposed.cost_basis.name()
        )));
    }
    let mut keys = base.tag_keys();
    for key in proposed.tag_keys() {
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    let options =
        IngestOptions { format: config.source.format, month, tag_keys: keys.clone(), cost_basis: base.cost_basis, team_tag: base.team_tags.first().cloned(), team_tag_keys: base.team_tags.len() };
    let mut ingested = store.ingest_month(&options, progress).await?;
    let lines = ingested.grain.take_cost_lines();
    let prometheus = match config.prometheus.url.as_deref() {
        Some(url) => Some(prometheus_at(config, url).await?),
        None => None,
    };
    let mut allocations = Vec::new();
    for rules in [base, proposed] {
        let positions: Vec<usize> = rules.tag_keys().iter().map(|k| keys.iter().position(|x| x == k).expect("every key of both rule sets was read")).collect();
        let theirs: Vec<finops_allocate::CostLine> = lines.iter().map(|l| finops_allocate::CostLine { tags: positions.iter().map(|p| l.tags[*p].clone()).collect(), ..l.clone() }).collect();
        let drivers = finops_ingest::usage::load_drivers(rules, &ingested.month, prometheus.as_ref()).await?;
        let gpu_usage = gpu_usage(config, rules, &ingested.month).await?;
        let started = std::time::Instant::now();
        allocations.push(allocate_with_gpu(rules, theirs, &drivers, gpu_usage.as_ref())?);
        tracing::info!(month = %ingested.month, rules = %rules.file, seconds = started.elapsed().as_secs_f64(), "allocated");
    }
    let after = allocations.pop().expect("two allocations");
    let before = allocations.pop().expect("two allocations");
    Ok((ingested.month, before, after))
}

/// The configured output root: a local folder, or an S3 prefix reached with the AWS settings.
pub async fn out_root(config: &Config) -> Result<OutputRoot, JobError> {
    Ok(match Location::parse(&config.output.location)? {
        Location::Local(root) => {
            // Checked before the month is read, not only when it is staged.
            let dir = finops_report::sink::LocalDir { root };
            dir.check()?;
            OutputRoot::Local(dir)
        }
        Location::S3 { bucket, prefix } => OutputRoot::S3(finops_report::s3::S3Dir {
            client: config.aws.s3_client().await,
            bucket,
            prefix: prefix.trim_matches('/').to_string(),
            kms_key: config.output.kms_key.clone(),
            credentials: config.aws.sdk_config().await.credentials_provider(),
        }),
        Location::CostExplorer => return Err(JobError::Output("[output] location = \"cost-explorer\": Cost Explorer is a source; publish to a folder or an s3:// prefix".into())),
    })
}
