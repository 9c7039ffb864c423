//! CUR 2.0 (AWS Data Exports): `<export>/data/BILLING_PERIOD=YYYY-MM/*.parquet` with a month
//! manifest under `<export>/metadata/BILLING_PERIOD=YYYY-MM/`. Line items read through the CUR
//! column mapping ([`crate::cur`]); parquet months summed from their dictionary codes
//! ([`crate::parquet_pass`]).

use std::collections::BTreeSet;

use finops_allocate::CostBasis;
use polars::prelude::LazyFrame;
use serde::Deserialize;

use super::Export;
use crate::grain::Pass;
use crate::scan::{FileKind, SourceFile};
use crate::store::{BillingStore, ObjectMeta};
use crate::{Error, Format, Progress, Result};

pub(crate) struct Cur2;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Cur2Manifest {
    data_files: Vec<String>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Part {
    Data,
    Metadata,
}

/// `(YYYY-MM, data|metadata)` of a key in the Data Exports layout
/// (`<export>/data/BILLING_PERIOD=2025-10/<export>-00001.snappy.parquet`).
fn period(key: &str) -> Option<(String, Part)> {
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

impl Export for Cur2 {
    fn format(&self) -> Format {
        Format::Cur2
    }

    fn layout_name(&self) -> &'static str {
        "CUR 2.0 (data/BILLING_PERIOD=YYYY-MM/)"
    }

    fn recognises(&self, key: &str) -> bool {
        key.contains("BILLING_PERIOD=")
    }

    /// The folder holding `data/` and `metadata/`.
    fn export_folder(&self, key: &str) -> Option<String> {
        period(key)?;
        let parts: Vec<&str> = key.split('/').collect();
        let i = parts.iter().position(|p| p.starts_with("BILLING_PERIOD="))?;
        Some(parts[..i - 1].join("/"))
    }

    fn months(&self, objects: &[ObjectMeta]) -> BTreeSet<String> {
        objects.iter().filter_map(|o| period(&o.key)).map(|(m, _)| m).collect()
    }

    fn month_manifest(&self, store: &BillingStore, objects: &[ObjectMeta], month: &str) -> Result<Option<String>> {
        let manifests: Vec<String> =
            objects.iter().filter(|o| period(&o.key).is_some_and(|(m, part)| m == month && part == Part::Metadata)).map(|o| o.key.clone()).filter(|k| k.ends_with("Manifest.json")).collect();
        // Two manifests for one period would make the month depend on which sorts first.
        if manifests.len() > 1 {
            return Err(Error::BadManifest {
                manifest: manifests.iter().map(|k| store.display(k)).collect::<Vec<_>>().join(", "),
                message: format!("{} manifests for {month}: point the source at one export, or remove the stale manifest", manifests.len()),
            });
        }
        Ok(manifests.into_iter().next())
    }

    fn manifest_entries(&self, store: &BillingStore, manifest: &str, text: &str) -> Result<Vec<String>> {
        let parsed: Cur2Manifest =
            serde_json::from_str(text).map_err(|e| Error::BadManifest { manifest: store.display(manifest), message: format!("not a Data Exports manifest (expected a `dataFiles` list): {e}") })?;
        Ok(parsed.data_files)
    }

    fn files_without_manifest(&self, objects: &[ObjectMeta], month: &str) -> Vec<String> {
        objects.iter().filter(|o| period(&o.key).is_some_and(|(m, part)| m == month && part == Part::Data)).filter(|o| FileKind::of(&o.key).is_some()).map(|o| o.key.clone()).collect()
    }

    fn null_texts(&self) -> &'static [&'static str] {
        &[""]
    }

    fn frames(&self, file: &SourceFile, tag_keys: &[String]) -> Result<(LazyFrame, Option<LazyFrame>)> {
        let (lines, grain) = crate::cur::frames(file, tag_keys)?;
        Ok((lines, Some(grain)))
    }

    fn tag_keys_in(&self, file: &SourceFile) -> Result<BTreeSet<String>> {
        crate::cur::tag_keys_in(file)
    }

    fn pass(&self, files: &[SourceFile], tag_keys: &[String], basis: CostBasis, progress: &dyn Progress) -> std::result::Result<Pass, String> {
        crate::parquet_pass::pass(files, tag_keys, basis, progress)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_layout_keys() {
        assert_eq!(period("data/BILLING_PERIOD=2025-10/x-00001.snappy.parquet"), Some(("2025-10".into(), Part::Data)));
        assert_eq!(period("exp/metadata/BILLING_PERIOD=2025-10/exp-Manifest.json"), Some(("2025-10".into(), Part::Metadata)));
        assert_eq!(period("data/BILLING_PERIOD=2025-1x/x.parquet"), None);
        assert_eq!(Cur2.export_folder("exp/data/BILLING_PERIOD=2025-10/x.parquet").as_deref(), Some("exp"));
    }
}
