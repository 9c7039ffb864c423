//! Proportional shares of cloud costs follow cloud spend (docs/design.md §4): on-prem GPU at the
//! rate card is left out of a team's own cost unless the rule says `proportional_to = "all"`.

use std::collections::HashMap;
use std::path::Path;

use finops_allocate::engine::{allocate, CostLine};
use finops_allocate::gpu::{ON_PREM_ACCOUNT, ON_PREM_SERVICE};
use finops_allocate::{Cents, Money, RuleSet};

fn line(account: &str, service: &str, charge_category: &str, tag: Option<&str>, amount: &str) -> CostLine {
    CostLine {
        billing_period: "2025-10".into(),
        usage_date: "2025-10-01".into(),
        account: account.into(),
        service: service.into(),
        resource: "r".into(),
        usage_type: "u".into(),
        operation: "".into(),
        region: "ap-northeast-2".into(),
        charge_category: charge_category.into(),
        pricing_category: "OnDemand".into(),
        instance_type: "".into(),
        tags: vec![tag.map(Into::into)].into(),
        amount: amount.parse().unwrap(),
        line_items: 1,
        origin: 0,
    }
}

/// search spends 100 in the cloud; ai spends 100 in the cloud and 800 on the on-prem host at the
/// rate card; 10 of tax is shared proportionally.
fn shares_of_tax(proportional_to: &str) -> (Cents, Cents, Vec<String>) {
    let text = format!(
        "version = 1\nteam_tags = [\"team\"]\n[teams.search]\n[teams.ai]\n\
         [[share]]\nname = \"tax\"\nwhen = {{ charge_category = [\"Tax\"] }}\nmethod = \"proportional\"\namong = \"all\"\n{proportional_to}"
    );
    let rules = RuleSet::parse(Path::new("basis.toml"), &text).unwrap_or_else(|e| panic!("{e}"));
    let lines = vec![
        line("111", "AmazonEC2", "Usage", Some("search"), "100"),
        line("111", "AmazonEC2", "Usage", Some("ai"), "100"),
        line(ON_PREM_ACCOUNT, ON_PREM_SERVICE, "Usage", Some("ai"), "800"),
        line("111", "AmazonEC2", "Tax", None, "10"),
    ];
    let allocation = allocate(&rules, lines, &HashMap::new()).unwrap();
    let totals = allocation.team_totals();
    let drivers = allocation.pieces.iter().filter_map(|p| p.driver.as_ref().map(|d| d.to_string())).collect();
    let shared = |team: &str| totals[&rules.resolve_team(team)].shared;
    (shared("search"), shared("ai"), drivers)
}

#[test]
fn tax_follows_cloud_spend_by_default_and_all_spend_when_the_rule_says_so() {
    let (search, ai, drivers) = shares_of_tax("");
    assert_eq!((search, ai), (Cents(500), Cents(500)), "the on-prem host does not draw AWS tax");
    assert!(drivers.iter().all(|d| d.contains("on the AWS bill")), "explain says the basis: {drivers:?}");
    assert!(drivers.contains(&"own cost 100.00 (direct + GPU on the AWS bill)".to_string()), "{drivers:?}");

    let (search, ai, drivers) = shares_of_tax("proportional_to = \"all\"\n");
    assert_eq!((search, ai), (Cents(100), Cents(900)), "all own cost, the rate card included");
    assert!(drivers.contains(&"own cost 900.00 (direct + GPU, on-prem at the rate card included)".to_string()), "{drivers:?}");
    assert_eq!(search.0 + ai.0, Money::from_units(10_000_000_000_000).round_to_cents().0);
}

#[test]
fn proportional_to_on_another_method_or_with_an_unknown_value_is_an_error_with_its_position() {
    let base = "version = 1\nteam_tags = [\"team\"]\n[teams.search]\n[[share]]\nname = \"tax\"\nwhen = { charge_category = [\"Tax\"] }\n";
    let e = RuleSet::parse(Path::new("basis.toml"), &format!("{base}method = \"even\"\namong = \"all\"\nproportional_to = \"all\"\n")).unwrap_err().to_string();
    assert!(e.contains("proportional_to is only read by method = \"proportional\"") && e.contains("basis.toml:9:"), "{e}");
    let e = RuleSet::parse(Path::new("basis.toml"), &format!("{base}method = \"proportional\"\namong = \"all\"\nproportional_to = \"clod\"\n")).unwrap_err().to_string();
    assert!(e.contains("clod") && e.contains("cloud") && e.contains("basis.toml:9:"), "{e}");
}
