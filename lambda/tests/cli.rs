//! The `finops` binary as a user runs it: the default run on the committed fixtures, identical
//! outputs on re-runs, and bad input failing with a clear error and no month left behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use polars::prelude::*;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn finops(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_finops")).args(args).current_dir(cwd).output().expect("run finops")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn latest_fixture_month() -> String {
    let mut months: Vec<String> = std::fs::read_dir(workspace().join("fixtures/cur2/data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().trim_start_matches("BILLING_PERIOD=").to_string())
        .collect();
    months.sort();
    months.pop().unwrap()
}

#[test]
fn default_run_writes_summary_and_manifest_and_says_where() {
    let cwd = tempfile::tempdir().unwrap();
    let out = finops(&["run"], cwd.path());
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
    let rows = table(&services);
    for basis in ["unblended", "net_unblended", "amortized", "net_amortized", "list"] {
        let i = rows[0].iter().position(|h| h == basis).unwrap();
        let cents: i64 = rows[1..].iter().map(|r| to_cents(&r[i])).sum();
        assert_eq!(cents, to_cents(manifest["totals"][basis]["rounded"].as_str().unwrap()), "{basis}");
    }

    // summary.csv: one row per team plus unallocated; each team CSV adds up to its row exactly,
    // and the rows add up to the allocated total.
    let teams = table(&summary);
    assert_eq!(teams[0], ["team", "direct", "shared", "gpu", "total", "previous_month", "change_pct"]);
    let mut allocated = 0;
    for row in &teams[1..] {
        let (direct, shared, gpu, total) = (to_cents(&row[1]), to_cents(&row[2]), to_cents(&row[3]), to_cents(&row[4]));
        if row[0] != "unallocated" {
            assert_eq!(direct + shared + gpu, total, "{row:?}");
        }
        let lines = table(&std::fs::read_to_string(month_dir.join("teams").join(format!("{}.csv", row[0]))).unwrap());
        let amount = lines[0].iter().position(|h| h == "amount").unwrap();
        let sum: i64 = lines[1..].iter().map(|l| to_cents(&l[amount])).sum();
        assert_eq!(sum, total, "teams/{}.csv adds up to its summary row", row[0]);
        assert!(!row[5].is_empty(), "previous month is known for the fixtures");
        allocated += total;
    }
    assert_eq!(allocated, to_cents(manifest["allocated"].as_str().unwrap()));
    // The allocated basis (amortized) is conserved: every cent of the month lands on a row.
    let exact: f64 = manifest["totals"]["amortized"]["exact"].as_str().unwrap().parse().unwrap();
    assert!((allocated as f64 / 100.0 - exact).abs() < 0.01 * teams.len() as f64, "allocated {allocated} vs {exact}");
    let inputs = manifest["inputs"].as_array().unwrap();
    assert!(!inputs.is_empty() && inputs.iter().all(|i| i["sha256"].as_str().unwrap().len() == 64 && i["rows"].as_u64().unwrap() > 0));
}

/// A CSV the tests wrote themselves: no quoted commas in these files' cells.
fn table(text: &str) -> Vec<Vec<String>> {
    text.trim_start_matches('\u{feff}').lines().map(|l| l.split(',').map(str::to_string).collect()).collect()
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
    let first = finops(&["run", "--out", "a"], cwd.path());
    assert!(first.status.success(), "{}", text(&first.stderr));
    let second = finops(&["run", "--out", "b"], cwd.path());
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
        let result = finops(&args, out.path());
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
        let costs: Vec<f64> = frame
            .column("line_item_unblended_cost")
            .unwrap()
            .f64()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, v)| if i == row { bad } else { v.unwrap() })
            .collect();
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
    let result = finops(
        &["run", "--source", &dir.path().to_string_lossy(), "--format", "focus", "--month", "2025-10", "--out", "out"],
        out.path(),
    );
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
    let result = finops(&["run", "--source", &source.dir.path().to_string_lossy(), "--month", "2019-01", "--out", "out"], out.path());
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
