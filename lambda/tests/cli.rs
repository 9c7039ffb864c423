//! The `finops` binary as a user runs it: the default run on the committed fixtures, identical
//! outputs on re-runs, and bad input failing with a clear error and no month left behind.

mod common;

use common::*;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use polars::prelude::*;

fn finops(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_finops")).args(args).current_dir(cwd).output().expect("run finops")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn latest_fixture_month() -> String {
    let mut months: Vec<String> =
        std::fs::read_dir(workspace().join("fixtures/cur2/data")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().trim_start_matches("BILLING_PERIOD=").to_string()).collect();
    months.sort();
    months.pop().unwrap()
}

#[test]
fn default_run_writes_summary_and_manifest_and_says_where() {
    let cwd = tempfile::tempdir().unwrap();
    let out = finops(&["run", "--out", &cwd.path().join("out").to_string_lossy()], &workspace());
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let month = latest_fixture_month();
    let month_dir = cwd.path().join("out").join(&month);
    assert!(stdout.contains(&format!("out/{month}/summary.csv")), "{stdout}");
    assert!(stdout.contains(&format!("out/{month}/manifest.json")), "{stdout}");
    let summary = std::fs::read_to_string(month_dir.join("summary.csv")).unwrap();
    assert!(summary.starts_with('\u{feff}'), "UTF-8 BOM for Excel");
    let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(month_dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["billing_period"], month.as_str());
    assert_eq!(manifest["status"], "complete");
    assert_eq!(manifest["rules"]["sha256"].as_str().unwrap().len(), 64);
    assert!(stdout.contains("allocation coverage: "), "{stdout}");

    // services.csv: rows add up, to the cent, to the manifest's rounded totals at every basis.
    let services = std::fs::read_to_string(month_dir.join("services.csv")).unwrap();
    let rows = csv_rows(&services);
    for basis in ["unblended", "net_unblended", "amortized", "net_amortized", "list"] {
        let i = rows[0].iter().position(|h| h == basis).unwrap();
        let cents: i64 = rows[1..].iter().map(|r| to_cents(&r[i])).sum();
        assert_eq!(cents, to_cents(manifest["totals"][basis]["rounded"].as_str().unwrap()), "{basis}");
    }

    // Conservation per source group: for every (account, service), the teams' lines add up to
    // exactly the amortized figure services.csv prints for it.
    let mut per_group: std::collections::BTreeMap<(String, String), i64> = Default::default();
    for entry in std::fs::read_dir(month_dir.join("teams")).unwrap() {
        let lines = csv_rows(&std::fs::read_to_string(entry.unwrap().path()).unwrap());
        for l in &lines[1..] {
            *per_group.entry((l[1].clone(), l[2].clone())).or_default() += to_cents(&l[11]);
        }
    }
    let amortized = rows[0].iter().position(|h| h == "amortized").unwrap();
    for r in &rows[1..] {
        assert_eq!(per_group.get(&(r[1].clone(), r[2].clone())).copied().unwrap_or(0), to_cents(&r[amortized]), "group {} {}", r[1], r[2]);
    }

    // summary.csv: one row per team plus unallocated; each team CSV adds up to its row exactly,
    // and the rows add up to the allocated total.
    let teams = csv_rows(&summary);
    assert_eq!(
        teams[0],
        ["team", "direct", "shared", "gpu", "total", "previous_month", "change_pct", "gpu_hours", "gpu_utilization_pct", "gpu_idle_hours", "gpu_idle_cost", "gpu_on_demand", "gpu_spot", "gpu_on_prem"]
    );
    let mut allocated = 0;
    for row in &teams[1..] {
        let (direct, shared, gpu, total) = (to_cents(&row[1]), to_cents(&row[2]), to_cents(&row[3]), to_cents(&row[4]));
        if row[0] != "unallocated" {
            assert_eq!(direct + shared + gpu, total, "{row:?}");
        }
        let lines = csv_rows(&std::fs::read_to_string(month_dir.join("teams").join(format!("{}.csv", row[0]))).unwrap());
        let amount = lines[0].iter().position(|h| h == "amount").unwrap();
        let sum: i64 = lines[1..].iter().map(|l| to_cents(&l[amount])).sum();
        assert_eq!(sum, total, "teams/{}.csv adds up to its summary row", row[0]);
        assert!(!row[5].is_empty(), "previous month is known for the fixtures");
        allocated += total;
    }
    assert_eq!(allocated, to_cents(manifest["allocated"].as_str().unwrap()));
    // The allocated basis (amortized) is conserved: the team rows add up exactly to the month's
    // rounded total (which services.csv's column also adds up to), plus the on-prem GPU hosts
    // priced by the rate card, which are no AWS line items.
    let on_prem = per_group.get(&("on-prem".to_string(), "OnPremGPU".to_string())).copied().unwrap_or(0);
    assert!(on_prem > 0, "the fixtures' on-prem host is charged");
    assert_eq!(allocated, to_cents(manifest["totals"]["amortized"]["rounded"].as_str().unwrap()) + on_prem);

    // GPU: each row's gpu column is its On-Demand + Spot + on-prem parts; the gpu column adds up
    // to what the GPU pools were charged; gpu.csv's pool rows say the same.
    let mut gpu_total = 0;
    for row in &teams[1..] {
        assert_eq!(to_cents(&row[3]), to_cents(&row[11]) + to_cents(&row[12]) + to_cents(&row[13]), "{row:?}");
        gpu_total += to_cents(&row[3]);
    }
    let pools = manifest["gpu"]["pools"].as_array().unwrap();
    let charged: i64 = pools.iter().map(|p| to_cents(p["charged"].as_str().unwrap())).sum();
    assert_eq!(gpu_total, charged);
    let measured: Vec<&serde_json::Value> = pools.iter().filter(|p| p["measured"] == true).collect();
    assert_eq!(measured.len(), 4, "p4d On-Demand, g5 On-Demand, g5 Spot and the on-prem host: {pools:?}");
    for p in &measured {
        // A measured pool is charged its cost to the cent (its rounding among the other parts
        // of its account and service may move the last cent, never more).
        let cost: finops_allocate::Money = p["cost"].as_str().unwrap().parse().unwrap();
        let charged = finops_allocate::Money::from_cents(to_cents(p["charged"].as_str().unwrap()));
        let diff = (charged.units() - cost.units()).abs();
        assert!(diff < finops_allocate::Money::from_cents(1).units(), "{p}");
    }
    let gpu_csv = csv_rows(&std::fs::read_to_string(month_dir.join("gpu.csv")).unwrap());
    let cost = gpu_csv[0].iter().position(|h| h == "cost").unwrap();
    let pool_rows: i64 = gpu_csv[1..].iter().filter(|r| r[4] == "(pool)").map(|r| to_cents(&r[cost])).sum();
    assert_eq!(pool_rows, charged);
    let coverage: f64 = manifest["gpu"]["coverage"].as_str().unwrap().parse().unwrap();
    assert!(coverage > 0.999 && coverage < 1.0, "the recorded month has a 20-minute scrape gap: coverage {coverage}");
    assert!(stdout.contains("GPU: ") && stdout.contains("usage data covers 99.99% of the period"), "{stdout}");
    let inputs = manifest["inputs"].as_array().unwrap();
    assert!(!inputs.is_empty() && inputs.iter().all(|i| i["sha256"].as_str().unwrap().len() == 64 && i["rows"].as_u64().unwrap() > 0));
}

fn to_cents(s: &str) -> i64 {
    let negative = s.starts_with('-');
    let (int, frac) = s.trim_start_matches('-').split_once('.').unwrap();
    let v = int.parse::<i64>().unwrap() * 100 + frac.parse::<i64>().unwrap();
    if negative {
        -v
    } else {
        v
    }
}

#[test]
fn rerunning_a_month_gives_identical_bytes() {
    let cwd = tempfile::tempdir().unwrap();
    let first = finops(&["run", "--out", &cwd.path().join("a").to_string_lossy()], &workspace());
    assert!(first.status.success(), "{}", text(&first.stderr));
    let second = finops(&["run", "--out", &cwd.path().join("b").to_string_lossy()], &workspace());
    assert!(second.status.success());
    let month = latest_fixture_month();
    for name in ["summary.csv", "services.csv", "manifest.json", "teams/search.csv", "teams/unallocated.csv"] {
        let a = std::fs::read(cwd.path().join("a").join(&month).join(name)).unwrap();
        let b = std::fs::read(cwd.path().join("b").join(&month).join(name)).unwrap();
        assert_eq!(a, b, "{name}");
    }
}

/// A CUR 2.0 export folder holding one month, whose data file the test may replace.
struct BadSource {
    dir: tempfile::TempDir,
    month: String,
}

impl BadSource {
    fn new() -> BadSource {
        let month = latest_fixture_month();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join(format!("data/BILLING_PERIOD={month}"));
        std::fs::create_dir_all(&data).unwrap();
        let source = workspace().join(format!("fixtures/cur2/data/BILLING_PERIOD={month}"));
        for entry in std::fs::read_dir(source).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), data.join(entry.file_name())).unwrap();
        }
        BadSource { dir, month }
    }

    fn data_file(&self) -> PathBuf {
        let data = self.dir.path().join(format!("data/BILLING_PERIOD={}", self.month));
        std::fs::read_dir(data).unwrap().next().unwrap().unwrap().path()
    }

    fn frame(&self) -> DataFrame {
        ParquetReader::new(std::fs::File::open(self.data_file()).unwrap()).finish().unwrap()
    }

    fn write(&self, mut frame: DataFrame) {
        ParquetWriter::new(std::fs::File::create(self.data_file()).unwrap()).finish(&mut frame).unwrap();
    }

    /// Runs the job into a fresh output root; returns stderr and asserts nothing was published.
    fn run_failing(&self, extra: &[&str]) -> String {
        let out = tempfile::tempdir().unwrap();
        let source = self.dir.path().to_string_lossy().to_string();
        let out_root = out.path().join("out");
        let mut args = vec!["run", "--source", &source, "--month", &self.month];
        let out_text = out_root.to_string_lossy().to_string();
        args.extend(["--out", &out_text]);
        args.extend(extra);
        let result = finops(&args, &workspace());
        assert!(!result.status.success(), "expected failure, stdout: {}", text(&result.stdout));
        assert!(!out_root.join(&self.month).exists(), "a failed run must leave no out/<month>/");
        let leftovers = std::fs::read_dir(&out_root).map(|d| d.count()).unwrap_or(0);
        assert_eq!(leftovers, 0, "no partial files either");
        text(&result.stderr)
    }
}

#[test]
fn missing_required_column_names_file_and_column() {
    let source = BadSource::new();
    let frame = source.frame().drop("line_item_unblended_cost").unwrap();
    source.write(frame);
    let stderr = source.run_failing(&[]);
    let file = source.data_file().to_string_lossy().to_string();
    assert!(stderr.contains(&file), "{stderr}");
    assert!(stderr.contains("missing required column `line_item_unblended_cost`"), "{stderr}");
}

#[test]
fn corrupt_parquet_names_the_file() {
    let source = BadSource::new();
    let bytes = std::fs::read(source.data_file()).unwrap();
    std::fs::write(source.data_file(), &bytes[..bytes.len() / 2]).unwrap();
    let stderr = source.run_failing(&[]);
    assert!(stderr.contains(&*source.data_file().to_string_lossy()), "{stderr}");
    assert!(stderr.contains("unreadable"), "{stderr}");
}

#[test]
fn nan_and_infinite_costs_name_file_row_and_column() {
    for (bad, row) in [(f64::NAN, 7usize), (f64::INFINITY, 0usize)] {
        let source = BadSource::new();
        let mut frame = source.frame();
        let costs: Vec<f64> = frame.column("line_item_unblended_cost").unwrap().f64().unwrap().iter().enumerate().map(|(i, v)| if i == row { bad } else { v.unwrap() }).collect();
        frame.with_column(Column::new("line_item_unblended_cost".into(), costs)).unwrap();
        source.write(frame);
        let stderr = source.run_failing(&[]);
        assert!(stderr.contains(&*source.data_file().to_string_lossy()), "{stderr}");
        assert!(stderr.contains(&format!("row {}, column `line_item_unblended_cost`", row + 1)), "{stderr}");
        assert!(stderr.contains(&format!("`{bad}`")), "{stderr}");
    }
}

#[test]
fn non_numeric_cost_in_csv_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "BillingPeriodStart,ChargePeriodStart,ChargePeriodEnd,BilledCost,EffectiveCost,ListCost,ServiceName,ChargeCategory,ProviderName,SubAccountId\n\
               2025-10-01 00:00:00,2025-10-01 00:00:00,2025-10-02 00:00:00,1.25,1.25,1.25,Amazon S3,Usage,AWS,1\n\
               2025-10-01 00:00:00,2025-10-01 00:00:00,2025-10-02 00:00:00,twelve,1.25,1.25,Amazon S3,Usage,AWS,1\n";
    std::fs::write(dir.path().join("focus.csv"), csv).unwrap();
    let out = tempfile::tempdir().unwrap();
    let result = finops(&["run", "--source", &dir.path().to_string_lossy(), "--format", "focus", "--month", "2025-10", "--out", &out.path().join("out").to_string_lossy()], &workspace());
    assert!(!result.status.success());
    let stderr = text(&result.stderr);
    assert!(stderr.contains("focus.csv: line 3, column `BilledCost`: `twelve` is not a valid value"), "{stderr}");
    assert!(!out.path().join("out/2025-10").exists());
}

#[test]
fn manifest_entry_that_is_not_there_is_an_error() {
    let source = BadSource::new();
    let meta = source.dir.path().join(format!("metadata/BILLING_PERIOD={}", source.month));
    std::fs::create_dir_all(&meta).unwrap();
    let listed = source.data_file().file_name().unwrap().to_string_lossy().to_string();
    let manifest = serde_json::json!({
        "dataFiles": [
            format!("s3://bucket/cur2/x/data/BILLING_PERIOD={}/{listed}", source.month),
            format!("s3://bucket/cur2/x/data/BILLING_PERIOD={}/finops-cur2-00002.snappy.parquet", source.month),
        ]
    });
    std::fs::write(meta.join("x-Manifest.json"), manifest.to_string()).unwrap();
    let stderr = source.run_failing(&[]);
    assert!(stderr.contains("x-Manifest.json: lists `s3://bucket/cur2/x/data/BILLING_PERIOD="), "{stderr}");
    assert!(stderr.contains("finops-cur2-00002.snappy.parquet`, which is not under the source"), "{stderr}");
}

#[test]
fn empty_month_says_which_months_exist() {
    let source = BadSource::new();
    let out = tempfile::tempdir().unwrap();
    let result = finops(&["run", "--source", &source.dir.path().to_string_lossy(), "--month", "2019-01", "--out", &out.path().join("out").to_string_lossy()], &workspace());
    assert!(!result.status.success());
    let stderr = text(&result.stderr);
    assert!(stderr.contains("no billing data for 2019-01"), "{stderr}");
    assert!(stderr.contains(&format!("months present: {}", source.month)), "{stderr}");
    assert!(!out.path().join("out").exists());

    // A month folder whose only file has no rows is empty too.
    let frame = source.frame().head(Some(0));
    source.write(frame);
    let stderr = source.run_failing(&[]);
    assert!(stderr.contains(&format!("no billing data for {}", source.month)), "{stderr}");
}

#[test]
fn unknown_config_key_is_an_error_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("finops.toml"), "[source]\nlocation = \"x\"\nformt = \"cur2\"\n").unwrap();
    let result = finops(&["run", "--config", "finops.toml"], dir.path());
    assert!(!result.status.success());
    let stderr = text(&result.stderr);
    assert!(stderr.contains("finops.toml: line 3, column 1: unknown field `formt`"), "{stderr}");
}

#[test]
fn rules_check_reports_every_problem_with_its_position() {
    let ws = workspace();
    let ok = finops(&["rules", "check", "rules/example.toml"], &ws);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    assert!(
        text(&ok.stdout).contains("rules/example.toml: ok (6 teams, 3 assign rules, 7 share rules; cost basis amortized; GPU chargeback by corrected GPU-hours; 2 dimensions (environment, project))"),
        "{}",
        text(&ok.stdout)
    );
    // An unreadable driver file is a rules problem, found before any billing data is read.
    let bad = finops(&["rules", "check", "fixtures/rules-invalid/07-unreadable-driver.toml"], &ws);
    assert!(!bad.status.success());
    let stderr = text(&bad.stderr);
    assert!(stderr.contains("fixtures/rules-invalid/07-unreadable-driver.toml:14:36: usage driver fixtures/rules-invalid/no-such-driver.csv: cannot read it"), "{stderr}");
    let folder = finops(&["rules", "check", "fixtures/rules-invalid"], &ws);
    assert!(!folder.status.success());
    assert!(text(&folder.stderr).contains("18 problem(s) in fixtures/rules-invalid"), "{}", text(&folder.stderr));
    // The run refuses a broken rule set before reading anything.
    let out = tempfile::tempdir().unwrap();
    let run = finops(&["run", "--rules", "fixtures/rules-invalid/02-unknown-team.toml", "--out", &out.path().join("out").to_string_lossy()], &ws);
    assert!(!run.status.success());
    assert!(text(&run.stderr).contains("unknown team `serch`"), "{}", text(&run.stderr));
    assert!(!out.path().join("out").exists());
}

#[test]
fn explain_shows_direct_rules_and_each_share_with_its_driver() {
    let out = finops(&["explain", "--team", "search"], &workspace());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let month = latest_fixture_month();
    assert!(stdout.starts_with(&format!("search — {month}, amortized cost: ")), "{stdout}");
    assert!(stdout.contains("tag:team (tagged `team` with this team or an alias)"), "{stdout}");
    assert!(stdout.contains("orders-db: metric split"), "{stdout}");
    assert!(stdout.contains("monitoring: even split, 33.33% of the shared"), "{stdout}");
    assert!(stdout.contains("business support: fixed split, 25.00% of the shared"), "{stdout}");
    // The figure explain prints is the one in summary.csv.
    let cwd = tempfile::tempdir().unwrap();
    assert!(finops(&["run", "--out", &cwd.path().join("out").to_string_lossy()], &workspace()).status.success());
    let summary = csv_rows(&std::fs::read_to_string(cwd.path().join("out").join(&month).join("summary.csv")).unwrap());
    let search = summary.iter().find(|r| r[0] == "search").unwrap();
    assert!(stdout.contains(&format!("amortized cost: {} USD", search[4])), "{stdout}\n{search:?}");

    let narrowed = text(&finops(&["explain", "--team", "검색", "--service", "AmazonRDS"], &workspace()).stdout);
    assert!(narrowed.starts_with(&format!("search — {month}, service AmazonRDS")), "{narrowed}");
    assert!(!narrowed.contains("monitoring"), "{narrowed}");
    let unknown = finops(&["explain", "--team", "nobody"], &workspace());
    assert!(!unknown.status.success());
    assert!(text(&unknown.stderr).contains("`nobody` is not a team or alias in the rule set; teams: "), "{}", text(&unknown.stderr));
}

#[test]
fn focus_sample_by_business_unit_conserves_every_cent() {
    use rust_decimal::Decimal;
    let ws = workspace();
    let sample = ws.join("../shared/data/focus-1.0");
    assert!(sample.join("focus_sample.csv").exists(), "the shared FOCUS sample must sit beside the repository in ../shared/data");
    let out = tempfile::tempdir().unwrap();
    let run = finops(
        &["run", "--source", &sample.to_string_lossy(), "--format", "focus", "--month", "2024-09", "--rules", &ws.join("rules/focus-sample.toml").to_string_lossy(), "--out", "out"],
        out.path(),
    );
    assert!(run.status.success(), "{}", text(&run.stderr));
    let summary = csv_rows(&std::fs::read_to_string(out.path().join("out/2024-09/summary.csv")).unwrap());
    let allocated: i64 = summary[1..].iter().map(|r| to_cents(&r[4])).sum();
    let unallocated = to_cents(&summary.iter().find(|r| r[0] == "unallocated").unwrap()[4]);
    assert!(unallocated > 0 && unallocated < allocated, "some business units are not teams here");
    assert!(summary.iter().any(|r| r[0] == "peoria-data" && to_cents(&r[4]) > 0));

    // Independently: BilledCost per (account, service) from the file, each rounded once.
    let csv = std::fs::read_to_string(sample.join("focus_sample.csv")).unwrap();
    let mut reader = csv.lines();
    let header: Vec<String> = split_quoted(reader.next().unwrap());
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let mut groups: std::collections::BTreeMap<(String, String), Decimal> = Default::default();
    for line in reader {
        let cells = split_quoted(line);
        if !cells[col("BillingPeriodStart")].starts_with("2024-09") {
            continue;
        }
        *groups.entry((cells[col("SubAccountId")].clone(), cells[col("ServiceName")].clone())).or_default() += cells[col("BilledCost")].parse::<Decimal>().unwrap();
    }
    let total: Decimal = groups.values().sum();
    let expected = i64::try_from(total.round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero) * Decimal::from(100)).unwrap();
    assert_eq!(allocated, expected, "every cent of BilledCost lands on a business unit or unallocated");
    // Per (account, service): the teams' lines add up to within a cent of the group's exact sum.
    let mut printed: std::collections::BTreeMap<(String, String), i64> = Default::default();
    for entry in std::fs::read_dir(out.path().join("out/2024-09/teams")).unwrap() {
        let rows = csv_rows(&std::fs::read_to_string(entry.unwrap().path()).unwrap());
        for r in &rows[1..] {
            *printed.entry((r[1].clone(), r[2].clone())).or_default() += to_cents(&r[11]);
        }
    }
    assert_eq!(printed.len(), groups.len());
    for (key, exact) in &groups {
        let diff = (Decimal::from(printed[key]) - exact * Decimal::from(100)).abs();
        assert!(diff < Decimal::ONE, "{key:?}: printed {} vs exact {exact}", printed[key]);
    }
}

/// Rows of a CSV this program wrote (fields may be quoted).
/// Rows of an output CSV, cells as a program reads them: an account ID written for spreadsheets
/// (`="012345678901"`, kept as text) is its digits.
fn csv_rows(text: &str) -> Vec<Vec<String>> {
    let id = |cell: String| match cell.strip_prefix("=\"").and_then(|c| c.strip_suffix('"')) {
        Some(digits) if digits.bytes().all(|b| b.is_ascii_digit()) => digits.to_string(),
        _ => cell,
    };
    text.trim_start_matches('\u{feff}').lines().map(|l| split_quoted(l).into_iter().map(id).collect()).collect()
}

/// Splits one CSV line with quoted fields (the FOCUS sample has no newlines inside quotes).
fn split_quoted(line: &str) -> Vec<String> {
    let mut cells = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                cells.last_mut().unwrap().push('"');
                chars.next();
            }
            (_, '"') => quoted = !quoted,
            (false, ',') => cells.push(String::new()),
            (_, c) => cells.last_mut().unwrap().push(c),
        }
    }
    cells
}

#[test]
fn metric_share_from_prometheus_splits_by_the_period_average() {
    let url = std::env::var("FINOPS_TEST_PROMETHEUS_URL").unwrap_or_else(|_| panic!("FINOPS_TEST_PROMETHEUS_URL is not set: run `scripts/test`, which starts Prometheus with the test series"));
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(
        &rules,
        "version = 1\nteam_tags = [\"team\"]\n[teams.search]\n[teams.orders]\n[teams.payments]\n\
         [[share]]\nname = \"orders-db\"\nwhen = { resource = [\"arn:aws:rds:ap-northeast-2:222222222222:db:orders\"] }\n\
         method = \"metric\"\namong = [\"search\", \"orders\", \"payments\"]\n\
         metric = { source = \"prometheus\", query = \"sum by (team) (pg_table_size_bytes{db=\\\"orders\\\"})\", label = \"team\" }\n",
    )
    .unwrap();
    let rules = rules.to_string_lossy().to_string();
    let explain = |team: &str| {
        let out = finops(&["explain", "--team", team, "--month", "2025-10", "--rules", &rules, "--prometheus-url", &url], &workspace());
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    assert!(explain("orders").contains("orders-db: metric split, 66.67% of the shared"), "{}", explain("orders"));
    assert!(explain("payments").contains("orders-db: metric split, 25.00% of the shared"));
    assert!(explain("search").contains("orders-db: metric split, 8.33% of the shared"));
    assert!(explain("orders").contains("driver: 800000000000"));

    // No Prometheus reachable: a clear error naming the rule's position, and no month written.
    let out = tempfile::tempdir().unwrap();
    let failed = finops(&["run", "--rules", &rules, "--prometheus-url", "http://127.0.0.1:9", "--out", &out.path().join("out").to_string_lossy()], &workspace());
    assert!(!failed.status.success());
    let stderr = text(&failed.stderr);
    assert!(stderr.contains("rules.toml:11:43: Prometheus: http://127.0.0.1:9: no answer after"), "{stderr}");
    assert!(!out.path().join("out").exists());
}

#[test]
fn gpu_usage_from_an_unreachable_prometheus_fails_and_writes_no_month() {
    let out = tempfile::tempdir().unwrap();
    let failed = finops(&["run", "--gpu-usage", "prometheus", "--prometheus-url", "http://127.0.0.1:9", "--out", &out.path().join("out").to_string_lossy()], &workspace());
    assert!(!failed.status.success());
    let stderr = text(&failed.stderr);
    assert!(stderr.contains("http://127.0.0.1:9: Prometheus: no answer after 4 attempts") && stderr.contains("nothing was written"), "{stderr}");
    assert!(!out.path().join("out").exists());
}

#[test]
fn explain_shows_the_gpu_charge_with_its_hours_and_idle_pool() {
    let out = finops(&["explain", "--team", "search"], &workspace());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("gpu: "), "{stdout}");
    assert!(stdout.contains("p4d.24xlarge OnDemand: GPU-hours, basis corrected;") && stdout.contains("at 5% util"), "{stdout}");
    assert!(stdout.contains("p4d.24xlarge OnDemand: idle pool, share;"), "{stdout}");
    // search holds GPUs at 5%: its idle hours at full price exceed its whole GPU charge, and
    // explain says why that is not a contradiction.
    assert!(stdout.contains("idle GPU-hours: ") && stdout.contains("a measure of waste, not part of the charge above"), "{stdout}");
}

/// The fixture month with one cell of a column replaced (by row).
fn with_cell(source: &BadSource, column: &str, row: usize, value: AnyValue<'static>) -> DataFrame {
    let mut frame = source.frame();
    let original = frame.column(column).unwrap().as_materialized_series().clone();
    let replacement = Series::from_any_values(column.into(), &[value], false).unwrap().cast(original.dtype()).unwrap();
    let mut updated = original.slice(0, row);
    updated.append(&replacement).unwrap();
    updated.append(&original.slice(row as i64 + 1, original.len() - row - 1)).unwrap();
    frame.with_column(updated.into_column()).unwrap();
    frame
}

/// Regression: a double beyond Decimal(38, 12) became null, then 0, without a word.
#[test]
fn an_out_of_range_cost_names_file_row_and_column() {
    let source = BadSource::new();
    source.write(with_cell(&source, "line_item_unblended_cost", 4, AnyValue::Float64(1e30)));
    let stderr = source.run_failing(&[]);
    assert!(stderr.contains(&*source.data_file().to_string_lossy()), "{stderr}");
    assert!(stderr.contains("row 5, column `line_item_unblended_cost`"), "{stderr}");
}

/// Regression: a null cost on a Usage line became 0.
#[test]
fn a_usage_line_without_a_cost_names_file_row_and_column() {
    let source = BadSource::new();
    let frame = source.frame();
    let types = frame.column("line_item_line_item_type").unwrap().str().unwrap().clone();
    let row = types.iter().position(|t| t == Some("Usage")).unwrap();
    source.write(with_cell(&source, "line_item_unblended_cost", row, AnyValue::Null));
    let stderr = source.run_failing(&[]);
    assert!(stderr.contains(&format!("row {}, column `line_item_unblended_cost`", row + 1)), "{stderr}");
    assert!(stderr.contains("`null`"), "{stderr}");
}

/// Regression: a blank usage account became an "" group.
#[test]
fn a_blank_account_names_file_row_and_column() {
    let source = BadSource::new();
    source.write(with_cell(&source, "line_item_usage_account_id", 2, AnyValue::String(" ")));
    let stderr = source.run_failing(&[]);
    assert!(stderr.contains("row 3, column `line_item_usage_account_id`"), "{stderr}");
    assert!(stderr.contains("`(empty)`"), "{stderr}");
}

/// Regression: an identical second copy of a data file, in a partition with no manifest, counted
/// the month twice.
#[test]
fn an_identical_copy_of_a_data_file_is_refused_naming_both() {
    let source = BadSource::new();
    let original = source.data_file();
    let copy = original.with_file_name("finops-cur2-00001 (copy).snappy.parquet");
    std::fs::copy(&original, &copy).unwrap();
    let stderr = source.run_failing(&[]);
    assert!(stderr.contains("the same bytes as"), "{stderr}");
    assert!(stderr.contains("counted twice"), "{stderr}");
    assert!(stderr.contains("(copy)"), "{stderr}");
}

/// Regression: with two CUR 2.0 manifests for one period the first in key order silently won.
#[test]
fn two_manifests_for_one_period_are_refused_naming_both() {
    let source = BadSource::new();
    let metadata = source.dir.path().join(format!("metadata/BILLING_PERIOD={}", source.month));
    std::fs::create_dir_all(&metadata).unwrap();
    let name = source.data_file().file_name().unwrap().to_string_lossy().to_string();
    for export in ["a", "b"] {
        let manifest = serde_json::json!({ "dataFiles": [format!("s3://bucket/cur2/{export}/data/BILLING_PERIOD={}/{name}", source.month)] });
        std::fs::write(metadata.join(format!("{export}-Manifest.json")), manifest.to_string()).unwrap();
    }
    let stderr = source.run_failing(&[]);
    assert!(stderr.contains("a-Manifest.json") && stderr.contains("b-Manifest.json"), "{stderr}");
    assert!(stderr.contains("2 manifests for"), "{stderr}");
}

/// Regression: `resource_tags` as JSON text (as CUR 2.0 CSV exports write the map) lost every
/// tag, and the month went unallocated. It reads like the map.
#[test]
fn resource_tags_as_json_text_read_like_the_map() {
    let source = BadSource::new();
    let run = |dir: &Path| {
        let out = tempfile::tempdir().unwrap();
        let args = ["run", "--source", &source.dir.path().to_string_lossy(), "--month", &source.month, "--out", &out.path().join("o").to_string_lossy()].map(str::to_string);
        let result = finops(&args.iter().map(String::as_str).collect::<Vec<_>>(), dir);
        assert!(result.status.success(), "{}", text(&result.stderr));
        std::fs::read_to_string(out.path().join(format!("o/{}/summary.csv", source.month))).unwrap()
    };
    let cwd = workspace();
    let as_map = run(&cwd);
    let mut frame = source.frame();
    let tags = frame.column("resource_tags").unwrap().list().unwrap().clone();
    let json: Vec<Option<String>> = (0..tags.len())
        .map(|i| {
            let entry = tags.get_as_series(i)?;
            let pairs = entry.struct_().ok()?.clone();
            let (keys, values) = (pairs.field_by_name("key").ok()?, pairs.field_by_name("value").ok()?);
            let object: serde_json::Map<String, serde_json::Value> =
                keys.str().ok()?.iter().zip(values.str().ok()?.iter()).filter_map(|(k, v)| Some((k?.to_string(), serde_json::Value::String(v?.to_string())))).collect();
            Some(serde_json::Value::Object(object).to_string())
        })
        .collect();
    frame.with_column(Column::new("resource_tags".into(), json)).unwrap();
    source.write(frame);
    let as_json = run(&cwd);
    assert_eq!(as_json, as_map);
    assert!(as_map.contains("search,"), "{as_map}");
}

// ---------------------------------------------------------------------------------------------
// Issue 9: what a new user hit on a first run. Each test failed before its fix.

/// `finops run` from the repository root into a fresh output root; returns (stdout, stderr, root).
fn run_in_repo(extra: &[&str]) -> (String, String, tempfile::TempDir) {
    let out = tempfile::tempdir().unwrap();
    let root = out.path().join("out").to_string_lossy().to_string();
    let mut args = vec!["run", "--out", &root];
    args.extend(extra);
    let result = finops(&args, &workspace());
    assert!(result.status.success(), "{}", text(&result.stderr));
    (text(&result.stdout), text(&result.stderr), out)
}

fn manifest_of(out: &tempfile::TempDir, month: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.path().join("out").join(month).join("manifest.json")).unwrap()).unwrap()
}

#[test]
fn the_team_lines_add_up_to_a_printed_total_of_the_bill_and_the_rate_card() {
    let (stdout, _, _) = run_in_repo(&[]);
    let figure = |line: &str| to_cents(line.split_whitespace().nth(1).unwrap());
    let lines: Vec<&str> = stdout.lines().collect();
    let start = lines.iter().position(|l| l.starts_with("teams (")).unwrap() + 1;
    let rule = lines.iter().position(|l| l.trim().starts_with("----")).expect("a rule under the team lines");
    let teams: i64 = lines[start..rule].iter().map(|l| figure(l)).sum();
    let total = lines[rule + 1];
    assert!(total.trim_start().starts_with("total"), "{stdout}");
    assert_eq!(figure(total), teams, "the teams add up to the total line: {stdout}");
    // The total's parts: the bill at the allocated basis, plus the rate card's on-prem GPU hosts.
    let parts: Vec<i64> = total.split(" = the AWS bill ").nth(1).unwrap().split(" + on-prem GPU at the rate card ").map(to_cents).collect();
    assert_eq!(parts.len(), 2, "{total}");
    assert_eq!(parts[0] + parts[1], figure(total), "{total}");
    let allocated = lines.iter().find(|l| l.ends_with("<- allocated")).unwrap();
    assert_eq!(figure(allocated), parts[0], "the bill is the allocated basis' figure");
}

#[test]
fn rules_whose_tag_keys_are_not_in_the_data_and_low_coverage_are_warned_loudly() {
    let focus = workspace().join("../shared/data/focus-1.0");
    let focus = focus.to_string_lossy();
    // The example rules (tag keys team, Team, owner) on the FOCUS sample (tag key business_unit).
    let (stdout, stderr, out) = run_in_repo(&["--source", &focus, "--format", "focus", "--month", "2024-09", "--gpu-usage", "none"]);
    assert!(stdout.contains("allocation coverage: 0.0%"), "{stdout}");
    assert!(stderr.contains("warning: none of the rule set's team tag keys (team, Team, owner) appear in the billing data"), "{stderr}");
    assert!(stderr.contains("The data's tag keys are: ") && stderr.contains("business_unit"), "{stderr}");
    assert!(stderr.contains("warning: allocation coverage is 0.0%, below the 80% threshold ([checks] min_coverage)"), "{stderr}");
    let warnings = manifest_of(&out, "2024-09")["warnings"].as_array().unwrap().iter().map(|w| w.as_str().unwrap().to_string()).collect::<Vec<_>>();
    assert!(warnings.iter().any(|w| w.contains("business_unit")) && warnings.iter().any(|w| w.contains("coverage")), "{warnings:?}");

    // The threshold is configurable: at 0 no coverage warning (the tag key warning stays).
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("finops.toml"), "[checks]\nmin_coverage = 0.0\n").unwrap();
    let config = dir.path().join("finops.toml").to_string_lossy().to_string();
    let (_, stderr, _) = run_in_repo(&["--config", &config, "--source", &focus, "--format", "focus", "--month", "2024-09", "--gpu-usage", "none"]);
    assert!(!stderr.contains("coverage is"), "{stderr}");
    assert!(stderr.contains("none of the rule set's team tag keys"), "{stderr}");

    // The fixtures are well tagged: no warning at all.
    let (_, stderr, _) = run_in_repo(&[]);
    assert!(!stderr.contains("warning:"), "{stderr}");
}

#[test]
fn every_run_with_gpu_rules_says_which_gpu_usage_it_charged_by_or_why_none() {
    let (stdout, _, _) = run_in_repo(&[]);
    assert!(stdout.contains("GPU usage: recorded file fixtures/gpu/"), "{stdout}");

    // Another source (a copy of the fixtures): auto finds no usage, and says so.
    let source = BadSource::new();
    let copy = source.dir.path().to_string_lossy().to_string();
    let (stdout, stderr, out) = run_in_repo(&["--source", &copy]);
    assert!(stdout.contains("GPU usage: none: no GPU usage source for this billing source"), "{stdout}");
    assert!(stderr.contains("warning: GPU usage none: no GPU usage source"), "{stderr}");
    assert!(manifest_of(&out, &source.month)["gpu"]["source"].as_str().unwrap().starts_with("none: no GPU usage source"));

    let (stdout, _, _) = run_in_repo(&["--gpu-usage", "none"]);
    assert!(stdout.contains("GPU usage: none: switched off"), "{stdout}");
}

/// The recorded GPU usage of the fixtures, uncompressed into a folder, with `keep` choosing lines.
fn recorded_gpu_usage(month: &str, keep: impl Fn(&str) -> bool) -> tempfile::TempDir {
    use std::io::Read;
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(workspace().join(format!("fixtures/gpu/{month}.csv.gz"))).unwrap()).read_to_string(&mut text).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kept: Vec<&str> = text.lines().enumerate().filter(|(i, l)| *i == 0 || keep(l)).map(|(_, l)| l).collect();
    std::fs::write(dir.path().join(format!("{month}.csv")), kept.join("\n") + "\n").unwrap();
    dir
}

#[test]
fn an_on_prem_host_costs_gpus_times_hours_times_rate_through_a_gap_in_its_usage() {
    let month = latest_fixture_month();
    // The host's pool row in gpu.csv: its cost (the rate card's cost line) and unreported hours.
    let on_prem = |out: &tempfile::TempDir| -> (String, Vec<String>) {
        let gpu = csv_rows(&std::fs::read_to_string(out.path().join("out").join(&month).join("gpu.csv")).unwrap());
        let column = |name: &str| gpu[0].iter().position(|h| h == name).unwrap();
        let pool = gpu.iter().find(|r| r[0].ends_with("(on-prem)") && r[column("team")] == "(pool)").expect("the on-prem pool's row");
        (pool[column("cost")].clone(), vec![pool[column("unobserved_gpu_hours")].clone()])
    };
    let whole = recorded_gpu_usage(&month, |_| true);
    let (_, _, full) = run_in_repo(&["--gpu-usage", &whole.path().to_string_lossy()]);
    // Twenty minutes of scrapes lost on the host: one hour's rows of it, gone.
    let gap = recorded_gpu_usage(&month, |l| !(l.starts_with(&format!("{month}-05T10:00:00Z,dgx-")) && l.contains(",dgx-")));
    let (_, _, gapped) = run_in_repo(&["--gpu-usage", &gap.path().to_string_lossy()]);
    let (full_cost, _) = on_prem(&full);
    let (gap_cost, unobserved) = on_prem(&gapped);
    // 8 GPUs x 744 h x 1.85 (rules/example.toml's rate card for the host's A100 80GB).
    assert_eq!(full_cost, "11011.20");
    assert_eq!(gap_cost, full_cost, "a scrape gap does not make the hardware cheaper");
    assert_eq!(unobserved, vec!["8.0".to_string()], "the lost hour's 8 GPU-hours are idle, and shown");
}

#[test]
fn explain_and_the_readme_call_the_proportional_weight_own_cost() {
    let out = finops(&["explain", "--team", "search"], &workspace());
    let stdout = text(&out.stdout);
    assert!(stdout.contains("proportional split") && stdout.contains("own cost ") && stdout.contains("(direct + GPU on the AWS bill)"), "{stdout}");
    assert!(!stdout.contains("direct cost"), "{stdout}");
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    assert!(readme.contains("`proportional` (to each target's **own cost**"), "README names the weight as explain does");
}

#[test]
fn wrong_names_are_errors_with_a_suggestion() {
    let ws = workspace();
    let wrong_case = finops(&["explain", "--team", "search", "--service", "amazonrds"], &ws);
    assert!(!wrong_case.status.success());
    assert!(text(&wrong_case.stderr).contains("`amazonrds` is not a service in ") && text(&wrong_case.stderr).contains("(did you mean `AmazonRDS`?)"), "{}", text(&wrong_case.stderr));
    let unknown = finops(&["explain", "--team", "search", "--service", "NoSuchService"], &ws);
    assert!(!unknown.status.success());
    assert!(text(&unknown.stderr).contains("its services: ") && text(&unknown.stderr).contains("AmazonEC2"), "{}", text(&unknown.stderr));
    let typo = finops(&["explain", "--team", "serch"], &ws);
    assert!(!typo.status.success());
    assert!(text(&typo.stderr).contains("`serch` is not a team or alias in the rule set (did you mean `search`?)"), "{}", text(&typo.stderr));

    // rules check reads file drivers as run does: a key that maps to no team is reported.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sizes.csv"), "date,key,value\n2025-10-01,search,10\n2025-10-01,nobody,5\n").unwrap();
    std::fs::write(
        dir.path().join("rules.toml"),
        "version = 1\nteam_tags = [\"team\"]\n[teams.search]\n[teams.orders]\n[[share]]\nname = \"db\"\nwhen = { service = [\"AmazonRDS\"] }\nmethod = \"metric\"\namong = [\"search\", \"orders\"]\nmetric = { source = \"file\", path = \"sizes.csv\" }\n",
    )
    .unwrap();
    let check = finops(&["rules", "check", &dir.path().join("rules.toml").to_string_lossy()], &ws);
    assert!(!check.status.success(), "{}", text(&check.stdout));
    assert!(text(&check.stderr).contains("share `db`: driver key `nobody` names no team"), "{}", text(&check.stderr));
}

#[test]
fn config_paths_are_relative_to_the_config_file_and_defaults_say_where_they_are() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("r.toml"), "version = 1\nteam_tags = [\"team\"]\n[teams.search]\n").unwrap();
    let fixtures = workspace().join("fixtures/cur2");
    std::fs::write(dir.path().join("finops.toml"), format!("rules = \"r.toml\"\n[source]\nlocation = \"{}\"\n[output]\nlocation = \"published\"\n", fixtures.display())).unwrap();
    // Run from another directory: the rules and the output folder are the config's neighbours.
    let elsewhere = tempfile::tempdir().unwrap();
    let config = dir.path().join("finops.toml").to_string_lossy().to_string();
    let run = finops(&["run", "--config", &config], elsewhere.path());
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(dir.path().join("published").join(latest_fixture_month()).join("manifest.json").exists());
    assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0, "nothing written where the command ran");

    // Outside the repository with no source: what to do, not a path from the build machine.
    let lost = finops(&["run"], elsewhere.path());
    assert!(!lost.status.success());
    assert!(text(&lost.stderr).contains("the default (fixtures/cur2, the committed fixtures) is not under") && text(&lost.stderr).contains("pass --source"), "{}", text(&lost.stderr));

    // An OS error is said once, with the path.
    let missing = finops(&["run", "--config", "/no/such/finops.toml"], elsewhere.path());
    let stderr = text(&missing.stderr);
    assert!(!missing.status.success());
    assert_eq!(stderr.matches("os error 2").count(), 1, "{stderr}");
    assert!(stderr.contains("/no/such/finops.toml"), "{stderr}");
}

#[test]
fn long_stages_show_progress_on_a_terminal_and_nothing_under_quiet() {
    let finops_path = env!("CARGO_BIN_EXE_finops");
    let out = tempfile::tempdir().unwrap();
    let on_terminal = |extra: &str| -> String {
        // `script` gives the command a terminal, as a user's shell does.
        let command = format!("{finops_path} run --out {} {extra}", out.path().join("o").display());
        let result = Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .current_dir(workspace())
            .output()
            .unwrap_or_else(|e| panic!("`script` (util-linux) runs the CLI on a terminal for this test; install util-linux: {e}"));
        assert!(result.status.success(), "{}", text(&result.stdout));
        text(&result.stdout)
    };
    let shown = on_terminal("");
    assert!(shown.contains("summing line items: 1 row group(s) of 1 file(s)"), "{shown}");
    assert!(shown.contains("writing outputs"), "{shown}");
    let quiet = on_terminal("--quiet");
    assert!(!quiet.contains("summing line items"), "{quiet}");
    // Not a terminal: nothing but the summary and warnings.
    let (_, stderr, _) = run_in_repo(&[]);
    assert!(!stderr.contains("summing"), "{stderr}");
}

#[test]
fn help_describes_every_flag_and_defaults() {
    let help = |args: &[&str]| text(&finops(args, &workspace()).stdout);
    let explain = help(&["explain", "--help"]);
    let explain = explain.split("Options:").nth(1).unwrap_or_else(|| panic!("{explain}")).to_string();
    for flag in ["--team <TEAM>\n", "--month <MONTH>\n"] {
        let at = explain.find(flag).unwrap_or_else(|| panic!("{explain}"));
        assert!(explain[at + flag.len()..].lines().next().unwrap().trim().len() > 10, "{flag} has a description: {explain}");
    }
    let run = help(&["run", "--help"]);
    for default in ["[default: the latest month in the source]", "[default: fixtures/cur2", "[default: rules/example.toml"] {
        assert!(run.contains(default), "{default}: {run}");
    }
    let check = text(&finops(&["rules", "check", "rules/focus-sample.toml"], &workspace()).stdout);
    assert!(check.contains("1 share rule;") || check.contains("share rules;"), "{check}");
    assert!(!check.contains("1 share rules"), "{check}");
}

#[test]
fn gpu_namespace_and_pod_rows_add_up_to_each_teams_gpu_row() {
    let (stdout, _, out) = run_in_repo(&[]);
    assert!(stdout.contains("gpu-namespaces.csv") && stdout.contains("gpu-pods.csv"), "{stdout}");
    let month = latest_fixture_month();
    let read = |name: &str| csv_rows(&std::fs::read_to_string(out.path().join("out").join(&month).join(name)).unwrap());
    let (gpu, namespaces, pods) = (read("gpu.csv"), read("gpu-namespaces.csv"), read("gpu-pods.csv"));
    let col = |rows: &[Vec<String>], name: &str| rows[0].iter().position(|h| h == name).unwrap_or_else(|| panic!("no column {name}"));
    type Sums = std::collections::BTreeMap<(String, String), [i64; 3]>;
    let sums = |rows: &[Vec<String>], pool: usize, team: usize| -> Sums {
        let mut out = Sums::new();
        let money = ["usage_cost", "idle_pool_cost", "cost"].map(|c| col(rows, c));
        for r in rows[1..].iter().filter(|r| r[team] != "(pool)" && r[team] != "(not measured)") {
            let e = out.entry((r[pool].clone(), r[team].clone())).or_default();
            for (i, c) in money.iter().enumerate() {
                e[i] += to_cents(&r[*c]);
            }
        }
        out
    };
    let teams = sums(&gpu, col(&gpu, "pool"), col(&gpu, "team"));
    assert!(teams.len() > 3, "{teams:?}");
    assert_eq!(sums(&namespaces, 0, 1), teams, "namespaces add up to their team's gpu.csv row");
    assert_eq!(sums(&pods, 0, 1), teams, "pods add up to their team's gpu.csv row");
    assert!(pods.len() > namespaces.len() && namespaces.len() > 3, "{} pods, {} namespaces", pods.len(), namespaces.len());
    assert!(pods[1..].iter().any(|r| r[col(&pods, "mig_profile")] == "1g.10gb"), "MIG slices are listed by profile");
}

/// The README's examples that need no network, run as written from the repository root.
#[test]
fn the_readme_examples_do_what_the_readme_says() {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let out = tempfile::tempdir().unwrap();
    let root = out.path().join("o").to_string_lossy().to_string();
    let example = |line: &str| -> Output {
        assert!(readme.contains(line), "the README no longer shows `{line}`");
        let command = line.split('#').next().unwrap().trim();
        let args: Vec<&str> = command.split_whitespace().skip(1).collect();
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        if args[0] == "run" && !args.iter().any(|a| a == "--out") {
            args.extend(["--out".to_string(), root.clone()]);
        }
        let result = finops(&args.iter().map(String::as_str).collect::<Vec<_>>(), &workspace());
        assert!(result.status.success(), "`{command}`: {}", text(&result.stderr));
        result
    };
    let focus = example("finops run --month 2024-09 --source ../shared/data/focus-1.0 --format focus --rules rules/focus-sample.toml");
    let coverage = text(&focus.stdout);
    assert!(!coverage.contains("allocation coverage: 0.0%"), "{coverage}");
    assert!(!text(&focus.stderr).contains("warning:"), "{}", text(&focus.stderr));
    example("finops rules check rules/");
    let explain = example("finops explain --team search --month 2025-10");
    assert!(text(&explain.stdout).starts_with("search — 2025-10"), "{}", text(&explain.stdout));
}

// ---------------------------------------------------------------------------------------------
// Issue 10: the executive PDF.

fn pdftotext(pdf: &Path) -> String {
    let out = Command::new("pdftotext")
        .args(["-layout", &pdf.to_string_lossy(), "-"])
        .output()
        .unwrap_or_else(|e| panic!("pdftotext is needed to read the report ({e}): install Debian's poppler-utils (scripts/test does)"));
    assert!(out.status.success(), "pdftotext failed on {}", pdf.display());
    text(&out.stdout)
}

#[test]
fn the_report_shows_every_team_total_and_kpi_exactly_as_the_outputs_do() {
    let (_, _, out) = run_in_repo(&[]);
    let month = latest_fixture_month();
    let dir = out.path().join("out").join(&month);
    let report = pdftotext(&dir.join("report.pdf"));
    let summary = csv_rows(&std::fs::read_to_string(dir.join("summary.csv")).unwrap());
    let col = |name: &str| summary[0].iter().position(|h| h == name).unwrap();
    let grouped = |cents: i64| {
        let whole = (cents.abs() / 100).to_string();
        let mut out = String::new();
        for (i, c) in whole.chars().enumerate() {
            if i > 0 && (whole.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        format!("{}{out}.{:02}", if cents < 0 { "-" } else { "" }, cents.abs() % 100)
    };
    let mut total = 0;
    for row in &summary[1..] {
        // The team table prints each total as summary.csv does, with thousands separators.
        let cells: Vec<String> = ["direct", "shared", "gpu", "total"].iter().map(|c| grouped(to_cents(&row[col(c)]))).collect();
        let cells: Vec<&str> = cells.iter().map(String::as_str).collect();
        let in_table = report.lines().any(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            words.first() == Some(&row[0].as_str()) && words.get(1..5) == Some(&cells[..])
        });
        assert!(in_table, "{} {cells:?} not in the team table:\n{report}", row[0]);
        total += to_cents(&row[col("total")]);
    }
    let grand = grouped(total);
    assert!(report.lines().any(|l| l.trim_start().starts_with("total") && l.contains(&grand)), "grand total {grand}:\n{report}");
    // KPIs: total spend, coverage and GPU spend as the outputs have them.
    assert!(report.contains(&grouped(total)), "total spend KPI {}", grouped(total));
    // Page one shows the AWS bill (what services.csv adds up to) and the on-prem GPU hosts at the
    // rate card apart, and their sum: the teams' total.
    let services = csv_rows(&std::fs::read_to_string(dir.join("services.csv")).unwrap());
    let basis = services[0].iter().position(|h| h == "amortized").unwrap();
    let bill: i64 = services[1..].iter().map(|r| to_cents(&r[basis])).sum();
    let page_one = {
        let out = Command::new("pdftotext").args(["-layout", "-f", "1", "-l", "1", &dir.join("report.pdf").to_string_lossy(), "-"]).output().unwrap();
        text(&out.stdout)
    };
    assert!(bill > 0 && bill < total, "the fixtures have on-prem GPU hosts at the rate card");
    for (what, figure) in [("AWS bill", grouped(bill)), ("On-prem GPU at the rate card", grouped(total - bill)), ("+ AWS bill =", grouped(total))] {
        assert!(page_one.contains(what) && page_one.contains(&figure), "page one shows {what} {figure}:\n{page_one}");
    }
    let manifest = manifest_of(&out, &month);
    let coverage: f64 = manifest["coverage"].as_str().unwrap().parse().unwrap();
    assert!(report.contains(&format!("{:.1}%", coverage * 100.0)), "coverage KPI");
    let gpu: i64 = summary[1..].iter().map(|r| to_cents(&r[col("gpu")])).sum();
    assert!(report.contains(&grouped(gpu)), "GPU spend KPI {}", grouped(gpu));
    // Idle, whole: the KPI is the pool rows' idle in gpu.csv, in two named parts: the pods' idle
    // (the teams' rows, summary.csv's gpu_idle_cost) and the GPUs no pod used.
    let pods_idle: i64 = summary[1..].iter().map(|r| to_cents(&r[col("gpu_idle_cost")])).sum();
    let gpu_csv = csv_rows(&std::fs::read_to_string(dir.join("gpu.csv")).unwrap());
    let g = |name: &str| gpu_csv[0].iter().position(|h| h == name).unwrap();
    let pools: i64 = gpu_csv[1..].iter().filter(|r| r[g("team")] == "(pool)").map(|r| to_cents(&r[g("idle_cost")])).sum();
    let no_pod_hours: f64 = gpu_csv[1..].iter().filter(|r| r[g("team")] == "(pool)").map(|r| r[g("no_pod_gpu_hours")].parse::<f64>().unwrap()).sum();
    assert!(no_pod_hours > 0.0 && pools > pods_idle, "the fixtures have GPUs no pod used");
    let reading = format!("pods idle {} + GPUs no pod used {}", grouped(pods_idle), grouped(pools - pods_idle));
    // The reading may take two lines in its card: read page one in reading order, words apart.
    let words = {
        let out = Command::new("pdftotext").args(["-f", "1", "-l", "1", &dir.join("report.pdf").to_string_lossy(), "-"]).output().unwrap();
        text(&out.stdout).split_whitespace().collect::<Vec<_>>().join(" ")
    };
    assert!(page_one.contains(&grouped(pools)) && words.contains(&reading), "idle GPU cost KPI {} = {reading}:\n{words}", grouped(pools));
    // Each spike's largest driver is printed whole (wrapped in its cell, not cut).
    let all_words = {
        let out = Command::new("pdftotext").args([&dir.join("report.pdf").to_string_lossy(), "-"]).output().unwrap();
        text(&out.stdout).split_whitespace().collect::<Vec<_>>().join(" ")
    };
    let alerts: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("alerts.json")).unwrap()).unwrap();
    let spikes = alerts["spikes"].as_array().unwrap();
    assert!(!spikes.is_empty(), "the fixture month has spikes");
    for spike in spikes {
        let driver = spike["contributors"][0].as_str().unwrap();
        assert!(all_words.contains(driver), "the driver `{driver}` whole in the report:\n{all_words}");
    }
    assert!(!all_words.contains('…'), "no text cut in the fixture report: {all_words}");
    // Listed in the manifest with its hash; under 2 MB; a valid PDF.
    let record = manifest["files"].as_array().unwrap().iter().find(|f| f["name"] == "report.pdf").expect("report.pdf in the manifest");
    let bytes = std::fs::read(dir.join("report.pdf")).unwrap();
    assert_eq!(record["bytes"].as_u64().unwrap(), bytes.len() as u64);
    assert!(bytes.len() < 2_000_000, "{} bytes", bytes.len());
    let check = Command::new("qpdf").args(["--check", &dir.join("report.pdf").to_string_lossy()]).output().expect("qpdf (Debian's qpdf; scripts/test installs it)");
    assert!(check.status.success(), "{}", text(&check.stdout));
    // Six months of trend from the committed fixtures, each saying where it came from.
    for m in ["2025-05", "2025-06", "2025-07", "2025-08", "2025-09"] {
        assert!(report.contains(&format!("{m} ")) && report.contains("computed from the source"), "{m} in the trend sources");
    }
}

#[test]
fn finops_report_rebuilds_the_pdf_from_the_published_month_the_same_every_time() {
    let (_, _, out) = run_in_repo(&[]);
    let month = latest_fixture_month();
    let root = out.path().join("out").to_string_lossy().to_string();
    let rebuild = || {
        let result = finops(&["report", "--month", &month, "--out", &root], out.path());
        assert!(result.status.success(), "{}", text(&result.stderr));
        std::fs::read(out.path().join("out").join(&month).join("report.pdf")).unwrap()
    };
    let published = std::fs::read(out.path().join("out").join(&month).join("report.pdf")).unwrap();
    let (first, second) = (rebuild(), rebuild());
    assert_eq!(first, second, "two processes, the same bytes");
    // The rebuild is the run's PDF, byte for byte: the trend (months computed from the source,
    // not published here) comes from the month's manifest.
    assert!(first == published, "`finops report` gives the PDF `finops run` published");
    let manifest = manifest_of(&out, &month);
    let record = manifest["files"].as_array().unwrap().iter().find(|f| f["name"] == "report.pdf").unwrap();
    assert_eq!(record["bytes"].as_u64().unwrap(), first.len() as u64, "the manifest records the rebuilt PDF");
    let report = pdftotext(&out.path().join("out").join(&month).join("report.pdf"));
    assert!(report.contains("Cloud cost report"), "{report}");
    // A month never published: what to do.
    let missing = finops(&["report", "--month", "2019-01", "--out", &root], out.path());
    assert!(!missing.status.success());
    assert!(text(&missing.stderr).contains("run `finops run --month 2019-01` first"), "{}", text(&missing.stderr));
}

/// `--engine auto` over a local folder aggregates locally (Athena reads only S3) and says so;
/// the outputs are the plain local run's.
#[test]
fn engine_auto_over_a_local_folder_stays_local_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let month = latest_fixture_month();
    let repo = workspace();
    let plain = finops(&["run", "--month", &month, "--out", &dir.path().join("plain").to_string_lossy(), "--quiet"], &repo);
    assert!(plain.status.success(), "{}", text(&plain.stderr));
    let auto = finops(&["run", "--month", &month, "--engine", "auto", "--out", &dir.path().join("auto").to_string_lossy(), "--quiet"], &repo);
    assert!(auto.status.success(), "{}", text(&auto.stderr));
    assert!(text(&auto.stderr).contains(&format!("warning: engine auto: {month} aggregated locally (the source is a local folder, which Athena cannot read)")), "{}", text(&auto.stderr));
    for name in ["summary.csv", "services.csv", "teams/search.csv"] {
        assert_eq!(std::fs::read(dir.path().join("plain").join(&month).join(name)).unwrap(), std::fs::read(dir.path().join("auto").join(&month).join(name)).unwrap(), "{name}");
    }
}

// Regression: `--source` spelled absolutely (or the same folder through `--config`) found no GPU
// usage and charged none, with only a warning.
#[test]
fn gpu_usage_is_found_however_the_fixtures_are_spelled() {
    let dir = tempfile::tempdir().unwrap();
    let month = latest_fixture_month();
    let repo = workspace().canonicalize().unwrap();
    let out = |name: &str| dir.path().join(name).to_string_lossy().to_string();
    let relative = finops(&["run", "--month", &month, "--out", &out("relative"), "--quiet"], &repo);
    assert!(relative.status.success(), "{}", text(&relative.stderr));
    let (source, rules) = (repo.join("fixtures/cur2"), repo.join("rules/example.toml"));
    let absolute = finops(&["run", "--month", &month, "--source", &source.to_string_lossy(), "--rules", &rules.to_string_lossy(), "--out", &out("absolute"), "--quiet"], dir.path());
    assert!(absolute.status.success(), "{}", text(&absolute.stderr));
    let config = dir.path().join("finops.toml");
    std::fs::write(&config, format!("rules = {:?}\n[source]\nlocation = {:?}\n", rules.to_string_lossy(), source.to_string_lossy())).unwrap();
    let configured = finops(&["run", "--month", &month, "--config", &config.to_string_lossy(), "--out", &out("configured"), "--quiet"], dir.path());
    assert!(configured.status.success(), "{}", text(&configured.stderr));
    let expected = format!("GPU usage: recorded file {}", repo.join("fixtures/gpu").join(format!("{month}.csv.gz")).display());
    for (name, run) in [("absolute", &absolute), ("configured", &configured)] {
        assert!(text(&run.stdout).contains(&expected), "{name}: {}", text(&run.stdout));
        for file in ["summary.csv", "gpu.csv", "teams/ai.csv"] {
            let read = |root: &str| std::fs::read(dir.path().join(root).join(&month).join(file)).unwrap();
            assert!(read(name) == read("relative"), "{name}: {file} differs from the relative run's");
        }
    }
}

/// The month GPU usage is first measured: the bill is compared with the bill (page one, the
/// terminal), team figures are marked as not comparable rather than shown as growth, and no
/// team month-over-month alert is raised; the month after, with usage in both, compares teams.
#[test]
fn a_month_whose_gpu_usage_is_newly_measured_compares_the_bill_with_the_bill_and_not_the_teams() {
    let (stdout, _, out) = run_in_repo(&["--month", "2025-08"]);
    assert!(!stdout.contains("not compared"), "{stdout}");
    let root = out.path().join("out").to_string_lossy().to_string();
    let september = finops(&["run", "--month", "2025-09", "--out", &root], &workspace());
    assert!(september.status.success(), "{}", text(&september.stderr));
    let stdout = text(&september.stdout);
    let bill = |month: &str| -> i64 {
        let services = csv_rows(&std::fs::read_to_string(out.path().join("out").join(month).join("services.csv")).unwrap());
        let basis = services[0].iter().position(|h| h == "amortized").unwrap();
        services[1..].iter().map(|r| to_cents(&r[basis])).sum()
    };
    let (august, now) = (bill("2025-08"), bill("2025-09"));
    let change = (now - august) as f64 / august as f64 * 100.0;
    // The fixtures' story: the bill fell while GPU usage was switched on.
    assert_eq!(format!("{change:.1}"), "-1.7", "the AWS bill {august} -> {now}");
    assert!(stdout.contains(&format!("the AWS bill vs 2025-08: {}.{:02} -> ", august / 100, august % 100)) && stdout.contains("(-1.7%)"), "{stdout}");
    assert!(stdout.contains("team figures not compared with 2025-08: GPU usage was measured in 2025-09 but not in 2025-08"), "{stdout}");
    let dir = out.path().join("out").join("2025-09");
    let page_one = {
        let out = Command::new("pdftotext").args(["-layout", "-f", "1", "-l", "1", &dir.join("report.pdf").to_string_lossy(), "-"]).output().unwrap();
        text(&out.stdout)
    };
    assert!(page_one.contains("-1.7%") && page_one.contains("The bill vs last month"), "{page_one}");
    assert!(!page_one.contains("+19.1"), "{page_one}");
    assert!(page_one.contains("not compared with Aug '25") && page_one.contains("GPU usage not measured"), "{page_one}");
    let summary = csv_rows(&std::fs::read_to_string(dir.join("summary.csv")).unwrap());
    let (previous, change) = (summary[0].iter().position(|h| h == "previous_month").unwrap(), summary[0].iter().position(|h| h == "change_pct").unwrap());
    assert!(summary[1..].iter().all(|r| r[previous].is_empty() && r[change].is_empty()), "no team change against an unlike month: {summary:?}");
    let manifest = manifest_of(&out, "2025-09");
    assert_eq!(manifest["previous_month"]["bill"], format!("{}.{:02}", august / 100, august % 100));
    assert!(manifest["previous_month"]["not_comparable"].as_str().unwrap().contains("not like with like"), "{manifest}");
    let alerts: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("alerts.json")).unwrap()).unwrap();
    let moves: Vec<&str> = alerts["found"].as_array().unwrap().iter().filter(|f| f["kind"] == "monthly-move").map(|f| f["text"].as_str().unwrap()).collect();
    assert!(moves.iter().all(|m| !m.contains(" team ")), "no team month-over-month alert: {moves:?}");
    assert!(alerts["spikes"].as_array().unwrap().len() < 5, "the switch does not flood the month with spikes: {}", alerts["spikes"]);
    // The rebuilt report says the same: the comparison is read from the published manifest.
    let published = std::fs::read(dir.join("report.pdf")).unwrap();
    let rebuilt = finops(&["report", "--month", "2025-09", "--out", &root], out.path());
    assert!(rebuilt.status.success(), "{}", text(&rebuilt.stderr));
    assert!(std::fs::read(dir.join("report.pdf")).unwrap() == published, "`finops report` gives the same PDF for a month not like its previous");
    // October has GPU usage, as September does: its teams compare.
    let october = finops(&["run", "--month", "2025-10", "--out", &root], &workspace());
    assert!(october.status.success(), "{}", text(&october.stderr));
    let summary = csv_rows(&std::fs::read_to_string(out.path().join("out").join("2025-10").join("summary.csv")).unwrap());
    assert!(summary[1..].iter().all(|r| !r[previous].is_empty()), "{summary:?}");
    assert!(!text(&october.stdout).contains("not compared"), "{}", text(&october.stdout));
}

/// Runs finops in the repository expecting failure: its stderr, and that no month was written.
fn failing_run(extra: &[&str]) -> String {
    let out = tempfile::tempdir().unwrap();
    let root = out.path().join("out").to_string_lossy().to_string();
    let mut args = vec!["run", "--quiet", "--out", &root];
    args.extend(extra);
    let result = finops(&args, &workspace());
    assert!(!result.status.success(), "{args:?} should fail: {}", text(&result.stdout));
    assert!(!out.path().join("out").exists() || std::fs::read_dir(out.path().join("out")).unwrap().all(|e| e.unwrap().file_name().to_string_lossy().starts_with('.')), "no month left behind");
    text(&result.stderr)
}

#[test]
fn a_source_holding_several_exports_names_them_and_says_to_pick_one() {
    let stderr = failing_run(&["--source", "fixtures"]);
    assert!(stderr.contains("holds several billing exports") && stderr.contains("`cur2/`") && stderr.contains("`cur-legacy/`") && stderr.contains("point the source at one of them"), "{stderr}");
    assert!(!stderr.contains("incomplete"), "{stderr}");
}

#[test]
fn a_format_that_is_not_the_data_names_the_format_the_data_is() {
    let stderr = failing_run(&["--source", "fixtures/cur2", "--format", "focus"]);
    assert!(stderr.contains("looks like a CUR file") && stderr.contains("line_item_unblended_cost") && stderr.contains("use --format cur2"), "{stderr}");
    assert!(!stderr.contains("Export it with all default columns"), "{stderr}");
    let stderr = failing_run(&["--source", "fixtures/cur2", "--format", "cur"]);
    assert!(stderr.contains("--format cur finds no cur export here") && stderr.contains("laid out as CUR 2.0") && stderr.contains("use --format cur2"), "{stderr}");
    let stderr = failing_run(&["--source", "fixtures/cur-legacy", "--format", "cur2"]);
    assert!(stderr.contains("laid out as legacy CUR") && stderr.contains("use --format cur,"), "{stderr}");
}

#[test]
fn a_refused_prometheus_names_the_cause_without_the_encoded_query() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let stderr = failing_run(&["--gpu-usage", "prometheus", "--prometheus-url", &format!("http://127.0.0.1:{closed}")]);
    assert!(stderr.to_lowercase().contains("connection refused"), "{stderr}");
    assert!(!stderr.contains("query=") && !stderr.contains("%28") && stderr.len() < 700, "no encoded PromQL in the message ({} chars): {stderr}", stderr.len());
}

#[test]
fn a_prometheus_url_without_a_scheme_is_refused_at_once_with_the_fix() {
    for url in ["localhost:9090", "127.0.0.1:9090"] {
        let started = std::time::Instant::now();
        let stderr = failing_run(&["--gpu-usage", "prometheus", "--prometheus-url", url]);
        assert!(stderr.contains("starts with http:// or https://") && stderr.contains(&format!("e.g. http://{url}")), "{stderr}");
        assert!(!stderr.contains("attempts"), "not retried: {stderr}");
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "refused without backing off");
    }
}

#[test]
fn missing_aws_credentials_say_what_to_set_not_the_sdk_internals() {
    let home = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = Command::new(env!("CARGO_BIN_EXE_finops"))
        .args(["run", "--quiet", "--source", "s3://finops-no-bucket/cur2", "--out", &home.path().join("out").to_string_lossy()])
        .current_dir(workspace())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        // Nothing leaves this machine even if credentials were found.
        .env("FINOPS_AWS_ENDPOINT_URL", format!("http://127.0.0.1:{closed}"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("no AWS credentials found") && stderr.contains("AWS_PROFILE") && stderr.contains("AWS_ACCESS_KEY_ID"), "{stderr}");
    assert!(!stderr.contains("Attempted:") && !stderr.contains("{") && !stderr.contains("s3:ListBucket"), "{stderr}");
}

#[test]
fn rules_check_refuses_a_driver_file_that_measures_nothing_as_run_would() {
    let dir = tempfile::tempdir().unwrap();
    let rules = std::fs::read_to_string(workspace().join("rules/example.toml")).unwrap();
    let fixtures = workspace().join("fixtures").to_string_lossy().to_string();
    let rules = rules.replace("\"../fixtures/usage/orders-db-table-sizes.csv\"", "\"zeros.csv\"").replace("\"../fixtures/", &format!("\"{fixtures}/"));
    std::fs::write(dir.path().join("rules.toml"), &rules).unwrap();
    std::fs::write(dir.path().join("zeros.csv"), "date,key,value\n2025-10-01,orders,0\n2025-10-02,payments,0\n").unwrap();
    let check = finops(&["rules", "check", &dir.path().join("rules.toml").to_string_lossy()], dir.path());
    assert!(!check.status.success(), "{}", text(&check.stdout));
    let line = rules.lines().position(|l| l.contains("zeros.csv")).unwrap() + 1;
    let stderr = text(&check.stderr);
    assert!(stderr.contains(&format!("rules.toml:{line}:")) && stderr.contains("share `orders-db`: the driver sums to zero over 2025-10"), "{stderr}");
}

#[test]
fn explain_names_each_drivers_unit() {
    let out = finops(&["explain", "--team", "search"], &workspace());
    let stdout = text(&out.stdout);
    assert!(stdout.contains(" bytes over 31 samples") && stdout.contains(" keys over 31 samples"), "{stdout}");
}

/// A month's folder that exists and holds no files (the export has not delivered it yet): alone,
/// the error names the month; beside an earlier month, the run reads that one and says why.
#[test]
fn an_empty_month_folder_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("only-empty");
    std::fs::create_dir_all(empty.join("data/BILLING_PERIOD=2025-11")).unwrap();
    let out = finops(&["run", "--quiet", "--source", empty.to_str().unwrap(), "--out", dir.path().join("out").to_str().unwrap()], &workspace());
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("no billing files found: the folder of 2025-11,") && text(&out.stderr).contains("is empty. The export has not delivered 2025-11 yet"), "{}", text(&out.stderr));

    let export = dir.path().join("export");
    let october = export.join("data/BILLING_PERIOD=2025-10");
    std::fs::create_dir_all(&october).unwrap();
    std::fs::create_dir_all(export.join("data/BILLING_PERIOD=2025-11")).unwrap();
    std::fs::copy(workspace().join("fixtures/cur2/data/BILLING_PERIOD=2025-10/finops-cur2-00001.snappy.parquet"), october.join("finops-cur2-00001.snappy.parquet")).unwrap();
    let published = dir.path().join("published");
    let run = finops(&["run", "--quiet", "--source", export.to_str().unwrap(), "--gpu-usage", "none", "--out", published.to_str().unwrap()], &workspace());
    assert!(run.status.success(), "{}", text(&run.stderr));
    let said = "2025-11: ";
    assert!(
        text(&run.stderr).contains(said) && text(&run.stderr).contains("holds no files yet (not delivered, or a copy cut short): read 2025-10, the latest month with files"),
        "{}",
        text(&run.stderr)
    );
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(published.join("2025-10/manifest.json")).unwrap()).unwrap();
    assert!(manifest["warnings"].as_array().unwrap().iter().any(|w| w.as_str().unwrap().contains("holds no files yet")), "{}", manifest["warnings"]);
}

/// A run reads at most `[report] recompute_months` unpublished trend months from the source
/// (newest first), and names the ones it left out, on the terminal and in the manifest.
#[test]
fn a_run_recomputes_a_bounded_number_of_trend_months_and_names_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("finops.toml"), "[report]\nrecompute_months = 1\n").unwrap();
    let config = dir.path().join("finops.toml").to_string_lossy().to_string();
    let source = workspace().join("fixtures/cur2").to_string_lossy().to_string();
    let rules = workspace().join("rules/example.toml").to_string_lossy().to_string();
    let (_, stderr, out) = run_in_repo(&["--config", &config, "--source", &source, "--rules", &rules]);
    let month = latest_fixture_month();
    // The month before is always read; of the four earlier fixture months, the newest one is.
    let left_out = "the report's trend leaves out 2025-05, 2025-06, 2025-07: a run reads at most 1 unpublished month(s) from the source ([report] recompute_months)";
    assert!(stderr.contains(left_out), "{stderr}");
    let manifest = manifest_of(&out, &month);
    assert!(manifest["warnings"].as_array().unwrap().iter().any(|w| w.as_str().unwrap().contains(left_out)), "{}", manifest["warnings"]);
    let trend: Vec<&str> = manifest["trend"].as_array().unwrap().iter().map(|t| t["month"].as_str().unwrap()).collect();
    assert!(trend.contains(&"2025-08") && trend.contains(&"2025-09") && !trend.contains(&"2025-07"), "{trend:?}");

    // With the months published, the next run reads none of them again and leaves none out.
    let root = out.path().join("out").to_string_lossy().to_string();
    for m in ["2025-05", "2025-06", "2025-07"] {
        let published = finops(&["run", "--month", m, "--out", &root, "--config", &config, "--source", &source, "--rules", &rules, "--quiet"], &workspace());
        assert!(published.status.success(), "{}", text(&published.stderr));
    }
    let again = finops(&["run", "--out", &root, "--config", &config, "--source", &source, "--rules", &rules], &workspace());
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(!text(&again.stderr).contains("leaves out"), "{}", text(&again.stderr));
}

/// Issue 22: the fixture rules' `project` and `environment` each conserve the bill; every value
/// is within a cent of its exact amount (the manifest's); each team's column is its total in
/// summary.csv; the team CSVs carry the values; GPU-hours by project follow the namespaces.
#[test]
fn each_dimension_of_the_fixture_month_conserves_the_bill_to_the_cent() {
    use rust_decimal::Decimal;
    use std::collections::BTreeMap;
    let (_, _, out) = run_in_repo(&[]);
    let month = latest_fixture_month();
    let dir = out.path().join("out").join(&month);
    let read = |name: &str| csv_rows(&std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}")));
    let summary = read("summary.csv");
    let team_total: BTreeMap<String, i64> = summary[1..].iter().map(|r| (r[0].clone(), to_cents(&r[4]))).collect();
    let month_total: i64 = team_total.values().sum();
    let manifest = manifest_of(&out, &month);
    for dimension in ["environment", "project"] {
        let rows = read(&format!("summary-{dimension}.csv"));
        let header = &rows[0];
        assert_eq!(header[0], dimension);
        let first_team = if header[2] == "gpu_hours" { 3 } else { 2 };
        let (values, total) = rows[1..].split_at(rows.len() - 2);
        assert_eq!(total[0][0], "total");
        assert_eq!(to_cents(&total[0][1]), month_total, "{dimension}: the values add up to the month");
        for (i, team) in header.iter().enumerate().skip(first_team) {
            let column: i64 = values.iter().map(|r| to_cents(&r[i])).sum();
            assert_eq!(column, team_total[team], "{dimension}: team {team}'s column is its summary.csv total");
        }
        assert!(values.len() >= 3, "{dimension}: {values:?}");
        for row in values {
            let parts: i64 = row[first_team..].iter().map(|c| to_cents(c)).sum();
            assert_eq!(parts, to_cents(&row[1]), "{dimension} {}: the teams add up to the value's total", row[0]);
            let exact: Decimal = manifest["dimensions"][dimension][&row[0]]["exact"].as_str().unwrap().parse().unwrap();
            let printed = Decimal::new(to_cents(&row[1]), 2);
            assert!((printed - exact).abs() < Decimal::ONE / Decimal::from(100), "{dimension} {}: {printed} vs exact {exact}", row[0]);
        }
    }
    // Tags through aliases (`Search-API` is `search-api`), rules before tags (the sandbox account),
    // fallback rules for untagged lines, and `unassigned` for what nothing names.
    let project = read("summary-project.csv");
    let values: Vec<&str> = project[1..].iter().map(|r| r[0].as_str()).collect();
    assert_eq!(values, ["checkout", "etl", "ranking-model", "search-api", "unassigned", "total"]);
    let environment = read("summary-environment.csv");
    assert_eq!(environment[1..].iter().map(|r| r[0].as_str()).collect::<Vec<_>>(), ["prod", "sandbox", "staging", "unassigned", "total"]);
    // GPU-hours by project are the namespaces' (ml-* is ranking-model).
    let namespaces = read("gpu-namespaces.csv");
    let ml: f64 = namespaces[1..].iter().filter(|r| r[2].starts_with("ml-")).map(|r| r[4].parse::<f64>().unwrap()).sum();
    let ranking = project.iter().find(|r| r[0] == "ranking-model").unwrap();
    assert!((ranking[2].parse::<f64>().unwrap() - ml).abs() < 0.1, "{ranking:?} vs {ml}");
    // Each team's lines carry both values, and still add up to its total.
    let search = read("teams/search.csv");
    let (p, e) = (search[0].iter().position(|h| h == "project").unwrap(), search[0].iter().position(|h| h == "environment").unwrap());
    assert!(search[1..].iter().all(|r| !r[p].is_empty() && !r[e].is_empty()));
    let amount = search[0].iter().position(|h| h == "amount").unwrap();
    assert_eq!(search[1..].iter().map(|r| to_cents(&r[amount])).sum::<i64>(), team_total["search"]);
}

/// The shipped rules with the `monitoring` share moved from even to proportional, in a folder of
/// its own (driver paths made absolute, since they are relative to the rules file).
fn proposed_monitoring_rules(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(workspace().join("rules/example.toml")).unwrap();
    let even = "name = \"monitoring\"\nwhen = { service = [\"AmazonCloudWatch\"] }\nmethod = \"even\"";
    assert!(text.contains(even), "the shipped rules changed: update this test");
    let usage = workspace().join("fixtures/usage").to_string_lossy().to_string();
    let text = text.replace(even, &even.replace("\"even\"", "\"proportional\"")).replace("path = \"../fixtures/usage", &format!("path = \"{usage}"));
    let path = dir.join("proposed.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Issue 22: `finops diff` previews a rule change from one read of the month. Its team figures
/// are two separate runs' summary.csv to the cent, its changes add up to zero, the markdown is a
/// table a pull request renders, and --fail-above sets the exit status.
#[test]
fn diff_previews_a_rule_change_as_two_runs_would_print_it() {
    use std::collections::BTreeMap;
    let dir = tempfile::tempdir().unwrap();
    let proposed = proposed_monitoring_rules(dir.path());
    let proposed = proposed.to_string_lossy().to_string();
    let ws = workspace();
    let summary_of = |rules: &str| -> BTreeMap<String, i64> {
        let out = tempfile::tempdir().unwrap();
        let root = out.path().join("out");
        let run = finops(&["run", "--rules", rules, "--out", &root.to_string_lossy(), "--quiet"], &ws);
        assert!(run.status.success(), "{}", text(&run.stderr));
        let summary = csv_rows(&std::fs::read_to_string(root.join(latest_fixture_month()).join("summary.csv")).unwrap());
        summary[1..].iter().map(|r| (r[0].clone(), to_cents(&r[4]))).collect()
    };
    let (before, after) = (summary_of("rules/example.toml"), summary_of(&proposed));
    assert_ne!(before, after, "moving monitoring to proportional changes who pays");

    let csv = finops(&["diff", "--rules", &proposed, "--format", "csv", "--quiet"], &ws);
    assert!(csv.status.success(), "{}", text(&csv.stderr));
    let rows = csv_rows(&text(&csv.stdout));
    assert_eq!(rows[0][..6], ["section", "name", "before", "after", "change", "change_pct"]);
    let teams: Vec<&Vec<String>> = rows[1..].iter().filter(|r| r[0] == "team").collect();
    for team in before.keys() {
        let row = teams.iter().find(|r| &r[1] == team);
        let (b, a) = row.map_or((0, 0), |r| (to_cents(&r[2]), to_cents(&r[3])));
        assert_eq!((b, a), (before[team], after[team]), "{team}: the diff prints what two runs print");
        if let Some(r) = row {
            assert_eq!(to_cents(&r[4]), a - b);
        }
    }
    assert_eq!(teams.iter().map(|r| to_cents(&r[4])).sum::<i64>(), 0, "the team changes add up to zero");
    for dimension in ["project", "environment"] {
        let changes: i64 = rows[1..].iter().filter(|r| r[0] == dimension).map(|r| to_cents(&r[4])).sum();
        assert_eq!(changes, 0, "{dimension}: the changes add up to zero");
    }
    let monitoring = rows[1..].iter().find(|r| r[0] == "rule" && r[1] == "monitoring").expect("the monitoring rule's row");
    assert_eq!(to_cents(&monitoring[4]), 0, "the rule decides the same cost; it moves between teams");
    let gains: i64 = before.keys().map(|t| (after[t] - before[t]).max(0)).sum();
    assert_eq!(to_cents(&monitoring[6]), gains, "what changed hands under it is the teams' gains");
    assert!(rows.iter().any(|r| r[0] == "line" && r[1].contains("AmazonCloudWatch")), "the moved CloudWatch lines are listed");

    let md = finops(&["diff", "--rules", &proposed, "--format", "markdown", "--quiet"], &ws);
    assert!(md.status.success(), "{}", text(&md.stderr));
    let md = text(&md.stdout);
    assert!(md.starts_with(&format!("### Rule change preview: {}\n", latest_fixture_month())), "{md}");
    assert!(md.contains("| team | before | after | change | % |\n|---|---:|---:|---:|---:|\n"), "{md}");
    let search = |c: i64| format!("{}.{:02}", c / 100, c % 100);
    assert!(md.contains(&format!("| search | {} | {} | +{} |", search(before["search"]), search(after["search"]), search(after["search"] - before["search"]))), "{md}");
    assert!(md.contains("| rule | before | after | changed hands |") && md.contains("| monitoring |"), "{md}");
    assert!(md.contains("<details><summary>") && md.contains("cost lines change owner</summary>"), "{md}");

    // The exit status: over the limit is status 2 and names the teams; under it, success.
    let strict = finops(&["diff", "--rules", &proposed, "--fail-above", "1%", "--quiet"], &ws);
    assert_eq!(strict.status.code(), Some(2), "{}", text(&strict.stderr));
    assert!(text(&strict.stderr).contains("moved more than --fail-above 1%") && text(&strict.stderr).contains("payments"), "{}", text(&strict.stderr));
    let loose = finops(&["diff", "--rules", &proposed, "--fail-above", "500", "--quiet"], &ws);
    assert!(loose.status.success(), "{}", text(&loose.stderr));
    let bad = finops(&["diff", "--rules", &proposed, "--fail-above", "lots", "--quiet"], &ws);
    assert_eq!(bad.status.code(), Some(1));
    assert!(text(&bad.stderr).contains("--fail-above lots: give an amount (500) or a percentage"), "{}", text(&bad.stderr));
}
