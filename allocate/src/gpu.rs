//! GPU chargeback (docs/design.md §5): GPU node cost charged to namespaces, and through them to teams,
//! by GPU-hours measured from DCGM exporter series.
//!
//! A **pool** is the cost of one kind of GPU capacity in the billing period: the billed line items
//! of one instance type bought one way (Spot apart from On-Demand, Savings Plan and Reserved), or
//! one on-prem host priced by the rate card. Each pool's cost is split over the GPU-hours observed
//! on its nodes: a team's weight is its namespaces' GPU-hours (`allocated`), their busy GPU-hours
//! (`utilization_weighted`) or their GPU-hours times the utilisation band's factor (`corrected`).
//! Every GPU-hour not carried by a team's weight — hours with no pod, and what utilisation takes
//! off a team — forms the **idle pool**, which `idle` sends back to the teams, keeps separate, or
//! gives to one team. The weights and the idle pool add up to the pool's GPU-hours, so GPU cost
//! allocated always equals GPU cost billed, exactly.

use std::collections::{BTreeMap, BTreeSet};

use crate::ledger::{AllocateError, CostLine, DimValues, Kind, Piece};
use crate::money::{split, Cents, Money};
// The `[gpu]` rule types are part of the rule set; they are named here too, where they are used.
pub use crate::rules::{GpuBasis, GpuRules, IdlePolicy, DEFAULT_CORRECTION};
use crate::rules::{RuleSet, TeamId};

/// Cost lines made for on-prem GPU hosts carry this service and account.
pub const ON_PREM_SERVICE: &str = "OnPremGPU";
pub const ON_PREM_ACCOUNT: &str = "on-prem";

/// Whether a source group (account, service) is the rate card's on-prem GPU cost, not the bill.
pub fn is_on_prem(account: &str, service: &str) -> bool {
    account == ON_PREM_ACCOUNT && service == ON_PREM_SERVICE
}

/// Why the team figures of `month` do not compare with those of `previous`, if they do not
/// (docs/design.md §6): GPU cost charged by measured usage in one month and by the other rules
/// in the other moves cost between teams, and brings or takes away on-prem hosts at the rate
/// card, without anyone spending differently. The bill still compares with the bill.
pub fn not_comparable(month: &str, measured: Option<bool>, previous: &str, previous_measured: Option<bool>) -> Option<String> {
    match (measured, previous_measured) {
        (Some(true), Some(false)) => {
            Some(format!("GPU usage was measured in {month} but not in {previous}, where GPU cost went by the other rules and on-prem GPU was not charged: team figures are not like with like"))
        }
        (Some(false), Some(true)) => {
            Some(format!("GPU usage was measured in {previous} but not in {month}, where GPU cost went by the other rules and on-prem GPU was not charged: team figures are not like with like"))
        }
        _ => None,
    }
}

/// The method of GPU pieces charged by split cost allocation data (in place of the basis).
pub const REQUESTED_BASIS: &str = "requested";

/// What weighed GPU-hours: the rules' basis, or `requested` where split cost allocation data's
/// request-based weights decided (the basis did not apply).
pub fn basis_name(gpu: &GpuRules, request_based: bool) -> &'static str {
    if request_based {
        REQUESTED_BASIS
    } else {
        gpu.basis.name()
    }
}

/// Rule names on GPU pieces.
pub const GPU_RULE: &str = "gpu";
pub const GPU_IDLE_RULE: &str = "gpu idle";

/// GPU-hours are weighed in micro GPU-hours: integers, so weights and the idle pool add up exactly.
const MICRO: f64 = 1e6;

/// How a GPU node is bought.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Capacity {
    OnDemand,
    Spot,
    OnPrem,
}

impl Capacity {
    pub fn as_str(self) -> &'static str {
        match self {
            Capacity::OnDemand => "OnDemand",
            Capacity::Spot => "Spot",
            Capacity::OnPrem => "OnPrem",
        }
    }

    /// From a node's capacity-type label (`spot`, `SPOT`, `on-demand`, `ON_DEMAND`) or a line's
    /// pricing category: Spot is Spot, everything else bought from AWS is On-Demand capacity.
    pub fn from_label(text: &str) -> Capacity {
        if text.to_ascii_lowercase().contains("spot") {
            Capacity::Spot
        } else {
            Capacity::OnDemand
        }
    }
}

/// GPU usage over a billing period for one (node, GPU model, MIG profile, namespace, pod).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GpuUsage {
    pub node: String,
    pub gpu_model: String,
    /// `1g.10gb` for a MIG slice, empty for a whole GPU.
    pub mig_profile: String,
    /// Empty when no pod held the GPU (unassigned time).
    pub namespace: String,
    pub pod: String,
    /// Time held, in hours, times the slice's share of its GPU (1 for a whole GPU).
    pub gpu_hours: f64,
    /// GPU-hours times utilisation (0..1): the busy part of `gpu_hours`.
    pub busy_hours: f64,
    /// The part of `gpu_hours` sampled under the idle threshold.
    pub idle_hours: f64,
    /// The weight the source decided, in GPU-hours (split cost allocation data: AWS's split of
    /// the node), instead of the one the rules' basis makes of the hours.
    pub weight_hours: Option<f64>,
}

/// What a node is, from the cluster's node labels; on-prem hosts have no instance type.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GpuNode {
    pub node: String,
    pub instance_type: String,
    pub capacity: String,
}

/// A billing period's GPU usage from one source.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GpuUsageReport {
    pub period: String,
    /// Where it came from (a Prometheus URL or a file), for the manifest.
    pub source: String,
    pub usage: Vec<GpuUsage>,
    pub nodes: Vec<GpuNode>,
    /// GPUs seen (MIG slices by their share) times the period's hours.
    pub expected_hours: f64,
    /// The same per node: a host's capacity in GPU-hours, what an on-prem host costs whether or
    /// not its exporter was scraped all the time.
    pub capacity_hours: BTreeMap<String, f64>,
    /// GPU-hours with samples; `observed / expected` is the coverage.
    pub observed_hours: f64,
    /// Per day, node and namespace: GPU-hours held and those under the idle threshold (for idle
    /// GPU alerts; time with no pod is not listed).
    pub days: Vec<GpuDay>,
    /// GPU-hours as requested, not measured (split cost allocation data): no utilisation.
    pub request_based: bool,
}

/// One namespace's GPU time on one node on one day.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GpuDay {
    /// `YYYY-MM-DD` (UTC).
    pub date: String,
    pub node: String,
    pub namespace: String,
    pub gpu_hours: f64,
    pub busy_hours: f64,
    pub idle_hours: f64,
}

impl GpuUsageReport {
    /// Share of the period with samples, over the GPUs seen (1 when there is nothing to cover).
    pub fn coverage(&self) -> f64 {
        if self.expected_hours > 0.0 {
            (self.observed_hours / self.expected_hours).min(1.0)
        } else {
            1.0
        }
    }
}

/// One pool: a kind of GPU capacity and its cost for the period.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PoolKey {
    /// The instance type, or the on-prem host's GPU model.
    pub instance_type: String,
    pub capacity: Capacity,
    /// The host, for on-prem pools (each is priced on its own).
    pub node: String,
}

impl PoolKey {
    /// The pool a cost line belongs to, if it is GPU capacity.
    fn of_line(line: &CostLine, gpu: &GpuRules, rules: &RuleSet, tag_keys: &[String], period: &str) -> Option<PoolKey> {
        if *line.billing_period != *period {
            return None;
        }
        if is_on_prem(&line.account, &line.service) {
            return Some(PoolKey::of_charged_line(line));
        }
        if &*line.charge_category != "Usage" && &*line.charge_category != "Credit" || !crate::precedence::line_matches(rules, tag_keys, line, &gpu.when) {
            return None;
        }
        Some(PoolKey::of_charged_line(line))
    }

    /// The pool of a line that GPU chargeback charged (its pieces carry the GPU rules).
    pub fn of_charged_line(line: &CostLine) -> PoolKey {
        if is_on_prem(&line.account, &line.service) {
            let model = line.usage_type.strip_prefix("GPU-hours:").unwrap_or(&line.usage_type);
            return PoolKey { instance_type: model.to_string(), capacity: Capacity::OnPrem, node: line.resource.to_string() };
        }
        PoolKey { instance_type: line.instance_type.to_string(), capacity: Capacity::from_label(&line.pricing_category), node: String::new() }
    }

    pub fn label(&self) -> String {
        match self.capacity {
            Capacity::OnPrem => format!("{} (on-prem)", self.node),
            c => format!("{} {}", self.instance_type, c.as_str()),
        }
    }
}

/// A team's GPU figures in one pool (`None` is namespaces with no team).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TeamGpu {
    pub gpu_hours: f64,
    pub busy_hours: f64,
    pub idle_hours: f64,
    /// What the basis made of the hours: the team's share of the pool is weight / pool hours.
    pub weight_hours: f64,
    pub namespaces: BTreeSet<String>,
    weight_units: u128,
}

/// Average utilisation in percent of busy GPU-hours over GPU-hours (0 when there are none).
pub fn utilization_pct(busy_hours: f64, gpu_hours: f64) -> f64 {
    if gpu_hours > 0.0 {
        100.0 * busy_hours / gpu_hours
    } else {
        0.0
    }
}

impl TeamGpu {
    pub fn utilization_pct(&self) -> f64 {
        utilization_pct(self.busy_hours, self.gpu_hours)
    }
}

/// One pod's GPU time in a pool: what `gpu-pods.csv` lists and `gpu-namespaces.csv` sums. A
/// team's charge in the pool is split over its pods by `weight_units`, so pods add up to it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodGpu {
    pub team: Option<TeamId>,
    pub namespace: String,
    pub pod: String,
    pub node: String,
    pub gpu_model: String,
    pub mig_profile: String,
    pub gpu_hours: f64,
    pub busy_hours: f64,
    pub idle_hours: f64,
    /// The pod's weight in micro GPU-hours (what the basis made of its hours).
    pub weight_units: u128,
}

/// A pool as charged: its cost, its hours and who carried them.
#[derive(Clone, Debug, PartialEq)]
pub struct GpuPool {
    pub key: PoolKey,
    pub gpu_model: String,
    pub nodes: Vec<String>,
    /// Exact cost of the pool's lines (the chosen cost basis).
    pub cost: Money,
    /// Every GPU-hour observed on the pool's nodes, with a pod or not.
    pub gpu_hours: f64,
    pub unassigned_hours: f64,
    /// On-prem hosts: capacity the exporter did not report (scrape gaps, outages). The host
    /// costs its capacity, so these hours are idle: they join the idle pool.
    pub unobserved_hours: f64,
    /// Hours not carried by any weight: unassigned and unobserved time plus what the basis took
    /// off.
    pub idle_pool_hours: f64,
    pub teams: BTreeMap<Option<TeamId>, TeamGpu>,
    /// Every pod that held the pool's GPUs, in usage order.
    pub pods: Vec<PodGpu>,
    /// False when no GPU-hours were observed: the lines then went through the other rules.
    pub charged: bool,
    /// Hours as requested (split cost allocation data), weighted as AWS split the node.
    pub request_based: bool,
    total_units: u128,
    idle_units: u128,
}

impl GpuPool {
    /// Cost per GPU-hour observed, for pricing idle hours in reports.
    pub fn cost_of_hours(&self, hours: f64) -> Money {
        if self.total_units == 0 {
            return Money::ZERO;
        }
        let units = (hours * MICRO).round().max(0.0) as u128;
        let parts = split(self.cost, &[units, self.total_units.saturating_sub(units).max(1)]);
        parts[0]
    }
}

/// Each GPU line's index and pool.
fn line_pools(rules: &RuleSet, gpu: &GpuRules, lines: &[CostLine], period: &str) -> Vec<(usize, PoolKey)> {
    let tag_keys = rules.tag_keys();
    lines.iter().enumerate().filter_map(|(i, line)| Some((i, PoolKey::of_line(line, gpu, rules, &tag_keys, period)?))).collect()
}

fn pool_costs(lines: &[CostLine], keyed: &[(usize, PoolKey)]) -> BTreeMap<PoolKey, Money> {
    let mut pools: BTreeMap<PoolKey, Money> = BTreeMap::new();
    for (i, key) in keyed {
        *pools.entry(key.clone()).or_default() += lines[*i].amount;
    }
    pools
}

/// Node -> (its pool, its GPU model).
pub struct NodePools(BTreeMap<String, (PoolKey, String)>);

/// The pool each node's GPU-hours go to: a cloud node (one with an instance type) the pool of its
/// type and capacity, whether or not the month bills it (a pool with no billing line has no cost:
/// measured but unbilled, never invented); a host with no instance type a pool of its own,
/// priced by the rate card.
fn node_pools(gpu: &GpuRules, usage: &GpuUsageReport) -> Result<NodePools, AllocateError> {
    let info: BTreeMap<&str, &GpuNode> = usage.nodes.iter().map(|n| (n.node.as_str(), n)).collect();
    let mut out = BTreeMap::new();
    for u in &usage.usage {
        if out.contains_key(&u.node) {
            continue;
        }
        let node = info.get(u.node.as_str());
        let cloud = node.filter(|n| !n.instance_type.is_empty()).map(|n| PoolKey { instance_type: n.instance_type.clone(), capacity: Capacity::from_label(&n.capacity), node: String::new() });
        let key = match cloud {
            // A cloud node (it has an instance type) joins the pool of its type and capacity. If
            // that pool has no billing line (billed in another payer, or a capacity label that
            // disagrees), its hours are reported as measured but unbilled, in a pool with no
            // cost: the rate card prices on-prem hosts only, never invents a cloud bill.
            Some(key) => key,
            None if gpu.rate(&u.gpu_model).is_some() => PoolKey { instance_type: u.gpu_model.clone(), capacity: Capacity::OnPrem, node: u.node.clone() },
            None => {
                return Err(AllocateError::GpuUnpriced {
                    node: u.node.clone(),
                    model: u.gpu_model.clone(),
                    what: "has no instance type in the node labels (an on-prem host)".into(),
                    at: gpu.at.to_string(),
                })
            }
        };
        out.insert(u.node.clone(), (key, u.gpu_model.clone()));
    }
    Ok(NodePools(out))
}

/// Which pool each node joins, and the cost lines of on-prem hosts: the host's capacity (its
/// GPUs times the period's hours) at the rate card's price. A scrape gap or an exporter outage
/// does not make the hardware cheaper: unobserved time joins the pool's idle GPU-hours.
pub fn on_prem_lines(rules: &RuleSet, gpu: &GpuRules, usage: &GpuUsageReport) -> Result<(NodePools, Vec<CostLine>), AllocateError> {
    let pools = node_pools(gpu, usage)?;
    let mut hosts: BTreeMap<(&str, &str), u128> = BTreeMap::new();
    for u in &usage.usage {
        if let Some((key, model)) = pools.0.get(&u.node) {
            if key.capacity == Capacity::OnPrem {
                *hosts.entry((u.node.as_str(), model.as_str())).or_default() += micro(u.gpu_hours);
            }
        }
    }
    let tags = rules.tag_keys().len();
    let days = days_of(&usage.period);
    let lines = hosts
        .into_iter()
        .map(|((node, model), observed)| ((node, model), usage.capacity_units(node).max(observed)))
        .filter(|(_, h)| *h > 0)
        .flat_map(|((node, model), micro_hours)| {
            let rate = gpu.rate(model).expect("node_pools checked the rate card");
            // rate * hours, at the money unit (the month's amount is defined by this product),
            // then spread evenly, exactly, over the days it covers: a host costs its capacity
            // every day, so a daily view shows no day-one spike (docs/design.md §5).
            let amount = Money::from_units((rate.units() * micro_hours as i128 + 500_000) / 1_000_000);
            let parts = split(amount, &vec![1u128; days.len()]);
            days.iter().zip(parts).map(move |(day, amount)| CostLine {
                billing_period: usage.period.as_str().into(),
                usage_date: day.as_str().into(),
                account: ON_PREM_ACCOUNT.into(),
                service: ON_PREM_SERVICE.into(),
                resource: node.into(),
                usage_type: format!("GPU-hours:{model}").into(),
                operation: "RateCard".into(),
                region: "on-prem".into(),
                charge_category: "Usage".into(),
                pricing_category: Capacity::OnPrem.as_str().into(),
                instance_type: "".into(),
                tags: vec![None; tags].into(),
                amount,
                line_items: 0,
                origin: CostLine::OFF_BILL,
            })
        })
        .collect();
    Ok((pools, lines))
}

/// The days of a billing period `YYYY-MM`, as `YYYY-MM-DD`.
fn days_of(period: &str) -> Vec<String> {
    let Ok(first) = chrono::NaiveDate::parse_from_str(&format!("{period}-01"), "%Y-%m-%d") else { return vec![format!("{period}-01")] };
    first.iter_days().take_while(|d| d.format("%Y-%m").to_string() == period).map(|d| d.format("%Y-%m-%d").to_string()).collect()
}

impl GpuUsageReport {
    /// A node's capacity in micro GPU-hours (0 when the source did not count its GPUs).
    fn capacity_units(&self, node: &str) -> u128 {
        self.capacity_hours.get(node).map_or(0, |h| micro(*h))
    }
}

fn micro(hours: f64) -> u128 {
    if hours.is_finite() && hours > 0.0 {
        (hours * MICRO).round() as u128
    } else {
        0
    }
}

/// The pools of a period and the lines each one takes.
pub struct GpuPlan {
    pub pools: Vec<GpuPool>,
    /// Line index -> pool index, for lines of charged pools.
    pub line_pool: BTreeMap<usize, usize>,
}

/// Builds the pools from the (sorted) lines, on-prem lines included, and the usage.
pub fn plan(rules: &RuleSet, gpu: &GpuRules, lines: &[CostLine], usage: &GpuUsageReport, nodes: &NodePools) -> GpuPlan {
    let mut pools: BTreeMap<PoolKey, GpuPool> = BTreeMap::new();
    let pool = |key: &PoolKey| GpuPool {
        key: key.clone(),
        gpu_model: String::new(),
        nodes: Vec::new(),
        cost: Money::ZERO,
        gpu_hours: 0.0,
        unassigned_hours: 0.0,
        unobserved_hours: 0.0,
        idle_pool_hours: 0.0,
        teams: BTreeMap::new(),
        pods: Vec::new(),
        charged: false,
        request_based: usage.request_based,
        total_units: 0,
        idle_units: 0,
    };
    let keyed = line_pools(rules, gpu, lines, &usage.period);
    for (key, cost) in pool_costs(lines, &keyed) {
        pools.entry(key.clone()).or_insert_with(|| pool(&key)).cost = cost;
    }
    for u in &usage.usage {
        let Some((key, model)) = nodes.0.get(&u.node) else { continue };
        let p = pools.entry(key.clone()).or_insert_with(|| pool(key));
        if !p.nodes.contains(&u.node) {
            p.nodes.push(u.node.clone());
        }
        if p.gpu_model.is_empty() {
            p.gpu_model = model.clone();
        } else if !p.gpu_model.split(", ").any(|m| m == model) {
            p.gpu_model = format!("{}, {model}", p.gpu_model);
        }
        let units = micro(u.gpu_hours);
        p.total_units += units;
        p.gpu_hours += u.gpu_hours;
        if u.namespace.is_empty() {
            p.unassigned_hours += u.gpu_hours;
            continue;
        }
        let weight = match (u.weight_hours, gpu.basis) {
            (Some(w), _) => w,
            (None, GpuBasis::Allocated) => u.gpu_hours,
            (None, GpuBasis::UtilizationWeighted) => u.busy_hours.clamp(0.0, u.gpu_hours),
            (None, GpuBasis::Corrected) => u.gpu_hours * gpu.correction_factor(utilization_pct(u.busy_hours, u.gpu_hours)),
        };
        let team = gpu.team_of_namespace(rules, &u.namespace);
        let t = p.teams.entry(team).or_default();
        t.gpu_hours += u.gpu_hours;
        t.busy_hours += u.busy_hours;
        t.idle_hours += u.idle_hours;
        // A basis only ever takes hours off; a source's own weights move them between pods (a
        // CPU-only pod on a GPU node carries part of it), and add up to the node's hours.
        let weight_units = if u.weight_hours.is_some() { micro(weight) } else { micro(weight).min(units) };
        t.weight_hours += weight;
        t.weight_units += weight_units;
        t.namespaces.insert(u.namespace.clone());
        p.pods.push(PodGpu {
            team,
            namespace: u.namespace.clone(),
            pod: u.pod.clone(),
            node: u.node.clone(),
            gpu_model: u.gpu_model.clone(),
            mig_profile: u.mig_profile.clone(),
            gpu_hours: u.gpu_hours,
            busy_hours: u.busy_hours,
            idle_hours: u.idle_hours,
            weight_units,
        });
    }
    let mut out = Vec::new();
    for (_, mut p) in pools {
        if p.key.capacity == Capacity::OnPrem {
            let capacity = usage.capacity_units(&p.key.node);
            if capacity > p.total_units {
                p.unobserved_hours = (capacity - p.total_units) as f64 / MICRO;
                p.total_units = capacity;
            }
        }
        let weights: u128 = p.teams.values().map(|t| t.weight_units).sum();
        p.idle_units = p.total_units - weights.min(p.total_units);
        p.idle_pool_hours = p.idle_units as f64 / MICRO;
        p.charged = p.total_units > 0;
        p.nodes.sort();
        out.push(p);
    }
    let mut line_pool = BTreeMap::new();
    for (i, key) in keyed {
        if let Some(index) = out.iter().position(|p| p.key == key && p.charged) {
            line_pool.insert(i, index);
        }
    }
    GpuPlan { pools: out, line_pool }
}

/// The pieces of one GPU line: each team's weighted share, then the idle pool as `idle` says.
pub fn charge(gpu: &GpuRules, pool: &GpuPool, line_index: usize, line: &CostLine) -> Vec<Piece> {
    let recipients: Vec<(&Option<TeamId>, &TeamGpu)> = pool.teams.iter().filter(|(_, t)| t.weight_units > 0).collect();
    let mut weights: Vec<u128> = recipients.iter().map(|(_, t)| t.weight_units).collect();
    weights.push(pool.idle_units);
    let parts = split(line.amount, &weights);
    let total = pool.total_units as f64;
    let piece = |team: Option<TeamId>, kind: Kind, rule: &str, method: String, ratio: f64, driver: String, amount: Money| Piece {
        line: line_index as u32,
        team,
        kind,
        rule: rule.into(),
        method: method.into(),
        ratio,
        driver: Some(driver.into()),
        amount,
        cents: Cents(0),
        dims: DimValues::default(),
    };
    let mut pieces = Vec::new();
    for ((team, t), amount) in recipients.iter().zip(&parts) {
        let namespaces: Vec<&str> = t.namespaces.iter().map(String::as_str).collect();
        let driver = if pool.request_based {
            format!(
                "{:.1} GPU-h requested, AWS split weight {:.1} of {:.1} GPU-h (namespaces {}; split cost allocation data, request-based)",
                t.gpu_hours,
                t.weight_hours,
                pool.gpu_hours,
                namespaces.join(" ")
            )
        } else {
            format!("{:.1} GPU-h at {:.0}% util, weight {:.1} of {:.1} GPU-h (namespaces {})", t.gpu_hours, t.utilization_pct(), t.weight_hours, pool.gpu_hours, namespaces.join(" "))
        };
        let (kind, driver) = match team {
            Some(_) => (Kind::Gpu, driver),
            None => (Kind::Gpu, format!("{driver}: no team; map them in [gpu] namespace_team")),
        };
        pieces.push(piece(**team, kind, GPU_RULE, basis_name(gpu, pool.request_based).into(), t.weight_units as f64 / total, driver, *amount));
    }
    let idle_amount = parts[parts.len() - 1];
    if pool.idle_units == 0 {
        return pieces;
    }
    let idle_ratio = pool.idle_units as f64 / total;
    // Shown from a twentieth of an hour: MIG slices' shares written to six decimals leave a few
    // micro GPU-hours unreported on any host.
    let idle_driver = if pool.unobserved_hours >= 0.05 {
        format!(
            "idle pool {:.1} of {:.1} GPU-h capacity ({:.1} with no pod, {:.1} not reported by the exporter)",
            pool.idle_pool_hours,
            pool.gpu_hours + pool.unobserved_hours,
            pool.unassigned_hours,
            pool.unobserved_hours
        )
    } else {
        format!("idle pool {:.1} of {:.1} GPU-h ({:.1} with no pod)", pool.idle_pool_hours, pool.gpu_hours, pool.unassigned_hours)
    };
    let teams: Vec<(TeamId, u128)> = recipients.iter().filter_map(|(team, t)| team.map(|id| (id, t.weight_units))).collect();
    match gpu.idle {
        IdlePolicy::Share if !teams.is_empty() => {
            let shares = split(idle_amount, &teams.iter().map(|(_, w)| *w).collect::<Vec<_>>());
            let team_total: u128 = teams.iter().map(|(_, w)| w).sum();
            for ((team, w), amount) in teams.iter().zip(shares) {
                let ratio = idle_ratio * *w as f64 / team_total as f64;
                pieces.push(piece(Some(*team), Kind::Gpu, GPU_IDLE_RULE, "share".into(), ratio, format!("{idle_driver}, shared by weight"), amount));
            }
        }
        IdlePolicy::Team(team) => pieces.push(piece(Some(team), Kind::Gpu, GPU_IDLE_RULE, "team".into(), idle_ratio, idle_driver, idle_amount)),
        IdlePolicy::Share | IdlePolicy::Separate => {
            let method = if gpu.idle == IdlePolicy::Separate { "separate" } else { "share (no team used the pool)" };
            pieces.push(piece(None, Kind::Gpu, GPU_IDLE_RULE, method.into(), idle_ratio, idle_driver, idle_amount));
        }
    }
    pieces
}

/// What each team is charged in each GPU pool when `usage` decides the split (the idle pool as
/// the rules' `idle` says; `None` is namespaces with no team and a separate idle pool). For
/// comparing two sources of GPU usage on the same lines (`scad::compare`).
pub fn team_charges(rules: &RuleSet, gpu: &GpuRules, lines: &[CostLine], usage: &GpuUsageReport) -> Result<BTreeMap<PoolKey, BTreeMap<Option<TeamId>, Money>>, AllocateError> {
    let (nodes, _) = on_prem_lines(rules, gpu, usage)?;
    let plan = plan(rules, gpu, lines, usage, &nodes);
    let mut out: BTreeMap<PoolKey, BTreeMap<Option<TeamId>, Money>> = BTreeMap::new();
    for (&i, &p) in &plan.line_pool {
        let pool = &plan.pools[p];
        let teams = out.entry(pool.key.clone()).or_default();
        for piece in charge(gpu, pool, i, &lines[i]) {
            *teams.entry(piece.team).or_default() += piece.amount;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correction_bands() {
        let rules = RuleSet::parse(std::path::Path::new("r.toml"), "version = 1\nteam_tags = [\"team\"]\n[gpu]\nwhen = { instance_family = [\"p4d\"] }\nbasis = \"corrected\"\n").unwrap();
        let gpu = rules.gpu.unwrap();
        let factors: Vec<f64> = [95.0, 70.0, 69.9, 40.0, 25.0, 5.0, 0.0].iter().map(|u| gpu.correction_factor(*u)).collect();
        assert_eq!(factors, vec![1.0, 1.0, 0.8, 0.8, 0.6, 0.4, 0.4]);
        assert_eq!(gpu.idle, IdlePolicy::Share);
        assert_eq!(gpu.idle_threshold, 10.0);
    }

    #[test]
    fn capacity_labels() {
        assert_eq!(Capacity::from_label("spot"), Capacity::Spot);
        assert_eq!(Capacity::from_label("SPOT"), Capacity::Spot);
        assert_eq!(Capacity::from_label("on-demand"), Capacity::OnDemand);
        assert_eq!(Capacity::from_label("ON_DEMAND"), Capacity::OnDemand);
        assert_eq!(Capacity::from_label("SavingsPlan"), Capacity::OnDemand);
    }
}
