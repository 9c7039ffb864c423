//! Billing export layouts, one module each behind [`Export`]: CUR 2.0 ([`cur2`]), legacy CUR
//! ([`legacy_cur`]) and FOCUS ([`focus`]). Each owns how its keys are recognised, which files
//! make up a month (CUR delivers several versions of a month; only the files the current manifest
//! names are read, never every object under the prefix), how its cells read, its cost frame and
//! its tag keys. What reads a month ([`crate::ingest_month`]) goes through the trait alone.

use std::collections::{BTreeSet, HashSet};

use finops_allocate::CostBasis;
use polars::prelude::LazyFrame;

use crate::grain::Pass;
use crate::scan::SourceFile;
use crate::store::{BillingStore, ObjectMeta};
use crate::{Error, Format, Progress, Result};

pub(crate) mod cur2;
pub(crate) mod focus;
pub(crate) mod legacy_cur;

/// One billing export layout.
pub(crate) trait Export: Sync {
    fn format(&self) -> Format;

    /// The layout as a person recognises it, with the keys that make it.
    fn layout_name(&self) -> &'static str;

    /// Whether this key is the layout's (what detection goes by).
    fn recognises(&self, key: &str) -> bool;

    /// The folder (relative to the root) of the export a key belongs to, for layouts whose keys
    /// say so: two of them under one root are two exports.
    fn export_folder(&self, _key: &str) -> Option<String> {
        None
    }

    /// Billing periods present under the root, oldest first; empty where files carry theirs
    /// inside (FOCUS), and the periods come from the data.
    fn months(&self, objects: &[ObjectMeta]) -> BTreeSet<String>;

    /// The manifest that names `month`'s files, if the layout has one and the month has it.
    fn month_manifest(&self, store: &BillingStore, objects: &[ObjectMeta], month: &str) -> Result<Option<String>>;

    /// The data files a manifest's text names (as written: bucket keys or `s3://` URIs).
    fn manifest_entries(&self, store: &BillingStore, manifest: &str, text: &str) -> Result<Vec<String>>;

    /// A month's data files where it has no manifest.
    fn files_without_manifest(&self, objects: &[ObjectMeta], month: &str) -> Vec<String>;

    /// Cell texts that mean "no value".
    fn null_texts(&self) -> &'static [&'static str];

    /// Adjusts a file as opened (legacy CUR CSV headers to their snake-case names).
    fn prepare(&self, _file: &mut SourceFile) {}

    /// A file's cost frame (a row per line item, with `__row` and `__bad` for the check pass)
    /// and, where the layout sums its own, the same pre-aggregated to the grain (else the cost
    /// frame, filtered to the month, is pre-aggregated as it is).
    fn frames(&self, file: &SourceFile, tag_keys: &[String]) -> Result<(LazyFrame, Option<LazyFrame>)>;

    /// The user tag keys a file carries, as a rule set names them.
    fn tag_keys_in(&self, file: &SourceFile) -> Result<BTreeSet<String>>;

    /// Whether a file holds several billing periods, so the month is chosen from the data.
    fn periods_in_data(&self) -> bool {
        false
    }

    /// The month's one pass at the format's own speed, where the layout has one; declined (with
    /// why) when the polars pass reads the month instead.
    fn pass(&self, _files: &[SourceFile], _tag_keys: &[String], _basis: CostBasis, _progress: &dyn Progress) -> std::result::Result<Pass, String> {
        Err(format!("{} is read by the polars pass", self.format().name()))
    }
}

/// Every layout, in the order detection tries them.
const ALL: [&dyn Export; 3] = [&cur2::Cur2, &legacy_cur::LegacyCur, &focus::Focus];

/// The layout of a format (none for `auto` and the Cost Explorer API).
pub(crate) fn of(format: Format) -> Option<&'static dyn Export> {
    ALL.into_iter().find(|e| e.format() == format)
}

/// The data files of one billing period, and the manifest that named them (if any).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MonthFiles {
    pub data_keys: Vec<String>,
    pub manifest_key: Option<String>,
}

/// Guesses the export layout from the keys under the root.
pub(crate) fn detect(objects: &[ObjectMeta]) -> Option<Format> {
    ALL.into_iter().find(|e| objects.iter().any(|o| e.recognises(&o.key))).map(|e| e.format())
}

/// A layout as a person recognises it.
pub(crate) fn layout_name(format: Format) -> &'static str {
    of(format).map_or("no export layout", |e| e.layout_name())
}

/// The exports under the root with a manifest layout, each by its layout and the folder it sits
/// in (relative to the root). One export is one entry.
pub(crate) fn exports(objects: &[ObjectMeta]) -> Vec<(Format, String)> {
    let mut out: BTreeSet<(String, Format)> = BTreeSet::new();
    for o in objects {
        if let Some((folder, format)) = ALL.into_iter().find_map(|e| e.export_folder(&o.key).map(|f| (f, e.format()))) {
            out.insert((folder, format));
        }
    }
    out.into_iter().map(|(prefix, format)| (format, prefix)).collect()
}

/// Billing periods present under the root, oldest first (see [`Export::months`]).
pub(crate) fn months(format: Format, objects: &[ObjectMeta]) -> Vec<String> {
    of(format).map(|e| e.months(objects).into_iter().collect()).unwrap_or_default()
}

/// The files of `month`, through the month's manifest where the layout has one.
pub(crate) async fn month_files(store: &BillingStore, format: Format, objects: &[ObjectMeta], month: &str) -> Result<MonthFiles> {
    let Some(export) = of(format) else { return Ok(MonthFiles { data_keys: Vec::new(), manifest_key: None }) };
    match export.month_manifest(store, objects, month)? {
        Some(manifest) => {
            let text = store.read_text(&manifest).await?;
            let entries = export.manifest_entries(store, &manifest, &text)?;
            let listed: HashSet<&str> = objects.iter().map(|o| o.key.as_str()).collect();
            let data_keys = resolve_entries(store, &manifest, &entries, &listed)?;
            Ok(MonthFiles { data_keys, manifest_key: Some(manifest) })
        }
        None => Ok(MonthFiles { data_keys: export.files_without_manifest(objects, month), manifest_key: None }),
    }
}

/// Maps manifest entries (bucket keys or `s3://` URIs, written for the bucket the export went
/// to) onto keys under our root: the longest suffix of the entry that is a listed key. An entry
/// with no such file is an error: the month would be incomplete.
fn resolve_entries(store: &BillingStore, manifest: &str, entries: &[String], listed: &HashSet<&str>) -> Result<Vec<String>> {
    let mut keys = Vec::with_capacity(entries.len());
    for entry in entries {
        let path = match entry.strip_prefix("s3://") {
            Some(rest) => rest.split_once('/').map_or("", |(_, key)| key),
            None => entry.as_str(),
        };
        let parts: Vec<&str> = path.split('/').collect();
        let found = (0..parts.len()).map(|i| parts[i..].join("/")).find(|candidate| listed.contains(candidate.as_str()));
        match found {
            Some(key) => keys.push(key),
            None => return Err(Error::ManifestEntryMissing { manifest: store.display(manifest), entry: entry.clone() }),
        }
    }
    Ok(keys)
}
