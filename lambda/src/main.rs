//! `finops`: the pipeline's command line. With no flags, `finops run` runs the monthly job on the
//! committed fixtures and writes `out/<YYYY-MM>/`.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use finops_allocate::CostBasis;
use finops_ingest::{Format, Progress};
use finops_lambda::config::Config;
use finops_lambda::monthly::{allocate_month, load_rules, run_monthly};

/// mimalloc: millions of small, short-lived allocations per month (grain rows, pieces, CSV
/// cells) are its strength; glibc's malloc spent a third of a worst-case month consolidating.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "finops", version, about = "Allocate every cent of the cloud bill to a team.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the billing data comes from; shared by the commands that read it.
#[derive(clap::Args, Clone)]
struct SourceArgs {
    /// Configuration file (finops.toml); relative paths in it are relative to its folder.
    /// Flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Billing data: a local folder, s3://bucket/prefix, or `cost-explorer` (the Cost Explorer
    /// API) [default: fixtures/cur2, the committed fixtures, from the repository root]
    #[arg(long)]
    source: Option<String>,
    /// Layout of the billing data: auto, cur2, cur, focus or cost-explorer [default: auto]
    #[arg(long)]
    format: Option<Format>,
    /// Rule set file [default: rules/example.toml, the one shipped for the fixtures]
    #[arg(long)]
    rules: Option<PathBuf>,
    /// AWS endpoint override (e.g. a local moto server).
    #[arg(long)]
    endpoint_url: Option<String>,
    /// AWS region (default: the SDK's chain: AWS_REGION, profile, ...).
    #[arg(long)]
    region: Option<String>,
    /// Prometheus base URL for metric shares and GPU usage that query it.
    #[arg(long)]
    prometheus_url: Option<String>,
    /// GPU usage for [gpu] rules: `prometheus` (DCGM series), `none`, or a folder of recorded
    /// per-hour files [default: fixtures/gpu when the billing source is the fixtures, else
    /// Prometheus when --prometheus-url is set, else none]
    #[arg(long)]
    gpu_usage: Option<String>,
    /// Check the export's month total against Cost Explorer's (`cost-explorer`, one API call
    /// at $0.01) or not (`none`) [default: [reconcile] in the config, else none]
    #[arg(long, value_parser = ["cost-explorer", "none"])]
    reconcile: Option<String>,
    /// What aggregates the month: local, athena (the [athena] table) or auto (Athena for months
    /// over [athena] auto_min_bytes) [default: [source] engine, else local]
    #[arg(long)]
    engine: Option<finops_ingest::Engine>,
}

impl SourceArgs {
    fn settings(&self) -> anyhow::Result<Config> {
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
    async fn settings_with_secrets(&self) -> anyhow::Result<Config> {
        let mut settings = self.settings()?;
        let aws = settings.aws.clone();
        settings.prometheus.resolve(&aws).await?;
        Ok(settings)
    }
}

#[derive(Subcommand)]
enum Command {
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
    /// The daily check: spikes, idle GPUs and budget thresholds of a day, sent to Slack once.
    Alerts {
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

#[derive(Subcommand)]
enum RulesCommand {
    /// Validate rule files (a file, or every *.toml in a folder) without reading billing data.
    Check { path: PathBuf },
}

/// Progress on a terminal (a bar for bytes, a spinner for the other stages), nothing otherwise
/// (logs, Lambda, CI) or under `--quiet`. On stderr, so stdout stays the run's summary.
struct TerminalProgress(indicatif::ProgressBar);

impl TerminalProgress {
    fn new(quiet: bool) -> Self {
        let bar = if std::io::stderr().is_terminal() && !quiet {
            indicatif::ProgressBar::new(0)
        } else {
            indicatif::ProgressBar::hidden()
        };
        TerminalProgress(bar)
    }
}

impl Progress for TerminalProgress {
    fn start(&self, what: &str, total: u64) {
        self.0.set_style(
            indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} ({eta})")
                .expect("valid template")
                .progress_chars("=> "),
        );
        self.0.set_message(what.to_string());
        self.0.set_length(total);
        self.0.set_position(0);
    }
    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
    fn stage(&self, what: &str) {
        self.0.set_style(indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("valid template"));
        self.0.set_message(what.to_string());
        self.0.enable_steady_tick(std::time::Duration::from_millis(120));
    }
    fn finish(&self) {
        self.0.disable_steady_tick();
        self.0.set_message("");
        self.0.set_style(indicatif::ProgressStyle::with_template("").expect("valid template"));
        self.0.tick();
    }
}

impl Drop for TerminalProgress {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("FINOPS_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_text(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run { month, out, quiet, source } => {
            let mut settings = source.settings_with_secrets().await?;
            if let Some(out) = out {
                settings.output.location = out;
            }
            let progress = TerminalProgress::new(quiet);
            let outcome = run_monthly(&settings, month, &progress)
                .await
                .with_context(|| format!("monthly job on {} failed; nothing was written", settings.source.location))?;
            println!("billing period {}: {} line items from {}", outcome.month, outcome.line_items, settings.source.location);
            for basis in CostBasis::ALL {
                if let Some(total) = outcome.totals.get(&basis) {
                    let (printed, marker) =
                        if basis == outcome.cost_basis { (outcome.billed_cents, "  <- allocated") } else { (total.round_to_cents(), "") };
                    println!("  {:<14} {:>16}{marker}", basis.name(), printed.to_string());
                }
            }
            println!("teams ({}):", outcome.cost_basis.name());
            for row in &outcome.teams {
                println!("  {:<14} {:>16}", row.team, row.total.to_string());
            }
            let allocated: finops_allocate::Cents = outcome.teams.iter().map(|r| r.total).sum();
            println!("  {:<14} {:>16}", "", "-".repeat(12));
            if outcome.rate_card_cents == finops_allocate::Cents(0) {
                println!("  {:<14} {:>16}  = the bill ({})", "total", allocated.to_string(), outcome.cost_basis.name());
            } else {
                println!(
                    "  {:<14} {:>16}  = the bill {} + on-prem GPU hosts at the rate card {}",
                    "total",
                    allocated.to_string(),
                    outcome.billed_cents,
                    outcome.rate_card_cents
                );
            }
            let unallocated = outcome.teams.last().map(|r| r.total.to_string()).unwrap_or_default();
            println!("allocation coverage: {:.1}% (unallocated {unallocated})", outcome.coverage * 100.0);
            if let Some(source) = &outcome.gpu_source {
                println!("GPU usage: {source}");
            }
            if let Some(gpu_coverage) = outcome.gpu_coverage {
                let gpu: finops_allocate::Cents = outcome.teams.iter().map(|r| r.gpu).sum();
                let hours: f64 = outcome.teams.iter().map(|r| r.gpu_usage.gpu_hours).sum();
                println!("GPU: {gpu} charged by {hours:.1} GPU-hours; usage data covers {:.2}% of the period", gpu_coverage * 100.0);
            }
            if let Some(q) = &outcome.athena {
                println!("Athena: query {} scanned {} bytes (${} at $5/TB), {} ms; result {}", q.query_id, q.bytes_scanned, q.dollars, q.engine_ms, q.result);
            }
            if let Some(ce) = &outcome.cost_explorer {
                println!(
                    "Cost Explorer: {} GetCostAndUsage call(s), ${}",
                    ce.calls, ce.dollars
                );
                if let Some(r) = &ce.reconciliation {
                    println!("reconciliation: {}", r.summary());
                }
            }
            if outcome.changed {
                println!("wrote {}/:", outcome.output);
            } else {
                println!("unchanged {}/: the published month already holds exactly these outputs; nothing was written", outcome.output);
            }
            for file in outcome.files.iter().filter(|f| !f.starts_with("teams/")) {
                println!("  {}/{}", outcome.output, file);
            }
            let teams = outcome.files.iter().filter(|f| f.starts_with("teams/")).count();
            println!("  {}/teams/ ({teams} team CSVs)", outcome.output);
            let a = &outcome.alerts;
            print_alerts(
                &format!("alerts for {} ({} daily spikes, {} namespaces with idle GPUs; the daily check sends those)", outcome.month, a.report.spikes.len(), a.report.idle_gpu.len()),
                &a.found,
                &a.delivery,
                &format!("{}/alerts.json", outcome.output),
            );
            // Last, where they are seen: what the run decided that changes the numbers (also in
            // the manifest's `warnings`).
            for warning in &outcome.warnings {
                eprintln!("warning: {warning}");
            }
            if !a.delivery.pending.is_empty() {
                // The month is published; its messages wait for the next run (daily or monthly).
                eprintln!("warning: {} alert(s) could not be delivered and stay pending; the next run (daily or monthly) delivers them", a.delivery.pending.len());
            }
            Ok(())
        }
        Command::Alerts { day, out, quiet, source } => {
            let mut settings = source.settings_with_secrets().await?;
            if let Some(out) = out {
                settings.output.location = out;
            }
            let progress = TerminalProgress::new(quiet);
            let outcome = finops_lambda::alerting::run_daily(&settings, day, &progress).await.context("daily alert check failed")?;
            print_alerts(&format!("alerts for {}", outcome.day), &outcome.found, &outcome.delivery, &outcome.written);
            if !outcome.delivery.pending.is_empty() {
                anyhow::bail!("{} alert(s) could not be delivered and stay pending; the next run retries them", outcome.delivery.pending.len());
            }
            Ok(())
        }
        Command::Report { month, out, config } => {
            let mut settings = match &config {
                Some(path) => Config::load(path)?,
                None => Config::default(),
            };
            if let Some(out) = out {
                settings.output.location = out;
            }
            let started = std::time::Instant::now();
            let written = finops_lambda::monthly::rebuild_report(&settings, &month).await?;
            println!("wrote {written} in {:.2} s", started.elapsed().as_secs_f64());
            Ok(())
        }
        Command::Rules { command: RulesCommand::Check { path } } => {
            let files = rule_files(&path)?;
            let mut problems = 0;
            for file in &files {
                match load_rules(file) {
                    Ok(loaded) => {
                        let r = &loaded.rules;
                        // Driver files are part of a rule set's validity: read them now.
                        // and checked as `run` will check them (keys that map to no team).
                        let mut driver_problems = 0;
                        let mut samples = std::collections::HashMap::new();
                        for (rule, driver) in r.metric_drivers() {
                            if let finops_allocate::rules::DriverSource::File { path, at } = &driver.source {
                                match finops_ingest::usage::read_driver_file(path, &at.to_string()) {
                                    Ok(read) => {
                                        samples.insert(rule.to_string(), read);
                                    }
                                    Err(e) => {
                                        eprintln!("{e}");
                                        driver_problems += 1;
                                    }
                                }
                            }
                        }
                        for problem in finops_allocate::shares::check_metric_drivers(r, &samples) {
                            eprintln!("{problem}");
                            driver_problems += 1;
                        }
                        if driver_problems == 0 {
                            let gpu = r.gpu.as_ref().map(|g| format!("; GPU chargeback by {} GPU-hours", g.basis.name())).unwrap_or_default();
                            println!(
                                "{}: ok ({}, {}, {}; cost basis {}{gpu})",
                                file.display(),
                                count(r.teams.len(), "team"),
                                count(r.assign.len(), "assign rule"),
                                count(r.share.len(), "share rule"),
                                r.cost_basis.name()
                            );
                        }
                        problems += driver_problems;
                    }
                    Err(finops_lambda::monthly::JobError::RuleSet(e)) => {
                        eprintln!("{e}");
                        problems += e.problems.len();
                    }
                    Err(e) => {
                        eprintln!("{e}");
                        problems += 1;
                    }
                }
            }
            if problems > 0 {
                anyhow::bail!("{problems} problem(s) in {}", path.display());
            }
            Ok(())
        }
        Command::Sql { month, dialect, source } => {
            let settings = source.settings()?;
            let loaded = load_rules(&settings.rules_path())?;
            let tag_keys = loaded.rules.tag_keys();
            let query = match dialect {
                finops_ingest::grain_sql::Dialect::Trino => {
                    finops_ingest::check_month(&month)?;
                    finops_ingest::grain_sql::GrainQuery {
                        month: month.clone(),
                        tag_keys,
                        table: finops_ingest::grain_sql::Table::Catalog { database: settings.athena.database.clone(), table: settings.athena.table.clone() },
                    }
                }
                finops_ingest::grain_sql::Dialect::DuckDb => {
                    let source = finops_lambda::monthly::open_source(&settings).await?;
                    source.grain_query(settings.source.format, &month, &tag_keys).await?
                }
            };
            print!("{}", query.render(dialect));
            Ok(())
        }
        Command::Explain { team, month, service, quiet, source } => {
            let settings = source.settings_with_secrets().await?;
            let loaded = load_rules(&settings.rules_path())?;
            let store = finops_lambda::monthly::open_source(&settings).await?;
            let done = allocate_month(&settings, &store, &loaded.rules, month, &TerminalProgress::new(quiet)).await?;
            let text = finops_report::allocation::explain(&loaded.rules, &done.allocation, &team, service.as_deref())
                .map_err(|e| anyhow::anyhow!("{e} ({})", loaded.path))?;
            print!("{text}");
            Ok(())
        }
    }
}

/// What an alert run found and did with it, one line each.
fn print_alerts(title: &str, found: &[finops_lambda::alerting::Found], delivery: &finops_report::slack::Delivery, written: &str) {
    println!("{title}: {} found, {} sent, {} already sent, {} pending, {} without a webhook", found.len(), delivery.sent.len(), delivery.already_sent.len(), delivery.pending.len(), delivery.unrouted.len());
    for f in found {
        println!("  [{}] {} -> {}", f.kind, f.text, f.route);
    }
    for (id, why) in &delivery.pending {
        eprintln!("warning: alert {id} pending: {why}");
    }
    if !delivery.unrouted.is_empty() {
        println!("  not sent: {} alert(s) have no webhook for their route; set FINOPS_SLACK_WEBHOOK_<ROUTE> (e.g. {}) or [alerts.webhooks]", delivery.unrouted.len(), delivery.unrouted[0].1.split("set ").nth(1).and_then(|r| r.split(' ').next()).unwrap_or("FINOPS_SLACK_WEBHOOK_FINOPS"));
    }
    println!("recorded in {written}");
}

/// An error and its causes on one line, each said once: several of ours (and the SDK's) put
/// their source's text in their own message too, which `{:#}` would print twice
/// (`No such file or directory (os error 2): No such file or directory (os error 2)`).
fn error_text(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

/// `1 share rule`, `2 share rules`.
fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// A rules file, or every `*.toml` in a folder (sorted).
fn rule_files(path: &std::path::Path) -> anyhow::Result<Vec<PathBuf>> {
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| path.display().to_string())?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        if files.is_empty() {
            anyhow::bail!("{}: no *.toml rule files", path.display());
        }
        Ok(files)
    } else {
        Ok(vec![path.to_path_buf()])
    }
}
