//! The Cost Explorer source and the CUR reconciliation, with the real AWS SDK client against
//! moto's Cost Explorer on loopback (results seeded through moto's API). Needs
//! FINOPS_TEST_S3_ENDPOINT: `scripts/test` installs moto and starts it.
//!
//! moto answers GetCostAndUsage from one queue per server, so everything that calls Cost
//! Explorer is in this one test, in order: no other test may take a seeded result.

mod common;

use common::*;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use finops_allocate::Money;
use serde_json::{json, Value};

fn endpoint() -> String {
    std::env::var("FINOPS_TEST_S3_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "FINOPS_TEST_S3_ENDPOINT is not set: the Cost Explorer tests need a local moto server. \
             Run `scripts/test` (it installs moto[server] from PyPI and starts it on 127.0.0.1), \
             or start `moto_server -p 5000` and export FINOPS_TEST_S3_ENDPOINT=http://127.0.0.1:5000"
        )
    })
}

/// Queues GetCostAndUsage results on moto: each new distinct request takes the next one.
fn seed(results: &[Value]) {
    let url = format!("{}/moto-api/static/ce/cost-and-usage-results", endpoint());
    let response = http_post(&url, &json!({ "results": results }).to_string());
    assert!(response.starts_with("HTTP/1.1 201"), "moto refused the seeded Cost Explorer results: {response}");
}

fn finops(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_finops"))
        .args(args)
        .current_dir(cwd)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("run finops")
}

fn read_manifest(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

/// Team -> total, from summary.csv.
fn summary_totals(dir: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(dir.join("summary.csv")).unwrap();
    let mut lines = text.trim_start_matches('\u{feff}').lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let total = header.iter().position(|h| *h == "total").unwrap();
    lines.map(|l| l.split(',').collect::<Vec<_>>()).map(|f| (f[0].to_string(), f[total].to_string())).collect()
}

const SERVICES: [&str; 3] = ["Amazon Elastic Compute Cloud - Compute", "Amazon Simple Storage Service", "Tax"];

/// One day's groups: (tag group key, service, amortized amount, unblended amount).
fn day_groups(day: u32) -> Vec<(String, &'static str, String, String)> {
    let mut out = Vec::new();
    for (t, tag) in ["team$search", "team$orders", "team$Search", "team$"].iter().enumerate() {
        for (s, service) in SERVICES.iter().enumerate() {
            // Ten decimals, as Cost Explorer prints them, all different.
            let amortized = format!("{}.{:010}", 10 + day * 3 + (t * 7 + s) as u32, (day as u64 * 7_919 + t as u64 * 104_729 + s as u64 * 1_299_709) % 10_000_000_000);
            let unblended = format!("{}.5", 11 + day + t as u32);
            out.push((tag.to_string(), *service, amortized, unblended));
        }
    }
    out
}

fn page(days: std::ops::RangeInclusive<u32>, next: Option<&str>, estimated_from: u32) -> Value {
    let results: Vec<Value> = days
        .map(|day| {
            let groups: Vec<Value> = day_groups(day)
                .into_iter()
                .map(|(tag, service, amortized, unblended)| {
                    let metric = |a: &str| json!({ "Amount": a, "Unit": "USD" });
                    json!({
                        "Keys": [tag, service],
                        "Metrics": {
                            "AmortizedCost": metric(&amortized),
                            "NetAmortizedCost": metric(&amortized),
                            "UnblendedCost": metric(&unblended),
                            "NetUnblendedCost": metric(&unblended),
                        }
                    })
                })
                .collect();
            json!({
                "TimePeriod": { "Start": format!("2025-09-{day:02}"), "End": format!("2025-09-{:02}", day + 1) },
                "Total": {},
                "Groups": groups,
                "Estimated": day >= estimated_from,
            })
        })
        .collect();
    let mut page = json!({ "ResultsByTime": results, "DimensionValueAttributes": [] });
    if let Some(token) = next {
        page["NextPageToken"] = json!(token);
    }
    page
}

#[test]
fn cost_explorer_source_reads_every_page_and_reconciles_a_cur_month() {
    let cwd = tempfile::tempdir().unwrap();
    let endpoint = endpoint();
    std::fs::write(cwd.path().join("rules.toml"), "version = 1\ncost_basis = \"amortized\"\nteam_tags = [\"team\", \"owner\"]\n[teams.search]\naliases = [\"Search\"]\n[teams.orders]\n").unwrap();
    std::fs::write(cwd.path().join("finops.toml"), "[report]\nhistory_months = 1\n").unwrap();

    // --- Cost Explorer as the source: September 2025 on two pages (days 1-15, 16-30), the last
    // two days estimated. The month before is absent (moto answers an empty result).
    seed(&[page(1..=15, Some("page-2-token"), 29), page(16..=30, None, 29)]);
    let run = finops(
        &["run", "--config", "finops.toml", "--source", "cost-explorer", "--rules", "rules.toml", "--endpoint-url", &endpoint, "--region", "us-east-1", "--month", "2025-09", "--out", "out"],
        cwd.path(),
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stdout}\n{stderr}");

    // Independent truth: the seeded amounts summed per team, through the alias, exactly.
    let mut expected: BTreeMap<String, Money> = BTreeMap::new();
    for day in 1..=30 {
        for (tag, _, amortized, _) in day_groups(day) {
            let team = match tag.as_str() {
                "team$search" | "team$Search" => "search",
                "team$orders" => "orders",
                _ => "unallocated",
            };
            *expected.entry(team.into()).or_default() += amortized.parse::<Money>().unwrap();
        }
    }
    let month_dir = cwd.path().join("out/2025-09");
    let totals = summary_totals(&month_dir);
    for (team, amount) in &expected {
        assert_eq!(totals[team], amount.round_to_cents().to_string(), "{team}: summary.csv against the seeded Cost Explorer amounts");
    }
    let grand: Money = expected.values().copied().sum();
    let manifest = read_manifest(&month_dir);
    assert_eq!(manifest["totals"]["amortized"]["exact"].as_str().unwrap().parse::<Money>().unwrap(), grand, "{manifest}");
    assert_eq!(manifest["source"]["format"], "cost-explorer");
    // Two pages for the month, one for the month before (empty): three calls, each counted.
    assert_eq!(manifest["cost_explorer"]["calls"], 3, "{manifest}");
    assert_eq!(manifest["cost_explorer"]["dollars"], "0.03");
    assert_eq!(manifest["inputs"].as_array().unwrap().len(), 2, "one input record per page read");
    assert_eq!(manifest["inputs"][1]["rows"], 15 * 12);
    assert!(stdout.contains("Cost Explorer: 3 GetCostAndUsage call(s), $0.03"), "{stdout}");
    let warnings = manifest["warnings"].to_string();
    assert!(warnings.contains("2 day(s) of 2025-09 as estimated (2025-09-29 to 2025-09-30)"), "{warnings}");
    assert!(warnings.contains("cost is read by `team` only; team_tags `owner` are not read"), "{warnings}");
    assert!(stderr.contains("warning: the Cost Explorer source has no line items"), "{stderr}");
    // The daily lines carry the day: a team CSV has every day of the month.
    let search = std::fs::read_to_string(month_dir.join("teams/search.csv")).unwrap();
    assert!(search.contains("2025-09-01") && search.contains("2025-09-30"), "{search}");

    // The list price is not in Cost Explorer: a clear error, nothing written.
    std::fs::write(cwd.path().join("list.toml"), "version = 1\ncost_basis = \"list\"\nteam_tags = [\"team\"]\n[teams.search]\n").unwrap();
    let list = finops(
        &["run", "--config", "finops.toml", "--source", "cost-explorer", "--rules", "list.toml", "--endpoint-url", &endpoint, "--region", "us-east-1", "--month", "2025-08", "--out", "list-out"],
        cwd.path(),
    );
    assert!(!list.status.success());
    assert!(String::from_utf8_lossy(&list.stderr).contains("Cost Explorer has no `list` cost"), "{}", String::from_utf8_lossy(&list.stderr));
    assert!(!cwd.path().join("list-out/2025-08").exists());

    // --- Reconciliation: the committed CUR fixture month against a Cost Explorer total 1% off.
    let fixtures = workspace().join("fixtures/cur2").to_string_lossy().to_string();
    let rules = workspace().join("rules/example.toml").to_string_lossy().to_string();
    let plain = finops(&["run", "--config", "finops.toml", "--source", &fixtures, "--rules", &rules, "--out", "cur-plain", "--gpu-usage", "none"], cwd.path());
    assert!(plain.status.success(), "{}", String::from_utf8_lossy(&plain.stderr));
    let month = std::fs::read_dir(cwd.path().join("cur-plain")).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).map(|p| p.file_name().unwrap().to_string_lossy().to_string()).max().unwrap();
    let plain_manifest = read_manifest(&cwd.path().join("cur-plain").join(&month));
    assert!(plain_manifest.get("cost_explorer").is_none(), "no call without [reconcile]");
    let cur_total: Money = plain_manifest["totals"]["amortized"]["exact"].as_str().unwrap().parse().unwrap();
    let ce_total = Money::from_units(cur_total.units() * 100 / 101);
    let next = format!("{}-{:02}", &month[..4], month[5..].parse::<u32>().unwrap() % 12 + 1);
    let next = if &month[5..] == "12" { format!("{}-01", month[..4].parse::<u32>().unwrap() + 1) } else { next };
    seed(&[json!({
        "ResultsByTime": [{
            "TimePeriod": { "Start": format!("{month}-01"), "End": format!("{next}-01") },
            "Total": { "AmortizedCost": { "Amount": ce_total.to_string(), "Unit": "USD" } },
            "Groups": [],
            "Estimated": false,
        }],
        "DimensionValueAttributes": [],
    })]);
    let flagged = finops(
        &[
            "run",
            "--config",
            "finops.toml",
            "--source",
            &fixtures,
            "--rules",
            &rules,
            "--out",
            "cur-checked",
            "--gpu-usage",
            "none",
            "--reconcile",
            "cost-explorer",
            "--endpoint-url",
            &endpoint,
            "--region",
            "us-east-1",
        ],
        cwd.path(),
    );
    let stdout = String::from_utf8_lossy(&flagged.stdout);
    let stderr = String::from_utf8_lossy(&flagged.stderr);
    assert!(flagged.status.success(), "{stderr}");
    let checked = read_manifest(&cwd.path().join("cur-checked").join(&month));
    let record = &checked["cost_explorer"]["reconciliation"];
    assert_eq!(record["metric"], "AmortizedCost");
    assert_eq!(record["cost_explorer_total"].as_str().unwrap().parse::<Money>().unwrap(), ce_total);
    assert_eq!(record["source_total"].as_str().unwrap().parse::<Money>().unwrap(), cur_total);
    assert_eq!(record["within_tolerance"], false, "{record}");
    assert_eq!(checked["cost_explorer"]["calls"], 1);
    assert!(stderr.contains("warning: the export does not reconcile with Cost Explorer"), "{stderr}");
    assert!(stdout.contains("reconciliation: export "), "{stdout}");
    // The report's data-quality page shows it.
    let pdf = Command::new("pdftotext").arg(cwd.path().join("cur-checked").join(&month).join("report.pdf")).arg("-").output().expect("pdftotext (poppler-utils; scripts/test installs it)");
    let text = String::from_utf8_lossy(&pdf.stdout).replace('\n', " ");
    assert!(text.contains("reconciled with Cost Explorer"), "{text}");

    // The same totals within a 2% tolerance: recorded, no warning (moto answers the same
    // request with the same result).
    std::fs::write(cwd.path().join("tolerant.toml"), "[report]\nhistory_months = 1\n[reconcile]\ncost_explorer = true\ntolerance = 0.02\n").unwrap();
    let tolerant = finops(
        &["run", "--config", "tolerant.toml", "--source", &fixtures, "--rules", &rules, "--out", "cur-tolerant", "--gpu-usage", "none", "--endpoint-url", &endpoint, "--region", "us-east-1"],
        cwd.path(),
    );
    assert!(tolerant.status.success(), "{}", String::from_utf8_lossy(&tolerant.stderr));
    let tolerant_manifest = read_manifest(&cwd.path().join("cur-tolerant").join(&month));
    assert_eq!(tolerant_manifest["cost_explorer"]["reconciliation"]["within_tolerance"], true);
    assert!(!String::from_utf8_lossy(&tolerant.stderr).contains("does not reconcile"));
}

// Regression: a reconciliation that never reached AWS reported "1 call, $0.01".
#[test]
fn a_cost_explorer_that_cannot_be_reached_is_no_billed_call() {
    let cwd = tempfile::tempdir().unwrap();
    let repo = std::path::Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR for tests and benchmarks")).join("..");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_finops"))
        .args(["run", "--reconcile", "cost-explorer", "--endpoint-url", "http://127.0.0.1:9", "--region", "us-east-1", "--quiet", "--out"])
        .arg(cwd.path().join("out"))
        .current_dir(&repo)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success(), "the month is still published: {stderr}");
    assert!(stderr.contains("could not be reconciled with Cost Explorer"), "{stderr}");
    assert!(!stdout.contains("GetCostAndUsage call"), "no call reached AWS, so none is billed: {stdout}");
    let month = std::fs::read_dir(cwd.path().join("out")).unwrap().map(|e| e.unwrap().path()).find(|p| p.join("manifest.json").exists()).unwrap();
    let manifest = read_manifest(&month);
    assert!(manifest.get("cost_explorer").is_none(), "{manifest}");
}
