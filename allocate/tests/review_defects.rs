//! Regression tests for defects a code review found (issue 8), each named after what it guards.

use std::collections::HashMap;
use std::path::Path;

use finops_allocate::engine::{allocate, AllocateError, CostLine, DriverSample, Kind};
use finops_allocate::{Cents, RuleSet};

fn rules(text: &str) -> RuleSet {
    RuleSet::parse(Path::new("review.toml"), text).unwrap_or_else(|e| panic!("{e}"))
}

fn line(service: &str, tag: Option<&str>, amount: &str) -> CostLine {
    CostLine {
        billing_period: "2025-10".into(),
        usage_date: "2025-10-01".into(),
        account: "111".into(),
        service: service.into(),
        resource: "r".into(),
        usage_type: "u".into(),
        operation: "".into(),
        region: "ap-northeast-2".into(),
        charge_category: "Usage".into(),
        pricing_category: "OnDemand".into(),
        instance_type: "".into(),
        tags: vec![tag.map(Into::into)].into(),
        amount: amount.parse().unwrap(),
        line_items: 1,
        origin: 0,
    }
}

/// Regression: GPU charges were recognised by rule name, so an `[[assign]]` named `gpu` landed in
/// both `direct` and `gpu`, and the summary row no longer added up.
#[test]
fn an_assign_rule_named_gpu_is_direct_cost() {
    let rules = rules("version = 1\nteam_tags = [\"team\"]\n[teams.ai]\n[[assign]]\nname = \"gpu\"\nwhen = { service = [\"AmazonEC2\"] }\nteam = \"ai\"\n");
    let allocation = allocate(&rules, vec![line("AmazonEC2", None, "12.34")], &HashMap::new()).unwrap();
    assert!(allocation.pieces.iter().all(|p| p.kind == Kind::Direct));
    let ai = &allocation.team_totals()[&Some(0)];
    assert_eq!((ai.direct, ai.gpu, ai.total()), (Cents(1234), Cents(0), Cents(1234)));
}

/// Regression: the unallocated row printed 0 direct and 0 shared although its untagged cost was
/// there; direct + shared + gpu = total must hold for every row, the unallocated bucket's too.
#[test]
fn the_unallocated_bucket_shows_its_direct_and_shared_parts() {
    let rules = rules(
        "version = 1\nteam_tags = [\"team\"]\n[teams.search]\n[teams.orders]\n\
         [[share]]\nname = \"egress\"\nwhen = { service = [\"AWSDataTransfer\"] }\nmethod = \"proportional\"\namong = [\"orders\"]\n",
    );
    // Untagged EC2 (no rule claims it) and egress to be shared by a team with no direct cost.
    let lines = vec![line("AmazonEC2", Some("search"), "5"), line("AmazonEC2", None, "1.25"), line("AWSDataTransfer", None, "2.5")];
    let allocation = allocate(&rules, lines, &HashMap::new()).unwrap();
    let totals = allocation.team_totals();
    let bucket = &totals[&None];
    assert_eq!((bucket.direct, bucket.shared, bucket.gpu), (Cents(125), Cents(250), Cents(0)));
    assert_eq!(bucket.total(), Cents(375));
    for t in totals.values() {
        assert_eq!(t.total().0, t.direct.0 + t.shared.0 + t.gpu.0);
    }
}

/// Regression: `[gpu] when = { tags = ... }` never matched, because the tag column it names was
/// never read: the rule set's tag keys ignored `[gpu]`.
#[test]
fn gpu_when_tags_are_read() {
    let rules = rules(
        "version = 1\nteam_tags = [\"team\"]\n[teams.ai]\n\
         [gpu]\nwhen = { tags = { gpu_pool = [\"training\"] } }\nnamespace_team = { \"ml-*\" = \"ai\" }\n",
    );
    assert_eq!(rules.tag_keys(), vec!["team".to_string(), "gpu_pool".to_string()]);
}

/// Regression: a metric driver that measured zero for every target left the shared cost
/// unallocated without a word; it is an error naming the rule.
#[test]
fn a_metric_driver_summing_to_zero_is_an_error() {
    let rules = rules(
        "version = 1\nteam_tags = [\"team\"]\n[teams.search]\n[teams.orders]\n\
         [[share]]\nname = \"orders-db\"\nwhen = { service = [\"AmazonRDS\"] }\nmethod = \"metric\"\namong = [\"search\", \"orders\"]\n\
         metric = { source = \"prometheus\", query = \"q\" }\n",
    );
    let drivers = HashMap::from([("orders-db".to_string(), vec![DriverSample { date: None, key: "search".into(), value: 0.0 }, DriverSample { date: None, key: "orders".into(), value: 0.0 }])]);
    let error = allocate(&rules, vec![line("AmazonRDS", None, "10")], &drivers).unwrap_err();
    assert!(matches!(&error, AllocateError::ZeroDriver { rule, .. } if rule == "orders-db"), "{error}");
    assert!(error.to_string().contains("review.toml"), "{error}");
}

/// Regression: a huge fixed weight overflowed the integer weights (a panic); it is a rule error.
#[test]
fn a_huge_fixed_weight_is_a_rule_error() {
    let text = "version = 1\nteam_tags = [\"team\"]\n[teams.search]\n[teams.orders]\n\
                [[share]]\nname = \"support\"\nwhen = { service = [\"AWSSupportBusiness\"] }\nmethod = \"fixed\"\namong = [\"search\", \"orders\"]\n\
                weights = { search = 1e300, orders = 1e300 }\n";
    let error = RuleSet::parse(Path::new("review.toml"), text).unwrap_err().to_string();
    assert!(error.contains("percentage between 0 and 100"), "{error}");
}

/// Decisions are cached per distinct match key, keyed by the values' shared allocations (as the
/// grain interns them). Lines sharing their values must get exactly what lines with copies get.
#[test]
fn decisions_cached_per_match_key_equal_decisions_per_line() {
    let rules = rules(
        "version = 1\nteam_tags = [\"team\"]\n[teams.search]\naliases = [\"Search\"]\n[teams.orders]\n\
         [[assign]]\nname = \"acct\"\nwhen = { account = [\"222\"] }\nteam = \"orders\"\n\
         [[share]]\nname = \"db\"\nwhen = { service = [\"AmazonRDS\"] }\nmethod = \"even\"\namong = [\"search\", \"orders\"]\n\
         [[assign]]\nname = \"fallback\"\nwhen = { account = [\"111\"] }\nteam = \"search\"\nfallback = true\n",
    );
    let services: [finops_allocate::engine::Dim; 3] = ["AmazonEC2".into(), "AmazonRDS".into(), "AmazonS3".into()];
    let accounts: [finops_allocate::engine::Dim; 3] = ["111".into(), "222".into(), "333".into()];
    let tags: [Option<finops_allocate::engine::Dim>; 4] = [Some("search".into()), Some("Search".into()), Some("ghost".into()), None];
    let mut shared = Vec::new();
    for day in 1..=3 {
        for (i, service) in services.iter().enumerate() {
            for (j, account) in accounts.iter().enumerate() {
                for (k, tag) in tags.iter().enumerate() {
                    let mut l = line("x", None, &format!("{}.{}{}{}", day, i, j, k));
                    l.usage_date = format!("2025-10-0{day}").into();
                    l.service = service.clone();
                    l.account = account.clone();
                    l.tags = vec![tag.clone()].into();
                    shared.push(l);
                }
            }
        }
    }
    // The same lines, every value its own copy: no two lines share a key.
    let copied: Vec<CostLine> =
        shared.iter().map(|l| CostLine { service: (*l.service).into(), account: (*l.account).into(), tags: vec![l.tags[0].as_deref().map(Into::into)].into(), ..l.clone() }).collect();
    let view = |lines: Vec<CostLine>| {
        let a = allocate(&rules, lines, &HashMap::new()).unwrap();
        a.pieces.iter().map(|p| (a.lines[p.line as usize].amount, p.team, p.kind, p.rule.to_string(), p.cents)).collect::<Vec<_>>()
    };
    let (cached, uncached) = (view(shared), view(copied));
    assert!(cached.iter().any(|p| p.3 == "db") && cached.iter().any(|p| p.3 == "fallback") && cached.iter().any(|p| p.3 == "tag:team"));
    assert_eq!(cached, uncached);
}
