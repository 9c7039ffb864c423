//! Split cost allocation data read from a CUR 2.0 export written as CSV (the text layout Data
//! Exports also writes: every cell text, the tag map as JSON): the same split as the parquet
//! month, and a split amount that is not a number is an error naming the file and the column.

mod common;

use std::path::Path;

use common::workspace;
use finops_allocate::CostBasis;
use finops_ingest::store::{AwsSettings, BillingStore, Location};
use finops_ingest::{ingest_month, Format, IngestOptions, Silent};
use polars::prelude::*;

async fn read(dir: &Path) -> finops_ingest::Result<finops_ingest::IngestedMonth> {
    let store = BillingStore::open(&Location::Local(dir.to_path_buf()), &AwsSettings::default()).await?;
    let options = IngestOptions {
        format: Format::Cur2,
        month: Some("2025-10".into()),
        tag_keys: vec!["aws_eks_namespace".into(), "team".into()],
        cost_basis: CostBasis::Amortized,
        team_tag: None,
        team_tag_keys: 0,
    };
    ingest_month(&store, &options, &Silent).await
}

/// The fixture's parquet month as CSV: cells as text (doubles as their shortest decimal, times
/// as AWS's CSV writes them), `resource_tags` as a JSON object. `spoil` replaces one cell.
fn write_csv(to: &Path, spoil: Option<(&str, usize, &str)>) -> std::path::PathBuf {
    let parquet = std::fs::read_dir(workspace().join("fixtures/scad/data/BILLING_PERIOD=2025-10")).unwrap().next().unwrap().unwrap().path();
    let df = ParquetReader::new(std::fs::File::open(parquet).unwrap()).finish().unwrap();
    let names: Vec<String> = df.get_column_names().iter().map(|n| n.to_string()).collect();
    let cell = |name: &str, row: usize| -> String {
        if let Some((column, at, text)) = spoil {
            if column == name && at == row {
                return text.to_string();
            }
        }
        let column = df.column(name).unwrap();
        match column.dtype() {
            DataType::List(_) => {
                let entries = column.list().unwrap().get_as_series(row).unwrap();
                let fields = entries.struct_().unwrap().fields_as_series();
                let (keys, values) = (fields[0].str().unwrap().clone(), fields[1].str().unwrap().clone());
                let map: serde_json::Map<String, serde_json::Value> = keys.iter().zip(values.iter()).map(|(k, v)| (k.unwrap().to_string(), serde_json::Value::from(v.unwrap_or_default()))).collect();
                serde_json::Value::Object(map).to_string()
            }
            DataType::Datetime(_, _) => {
                let ms = column.cast(&DataType::Int64).unwrap().i64().unwrap().get(row).unwrap();
                chrono::DateTime::from_timestamp_millis(ms).unwrap().format("%Y-%m-%dT%H:%M:%SZ").to_string()
            }
            DataType::Float64 => column.f64().unwrap().get(row).map(|v| v.to_string()).unwrap_or_default(),
            _ => column.str().unwrap().get(row).unwrap_or_default().to_string(),
        }
    };
    let quote = |text: String| if text.contains([',', '"', '\n']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text };
    let mut text = names.join(",") + "\n";
    for row in 0..df.height() {
        text += &names.iter().map(|n| quote(cell(n, row))).collect::<Vec<_>>().join(",");
        text += "\n";
    }
    let dir = to.join("data/BILLING_PERIOD=2025-10");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("finops-cur2-scad-00001.csv");
    std::fs::write(&file, text).unwrap();
    file
}

/// Per (resource, basis amount): the grain's lines, as text to compare.
fn lines(month: &finops_ingest::IngestedMonth) -> Vec<String> {
    let mut out: Vec<String> = month.grain.lines().iter().map(|l| format!("{} {} {} {:?} {}", l.usage_date, l.resource, l.usage_type, l.tags, l.amount)).collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_csv_export_splits_its_nodes_like_the_parquet_one() {
    let parquet = read(&workspace().join("fixtures/scad")).await.unwrap();
    let scratch = tempfile::tempdir().unwrap();
    write_csv(scratch.path(), None);
    let csv = read(scratch.path()).await.unwrap();
    let split = csv.split.as_ref().expect("the CSV month has split cost allocation data");
    assert_eq!((split.nodes, split.pods), (2, 8));
    assert_eq!(split.to_pods.round_to_cents(), parquet.split.as_ref().unwrap().to_pods.round_to_cents());
    assert_eq!(lines(&csv), lines(&parquet), "the same grain, pods' lines included");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_split_cost_that_is_not_a_number_names_the_file_and_the_column() {
    let scratch = tempfile::tempdir().unwrap();
    // Row 3 is a pod's split record (rows 0 and 1 are the two instances' first hour; the m5 has no pods yet).
    let file = write_csv(scratch.path(), Some(("split_line_item_split_cost", 3, "12,5")));
    let Err(error) = read(scratch.path()).await else { panic!("a split cost of `12,5` was read") };
    let error = error.to_string();
    assert!(error.contains(&file.display().to_string()) || error.contains("finops-cur2-scad-00001.csv"), "{error}");
    // CSV line 5: the header, then rows 0..3.
    assert!(error.contains("split_line_item_split_cost") && error.contains("line 5") && error.contains("12,5"), "{error}");
}
