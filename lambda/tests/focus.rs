//! `focus-allocated.parquet` and `.csv` of a fixture month as a FOCUS user reads them: every
//! origin charge (a grain row of the bill) is rebuilt exactly, at all four cost columns, by
//! grouping its allocated rows; the `AllocatedRatio`s of each origin charge add up to 1; the
//! four columns add up to the bill's exact totals; and the FOCUS validator's checks that apply
//! pass. Needs FINOPS_TEST_FOCUS_VALIDATOR (the `focus-validator` of a venv): `scripts/test`
//! installs it into ~/.cache/finops-focus-validator-venv.

mod common;

use common::*;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use finops_allocate::{CostBasis, CostLine, Money};
use finops_ingest::{Format, IngestOptions, Silent};
use finops_lambda::monthly::{load_rules, open_source};
use polars::prelude::*;

/// The key a FOCUS row shows of its origin charge, and the same of a grain line.
type Key = Vec<String>;

fn text(frame: &DataFrame, name: &str) -> Vec<String> {
    frame.column(name).unwrap().str().unwrap().iter().map(|v| v.unwrap_or_default().to_string()).collect()
}

fn money(frame: &DataFrame, name: &str) -> Vec<Money> {
    let column = frame.column(name).unwrap();
    assert_eq!(column.dtype(), &DataType::Decimal(38, 12), "{name} is an exact decimal");
    column.decimal().unwrap().physical().iter().map(|v| Money::from_units(v.unwrap())).collect()
}

async fn run_month(out: &Path) -> (String, DataFrame) {
    let outcome = finops_lambda::monthly::run_monthly(&default_run(out), None, &Silent).await.unwrap();
    let path = out.join(&outcome.month).join("focus-allocated.parquet");
    let frame = ParquetReader::new(std::fs::File::open(&path).unwrap()).finish().unwrap();
    (outcome.month, frame)
}

#[tokio::test(flavor = "multi_thread")]
async fn origin_charges_are_rebuilt_exactly_from_their_allocated_rows() {
    let out = tempfile::tempdir().unwrap();
    let (month, frame) = run_month(out.path()).await;
    assert!(frame.height() > 1000, "a fixture month has thousands of allocated rows");

    // The month's grain, read again: the origin charges, at every basis.
    let config = default_run(out.path());
    let rules = load_rules(&config.rules_path()).unwrap().rules;
    let source = open_source(&config).await.unwrap();
    let options = IngestOptions { format: Format::Auto, month: Some(month.clone()), tag_keys: rules.tag_keys(), cost_basis: rules.cost_basis, team_tag: None, team_tag_keys: 0 };
    let ingested = source.ingest_month(&options, &Silent).await.unwrap();
    let line_key = |l: &CostLine| -> Key {
        let tags: serde_json::Map<String, serde_json::Value> =
            rules.tag_keys().into_iter().zip(l.tags.iter()).filter_map(|(k, v)| v.as_ref().map(|v| (k, serde_json::Value::String(v.to_string())))).collect();
        let tags = if tags.is_empty() { String::new() } else { serde_json::Value::Object(tags).to_string() };
        [&*l.usage_date, &l.account, &l.service, &l.resource, &l.usage_type, &l.operation, &l.region, &l.charge_category, &l.instance_type].iter().map(|s| s.to_string()).chain([tags]).collect()
    };
    let bases = [CostBasis::Unblended, CostBasis::NetUnblended, CostBasis::Amortized, CostBasis::List];
    let mut expected: BTreeMap<Key, [Money; 4]> = BTreeMap::new();
    for line in ingested.grain.lines() {
        let origin = ingested.grain.bases()[line.origin as usize];
        let sums = expected.entry(line_key(line)).or_insert([Money::ZERO; 4]);
        for (sum, basis) in sums.iter_mut().zip(bases) {
            *sum += origin.get(basis);
        }
    }

    // The rows, grouped by the origin charge they name.
    let start = frame.column("ChargePeriodStart").unwrap();
    assert!(matches!(start.dtype(), DataType::Datetime(TimeUnit::Milliseconds, Some(tz)) if tz.as_str() == "UTC"), "a UTC timestamp: {:?}", start.dtype());
    let start = start.datetime().unwrap().physical().clone();
    let days: Vec<String> = start.iter().map(|ms| chrono::DateTime::from_timestamp_millis(ms.unwrap()).unwrap().format("%Y-%m-%d").to_string()).collect();
    let columns = ["SubAccountId", "ServiceName", "ResourceId", "x_UsageType", "x_Operation", "RegionId", "ChargeCategory", "x_InstanceType", "Tags"].map(|c| text(&frame, c));
    let costs = ["BilledCost", "ContractedCost", "EffectiveCost", "ListCost"].map(|c| money(&frame, c));
    let origins = frame.column("x_OriginChargeId").unwrap().u32().unwrap().iter().map(Option::unwrap).collect::<Vec<_>>();
    let details = text(&frame, "AllocatedMethodDetails");
    let mut rebuilt: BTreeMap<Key, [Money; 4]> = BTreeMap::new();
    let mut keys_of_origin: BTreeMap<u32, BTreeSet<Key>> = BTreeMap::new();
    let mut ratios: BTreeMap<u32, Money> = BTreeMap::new();
    for row in 0..frame.height() {
        let key: Key = std::iter::once(days[row].clone()).chain(columns.iter().map(|c| c[row].clone())).collect();
        let sums = rebuilt.entry(key.clone()).or_insert([Money::ZERO; 4]);
        for (sum, cost) in sums.iter_mut().zip(&costs) {
            *sum += cost[row];
        }
        keys_of_origin.entry(origins[row]).or_default().insert(key);
        let parsed: serde_json::Value = serde_json::from_str(&details[row]).unwrap();
        for element in parsed["Elements"].as_array().unwrap() {
            // The ratio as written (12 decimals), read as an exact decimal.
            let ratio: Money = element["AllocatedRatio"].to_string().parse().unwrap();
            *ratios.entry(origins[row]).or_insert(Money::ZERO) += ratio;
        }
    }
    assert!(keys_of_origin.values().all(|k| k.len() == 1), "every row of an origin charge shows that charge's columns unchanged");
    assert_eq!(rebuilt.len(), expected.len(), "one group per origin charge of the bill");
    for (key, sums) in &expected {
        assert_eq!(rebuilt.get(key), Some(sums), "origin charge {key:?}: its allocated rows add up to it at every basis");
    }
    let one: Money = "1".parse().unwrap();
    assert!(ratios.values().all(|r| *r == one), "AllocatedRatio sums to exactly 1 per origin charge: {:?}", ratios.values().filter(|r| **r != one).take(3).collect::<Vec<_>>());

    // The bill: each cost column adds up to the manifest's exact total at its basis.
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(out.path().join(&month).join("manifest.json")).unwrap()).unwrap();
    for (cost, basis) in costs.iter().zip(bases) {
        let total: Money = cost.iter().copied().sum();
        assert_eq!(total, manifest["totals"][basis.name()]["exact"].as_str().unwrap().parse::<Money>().unwrap(), "{}", basis.name());
    }

    // A shared split carries its teams' projects by the same weights: every shared row says
    // which team and project it landed on, and an unallocated row names no allocated resource.
    let (teams, kinds, allocated_ids, tags) = (text(&frame, "x_Team"), text(&frame, "x_AllocationKind"), text(&frame, "AllocatedResourceId"), text(&frame, "AllocatedTags"));
    for row in 0..frame.height() {
        let tags: serde_json::Value = serde_json::from_str(&tags[row]).unwrap();
        assert!(tags["finops/project"].is_string() && tags["finops/environment"].is_string(), "row {row}: every dimension in AllocatedTags");
        if teams[row] == rules.unallocated {
            assert_eq!(allocated_ids[row], "", "row {row}: the unallocated portion has no AllocatedResourceId");
        } else {
            assert_eq!(tags["finops/team"], teams[row].as_str());
            assert_eq!(allocated_ids[row], teams[row]);
        }
    }
    assert!(kinds.iter().any(|k| k == "shared") && kinds.iter().any(|k| k == "gpu"), "the fixture month has shared and GPU pieces");

    // The CSV beside it holds the same rows.
    let csv = std::fs::read_to_string(out.path().join(&month).join("focus-allocated.csv")).unwrap();
    let rows = finops_report::csv::read_rows(&csv);
    assert_eq!(rows.len() - 1, frame.height());
    let billed = rows[0].iter().position(|h| h == "BilledCost").unwrap();
    let from_csv: Money = rows[1..].iter().map(|r| r[billed].parse::<Money>().unwrap()).sum();
    assert_eq!(from_csv, costs[0].iter().copied().sum::<Money>());
}

/// The checks of focus-validator 1.0.0 (FOCUS 1.0 rule set, the newest it has) that do not
/// apply, and why: the test fails on any other failure, and on one of these passing (a new
/// validator, or a change here, should be looked at).
fn not_applicable(file: &str) -> BTreeSet<&'static str> {
    // Its 1.0 rule set still names four columns by their pre-1.0 names (FOCUS 1.0 renamed them
    // InvoiceIssuerName, ProviderName, PublisherName and ResourceId, which the file has), and
    // checks SkuPriceId against ChargeType, a FOCUS 0.5 column.
    let mut skip: BTreeSet<&str> = ["InvoiceIssuer_Required", "Provider_Required", "Publisher_Required", "ResourceID_Required", "SkuPriceId_Nullable"].into();
    if file.ends_with(".parquet") {
        // pandas reads a parquet DECIMAL as Python decimals; the validator wants floats. The
        // CSV (read as floats) passes these.
        skip.extend([
            "BilledCost_IsDecimal",
            "ContractedCost_IsDecimal",
            "EffectiveCost_IsDecimal",
            "ListCost_IsDecimal",
            "ConsumedQuantity_IsDecimal",
            "ContractedUnitPrice_IsDecimal",
            "ListUnitPrice_IsDecimal",
            "PricingQuantity_IsDecimal",
        ]);
    } else {
        // pandas reads an all-digit account ID in a CSV as a number. The parquet (typed
        // strings) passes these.
        skip.extend(["BillingAccountId_IsString", "SubAccountId_IsString"]);
    }
    skip
}

#[tokio::test(flavor = "multi_thread")]
async fn the_focus_validators_applicable_checks_pass() {
    let validator = std::env::var("FINOPS_TEST_FOCUS_VALIDATOR").unwrap_or_else(|_| {
        panic!("FINOPS_TEST_FOCUS_VALIDATOR is not set: this test runs focus-validator (PyPI) on the FOCUS output. Run `scripts/test` (it installs it into ~/.cache/finops-focus-validator-venv and sets it)")
    });
    let out = tempfile::tempdir().unwrap();
    let (month, frame) = run_month(out.path()).await;
    for renamed in ["InvoiceIssuerName", "ProviderName", "PublisherName", "ResourceId", "SkuPriceId"] {
        assert!(frame.column(renamed).is_ok(), "{renamed} is in the file");
    }
    // The validator reads its currency list by a path relative to its package's parent folder.
    let venv_bin = Path::new(&validator).parent().unwrap();
    let site = Command::new(venv_bin.join("python")).args(["-c", "import focus_validator, os; print(os.path.dirname(os.path.dirname(focus_validator.__file__)))"]).output().unwrap();
    let site = String::from_utf8(site.stdout).unwrap().trim().to_string();
    for file in ["focus-allocated.parquet", "focus-allocated.csv"] {
        let report = out.path().join(format!("{file}.xml"));
        let data = out.path().join(&month).join(file);
        let run = Command::new(&validator)
            .args(["--data-file", &data.display().to_string(), "--validate-version", "1.0", "--output-type", "unittest", "--output-destination", &report.display().to_string()])
            .current_dir(&site)
            .output()
            .unwrap();
        let xml = std::fs::read_to_string(&report).unwrap_or_else(|_| panic!("focus-validator wrote no report on {file}: {}", String::from_utf8_lossy(&run.stderr)));
        let cases: Vec<&str> = xml.split("<testcase ").skip(1).collect();
        assert!(cases.len() > 100, "{file}: the validator ran its checks ({} cases)", cases.len());
        let failed: BTreeSet<&str> = cases.iter().filter(|c| c.contains("<failure")).map(|c| c.split('"').nth(1).unwrap().split(" :: ").next().unwrap()).collect();
        assert_eq!(failed, not_applicable(file), "{file}: the checks that fail are exactly those that do not apply");
    }
}
