//! Benchmark and check: the month's grain query in DuckDB against the local (polars) pass, on a
//! large month. Both grains must be equal row for row and, allocated by the same rules, give the
//! same summary and team CSVs; it prints the time of each side.
//!
//! ```text
//! cargo bench --workspace --bench grain_sql                       # the committed fixtures' latest month
//! FINOPS_GRAIN_SOURCE=/var/tmp/finops-scale/realistic-10M FINOPS_GRAIN_RULES=/var/tmp/finops-scale/realistic-10M-rules.toml \
//!   cargo bench --workspace --bench grain_sql                     # the scale benchmark's 10M month
//! ```
//! Needs a Python with duckdb (FINOPS_TEST_PYTHON, default the test venv's).
//! `FINOPS_GRAIN_ALLOCATE=0` compares the grains only (for the worst case, whose two allocations
//! would not fit beside each other on a small machine).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use finops_ingest::grain_sql::Dialect;
use finops_ingest::{Format, IngestOptions, IngestedMonth, Silent};
use finops_lambda::config::Config;
use finops_lambda::monthly::{allocate_ingested, load_rules, open_source};

fn workspace() -> PathBuf {
    Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR for tests and benchmarks")).join("..")
}

async fn outputs(config: &Config, rules: &finops_allocate::RuleSet, month: IngestedMonth) -> BTreeMap<String, Vec<u8>> {
    let done = allocate_ingested(config, rules, month).await.expect("allocate");
    let mut files = BTreeMap::new();
    files.insert("summary.csv".to_string(), finops_report::allocation::summary_csv(&finops_report::allocation::team_rows(rules, &done.allocation, None)));
    finops_report::allocation::for_each_team_file::<()>(rules, &done.allocation, &mut |f| {
        files.insert(f.name.clone(), f.bytes);
        Ok(())
    })
    .unwrap();
    files
}

#[tokio::main]
async fn main() {
    let python = std::env::var("FINOPS_TEST_PYTHON").unwrap_or_else(|_| format!("{}/.cache/finops-test-venv/bin/python", std::env::var("HOME").unwrap_or_default()));
    let source_dir = std::env::var("FINOPS_GRAIN_SOURCE").map(PathBuf::from).unwrap_or_else(|_| workspace().join("fixtures/cur2"));
    let rules_path = std::env::var("FINOPS_GRAIN_RULES").map(PathBuf::from).unwrap_or_else(|_| workspace().join("rules/example.toml"));
    let mut config = Config::default();
    config.source.location = source_dir.display().to_string();
    config.rules = Some(rules_path.clone());
    config.gpu.set_usage(&workspace().join("fixtures/gpu").display().to_string());
    let rules = load_rules(&rules_path).expect("rules").rules;
    let source = open_source(&config).await.expect("source");
    let month = match std::env::var("FINOPS_GRAIN_MONTH") {
        Ok(m) => m,
        Err(_) => {
            source
                .ingest_month(&IngestOptions { format: Format::Auto, month: None, tag_keys: Vec::new(), cost_basis: rules.cost_basis, team_tag: None, team_tag_keys: 0 }, &Silent)
                .await
                .expect("a month")
                .month
        }
    };
    println!("grain query vs the local pass: {} {month}", source_dir.display());

    let started = Instant::now();
    let options = IngestOptions { format: Format::Auto, month: Some(month.clone()), tag_keys: rules.tag_keys(), cost_basis: rules.cost_basis, team_tag: None, team_tag_keys: 0 };
    let local = source.ingest_month(&options, &Silent).await.expect("local pass");
    let local_seconds = started.elapsed().as_secs_f64();

    let work = tempfile::tempdir().unwrap();
    let query = source.grain_query(Format::Auto, &month, &rules.tag_keys()).await.expect("grain query");
    let (sql, result) = (work.path().join("q.sql"), work.path().join("r.csv"));
    std::fs::write(&sql, query.render(Dialect::DuckDb)).unwrap();
    let started = Instant::now();
    let ran = Command::new(&python).arg(workspace().join("scripts/testdata/duckdb_grain.py")).arg(&sql).arg(&result).output().expect("run DuckDB (pip install duckdb)");
    assert!(ran.status.success(), "DuckDB: {}", String::from_utf8_lossy(&ran.stderr));
    let duck_process = started.elapsed().as_secs_f64();
    let duck_query: f64 = String::from_utf8_lossy(&ran.stdout).trim().parse().unwrap_or(f64::NAN);
    let result_bytes = std::fs::metadata(&result).map(|m| m.len()).unwrap_or(0);
    let started = Instant::now();
    let read =
        finops_ingest::grain_sql::read_result(std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&result).unwrap()), &query, rules.cost_basis, "duckdb result").expect("read the result");
    let read_seconds = started.elapsed().as_secs_f64();

    let mut ours = local.grain.lines().to_vec();
    let mut theirs = read.grain.lines().to_vec();
    ours.sort();
    theirs.sort();
    let same_grain = ours == theirs && local.grain.service_totals() == read.grain.service_totals();
    println!(
        "  {} line items, {} grain rows; local pass {local_seconds:.2} s | DuckDB query {duck_query:.2} s ({duck_process:.2} s with the process), result {:.1} MB read in {read_seconds:.2} s | ratio local / (DuckDB + read) {:.2}",
        local.grain.line_items(),
        local.grain.height(),
        result_bytes as f64 / 1e6,
        local_seconds / (duck_query + read_seconds)
    );
    println!("  grain: {}", if same_grain { "equal, row for row and every service total at all five bases" } else { "DIFFERENT" });
    drop((ours, theirs));
    if std::env::var("FINOPS_GRAIN_ALLOCATE").is_ok_and(|v| v == "0") {
        assert!(same_grain, "the grain query and the local pass disagree");
        return;
    }
    let from_sql = IngestedMonth::from_grain(Format::Cur2, month.clone(), "duckdb".into(), Vec::new(), read.grain, Vec::new());
    let (a, b) = (outputs(&config, &rules, local).await, outputs(&config, &rules, from_sql).await);
    let differing: Vec<&String> = a.keys().filter(|k| a.get(*k) != b.get(*k)).collect();
    println!("  allocated: {} files (summary and team CSVs), {}", a.len(), if differing.is_empty() && a.len() == b.len() { "byte-identical".to_string() } else { format!("DIFFERENT: {differing:?}") });
    assert!(same_grain && differing.is_empty(), "the grain query and the local pass disagree");
}
