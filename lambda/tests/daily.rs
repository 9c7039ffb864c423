//! The scheduled daily check checks every complete day exactly once: a month's last day once the
//! next month's data appears, and each day of an outage when it comes back (bounded).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn workspace() -> PathBuf {
    Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR for tests and benchmarks")).parent().unwrap().to_path_buf()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A CUR 2.0 export of the fixtures' September and October (data files only).
fn export() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for month in ["2025-09", "2025-10"] {
        let from = workspace().join(format!("fixtures/cur2/data/BILLING_PERIOD={month}"));
        let to = dir.path().join(format!("data/BILLING_PERIOD={month}"));
        std::fs::create_dir_all(&to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
    dir
}

/// November's first day arrives: October's 31st again, a day later, in November's partition
/// (written by DuckDB, as a second tool would).
fn november_first_arrives(export: &Path) {
    let python = std::env::var("FINOPS_TEST_PYTHON").unwrap_or_else(|_| panic!("FINOPS_TEST_PYTHON is not set: run `scripts/test` (it installs DuckDB into the test venv)"));
    let october = export.join("data/BILLING_PERIOD=2025-10/finops-cur2-00001.snappy.parquet");
    let november = export.join("data/BILLING_PERIOD=2025-11");
    std::fs::create_dir_all(&november).unwrap();
    let sql = format!(
        "COPY (SELECT * REPLACE (line_item_usage_start_date + INTERVAL 1 DAY AS line_item_usage_start_date, line_item_usage_end_date + INTERVAL 1 DAY AS line_item_usage_end_date, \
         TIMESTAMP '2025-11-01' AS bill_billing_period_start_date, TIMESTAMP '2025-12-01' AS bill_billing_period_end_date) \
         FROM '{}' WHERE day(line_item_usage_start_date) = 31) TO '{}' (FORMAT parquet)",
        october.display(),
        november.join("finops-cur2-00001.snappy.parquet").display()
    );
    let out = Command::new(python).args(["-c", &format!("import duckdb\nduckdb.connect().execute({sql:?})\n")]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// The example rules with their usage drivers measured on November's first day too (the 31st's
/// values again): the rule set `run` and `alerts` read for the month that has begun.
fn rules_with_november_drivers(dir: &Path) -> PathBuf {
    let mut rules = std::fs::read_to_string(workspace().join("rules/example.toml")).unwrap();
    for entry in std::fs::read_dir(workspace().join("fixtures/usage")).unwrap() {
        let path = entry.unwrap().path();
        let csv = std::fs::read_to_string(&path).unwrap();
        let november: String = csv.lines().filter(|l| l.starts_with("2025-10-31,")).map(|l| format!("{}\n", l.replacen("2025-10-31", "2025-11-01", 1))).collect();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        std::fs::write(dir.join(&name), format!("{}{november}", if csv.ends_with('\n') { csv.clone() } else { format!("{csv}\n") })).unwrap();
        rules = rules.replace(&format!("\"../fixtures/usage/{name}\""), &format!("\"{}\"", dir.join(&name).display()));
    }
    let path = dir.join("rules.toml");
    std::fs::write(&path, rules).unwrap();
    path
}

fn alerts(export: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["alerts", "--source", export.to_str().unwrap(), "--out", out.to_str().unwrap()];
    args.extend(extra);
    let result = Command::new(env!("CARGO_BIN_EXE_finops")).args(&args).current_dir(workspace()).output().unwrap();
    assert!(result.status.success(), "{}", text(&result.stderr));
    result
}

fn checked_through(out: &Path) -> String {
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("alerts-state.json")).unwrap()).unwrap();
    state["checked_through"].as_str().unwrap().to_string()
}

fn recorded_days(out: &Path) -> Vec<String> {
    let mut days: Vec<String> = std::fs::read_dir(out.join("alerts")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().trim_end_matches(".json").to_string()).collect();
    days.sort();
    days
}

#[test]
fn the_last_day_of_a_month_is_checked_once_the_next_months_data_appears() {
    let export = export();
    let out = tempfile::tempdir().unwrap();
    // October's latest day (the 31st) is still being restated: the 30th is the latest complete.
    let first = alerts(export.path(), out.path(), &[]);
    assert!(text(&first.stdout).contains("alerts for 2025-10-30:"), "{}", text(&first.stdout));
    assert_eq!(checked_through(out.path()), "2025-10-30");
    // Nothing new: nothing checked twice.
    let again = alerts(export.path(), out.path(), &[]);
    assert!(text(&again.stdout).contains("every complete day is checked already"), "{}", text(&again.stdout));
    // November's first day appears: the 31st is complete now, and checked, once.
    november_first_arrives(export.path());
    let rules = rules_with_november_drivers(out.path());
    let next = alerts(export.path(), out.path(), &["--rules", rules.to_str().unwrap()]);
    assert!(text(&next.stdout).contains("alerts for 2025-10-31:"), "{}", text(&next.stdout));
    assert_eq!(checked_through(out.path()), "2025-10-31");
    assert_eq!(recorded_days(out.path()), ["2025-10-30", "2025-10-31"]);
    let record: serde_json::Value = serde_json::from_slice(&std::fs::read(out.path().join("alerts/2025-10-31.json")).unwrap()).unwrap();
    assert_eq!(record["day"], "2025-10-31");
}

#[test]
fn an_outage_is_caught_up_day_by_day_and_each_day_alerted_once() {
    let export = export();
    let out = tempfile::tempdir().unwrap();
    // The last scheduled check ran for the 17th; the runs of the 18th to the 30th were missed.
    std::fs::write(out.path().join("alerts-state.json"), "{\"sent\": {}, \"pending\": [], \"checked_through\": \"2025-10-17\"}\n").unwrap();
    let run = alerts(export.path(), out.path(), &[]);
    let stdout = text(&run.stdout);
    // At most [alerts] catch_up_days (7) back: the 24th to the 30th, and it says what it skipped.
    assert!(stdout.contains("caught up from 2025-10-24 (last checked 2025-10-17); 6 older unchecked day(s) skipped ([alerts] catch_up_days = 7)"), "{stdout}");
    let days: Vec<String> = (24..=30).map(|d| format!("2025-10-{d}")).collect();
    assert_eq!(recorded_days(out.path()), days);
    assert_eq!(checked_through(out.path()), "2025-10-30");
    // Nothing of those days is found again by the next run.
    let again = alerts(export.path(), out.path(), &[]);
    assert!(text(&again.stdout).contains("every complete day is checked already") && text(&again.stdout).contains(": 0 found"), "{}", text(&again.stdout));
    // A day within reach is caught up in full: from the 20th, the planted spike of the 20th and
    // 21st is found, each day once.
    let out = tempfile::tempdir().unwrap();
    std::fs::write(out.path().join("alerts-state.json"), "{\"sent\": {}, \"pending\": [], \"checked_through\": \"2025-10-19\"}\n").unwrap();
    std::fs::write(out.path().join("finops.toml"), "[alerts]\ncatch_up_days = 31\n").unwrap();
    let run = alerts(export.path(), out.path(), &["--config", out.path().join("finops.toml").to_str().unwrap()]);
    let stdout = text(&run.stdout);
    for day in ["2025-10-20", "2025-10-21"] {
        assert_eq!(stdout.lines().filter(|l| l.contains("[spike] Cost spike: team search spent") && l.contains(&format!(" on {day},"))).count(), 1, "{stdout}");
    }
    assert_eq!(recorded_days(out.path()).len(), 11, "the 20th to the 30th");
}

/// One budget actual: the daily check measures a team's month to date by its whole allocated cost
/// (tax, support, fees and on-prem GPU at the rate card included), so on the month's last day it
/// tells a budgeted team exactly what the monthly run tells it.
#[test]
fn the_daily_budget_actual_is_the_whole_allocated_cost_the_monthly_run_reports() {
    let out = tempfile::tempdir().unwrap();
    let root = out.path().to_str().unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_finops")).args(["run", "--quiet", "--out", root]).current_dir(workspace()).output().unwrap();
    assert!(run.status.success(), "{}", text(&run.stderr));
    let monthly: serde_json::Value = serde_json::from_slice(&std::fs::read(out.path().join("2025-10/alerts.json")).unwrap()).unwrap();
    let budget_texts = |found: &serde_json::Value| -> Vec<String> {
        let mut texts: Vec<String> = found.as_array().unwrap().iter().filter(|f| f["kind"] == "budget").map(|f| f["text"].as_str().unwrap().to_string()).collect();
        texts.sort();
        texts
    };
    let monthly = budget_texts(&monthly["found"]);
    assert!(!monthly.is_empty(), "the fixtures' budgets are reached");
    let day = Command::new(env!("CARGO_BIN_EXE_finops")).args(["alerts", "--day", "2025-10-31", "--out", root]).current_dir(workspace()).output().unwrap();
    assert!(day.status.success(), "{}", text(&day.stderr));
    let daily: serde_json::Value = serde_json::from_slice(&std::fs::read(out.path().join("alerts/2025-10-31.json")).unwrap()).unwrap();
    assert_eq!(budget_texts(&daily["found"]), monthly, "the same figure, the same words, on the month's last day");
}

/// Early in a month, what drove a spike is named as rightly as later on: the month before is
/// read at the same grain (accounts, resources, usage types), so the planted resource is the
/// first resource named, and the other resources are not "the change" for want of a baseline.
#[test]
fn the_driver_of_a_spike_on_the_third_is_the_planted_resource() {
    let export = export();
    let python = std::env::var("FINOPS_TEST_PYTHON").unwrap_or_else(|_| panic!("FINOPS_TEST_PYTHON is not set: run `scripts/test` (it installs DuckDB into the test venv)"));
    let october = export.path().join("data/BILLING_PERIOD=2025-10/finops-cur2-00001.snappy.parquet");
    let planted = export.path().join("data/BILLING_PERIOD=2025-10/finops-cur2-00002.snappy.parquet");
    // Three large instances of search's on the 3rd: one search line of that day, copied with a
    // new resource id and a cost of 400.
    let sql = format!(
        "COPY (SELECT * REPLACE ('i-0planted' || CAST(n AS VARCHAR) AS line_item_resource_id, 400.0 AS line_item_unblended_cost, 400.0 AS pricing_public_on_demand_cost) \
         FROM (SELECT * FROM '{o}' WHERE day(line_item_usage_start_date) = 3 AND line_item_product_code = 'AmazonEC2' AND line_item_line_item_type = 'Usage' \
         AND resource_tags['user_team'] = 'search' LIMIT 1), range(3) t(n)) TO '{p}' (FORMAT parquet)",
        o = october.display(),
        p = planted.display()
    );
    let out = Command::new(python).args(["-c", &format!("import duckdb\nduckdb.connect().execute({sql:?})\n")]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out_dir = tempfile::tempdir().unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_finops"))
        .args(["run", "--quiet", "--source", export.path().to_str().unwrap(), "--month", "2025-10", "--out", out_dir.path().to_str().unwrap()])
        .current_dir(workspace())
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", text(&run.stderr));
    let alerts: serde_json::Value = serde_json::from_slice(&std::fs::read(out_dir.path().join("2025-10/alerts.json")).unwrap()).unwrap();
    let spike = alerts["spikes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["date"] == "2025-10-03" && s["subject"] == "team" && s["name"] == "search")
        .unwrap_or_else(|| panic!("search's spike of the 3rd: {}", alerts["spikes"]));
    let resources: Vec<&str> = spike["contributors"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).filter(|c| c.starts_with("resource ")).collect();
    assert!(resources.first().is_some_and(|r| r.starts_with("resource i-0planted")), "the planted instances first: {resources:?}");
    assert!(resources.iter().all(|r| r.starts_with("resource i-0planted")), "no other resource is the change: {resources:?}");
    // The account's change is the planted 1,200.00, not its whole day: measured against its own
    // baseline in the month before (without it, every cent the account spent that day counts).
    let change = |c: &str| -> f64 { c.split(": +").nth(1).and_then(|r| r.split(' ').next()).map(|a| a.replace(',', "")).and_then(|a| a.parse().ok()).unwrap_or_else(|| panic!("no change in `{c}`")) };
    let account = spike["contributors"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).find(|c| c.starts_with("account ")).expect("an account named");
    assert!((change(account) - 1200.0).abs() < 10.0, "{account}");
}

fn pending_ids(out: &Path) -> Vec<String> {
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("alerts-state.json")).unwrap()).unwrap();
    state["pending"].as_array().unwrap().iter().map(|p| p["message"]["id"].as_str().unwrap().to_string()).collect()
}

/// Feedback as AWS Cost Anomaly Detection takes it: the planted spike of the 20th acknowledged as
/// planned is labelled, its repeat on the 21st is recorded and not sent, and the month's report
/// records both labels and the precision they imply.
#[test]
fn an_acknowledged_planned_spike_is_not_re_sent_and_is_labelled_in_the_report() {
    let export = export();
    let out = tempfile::tempdir().unwrap();
    let finops = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_finops")).args(args).current_dir(workspace()).output().unwrap();
    alerts(export.path(), out.path(), &["--day", "2025-10-20"]);
    assert!(pending_ids(out.path()).contains(&"spike:team:search:2025-10-20".to_string()), "{:?}", pending_ids(out.path()));
    // An id that was never found is refused, and says where the ids are.
    let wrong = finops(&["alerts", "ack", "spike:team:search:2025-10-02", "--reason", "planned", "--out", out.path().to_str().unwrap()]);
    assert!(
        !wrong.status.success() && text(&wrong.stderr).contains("no alert `spike:team:search:2025-10-02` was sent or is pending") && text(&wrong.stderr).contains("alerts/<day>.json"),
        "{}",
        text(&wrong.stderr)
    );
    let ack = finops(&["alerts", "ack", "spike:team:search:2025-10-20", "--reason", "planned", "--out", out.path().to_str().unwrap()]);
    assert!(ack.status.success(), "{}", text(&ack.stderr));
    assert!(text(&ack.stdout).contains("spike:team:search:2025-10-20: planned (search's 2025-10-20 leaves its later baselines"), "{}", text(&ack.stdout));
    // The 21st repeats it: recorded with why, not queued for Slack.
    let next = alerts(export.path(), out.path(), &["--day", "2025-10-21"]);
    let record: serde_json::Value = serde_json::from_slice(&std::fs::read(out.path().join("alerts/2025-10-21.json")).unwrap()).unwrap();
    let repeat = record["found"].as_array().unwrap().iter().find(|f| f["id"] == "spike:team:search:2025-10-21").unwrap_or_else(|| panic!("{record:#}"));
    assert_eq!(repeat["held"], "not sent: it repeats spike:team:search:2025-10-20, acknowledged planned", "{repeat:#}");
    assert!(!pending_ids(out.path()).contains(&"spike:team:search:2025-10-21".to_string()), "{:?}\n{}", pending_ids(out.path()), text(&next.stdout));
    assert!(
        text(&next.stdout).contains("[spike, held] Cost spike: team search spent") && text(&next.stdout).contains("(not sent: it repeats spike:team:search:2025-10-20, acknowledged planned)"),
        "{}",
        text(&next.stdout)
    );
    // The month's record and report carry the labels and their precision.
    let run = finops(&["run", "--source", export.path().to_str().unwrap(), "--month", "2025-10", "--out", out.path().to_str().unwrap()]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let month: serde_json::Value = serde_json::from_slice(&std::fs::read(out.path().join("2025-10/alerts.json")).unwrap()).unwrap();
    let label = |day: &str| month["spikes"].as_array().unwrap().iter().find(|s| s["name"] == "search" && s["date"] == day).map(|s| s["label"].clone());
    assert_eq!(label("2025-10-20"), Some(serde_json::json!("planned")), "{month:#}");
    assert_eq!(label("2025-10-21"), Some(serde_json::json!("repeat of 2025-10-20, planned")), "{month:#}");
    assert_eq!(month["labels"], serde_json::json!([{"month": "2025-10", "labelled": 1, "wrong": 0}]));
    let pdf = Command::new("pdftotext").args([out.path().join("2025-10/report.pdf").to_str().unwrap(), "-"]).output().expect("pdftotext (Debian's poppler-utils; scripts/test installs it)");
    let words = text(&pdf.stdout).split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(words.contains("team search · planned") && words.contains("precision 100% (1 of 1 labelled spikes real); 2025-10 1 labelled, 0 wrong"), "{words}");
}

/// A month the baseline needs that cannot be read is said, on the terminal and in the day's
/// record, never a silently shorter baseline.
#[test]
fn a_baseline_month_that_cannot_be_read_is_a_warning_in_the_record() {
    let export = export();
    let out = tempfile::tempdir().unwrap();
    let september = export.path().join("data/BILLING_PERIOD=2025-09/finops-cur2-00001.snappy.parquet");
    assert!(september.exists(), "the fixture's September file");
    std::fs::write(&september, b"not parquet").unwrap();
    let run = alerts(export.path(), out.path(), &["--day", "2025-10-05"]);
    let stdout = text(&run.stdout);
    assert!(stdout.contains("the baseline leaves out 2025-09: it could not be read:"), "{stdout}");
    let record: serde_json::Value = serde_json::from_slice(&std::fs::read(out.path().join("alerts/2025-10-05.json")).unwrap()).unwrap();
    assert!(record["notes"].as_array().unwrap().iter().any(|n| n.as_str().unwrap().starts_with("the baseline leaves out 2025-09: it could not be read")), "{record:#}");
}
