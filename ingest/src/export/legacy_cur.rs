//! Legacy CUR: `<report>/<yyyymmdd-yyyymmdd>/<report>-Manifest.json` naming the current
//! assembly's files (gzip CSV, CSV or parquet) under `<report>/<yyyymmdd-yyyymmdd>/<assemblyId>/`.
//! Headers arrive as `lineItem/UnblendedCost` and are read through the CUR column mapping
//! ([`crate::cur`]) by their Athena-style names.

use std::collections::{BTreeMap, BTreeSet};

use polars::prelude::LazyFrame;
use serde::Deserialize;

use super::Export;
use crate::scan::SourceFile;
use crate::store::{BillingStore, ObjectMeta};
use crate::{Error, Format, Result};

pub(crate) struct LegacyCur;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LegacyManifest {
    report_keys: Vec<String>,
}

struct ManifestKey {
    month: String,
    report: String,
}

/// A month manifest: `<report>/<yyyymmdd-yyyymmdd>/<report>-Manifest.json`. The copies inside
/// each assembly folder (`.../<assemblyId>/<report>-Manifest.json`) are not the current one.
fn manifest_key(key: &str) -> Option<ManifestKey> {
    let parts: Vec<&str> = key.split('/').collect();
    let (file, period) = (parts.last()?, parts.get(parts.len().checked_sub(2)?)?);
    let report = file.strip_suffix("-Manifest.json")?;
    let (start, end) = period.split_once('-')?;
    let is_date = |s: &str| s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit());
    (is_date(start) && is_date(end)).then(|| ManifestKey { month: format!("{}-{}", &start[..4], &start[4..6]), report: report.to_string() })
}

impl Export for LegacyCur {
    fn format(&self) -> Format {
        Format::Cur
    }

    fn layout_name(&self) -> &'static str {
        "legacy CUR (<report>/<yyyymmdd-yyyymmdd>/<report>-Manifest.json)"
    }

    fn recognises(&self, key: &str) -> bool {
        manifest_key(key).is_some()
    }

    /// The folder holding the report's folder.
    fn export_folder(&self, key: &str) -> Option<String> {
        manifest_key(key)?;
        let parts: Vec<&str> = key.split('/').collect();
        (parts.len() >= 3).then(|| parts[..parts.len() - 3].join("/"))
    }

    fn months(&self, objects: &[ObjectMeta]) -> BTreeSet<String> {
        objects.iter().filter_map(|o| manifest_key(&o.key)).map(|m| m.month).collect()
    }

    fn month_manifest(&self, store: &BillingStore, objects: &[ObjectMeta], month: &str) -> Result<Option<String>> {
        let manifests: BTreeMap<String, String> = objects.iter().filter_map(|o| manifest_key(&o.key).filter(|m| m.month == month).map(|m| (m.report, o.key.clone()))).collect();
        if manifests.len() > 1 {
            return Err(Error::AmbiguousReports { source_root: store.root(), month: month.to_string(), reports: manifests.keys().cloned().collect() });
        }
        Ok(manifests.into_values().next())
    }

    fn manifest_entries(&self, store: &BillingStore, manifest: &str, text: &str) -> Result<Vec<String>> {
        let parsed: LegacyManifest =
            serde_json::from_str(text).map_err(|e| Error::BadManifest { manifest: store.display(manifest), message: format!("not a CUR manifest (expected `reportKeys`): {e}") })?;
        Ok(parsed.report_keys)
    }

    /// Without its manifest a month is not known to be whole: none of its files are read.
    fn files_without_manifest(&self, _objects: &[ObjectMeta], _month: &str) -> Vec<String> {
        Vec::new()
    }

    fn null_texts(&self) -> &'static [&'static str] {
        &[""]
    }

    fn prepare(&self, file: &mut SourceFile) {
        if file.kind.is_csv() {
            crate::cur::normalise_legacy_headers(file);
        }
    }

    fn frames(&self, file: &SourceFile, tag_keys: &[String]) -> Result<(LazyFrame, Option<LazyFrame>)> {
        let (lines, grain) = crate::cur::frames(file, tag_keys)?;
        Ok((lines, Some(grain)))
    }

    fn tag_keys_in(&self, file: &SourceFile) -> Result<BTreeSet<String>> {
        crate::cur::tag_keys_in(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_the_current_manifest_only() {
        let m = manifest_key("rep/20251001-20251101/rep-Manifest.json").unwrap();
        assert_eq!((m.month.as_str(), m.report.as_str()), ("2025-10", "rep"));
        assert!(manifest_key("rep/20251001-20251101/abc-123/rep-Manifest.json").is_none());
        assert_eq!(LegacyCur.export_folder("exports/rep/20251001-20251101/rep-Manifest.json").as_deref(), Some("exports"));
    }
}
