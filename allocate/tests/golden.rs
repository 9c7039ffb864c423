//! Golden cases under fixtures/golden: rules, input and expected output side by side.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use finops_allocate::engine::{allocate, CostLine, DriverSample};
use finops_allocate::rules::DriverSource;
use finops_allocate::{Money, RuleSet};

fn cases() -> Vec<PathBuf> {
    let root = Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR for tests and benchmarks")).join("../fixtures/golden");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    cases.sort();
    cases
}

fn records(path: &Path) -> Vec<HashMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    lines.filter(|l| !l.is_empty()).map(|l| header.iter().map(|h| h.to_string()).zip(l.split(',').map(str::to_string)).collect()).collect()
}

fn run_case(dir: &Path) -> BTreeMap<String, (String, String, String)> {
    let rules_path = dir.join("rules.toml");
    let rules = RuleSet::parse(&rules_path, &std::fs::read_to_string(&rules_path).unwrap()).unwrap_or_else(|e| panic!("{e}"));
    let tag_keys = rules.tag_keys();
    let lines: Vec<CostLine> = records(&dir.join("lines.csv"))
        .into_iter()
        .map(|r| CostLine {
            billing_period: r["date"][..7].into(),
            usage_date: r["date"].as_str().into(),
            account: r["account"].as_str().into(),
            service: r["service"].as_str().into(),
            resource: r["resource"].as_str().into(),
            usage_type: r["usage_type"].as_str().into(),
            operation: "".into(),
            region: "ap-northeast-2".into(),
            charge_category: r["charge_category"].as_str().into(),
            pricing_category: r["pricing_category"].as_str().into(),
            instance_type: r["instance_type"].as_str().into(),
            // As ingest delivers tags: trimmed, empty as absent.
            tags: tag_keys.iter().map(|k| r.get(k).map(|v| v.trim()).filter(|v| !v.is_empty()).map(Into::into)).collect(),
            amount: r["amount"].parse::<Money>().unwrap(),
            line_items: 1,
            origin: 0,
        })
        .collect();
    let mut drivers = HashMap::new();
    for (rule, driver) in rules.metric_drivers() {
        let DriverSource::File { path, .. } = &driver.source else { panic!("golden drivers are files") };
        let samples =
            records(path).into_iter().map(|r| DriverSample { date: Some(r["date"].clone()), key: r.get("team").or(r.get("key")).unwrap().clone(), value: r["value"].parse().unwrap() }).collect();
        drivers.insert(rule.to_string(), samples);
    }
    let allocation = allocate(&rules, lines, &drivers).unwrap();
    allocation
        .team_totals()
        .into_iter()
        .map(|(team, t)| {
            let name = team.map_or(rules.unallocated.clone(), |i| rules.team(i).name.clone());
            (name, (t.direct.to_string(), t.shared.to_string(), t.total().to_string()))
        })
        .collect()
}

#[test]
fn every_golden_case_gives_its_expected_output() {
    let cases = cases();
    assert!(cases.len() >= 10, "one case per method and per precedence step");
    for dir in cases {
        let got = run_case(&dir);
        let expected: BTreeMap<String, (String, String, String)> =
            records(&dir.join("expected.csv")).into_iter().map(|r| (r["team"].clone(), (r["direct"].clone(), r["shared"].clone(), r["total"].clone()))).collect();
        for (team, want) in &expected {
            assert_eq!(got.get(team), Some(want), "{}: team {team}", dir.display());
        }
        for (team, (_, _, total)) in &got {
            if !expected.contains_key(team) {
                assert_eq!(total, "0.00", "{}: team {team} should get nothing", dir.display());
            }
        }
    }
}
