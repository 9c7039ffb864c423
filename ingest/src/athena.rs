//! Amazon Athena as the engine of a month's one pass (docs/design.md §8 Scale): the grain query runs
//! on Athena over the CUR 2.0 / CID table, and its result object — one row per grain row, which
//! can be millions — is streamed from S3 to local disk and read into the same grain the local
//! pass builds. Rules, splits, GPU chargeback, rounding and outputs stay ours.

use std::time::{Duration, Instant};

use aws_sdk_athena::types::{QueryExecutionContext, QueryExecutionState, ResultConfiguration};
use finops_allocate::CostBasis;
use serde::{Deserialize, Serialize};

use crate::grain_sql::{Dialect, GrainQuery, GrainResult, Table};
use crate::store::AwsSettings;
use crate::{Error, Progress, Result};

/// Athena bills $5 per TB scanned, each query at least 10 MB, rounded up to the MB.
pub const DOLLARS_PER_TB: f64 = 5.0;
const MIN_BILLED_BYTES: u64 = 10_000_000;

/// Where the month's table is and how long a query may take (`[athena]`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AthenaSettings {
    /// The Glue database and table of the CUR 2.0 export (the Cloud Intelligence Dashboards'
    /// standard names by default).
    pub database: String,
    pub table: String,
    pub catalog: String,
    /// The workgroup; its result location and encryption apply unless `output_location` is set.
    pub workgroup: Option<String>,
    /// `s3://bucket/prefix/` for result objects.
    pub output_location: Option<String>,
    /// A query that has not finished by then is stopped and the run fails.
    pub timeout_seconds: u64,
    /// With `[source] engine = "auto"`: Athena for months whose data objects are larger.
    pub auto_min_bytes: u64,
}

impl Default for AthenaSettings {
    fn default() -> Self {
        AthenaSettings {
            database: "cid_data_export".into(),
            table: "cur2".into(),
            catalog: "AwsDataCatalog".into(),
            workgroup: None,
            output_location: None,
            timeout_seconds: 600,
            auto_min_bytes: 2 << 30,
        }
    }
}

/// What the manifest records of the query that aggregated a month.
#[derive(Clone, Debug, Serialize)]
pub struct AthenaQuery {
    pub query_id: String,
    /// SHA-256 of the exact SQL run (`finops sql --dialect trino` prints the same text).
    pub sql_sha256: String,
    pub bytes_scanned: u64,
    /// What the scan cost at $5 per TB (10 MB minimum).
    pub dollars: String,
    pub engine_ms: i64,
    pub result: String,
}

/// The cost of scanning `bytes` (rounded up to the MB, at least 10 MB).
pub fn scan_dollars(bytes: u64) -> f64 {
    let billed = bytes.max(MIN_BILLED_BYTES).div_ceil(1_000_000) * 1_000_000;
    billed as f64 / 1e12 * DOLLARS_PER_TB
}

/// An Athena client with the settings of its table.
pub struct Athena {
    client: aws_sdk_athena::Client,
    s3: aws_sdk_s3::Client,
    pub settings: AthenaSettings,
    /// The first wait between status checks (doubling to 5 s).
    pub first_poll: Duration,
}

impl Athena {
    pub async fn open(aws: &AwsSettings, settings: AthenaSettings) -> Athena {
        let shared = aws.sdk_config().await;
        Athena { client: aws_sdk_athena::Client::new(&shared), s3: aws.s3_client().await, settings, first_poll: Duration::from_millis(250) }
    }

    /// The table as a person reads it.
    pub fn table(&self) -> String {
        format!("athena:{}.{}", self.settings.database, self.settings.table)
    }

    /// The month's grain query over the table.
    pub fn query(&self, month: &str, tag_keys: &[String]) -> GrainQuery {
        GrainQuery { month: month.into(), tag_keys: tag_keys.to_vec(), table: Table::Catalog { database: self.settings.database.clone(), table: self.settings.table.clone() } }
    }

    /// Runs the month's grain query and reads its result. A failed or cancelled query fails
    /// with Athena's reason; one still running at the timeout is stopped and fails.
    pub async fn month(&self, month: &str, tag_keys: &[String], basis: CostBasis, progress: &dyn Progress) -> Result<(GrainResult, AthenaQuery)> {
        let query = self.query(month, tag_keys);
        let sql = query.render(Dialect::Trino);
        let sql_sha256 = {
            use sha2::Digest;
            crate::store::hex(&sha2::Sha256::digest(sql.as_bytes()))
        };
        let failed = |id: &str, message: String| Error::Athena { query: id.to_string(), message };
        let mut start = self
            .client
            .start_query_execution()
            .query_string(&sql)
            .query_execution_context(QueryExecutionContext::builder().catalog(&self.settings.catalog).database(&self.settings.database).build())
            .set_work_group(self.settings.workgroup.clone());
        if let Some(location) = &self.settings.output_location {
            start = start.result_configuration(ResultConfiguration::builder().output_location(location).build());
        }
        let started = start.send().await.map_err(|e| crate::aws_error("Athena", &e, |message| failed("(not started)", message)))?;
        let id = started.query_execution_id().unwrap_or_default().to_string();
        tracing::info!(query_id = %id, month, table = %self.table(), "Athena query started");
        progress.stage(&format!("Athena: query {id} over {}", self.table()));

        let deadline = Instant::now() + Duration::from_secs(self.settings.timeout_seconds);
        let mut wait = self.first_poll;
        let execution = loop {
            let answer = self.client.get_query_execution().query_execution_id(&id).send().await.map_err(|e| failed(&id, crate::error_chain(&e)))?;
            let execution = answer.query_execution().cloned().ok_or_else(|| failed(&id, "GetQueryExecution returned no execution".into()))?;
            let status = execution.status();
            let reason = || {
                let mut text = status.and_then(|s| s.state_change_reason()).unwrap_or_default().to_string();
                if let Some(error) = status.and_then(|s| s.athena_error()) {
                    if let Some(message) = error.error_message().filter(|m| !text.contains(*m)) {
                        text = if text.is_empty() { message.to_string() } else { format!("{text} ({message})") };
                    }
                }
                if text.is_empty() {
                    "Athena gave no reason".to_string()
                } else {
                    text
                }
            };
            match status.and_then(|s| s.state()) {
                Some(QueryExecutionState::Succeeded) => break execution,
                Some(QueryExecutionState::Failed) => return Err(failed(&id, format!("failed: {}", reason()))),
                Some(QueryExecutionState::Cancelled) => return Err(failed(&id, format!("was cancelled: {}", reason()))),
                _ => {}
            }
            if Instant::now() + wait > deadline {
                let stopped = self.client.stop_query_execution().query_execution_id(&id).send().await;
                return Err(failed(
                    &id,
                    format!(
                        "did not finish within {} s ([athena] timeout_seconds); {}",
                        self.settings.timeout_seconds,
                        match stopped {
                            Ok(_) => "it was stopped".to_string(),
                            Err(e) => format!("stopping it failed too: {}", crate::error_chain(&e)),
                        }
                    ),
                ));
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
        };

        let stats = execution.statistics();
        let bytes_scanned = stats.and_then(|s| s.data_scanned_in_bytes()).unwrap_or(0).max(0) as u64;
        let engine_ms = stats.and_then(|s| s.engine_execution_time_in_millis()).unwrap_or(0);
        let location = execution
            .result_configuration()
            .and_then(|r| r.output_location())
            .ok_or_else(|| failed(&id, "succeeded without a result location: set [athena] output_location or a workgroup result location".into()))?
            .to_string();
        let record = AthenaQuery { query_id: id.clone(), sql_sha256, bytes_scanned, dollars: format!("{:.6}", scan_dollars(bytes_scanned)), engine_ms, result: location.clone() };
        tracing::info!(query_id = %id, bytes_scanned, dollars = %record.dollars, engine_ms, "Athena query succeeded");

        // The result object to local disk as a stream, then read row by row: memory holds the
        // grain, never the result's text.
        progress.stage(&format!("Athena: reading the result {location}"));
        let (bucket, key) = location.strip_prefix("s3://").and_then(|rest| rest.split_once('/')).ok_or_else(|| failed(&id, format!("the result location `{location}` is not s3://bucket/key")))?;
        let object = self.s3.get_object().bucket(bucket).key(key).send().await.map_err(|e| failed(&id, format!("reading the result {location}: {}", crate::error_chain(&e))))?;
        let scratch = tempfile::NamedTempFile::new().map_err(|source| Error::Io { path: std::env::temp_dir(), source })?;
        let mut local = tokio::fs::File::create(scratch.path()).await.map_err(|source| Error::Io { path: scratch.path().to_path_buf(), source })?;
        let mut body = object.body.into_async_read();
        tokio::io::copy(&mut body, &mut local).await.map_err(|e| failed(&id, format!("reading the result {location}: {e}")))?;
        drop(local);
        let path = scratch.path().to_path_buf();
        let result = tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(&path).map_err(|source| Error::Io { path: path.clone(), source })?;
            crate::grain_sql::read_result(std::io::BufReader::with_capacity(1 << 20, file), &query, basis, &location)
        })
        .await
        .map_err(|e| failed(&id, format!("reading the result: {e}")))??;
        Ok((result, record))
    }
}
