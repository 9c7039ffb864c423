//! The real FOCUS 1.0 sample (../shared/data): totals exact to every decimal, per billing period
//! and per provider, and its messy `Tags` read with trimmed keys.

mod common;

use std::collections::BTreeMap;

use common::{csv_records, dec, money_dec, shared_data};
use finops_allocate::cost_frame::{col, tag_column};
use finops_ingest::frame::money_values;
use finops_ingest::store::{AwsSettings, BillingStore, Location};
use finops_ingest::{ingest_month, Format, IngestOptions, Silent};
use polars::prelude::*;
use rust_decimal::Decimal;

async fn ingest(month: &str, tag_keys: &[&str]) -> finops_ingest::IngestedMonth {
    let dir = shared_data().parent().unwrap().to_path_buf();
    let store = BillingStore::open(&Location::Local(dir), &AwsSettings::default()).await.unwrap();
    let options = IngestOptions {
        format: Format::Focus,
        month: Some(month.into()),
        tag_keys: tag_keys.iter().map(|s| s.to_string()).collect(),
        cost_basis: finops_allocate::CostBasis::Amortized,
        team_tag: None,
        team_tag_keys: 0,
    };
    ingest_month(&store, &options, &Silent).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn billed_cost_equals_the_files_own_sum_exactly_per_period_and_provider() {
    let text = std::fs::read_to_string(shared_data()).unwrap();
    let records = csv_records(&text);
    assert_eq!(records.len(), 1000);
    let mut expected: BTreeMap<(String, String), Decimal> = BTreeMap::new();
    for r in &records {
        let period = r["BillingPeriodStart"][..7].to_string();
        *expected.entry((period, r["ProviderName"].clone())).or_default() += dec(&r["BilledCost"]);
    }
    let file_total: Decimal = records.iter().map(|r| dec(&r["BilledCost"])).sum();
    assert_eq!(file_total.to_string(), "20.52022672899");

    let mut ingested_total = Decimal::ZERO;
    for month in ["2024-09", "2024-10"] {
        let month_data = ingest(month, &[]).await;
        let by_provider = month_data
            .frame
            .expect("line items")
            .lazy()
            .group_by([polars::prelude::col(col::PROVIDER)])
            .agg([polars::prelude::col(col::BILLED).sum()])
            .sort([col::PROVIDER], SortMultipleOptions::default())
            .collect()
            .unwrap();
        let providers: Vec<String> = by_provider.column(col::PROVIDER).unwrap().str().unwrap().iter().map(|v| v.unwrap().to_string()).collect();
        let amounts = money_values(&by_provider, col::BILLED).unwrap();
        let expected_here: BTreeMap<&String, &Decimal> = expected.iter().filter(|((p, _), _)| p == month).map(|((_, provider), v)| (provider, v)).collect();
        assert_eq!(providers.len(), expected_here.len(), "{month}: providers {providers:?}");
        for (provider, amount) in providers.iter().zip(&amounts) {
            assert_eq!(money_dec(*amount), *expected_here[provider], "{month} {provider}");
            ingested_total += money_dec(*amount);
        }
        let rows: u64 = month_data.inputs.iter().map(|i| i.rows).sum();
        let expected_rows = records.iter().filter(|r| r["BillingPeriodStart"].starts_with(month)).count() as u64;
        assert_eq!(rows, expected_rows, "{month}");
    }
    assert_eq!(ingested_total, file_total);
}

#[tokio::test(flavor = "multi_thread")]
async fn other_cost_columns_are_exact_too() {
    let text = std::fs::read_to_string(shared_data()).unwrap();
    let records: Vec<_> = csv_records(&text).into_iter().filter(|r| r["BillingPeriodStart"].starts_with("2024-09")).collect();
    let month = ingest("2024-09", &[]).await;
    let totals = finops_allocate::cost_frame::grand_totals(month.grain.service_totals());
    let sum = |c: &str| records.iter().map(|r| dec(&r[c])).sum::<Decimal>();
    assert_eq!(money_dec(totals[&finops_allocate::CostBasis::Amortized]), sum("EffectiveCost"));
    assert_eq!(money_dec(totals[&finops_allocate::CostBasis::List]), sum("ListCost"));
}

#[tokio::test(flavor = "multi_thread")]
async fn tags_are_read_with_trimmed_keys() {
    let text = std::fs::read_to_string(shared_data()).unwrap();
    let records: Vec<_> = csv_records(&text).into_iter().filter(|r| r["BillingPeriodStart"].starts_with("2024-09")).collect();
    // Independently: rows whose Tags has the key, exactly or with surrounding spaces.
    let has_key = |r: &std::collections::HashMap<String, String>, key: &str| {
        let tags = &r["Tags"];
        tags != "NULL" && serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(tags).unwrap().keys().any(|k| k.trim() == key)
    };
    let month = ingest("2024-09", &["business_unit", "org"]).await;
    let frame = month.frame.expect("line items").lazy().collect().unwrap();
    for key in ["business_unit", "org"] {
        let expected = records.iter().filter(|r| has_key(r, key)).count();
        let column = frame.column(&tag_column(key)).unwrap();
        let found = column.len() - column.null_count();
        assert_eq!(found, expected, "rows carrying `{key}`");
        assert!(expected > 0);
    }
    let units: Vec<String> = frame.column(&tag_column("business_unit")).unwrap().str().unwrap().iter().flatten().map(str::to_string).collect();
    assert!(units.iter().any(|u| u == "PeoriaData"));
}

/// FOCUS delivered as parquet with float amounts (as many exporters write it): the same exact
/// totals as the CSV, because floats are read through their shortest round-trip text.
#[tokio::test(flavor = "multi_thread")]
async fn focus_parquet_gives_the_same_exact_totals_as_the_csv() {
    let csv_month = ingest("2024-09", &["business_unit"]).await;
    let csv_totals = finops_allocate::cost_frame::grand_totals(csv_month.grain.service_totals());

    let mut frame = LazyCsvReader::new(PlRefPath::try_from_path(&shared_data()).unwrap())
        .with_has_header(true)
        .with_infer_schema_length(Some(0))
        .with_null_values(Some(NullValues::AllColumns(vec!["NULL".into()])))
        .finish()
        .unwrap()
        .with_columns(["BilledCost", "EffectiveCost", "ListCost"].map(|c| polars::prelude::col(c).cast(DataType::Float64)))
        .collect()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    ParquetWriter::new(std::fs::File::create(dir.path().join("focus.parquet")).unwrap()).finish(&mut frame).unwrap();
    let store = BillingStore::open(&Location::Local(dir.path().to_path_buf()), &AwsSettings::default()).await.unwrap();
    let options = IngestOptions {
        format: Format::Focus,
        month: Some("2024-09".into()),
        tag_keys: vec!["business_unit".into()],
        cost_basis: finops_allocate::CostBasis::Amortized,
        team_tag: None,
        team_tag_keys: 0,
    };
    let parquet_month = ingest_month(&store, &options, &Silent).await.unwrap();
    let parquet_totals = finops_allocate::cost_frame::grand_totals(parquet_month.grain.service_totals());
    assert_eq!(parquet_totals, csv_totals);
    // And the CSV's totals are the file's own sums (billed_cost_equals_the_files_own_sum_exactly...).
    assert_eq!(parquet_month.inputs[0].rows, csv_month.inputs[0].rows);
}

/// Every tag a resource carries, read from the FOCUS `Tags` objects of the month: what the file
/// itself says, parsed independently here.
#[tokio::test(flavor = "multi_thread")]
async fn a_resources_tags_are_every_key_its_tags_objects_carry() {
    let month = ingest("2024-09", &[]).await;
    let records = csv_records(&std::fs::read_to_string(shared_data()).unwrap());
    let resource = "i-0l251231281ee8756";
    let mut expected: BTreeMap<String, String> = BTreeMap::new();
    for r in records.iter().filter(|r| r["ResourceId"] == resource && r["BillingPeriodStart"].starts_with("2024-09") && r["Tags"] != "NULL") {
        let serde_json::Value::Object(map) = serde_json::from_str(&r["Tags"]).unwrap() else { panic!("a Tags object") };
        for (k, v) in map {
            expected.entry(k.trim().to_string()).or_insert_with(|| v.as_str().unwrap().trim().to_string());
        }
    }
    assert!(expected.contains_key("business_unit"), "{expected:?}");
    let read = month.resource_tags(&[resource.to_string(), "no-such-resource".to_string()].into()).unwrap();
    assert_eq!(read.get(resource), Some(&expected));
    assert!(!read.contains_key("no-such-resource"));
}
