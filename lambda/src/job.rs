//! The steps every job shares: the rule set, the billing source, a month read to its grain and
//! allocated, the output root, and the error a job fails with.

use std::path::Path;

use finops_allocate::gpu::GpuUsageReport;
use finops_allocate::scad::{GpuSplitRow, SplitCostData};
use finops_allocate::{allocate_with_gpu, Allocation, CostLine, RuleSet};
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
    /// GPU usage of the other kind than the one charged (DCGM's measured, or split cost
    /// allocation data's requested), when the month has it.
    pub gpu_compared: Option<GpuUsageReport>,
    /// Each team's GPU charge per pool under both splits, where the month has both.
    pub gpu_comparison: Vec<GpuSplitRow>,
}

/// DCGM usage of the period: recorded per-hour files or Prometheus's series.
async fn dcgm_usage(config: &Config, idle_threshold: f64, kind: GpuSourceKind, period: &str) -> Result<Option<GpuUsageReport>, JobError> {
    Ok(match kind {
        GpuSourceKind::Recorded => RecordedGpuUsage { dir: config.recorded_gpu_usage() }.usage(period, idle_threshold).await?,
        GpuSourceKind::Prometheus => {
            let Some(url) = &config.prometheus.url else {
                return Err(JobError::Output("[gpu] source = \"prometheus\" needs [prometheus] url in the config (or --prometheus-url)".into()));
            };
            let source = PrometheusGpuUsage { prometheus: prometheus_at(config, url).await?, config: config.gpu.prometheus.clone() };
            source.usage(period, idle_threshold).await?
        }
        GpuSourceKind::Scad | GpuSourceKind::None | GpuSourceKind::Auto => None,
    })
}

/// The period's GPU usage when the rules charge GPUs: what the configured source charges by,
/// and the other kind to compare the split with (docs/design.md §5b). DCGM's measured usage and
/// split cost allocation data's requested usage are each other's comparison: with `scad`, DCGM
/// is `[gpu] recorded` when set, else Prometheus when `[prometheus] url` is; with DCGM, the
/// month's split data when it has GPU pods. `split` is the month's split data and its lines.
async fn gpu_usage(config: &Config, rules: &RuleSet, period: &str, split: Option<(&SplitCostData, &[CostLine])>) -> Result<GpuUsages, JobError> {
    let Some(gpu) = &rules.gpu else { return Ok(GpuUsages::default()) };
    let scad = split.map(|(data, lines)| finops_allocate::scad::gpu_usage(data, lines, period)).filter(|u| !u.usage.is_empty());
    Ok(match config.gpu_source() {
        GpuSourceKind::Scad => {
            let dcgm = if config.gpu.recorded.is_some() {
                GpuSourceKind::Recorded
            } else if config.prometheus.url.is_some() {
                GpuSourceKind::Prometheus
            } else {
                GpuSourceKind::None
            };
            GpuUsages { charged: scad, compared: dcgm_usage(config, gpu.idle_threshold, dcgm, period).await? }
        }
        kind @ (GpuSourceKind::Recorded | GpuSourceKind::Prometheus) => GpuUsages { charged: dcgm_usage(config, gpu.idle_threshold, kind, period).await?, compared: scad },
        GpuSourceKind::None | GpuSourceKind::Auto => GpuUsages { charged: None, compared: scad },
    })
}

/// A period's GPU usage: what it is charged by, and the other source for the comparison.
#[derive(Default)]
struct GpuUsages {
    charged: Option<GpuUsageReport>,
    compared: Option<GpuUsageReport>,
}

/// Each team's GPU charge per pool under DCGM's measured split and under AWS's requested one,
/// where the month has both (empty otherwise).
fn gpu_comparison(rules: &RuleSet, allocation: &Allocation, usages: &GpuUsages) -> Result<Vec<GpuSplitRow>, JobError> {
    let (Some(gpu), Some(charged), Some(compared)) = (&rules.gpu, &usages.charged, &usages.compared) else { return Ok(Vec::new()) };
    // One of each kind, or nothing to compare.
    if charged.request_based == compared.request_based {
        return Ok(Vec::new());
    }
    let (measured, requested) = if charged.request_based { (compared, charged) } else { (charged, compared) };
    Ok(finops_allocate::scad::compare(rules, gpu, &allocation.lines, measured, requested)?)
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
    let usages = gpu_usage(config, rules, &ingested.month, ingested.split_cost.as_ref().map(|d| (d, ingested.grain.lines()))).await?;
    let started = std::time::Instant::now();
    let service_totals = ingested.grain.service_totals().to_vec();
    let lines = ingested.grain.take_cost_lines();
    tracing::info!(month = %ingested.month, lines = lines.len(), seconds = started.elapsed().as_secs_f64(), "cost lines from the grain");
    let started = std::time::Instant::now();
    let allocation = allocate_with_gpu(rules, lines, &drivers, usages.charged.as_ref())?;
    tracing::info!(month = %ingested.month, pieces = allocation.pieces.len(), seconds = started.elapsed().as_secs_f64(), "allocated");
    let gpu_comparison = gpu_comparison(rules, &allocation, &usages)?;
    Ok(AllocatedMonth { service_totals, ingested, allocation, gpu_usage: usages.charged, gpu_compared: usages.compared, gpu_comparison })
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
        let usages = gpu_usage(config, rules, &ingested.month, ingested.split_cost.as_ref().map(|d| (d, lines.as_slice()))).await?;
        let started = std::time::Instant::now();
        allocations.push(allocate_with_gpu(rules, theirs, &drivers, usages.charged.as_ref())?);
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
