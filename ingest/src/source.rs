//! Where a month's billing data comes from, and what aggregates it: export files read here
//! (polars), the same files' table on Athena, or the Cost Explorer API. Each gives the month at
//! the allocation grain.

use std::str::FromStr;

use crate::store::{self, BillingStore};
use crate::{
    athena, check_month, check_options, cost_explorer, export, export_format, grain_sql, ingest_listed, ingest_month, previous_month, Error, Format, IngestOptions, IngestedMonth, InputFile, Progress,
    Result,
};

/// Where a month's billing data comes from: export files (a folder or an S3 prefix), or the
/// Cost Explorer API.
pub enum BillingSource {
    Files(BillingStore),
    CostExplorer(cost_explorer::CostExplorer),
    /// The export's month aggregated by Athena: always, or (`auto`) when its data objects under
    /// `files` are larger than `[athena] auto_min_bytes`.
    Athena {
        athena: athena::Athena,
        files: BillingStore,
        auto: bool,
    },
}

/// Which engine runs a month's one pass (`[source] engine`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// polars, in this process.
    #[default]
    Local,
    /// Amazon Athena over the CUR 2.0 table.
    Athena,
    /// Athena for months larger than `[athena] auto_min_bytes`, else local.
    Auto,
}

impl FromStr for Engine {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "local" => Ok(Engine::Local),
            "athena" => Ok(Engine::Athena),
            "auto" => Ok(Engine::Auto),
            other => Err(format!("unknown engine `{other}`: use local, athena or auto")),
        }
    }
}

impl BillingSource {
    /// Opens `location` (`cost-explorer` names the API) as `format` says.
    pub async fn open(location: &store::Location, format: Format, aws: &store::AwsSettings) -> Result<BillingSource> {
        match (location, format) {
            (store::Location::CostExplorer, Format::Auto | Format::CostExplorer) => Ok(BillingSource::CostExplorer(cost_explorer::CostExplorer::open(aws).await)),
            (store::Location::CostExplorer, other) => Err(Error::BadLocation {
                location: location.to_string(),
                reason: format!("the Cost Explorer API is not a `{}` export: set format = \"cost-explorer\" (or auto), or point the source at the export's files", other.name()),
            }),
            (_, Format::CostExplorer) => {
                Err(Error::BadLocation { location: location.to_string(), reason: "format = \"cost-explorer\" reads the API, not files: set the source location to `cost-explorer`".into() })
            }
            _ => Ok(BillingSource::Files(BillingStore::open(location, aws).await?)),
        }
    }

    /// The source with its months aggregated by `engine`.
    pub async fn with_engine(self, engine: Engine, settings: &athena::AthenaSettings, aws: &store::AwsSettings) -> Result<BillingSource> {
        match (self, engine) {
            (source, Engine::Local) => Ok(source),
            (BillingSource::CostExplorer(_), _) => Err(Error::BadLocation {
                location: store::Location::CostExplorer.to_string(),
                reason: "Cost Explorer has no line items for Athena to aggregate: set [source] engine = \"local\"".into(),
            }),
            (BillingSource::Files(store), engine) => {
                let athena = athena::Athena::open(aws, settings.clone()).await;
                Ok(BillingSource::Athena { athena, files: store, auto: engine == Engine::Auto })
            }
            (source @ BillingSource::Athena { .. }, _) => Ok(source),
        }
    }

    /// The grain query of a CUR 2.0 month over this source's files (for DuckDB: exactly the
    /// data files the month's manifest names, as local paths or `s3://` URIs).
    pub async fn grain_query(&self, format: Format, month: &str, tag_keys: &[String]) -> Result<grain_sql::GrainQuery> {
        check_month(month)?;
        let store = match self {
            BillingSource::Files(store) | BillingSource::Athena { files: store, .. } => store,
            BillingSource::CostExplorer(_) => {
                return Err(Error::BadLocation { location: self.root(), reason: "the Cost Explorer API has no line items to query; the grain query reads a CUR 2.0 export".into() })
            }
        };
        let objects = store.list().await?;
        let format = export_format(store, &objects, format)?;
        if format != Format::Cur2 {
            return Err(Error::BadLocation { location: store.root(), reason: format!("the grain query reads CUR 2.0 (Data Exports); this source is {}: run it with the local engine", format.name()) });
        }
        let files = export::month_files(store, format, &objects, month).await?;
        if files.data_keys.is_empty() {
            return Err(Error::EmptyMonth { source_root: store.root(), month: month.to_string(), available: export::months(format, &objects) });
        }
        let uris = files.data_keys.iter().map(|k| store.display(k)).collect();
        // How the files store the tags, from the first file's footer (read alone, not the file).
        let tags = grain_sql::tag_column(store, &files.data_keys[0]).await?;
        Ok(grain_sql::GrainQuery { month: month.to_string(), tag_keys: tag_keys.to_vec(), table: grain_sql::Table::Files { uris, tags } })
    }

    /// The months the source has files for, from one listing; `None` where that is not known
    /// without reading the data (FOCUS files hold any months; the Cost Explorer API has them all).
    pub async fn months(&self, format: Format) -> Result<Option<Vec<String>>> {
        let store = match self {
            BillingSource::Files(store) | BillingSource::Athena { files: store, .. } => store,
            BillingSource::CostExplorer(_) => return Ok(None),
        };
        let objects = store.list().await?;
        let format = export_format(store, &objects, format)?;
        Ok(export::of(format).filter(|layout| !layout.periods_in_data()).map(|layout| layout.months(&objects).into_iter().collect()))
    }

    /// Removes the local copies of a month's files once its grain is built (see
    /// [`BillingStore::release`]): a run that reads several months holds one month's files at a time.
    pub fn release(&self, inputs: &[InputFile]) {
        if let BillingSource::Files(store) | BillingSource::Athena { files: store, .. } = self {
            store.release(inputs.iter().map(|i| i.key.as_str()));
        }
    }

    /// Billable API calls made through this source so far (Cost Explorer: $0.01 each).
    pub fn api_calls(&self) -> u32 {
        match self {
            BillingSource::Files(_) | BillingSource::Athena { .. } => 0,
            BillingSource::CostExplorer(explorer) => explorer.calls(),
        }
    }

    /// The source as the user would write it.
    pub fn root(&self) -> String {
        match self {
            BillingSource::Files(store) => store.root(),
            BillingSource::CostExplorer(_) => store::Location::CostExplorer.to_string(),
            BillingSource::Athena { athena, .. } => athena.table(),
        }
    }

    /// Reads one billing period to its grain (the latest present when `options.month` is
    /// `None`; for Cost Explorer, the last complete month).
    pub async fn ingest_month(&self, options: &IngestOptions, progress: &dyn Progress) -> Result<IngestedMonth> {
        let explorer = match self {
            BillingSource::Files(store) => return ingest_month(store, options, progress).await,
            BillingSource::Athena { athena, files, auto } => return athena_month(athena, files, *auto, options, progress).await,
            BillingSource::CostExplorer(explorer) => explorer,
        };
        let mut notes = vec![
            "the Cost Explorer source has no line items: its cost arrives per day, service and team tag only, so rules on account, resource, region, usage type or other tags match nothing there"
                .to_string(),
        ];
        let month = match &options.month {
            Some(m) => {
                check_month(m)?;
                m.clone()
            }
            None => {
                let month = previous_month(&chrono::Utc::now().format("%Y-%m").to_string())?;
                notes.push(format!("no month asked for: Cost Explorer's last complete month, {month}, was read"));
                month
            }
        };
        let Some(team_tag) = options.team_tag.as_deref() else {
            return Err(Error::CostExplorer { message: "the rule set names no team tag (team_tags) to group Cost Explorer's cost by".into() });
        };
        progress.stage(&format!("Cost Explorer: {month}, daily, by the `{team_tag}` tag and service"));
        let read = explorer.month(&month, &options.tag_keys, team_tag, options.cost_basis).await;
        let calls = explorer.calls();
        tracing::info!(month = %month, calls, dollars = f64::from(calls) * cost_explorer::DOLLARS_PER_CALL, "Cost Explorer calls so far");
        let read = read?;
        progress.finish();
        if read.grain.line_items() == 0 {
            return Err(Error::EmptyMonth { source_root: self.root(), month, available: Vec::new() });
        }
        if !read.estimated_days.is_empty() {
            notes.push(format!(
                "Cost Explorer marks {} day(s) of {month} as estimated ({} to {}): the month is not final and its figures can still change",
                read.estimated_days.len(),
                read.estimated_days.first().map(String::as_str).unwrap_or_default(),
                read.estimated_days.last().map(String::as_str).unwrap_or_default()
            ));
        }
        let mut ingested = IngestedMonth::from_grain(Format::CostExplorer, month, self.root(), read.pages, read.grain, notes);
        ingested.api_calls = calls;
        Ok(ingested)
    }
}

/// A month through Athena, or (`auto`, small months) through the local pass.
async fn athena_month(athena: &athena::Athena, store: &BillingStore, auto: bool, options: &IngestOptions, progress: &dyn Progress) -> Result<IngestedMonth> {
    check_options(store, options)?;
    let mut notes = Vec::new();
    let objects = store.list().await?;
    let format = export_format(store, &objects, options.format)?;
    // Athena reads the CUR 2.0 table, which an S3 export feeds: `auto` keeps anything else local.
    if auto {
        let why = if format != Format::Cur2 {
            Some(format!("the export is {}, which the grain query does not read", format.name()))
        } else if !matches!(store, BillingStore::S3 { .. }) {
            Some("the source is a local folder, which Athena cannot read".to_string())
        } else {
            None
        };
        if let Some(why) = why {
            let mut local = ingest_listed(store, objects, options, progress).await?;
            local.notes.push(format!("engine auto: {} aggregated locally ({why})", local.month));
            return Ok(local);
        }
    }
    let present = export::months(format, &objects);
    let month = match &options.month {
        Some(m) => m.clone(),
        None => present.last().cloned().ok_or_else(|| Error::NoData { source_root: store.root() })?,
    };
    let data = export::month_files(store, format, &objects, &month).await?;
    if auto {
        let bytes: u64 = objects.iter().filter(|o| data.data_keys.contains(&o.key)).map(|o| o.bytes).sum();
        let threshold = athena.settings.auto_min_bytes;
        if bytes < threshold {
            let mut local = ingest_listed(store, objects, options, progress).await?;
            local.notes.push(format!("engine auto: {month} aggregated locally ({bytes} bytes of data, under [athena] auto_min_bytes {threshold})"));
            return Ok(local);
        }
        notes.push(format!("engine auto: {month} aggregated by Athena ({bytes} bytes of data, over [athena] auto_min_bytes {threshold})"));
    }
    if data.data_keys.is_empty() {
        return Err(Error::EmptyMonth { source_root: store.root(), month, available: present });
    }
    // The grain query sums line items; splitting nodes to pods is the local pass's (module
    // scad). Said, so a month with the data does not quietly keep node cost on the instances.
    if data.data_keys.first().is_some_and(|k| k.ends_with(".parquet")) && grain_sql::has_split_cost(store, &data.data_keys[0]).await? {
        notes.push(format!(
            "{month} has split cost allocation data, which Athena's grain query does not apply: node cost stays on the instances (the bill is exact; pods are not attributed). Run the month with [source] engine = \"local\" to split nodes to their pods"
        ));
    }
    let (result, record) = athena.month(&month, &options.tag_keys, options.cost_basis, progress).await?;
    progress.finish();
    if result.bad_rows > 0 {
        return Err(Error::Unreadable {
            file: format!("{} (query {})", athena.table(), record.query_id),
            message: format!("{} line items of {month} have a cell that fails the checks (a NaN or infinite amount, a missing account or billing period, a Usage line without a cost): run the month with [source] engine = \"local\" to name the first", result.bad_rows),
        });
    }
    let line_items = result.grain.line_items();
    if line_items == 0 {
        return Err(Error::EmptyMonth { source_root: athena.table(), month, available: Vec::new() });
    }
    let input = InputFile { key: format!("{}/billing_period={month}", athena.table()), bytes: record.bytes_scanned, sha256: record.sql_sha256.clone(), rows: line_items };
    let mut ingested = IngestedMonth::from_grain(Format::Cur2, month, athena.table(), vec![input], result.grain, notes);
    ingested.athena = Some(record);
    Ok(ingested)
}
