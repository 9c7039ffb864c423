//! The monthly job: ingest a billing period, total it, and publish the month's outputs. It wires
//! the crates together; the work is theirs.

use std::collections::BTreeMap;

use finops_allocate::{CostBasis, CostFrame, Money};
use finops_ingest::store::{BillingStore, Location};
use finops_ingest::{ingest_month, IngestOptions, Progress};
use finops_report::manifest::{file_records, totals_record, InputRecord, Manifest, SourceRecord};
use finops_report::sink::{LocalDir, OutputFile, OutputSink};
use finops_report::summary::service_totals_csv;

use crate::config::Config;

/// What a run produced, for the caller to print or return.
#[derive(Debug)]
pub struct MonthlyOutcome {
    pub month: String,
    pub output: String,
    pub line_items: u64,
    pub totals: BTreeMap<CostBasis, Money>,
    pub files: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Ingest(#[from] finops_ingest::Error),
    #[error(transparent)]
    Report(#[from] finops_report::Error),
    #[error("{0}")]
    Output(String),
    #[error("computing totals: {0}")]
    Totals(#[from] polars::prelude::PolarsError),
}

/// Runs the monthly job for `month` (latest present when `None`).
pub async fn run_monthly(config: &Config, month: Option<String>, progress: &dyn Progress) -> Result<MonthlyOutcome, JobError> {
    let location = Location::parse(&config.source.location)?;
    let store = BillingStore::open(&location, &config.aws).await?;
    let options = IngestOptions { format: config.source.format, month, tag_keys: config.tags.keys.clone() };
    let ingested = ingest_month(&store, &options, progress).await?;

    let service_totals = ingested.frame.service_totals()?;
    let totals = CostFrame::grand_totals(&service_totals);
    let line_items = ingested.inputs.iter().map(|i| i.rows).sum();

    let mut files = vec![OutputFile { name: "summary.csv".into(), bytes: service_totals_csv(&service_totals) }];
    let manifest = Manifest {
        billing_period: ingested.month.clone(),
        status: "complete",
        generator: format!("finops {}", env!("CARGO_PKG_VERSION")),
        source: SourceRecord {
            location: ingested.source.clone(),
            format: ingested.format.name().into(),
            manifest: ingested.manifest.clone(),
        },
        inputs: ingested
            .inputs
            .iter()
            .map(|i| InputRecord { key: i.key.clone(), bytes: i.bytes, sha256: i.sha256.clone(), rows: i.rows })
            .collect(),
        line_items,
        totals: totals_record(&totals),
        files: file_records(&files),
    };
    files.push(manifest.to_file());

    let sink = match Location::parse(&config.output.location)? {
        Location::Local(root) => LocalDir { root },
        Location::S3 { .. } => {
            return Err(JobError::Output(format!(
                "{}: S3 output is not supported yet; write to a local folder",
                config.output.location
            )))
        }
    };
    let output = sink.publish(&ingested.month, &files)?;
    Ok(MonthlyOutcome {
        month: ingested.month,
        output,
        line_items,
        totals,
        files: files.iter().map(|f| f.name.clone()).collect(),
    })
}
