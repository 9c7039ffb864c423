//! The CSVs as a spreadsheet user meets them: LibreOffice Calc opens them as Excel does (UTF-8,
//! formulas evaluated, dates recognised) and openpyxl reads the workbook it saves. Account IDs stay
//! text with every digit, dates are the days they say, amounts are the numbers; on-prem GPU at the
//! rate card is spread over the month's days; and the bill reconciles with the teams.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR for tests and benchmarks")).parent().unwrap().to_path_buf()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).to_string()
}

/// Converts `csvs` to .xlsx with LibreOffice's CSV import set as Excel opens a CSV, then reads each
/// workbook's first sheet with openpyxl: per file, rows of (type, value) as Python sees them.
fn as_spreadsheet(csvs: &[PathBuf], dir: &Path) -> Vec<Vec<Vec<(String, String)>>> {
    let profile = format!("file://{}", dir.join("lo-profile").display());
    let mut args = vec![
        format!("-env:UserInstallation={profile}"),
        "--headless".into(),
        // Comma, double quote, UTF-8, from line 1, standard columns, en-US, quoted fields not forced
        // to text, special numbers (dates) detected, ..., formulas evaluated: Excel's defaults.
        "--infilter=CSV:44,34,76,1,,1033,false,true,false,false,false,-1,true".into(),
        "--convert-to".into(),
        "xlsx".into(),
        "--outdir".into(),
        dir.to_string_lossy().to_string(),
    ];
    args.extend(csvs.iter().map(|c| c.to_string_lossy().to_string()));
    let out = Command::new("soffice")
        .args(&args)
        .output()
        .unwrap_or_else(|e| panic!("LibreOffice (`soffice`) is needed to open the CSVs as a spreadsheet ({e}): install Debian's libreoffice-calc-nogui (scripts/test does)"));
    assert!(out.status.success(), "soffice failed: {}{}", text(&out.stdout), text(&out.stderr));
    let python = std::env::var("FINOPS_TEST_PYTHON").expect("FINOPS_TEST_PYTHON is not set: run `scripts/test`, which installs openpyxl into its venv");
    csvs.iter()
        .map(|csv| {
            let xlsx = dir.join(csv.file_stem().unwrap()).with_extension("xlsx");
            let script = "import openpyxl, sys, json\n\
                wb = openpyxl.load_workbook(sys.argv[1], data_only=True)\n\
                print(json.dumps([[(type(v).__name__, '' if v is None else (v.date().isoformat() if hasattr(v, 'date') else str(v))) for v in r] for r in wb.active.iter_rows(values_only=True)]))";
            let out = Command::new(&python).args(["-c", script, &xlsx.to_string_lossy()]).output().unwrap();
            assert!(out.status.success(), "openpyxl could not read {}: {} (scripts/test installs openpyxl)", xlsx.display(), text(&out.stderr));
            serde_json::from_slice(&out.stdout).unwrap()
        })
        .collect()
}

/// The CSV's own rows as a program reads them (no spreadsheet in between; an account ID is its
/// digits).
fn raw_rows(path: &Path) -> Vec<Vec<String>> {
    finops_report::csv::read_rows(&std::fs::read_to_string(path).unwrap())
}

fn cents(s: &str) -> i64 {
    let v: f64 = s.parse().unwrap_or_else(|_| panic!("`{s}` is not an amount"));
    (v * 100.0).round() as i64
}

#[test]
fn ids_dates_and_amounts_survive_a_spreadsheet_and_the_bill_reconciles_with_the_teams() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let run = Command::new(env!("CARGO_BIN_EXE_finops")).args(["run", "--quiet", "--out", &out.to_string_lossy()]).current_dir(workspace()).output().unwrap();
    assert!(run.status.success(), "{}", text(&run.stderr));
    let month = std::fs::read_dir(&out).unwrap().filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().to_string()).filter(|n| n.len() == 7).max().unwrap();
    let dir = out.join(&month);
    let files = [dir.join("teams").join("ai.csv"), dir.join("teams").join("unallocated.csv"), dir.join("services.csv")];
    let sheets = as_spreadsheet(&files, tmp.path());
    for (file, sheet) in files.iter().zip(&sheets) {
        let header: Vec<&str> = sheet[0].iter().map(|(_, v)| v.as_str()).collect();
        let account = header.iter().position(|h| *h == "account").unwrap();
        let raw = raw_rows(file);
        assert_eq!(sheet.len(), raw.len(), "{}: every row", file.display());
        for (row, written) in sheet[1..].iter().zip(&raw[1..]) {
            let (kind, value) = &row[account];
            // Written as ="111111111111": a spreadsheet keeps it as that text, every digit.
            assert_eq!((kind.as_str(), value.as_str()), ("str", written[account].as_str()), "{}: the account ID as text", file.display());
            if let Some(date) = header.iter().position(|h| *h == "date") {
                assert_eq!((row[date].0.as_str(), row[date].1.as_str()), ("datetime", written[date].as_str()), "{}: the date is that day", file.display());
            }
        }
    }
    // Amounts are numbers, and a team's lines still add up to its summary row.
    let summary = raw_rows(&dir.join("summary.csv"));
    let col = |name: &str| summary[0].iter().position(|h| h == name).unwrap();
    let ai_total = summary.iter().find(|r| r[0] == "ai").map(|r| cents(&r[col("total")])).unwrap();
    let ai = &sheets[0];
    let amount = ai[0].iter().position(|(_, h)| h == "amount").unwrap();
    assert!(ai[1..].iter().all(|r| r[amount].0 == "float" || r[amount].0 == "int"), "amounts are numbers");
    assert_eq!(ai[1..].iter().map(|r| cents(&r[amount].1)).sum::<i64>(), ai_total, "the sheet's amounts add up to ai's total");

    // On-prem GPU at the rate card is spread over every day of the month, not dated the 1st.
    let lines = raw_rows(&dir.join("teams").join("ai.csv"));
    let on_prem: Vec<&Vec<String>> = lines[1..].iter().filter(|r| r[1] == "on-prem").collect();
    let days: std::collections::BTreeSet<&str> = on_prem.iter().map(|r| r[0].as_str()).collect();
    let first = chrono::NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d").unwrap();
    let in_month = first.iter_days().take_while(|d| d.format("%Y-%m").to_string() == month).count();
    assert_eq!(days.len(), in_month, "a rate-card line on each day of {month}: {days:?}");
    let per_day: Vec<i64> = days.iter().map(|d| on_prem.iter().filter(|r| r[0] == *d && r[7] == "gpu").map(|r| cents(&r[11])).sum()).collect();
    assert!(per_day.iter().max().unwrap() - per_day.iter().min().unwrap() <= 2, "the same charge each day, to a cent or two of rounding: {per_day:?}");

    // Each line carries its values of the rule set's tag keys: a line allocated by tag shows the
    // tag that decided it; an unallocated line shows none of a team's (what to fix).
    let search = raw_rows(&dir.join("teams").join("search.csv"));
    let (rule, tags) = (search[0].iter().position(|h| h == "rule").unwrap(), search[0].iter().position(|h| h == "tags").unwrap());
    let by_tag: Vec<&Vec<String>> = search[1..].iter().filter(|r| r[rule].starts_with("tag:")).collect();
    assert!(!by_tag.is_empty() && by_tag.iter().all(|r| r[tags].contains('=')), "tag lines show their tags");
    // services.csv (the bill) + summary.csv's gpu_on_prem (the rate card) = summary.csv's total.
    let services = raw_rows(&dir.join("services.csv"));
    let basis = services[0].iter().position(|h| h == "amortized").unwrap();
    let bill: i64 = services[1..].iter().map(|r| cents(&r[basis])).sum();
    let rate_card: i64 = summary[1..].iter().map(|r| cents(&r[col("gpu_on_prem")])).sum();
    let teams: i64 = summary[1..].iter().map(|r| cents(&r[col("total")])).sum();
    assert!(rate_card > 0 && bill + rate_card == teams, "{bill} + {rate_card} = {teams}");
    let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let line = manifest["bill_to_teams"].as_str().unwrap();
    let amount = |c: i64| format!("{}.{:02}", c / 100, c % 100);
    for (what, figure) in [("the AWS bill ", bill), ("rate card ", rate_card), ("the teams' total ", teams)] {
        assert!(line.contains(&format!("{what}{}", amount(figure))), "the manifest states {what}{}: {line}", amount(figure));
    }
}
