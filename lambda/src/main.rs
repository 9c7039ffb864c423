//! `finops`: the pipeline's command line. With no flags, `finops run` runs the monthly job on the
//! committed fixtures and writes `out/<YYYY-MM>/`.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use finops_allocate::CostBasis;
use finops_ingest::{Format, Progress};
use finops_lambda::config::Config;
use finops_lambda::monthly::run_monthly;

#[derive(Parser)]
#[command(name = "finops", version, about = "Allocate every cent of the cloud bill to a team.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the monthly job: ingest a billing period and write its outputs.
    Run {
        /// Billing period, YYYY-MM (default: the latest month in the source).
        #[arg(long)]
        month: Option<String>,
        /// Configuration file (finops.toml). Flags override it.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Billing data: a local folder or s3://bucket/prefix (default: the committed fixtures).
        #[arg(long)]
        source: Option<String>,
        /// Layout of the billing data: auto, cur2, cur or focus.
        #[arg(long)]
        format: Option<Format>,
        /// Output root; the month is written to <out>/<YYYY-MM>/ (default: out).
        #[arg(long)]
        out: Option<String>,
        /// AWS endpoint override (e.g. a local moto server); region from --region or the environment.
        #[arg(long)]
        endpoint_url: Option<String>,
        #[arg(long)]
        region: Option<String>,
    },
}

/// A progress bar on a terminal, nothing otherwise (logs, Lambda, CI).
struct TerminalProgress(indicatif::ProgressBar);

impl TerminalProgress {
    fn new() -> Self {
        let bar = if std::io::stderr().is_terminal() {
            indicatif::ProgressBar::new(0)
        } else {
            indicatif::ProgressBar::hidden()
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} ({eta})")
                .expect("valid template")
                .progress_chars("=> "),
        );
        TerminalProgress(bar)
    }
}

impl Progress for TerminalProgress {
    fn start(&self, what: &str, total: u64) {
        self.0.set_message(what.to_string());
        self.0.set_length(total);
        self.0.set_position(0);
    }
    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
    fn finish(&self) {
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
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run { month, config, source, format, out, endpoint_url, region } => {
            let mut settings = match &config {
                Some(path) => Config::load(path)?,
                None => Config::default(),
            };
            if let Some(source) = source {
                settings.source.location = source;
            }
            if let Some(format) = format {
                settings.source.format = format;
            }
            if let Some(out) = out {
                settings.output.location = out;
            }
            if endpoint_url.is_some() {
                settings.aws.endpoint_url = endpoint_url;
            }
            if region.is_some() {
                settings.aws.region = region;
            }
            let progress = TerminalProgress::new();
            let outcome = run_monthly(&settings, month, &progress)
                .await
                .with_context(|| format!("monthly job on {} failed; nothing was written", settings.source.location))?;
            println!("billing period {}: {} line items from {}", outcome.month, outcome.line_items, settings.source.location);
            for basis in CostBasis::ALL {
                if let Some(total) = outcome.totals.get(&basis) {
                    println!("  {:<14} {:>16}", basis.name(), total.round_to_cents().to_string());
                }
            }
            println!("wrote {}/:", outcome.output);
            for file in &outcome.files {
                println!("  {}/{}", outcome.output, file);
            }
            Ok(())
        }
    }
}
