//! Untagged cost as the platform team chases it: `untagged.csv` adds up to the unallocated
//! total, names the tags an untagged resource does carry and the team tag key a misspelt one
//! looks like; `coverage.csv` follows each account over the published months; the month's
//! untagged message goes to its route.

mod common;

use common::*;

use std::path::Path;

use finops_allocate::Money;
use finops_ingest::Silent;

/// The default run, without the FOCUS output (not what these tests look at).
fn config(out: &Path) -> finops_lambda::config::Config {
    let mut config = default_run(out);
    config.output.focus_allocated = false;
    config
}

fn rows(path: &Path) -> Vec<Vec<String>> {
    finops_report::csv::read_rows(&std::fs::read_to_string(path).unwrap())
}

fn column(rows: &[Vec<String>], name: &str) -> usize {
    rows[0].iter().position(|h| h == name).unwrap_or_else(|| panic!("no column {name} in {:?}", rows[0]))
}

#[tokio::test(flavor = "multi_thread")]
async fn untagged_cost_adds_up_and_says_what_to_fix() {
    let out = tempfile::tempdir().unwrap();
    let mut config = config(out.path());
    config.alerts.untagged_route = Some("platform-costs".into());
    let outcome = finops_lambda::monthly::run_monthly(&config, None, &Silent).await.unwrap();
    let dir = out.path().join(&outcome.month);

    let untagged = rows(&dir.join("untagged.csv"));
    let summary = rows(&dir.join("summary.csv"));
    let unallocated = summary.iter().find(|r| r[0] == "unallocated").unwrap();
    let total = unallocated[column(&summary, "total")].parse::<Money>().unwrap();
    let cost = column(&untagged, "cost");
    assert!(untagged.len() > 3, "the fixture month has untagged resources");
    assert_eq!(untagged[1..].iter().map(|r| r[cost].parse::<Money>().unwrap()).sum::<Money>(), total, "untagged.csv adds up to the unallocated total");
    let costs: Vec<Money> = untagged[1..].iter().map(|r| r[cost].parse().unwrap()).collect();
    assert!(costs.windows(2).all(|w| w[0] >= w[1]), "largest first");

    // The instance that carries its team under `Teem`: its tags, and the key it looks like.
    let (tags, advice) = (column(&untagged, "resource_tags"), column(&untagged, "advice"));
    let teem = untagged.iter().find(|r| r[tags].contains("Teem=platform")).expect("the resource tagged Teem is listed with its tags");
    assert_eq!(teem[advice], "`Teem=platform` looks like `team`: `platform` is team platform");
    // A resource with no tag at all is told to get one.
    assert!(untagged[1..].iter().any(|r| r[tags].is_empty() && r[advice].starts_with("no team tag: add one of team")), "{untagged:?}");

    // The report's untagged section prints the same total and the same advice (without the
    // backticks that mark keys in Slack).
    let pdf = std::process::Command::new("pdftotext").args(["-layout"]).arg(dir.join("report.pdf")).arg("-").output().expect("pdftotext (poppler-utils; scripts/test installs it)");
    let text = String::from_utf8_lossy(&pdf.stdout);
    let heading = text.lines().find(|l| l.trim_start().starts_with("Untagged cost")).expect("an untagged section");
    assert!(heading.ends_with(&format!(": {} USD", finops_report::pdf::grouped(total.round_to_cents()))), "{heading}");
    assert!(text.contains("Teem=platform looks like team: platform is team platform"), "{text}");

    // The month's message, to the configured route, names the largest offenders.
    let alerts: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("alerts.json")).unwrap()).unwrap();
    let found = alerts["found"].as_array().unwrap().iter().find(|f| f["kind"] == "untagged").expect("an untagged message");
    assert_eq!(found["route"], "platform-costs");
    assert!(found["text"].as_str().unwrap().starts_with(&format!("Untagged cost {}: ", outcome.month)), "{found}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_coverage_trend_is_the_published_months_coverage() {
    let out = tempfile::tempdir().unwrap();
    let config = config(out.path());
    let months = fixture_months();
    let (earlier, later) = (&months[months.len() - 2], &months[months.len() - 1]);
    for month in [earlier, later] {
        finops_lambda::monthly::run_monthly(&config, Some(month.clone()), &Silent).await.unwrap();
    }
    let trend = rows(&out.path().join(later).join("coverage.csv"));
    assert_eq!(trend[0], vec!["account".to_string(), format!("{earlier}_pct"), format!("{later}_pct"), "unallocated".into()]);
    for month in [earlier, later] {
        let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(out.path().join(month).join("manifest.json")).unwrap()).unwrap();
        let recorded = manifest["coverage_by_account"].as_object().unwrap();
        let at = column(&trend, &format!("{month}_pct"));
        for row in &trend[1..] {
            let expected = recorded.get(&row[0]).map(|r| format!("{:.1}", r["coverage"].as_str().unwrap().parse::<f64>().unwrap() * 100.0)).unwrap_or_default();
            assert_eq!(row[at], expected, "{month}, account {}", row[0]);
        }
        // Each account's coverage is its allocated cost over its whole cost, as printed.
        for (account, r) in recorded {
            let (allocated, total) = (r["allocated"].as_str().unwrap().parse::<f64>().unwrap(), r["total"].as_str().unwrap().parse::<f64>().unwrap());
            assert!((r["coverage"].as_str().unwrap().parse::<f64>().unwrap() - allocated / total).abs() < 1e-4, "{month} {account}");
        }
    }
    // The earlier month, published alone before, trends only itself.
    let first = rows(&out.path().join(earlier).join("coverage.csv"));
    assert_eq!(first[0].len(), 3, "{:?}", first[0]);
    // Lowest coverage first.
    let now = column(&trend, &format!("{later}_pct"));
    let shares: Vec<f64> = trend[1..].iter().map(|r| r[now].parse().unwrap()).collect();
    assert!(shares.windows(2).all(|w| w[0] <= w[1]), "{shares:?}");
}
