//! The month's Savings Plans and Reserved Instances figures, checked by hand from the fixture
//! month's line items: coverage, utilisation, savings against on-demand, the unused commitment
//! and who carries it. The hand count reads AWS's own commitment columns
//! (`savings_plan_total_commitment_to_date`, `savings_plan_used_commitment`,
//! `reservation_unused_*`), which the product's figures never read: they come from the grain's
//! cost bases.

mod common;

use common::*;

use std::collections::BTreeMap;

use finops_ingest::Silent;
use polars::prelude::*;

fn cents(text: &str) -> i64 {
    (text.parse::<f64>().unwrap() * 100.0).round() as i64
}

#[tokio::test(flavor = "multi_thread")]
async fn commitment_kpis_match_a_hand_count_of_the_line_items() {
    let out = tempfile::tempdir().unwrap();
    let mut config = default_run(out.path());
    config.output.focus_allocated = false;
    let outcome = finops_lambda::monthly::run_monthly(&config, None, &Silent).await.unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(out.path().join(&outcome.month).join("manifest.json")).unwrap()).unwrap();
    let record = &manifest["commitments"];

    // The hand count, line item by line item.
    let dir = workspace().join(format!("fixtures/cur2/data/BILLING_PERIOD={}", outcome.month));
    let file = std::fs::read_dir(&dir).unwrap().next().unwrap().unwrap().path();
    let items = ParquetReader::new(std::fs::File::open(file).unwrap()).finish().unwrap();
    let text = |name: &str| -> Vec<String> { items.column(name).unwrap().str().unwrap().iter().map(|v| v.unwrap_or_default().to_string()).collect() };
    let number = |name: &str| -> Vec<f64> { items.column(name).unwrap().f64().unwrap().iter().map(|v| v.unwrap_or(0.0)).collect() };
    let (types, services, usage_types, instance_types) = (text("line_item_line_item_type"), text("line_item_product_code"), text("line_item_usage_type"), text("product_instance_type"));
    let (on_demand, sp_effective, sp_total, sp_used) =
        (number("pricing_public_on_demand_cost"), number("savings_plan_savings_plan_effective_cost"), number("savings_plan_total_commitment_to_date"), number("savings_plan_used_commitment"));
    let (ri_effective, ri_unused_upfront, ri_unused_recurring) =
        (number("reservation_effective_cost"), number("reservation_unused_amortized_upfront_fee_for_billing_period"), number("reservation_unused_recurring_fee"));
    let mut sum: BTreeMap<&str, f64> = BTreeMap::new();
    let eligible = ["AmazonEC2", "AWSLambda", "AmazonECS", "AmazonEKS", "AmazonRDS", "AmazonElastiCache", "AmazonRedshift", "AmazonES", "AmazonOpenSearchService", "AmazonMemoryDB"];
    for i in 0..items.height() {
        let mut add = |what: &'static str, v: f64| *sum.entry(what).or_default() += v;
        match types[i].as_str() {
            "SavingsPlanCoveredUsage" => {
                add("sp_on_demand", on_demand[i]);
                add("sp_cost", sp_effective[i]);
            }
            "SavingsPlanRecurringFee" => add("sp_unused", sp_total[i] - sp_used[i]),
            "DiscountedUsage" => {
                add("ri_on_demand", on_demand[i]);
                add("ri_cost", ri_effective[i]);
            }
            "RIFee" => add("ri_unused", ri_unused_upfront[i] + ri_unused_recurring[i]),
            "Usage" if eligible.contains(&services[i].as_str()) && !usage_types[i].contains("SpotUsage") && !instance_types[i].is_empty() => add("uncovered", on_demand[i]),
            _ => {}
        }
    }
    let hand = |what: &str| (sum[what] * 100.0).round() as i64;
    assert!(hand("sp_unused") > 0 && hand("ri_unused") > 0 && hand("sp_cost") > 0 && hand("ri_cost") > 0, "the fixture month has both programmes, used and unused: {sum:?}");

    let programmes = record["programmes"].as_array().unwrap();
    let (sp, ri, total) = (&programmes[0], &programmes[1], &programmes[2]);
    for (row, prefix) in [(sp, "sp"), (ri, "ri")] {
        assert_eq!(cents(row["on_demand_equivalent"].as_str().unwrap()), hand(&format!("{prefix}_on_demand")), "{prefix} on-demand equivalent");
        assert_eq!(cents(row["cost"].as_str().unwrap()), hand(&format!("{prefix}_cost")), "{prefix} cost");
        assert_eq!(cents(row["unused"].as_str().unwrap()), hand(&format!("{prefix}_unused")), "{prefix} unused");
        let utilisation = sum[&*format!("{prefix}_cost")] / (sum[&*format!("{prefix}_cost")] + sum[&*format!("{prefix}_unused")]) * 100.0;
        assert!((row["utilisation_pct"].as_str().unwrap().parse::<f64>().unwrap() - utilisation).abs() <= 0.051, "{prefix} utilisation {utilisation}");
        assert_eq!(cents(row["savings"].as_str().unwrap()), cents(row["on_demand_equivalent"].as_str().unwrap()) - cents(row["cost"].as_str().unwrap()));
    }
    // The total row adds its parts up, on every column.
    for column in ["on_demand_equivalent", "cost", "savings", "unused", "committed"] {
        assert_eq!(cents(total[column].as_str().unwrap()), cents(sp[column].as_str().unwrap()) + cents(ri[column].as_str().unwrap()), "total {column}");
    }
    let covered = sum["sp_on_demand"] + sum["ri_on_demand"];
    let coverage = covered / (covered + sum["uncovered"]) * 100.0;
    assert!((record["coverage_pct"].as_str().unwrap().parse::<f64>().unwrap() - coverage).abs() <= 0.051, "coverage {coverage}");
    let net = covered - sum["sp_cost"] - sum["ri_cost"] - sum["sp_unused"] - sum["ri_unused"];
    assert!((cents(record["net_savings"].as_str().unwrap()) - (net * 100.0).round() as i64).abs() <= 1, "net savings {net}");

    // The unused commitment goes where the rule that claims the fee lines sends it: the example
    // rules assign commitment purchases to platform.
    let carriers = record["unused_by_rule"].as_array().unwrap();
    assert_eq!(carriers.iter().map(|c| cents(c[2].as_str().unwrap())).sum::<i64>(), cents(total["unused"].as_str().unwrap()));
    assert_eq!(carriers[0][0], "commitment purchases");
    assert_eq!(carriers[0][1], "platform");

    // commitments.csv prints the same rows; the report's first page carries the coverage.
    let csv = finops_report::csv::read_rows(&std::fs::read_to_string(out.path().join(&outcome.month).join("commitments.csv")).unwrap());
    assert_eq!(csv[3][0], "total");
    assert_eq!(csv[3][4], total["unused"].as_str().unwrap());
    let pdf = std::process::Command::new("pdftotext")
        .args(["-layout", "-l", "1"])
        .arg(out.path().join(&outcome.month).join("report.pdf"))
        .arg("-")
        .output()
        .expect("pdftotext (poppler-utils; scripts/test installs it)");
    let page_one = String::from_utf8_lossy(&pdf.stdout);
    assert!(page_one.contains("Commitment coverage") && page_one.contains(&format!("{}%", record["coverage_pct"].as_str().unwrap())), "{page_one}");
}
