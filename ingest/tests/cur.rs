//! CUR 2.0 and legacy CUR: amortized totals against an independent, row-by-row computation of
//! the Cloud Intelligence Dashboards formula; tags from the map column; manifests honoured.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use common::{csv_records, dec, dec_f64, money_dec, workspace};
use finops_allocate::cost_frame::grand_totals;
use finops_allocate::cost_frame::{col, tag_column};
use finops_allocate::CostBasis;
use finops_ingest::grain::Grain;
use finops_ingest::store::{AwsSettings, BillingStore, Location};
use finops_ingest::{ingest_month, Format, IngestOptions, Silent};
use polars::prelude::*;
use rust_decimal::Decimal;

/// One line item's five amounts, by the CID formula, computed here without the crate's code.
#[derive(Default, Debug, PartialEq)]
struct Expected {
    unblended: Decimal,
    net_unblended: Decimal,
    amortized: Decimal,
    net_amortized: Decimal,
    list: Decimal,
}

fn cid(get: &dyn Fn(&str) -> Decimal, text: &dyn Fn(&str) -> String) -> Expected {
    let kind = text("line_item_line_item_type");
    let amortized = |net: bool| {
        let n = |gross: &str, net_name: &str| if net { get(net_name) } else { get(gross) };
        match kind.as_str() {
            "SavingsPlanCoveredUsage" => n("savings_plan_savings_plan_effective_cost", "savings_plan_net_savings_plan_effective_cost"),
            "SavingsPlanRecurringFee" => get("savings_plan_total_commitment_to_date") - get("savings_plan_used_commitment"),
            "SavingsPlanNegation" | "SavingsPlanUpfrontFee" => Decimal::ZERO,
            "DiscountedUsage" => n("reservation_effective_cost", "reservation_net_effective_cost"),
            "RIFee" => {
                n("reservation_unused_amortized_upfront_fee_for_billing_period", "reservation_net_unused_amortized_upfront_fee_for_billing_period")
                    + n("reservation_unused_recurring_fee", "reservation_net_unused_recurring_fee")
            }
            "Fee" if !text("reservation_reservation_a_r_n").is_empty() => Decimal::ZERO,
            _ => n("line_item_unblended_cost", "line_item_net_unblended_cost"),
        }
    };
    Expected {
        unblended: get("line_item_unblended_cost"),
        net_unblended: get("line_item_net_unblended_cost"),
        amortized: amortized(false),
        net_amortized: amortized(true),
        list: get("pricing_public_on_demand_cost"),
    }
}

fn add(total: &mut Expected, e: Expected) {
    total.unblended += e.unblended;
    total.net_unblended += e.net_unblended;
    total.amortized += e.amortized;
    total.net_amortized += e.net_amortized;
    total.list += e.list;
}

fn ingested(grain: &Grain) -> Expected {
    let t = grand_totals(grain.service_totals());
    Expected {
        unblended: money_dec(t[&CostBasis::Unblended]),
        net_unblended: money_dec(t[&CostBasis::NetUnblended]),
        amortized: money_dec(t[&CostBasis::Amortized]),
        net_amortized: money_dec(t[&CostBasis::NetAmortized]),
        list: money_dec(t[&CostBasis::List]),
    }
}

async fn read(dir: &Path, format: Format, month: Option<&str>, tags: &[&str]) -> finops_ingest::Result<finops_ingest::IngestedMonth> {
    let store = BillingStore::open(&Location::Local(dir.to_path_buf()), &AwsSettings::default()).await?;
    let options =
        IngestOptions { format, month: month.map(str::to_string), tag_keys: tags.iter().map(|s| s.to_string()).collect(), cost_basis: CostBasis::Amortized, team_tag: None, team_tag_keys: 0 };
    ingest_month(&store, &options, &Silent).await
}

fn cur2_root() -> PathBuf {
    workspace().join("fixtures/cur2")
}

fn fixture_months() -> Vec<String> {
    let mut months: Vec<String> = std::fs::read_dir(cur2_root().join("data"))
        .expect("fixtures/cur2/data: run `cargo run -p finops-fixtures --release -- cur2`")
        .map(|e| e.unwrap().file_name().to_string_lossy().trim_start_matches("BILLING_PERIOD=").to_string())
        .collect();
    months.sort();
    months
}

#[tokio::test(flavor = "multi_thread")]
async fn cur2_amortized_totals_match_the_cid_formula_row_by_row() {
    let months = fixture_months();
    assert!(months.len() >= 6, "at least six committed months, found {months:?}");
    for month in &months {
        let dir = cur2_root().join("data").join(format!("BILLING_PERIOD={month}"));
        let mut expected = Expected::default();
        let mut rows = 0u64;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let df = ParquetReader::new(std::fs::File::open(&path).unwrap()).finish().unwrap();
            rows += df.height() as u64;
            for i in 0..df.height() {
                let get = |name: &str| dec_f64(df.column(name).unwrap().f64().unwrap().get(i).unwrap_or(0.0));
                let text = |name: &str| df.column(name).unwrap().str().unwrap().get(i).unwrap_or("").to_string();
                add(&mut expected, cid(&get, &text));
            }
        }
        let month_data = read(&cur2_root(), Format::Auto, Some(month), &[]).await.unwrap();
        assert_eq!(month_data.format, Format::Cur2);
        assert_eq!(month_data.inputs.iter().map(|i| i.rows).sum::<u64>(), rows, "{month}");
        let got = ingested(&month_data.grain);
        assert_eq!(got, expected, "{month}");
        assert_ne!(got.net_amortized, got.amortized, "{month}: the fixture must exercise net columns");
        // Amortization moves commitment cost from the fee lines onto the usage they covered.
        let by_service = month_data.grain.service_totals();
        assert!(by_service.iter().any(|t| t.costs.effective != t.costs.billed), "{month}: the fixture must exercise amortization");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cur2_reads_the_latest_month_by_default_and_tags_from_the_map() {
    let months = fixture_months();
    let data = read(&cur2_root(), Format::Auto, None, &["team", "Team", "owner"]).await.unwrap();
    assert_eq!(&data.month, months.last().unwrap());
    assert!(data.manifest.as_deref().unwrap().ends_with("-Manifest.json"));
    let frame = data.frame.expect("line items").lazy().collect().unwrap();
    let values = |key: &str| -> Vec<String> { frame.column(&tag_column(key)).unwrap().str().unwrap().iter().flatten().map(str::to_string).collect() };
    let team = values("team");
    for expected in ["search", "Search", "search-team", "검색", "orders", "Orders", "payments", "data", "ai", "AI", "platform"] {
        assert!(team.iter().any(|v| v == expected), "tag value `{expected}` (trimmed) not read");
    }
    assert!(!team.iter().any(|v| v != v.trim()), "tag values are trimmed");
    assert!(values("Team").iter().all(|v| v == "orders") && !values("Team").is_empty());
    assert!(values("owner").iter().all(|v| v == "payments") && !values("owner").is_empty());
    // Untagged share of usage lines: the fixture plants about 15%.
    let untagged = frame.column(&tag_column("team")).unwrap().null_count() as f64 / frame.height() as f64;
    assert!(untagged > 0.05, "untagged share {untagged}");
    let categories: Vec<String> = frame.column(col::PRICING_CATEGORY).unwrap().str().unwrap().iter().flatten().map(str::to_string).collect();
    for p in ["OnDemand", "Spot", "SavingsPlan", "Reserved"] {
        assert!(categories.iter().any(|c| c == p), "pricing category {p}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cur2_reads_only_the_files_the_manifest_lists() {
    let month = fixture_months().pop().unwrap();
    let copy = tempfile::tempdir().unwrap();
    copy_dir(&cur2_root(), copy.path());
    let baseline = read(copy.path(), Format::Cur2, Some(&month), &[]).await.unwrap();
    let baseline_totals = ingested(&baseline.grain);
    // A stale file from an earlier delivery of the month, still under the prefix.
    let data_dir = copy.path().join("data").join(format!("BILLING_PERIOD={month}"));
    let original = std::fs::read_dir(&data_dir).unwrap().next().unwrap().unwrap().path();
    std::fs::copy(&original, data_dir.join("finops-cur2-stale-00001.snappy.parquet")).unwrap();
    let again = read(copy.path(), Format::Cur2, Some(&month), &[]).await.unwrap();
    assert_eq!(ingested(&again.grain), baseline_totals, "the unlisted file must not be counted");
    // Without the manifest every parquet file of the month folder is read; an identical copy
    // would count the month twice, so it is refused, naming both files.
    std::fs::remove_dir_all(copy.path().join("metadata").join(format!("BILLING_PERIOD={month}"))).unwrap();
    let error = read(copy.path(), Format::Cur2, Some(&month), &[]).await.err().expect("an identical copy is refused").to_string();
    assert!(error.contains("finops-cur2-stale-00001.snappy.parquet") && error.contains("finops-cur2-00001.snappy.parquet"), "{error}");
    assert!(error.contains("counted twice"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn legacy_cur_counts_only_the_current_assembly() {
    let root = workspace().join("fixtures/cur-legacy");
    let month_dir = std::fs::read_dir(root.join("finops-cur")).expect("fixtures/cur-legacy").next().unwrap().unwrap().path();
    let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(month_dir.join("finops-cur-Manifest.json")).unwrap()).unwrap();
    let current = manifest["assemblyId"].as_str().unwrap().to_string();
    let assemblies: Vec<PathBuf> = std::fs::read_dir(&month_dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    assert_eq!(assemblies.len(), 2, "the fixture holds two assemblies of the month");

    let mut per_assembly: HashMap<String, (u64, Expected)> = HashMap::new();
    for dir in &assemblies {
        let gz = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).find(|p| p.to_string_lossy().ends_with(".csv.gz")).unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(std::fs::File::open(&gz).unwrap()), &mut text).unwrap();
        let records = csv_records(&text);
        let mut total = Expected::default();
        for r in &records {
            let legacy = |snake: &str| -> String {
                let header = r.keys().find(|h| legacy_to_snake(h) == snake);
                header.map(|h| r[h].clone()).unwrap_or_default()
            };
            add(&mut total, cid(&|n| dec(&legacy(n)), &|n| legacy(n)));
        }
        per_assembly.insert(dir.file_name().unwrap().to_string_lossy().to_string(), (records.len() as u64, total));
    }
    let data = read(&root, Format::Auto, None, &["team"]).await.unwrap();
    assert_eq!(data.format, Format::Cur);
    let (rows, expected) = &per_assembly[&current];
    assert_eq!(data.inputs.iter().map(|i| i.rows).sum::<u64>(), *rows);
    assert_eq!(ingested(&data.grain), *expected);
    let frame = data.frame.expect("line items").lazy().collect().unwrap();
    assert!(frame.column(&tag_column("team")).unwrap().str().unwrap().iter().flatten().any(|v| v == "검색"));
}

/// The Athena-style name of a legacy header, written out longhand for the few the test needs.
fn legacy_to_snake(header: &str) -> String {
    let mut out = String::new();
    for c in header.chars() {
        match c {
            '/' | ':' => out.push('_'),
            c if c.is_ascii_uppercase() => {
                if !out.ends_with('_') && !out.is_empty() {
                    out.push('_');
                }
                out.push(c.to_ascii_lowercase());
            }
            c => out.push(c),
        }
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Legacy CUR delivered as parquet (the Athena integration): snake-case names, doubles for
/// amounts, one `resource_tags_user_<key>` column per tag key. The same month as the CSV
/// assembly must give the same totals and tags.
#[tokio::test(flavor = "multi_thread")]
async fn legacy_cur_parquet_with_athena_names_reads_like_the_csv() {
    let root = workspace().join("fixtures/cur-legacy");
    let csv_month = read(&root, Format::Cur, Some("2025-10"), &["team"]).await.unwrap();
    let expected = ingested(&csv_month.grain);

    // Rewrite the current assembly as Athena-style parquet in a new report folder.
    let month_dir = std::fs::read_dir(root.join("finops-cur")).unwrap().next().unwrap().unwrap().path();
    let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(month_dir.join("finops-cur-Manifest.json")).unwrap()).unwrap();
    let gz = month_dir.join(manifest["assemblyId"].as_str().unwrap()).join("finops-cur-00001.csv.gz");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(std::fs::File::open(&gz).unwrap()), &mut text).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let csv_path = scratch.path().join("plain.csv");
    std::fs::write(&csv_path, &text).unwrap();
    let mut frame = LazyCsvReader::new(PlRefPath::try_from_path(&csv_path).unwrap()).with_has_header(true).with_infer_schema_length(Some(0)).finish().unwrap().collect().unwrap();
    let headers: Vec<String> = frame.get_column_names().iter().map(|s| s.to_string()).collect();
    for header in &headers {
        let snake = legacy_to_snake(header);
        let column = frame.column(header).unwrap().clone();
        let column = if snake.ends_with("_cost") || snake.ends_with("_fee") || snake.ends_with("_commitment") || snake.ends_with("_to_date") || snake.ends_with("_period") {
            column.cast(&DataType::Float64).unwrap()
        } else {
            column
        };
        frame.drop_in_place(header).unwrap();
        if frame.get_column_names().iter().any(|n| n.as_str() == snake) {
            continue; // Team and team both become resource_tags_user_team; keep the first.
        }
        frame.with_column(column.with_name(snake.as_str().into())).unwrap();
    }
    let period_dir = scratch.path().join("athena-report/20251001-20251101");
    let data_dir = scratch.path().join("athena-report/athena-report/year=2025/month=10");
    std::fs::create_dir_all(&period_dir).unwrap();
    std::fs::create_dir_all(&data_dir).unwrap();
    ParquetWriter::new(std::fs::File::create(data_dir.join("athena-report-00001.snappy.parquet")).unwrap()).finish(&mut frame).unwrap();
    let report_manifest = serde_json::json!({
        "assemblyId": "1",
        "reportKeys": ["cur/athena-report/athena-report/year=2025/month=10/athena-report-00001.snappy.parquet"],
    });
    std::fs::write(period_dir.join("athena-report-Manifest.json"), report_manifest.to_string()).unwrap();

    let parquet_month = read(&scratch.path().join("athena-report"), Format::Auto, None, &["team"]).await.unwrap();
    assert_eq!(parquet_month.format, Format::Cur);
    assert_eq!(parquet_month.month, "2025-10");
    assert_eq!(ingested(&parquet_month.grain), expected);
    let tags = parquet_month.frame.expect("line items").lazy().collect().unwrap();
    let values: Vec<String> = tags.column(&tag_column("team")).unwrap().str().unwrap().iter().flatten().map(str::to_string).collect();
    assert!(values.iter().any(|v| v == "검색") && values.iter().any(|v| v == "search"), "tags from resource_tags_user_team columns");
}

/// The grain has one row per key: rows whose raw values normalise alike (" orders " and
/// "orders", two line item types of one charge category) are summed, within a file and across
/// files that share a day. Split here into three files to cover both.
#[tokio::test(flavor = "multi_thread")]
async fn the_grain_has_one_row_per_key_within_and_across_files() {
    let month = fixture_months().pop().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join(format!("data/BILLING_PERIOD={month}"));
    std::fs::create_dir_all(&data).unwrap();
    let source = std::fs::read_dir(cur2_root().join(format!("data/BILLING_PERIOD={month}"))).unwrap().next().unwrap().unwrap().path();
    let whole = ParquetReader::new(std::fs::File::open(&source).unwrap()).finish().unwrap();
    let third = whole.height() / 3;
    for (i, (offset, len)) in [(0, third), (third, third), (2 * third, whole.height() - 2 * third)].into_iter().enumerate() {
        let mut part = whole.slice(offset as i64, len);
        ParquetWriter::new(std::fs::File::create(data.join(format!("part-{i}.parquet"))).unwrap()).finish(&mut part).unwrap();
    }
    let split = read(dir.path(), Format::Cur2, Some(&month), &["team", "Team", "owner"]).await.unwrap();
    let whole_month = read(&cur2_root(), Format::Cur2, Some(&month), &["team", "Team", "owner"]).await.unwrap();
    let lines = split.grain.lines();
    let keys: std::collections::HashSet<_> = lines
        .iter()
        .map(|l| {
            let dims = [&l.billing_period, &l.usage_date, &l.account, &l.service, &l.resource, &l.usage_type, &l.operation, &l.region, &l.charge_category, &l.pricing_category, &l.instance_type];
            (dims.map(|d| d.to_string()), l.tags.clone())
        })
        .collect();
    assert_eq!(keys.len(), lines.len(), "a grain key appears twice");
    let amounts = |g: &finops_ingest::grain::Grain| -> finops_allocate::Money { g.lines().iter().map(|l| l.amount).sum() };
    assert_eq!(amounts(&split.grain), amounts(&whole_month.grain), "the same cost lines' total however the month is split");
    assert_eq!(split.grain.height(), whole_month.grain.height(), "the same grain, however the month is split into files");
    assert_eq!(ingested(&split.grain), ingested(&whole_month.grain));
}
