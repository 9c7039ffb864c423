//! Dimensions (docs/design.md §4): every piece carries a value of each dimension; each dimension
//! conserves the bill to the cent; a shared split lands on its teams' values by their own cost,
//! exactly; a line's own value wins; printed values are within a cent of exact and keep the team
//! totals of `summary.csv`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use finops_allocate::engine::{allocate, CostLine, DriverSample};
use finops_allocate::{Money, RuleSet};
use proptest::prelude::*;

const RULES: &str = r#"
version = 1
team_tags = ["team"]
[teams.search]
[teams.orders]
[teams.payments]

[[share]]
name = "db"
when = { service = ["AmazonRDS"] }
method = "even"
among = ["search", "orders"]

[[share]]
name = "support"
when = { service = ["AWSSupportBusiness"] }
method = "proportional"
among = "all"

[dimensions.project]
tags = ["project"]
aliases = { checkout = ["Checkout", "chk"] }

[dimensions.environment]
tags = ["env"]

[[dimensions.environment.assign]]
name = "sandbox"
when = { account = ["555"] }
value = "sandbox"

[[dimensions.environment.assign]]
name = "the rest runs production"
when = { account = ["111", "222"] }
value = "prod"
fallback = true
"#;

fn rules() -> RuleSet {
    RuleSet::parse(Path::new("dims.toml"), RULES).unwrap()
}

/// Tags given as (team, project, env); `rules.tag_keys()` orders them team, env, project
/// (dimensions go by name).
fn line(account: &str, service: &str, resource: &str, day: u32, tags: [Option<&str>; 3], amount: &str) -> CostLine {
    CostLine {
        billing_period: "2025-10".into(),
        usage_date: format!("2025-10-{day:02}").into(),
        account: account.into(),
        service: service.into(),
        resource: resource.into(),
        usage_type: "u".into(),
        operation: "".into(),
        region: "".into(),
        charge_category: "Usage".into(),
        pricing_category: "OnDemand".into(),
        instance_type: "".into(),
        tags: [tags[0], tags[2], tags[1]].iter().map(|t| t.map(Into::into)).collect(),
        amount: amount.parse().unwrap(),
        line_items: 1,
        origin: 0,
    }
}

/// Exact amount per (team, project, environment).
fn exact_by(allocation: &finops_allocate::Allocation, rules: &RuleSet) -> BTreeMap<(String, String, String), Money> {
    let mut out = BTreeMap::new();
    for p in &allocation.pieces {
        let team = p.team.map_or("unallocated".to_string(), |t| rules.team(t).name.clone());
        // Dimensions go by name: environment, then project.
        *out.entry((team, p.dims[1].to_string(), p.dims[0].to_string())).or_insert(Money::ZERO) += p.amount;
    }
    out
}

#[test]
fn a_shared_split_lands_on_its_teams_projects_by_their_own_cost_exactly() {
    let rules = rules();
    assert_eq!(rules.tag_keys(), vec!["team", "env", "project"]);
    let lines = vec![
        // search's own cost: 70 on checkout (one tag spelt as an alias), 30 on search-api.
        line("222", "AmazonEC2", "i-1", 1, [Some("search"), Some("Checkout"), Some("prod")], "70"),
        line("222", "AmazonEC2", "i-2", 1, [Some("search"), Some("search-api"), None], "30"),
        // orders' own cost: all on checkout.
        line("222", "AmazonEC2", "i-3", 1, [Some("orders"), Some("checkout"), None], "50"),
        // The shared database, untagged: 10 split evenly, then by each team's own projects.
        line("222", "AmazonRDS", "db-1", 1, [None, None, None], "10"),
        // A shared line tagged with a project keeps it on every team's share.
        line("222", "AmazonRDS", "db-2", 1, [None, Some("ledger"), None], "4"),
        // The sandbox account's rule names the environment before any tag.
        line("555", "AmazonEC2", "i-4", 1, [Some("payments"), None, Some("prod")], "8"),
    ];
    let allocation = allocate(&rules, lines, &HashMap::new()).unwrap();
    let by = exact_by(&allocation, &rules);
    let m = |s: &str| s.parse::<Money>().unwrap();
    let get = |t: &str, p: &str, e: &str| by.get(&(t.to_string(), p.to_string(), e.to_string())).copied().unwrap_or(Money::ZERO);
    // search: own 70 checkout/prod + 30 search-api/prod (the untagged env falls back to prod);
    // its half of db-1 (5) splits 70/30: 3.5 and 1.5; its half of db-2 (2) is all `ledger`.
    assert_eq!(get("search", "checkout", "prod"), m("73.5"));
    assert_eq!(get("search", "search-api", "prod"), m("31.5"));
    assert_eq!(get("search", "ledger", "prod"), m("2"));
    assert_eq!(get("orders", "checkout", "prod"), m("55"));
    assert_eq!(get("orders", "ledger", "prod"), m("2"));
    assert_eq!(get("payments", "unassigned", "sandbox"), m("8"));
    // Nothing lost, nothing made: the pieces add up to the lines.
    assert_eq!(by.values().copied().sum::<Money>(), m("172"));
}

#[test]
fn a_team_without_own_cost_carries_its_share_as_unassigned() {
    let rules = rules();
    let lines = vec![line("222", "AmazonEC2", "i-1", 1, [Some("search"), Some("checkout"), None], "10"), line("222", "AmazonRDS", "db-1", 1, [None, None, None], "6")];
    let allocation = allocate(&rules, lines, &HashMap::new()).unwrap();
    let by = exact_by(&allocation, &rules);
    assert_eq!(by[&("orders".to_string(), "unassigned".to_string(), "prod".to_string())], "3".parse().unwrap());
    assert_eq!(by[&("search".to_string(), "checkout".to_string(), "prod".to_string())], "13".parse().unwrap());
}

const TEAMS: [Option<&str>; 4] = [Some("search"), Some("orders"), Some("payments"), None];
const PROJECTS: [Option<&str>; 5] = [Some("checkout"), Some("Checkout"), Some("search-api"), Some("x"), None];
const ENVS: [Option<&str>; 3] = [Some("prod"), Some("staging"), None];
const ACCOUNTS: [&str; 3] = ["111", "222", "555"];
const SERVICES: [&str; 3] = ["AmazonEC2", "AmazonRDS", "AWSSupportBusiness"];

prop_compose! {
    fn any_line()(team in 0..4usize, project in 0..5usize, env in 0..3usize, account in 0..3usize, service in 0..3usize, day in 1..4u32, resource in 0..5u32,
                  units in -2_000_000_000_000i128..40_000_000_000_000i128) -> CostLine {
        let mut l = line(ACCOUNTS[account], SERVICES[service], &format!("r-{resource}"), day, [TEAMS[team], PROJECTS[project], ENVS[env]], "0");
        l.amount = Money::from_units(units);
        l
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    /// Each dimension conserves the bill; each value's printed total is within a cent of its
    /// exact amount; the values add up to the month and each team's column to its total.
    #[test]
    fn every_dimension_conserves_the_bill_and_prints_each_value_within_a_cent(lines in proptest::collection::vec(any_line(), 1..80)) {
        let rules = rules();
        let input: Money = lines.iter().map(|l| l.amount).sum();
        let allocation = allocate(&rules, lines, &HashMap::<String, Vec<DriverSample>>::new()).unwrap();
        let totals = allocation.team_totals();
        let month: i64 = totals.values().map(|t| t.total().0).sum();
        for d in 0..rules.dimensions.len() {
            prop_assert!(allocation.pieces.iter().all(|p| p.dims.len() == rules.dimensions.len()));
            let table = allocation.dimension_table(&rules, d);
            prop_assert_eq!(table.exact.iter().copied().sum::<Money>(), input, "dimension {} conserves the bill", &table.name);
            prop_assert_eq!(table.totals.iter().map(|c| c.0).sum::<i64>(), month);
            for (exact, printed) in table.exact.iter().zip(&table.totals) {
                let diff = printed.0 as i128 * 10_000_000_000 - exact.units();
                prop_assert!(diff.abs() < 10_000_000_000, "{}: {} printed as {}", &table.name, exact, printed);
            }
            for (row, cells) in table.cells.iter().enumerate() {
                prop_assert_eq!(cells.iter().map(|c| c.0).sum::<i64>(), table.totals[row].0);
            }
            for (i, team) in table.teams.iter().enumerate() {
                let column: i64 = table.cells.iter().map(|row| row[i].0).sum();
                let summary = totals.get(team).map_or(0, |t| t.total().0);
                if table.rows_match_summary {
                    prop_assert_eq!(column, summary);
                } else {
                    prop_assert!((column - summary).abs() <= 1);
                }
            }
        }
    }
}
