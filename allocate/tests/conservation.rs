//! Property tests of the engine's money guarantees (docs/design.md §3): every cent of the input lands
//! on a team or `unallocated`, per source group to the cent; non-negative input never yields a
//! negative share; the order of the input does not change the result.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use finops_allocate::engine::{allocate, CostLine, DriverSample, Kind};
use finops_allocate::{Cents, Money, RuleSet};
use proptest::prelude::*;

const TEAMS: [&str; 4] = ["search", "orders", "payments", "data"];
const ACCOUNTS: [&str; 3] = ["111", "222", "333"];
const SERVICES: [&str; 5] = ["AmazonEC2", "AmazonRDS", "AmazonMSK", "AmazonS3", "AWSSupportBusiness"];
const TAGS: [Option<&str>; 6] = [Some("search"), Some("Orders"), Some("검색"), Some("ghost"), None, Some("payments")];

fn rules_text(assign_account: usize, share_service: usize, method: usize, among_all: bool, fallback: bool) -> String {
    let methods = ["even", "fixed", "proportional", "metric"];
    let method = methods[method % methods.len()];
    let among = if among_all && method != "fixed" { "\"all\"".to_string() } else { "[\"search\", \"orders\", \"payments\"]".to_string() };
    let extra = match method {
        "fixed" => "weights = { search = 50, orders = 30.5, payments = 19.5 }\n".to_string(),
        "metric" => "metric = { source = \"file\", path = \"drivers.csv\" }\n".to_string(),
        _ => "".into(),
    };
    let fallback = if fallback { "[[assign]]\nname = \"fallback\"\nwhen = { account = [\"333\"] }\nteam = \"data\"\nfallback = true\n" } else { "" };
    format!(
        "version = 1\nteam_tags = [\"team\"]\n\
         [teams.search]\naliases = [\"검색\"]\n[teams.orders]\naliases = [\"Orders\"]\n[teams.payments]\n[teams.data]\n\
         [[assign]]\nname = \"acct\"\nwhen = {{ account = [\"{}\"] }}\nteam = \"data\"\n\
         [[share]]\nname = \"shared\"\nwhen = {{ service = [\"{}\"] }}\nmethod = \"{method}\"\namong = {among}\n{extra}\
         {fallback}",
        ACCOUNTS[assign_account % 3],
        SERVICES[share_service % 5]
    )
}

prop_compose! {
    fn cost_line(allow_negative: bool)(
        account in 0..3usize, service in 0..5usize, tag in 0..6usize, day in 1..4u32, resource in 0..4u32,
        units in if allow_negative { -5_000_000_000_000i128..50_000_000_000_000i128 } else { 0i128..50_000_000_000_000i128 },
    ) -> CostLine {
        CostLine {
            billing_period: "2025-10".into(),
            usage_date: format!("2025-10-0{day}").into(),
            account: ACCOUNTS[account].into(),
            service: SERVICES[service].into(),
            resource: format!("r-{resource}").into(),
            usage_type: "u".into(),
            operation: "".into(),
            region: "ap-northeast-2".into(),
            charge_category: if units < 0 { "Credit".into() } else { "Usage".into() },
            pricing_category: "OnDemand".into(),
            instance_type: "".into(),
            tags: vec![TAGS[tag].map(Into::into)].into(),
            amount: Money::from_units(units),
            line_items: 1,
            origin: 0,
        }
    }
}

fn drivers(weights: &[u32]) -> HashMap<String, Vec<DriverSample>> {
    let samples = TEAMS[..3].iter().zip(weights).map(|(t, w)| DriverSample { date: Some("2025-10-01".into()), key: t.to_string(), value: *w as f64 }).collect();
    HashMap::from([("shared".to_string(), samples)])
}

fn parse(text: &str) -> RuleSet {
    RuleSet::parse(Path::new("prop.toml"), text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// A canonical view of the result to compare runs: (line, team, kind, rule, exact, cents).
fn canonical(allocation: &finops_allocate::Allocation) -> Vec<(CostLine, Option<usize>, Kind, String, Money, Cents)> {
    let mut v: Vec<_> = allocation.pieces.iter().map(|p| (allocation.lines[p.line as usize].clone(), p.team, p.kind, p.rule.to_string(), p.amount, p.cents)).collect();
    v.sort_by(|a, b| (&a.0, a.1, &a.3).cmp(&(&b.0, b.1, &b.3)));
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn every_cent_is_conserved_per_source_group(
        lines in proptest::collection::vec(cost_line(true), 1..60),
        assign in 0..3usize, share in 0..5usize, method in 0..4usize, among_all: bool, fallback: bool,
        weights in proptest::collection::vec(0..1000u32, 3),
    ) {
        let rules = parse(&rules_text(assign, share, method, among_all, fallback));
        let weights = if weights.iter().all(|w| *w == 0) { vec![1, 0, 0] } else { weights };
        let allocation = allocate(&rules, lines.clone(), &drivers(&weights)).unwrap();
        // Exact: the pieces' amounts add up to the input, in 10^-12 units.
        let input: Money = lines.iter().map(|l| l.amount).sum();
        let pieces: Money = allocation.pieces.iter().map(|p| p.amount).sum();
        prop_assert_eq!(pieces, input);
        // To the cent, per (period, account, service): the printed pieces add up to the group's
        // figure, which is within a cent of its exact total ...
        let mut groups: BTreeMap<(String, String), (Money, i64)> = BTreeMap::new();
        for l in &lines {
            groups.entry((l.account.to_string(), l.service.to_string())).or_default().0 += l.amount;
        }
        for p in &allocation.pieces {
            let l = &allocation.lines[p.line as usize];
            groups.get_mut(&(l.account.to_string(), l.service.to_string())).unwrap().1 += p.cents.0;
        }
        for (key, (exact, printed)) in &groups {
            let diff = (exact.units() - Cents(*printed).to_money().units()).abs();
            prop_assert!(diff < Cents(1).to_money().units(), "group {:?}: {} printed as {}", key, exact, Cents(*printed));
        }
        // ... and the team totals plus unallocated add up exactly to the month's rounded total.
        let teams: i64 = allocation.team_totals().values().map(|t| t.total().0).sum();
        prop_assert_eq!(teams, input.round_to_cents().0);
        prop_assert_eq!(teams, groups.values().map(|(_, c)| c).sum::<i64>());
    }

    #[test]
    fn non_negative_input_never_gives_a_negative_share(
        lines in proptest::collection::vec(cost_line(false), 1..60),
        share in 0..5usize, method in 0..4usize, among_all: bool,
        weights in proptest::collection::vec(1..1000u32, 3),
    ) {
        let rules = parse(&rules_text(0, share, method, among_all, true));
        let allocation = allocate(&rules, lines, &drivers(&weights)).unwrap();
        for p in &allocation.pieces {
            prop_assert!(!p.amount.is_negative(), "negative piece {:?}", p);
            prop_assert!(p.cents.0 >= 0, "negative cents {:?}", p);
        }
    }

    #[test]
    fn row_order_does_not_change_the_result(
        lines in proptest::collection::vec(cost_line(true), 1..40),
        share in 0..5usize, method in 0..4usize, among_all: bool,
        seed in any::<u64>(),
    ) {
        let rules = parse(&rules_text(1, share, method, among_all, true));
        let forward = allocate(&rules, lines.clone(), &drivers(&[3, 2, 1])).unwrap();
        let mut shuffled = lines;
        // A seeded Fisher–Yates shuffle.
        let mut state = seed | 1;
        for i in (1..shuffled.len()).rev() {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            shuffled.swap(i, (state % (i as u64 + 1)) as usize);
        }
        let backward = allocate(&rules, shuffled, &drivers(&[3, 2, 1])).unwrap();
        prop_assert_eq!(canonical(&forward), canonical(&backward));
    }
}
