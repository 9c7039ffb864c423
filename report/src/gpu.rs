//! `gpu.csv` and the manifest's GPU record: GPU cost per pool and team, with the GPU-hours,
//! utilisation and idle figures behind it (docs/design.md §5). Costs are sums of the pieces' printed
//! cents, so a pool's rows add up to what the team CSVs show for it.

use std::collections::BTreeMap;

use finops_allocate::gpu::{GpuUsageReport, PodGpu, PoolKey, GPU_IDLE_RULE};
use finops_allocate::money::{round_to_total, split};
use finops_allocate::Kind;
use finops_allocate::{Allocation, Cents, RuleSet};
use serde::Serialize;

use crate::csv::CsvBuilder;

/// Printed cents per (pool, team, rule) of the GPU pieces.
fn pool_cents(allocation: &Allocation) -> BTreeMap<(PoolKey, Option<usize>, bool), Cents> {
    let mut out: BTreeMap<(PoolKey, Option<usize>, bool), Cents> = BTreeMap::new();
    for p in allocation.pieces.iter().filter(|p| p.kind == Kind::Gpu) {
        let key = PoolKey::of_charged_line(&allocation.lines[p.line as usize]);
        out.entry((key, p.team, &*p.rule == GPU_IDLE_RULE)).or_default().0 += p.cents.0;
    }
    out
}

/// `gpu.csv`: per charged pool, one row per team (and the unallocated bucket) with its GPU-hours,
/// utilisation, idle hours and their cost, its weighted share and the idle pool's share; then
/// the pool's own row (`(pool)`): all hours observed, those with no pod, and its whole cost.
/// Pools with no GPU usage appear once, as `(not measured)`: their lines went through the rules.
pub fn gpu_csv(rules: &RuleSet, allocation: &Allocation) -> Vec<u8> {
    let mut csv = CsvBuilder::new(&[
        "pool",
        "gpu_model",
        "capacity",
        "nodes",
        "team",
        "namespaces",
        "gpu_hours",
        "no_pod_gpu_hours",
        "unobserved_gpu_hours",
        "utilization_pct",
        "idle_gpu_hours",
        "idle_cost",
        "weight_gpu_hours",
        "usage_cost",
        "idle_pool_cost",
        "cost",
    ]);
    let cents = pool_cents(allocation);
    let name = |team: Option<usize>| rules.team_or_unallocated(team).to_string();
    for pool in &allocation.gpu {
        let label = pool.key.label();
        let nodes = pool.nodes.join(" ");
        let head = [label.as_str(), pool.gpu_model.as_str(), pool.key.capacity.as_str(), nodes.as_str()];
        if !pool.charged {
            let cost = pool.cost.round_to_cents().to_string();
            csv.row(head.iter().copied().chain(["(not measured)", "", "0.0", "0.0", "0.0", "", "0.0", "", "0.0", "", "", &cost]));
            continue;
        }
        // Teams with hours, and anyone who received a piece of this pool (e.g. idle = team:x).
        let mut teams: Vec<Option<usize>> = pool.teams.keys().copied().collect();
        for (key, team, _) in cents.keys() {
            if *key == pool.key && !teams.contains(team) {
                teams.push(*team);
            }
        }
        teams.sort_by_key(|t| (t.is_none(), *t));
        let mut pool_total = Cents(0);
        for team in teams {
            let t = pool.teams.get(&team).cloned().unwrap_or_default();
            let usage = cents.get(&(pool.key.clone(), team, false)).copied().unwrap_or_default();
            let idle_pool = cents.get(&(pool.key.clone(), team, true)).copied().unwrap_or_default();
            pool_total.0 += usage.0 + idle_pool.0;
            let namespaces: Vec<&str> = t.namespaces.iter().map(String::as_str).collect();
            let cells = [
                name(team),
                namespaces.join(" "),
                format!("{:.1}", t.gpu_hours),
                "0.0".into(),
                "0.0".into(),
                format!("{:.1}", t.utilization_pct()),
                format!("{:.1}", t.idle_hours),
                pool.cost_of_hours(t.idle_hours).round_to_cents().to_string(),
                format!("{:.1}", t.weight_hours),
                usage.to_string(),
                idle_pool.to_string(),
                Cents(usage.0 + idle_pool.0).to_string(),
            ];
            csv.row(head.iter().copied().chain(cells.iter().map(String::as_str)));
        }
        let busy: f64 = pool.teams.values().map(|t| t.busy_hours).sum();
        let idle: f64 = pool.teams.values().map(|t| t.idle_hours).sum::<f64>() + pool.unassigned_hours + pool.unobserved_hours;
        let weights: f64 = pool.teams.values().map(|t| t.weight_hours).sum();
        let utilization = finops_allocate::gpu::utilization_pct(busy, pool.gpu_hours);
        let cells = [
            "(pool)".to_string(),
            String::new(),
            format!("{:.1}", pool.gpu_hours),
            format!("{:.1}", pool.unassigned_hours),
            format!("{:.1}", pool.unobserved_hours),
            format!("{utilization:.1}"),
            format!("{idle:.1}"),
            pool.cost_of_hours(idle).round_to_cents().to_string(),
            format!("{weights:.1}"),
            String::new(),
            String::new(),
            pool_total.to_string(),
        ];
        csv.row(head.iter().copied().chain(cells.iter().map(String::as_str)));
    }
    csv.into_bytes()
}

/// One pod's share of a pool's charge to its team, in printed cents.
struct PodCharge<'a> {
    pool: String,
    team: Option<usize>,
    pod: Option<&'a PodGpu>,
    usage: Cents,
    idle_pool: Cents,
}

/// Each team's printed charge in each pool, split over its pods by their weights (largest
/// remainder), so a team's pods — and so its namespaces — add up to its row of `gpu.csv` to the
/// cent. A team charged in a pool where it ran no weighted pod (an idle pool sent to it by
/// `idle = "team:…"`) gets one row with no pod.
fn pod_charges(allocation: &Allocation) -> Vec<PodCharge<'_>> {
    let cents = pool_cents(allocation);
    let mut out = Vec::new();
    for pool in allocation.gpu.iter().filter(|p| p.charged) {
        let label = pool.key.label();
        let mut teams: Vec<Option<usize>> = cents.keys().filter(|(k, _, _)| *k == pool.key).map(|(_, t, _)| *t).collect();
        teams.dedup();
        for team in teams {
            let usage = cents.get(&(pool.key.clone(), team, false)).copied().unwrap_or_default();
            let idle_pool = cents.get(&(pool.key.clone(), team, true)).copied().unwrap_or_default();
            let pods: Vec<&PodGpu> = pool.pods.iter().filter(|p| p.team == team && p.weight_units > 0).collect();
            if pods.is_empty() {
                out.push(PodCharge { pool: label.clone(), team, pod: None, usage, idle_pool });
                continue;
            }
            let weights: Vec<u128> = pods.iter().map(|p| p.weight_units).collect();
            let share = |c: Cents| round_to_total(&split(c.to_money(), &weights), c);
            for ((pod, usage), idle_pool) in pods.into_iter().zip(share(usage)).zip(share(idle_pool)) {
                out.push(PodCharge { pool: label.clone(), team, pod: Some(pod), usage, idle_pool });
            }
        }
    }
    out
}

/// `gpu-pods.csv`: one row per pod and pool — where it ran, its GPU-hours and utilisation, and
/// its part of its team's charge. The pods of a team add up to the team's row in `gpu.csv`.
pub fn gpu_pods_csv(rules: &RuleSet, allocation: &Allocation) -> Vec<u8> {
    let mut csv = CsvBuilder::new(&["pool", "team", "namespace", "pod", "node", "gpu_model", "mig_profile", "gpu_hours", "utilization_pct", "idle_gpu_hours", "usage_cost", "idle_pool_cost", "cost"]);
    for c in pod_charges(allocation) {
        let team = rules.team_or_unallocated(c.team).to_string();
        let cost = Cents(c.usage.0 + c.idle_pool.0).to_string();
        let (usage, idle_pool) = (c.usage.to_string(), c.idle_pool.to_string());
        match c.pod {
            Some(p) => {
                let cells = [
                    c.pool.as_str(),
                    team.as_str(),
                    &p.namespace,
                    &p.pod,
                    &p.node,
                    &p.gpu_model,
                    &p.mig_profile,
                    &format!("{:.3}", p.gpu_hours),
                    &format!("{:.1}", finops_allocate::gpu::utilization_pct(p.busy_hours, p.gpu_hours)),
                    &format!("{:.3}", p.idle_hours),
                    &usage,
                    &idle_pool,
                    &cost,
                ];
                csv.row(cells.iter().map(|c| &**c));
            }
            None => csv.row([c.pool.as_str(), &team, "", "(idle pool)", "", "", "", "0.000", "0.0", "0.000", &usage, &idle_pool, &cost]),
        }
    }
    csv.into_bytes()
}

/// `gpu-namespaces.csv`: the pods summed per pool, team and namespace (GPU-hours, utilisation,
/// idle hours, cost); a team's namespaces add up to its row in `gpu.csv`.
pub fn gpu_namespaces_csv(rules: &RuleSet, allocation: &Allocation) -> Vec<u8> {
    let mut csv = CsvBuilder::new(&["pool", "team", "namespace", "pods", "gpu_hours", "utilization_pct", "idle_gpu_hours", "usage_cost", "idle_pool_cost", "cost"]);
    // (pool, team, namespace) -> (pods, hours, busy, idle, usage, idle pool), in first-seen order.
    let mut rows: Vec<((String, Option<usize>, String), (usize, f64, f64, f64, Cents, Cents))> = Vec::new();
    for c in pod_charges(allocation) {
        let namespace = c.pod.map_or(String::new(), |p| p.namespace.clone());
        let key = (c.pool.clone(), c.team, namespace);
        let at = match rows.iter().position(|(k, _)| *k == key) {
            Some(at) => at,
            None => {
                rows.push((key, (0, 0.0, 0.0, 0.0, Cents(0), Cents(0))));
                rows.len() - 1
            }
        };
        let r = &mut rows[at].1;
        if let Some(p) = c.pod {
            r.0 += 1;
            r.1 += p.gpu_hours;
            r.2 += p.busy_hours;
            r.3 += p.idle_hours;
        }
        r.4 .0 += c.usage.0;
        r.5 .0 += c.idle_pool.0;
    }
    for ((pool, team, namespace), (pods, hours, busy, idle, usage, idle_pool)) in rows {
        let namespace = if namespace.is_empty() { "(idle pool)".to_string() } else { namespace };
        csv.row([
            pool.as_str(),
            rules.team_or_unallocated(team),
            &namespace,
            &pods.to_string(),
            &format!("{hours:.3}"),
            &format!("{:.1}", finops_allocate::gpu::utilization_pct(busy, hours)),
            &format!("{idle:.3}"),
            &usage.to_string(),
            &idle_pool.to_string(),
            &Cents(usage.0 + idle_pool.0).to_string(),
        ]);
    }
    csv.into_bytes()
}

/// The manifest's GPU record.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct GpuRecord {
    /// Where the usage came from, or why there is none.
    pub source: String,
    /// Share of the period with samples, over the GPUs seen (0..=1).
    pub coverage: String,
    pub expected_gpu_hours: String,
    pub observed_gpu_hours: String,
    pub basis: String,
    pub idle: String,
    pub pools: Vec<GpuPoolRecord>,
    /// Per pool and team: the charge under DCGM's measured split and under AWS's request-based
    /// split (split cost allocation data), where the month has both.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub split_comparison: Vec<GpuSplitRecord>,
}

/// One team's GPU charge in one pool under the two splits, in printed cents. The column of the
/// source the month was charged by is `gpu.csv`'s figure; the other is its exact amounts
/// rounded to the same pool total, so both columns add up to the pool and the differences to 0.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct GpuSplitRecord {
    pub pool: String,
    pub team: String,
    /// DCGM's measured GPU time, by the rules' basis and idle policy.
    pub dcgm: String,
    /// AWS's split cost allocation data: GPU-hours requested, GPU 9 : CPU+memory 1.
    pub scad: String,
    /// `scad - dcgm`: what the request-based split would move onto (+) or off (-) the team.
    pub difference: String,
}

/// The comparison rows (`GpuRecord::split_comparison`) from the exact ones; `charged_scad` says
/// which column is the month's charge (its cents are the allocation's own).
pub fn split_comparison(rules: &RuleSet, allocation: &Allocation, rows: &[finops_allocate::scad::GpuSplitRow], charged_scad: bool) -> Vec<GpuSplitRecord> {
    let cents = pool_cents(allocation);
    let mut out = Vec::new();
    let mut pools: Vec<&PoolKey> = rows.iter().map(|r| &r.pool).collect();
    pools.dedup();
    for pool in pools {
        let rows: Vec<&finops_allocate::scad::GpuSplitRow> = rows.iter().filter(|r| &r.pool == pool).collect();
        let charged: Vec<Cents> = rows.iter().map(|r| cents.iter().filter(|((k, t, _), _)| k == pool && *t == r.team).map(|(_, c)| *c).sum()).collect();
        let total = charged.iter().copied().sum::<Cents>();
        let other: Vec<finops_allocate::Money> = rows.iter().map(|r| if charged_scad { r.measured } else { r.requested }).collect();
        let other = round_to_total(&other, total);
        for ((r, charged), other) in rows.iter().zip(charged).zip(other) {
            let (dcgm, scad) = if charged_scad { (other, charged) } else { (charged, other) };
            out.push(GpuSplitRecord {
                pool: pool.label(),
                team: rules.team_or_unallocated(r.team).to_string(),
                dcgm: dcgm.to_string(),
                scad: scad.to_string(),
                difference: Cents(scad.0 - dcgm.0).to_string(),
            });
        }
    }
    out
}

/// Whether a GPU source text (the manifest's `gpu.source`) is split cost allocation data's
/// request-based usage, which measures no utilisation.
pub fn is_request_based(source: &str) -> bool {
    source.contains(finops_allocate::scad::REQUEST_BASED)
}

/// `gpu-scad-comparison.csv`: the comparison rows.
pub fn split_comparison_csv(rows: &[GpuSplitRecord]) -> Vec<u8> {
    let mut csv = CsvBuilder::new(&["pool", "team", "dcgm_measured", "scad_requested", "difference"]);
    for r in rows {
        csv.row([r.pool.as_str(), &r.team, &r.dcgm, &r.scad, &r.difference]);
    }
    csv.into_bytes()
}

#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct GpuPoolRecord {
    pub pool: String,
    pub gpu_model: String,
    pub capacity: String,
    pub nodes: Vec<String>,
    /// Exact cost of the pool's lines, and the sum of the printed cents it was charged as.
    pub cost: String,
    pub charged: String,
    pub gpu_hours: String,
    pub no_pod_gpu_hours: String,
    /// On-prem hosts: capacity the exporter did not report (idle, since the host costs its
    /// capacity).
    pub unobserved_gpu_hours: String,
    pub idle_pool_gpu_hours: String,
    /// False when no GPU usage was observed: the lines then went through the rules.
    pub measured: bool,
}

impl GpuRecord {
    /// Whether GPU cost was charged by measured usage (some pool measured): what decides whether
    /// two months' team figures compare (`finops_allocate::gpu::not_comparable`).
    pub fn measured(&self) -> bool {
        self.pools.iter().any(|p| p.measured)
    }
}

pub fn gpu_record(rules: &RuleSet, allocation: &Allocation, usage: Option<&GpuUsageReport>, source: &str, split_comparison: Vec<GpuSplitRecord>) -> Option<GpuRecord> {
    let gpu = rules.gpu.as_ref()?;
    let cents = pool_cents(allocation);
    let requested = usage.is_some_and(|u| u.request_based);
    let idle = match gpu.idle {
        finops_allocate::gpu::IdlePolicy::Share => "share".to_string(),
        finops_allocate::gpu::IdlePolicy::Separate => "separate".to_string(),
        finops_allocate::gpu::IdlePolicy::Team(t) => format!("team:{}", rules.team(t).name),
    };
    Some(GpuRecord {
        // What the report says of it ("recorded file …", "DCGM series from Prometheus at …"),
        // so a rebuilt report says the same.
        source: if source.is_empty() { usage.map_or(String::new(), |u| u.source.clone()) } else { source.to_string() },
        // Requested usage samples nothing: no coverage to state.
        coverage: if requested { String::new() } else { format!("{:.4}", usage.map_or(0.0, |u| u.coverage())) },
        expected_gpu_hours: format!("{:.1}", usage.map_or(0.0, |u| u.expected_hours)),
        observed_gpu_hours: format!("{:.1}", usage.map_or(0.0, |u| u.observed_hours)),
        basis: finops_allocate::gpu::basis_name(gpu, requested).into(),
        idle,
        pools: allocation
            .gpu
            .iter()
            .map(|p| GpuPoolRecord {
                pool: p.key.label(),
                gpu_model: p.gpu_model.clone(),
                capacity: p.key.capacity.as_str().into(),
                nodes: p.nodes.clone(),
                cost: p.cost.to_string(),
                charged: cents.iter().filter(|((k, _, _), _)| *k == p.key).map(|(_, c)| *c).sum::<Cents>().to_string(),
                gpu_hours: format!("{:.1}", p.gpu_hours),
                no_pod_gpu_hours: format!("{:.1}", p.unassigned_hours),
                unobserved_gpu_hours: format!("{:.1}", p.unobserved_hours),
                idle_pool_gpu_hours: format!("{:.1}", p.idle_pool_hours),
                measured: p.charged,
            })
            .collect(),
        split_comparison,
    })
}
