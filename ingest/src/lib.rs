//! Inbound adapters: billing exports into the cost frame of `finops-allocate`.
//!
//! Reads CUR 2.0 (Data Exports parquet), legacy CUR (CSV, CSV.gz, parquet, through the month's
//! `<report>-Manifest.json`) and FOCUS 1.0–1.2 (CSV or parquet), from a local directory or an S3
//! prefix, or the month's daily cost from the Cost Explorer API. Files are scanned lazily and
//! only the columns the cost frame needs are read; every amount becomes exact decimal money at
//! this boundary.
//!
//! ```no_run
//! # async fn demo() -> finops_ingest::Result<()> {
//! use finops_ingest::{store::{AwsSettings, Location}, BillingSource, Format, IngestOptions, Silent};
//! let source = BillingSource::open(&Location::parse("fixtures/cur2")?, Format::Auto, &AwsSettings::default()).await?;
//! let options = IngestOptions { format: Format::Auto, month: None, tag_keys: vec!["team".into()], cost_basis: finops_allocate::CostBasis::Amortized, team_tag: Some("team".into()), team_tag_keys: 1 };
//! let month = source.ingest_month(&options, &Silent).await?;
//! println!("{} line items in {}", month.inputs.iter().map(|i| i.rows).sum::<u64>(), month.month);
//! # Ok(()) }
//! ```

pub mod athena;
pub mod cost_explorer;
mod cur;
mod export;
pub mod frame;
pub mod gpu;
pub mod grain;
pub mod grain_sql;
mod parquet_pass;
pub mod prometheus;
mod scad;
mod scan;
pub mod secrets;
mod source;
pub mod store;
pub mod usage;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::str::FromStr;

use finops_allocate::cost_frame::{col, AccountOwner, AccountOwners};
use finops_allocate::CostBasis;
pub use frame::CostFrame;
use polars::prelude::*;
pub use source::{BillingSource, Engine};

use crate::scan::{check_files, SourceFile, BAD, ROW};
use crate::store::BillingStore;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong reading billing data; each names the file (and row or column)
/// and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{location}: {reason}")]
    BadLocation { location: String, reason: String },
    #[error("{path}: {source}", path = path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{uri}: could not {action} on S3: {message}. Check the bucket, key, region and that the role may s3:ListBucket and s3:GetObject there")]
    S3 { uri: String, action: &'static str, message: String },
    #[error("{file}: unreadable: {message}. Re-download or re-export the file")]
    Unreadable { file: String, message: String },
    #[error("{file}: missing required column `{column}`; this does not look like a complete {format} file. Export it with all default columns")]
    MissingColumn { file: String, column: String, format: String },
    #[error("{file}: column `{column}` holds {found}, expected {expected}")]
    WrongType { file: String, column: String, found: String, expected: String },
    #[error("{file}: {position}, column `{column}`: `{value}` is not a valid value (amounts must be finite decimal numbers, times ISO 8601). Fix or re-export the file")]
    BadValue { file: String, position: String, column: String, value: String },
    #[error("{file}: a `Tags` cell is not a JSON object ({message}): {value}")]
    BadTags { file: String, value: String, message: String },
    #[error("{manifest}: {message}")]
    BadManifest { manifest: String, message: String },
    #[error("{manifest}: lists `{entry}`, which is not under the source. The export is incomplete or was copied partially: copy the whole month, or wait for the export to finish")]
    ManifestEntryMissing { manifest: String, entry: String },
    #[error("{second}: the same bytes as {first}; the month would be counted twice. Remove the copy, or deliver the month with its manifest")]
    DuplicateFile { first: String, second: String },
    #[error("{source_root}: no billing data for {}{}", if month.is_empty() { "the period asked for" } else { month.as_str() }, available_months(.available))]
    EmptyMonth { source_root: String, month: String, available: Vec<String> },
    #[error("{source_root}: no billing files found: the folder of {month}, {folder}, is empty. The export has not delivered {month} yet, or the copy was cut short: wait for the export, or copy the month's files")]
    EmptyMonthFolder { source_root: String, month: String, folder: String },
    #[error("{source_root}: no billing files found (expected CUR 2.0 `data/BILLING_PERIOD=YYYY-MM/`, a legacy CUR `<report>-Manifest.json`, or FOCUS .csv/.parquet files)")]
    NoData { source_root: String },
    #[error("{source_root}: holds several billing exports ({}): point the source at one of them, e.g. `{}`", exports.join(", "), example)]
    SeveralExports { source_root: String, exports: Vec<String>, example: String },
    #[error(
        "{source_root}: --format {asked} finds no {asked} export here ({expected}), but the files are laid out as {found}: use --format {found_name}, or leave --format out (auto tells them apart)"
    )]
    LayoutMismatch { source_root: String, asked: String, expected: String, found: String, found_name: String },
    #[error("{file}: looks like {found}, not {asked} (it has `{evidence}`): use --format {use_format}, or leave --format out (auto tells them apart)")]
    WrongFormat { file: String, found: String, asked: String, evidence: String, use_format: String },
    #[error("{source_root}: several CUR reports for {month} ({}): point the source at one report's folder", reports.join(", "))]
    AmbiguousReports { source_root: String, month: String, reports: Vec<String> },
    #[error("{service}: no AWS credentials found (looked in: {tried}). Set AWS_PROFILE (after `aws sso login` or `aws configure`), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run where a role is attached")]
    NoCredentials { service: String, tried: String },
    #[error("Cost Explorer: {message}. Check the credentials may ce:GetCostAndUsage, and that the team tag is activated as a cost allocation tag")]
    CostExplorer { message: String },
    #[error("{setting}: could not read the secret `{reference}`: {message}. Check that it exists in this region and that the role may read it (secretsmanager:GetSecretValue, or ssm:GetParameter for ssm: names)")]
    Secret { setting: String, reference: String, message: String },
    #[error("Athena query {query}: {message}")]
    Athena { query: String, message: String },
    #[error("{at}: Prometheus: {message}")]
    Prometheus { at: String, message: String },
    #[error("GPU usage {file}: {message}")]
    GpuUsage { file: String, message: String },
    #[error("{at}: usage driver {file}: {message}")]
    Driver { at: String, file: String, message: String },
    #[error("invalid month `{0}`: expected YYYY-MM, e.g. 2025-10")]
    BadMonth(String),
    #[error("{0}")]
    Polars(#[from] PolarsError),
}

fn available_months(available: &[String]) -> String {
    if available.is_empty() {
        String::new()
    } else {
        format!(" (months present: {})", available.join(", "))
    }
}

/// The export layout of a source.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// Tell from the keys under the root.
    Auto,
    /// CUR 2.0 from AWS Data Exports.
    Cur2,
    /// Legacy Cost and Usage Report.
    Cur,
    /// FinOps FOCUS 1.0–1.2.
    Focus,
    /// The Cost Explorer API (no files: day × team tag × service).
    CostExplorer,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Auto => "auto",
            Format::Cur2 => "cur2",
            Format::Cur => "cur",
            Format::Focus => "focus",
            Format::CostExplorer => "cost-explorer",
        }
    }
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(Format::Auto),
            "cur2" => Ok(Format::Cur2),
            "cur" => Ok(Format::Cur),
            "focus" => Ok(Format::Focus),
            "cost-explorer" => Ok(Format::CostExplorer),
            other => Err(format!("unknown format `{other}`: use auto, cur2, cur, focus or cost-explorer")),
        }
    }
}

/// What to read.
#[derive(Clone, Debug)]
pub struct IngestOptions {
    pub format: Format,
    /// `YYYY-MM`; `None` reads the latest month present.
    pub month: Option<String>,
    /// Tag keys to carry as `tag.<key>` columns (those the rules read).
    pub tag_keys: Vec<String>,
    /// The cost basis of the grain's cost lines (the rule set's); service totals carry all five.
    pub cost_basis: CostBasis,
    /// The team tag key, for sources that group by one tag only (Cost Explorer): the rule set's
    /// first `team_tags` key.
    pub team_tag: Option<String>,
    /// How many of the first `tag_keys` name teams (the rest are read by dimensions and `when`s);
    /// 0: all of them. A month where none of these is on any line is reported
    /// ([`IngestedMonth::untagged_by_rules`]).
    pub team_tag_keys: usize,
}

/// Hears about long work, to show progress on a terminal.
pub trait Progress: Sync {
    /// A stage measured in bytes.
    fn start(&self, _what: &str, _total: u64) {}
    fn advance(&self, _n: u64) {}
    /// A stage of unknown length (a spinner), or a new step of one (`file 2 of 5`).
    fn stage(&self, _what: &str) {}
    /// The current stage is over.
    fn finish(&self) {}
}

/// Reports nothing.
pub struct Silent;
impl Progress for Silent {}

/// One input file as the manifest records it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct InputFile {
    pub key: String,
    pub bytes: u64,
    pub sha256: String,
    /// Line items of the billing period in this file.
    pub rows: u64,
}

/// A month read and checked: the lazy cost frame and where it came from.
pub struct IngestedMonth {
    pub format: Format,
    pub month: String,
    pub source: String,
    /// The manifest that named the files, if the layout has one.
    pub manifest: Option<String>,
    pub inputs: Vec<InputFile>,
    /// The month at the allocation grain, from the one pass over its files.
    pub grain: grain::Grain,
    /// Set only when none of the requested tag keys has a value on any line of the month (the
    /// rule set reads keys the data does not have): the tag keys the data does carry.
    pub untagged_by_rules: Option<std::collections::BTreeSet<String>>,
    /// The line items themselves, lazily, when the source has line items (tests and ad hoc
    /// queries; the job reads the grain).
    pub frame: Option<CostFrame>,
    /// What the source decided that changes the numbers (the run prints and records these).
    pub notes: Vec<String>,
    /// Billable API calls the read made (Cost Explorer: $0.01 each).
    pub api_calls: u32,
    /// The Athena query that aggregated the month, when Athena did.
    pub athena: Option<athena::AthenaQuery>,
    /// Holds S3 copies and inflated `.csv.gz` files for as long as the frame is scanned.
    _scratch: Option<tempfile::TempDir>,
    /// The month's files as opened (read again only for the tags of untagged resources).
    files: Vec<SourceFile>,
    /// CUR 2.0 split cost allocation data, when the export has it: the pods' split of their
    /// nodes, already applied to the grain (`split`), kept for GPU usage and comparisons.
    pub split_cost: Option<finops_allocate::scad::SplitCostData>,
    pub split: Option<finops_allocate::scad::SplitAttribution>,
}

impl IngestedMonth {
    /// Every tag each of `resources` carries in the month's files (all keys, not only the
    /// rules'; AWS's `user_` prefix dropped): what `untagged.csv` shows of a resource no rule
    /// claimed. One query per file over the resource ID and tag columns, filtered to those
    /// resources; empty where the month was summed elsewhere (Cost Explorer, Athena).
    pub fn resource_tags(&self, resources: &BTreeSet<String>) -> Result<BTreeMap<String, BTreeMap<String, String>>> {
        let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        if resources.is_empty() {
            return Ok(out);
        }
        let wanted = Series::new("wanted".into(), resources.iter().map(String::as_str).collect::<Vec<_>>());
        for file in &self.files {
            let unreadable = |e: PolarsError| Error::Unreadable { file: file.staged.display.clone(), message: e.to_string() };
            let (id, tags) = if file.has("line_item_resource_id") { ("line_item_resource_id", "resource_tags") } else { ("ResourceId", "Tags") };
            if !file.has(id) {
                continue;
            }
            let resource = polars::prelude::col(id).cast(DataType::String);
            let rows = file.frame.clone().filter(resource.clone().is_in(lit(wanted.clone()).implode(false), false));
            // `key` as the rules name it.
            let mut add = |resource: &str, key: String, value: &str| {
                let value = value.trim();
                if !key.is_empty() && !value.is_empty() {
                    out.entry(resource.to_string()).or_default().entry(key).or_insert_with(|| value.to_string());
                }
            };
            match file.schema.get(tags) {
                // CUR 2.0's MAP, as polars reads it: a list of key/value structs.
                Some(DataType::List(inner)) if matches!(inner.as_ref(), DataType::Struct(_)) => {
                    let field = |name: &str| polars::prelude::col(tags).list().eval(element().struct_().field_by_name(name)).alias(name);
                    let df = rows.select([resource.alias("resource"), field("key"), field("value")]).collect().map_err(unreadable)?;
                    let ids = df.column("resource").and_then(|c| c.str().cloned()).map_err(unreadable)?;
                    let (keys, values) = (df.column("key").and_then(|c| c.list().cloned()).map_err(unreadable)?, df.column("value").and_then(|c| c.list().cloned()).map_err(unreadable)?);
                    for ((id, k), v) in ids.iter().zip(keys.series_iter()).zip(values.series_iter()) {
                        let (Some(id), Some(k), Some(v)) = (id, k, v) else { continue };
                        let (k, v) = (k.str().map_err(unreadable)?.clone(), v.str().map_err(unreadable)?.clone());
                        for (k, v) in k.iter().zip(v.iter()) {
                            add(id, cur::rule_key(k.unwrap_or_default()), v.unwrap_or_default());
                        }
                    }
                }
                // A JSON object per row (CUR 2.0 as text, FOCUS `Tags`).
                Some(_) => {
                    let df = rows
                        .select([resource.alias("resource"), polars::prelude::col(tags).cast(DataType::String).alias("tags")])
                        .unique(None, UniqueKeepStrategy::Any)
                        .collect()
                        .map_err(unreadable)?;
                    let ids = df.column("resource").and_then(|c| c.str().cloned()).map_err(unreadable)?;
                    let texts = df.column("tags").and_then(|c| c.str().cloned()).map_err(unreadable)?;
                    for (id, text) in ids.iter().zip(texts.iter()) {
                        if let (Some(id), Some(Ok(serde_json::Value::Object(map)))) = (id, text.map(serde_json::from_str::<serde_json::Value>)) {
                            for (k, v) in map {
                                add(id, cur::rule_key(&k), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()).as_str());
                            }
                        }
                    }
                }
                // Legacy CUR: a column per tag key.
                None => {
                    let columns: Vec<(String, String)> = file.names().into_iter().filter_map(|n| cur::column_tag_key(&n).map(|key| (n, key))).collect();
                    if columns.is_empty() {
                        continue;
                    }
                    let mut select = vec![resource.alias("resource")];
                    select.extend(columns.iter().map(|(c, _)| polars::prelude::col(c.as_str()).cast(DataType::String)));
                    let df = rows.select(select).unique(None, UniqueKeepStrategy::Any).collect().map_err(unreadable)?;
                    let ids = df.column("resource").and_then(|c| c.str().cloned()).map_err(unreadable)?;
                    for (c, key) in &columns {
                        let values = df.column(c).and_then(|c| c.str().cloned()).map_err(unreadable)?;
                        for (id, v) in ids.iter().zip(values.iter()) {
                            if let (Some(id), Some(v)) = (id, v) {
                                add(id, key.clone(), v);
                            }
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// The billing account and provider of each usage account of the month: one query over
    /// three columns of the month's files, or, where the month was summed elsewhere (Cost
    /// Explorer, Athena), the provider its format implies and no billing account.
    pub fn account_owners(&self) -> Result<AccountOwners> {
        let Some(frame) = &self.frame else {
            let provider = matches!(self.format, Format::Cur2 | Format::Cur | Format::CostExplorer).then(|| "AWS".to_string());
            return Ok(AccountOwners { accounts: BTreeMap::new(), otherwise: AccountOwner { billing_account: None, provider } });
        };
        let pairs = frame::collect_streaming(
            frame.lazy().select([polars::prelude::col(col::ACCOUNT), polars::prelude::col(col::BILLING_ACCOUNT), polars::prelude::col(col::PROVIDER)]).unique(None, UniqueKeepStrategy::Any),
        )?;
        let text = |name: &str| -> Result<Vec<Option<String>>> { Ok(pairs.column(name)?.str()?.iter().map(|v| v.map(str::trim).filter(|v| !v.is_empty()).map(str::to_string)).collect()) };
        let (accounts, billing, providers) = (text(col::ACCOUNT)?, text(col::BILLING_ACCOUNT)?, text(col::PROVIDER)?);
        let mut rows: Vec<(String, AccountOwner)> =
            accounts.into_iter().zip(billing).zip(providers).map(|((account, billing_account), provider)| (account.unwrap_or_default(), AccountOwner { billing_account, provider })).collect();
        // An account billed by two payers in one month keeps the first by ID (one with a
        // billing account before one without): never the order the rows were read in.
        rows.sort_by(|(a, x), (b, y)| (a, x.billing_account.is_none(), &x.billing_account, &x.provider).cmp(&(b, y.billing_account.is_none(), &y.billing_account, &y.provider)));
        let mut owners = BTreeMap::new();
        for (account, owner) in rows {
            owners.entry(account).or_insert(owner);
        }
        Ok(AccountOwners { accounts: owners, otherwise: AccountOwner::default() })
    }

    /// A month aggregated elsewhere (Athena, or a grain query's result read back): its grain,
    /// with what the source says about it.
    pub fn from_grain(format: Format, month: String, source: String, inputs: Vec<InputFile>, grain: grain::Grain, notes: Vec<String>) -> IngestedMonth {
        IngestedMonth {
            format,
            month,
            source,
            manifest: None,
            inputs,
            grain,
            untagged_by_rules: None,
            frame: None,
            notes,
            api_calls: 0,
            athena: None,
            _scratch: None,
            files: Vec::new(),
            split_cost: None,
            split: None,
        }
    }
}

/// Reads one billing period: finds its files, checks every amount, and returns the cost frame.
/// Fails, naming the file, row and column, on anything that would make a total wrong.
pub async fn ingest_month(store: &BillingStore, options: &IngestOptions, progress: &dyn Progress) -> Result<IngestedMonth> {
    check_options(store, options)?;
    // One listing: the objects to read, and the month folders that hold none.
    let listed = store.list_with_folders().await?;
    let empty_folders = store.empty_month_folders(&listed);
    match ingest_listed(store, store::objects_of(listed), options, progress).await {
        // Nothing to read, where a month's folder is there but empty: that month is the news.
        Err(Error::NoData { source_root }) => match empty_folders.last().cloned() {
            Some((month, folder)) => Err(Error::EmptyMonthFolder { source_root, month, folder }),
            None => Err(Error::NoData { source_root }),
        },
        Ok(mut month) if options.month.is_none() => {
            // The latest month with files is read; a newer folder without any is said.
            for (empty, folder) in empty_folders.into_iter().filter(|(m, _)| *m > month.month) {
                month.notes.push(format!("{empty}: {folder} holds no files yet (not delivered, or a copy cut short): read {}, the latest month with files", month.month));
            }
            Ok(month)
        }
        other => other,
    }
}

/// What can be refused before anything is listed: a malformed month, the API's format on files.
fn check_options(store: &BillingStore, options: &IngestOptions) -> Result<()> {
    if let Some(month) = &options.month {
        check_month(month)?;
    }
    if options.format == Format::CostExplorer {
        return Err(Error::BadLocation { location: store.root(), reason: "format = \"cost-explorer\" reads the API, not files: set the source location to `cost-explorer`".into() });
    }
    Ok(())
}

/// The export layout of the objects under `store`: `format`, or told from their keys. A source
/// holding more than one export (the parent of a CUR 2.0 and a legacy CUR export) is refused,
/// naming them; so is a chosen layout with no months here when the keys are another layout's.
fn export_format(store: &BillingStore, objects: &[store::ObjectMeta], format: Format) -> Result<Format> {
    let exports = export::exports(objects);
    if exports.len() > 1 {
        let root = store.root();
        let under = |prefix: &str| if prefix.is_empty() { "the source itself".to_string() } else { format!("`{prefix}/`") };
        let example = exports.first().map(|(_, p)| if p.is_empty() { root.clone() } else { format!("{}/{p}", root.trim_end_matches('/')) }).unwrap_or_default();
        return Err(Error::SeveralExports { source_root: root, exports: exports.iter().map(|(f, p)| format!("{} under {}", export::layout_name(*f), under(p))).collect(), example });
    }
    match format {
        Format::Auto => export::detect(objects).ok_or_else(|| Error::NoData { source_root: store.root() }),
        chosen @ (Format::Cur2 | Format::Cur) if export::months(chosen, objects).is_empty() => match export::detect(objects) {
            Some(found) if found != chosen => Err(Error::LayoutMismatch {
                source_root: store.root(),
                asked: chosen.name().into(),
                expected: export::layout_name(chosen).into(),
                found: export::layout_name(found).into(),
                found_name: found.name().into(),
            }),
            _ => Ok(chosen),
        },
        chosen => Ok(chosen),
    }
}

/// [`ingest_month`] over the objects of the store, already listed.
async fn ingest_listed(store: &BillingStore, objects: Vec<store::ObjectMeta>, options: &IngestOptions, progress: &dyn Progress) -> Result<IngestedMonth> {
    let format = export_format(store, &objects, options.format)?;
    let layout = export::of(format).ok_or_else(|| Error::NoData { source_root: store.root() })?;
    let present = export::months(format, &objects);
    let month = match &options.month {
        Some(m) => Some(m.clone()),
        None if layout.periods_in_data() => None,
        None => Some(present.last().cloned().ok_or_else(|| Error::NoData { source_root: store.root() })?),
    };
    let files = export::month_files(store, format, &objects, month.as_deref().unwrap_or("")).await?;
    if files.data_keys.is_empty() {
        return Err(Error::EmptyMonth { source_root: store.root(), month: month.unwrap_or_default(), available: present });
    }

    let scratch = tempfile::Builder::new().prefix("finops-ingest-").tempdir().map_err(|source| Error::Io { path: std::env::temp_dir(), source })?;
    let total_bytes = objects.iter().filter(|o| files.data_keys.contains(&o.key)).map(|o| o.bytes).sum();
    progress.start("reading billing files", total_bytes);
    let mut opened = Vec::with_capacity(files.data_keys.len());
    for key in &files.data_keys {
        let staged = store.stage(key).await?;
        // The same bytes twice (a copy left beside the original, with no manifest to say which
        // counts) would count the month twice.
        if let Some(first) = opened.iter().find(|f: &&SourceFile| f.staged.sha256 == staged.sha256 && f.staged.bytes > 0) {
            return Err(Error::DuplicateFile { first: first.staged.display.clone(), second: staged.display.clone() });
        }
        progress.advance(staged.bytes);
        let mut file = SourceFile::open(staged, layout.null_texts(), scratch.path())?;
        layout.prepare(&mut file);
        opened.push(file);
    }
    progress.finish();

    // Per file: the cost frame (a row per line item) and, where the layout sums its own, the
    // same pre-aggregated to the grain.
    let mut frames = Vec::with_capacity(opened.len());
    let mut grains = Vec::with_capacity(opened.len());
    for file in &opened {
        let (frame, grain) = layout.frames(file, &options.tag_keys)?;
        frames.push(frame);
        grains.push(grain);
    }
    let month = match month {
        Some(m) => m,
        None => latest_month_in_data(&frames, &opened)?.ok_or_else(|| Error::NoData { source_root: store.root() })?,
    };
    if layout.periods_in_data() {
        // Files that hold several billing periods: the others are simply not this month.
        frames = frames.into_iter().map(|f| f.filter(polars::prelude::col(col::BILLING_PERIOD).eq(lit(month.as_str())))).collect();
    }

    // The one pass: checks and aggregation together. The layout's own pass where it has one
    // (CUR 2.0 parquet from its dictionary codes), else the polars pass, which reads every
    // layout and is what names a bad cell: only a month with one is read again, file by file.
    let started = std::time::Instant::now();
    // FINOPS_READER=polars sends every month through the polars pass (to compare the two).
    let own = if std::env::var("FINOPS_READER").is_ok_and(|r| r == "polars") { Err("FINOPS_READER=polars".to_string()) } else { layout.pass(&opened, &options.tag_keys, options.cost_basis, progress) };
    let pass = match own {
        Ok(pass) => {
            tracing::info!(seconds = started.elapsed().as_secs_f64(), grain_rows = pass.grain.height(), "summed by the layout's own pass");
            pass
        }
        Err(why) => {
            tracing::debug!(%why, "the month is summed by the polars pass");
            let grains: Vec<LazyFrame> = grains.into_iter().zip(&frames).map(|(g, f)| g.unwrap_or_else(|| grain::pre_aggregate(f.clone(), &options.tag_keys))).collect();
            grain::aggregate(grains, &options.tag_keys, options.cost_basis, progress)?
        }
    };
    progress.finish();
    if pass.bad_rows > 0 {
        check_files(&opened, &frames)?;
        let files: Vec<&str> = opened.iter().map(|f| f.staged.display.as_str()).collect();
        return Err(Error::Unreadable { file: files.join(", "), message: format!("{} line items failed a check that a second read could not locate", pass.bad_rows) });
    }
    if pass.grain.line_items() == 0 {
        return Err(Error::EmptyMonth { source_root: store.root(), month, available: present });
    }
    // A rule set whose tag keys are in none of the data allocates nothing by tag: find the keys
    // the data does have, so the run can say so (read only in that case).
    let team_keys = if options.team_tag_keys == 0 { options.tag_keys.len() } else { options.team_tag_keys.min(options.tag_keys.len()) };
    let untagged_by_rules = if team_keys > 0 && pass.grain.lines().iter().all(|l| l.tags.iter().take(team_keys).all(Option::is_none)) {
        let mut keys = std::collections::BTreeSet::new();
        for file in &opened {
            keys.extend(layout.tag_keys_in(file)?);
        }
        Some(keys)
    } else {
        None
    };
    // Split cost allocation data: the nodes' cost goes to their pods, exactly, before anything
    // reads the grain (module `scad`).
    let mut pass = pass;
    let mut notes = Vec::new();
    let (split_cost, split) = if scad::present(&opened) {
        let started = std::time::Instant::now();
        let data = scad::read(&opened, &month)?;
        tracing::info!(records = data.pods.len(), seconds = started.elapsed().as_secs_f64(), "split cost allocation data read");
        let started = std::time::Instant::now();
        let attribution = pass.grain.split_to_pods(&data);
        tracing::info!(nodes = attribution.nodes, pods = attribution.pods, seconds = started.elapsed().as_secs_f64(), "nodes split to pods");
        notes.extend(attribution.notes());
        (Some(data), Some(attribution))
    } else {
        (None, None)
    };
    // Line items per file for the manifest, counted by the pass itself.
    let inputs = opened.iter().zip(&pass.rows_per_file).map(|(f, rows)| InputFile { key: f.staged.key.clone(), bytes: f.staged.bytes, sha256: f.staged.sha256.clone(), rows: *rows }).collect();
    let without_checks: Vec<LazyFrame> = frames.into_iter().map(|f| f.drop(cols([ROW, BAD]))).collect();
    let frame = concat(without_checks, UnionArgs { parallel: true, rechunk: false, ..Default::default() })?;
    Ok(IngestedMonth {
        format,
        month,
        source: store.root(),
        manifest: files.manifest_key,
        inputs,
        grain: pass.grain,
        untagged_by_rules,
        frame: Some(CostFrame::new(frame, options.tag_keys.clone())),
        notes,
        api_calls: 0,
        athena: None,
        _scratch: Some(scratch),
        files: opened,
        split_cost,
        split,
    })
}

/// The latest billing period in the data (for layouts whose files hold several).
fn latest_month_in_data(frames: &[LazyFrame], files: &[SourceFile]) -> Result<Option<String>> {
    let mut latest: Option<String> = None;
    for (frame, file) in frames.iter().zip(files) {
        let df = frame.clone().select([polars::prelude::col(col::BILLING_PERIOD).max()]).collect().map_err(|e| Error::Unreadable { file: file.staged.display.clone(), message: e.to_string() })?;
        let value = df.column(col::BILLING_PERIOD).ok().and_then(|c| c.str().ok()?.get(0).map(str::to_string));
        if value > latest {
            latest = value;
        }
    }
    Ok(latest)
}

/// The month after `YYYY-MM`.
pub fn next_month(month: &str) -> Result<String> {
    check_month(month)?;
    let (year, m): (i32, u32) = (month[..4].parse().unwrap_or(0), month[5..].parse().unwrap_or(1));
    Ok(if m == 12 { format!("{}-01", year + 1) } else { format!("{year}-{:02}", m + 1) })
}

/// The month before `YYYY-MM`.
pub fn previous_month(month: &str) -> Result<String> {
    check_month(month)?;
    let (year, m): (i32, u32) = (month[..4].parse().unwrap_or(0), month[5..].parse().unwrap_or(1));
    Ok(if m == 1 { format!("{}-12", year - 1) } else { format!("{year}-{:02}", m - 1) })
}

/// `YYYY-MM` with a real month.
pub fn check_month(month: &str) -> Result<()> {
    let b = month.as_bytes();
    let ok = b.len() == 7 && b[4] == b'-' && b.iter().enumerate().all(|(i, c)| i == 4 || c.is_ascii_digit()) && matches!(month[5..].parse::<u8>(), Ok(1..=12));
    if ok {
        Ok(())
    } else {
        Err(Error::BadMonth(month.to_string()))
    }
}

/// An error with its sources, as one line: SDK and HTTP errors put the service's own words
/// (`NoSuchBucket`, `connection refused`) in their sources, not in their top message.
/// A URL's query string (an encoded PromQL query can run to thousands of characters) is left out:
/// the cause is what a person needs, and it comes last.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = without_query(&error.to_string());
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&without_query(&inner.to_string()));
        source = inner.source();
    }
    text
}

/// An AWS SDK failure as an error: no credentials at all is said as such (what to set, where it
/// looked), whatever the service; anything else is `otherwise` of the error's chain.
pub(crate) fn aws_error(service: &str, error: &dyn std::error::Error, otherwise: impl FnOnce(String) -> Error) -> Error {
    let text = error_chain(error);
    match text.split_once("no credentials found in chain") {
        Some((_, attempts)) => {
            // `Attempted:\n  Environment: …\n  Profile: …` → `environment, profile, …`
            let tried: Vec<String> =
                attempts.lines().filter_map(|l| l.trim().split_once(':').map(|(name, _)| name.trim().to_string())).filter(|n| !n.is_empty() && n != "Attempted" && !n.contains(' ')).collect();
            let tried = if tried.is_empty() { "the default credential chain".to_string() } else { tried.join(", ") };
            Error::NoCredentials { service: service.to_string(), tried }
        }
        None => otherwise(text),
    }
}

/// `… for url (http://host/api/v1/query?query=…)` → `… for url (http://host/api/v1/query)`.
fn without_query(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(512));
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        // The URL runs to the next space or closing parenthesis; its query is dropped.
        let end = rest[at..].find([' ', ')']).map_or(rest.len(), |e| at + e);
        let url = &rest[..end];
        out.push_str(url.split_once('?').map_or(url, |(base, _)| base));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_error_chain_leaves_out_a_urls_query() {
        let text = super::without_query("error sending request for url (http://127.0.0.1:9/api/v1/query?query=label_replace%28sum%29&time=1): connection refused");
        assert_eq!(text, "error sending request for url (http://127.0.0.1:9/api/v1/query): connection refused");
        assert_eq!(super::without_query("s3://bucket/key: NoSuchKey"), "s3://bucket/key: NoSuchKey");
    }
}
