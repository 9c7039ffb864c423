//! The month's grain query, run in DuckDB over the committed fixture months, gives the same grain
//! as the local (polars) pass — every cost line and every service total to the 10^-12 — and,
//! allocated by the shipped rules, the same summary and team CSVs byte for byte. The Trino
//! rendering parses with a real Trino grammar (sqlglot) and is pinned by a snapshot that the
//! README shows. Needs FINOPS_TEST_PYTHON (a Python with duckdb and sqlglot): `scripts/test`
//! installs both into the test venv.

mod common;

use common::*;

use std::collections::BTreeMap;
use std::process::Command;

use finops_ingest::grain_sql::{Dialect, GrainQuery, Table};
use finops_ingest::{Format, IngestOptions, IngestedMonth, Silent};
use finops_lambda::config::Config;
use finops_lambda::monthly::{allocate_ingested, load_rules, open_source};

fn python() -> String {
    std::env::var("FINOPS_TEST_PYTHON").unwrap_or_else(|_| {
        panic!("FINOPS_TEST_PYTHON is not set: these tests run the grain query in DuckDB and parse it with sqlglot. Run `scripts/test` (it installs both into ~/.cache/finops-test-venv and sets it)")
    })
}

/// The config of the default run: the committed fixtures, the shipped rules, recorded GPU usage.
fn config() -> Config {
    let mut config = Config::default();
    config.source.location = workspace().join("fixtures/cur2").display().to_string();
    config.rules = Some(workspace().join("rules/example.toml"));
    config.gpu.set_usage(&workspace().join("fixtures/gpu").display().to_string());
    config
}

/// Every team file and the summary of an allocated month, by name.
async fn outputs(config: &Config, rules: &finops_allocate::RuleSet, month: IngestedMonth) -> BTreeMap<String, Vec<u8>> {
    let done = allocate_ingested(config, rules, month).await.unwrap();
    let mut files = BTreeMap::new();
    files.insert("summary.csv".to_string(), finops_report::allocation::summary_csv(&finops_report::allocation::team_rows(rules, &done.allocation, None)));
    finops_report::allocation::for_each_team_file::<()>(rules, &done.allocation, &mut |f| {
        files.insert(f.name.clone(), f.bytes);
        Ok(())
    })
    .unwrap();
    files
}

/// Runs the DuckDB rendering of `month`'s grain query over `config`'s source and checks it gives
/// the local pass's grain, service totals and team files exactly.
async fn duckdb_gives_the_local_grain(config: &Config, month: &str, work: &std::path::Path) {
    let loaded = load_rules(&config.rules_path()).unwrap();
    let rules = &loaded.rules;
    let source = open_source(config).await.unwrap();
    let options = IngestOptions { format: Format::Auto, month: Some(month.to_string()), tag_keys: rules.tag_keys(), cost_basis: rules.cost_basis, team_tag: None, team_tag_keys: 0 };
    let local = source.ingest_month(&options, &Silent).await.unwrap();

    let query = source.grain_query(Format::Auto, month, &rules.tag_keys()).await.unwrap();
    let sql = work.join(format!("{month}.sql"));
    let result = work.join(format!("{month}.csv"));
    std::fs::write(&sql, query.render(Dialect::DuckDb)).unwrap();
    let run = Command::new(python()).arg(workspace().join("scripts/testdata/duckdb_grain.py")).arg(&sql).arg(&result).output().expect("run DuckDB");
    assert!(run.status.success(), "DuckDB failed on {month}: {}", String::from_utf8_lossy(&run.stderr));
    let read = finops_ingest::grain_sql::read_result(std::fs::File::open(&result).unwrap(), &query, rules.cost_basis, "duckdb result").unwrap();
    assert_eq!(read.bad_rows, 0);

    // A line's origin is where its grain holds its five bases: an index in reading order,
    // which two engines need not share; the line itself is everything else.
    let unplaced = |lines: &[finops_allocate::CostLine]| -> Vec<finops_allocate::CostLine> { lines.iter().map(|l| finops_allocate::CostLine { origin: 0, ..l.clone() }).collect() };
    let mut ours = unplaced(local.grain.lines());
    let mut theirs = unplaced(read.grain.lines());
    ours.sort();
    theirs.sort();
    assert_eq!(ours.len(), theirs.len(), "{month}: grain rows");
    for (a, b) in ours.iter().zip(&theirs) {
        assert_eq!(a, b, "{month}: a grain row differs");
    }
    assert_eq!(local.grain.service_totals(), read.grain.service_totals(), "{month}: service totals at all five bases");
    assert_eq!(local.grain.line_items(), read.grain.line_items());

    let from_sql = IngestedMonth::from_grain(Format::Cur2, month.to_string(), "duckdb".into(), Vec::new(), read.grain, Vec::new());
    let (a, b) = (outputs(config, rules, local).await, outputs(config, rules, from_sql).await);
    assert!(a.len() > 3);
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>(), "{month}: the same files");
    for (name, bytes) in &a {
        assert!(bytes == &b[name], "{month}: {name} differs between the local pass and DuckDB's grain");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn duckdb_rendering_gives_the_local_grain_and_the_same_team_csvs_on_every_fixture_month() {
    let work = tempfile::tempdir().unwrap();
    for month in fixture_months() {
        duckdb_gives_the_local_grain(&config(), &month, work.path()).await;
    }
}

/// The DuckDB the tests run is the one pinned in `scripts/duckdb-version` (its binder decides
/// what the rendering may use: a newer one must be checked before it is trusted).
#[test]
fn the_tests_run_the_pinned_duckdb() {
    let pinned = std::fs::read_to_string(workspace().join("scripts/duckdb-version")).unwrap();
    let out = Command::new(python()).args(["-c", "import duckdb; print(duckdb.__version__)"]).output().expect("run Python");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), pinned.trim(), "the venv's DuckDB is not the pinned one: run `scripts/test` (it installs the pin)");
}

/// `resource_tags` as a list of key/value structs, as some tools that rewrite CUR files write it
/// (the fixtures hold a parquet MAP, as AWS Data Exports write it): the rendering reads the
/// files' footer and binds list lambdas directly.
#[tokio::test(flavor = "multi_thread")]
async fn duckdb_rendering_reads_resource_tags_written_as_a_list_of_key_value_structs() {
    let work = tempfile::tempdir().unwrap();
    let export = work.path().join("export");
    let month = "2025-10";
    let folder = export.join(format!("data/BILLING_PERIOD={month}"));
    std::fs::create_dir_all(&folder).unwrap();
    let fixture = workspace().join(format!("fixtures/cur2/data/BILLING_PERIOD={month}/finops-cur2-00001.snappy.parquet"));
    let list_file = folder.join("finops-cur2-00001.snappy.parquet");
    let script = format!(
        "import duckdb\nc = duckdb.connect()\nc.execute(\"COPY (SELECT * REPLACE (map_entries(resource_tags) AS resource_tags) FROM '{}') TO '{}' (FORMAT parquet, COMPRESSION snappy)\")\nprint(c.execute(\"SELECT typeof(resource_tags) FROM '{}' LIMIT 1\").fetchone()[0])\n",
        fixture.display(),
        list_file.display(),
        list_file.display()
    );
    let written = Command::new(python()).args(["-c", &script]).output().expect("run DuckDB");
    assert!(written.status.success(), "{}", String::from_utf8_lossy(&written.stderr));
    assert_eq!(String::from_utf8_lossy(&written.stdout).trim(), "STRUCT(\"key\" VARCHAR, \"value\" VARCHAR)[]", "the month's tags are a list of structs");
    let mut config = config();
    config.source.location = export.display().to_string();
    duckdb_gives_the_local_grain(&config, month, work.path()).await;
}

/// The Trino rendering of the shipped rules' grain query for the README's month.
fn trino_query() -> String {
    let rules = load_rules(&workspace().join("rules/example.toml")).unwrap();
    GrainQuery { month: "2025-10".into(), tag_keys: rules.rules.tag_keys(), table: Table::Catalog { database: "cid_data_export".into(), table: "cur2".into() } }.render(Dialect::Trino)
}

#[test]
fn trino_rendering_parses_with_a_trino_grammar() {
    let sql = trino_query();
    let script = "import sys, sqlglot\nsql = sys.stdin.read()\ntrees = sqlglot.parse(sql, read='trino', error_level=sqlglot.ErrorLevel.RAISE)\nassert len(trees) == 1, len(trees)\nprint(type(trees[0]).__name__)";
    let mut child =
        Command::new(python()).args(["-c", script]).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().expect("run sqlglot");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), sql.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "sqlglot (dialect trino) rejects the query: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "Select");
}

#[test]
fn trino_rendering_matches_its_snapshot() {
    let path = workspace().join("docs/grain-query.trino.sql");
    let sql = trino_query();
    if std::env::var_os("FINOPS_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &sql).unwrap();
    }
    let pinned = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(pinned == sql, "the Trino grain query changed; if that is intended, regenerate {} with FINOPS_UPDATE_SNAPSHOTS=1 and update the README's copy", path.display());
}
