//! The command line: commands, their flags, and the settings the flags make.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use finops_ingest::Format;
use finops_lambda::config::Config;

#[derive(Parser)]
#[command(name = "finops", version, about = "Allocate every cent of the cloud bill to a team.")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Where the billing data comes from; shared by the commands that read it.
#[derive(clap::Args, Clone)]
pub struct SourceArgs {
    /// Configuration file (finops.toml); relative paths in it are relative to its folder.
    /// Flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Billing data: a local folder, s3://bucket/prefix, or `cost-explorer` (the Cost Explorer
    /// API) [default: fixtures/cur2, the committed fixtures, from the repository root]
    #[arg(long)]
    pub source: Option<String>,
    /// Layout of the billing data: auto, cur2, cur, focus or cost-explorer [default: auto]
    #[arg(long)]
    pub format: Option<Format>,
    /// Rule set file [default: rules/example.toml, the one shipped for the fixtures]
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// AWS endpoint override (e.g. a local moto server).
    #[arg(long)]
    pub endpoint_url: Option<String>,
    /// AWS region (default: the SDK's chain: AWS_REGION, profile, ...).
    #[arg(long)]
    pub region: Option<String>,
    /// Prometheus base URL for metric shares and GPU usage that query it.
    #[arg(long)]
    pub prometheus_url: Option<String>,
    /// GPU usage for [gpu] rules: `prometheus` (DCGM series), `none`, or a folder of recorded
    /// per-hour files [default: fixtures/gpu when the billing source is the fixtures, else
    /// Prometheus when --prometheus-url is set, else none]
    #[arg(long)]
    pub gpu_usage: Option<String>,
    /// Check the export's month total against Cost Explorer's (`cost-explorer`, one API call
    /// at $0.01) or not (`none`) [default: [reconcile] in the config, else none]
    #[arg(long, value_parser = ["cost-explorer", "none"])]
    pub reconcile: Option<String>,
    /// What aggregates the month: local, athena (the [athena] table) or auto (Athena for months
    /// over [athena] auto_min_bytes) [default: [source] engine, else local]
    #[arg(long)]
    pub engine: Option<finops_ingest::Engine>,
}

impl SourceArgs {
    pub fn settings(&self) -> anyhow::Result<Config> {
        let mut settings = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        if let Some(source) = &self.source {
            settings.source.location = source.clone();
        }
        if let Some(format) = self.format {
            settings.source.format = format;
        }
        if let Some(rules) = &self.rules {
            settings.rules = Some(rules.clone());
        }
        if self.endpoint_url.is_some() {
            settings.aws.endpoint_url = self.endpoint_url.clone();
        }
        if self.region.is_some() {
            settings.aws.region = self.region.clone();
        }
        if self.prometheus_url.is_some() {
            settings.prometheus.url = self.prometheus_url.clone();
        }
        if let Some(usage) = &self.gpu_usage {
            settings.gpu.set_usage(usage);
        }
        if let Some(engine) = self.engine {
            settings.source.engine = engine;
        }
        if let Some(reconcile) = &self.reconcile {
            settings.reconcile.cost_explorer = reconcile == "cost-explorer";
        }
        settings.check_defaults().map_err(anyhow::Error::msg)?;
        Ok(settings)
    }

    /// The settings, with Prometheus credentials read once for the whole run.
    pub async fn settings_with_secrets(&self) -> anyhow::Result<Config> {
        let mut settings = self.settings()?;
        let aws = settings.aws.clone();
        settings.prometheus.resolve(&aws).await?;
        Ok(settings)
    }
}

#[derive(Subcommand)]
pub enum AlertsAction {
    /// Label an alert, as AWS Cost Anomaly Detection takes feedback: a `planned` or `expected`
    /// spike is known spend (it leaves later baselines and its repeats are not sent); a `wrong`
    /// one was no spike. The report's data page shows the precision the labels imply.
    Ack {
        /// The alert's id, as in alerts/<day>.json (e.g. spike:team:search:2025-10-20).
        id: String,
        #[arg(long, value_enum)]
        reason: AckReason,
        /// Output root the alert was sent from [default: [output] location of the config, else
        /// `out`]
        #[arg(long)]
        out: Option<String>,
        /// Configuration file (finops.toml): its [output] location.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// What an acknowledged alert was.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum AckReason {
    Planned,
    Expected,
    Wrong,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the monthly job: ingest a billing period, allocate it, write its outputs.
    Run {
        /// Billing period, YYYY-MM [default: the latest month in the source]
        #[arg(long)]
        month: Option<String>,
        /// Output root; the month is written to <out>/<YYYY-MM>/ [default: [output] location of
        /// the config, else `out`]
        #[arg(long)]
        out: Option<String>,
        /// No progress display (it only ever shows on a terminal, on stderr).
        #[arg(long, short)]
        quiet: bool,
        #[command(flatten)]
        source: SourceArgs,
    },
    /// The daily check: spikes, idle GPUs and budget thresholds of a day, sent to Slack once;
    /// `finops alerts ack` labels an alert.
    Alerts {
        #[command(subcommand)]
        action: Option<AlertsAction>,
        /// The day, YYYY-MM-DD [default: the latest complete day in the data (CUR restates a day
        /// until the next one has data)]
        #[arg(long)]
        day: Option<String>,
        /// Output root: alerts/<day>.json and the record of sent alerts go under it [default:
        /// [output] location of the config, else `out`]
        #[arg(long)]
        out: Option<String>,
        /// No progress display.
        #[arg(long, short)]
        quiet: bool,
        #[command(flatten)]
        source: SourceArgs,
    },
    /// Rebuild a published month's report.pdf from its own files, without re-allocating.
    Report {
        /// Billing period, YYYY-MM, already published under the output root.
        #[arg(long)]
        month: String,
        /// Output root the month was published under [default: [output] location of the
        /// config, else `out`]
        #[arg(long)]
        out: Option<String>,
        /// Configuration file (finops.toml): its [output] location and [report] settings.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print the month's grain query: the SQL that aggregates a CUR 2.0 month to the allocation
    /// grain, for Athena (Trino) over the [athena] table or for DuckDB over the source's files.
    Sql {
        /// Billing period, YYYY-MM.
        #[arg(long)]
        month: String,
        /// trino (Athena) or duckdb.
        #[arg(long, default_value = "trino")]
        dialect: finops_ingest::grain_sql::Dialect,
        #[command(flatten)]
        source: SourceArgs,
    },
    /// Work with rule sets.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Preview a rule change: the month allocated under the rules in force (--base) and under
    /// proposed rules (--rules), from one read of the data: per team, dimension value and rule,
    /// before -> after and the change, and the cost lines whose owners changed.
    Diff {
        /// The rules in force [default: the config's rules, else rules/example.toml]
        #[arg(long)]
        base: Option<PathBuf>,
        /// Billing period, YYYY-MM [default: the latest month in the source]
        #[arg(long)]
        month: Option<String>,
        /// text (terminal), markdown (a pull-request comment) or csv (a spreadsheet)
        #[arg(long, value_enum, default_value = "text")]
        format: DiffFormat,
        /// Moved cost lines to list (csv lists them all).
        #[arg(long, default_value_t = 20)]
        lines: usize,
        /// Exit with status 2 when a team moves more than this: an amount (`500`) or a share of
        /// its cost before (`5%`).
        #[arg(long)]
        fail_above: Option<String>,
        /// No progress display.
        #[arg(long, short)]
        quiet: bool,
        #[command(flatten)]
        source: SourceArgs,
    },
    /// Why a team got what it got: direct cost by rule, each share with its method and driver.
    Explain {
        /// The team (a name or alias of the rule set), or `unallocated` for what no rule or tag
        /// claimed.
        #[arg(long)]
        team: String,
        /// Billing period, YYYY-MM [default: the latest month in the source]
        #[arg(long)]
        month: Option<String>,
        /// Only this service, as the bill names it (e.g. AmazonRDS; a name the month does not
        /// have is an error listing the ones it has).
        #[arg(long)]
        service: Option<String>,
        /// No progress display.
        #[arg(long, short)]
        quiet: bool,
        #[command(flatten)]
        source: SourceArgs,
    },
}

/// How `finops diff` prints.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum DiffFormat {
    Text,
    /// A pull-request comment.
    Markdown,
    /// Every row, for a spreadsheet.
    Csv,
}

#[derive(Subcommand)]
pub enum RulesCommand {
    /// Validate rule files (a file, or every *.toml in a folder) without reading billing data.
    Check { path: PathBuf },
}
