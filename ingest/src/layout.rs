//! Which files make up a month, per export layout. CUR delivers several versions of a month; only
//! the files the current manifest names are read, never every object under the prefix.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde::Deserialize;

use crate::scan::FileKind;
use crate::store::{BillingStore, ObjectMeta};
use crate::{Error, Format, Result};

/// The data files of one billing period, and the manifest that named them (if any).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MonthFiles {
    pub data_keys: Vec<String>,
    pub manifest_key: Option<String>,
}

/// Guesses the export layout from the keys under the root.
pub(crate) fn detect(objects: &[ObjectMeta]) -> Option<Format> {
    if objects.iter().any(|o| o.key.contains("BILLING_PERIOD=")) {
        Some(Format::Cur2)
    } else if objects.iter().any(|o| legacy_manifest(&o.key).is_some()) {
        Some(Format::Cur)
    } else if objects.iter().any(|o| FileKind::of(&o.key).is_some()) {
        Some(Format::Focus)
    } else {
        None
    }
}

/// A layout as a person recognises it, with the keys that make it.
pub(crate) fn layout_name(format: Format) -> &'static str {
    match format {
        Format::Cur2 => "CUR 2.0 (data/BILLING_PERIOD=YYYY-MM/)",
        Format::Cur => "legacy CUR (<report>/<yyyymmdd-yyyymmdd>/<report>-Manifest.json)",
        Format::Focus => "FOCUS (.csv or .parquet files)",
        Format::Auto | Format::CostExplorer => "no export layout",
    }
}

/// The exports under the root with a manifest layout, each by its layout and the folder it sits
/// in (relative to the root): CUR 2.0 exports by the folder holding `data/` and `metadata/`,
/// legacy CUR by the folder holding the report's folder. One export is one entry.
pub(crate) fn exports(objects: &[ObjectMeta]) -> Vec<(Format, String)> {
    let mut out: BTreeSet<(String, &'static str)> = BTreeSet::new();
    for o in objects {
        let parts: Vec<&str> = o.key.split('/').collect();
        if cur2_period(&o.key).is_some() {
            let i = parts.iter().position(|p| p.starts_with("BILLING_PERIOD=")).expect("a period");
            out.insert((parts[..i - 1].join("/"), "cur2"));
        } else if legacy_manifest(&o.key).is_some() && parts.len() >= 3 {
            out.insert((parts[..parts.len() - 3].join("/"), "cur"));
        }
    }
    out.into_iter().map(|(prefix, f)| (if f == "cur2" { Format::Cur2 } else { Format::Cur }, prefix)).collect()
}

/// Billing periods present under the root, oldest first. FOCUS files carry theirs inside, so
/// for FOCUS this is empty and the periods come from the data.
pub(crate) fn months(format: Format, objects: &[ObjectMeta]) -> Vec<String> {
    let months: BTreeSet<String> = match format {
        Format::Cur2 => objects.iter().filter_map(|o| cur2_period(&o.key)).map(|(m, _)| m).collect(),
        Format::Cur => objects.iter().filter_map(|o| legacy_manifest(&o.key)).map(|m| m.month).collect(),
        Format::Focus | Format::Auto | Format::CostExplorer => BTreeSet::new(),
    };
    months.into_iter().collect()
}

/// The files of `month`, through the month's manifest where the layout has one.
pub(crate) async fn month_files(store: &BillingStore, format: Format, objects: &[ObjectMeta], month: &str) -> Result<MonthFiles> {
    let listed: HashSet<&str> = objects.iter().map(|o| o.key.as_str()).collect();
    match format {
        Format::Cur2 => {
            let in_month = |o: &&ObjectMeta| cur2_period(&o.key).is_some_and(|(m, part)| m == month && part == Part::Data);
            let manifests: Vec<String> =
                objects.iter().filter(|o| cur2_period(&o.key).is_some_and(|(m, part)| m == month && part == Part::Metadata)).map(|o| o.key.clone()).filter(|k| k.ends_with("Manifest.json")).collect();
            // Two manifests for one period would make the month depend on which sorts first.
            if manifests.len() > 1 {
                return Err(Error::BadManifest {
                    manifest: manifests.iter().map(|k| store.display(k)).collect::<Vec<_>>().join(", "),
                    message: format!("{} manifests for {month}: point the source at one export, or remove the stale manifest", manifests.len()),
                });
            }
            let manifest_key = manifests.into_iter().next();
            let data_keys = match &manifest_key {
                Some(manifest) => {
                    let text = store.read_text(manifest).await?;
                    let parsed: Cur2Manifest = serde_json::from_str(&text)
                        .map_err(|e| Error::BadManifest { manifest: store.display(manifest), message: format!("not a Data Exports manifest (expected a `dataFiles` list): {e}") })?;
                    resolve_entries(store, manifest, &parsed.data_files, &listed)?
                }
                None => objects.iter().filter(in_month).filter(|o| FileKind::of(&o.key).is_some()).map(|o| o.key.clone()).collect(),
            };
            Ok(MonthFiles { data_keys, manifest_key })
        }
        Format::Cur => {
            let manifests: BTreeMap<String, String> = objects.iter().filter_map(|o| legacy_manifest(&o.key).filter(|m| m.month == month).map(|m| (m.report, o.key.clone()))).collect();
            if manifests.len() > 1 {
                return Err(Error::AmbiguousReports { source_root: store.root(), month: month.to_string(), reports: manifests.keys().cloned().collect() });
            }
            let Some((_, manifest)) = manifests.into_iter().next() else {
                return Ok(MonthFiles { data_keys: Vec::new(), manifest_key: None });
            };
            let text = store.read_text(&manifest).await?;
            let parsed: LegacyManifest =
                serde_json::from_str(&text).map_err(|e| Error::BadManifest { manifest: store.display(&manifest), message: format!("not a CUR manifest (expected `reportKeys`): {e}") })?;
            let data_keys = resolve_entries(store, &manifest, &parsed.report_keys, &listed)?;
            Ok(MonthFiles { data_keys, manifest_key: Some(manifest) })
        }
        Format::Focus | Format::Auto | Format::CostExplorer => {
            Ok(MonthFiles { data_keys: objects.iter().filter(|o| FileKind::of(&o.key).is_some()).map(|o| o.key.clone()).collect(), manifest_key: None })
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Cur2Manifest {
    data_files: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LegacyManifest {
    report_keys: Vec<String>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Part {
    Data,
    Metadata,
}

/// `(YYYY-MM, data|metadata)` of a key in the Data Exports layout
/// (`<export>/data/BILLING_PERIOD=2025-10/<export>-00001.snappy.parquet`).
fn cur2_period(key: &str) -> Option<(String, Part)> {
    let parts: Vec<&str> = key.split('/').collect();
    let i = parts.iter().position(|p| p.starts_with("BILLING_PERIOD="))?;
    let month = parts[i].trim_start_matches("BILLING_PERIOD=");
    let valid = month.len() == 7 && month.as_bytes()[4] == b'-' && month.bytes().enumerate().all(|(j, b)| j == 4 || b.is_ascii_digit());
    let part = match i.checked_sub(1).map(|j| parts[j]) {
        Some("data") => Part::Data,
        Some("metadata") => Part::Metadata,
        _ => return None,
    };
    valid.then(|| (month.to_string(), part))
}

struct LegacyManifestKey {
    month: String,
    report: String,
}

/// A legacy CUR month manifest: `<report>/<yyyymmdd-yyyymmdd>/<report>-Manifest.json`. The copies
/// inside each assembly folder (`.../<assemblyId>/<report>-Manifest.json`) are not the current one.
fn legacy_manifest(key: &str) -> Option<LegacyManifestKey> {
    let parts: Vec<&str> = key.split('/').collect();
    let (file, period) = (parts.last()?, parts.get(parts.len().checked_sub(2)?)?);
    let report = file.strip_suffix("-Manifest.json")?;
    let (start, end) = period.split_once('-')?;
    let is_date = |s: &str| s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit());
    (is_date(start) && is_date(end)).then(|| LegacyManifestKey { month: format!("{}-{}", &start[..4], &start[4..6]), report: report.to_string() })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_layout_keys() {
        assert_eq!(cur2_period("data/BILLING_PERIOD=2025-10/x-00001.snappy.parquet"), Some(("2025-10".into(), Part::Data)));
        assert_eq!(cur2_period("exp/metadata/BILLING_PERIOD=2025-10/exp-Manifest.json"), Some(("2025-10".into(), Part::Metadata)));
        assert_eq!(cur2_period("data/BILLING_PERIOD=2025-1x/x.parquet"), None);
        let m = legacy_manifest("rep/20251001-20251101/rep-Manifest.json").unwrap();
        assert_eq!((m.month.as_str(), m.report.as_str()), ("2025-10", "rep"));
        assert!(legacy_manifest("rep/20251001-20251101/abc-123/rep-Manifest.json").is_none());
    }
}
