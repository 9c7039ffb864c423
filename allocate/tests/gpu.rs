//! GPU chargeback (docs/design.md §5): the README's worked example, on-prem pricing, the errors, and
//! the guarantee that GPU cost allocated equals GPU cost billed, to the cent, whatever the usage.

use std::collections::HashMap;
use std::path::Path;

use finops_allocate::engine::{allocate_with_gpu, Allocation, CostLine, Kind};
use finops_allocate::gpu::{GpuNode, GpuUsage, GpuUsageReport, GPU_IDLE_RULE, GPU_RULE};
use finops_allocate::{Cents, Money, RuleSet};
use proptest::prelude::*;

const P4D: &str = "ip-10-0-1-11";

fn rules(basis: &str, idle: &str, extra: &str) -> RuleSet {
    let text = format!(
        "version = 1\nteam_tags = [\"team\"]\n[teams.ai]\n[teams.search]\n[teams.platform]\n\
         [gpu]\nwhen = {{ instance_family = [\"p4d\"] }}\nnamespace_team = {{ \"ml-*\" = \"ai\", \"search-*\" = \"search\" }}\n\
         basis = \"{basis}\"\nidle = \"{idle}\"\n{extra}"
    );
    RuleSet::parse(Path::new("gpu.toml"), &text).unwrap_or_else(|e| panic!("{e}"))
}

fn gpu_line(day: u32, amount: &str, pricing: &str) -> CostLine {
    CostLine {
        billing_period: "2025-10".into(),
        usage_date: format!("2025-10-{day:02}").into(),
        account: "444444444444".into(),
        service: "AmazonEC2".into(),
        resource: "i-0p4d".into(),
        usage_type: "APN2-BoxUsage:p4d.24xlarge".into(),
        operation: "RunInstances".into(),
        region: "ap-northeast-2".into(),
        charge_category: "Usage".into(),
        pricing_category: pricing.into(),
        instance_type: "p4d.24xlarge".into(),
        tags: vec![Some("ai".into())].into(),
        amount: amount.parse().unwrap(),
        line_items: 1,
        origin: 0,
    }
}

fn usage(node: &str, namespace: &str, hours: f64, utilization_pct: f64) -> GpuUsage {
    GpuUsage {
        node: node.into(),
        gpu_model: "NVIDIA A100-SXM4-40GB".into(),
        mig_profile: "".into(),
        namespace: namespace.into(),
        pod: if namespace.is_empty() { "".into() } else { format!("{namespace}-0") },
        gpu_hours: hours,
        busy_hours: hours * utilization_pct / 100.0,
        idle_hours: if utilization_pct < 10.0 { hours } else { 0.0 },
        weight_hours: None,
    }
}

fn report(usage: Vec<GpuUsage>, nodes: Vec<GpuNode>) -> GpuUsageReport {
    let observed = usage.iter().map(|u| u.gpu_hours).sum();
    GpuUsageReport {
        period: "2025-10".into(),
        source: "test".into(),
        usage,
        nodes,
        expected_hours: observed,
        capacity_hours: Default::default(),
        observed_hours: observed,
        days: vec![],
        request_based: false,
    }
}

fn p4d_node() -> GpuNode {
    GpuNode { node: P4D.into(), instance_type: "p4d.24xlarge".into(), capacity: "on-demand".into() }
}

/// Cents per (team name or "unallocated", rule).
fn cents_by(rules: &RuleSet, allocation: &Allocation) -> HashMap<(String, String), i64> {
    let mut out = HashMap::new();
    for p in &allocation.pieces {
        let team = p.team.map_or("unallocated".to_string(), |t| rules.team(t).name.clone());
        *out.entry((team, p.rule.to_string())).or_default() += p.cents.0;
    }
    out
}

/// The README's worked example: $8,000 of p4d for 800 GPU-hours; ai holds 600 at 80%, search 200
/// at 5%. `allocated` charges by time: ai 6,000, search 2,000. `corrected` weighs search's hours
/// at 0.4 (the 0-20% band): search pays 800, and the 1,200 it no longer pays is the idle pool —
/// kept visible with `separate`, or shared back by weight with `share`. Nothing is lost.
#[test]
fn worked_example_low_utilisation_pays_less_under_corrected_and_the_difference_is_the_idle_pool() {
    let lines = vec![gpu_line(1, "4000", "OnDemand"), gpu_line(2, "4000", "OnDemand")];
    let usage = report(vec![usage(P4D, "ml-training", 600.0, 80.0), usage(P4D, "search-ranking", 200.0, 5.0)], vec![p4d_node()]);
    let get = |m: &HashMap<(String, String), i64>, team: &str, rule: &str| m.get(&(team.to_string(), rule.to_string())).copied().unwrap_or(0);

    let r = rules("allocated", "separate", "");
    let a = cents_by(&r, &allocate_with_gpu(&r, lines.clone(), &HashMap::new(), Some(&usage)).unwrap());
    assert_eq!((get(&a, "ai", GPU_RULE), get(&a, "search", GPU_RULE), get(&a, "unallocated", GPU_IDLE_RULE)), (600_000, 200_000, 0));

    let r = rules("corrected", "separate", "");
    let c = cents_by(&r, &allocate_with_gpu(&r, lines.clone(), &HashMap::new(), Some(&usage)).unwrap());
    assert_eq!((get(&c, "ai", GPU_RULE), get(&c, "search", GPU_RULE), get(&c, "unallocated", GPU_IDLE_RULE)), (600_000, 80_000, 120_000));
    assert_eq!(get(&a, "search", GPU_RULE) - get(&c, "search", GPU_RULE), get(&c, "unallocated", GPU_IDLE_RULE), "what search no longer pays is the idle pool");

    let r = rules("corrected", "share", "");
    let s = cents_by(&r, &allocate_with_gpu(&r, lines.clone(), &HashMap::new(), Some(&usage)).unwrap());
    // 1,200 shared 600:80 -> 1,058.82 and 141.18.
    assert_eq!((get(&s, "ai", GPU_IDLE_RULE), get(&s, "search", GPU_IDLE_RULE)), (105_882, 14_118));
    assert_eq!(get(&s, "search", GPU_RULE) + get(&s, "search", GPU_IDLE_RULE), 94_118);

    let r = rules("corrected", "team:platform", "");
    let t = cents_by(&r, &allocate_with_gpu(&r, lines, &HashMap::new(), Some(&usage)).unwrap());
    assert_eq!(get(&t, "platform", GPU_IDLE_RULE), 120_000);
}

#[test]
fn utilization_weighted_charges_busy_hours_and_no_pod_time_joins_the_idle_pool() {
    let lines = vec![gpu_line(1, "1000", "OnDemand")];
    // 100 GPU-h: ai 50 at 80% (busy 40), search 30 at 50% (busy 15), 20 with no pod.
    let usage = report(vec![usage(P4D, "ml-a", 50.0, 80.0), usage(P4D, "search-b", 30.0, 50.0), usage(P4D, "", 20.0, 0.0)], vec![p4d_node()]);
    let r = rules("utilization_weighted", "separate", "");
    let allocation = allocate_with_gpu(&r, lines, &HashMap::new(), Some(&usage)).unwrap();
    let m = cents_by(&r, &allocation);
    assert_eq!(m[&("ai".into(), GPU_RULE.into())], 40_000);
    assert_eq!(m[&("search".into(), GPU_RULE.into())], 15_000);
    assert_eq!(m[&("unallocated".into(), GPU_IDLE_RULE.into())], 45_000);
    let pool = &allocation.gpu[0];
    assert!((pool.unassigned_hours - 20.0).abs() < 1e-9 && (pool.idle_pool_hours - 45.0).abs() < 1e-6, "{pool:?}");
}

#[test]
fn spot_and_on_demand_are_separate_pools_and_unused_pools_fall_through_to_the_rules() {
    // On-Demand $300 and Spot $100 of the same type; only the Spot node reported usage.
    let lines = vec![gpu_line(1, "300", "OnDemand"), gpu_line(1, "100", "Spot")];
    let spot = GpuNode { node: "spot-1".into(), instance_type: "p4d.24xlarge".into(), capacity: "spot".into() };
    let usage = report(vec![usage("spot-1", "search-x", 10.0, 50.0)], vec![spot]);
    let r = rules("allocated", "share", "");
    let allocation = allocate_with_gpu(&r, lines, &HashMap::new(), Some(&usage)).unwrap();
    let m = cents_by(&r, &allocation);
    assert_eq!(m[&("search".into(), GPU_RULE.into())], 10_000, "the Spot pool goes to the team that used it");
    assert_eq!(m[&("ai".into(), "tag:team".into())], 30_000, "the unmeasured On-Demand pool is charged by its tag");
    assert_eq!(allocation.gpu.iter().filter(|p| p.charged).count(), 1);
}

/// The on-prem host's cost over its lines, which spread it over every day of the period, equally
/// to the unit of money (split exactly, so the parts add up to the month's product).
fn on_prem_cost(allocation: &finops_allocate::Allocation, period: &str) -> Money {
    let lines: Vec<&finops_allocate::engine::CostLine> = allocation.lines.iter().filter(|l| &*l.service == "OnPremGPU").collect();
    let days: std::collections::BTreeSet<&str> = lines.iter().map(|l| &*l.usage_date).collect();
    let first = chrono::NaiveDate::parse_from_str(&format!("{period}-01"), "%Y-%m-%d").unwrap();
    let in_period = first.iter_days().take_while(|d| d.format("%Y-%m").to_string() == period).count();
    assert_eq!((lines.len(), days.len()), (in_period, in_period), "a line per day of {period}");
    let (low, high) = (lines.iter().map(|l| l.amount).min().unwrap(), lines.iter().map(|l| l.amount).max().unwrap());
    assert!((high - low).units().abs() <= 1, "equal parts: {low} to {high}");
    lines.iter().map(|l| l.amount).sum()
}

#[test]
fn on_prem_hosts_are_priced_by_the_rate_card_and_unpriced_hosts_are_an_error() {
    let dgx = |ns: &str, h: f64| GpuUsage { gpu_model: "NVIDIA A100-SXM4-80GB".into(), ..usage("dgx-1", ns, h, 60.0) };
    let usage = report(vec![dgx("ml-train", 100.0), dgx("search-y", 50.0), dgx("", 50.0)], vec![]);
    let r = rules("allocated", "share", "rate_card = { \"NVIDIA A100-SXM4-80GB\" = 1.85 }\n");
    let allocation = allocate_with_gpu(&r, vec![], &HashMap::new(), Some(&usage)).unwrap();
    // 200 GPU-h x $1.85 = $370: ai 100 + share of 50 idle (2/3), search 50 + 1/3.
    assert_eq!(on_prem_cost(&allocation, &usage.period), "370".parse::<Money>().unwrap());
    let m = cents_by(&r, &allocation);
    assert_eq!(m[&("ai".into(), GPU_RULE.into())] + m[&("ai".into(), GPU_IDLE_RULE.into())], 24_667);
    assert_eq!(m[&("search".into(), GPU_RULE.into())] + m[&("search".into(), GPU_IDLE_RULE.into())], 12_333);

    let r = rules("allocated", "share", "");
    let err = allocate_with_gpu(&r, vec![], &HashMap::new(), Some(&usage)).unwrap_err().to_string();
    assert!(
        err.starts_with("gpu.toml:")
            && err.contains("node `dgx-1` (NVIDIA A100-SXM4-80GB) has GPU usage and has no instance type")
            && err.contains("rate_card = { \"NVIDIA A100-SXM4-80GB\" = <price per GPU-hour> }"),
        "{err}"
    );
}

/// Regression (issue 9): an on-prem host was charged for the GPU-hours its exporter reported,
/// so a scrape gap made the hardware cheaper. It costs its capacity — GPUs x period hours x
/// rate — and the unreported hours are idle.
#[test]
fn an_on_prem_host_costs_its_capacity_whatever_the_exporter_reported() {
    let dgx = |ns: &str, h: f64| GpuUsage { gpu_model: "NVIDIA A100-SXM4-80GB".into(), ..usage("dgx-1", ns, h, 60.0) };
    // 8 GPUs over October (744 h) = 5952 GPU-h of capacity; the exporter reported 5900 (a gap).
    let mut usage = report(vec![dgx("ml-train", 4000.0), dgx("search-y", 1900.0)], vec![]);
    usage.capacity_hours.insert("dgx-1".into(), 8.0 * 744.0);
    usage.expected_hours = 8.0 * 744.0;
    let r = rules("allocated", "separate", "rate_card = { \"NVIDIA A100-SXM4-80GB\" = 1.85 }\n");
    let allocation = allocate_with_gpu(&r, vec![], &HashMap::new(), Some(&usage)).unwrap();
    assert_eq!(on_prem_cost(&allocation, &usage.period), "11011.20".parse::<Money>().unwrap(), "8 GPUs x 744 h x 1.85");
    let pool = allocation.gpu.iter().find(|p| p.key.node == "dgx-1").unwrap();
    assert!((pool.unobserved_hours - 52.0).abs() < 1e-9, "{}", pool.unobserved_hours);
    let m = cents_by(&r, &allocation);
    // The teams pay for what they held (4000 and 1900 of 5952 GPU-h); the 52 unreported hours
    // are the separate idle pool: 52 x 1.85 = 96.20.
    assert_eq!(m[&("ai".into(), GPU_RULE.into())], 740_000);
    assert_eq!(m[&("search".into(), GPU_RULE.into())], 351_500);
    assert_eq!(m[&("unallocated".into(), GPU_IDLE_RULE.into())], 9_620);
    let idle = allocation.pieces.iter().find(|p| &*p.rule == GPU_IDLE_RULE).unwrap();
    assert!(idle.driver.as_deref().unwrap().contains("52.0 not reported by the exporter"), "{:?}", idle.driver);
}

/// Regression: a cloud node with an instance type but no billed pool (billed in another payer, or
/// a capacity label that disagrees) was priced from the rate card: an invented cost, counted
/// twice once the real lines were tagged. It is measured but unbilled: a pool with no cost.
#[test]
fn a_cloud_node_without_a_billed_pool_is_never_priced_by_the_rate_card() {
    let node = GpuNode { node: "ip-10-0-9-9".into(), instance_type: "p4d.24xlarge".into(), capacity: "spot".into() };
    let a100 = GpuUsage { gpu_model: "NVIDIA A100-SXM4-80GB".into(), ..usage("ip-10-0-9-9", "ml-train", 100.0, 60.0) };
    let usage = report(vec![a100], vec![node]);
    let r = rules("allocated", "share", "rate_card = { \"NVIDIA A100-SXM4-80GB\" = 1.85 }\n");
    // The month bills only On-Demand p4d; the node says Spot.
    let allocation = allocate_with_gpu(&r, vec![gpu_line(1, "300", "OnDemand")], &HashMap::new(), Some(&usage)).unwrap();
    assert!(allocation.lines.iter().all(|l| &*l.service != "OnPremGPU"), "no rate-card cost for a cloud node");
    let total: Money = allocation.pieces.iter().map(|p| p.amount).sum();
    assert_eq!(total, "300".parse::<Money>().unwrap(), "the bill, and nothing invented");
    let pool = allocation.gpu.iter().find(|p| p.key.capacity == finops_allocate::gpu::Capacity::Spot).expect("the node's pool is reported");
    assert!(pool.cost.is_zero() && (pool.gpu_hours - 100.0).abs() < 1e-9, "{pool:?}");
}

#[test]
fn gpu_rule_errors_name_the_position_and_the_fix() {
    let bad = |extra: &str| {
        let text = format!("version = 1\nteam_tags = [\"team\"]\n[teams.ai]\n[gpu]\nwhen = {{ instance_family = [\"p4d\"] }}\n{extra}\n");
        RuleSet::parse(Path::new("gpu.toml"), &text).unwrap_err().to_string()
    };
    assert_eq!(bad("basis = \"fair\""), "gpu.toml:6:9: unknown variant `fair`, expected one of `allocated`, `utilization_weighted`, `corrected`");
    assert!(bad("basis = \"corrected\"\ncorrection = [[40, 0.8], [70, 1.0]]").starts_with("gpu.toml:7:14: [gpu] correction must list"));
    assert_eq!(bad("idle = \"team:ml\""), "gpu.toml:6:8: unknown team `ml` in [gpu] idle: add it under [teams.ml] or fix the name (did you mean `ai`?)");
    assert_eq!(bad("idle = \"nobody\""), "gpu.toml:6:8: [gpu] idle = \"nobody\": use \"share\", \"separate\" or \"team:<name>\"");
    assert_eq!(bad("namespace_team = { \"ml-*\" = \"al\" }"), "gpu.toml:6:29: unknown team `al` in [gpu] namespace_team: add it under [teams.al] or fix the name (did you mean `ai`?)");
    assert_eq!(bad("rate_card = { \"A100\" = -1 }"), "gpu.toml:6:24: [gpu] rate_card price -1 for `A100` must be a positive price per GPU-hour");
    assert!(bad("gpus = 8").starts_with("gpu.toml:6:1: unknown field `gpus`"));
}

prop_compose! {
    fn usage_record()(node in 0..3usize, ns in 0..5usize, hours in 0.0..500.0f64, util in 0.0..100.0f64) -> GpuUsage {
        let nodes = ["od-1", "spot-1", "dgx-1"];
        // "" is time with no pod; "batch" has no team.
        let namespaces = ["ml-train", "search-rank", "", "batch", "ml-serve"];
        let model = if node == 2 { "NVIDIA A100-SXM4-80GB" } else { "NVIDIA A100-SXM4-40GB" };
        GpuUsage { gpu_model: model.into(), ..usage(nodes[node], namespaces[ns], hours, util) }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Whatever the usage, basis and idle policy: every GPU line is split exactly (in 10^-12
    /// units), each (account, service) group's cents equal its rounded total, GPU cost charged
    /// equals GPU cost billed plus the rate-card cost, and nothing is negative.
    #[test]
    fn gpu_cost_allocated_equals_gpu_cost_billed(
        records in proptest::collection::vec(usage_record(), 0..12),
        amounts in proptest::collection::vec(0i128..40_000_000_000_000_000, 1..6),
        basis in 0..3usize,
        idle in 0..3usize,
    ) {
        let basis = ["allocated", "utilization_weighted", "corrected"][basis];
        let idle = ["share", "separate", "team:platform"][idle];
        let r = rules(basis, idle, "rate_card = { \"NVIDIA A100-SXM4-80GB\" = 1.85 }\n");
        let mut lines = Vec::new();
        for (i, units) in amounts.iter().enumerate() {
            let mut line = gpu_line(1 + i as u32, "0", if i % 2 == 0 { "OnDemand" } else { "Spot" });
            line.amount = Money::from_units(*units);
            lines.push(line);
        }
        let nodes = vec![
            GpuNode { node: "od-1".into(), instance_type: "p4d.24xlarge".into(), capacity: "on-demand".into() },
            GpuNode { node: "spot-1".into(), instance_type: "p4d.24xlarge".into(), capacity: "spot".into() },
        ];
        let billed: Money = lines.iter().map(|l| l.amount).sum();
        let usage = report(records, nodes);
        let allocation = allocate_with_gpu(&r, lines, &HashMap::new(), Some(&usage)).unwrap();
        for (i, line) in allocation.lines.iter().enumerate() {
            let pieces: Vec<_> = allocation.pieces.iter().filter(|p| p.line as usize == i).collect();
            prop_assert_eq!(pieces.iter().map(|p| p.amount).sum::<Money>(), line.amount);
            prop_assert!(pieces.iter().all(|p| !p.amount.is_negative() && p.cents.0 >= 0));
        }
        let on_prem: Money = allocation.lines.iter().filter(|l| &*l.service == "OnPremGPU").map(|l| l.amount).sum();
        let all: Money = allocation.pieces.iter().map(|p| p.amount).sum();
        prop_assert_eq!(all, billed + on_prem);
        let cents: Cents = allocation.pieces.iter().map(|p| p.cents).sum();
        let mut groups: Vec<Money> = Vec::new();
        for service in ["AmazonEC2", "OnPremGPU"] {
            groups.push(allocation.lines.iter().filter(|l| &*l.service == service).map(|l| l.amount).sum());
        }
        prop_assert_eq!(cents, finops_allocate::money::round_largest_remainder(&groups).into_iter().sum::<Cents>());
        // GPU pieces only carry GPU rules; a measured pool's lines never go through tags.
        for p in &allocation.pieces {
            let line = &allocation.lines[p.line as usize];
            let pool_measured = allocation.gpu.iter().any(|g| g.charged && g.key == finops_allocate::gpu::PoolKey::of_charged_line(line));
            if pool_measured {
                prop_assert!(&*p.rule == GPU_RULE || &*p.rule == GPU_IDLE_RULE, "{:?}", p);
            }
            // GPU chargeback's pieces, and only they, count as GPU cost (unmapped namespaces and a
            // separate idle pool included, in the unallocated bucket).
            prop_assert_eq!(p.kind == Kind::Gpu, &*p.rule == finops_allocate::gpu::GPU_RULE || &*p.rule == finops_allocate::gpu::GPU_IDLE_RULE);
        }
    }
}
