//! Benchmark: how long `report.pdf` takes to make, on the committed fixtures' month (rebuilt
//! from its published files, its five earlier months published beside it) and on a 40-team
//! month with a 12-month history. Prints median wall times and sizes; asserts nothing about time.
//!
//! ```text
//! cargo bench --workspace --bench report_pdf
//! ```

use std::process::Command;
use std::time::Instant;

use finops_allocate::Cents;
use finops_report::pdf::{report_pdf, HistoryMonth, Locale, MonthFacts, ReportData, TeamFigures};

const RUNS: usize = 9;

fn median(mut seconds: Vec<f64>) -> f64 {
    seconds.sort_by(f64::total_cmp);
    seconds[seconds.len() / 2]
}

/// A month of `teams` teams with `months - 1` earlier months, figures varied but plausible.
fn synthetic(teams: usize, months: usize) -> ReportData {
    let figures = |i: usize, scale: i64| {
        let total = (50_000 + 137_911 * i as i64 % 4_000_000) * scale / 100;
        TeamFigures {
            team: format!("team-{i:02}"),
            direct: Cents(total * 7 / 10),
            shared: Cents(total / 5),
            gpu: Cents(total - total * 7 / 10 - total / 5),
            total: Cents(total),
            previous: Some(Cents(total * 95 / 100)),
            change_pct: "5.3".into(),
            gpu_hours: total as f64 / 2_000.0,
            gpu_utilization_pct: 30.0 + (i % 50) as f64,
            idle_hours: total as f64 / 20_000.0,
            idle_cost: Cents(total / 40),
            spot: Cents(total / 30),
        }
    };
    let mut rows: Vec<TeamFigures> = (0..teams).map(|i| figures(i, 100)).collect();
    rows.push(TeamFigures { team: "unallocated".into(), ..figures(teams, 10) });
    let history = (1..months)
        .map(|k| {
            let index = 2025 * 12 + 9 - (months - k) as i64;
            let month_rows: Vec<TeamFigures> = (0..=teams).map(|i| figures(i, 80 + k as i64)).collect();
            HistoryMonth {
                month: format!("{}-{:02}", index / 12, index % 12 + 1),
                teams: month_rows.iter().map(|t| (t.team.clone(), t.total)).collect(),
                gpu_hours: month_rows.iter().map(|t| t.gpu_hours).sum(),
                busy_hours: month_rows.iter().map(|t| t.gpu_hours * t.gpu_utilization_pct / 100.0).sum(),
                source: "published".into(),
                bill: None,
                gpu_measured: Some(true),
            }
        })
        .collect();
    ReportData {
        untagged: None,
        commitments: None,
        gpu_splits: Vec::new(),
        facts: MonthFacts {
            month: "2025-10".into(),
            cost_basis: "amortized".into(),
            currency: "USD".into(),
            source: "s3://billing/cur2/export".into(),
            line_items: 9_680_527,
            input_files: 5,
            coverage: 0.96,
            gpu_coverage: Some(0.998),
            gpu_source: Some("DCGM series from Prometheus".into()),
            data_through: Some("2025-10-31".into()),
            reconciliation: None,
            rules: (0..20).map(|i| (format!("rule {i}"), "share: proportional".to_string())).collect(),
            warnings: vec![],
            generator: "finops bench".into(),
            gpu_measured: Some(true),
            previous: None,
        },
        teams: rows,
        services: (0..60).map(|i| (format!("Service{i:02}"), Cents(10_000_000 / (i + 1)))).collect(),
        history,
        palette_order: (0..teams).map(|i| format!("team-{i:02}")).collect(),
        locale: Locale::En,
        alerts: None,
        idle: None,
        dimensions: Vec::new(),
    }
}

fn main() {
    println!("report.pdf: median of {RUNS} renderings");
    // The fixtures: publish the six months, then rebuild October's report from its files.
    let out = tempfile::tempdir().expect("a temporary folder");
    let repo = std::path::Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR for tests and benchmarks")).join("..");
    for month in ["2025-05", "2025-06", "2025-07", "2025-08", "2025-09", "2025-10"] {
        let status = Command::new(env!("CARGO_BIN_EXE_finops")).args(["run", "--quiet", "--month", month, "--out"]).arg(out.path()).current_dir(&repo).output().expect("run finops");
        assert!(status.status.success(), "finops run --month {month}: {}", String::from_utf8_lossy(&status.stderr));
    }
    let config = finops_lambda::config::Config { output: finops_lambda::config::OutputConfig { location: out.path().display().to_string(), ..Default::default() }, ..Default::default() };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    let times: Vec<f64> = (0..RUNS)
        .map(|_| {
            let started = Instant::now();
            runtime.block_on(finops_lambda::monthly::rebuild_report(&config, "2025-10")).expect("rebuild the fixture report");
            started.elapsed().as_secs_f64()
        })
        .collect();
    let size = std::fs::metadata(out.path().join("2025-10/report.pdf")).map(|m| m.len()).unwrap_or(0);
    println!("  fixtures 2025-10 (7 rows, 6 months, read from the published files): {:.1} ms, {} KB", median(times) * 1e3, size / 1024);

    let data = synthetic(40, 12);
    let mut bytes = Vec::new();
    let times: Vec<f64> = (0..RUNS)
        .map(|_| {
            let started = Instant::now();
            bytes = report_pdf(&data).expect("render");
            started.elapsed().as_secs_f64()
        })
        .collect();
    println!("  40 teams, 12 months, 60 services: {:.1} ms, {} KB", median(times) * 1e3, bytes.len() / 1024);
}
