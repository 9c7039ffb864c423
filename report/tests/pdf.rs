//! The executive PDF under the layouts that break reports: one team, forty teams, a 60-character
//! team name, Hangul names, the Korean locale. Checked with real PDF tools (poppler, qpdf), as a
//! reader's viewer would see it: every page renders, every word lies inside the page's margins,
//! and the names extract as text. Same data, same bytes.

use std::path::Path;
use std::process::Command;

use finops_allocate::Cents;
use finops_report::pdf::{report_pdf, HistoryMonth, Locale, MonthFacts, ReportData, TeamFigures};

fn tool(name: &str, args: &[&str]) -> std::process::Output {
    Command::new(name).args(args).output().unwrap_or_else(|e| panic!("`{name}` is needed to check the PDF ({e}): install Debian's poppler-utils and qpdf (scripts/test does)"))
}

fn team(name: &str, total: i64, previous: Option<i64>) -> TeamFigures {
    TeamFigures {
        team: name.into(),
        direct: Cents(total * 6 / 10),
        shared: Cents(total - total * 6 / 10 - total / 10),
        gpu: Cents(total / 10),
        total: Cents(total),
        previous: previous.map(Cents),
        change_pct: previous.map(|p| format!("{:.1}", (total - p) as f64 / p as f64 * 100.0)).unwrap_or_default(),
        gpu_hours: total as f64 / 1000.0,
        gpu_utilization_pct: 40.0,
        idle_hours: total as f64 / 9000.0,
        idle_cost: Cents(total / 50),
        spot: Cents(total / 40),
    }
}

/// A month of `names` (plus unallocated) with `history` earlier months.
fn data(names: &[String], history: usize, locale: Locale) -> ReportData {
    let mut teams: Vec<TeamFigures> = names.iter().enumerate().map(|(i, n)| team(n, 100_000 + 7_919 * i as i64 * 13, Some(95_000 + 5_000 * i as i64))).collect();
    teams.push(team("unallocated", 12_345, Some(20_000)));
    let history = (0..history)
        .map(|k| {
            let index = 2025 * 12 + 9 - (history - k) as i64; // months since year 0; 2025-10 is 2025 * 12 + 9
            let month = format!("{}-{:02}", index / 12, index % 12 + 1);
            HistoryMonth {
                month,
                teams: teams.iter().map(|t| (t.team.clone(), Cents(t.total.0 * (90 + k as i64) / 100))).collect(),
                gpu_hours: 100.0,
                busy_hours: 40.0 + k as f64,
                source: "published".into(),
                bill: None,
                gpu_measured: Some(true),
            }
        })
        .collect();
    let mut palette_order: Vec<String> = names.to_vec();
    palette_order.sort();
    ReportData {
        untagged: None,
        commitments: None,
        gpu_splits: Vec::new(),
        facts: MonthFacts {
            month: "2025-10".into(),
            cost_basis: "amortized".into(),
            currency: "USD".into(),
            source: "s3://billing/cur2/export".into(),
            line_items: 123_456,
            input_files: 3,
            coverage: 0.97,
            gpu_coverage: Some(0.999),
            gpu_source: Some("recorded file gpu/2025-10.csv.gz".into()),
            data_through: Some("2025-10-31".into()),
            reconciliation: None,
            rules: vec![("orders-db".into(), "share: metric".into()), ("team tags: team".into(), "tag".into())],
            warnings: vec![],
            generator: "finops test".into(),
            gpu_measured: Some(true),
            previous: Some(finops_report::pdf::PreviousFigures { month: "2025-09".into(), bill: Cents(900_000), not_comparable: None }),
        },
        teams,
        services: (0..15).map(|i| (format!("Service{i:02}"), Cents(1_000_000 / (i + 1)))).collect(),
        history,
        palette_order,
        locale,
        alerts: Some(finops_report::pdf::ReportAlerts {
            spikes: vec![finops_report::pdf::SpikeRecord {
                date: "2025-10-20".into(),
                subject: "team".into(),
                name: names[0].clone(),
                actual: "627.32".into(),
                expected: "180.19".into(),
                contributors: vec!["service AmazonEC2: +442.33 USD (102% of the change)".into()],
                label: Some("planned".into()),
            }],
            idle_gpu: vec![finops_report::pdf::IdleRecord { namespace: "search-ranking".into(), team: names[0].clone(), days: 31, idle_gpu_hours: "1635.2".into(), idle_cost: "5830.64".into() }],
            budgets: names.iter().take(3).map(|n| finops_report::pdf::BudgetRecord { team: n.clone(), budget: "2000.00".into(), actual: "1500.00".into() }).collect(),
            labels: vec![finops_report::pdf::LabelledMonth { month: "2025-09".into(), labelled: 3, wrong: 1 }, finops_report::pdf::LabelledMonth { month: "2025-10".into(), labelled: 2, wrong: 0 }],
        }),
        idle: Some(finops_report::pdf::IdleGpu { pods_hours: 10.0, pods_cost: Cents(12_345), no_pod_hours: 5.0, no_pod_cost: Cents(6_789) }),
        dimensions: Vec::new(),
    }
}

/// Writes the PDF, checks it with qpdf, renders every page, and returns (pages, text, words
/// outside the margins).
fn check(bytes: &[u8], dir: &Path) -> (usize, String, Vec<String>) {
    let pdf = dir.join("report.pdf");
    std::fs::write(&pdf, bytes).unwrap();
    let pdf = pdf.to_string_lossy().to_string();
    let qpdf = tool("qpdf", &["--check", &pdf]);
    assert!(qpdf.status.success(), "qpdf --check: {}", String::from_utf8_lossy(&qpdf.stdout));
    let info = String::from_utf8_lossy(&tool("pdfinfo", &[&pdf]).stdout).to_string();
    let pages: usize = info.lines().find_map(|l| l.strip_prefix("Pages:")).unwrap().trim().parse().unwrap();
    let prefix = dir.join("page").to_string_lossy().to_string();
    assert!(tool("pdftoppm", &["-png", "-r", "30", &pdf, &prefix]).status.success());
    let rendered = std::fs::read_dir(dir).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("page")).count();
    assert_eq!(rendered, pages, "every page renders");
    let text = String::from_utf8_lossy(&tool("pdftotext", &["-layout", &pdf, "-"]).stdout).to_string();
    // Word boxes: nothing drawn outside the margins (42 pt; page numbers sit in the bottom one).
    let bbox = String::from_utf8_lossy(&tool("pdftotext", &["-bbox", &pdf, "-"]).stdout).to_string();
    let mut outside = Vec::new();
    for line in bbox.lines().filter(|l| l.trim_start().starts_with("<word")) {
        let attr = |name: &str| -> f32 { line.split(&format!("{name}=\"")).nth(1).and_then(|r| r.split('"').next()).and_then(|v| v.parse().ok()).unwrap() };
        let (x0, x1, y0, y1) = (attr("xMin"), attr("xMax"), attr("yMin"), attr("yMax"));
        if x0 < 40.0 || x1 > 555.0 || y0 < 30.0 || y1 > 830.0 {
            outside.push(line.trim().to_string());
        }
    }
    (pages, text, outside)
}

#[test]
fn one_team_forty_teams_a_long_name_and_hangul_lay_out_inside_the_page() {
    let cases: Vec<(&str, Vec<String>, usize)> = vec![
        ("one team", vec!["search".into()], 0),
        ("forty teams, a year of history", (0..40).map(|i| format!("team-{i:02}")).collect(), 11),
        ("eighty teams", (0..80).map(|i| format!("team-{i:02}")).collect(), 2),
        ("a 60-character name", vec!["a-team-name-that-goes-on-and-on-for-sixty-characters-exactly".into(), "orders".into()], 3),
        ("Hangul", vec!["검색".into(), "주문".into(), "결제".into(), "데이터플랫폼".into()], 5),
    ];
    for (case, names, history) in cases {
        assert!(names.iter().all(|n| n.chars().count() <= 60));
        let dir = tempfile::tempdir().unwrap();
        let bytes = report_pdf(&data(&names, history, Locale::En)).unwrap();
        assert!(bytes.len() < 2_000_000, "{case}: {} bytes", bytes.len());
        let (pages, text, outside) = check(&bytes, dir.path());
        assert!(outside.is_empty(), "{case}: words outside the margins: {outside:?}");
        assert!((3..=9).contains(&pages), "{case}: {pages} pages");
        for name in names.iter().filter(|n| n.chars().count() < 30) {
            assert!(text.contains(name.as_str()), "{case}: `{name}` does not extract as text");
        }
        // The spikes table shows a spike's label, the data page the precision the labels imply.
        let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(words.contains(&format!("team {} · planned", names[0])) || names[0].chars().count() >= 30, "{case}: the spike's label");
        assert!(words.contains("precision 80% (4 of 5 labelled spikes real); 2025-09 3 labelled, 1 wrong; 2025-10 2 labelled, 0 wrong"), "{case}: {words}");
        if case == "eighty teams" {
            // The team table runs onto a second page, under its header again.
            let headers = text.lines().filter(|l| l.split_whitespace().collect::<Vec<_>>() == ["team", "direct", "shared", "gpu", "total", "previous", "change"]).count();
            assert_eq!(headers, 2, "{case}: the header is repeated on the table's second page");
            assert!(text.contains("team-79"), "{case}");
            assert!(text.contains("56 others"), "{case}: the charts show the top 25 and the rest in one bar");
        }
        if case == "a 60-character name" {
            assert!(text.contains("a-team-name-that-goes-on"), "{case}: the long name is shown, cut to fit");
        }
    }
}

#[test]
fn the_korean_locale_labels_the_report_in_korean() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = report_pdf(&data(&["검색".to_string(), "orders".to_string()], 2, Locale::Ko)).unwrap();
    let (_, text, outside) = check(&bytes, dir.path());
    assert!(outside.is_empty(), "{outside:?}");
    for label in ["클라우드 비용 보고서", "2025년 10월", "AWS 청구액", "배분율", "적용 규칙"] {
        assert!(text.contains(label), "`{label}` missing:\n{text}");
    }
}

#[test]
fn the_same_data_gives_the_same_bytes() {
    let names: Vec<String> = ["search", "orders", "검색"].iter().map(|s| s.to_string()).collect();
    let a = report_pdf(&data(&names, 5, Locale::En)).unwrap();
    let b = report_pdf(&data(&names, 5, Locale::En)).unwrap();
    assert_eq!(a, b, "two renderings in one process differ");
    let mut other = data(&names, 5, Locale::En);
    other.teams[0].total = Cents(other.teams[0].total.0 + 1);
    assert_ne!(report_pdf(&other).unwrap(), a, "a different figure gives different bytes (and /ID)");
}

/// A team whose credits outweigh its spend has a negative total: the trend draws it below the
/// zero line (the axis runs below zero), never clamped to nothing.
#[test]
fn a_negative_team_total_is_drawn_below_the_axis() {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = ["search", "orders"].iter().map(|s| s.to_string()).collect();
    let mut d = data(&names, 3, Locale::En);
    let credits = Cents(-4_000_000);
    d.teams[1].total = credits;
    d.teams[1].direct = credits;
    for h in &mut d.history {
        h.teams[1].1 = credits;
    }
    let (_, text, outside) = check(&report_pdf(&d).unwrap(), dir.path());
    assert!(outside.is_empty(), "{outside:?}");
    let trend = text.split("Spend by team").nth(1).unwrap_or_default();
    assert!(trend.contains("-40k") || trend.contains("-50k"), "the axis reaches below zero for -40,000.00:\n{trend}");
    // The top teams' bars reach left of zero for it too.
    let top = text.split("Top teams this month").nth(1).unwrap_or_default();
    assert!(top.lines().take(12).any(|l| l.contains("-40k") || l.contains("-50k")), "the bars' axis reaches below zero:\n{top}");
    // And without a negative total, the axis starts at zero.
    let (_, text, _) = check(&report_pdf(&data(&names, 3, Locale::En)).unwrap(), tempfile::tempdir().unwrap().path());
    let trend = text.split("Spend by team").nth(1).unwrap_or_default();
    assert!(!trend.lines().take(25).any(|l| l.trim_start().starts_with('-')), "{trend}");
}
