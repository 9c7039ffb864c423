//! Split cost allocation data (SCAD, docs/design.md §5b): AWS's own split of an EC2 node's cost
//! to the EKS pods (and ECS tasks) that ran on it, read from CUR 2.0's `split_line_item_*`
//! columns.
//!
//! With SCAD turned on, CUR 2.0 carries, beside each node's instance line items, a usage record
//! per pod, hour and resource (vCPU, memory, and on accelerated instances GPUs): the pod's
//! `split_line_item_parent_resource_id` names its node, `split_line_item_split_cost` is its share
//! of the node's amortized cost by what it was allocated (the larger of request and use, weighted
//! CPU:memory 9:1, and GPU 9 : CPU+memory 1), and `split_line_item_unused_cost` its share of the
//! node's unallocated capacity. Those records' own `line_item_*` costs are zero: the bill is the
//! instance line. Adding the split costs to the instance lines would count the node twice.
//!
//! So the split costs are used as **weights**, never as money: each instance line of a node on a
//! day is split exactly (to 10^-12) over the node's pods by their split plus unused cost that day,
//! at every cost basis. A pod's part is a cost line of its own: the instance line's columns
//! (service, usage type, instance type, pricing) with the pod as resource and the pod's tags
//! (namespace, labels), so rules attribute it by namespace or label like any tagged resource, and
//! the month's totals per account and service stay exactly the bill's. Hours of a node that SCAD
//! does not cover (before it joined a cluster) stay on the instance.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::cost_frame::CostAmounts;
use crate::gpu::{team_charges, GpuNode, GpuRules, GpuUsage, GpuUsageReport, PoolKey};
use crate::ledger::{AllocateError, CostLine, Dim, TagValues};
use crate::money::{split, Money};
use crate::rules::{RuleSet, TeamId};

/// The resource a split record prices, from its usage type (`APN2-EKS-EC2-vCPU-Hours`,
/// `…-GB-Hours`, and on accelerated instances a GPU, Neuron or accelerator usage type).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SplitResource {
    Cpu,
    Memory,
    Accelerator,
    #[default]
    Other,
}

impl SplitResource {
    pub fn of_usage_type(usage_type: &str) -> SplitResource {
        let t = usage_type.to_ascii_lowercase();
        if t.contains("gpu") || t.contains("neuron") || t.contains("accelerator") {
            SplitResource::Accelerator
        } else if t.ends_with("vcpu-hours") {
            SplitResource::Cpu
        } else if t.ends_with("gb-hours") {
            SplitResource::Memory
        } else {
            SplitResource::Other
        }
    }
}

/// One pod's split of one node on one day for one resource, summed over the day's hours.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodSplit {
    /// `YYYY-MM-DD` (UTC), as the grain's days.
    pub date: String,
    /// `split_line_item_parent_resource_id`: the node's instance ID.
    pub parent: String,
    /// The pod's (or task's) `line_item_resource_id`.
    pub pod: String,
    /// The pod's namespace, as its resource ID and `aws:eks:namespace` tag name it (empty for
    /// ECS tasks).
    pub namespace: String,
    pub resource: SplitResource,
    /// Allocated usage (vCPU-hours, GB-hours, GPU-hours): the larger of requested and used.
    pub split_usage: f64,
    pub split_cost: f64,
    pub unused_cost: f64,
}

impl PodSplit {
    /// What AWS charges the pod of its node: its allocated share plus its share of the unused.
    pub fn weight(&self) -> f64 {
        let w = self.split_cost + self.unused_cost;
        if w.is_finite() && w > 0.0 {
            w
        } else {
            0.0
        }
    }
}

/// A month's split cost allocation data, summed per (day, node, pod, resource).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SplitCostData {
    pub pods: Vec<PodSplit>,
}

/// What attributing the month's nodes to their pods did (for the terminal and the manifest).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SplitAttribution {
    /// Nodes whose instance lines were split to pods, and the pods they went to.
    pub nodes: usize,
    pub pods: usize,
    /// At the rules' cost basis: what moved from instance lines to pods, and what stayed on the
    /// instances (hours SCAD does not cover).
    pub to_pods: Money,
    pub kept_on_nodes: Money,
    /// Split records whose node has no line on the bill that day (billed in another payer, or
    /// outside the month): their split cost (AWS's doubles, in dollars) was not counted, since
    /// the bill holds no such cost.
    pub unbilled: Vec<(String, usize, f64)>,
}

impl SplitAttribution {
    /// What the run says about the split (printed and kept in the manifest's notes).
    pub fn notes(&self) -> Vec<String> {
        let mut notes = vec![format!(
            "split cost allocation data: {} of node cost went to {} pods on {} nodes by AWS's split (split plus unused cost); {} stayed on the instances (hours the data does not cover)",
            self.to_pods.round_to_cents(),
            self.pods,
            self.nodes,
            self.kept_on_nodes.round_to_cents()
        )];
        if !self.unbilled.is_empty() {
            let total: f64 = self.unbilled.iter().map(|(_, _, c)| c).sum();
            let names: Vec<String> = self.unbilled.iter().take(5).map(|(node, days, _)| format!("{node} ({days} days)")).collect();
            notes.push(format!(
                "split cost allocation data: pods of {} nodes have split cost {total:.2} on days the bill has no line of their node ({}{}): not counted, the bill holds no such cost",
                self.unbilled.len(),
                names.join(", "),
                if self.unbilled.len() > 5 { ", …" } else { "" }
            ));
        }
        notes
    }
}

/// Nano-dollars, for exact integer weights from AWS's doubles.
fn nano(dollars: f64) -> u128 {
    if dollars.is_finite() && dollars > 0.0 {
        (dollars * 1e9).round() as u128
    } else {
        0
    }
}

/// Splits each node's instance lines over its pods (module docs). `lines` and `bases` are the
/// grain's: a pod's part becomes a new line with bases of its own, the instance line keeps what
/// the data does not cover. Totals per account and service are unchanged, to the unit.
pub fn attribute(lines: &mut Vec<CostLine>, bases: &mut Vec<CostAmounts>, data: &SplitCostData) -> SplitAttribution {
    // Each node's pods per day, with their weights (BTreeMaps: a deterministic order).
    let mut weights: BTreeMap<(&str, &str), BTreeMap<&str, u128>> = BTreeMap::new();
    for p in &data.pods {
        *weights.entry((p.date.as_str(), p.parent.as_str())).or_default().entry(p.pod.as_str()).or_default() += nano(p.weight());
    }
    let wanted: HashMap<(Dim, Dim), (&str, &str)> = weights.keys().map(|&(date, parent)| ((Dim::new(date), Dim::new(parent)), (date, parent))).collect();
    let pods: BTreeSet<&str> = data.pods.iter().map(|p| p.pod.as_str()).collect();
    let pod_dims: HashMap<Dim, &str> = pods.iter().map(|p| (Dim::new(p), *p)).collect();
    // The instance lines of each (day, node), and each pod's tags that day (from its own split
    // records' lines, which carry its namespace and labels and cost nothing).
    let mut node_lines: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
    let mut pod_tags: HashMap<(Dim, &str), TagValues> = HashMap::new();
    for (i, line) in lines.iter().enumerate() {
        if let Some(&key) = wanted.get(&(line.usage_date, line.resource)) {
            node_lines.entry(key).or_default().push(i);
        } else if let Some(pod) = pod_dims.get(&line.resource) {
            // One pod's records of a day carry the same tags unless a label changed that day;
            // then the least tag list, so the choice never depends on reading order.
            let tags = pod_tags.entry((line.usage_date, pod)).or_insert_with(|| line.tags.clone());
            if line.tags < *tags {
                *tags = line.tags.clone();
            }
        }
    }
    let no_tags: TagValues = lines.first().map(|l| vec![None; l.tags.len()].into()).unwrap_or_else(|| Vec::new().into());
    let mut out = SplitAttribution::default();
    let mut nodes_done: BTreeSet<&str> = BTreeSet::new();
    let mut pods_done: BTreeSet<&str> = BTreeSet::new();
    let mut unbilled: BTreeMap<&str, (usize, f64)> = BTreeMap::new();
    for ((date, parent), pod_weights) in &weights {
        let Some(indices) = node_lines.get(&(*date, *parent)) else {
            let u = unbilled.entry(parent).or_default();
            u.0 += 1;
            u.1 += pod_weights.values().sum::<u128>() as f64 / 1e9;
            continue;
        };
        let recipients: Vec<(&str, u128)> = pod_weights.iter().filter(|(_, w)| **w > 0).map(|(p, w)| (*p, *w)).collect();
        if recipients.is_empty() {
            continue;
        }
        // SCAD prices the node's amortized cost: what that cost exceeds the pods' weights by is
        // time the data does not cover, and stays on the instance. Less than 0.1% is the
        // doubles' rounding, not time.
        let node_amortized: i128 = indices.iter().map(|&i| bases[lines[i].origin as usize].effective.units()).sum();
        let pods_nano: u128 = recipients.iter().map(|(_, w)| w).sum();
        let node_nano = if node_amortized > 0 { (node_amortized / 1000) as u128 } else { 0 };
        let rest = node_nano.saturating_sub(pods_nano);
        let rest = if rest * 1000 > node_nano { rest } else { 0 };
        let mut w: Vec<u128> = recipients.iter().map(|(_, w)| *w).collect();
        w.push(rest);
        let date_dim = Dim::new(date);
        for &i in indices {
            let line = lines[i].clone();
            let origin = bases[line.origin as usize];
            let amounts = split(line.amount, &w);
            let parts: [Vec<Money>; 5] = [origin.billed, origin.billed_net, origin.effective, origin.effective_net, origin.list].map(|m| split(m, &w));
            let part = |k: usize| CostAmounts { billed: parts[0][k], billed_net: parts[1][k], effective: parts[2][k], effective_net: parts[3][k], list: parts[4][k] };
            for (k, (pod, _)) in recipients.iter().enumerate() {
                let origin = u32::try_from(bases.len()).ok().filter(|&n| n != CostLine::OFF_BILL).expect("fewer than 4 billion grain rows");
                bases.push(part(k));
                out.to_pods += amounts[k];
                lines.push(CostLine {
                    resource: Dim::new(pod),
                    tags: pod_tags.get(&(date_dim, *pod)).cloned().unwrap_or_else(|| no_tags.clone()),
                    amount: amounts[k],
                    line_items: 0,
                    origin,
                    ..line.clone()
                });
                pods_done.insert(pod);
            }
            let kept = recipients.len();
            bases[line.origin as usize] = part(kept);
            lines[i].amount = amounts[kept];
            out.kept_on_nodes += amounts[kept];
        }
        nodes_done.insert(parent);
    }
    out.nodes = nodes_done.len();
    out.pods = pods_done.len();
    out.unbilled = unbilled.into_iter().map(|(node, (days, cost))| (node.to_string(), days, cost)).collect();
    out
}

/// GPU usage from the split data, for `[gpu] source = "scad"`: each accelerated node's pods
/// with the GPU-hours they were allocated, weighted as AWS split the node (their split plus
/// unused cost over every resource: GPU 9 : CPU+memory 1, so a CPU-only pod on a GPU node still
/// carries a little). It is request-based: no utilisation is known, so the rules' basis and idle
/// threshold do not apply, and the node's unallocated GPUs are already in the pods' unused cost
/// (no idle pool). `lines` give each node's instance type and how it is bought.
pub fn gpu_usage(data: &SplitCostData, lines: &[CostLine], period: &str) -> GpuUsageReport {
    let gpu_nodes: BTreeSet<&str> = data.pods.iter().filter(|p| p.resource == SplitResource::Accelerator).map(|p| p.parent.as_str()).collect();
    // Per pod: GPU-hours allocated, and its weight (dollars of AWS's split).
    let mut per_pod: BTreeMap<(&str, &str, &str), (f64, f64)> = BTreeMap::new();
    let mut node_weight: BTreeMap<&str, f64> = BTreeMap::new();
    for p in data.pods.iter().filter(|p| gpu_nodes.contains(p.parent.as_str())) {
        let e = per_pod.entry((p.parent.as_str(), p.namespace.as_str(), p.pod.as_str())).or_default();
        if p.resource == SplitResource::Accelerator {
            e.0 += p.split_usage.max(0.0);
        }
        e.1 += p.weight();
        *node_weight.entry(p.parent.as_str()).or_default() += p.weight();
    }
    // A node the bill does not carry has no pool to charge (its split cost is not counted:
    // [`attribute`] says so).
    let wanted: HashMap<Dim, &str> = node_weight.keys().map(|n| (Dim::new(n), *n)).collect();
    let mut node_lines: BTreeMap<&str, &CostLine> = BTreeMap::new();
    for line in lines.iter().filter(|l| !l.instance_type.is_empty()) {
        if let Some(node) = wanted.get(&line.resource) {
            node_lines.entry(node).or_insert(line);
        }
    }
    let mut usage = Vec::new();
    let mut capacity_hours = BTreeMap::new();
    for (node, total_weight) in node_weight.iter().filter(|(n, _)| node_lines.contains_key(*n)) {
        let model = format!("GPUs of {}", node_lines[node].instance_type);
        // per_pod is ordered by node first: its pods are one range.
        let pods: Vec<_> = per_pod.range((*node, "", "")..).take_while(|((n, _, _), _)| n == node).collect();
        let held: f64 = pods.iter().map(|(_, (h, _))| h).sum();
        capacity_hours.insert(node.to_string(), held);
        for ((n, namespace, pod), (gpu_hours, weight)) in pods {
            // The pod's share of the node in the node's GPU-hours, so weights add up to them.
            let share = if *total_weight > 0.0 { weight / total_weight } else { 0.0 };
            usage.push(GpuUsage {
                node: n.to_string(),
                gpu_model: model.clone(),
                namespace: namespace.to_string(),
                pod: pod.to_string(),
                gpu_hours: *gpu_hours,
                weight_hours: Some(share * held),
                ..GpuUsage::default()
            });
        }
    }
    let nodes = node_lines.iter().map(|(node, line)| GpuNode { node: node.to_string(), instance_type: line.instance_type.to_string(), capacity: line.pricing_category.to_string() }).collect();
    let total: f64 = capacity_hours.values().sum();
    GpuUsageReport { period: period.to_string(), source: SCAD_SOURCE.into(), usage, nodes, expected_hours: total, capacity_hours, observed_hours: total, days: Vec::new(), request_based: true }
}

/// One team's charge in one GPU pool under the two splits: DCGM's measured GPU time (by the
/// rules' basis, with their idle policy) and AWS's request-based split.
#[derive(Clone, Debug, PartialEq)]
pub struct GpuSplitRow {
    pub pool: PoolKey,
    pub team: Option<TeamId>,
    pub measured: Money,
    pub requested: Money,
}

/// The per-team difference between the two GPU splits, for the pools both sources cover: each
/// column adds up to the pool's cost, so what one team gains another loses.
pub fn compare(rules: &RuleSet, gpu: &GpuRules, lines: &[CostLine], measured: &GpuUsageReport, requested: &GpuUsageReport) -> Result<Vec<GpuSplitRow>, AllocateError> {
    let by_measure = team_charges(rules, gpu, lines, measured)?;
    let by_request = team_charges(rules, gpu, lines, requested)?;
    let mut rows = Vec::new();
    for (pool, teams) in &by_request {
        let Some(measured_teams) = by_measure.get(pool) else { continue };
        let all: BTreeSet<Option<TeamId>> = teams.keys().chain(measured_teams.keys()).copied().collect();
        for team in all {
            rows.push(GpuSplitRow { pool: pool.clone(), team, measured: measured_teams.get(&team).copied().unwrap_or_default(), requested: teams.get(&team).copied().unwrap_or_default() });
        }
    }
    Ok(rows)
}

/// How a GPU usage report from split cost allocation data names its source.
pub const SCAD_SOURCE: &str = "split cost allocation data (CUR 2.0 split_line_item_*; request-based)";

/// The words every description of split cost allocation data's GPU usage carries, so a report
/// rebuilt from its manifest knows the usage was requested, not measured.
pub const REQUEST_BASED: &str = "request-based";

#[cfg(test)]
mod tests {
    use super::*;

    fn line(date: &str, resource: &str, usage_type: &str, amount: &str, tags: Vec<Option<&str>>, origin: u32) -> CostLine {
        CostLine {
            billing_period: Dim::new("2025-10"),
            usage_date: Dim::new(date),
            account: Dim::new("222222222222"),
            service: Dim::new(if resource.starts_with("i-") { "AmazonEC2" } else { "AmazonEKS" }),
            resource: Dim::new(resource),
            usage_type: Dim::new(usage_type),
            operation: Dim::new("RunInstances"),
            region: Dim::new("ap-northeast-2"),
            charge_category: Dim::new("Usage"),
            pricing_category: Dim::new("OnDemand"),
            instance_type: Dim::new(if resource.starts_with("i-") { "m5.xlarge" } else { "" }),
            tags: tags.into_iter().map(|t| t.map(Dim::new)).collect::<Vec<_>>().into(),
            amount: amount.parse().unwrap(),
            line_items: 24,
            origin,
        }
    }

    fn pod(date: &str, parent: &str, pod: &str, cost: f64, unused: f64) -> PodSplit {
        PodSplit { date: date.into(), parent: parent.into(), pod: pod.into(), namespace: "ns".into(), resource: SplitResource::Cpu, split_cost: cost, unused_cost: unused, ..PodSplit::default() }
    }

    fn amounts(m: &str) -> CostAmounts {
        let m: Money = m.parse().unwrap();
        // Different bases, so a basis split by another's weights would show.
        CostAmounts { billed: m, billed_net: m, effective: m, effective_net: m, list: m + m }
    }

    #[test]
    fn a_node_splits_exactly_over_its_pods_keeps_what_they_do_not_cover_and_an_unbilled_node_is_said() {
        // Node i-1 costs 24 on day 1, its two pods' split says 22 of it (two hours uncovered);
        // node i-9's pods ran on a day the bill has no line of it.
        let mut lines = vec![
            line("2025-10-01", "i-1", "BoxUsage:m5.xlarge", "24", vec![None], 0),
            line("2025-10-01", "pod/a", "EKS-EC2-vCPU-Hours", "0", vec![Some("search")], 1),
            line("2025-10-01", "pod/b", "EKS-EC2-vCPU-Hours", "0", vec![Some("orders")], 2),
            line("2025-10-02", "i-1", "BoxUsage:m5.xlarge", "24", vec![None], 3),
        ];
        let mut bases = vec![amounts("24"), CostAmounts::default(), CostAmounts::default(), amounts("24")];
        let data = SplitCostData {
            pods: vec![
                pod("2025-10-01", "i-1", "pod/a", 10.0, 1.0),
                pod("2025-10-01", "i-1", "pod/b", 10.0, 1.0),
                pod("2025-10-02", "i-1", "pod/a", 18.0, 0.0),
                pod("2025-10-02", "i-1", "pod/b", 6.0, 0.0),
                pod("2025-10-03", "i-9", "pod/c", 5.0, 0.0),
            ],
        };
        let before: Money = lines.iter().map(|l| l.amount).sum();
        let result = attribute(&mut lines, &mut bases, &data);
        assert_eq!(lines.iter().map(|l| l.amount).sum::<Money>(), before, "the month's total");
        for basis in crate::CostBasis::ALL {
            let sum: Money = lines.iter().map(|l| bases[l.origin as usize].get(basis)).sum();
            assert_eq!(sum, "48".parse::<Money>().unwrap() + if basis == crate::CostBasis::List { "48".parse().unwrap() } else { Money::ZERO }, "{basis:?}");
        }
        let on = |date: &str, resource: &str| -> Money { lines.iter().filter(|l| &*l.usage_date == date && &*l.resource == resource).map(|l| l.amount).sum() };
        assert_eq!(on("2025-10-01", "pod/a"), "11".parse().unwrap());
        assert_eq!(on("2025-10-01", "pod/b"), "11".parse().unwrap());
        assert_eq!(on("2025-10-01", "i-1"), "2".parse().unwrap(), "two uncovered hours stay on the instance");
        assert_eq!(on("2025-10-02", "pod/a"), "18".parse().unwrap());
        assert_eq!(on("2025-10-02", "i-1"), Money::ZERO);
        // A pod's part is the instance line with the pod's resource and tags.
        let part = lines.iter().find(|l| &*l.resource == "pod/b" && !l.amount.is_zero()).unwrap();
        assert_eq!((&*part.service, &*part.usage_type, &*part.instance_type, part.tags[0].map(|t| t.to_string())), ("AmazonEC2", "BoxUsage:m5.xlarge", "m5.xlarge", Some("orders".into())));
        assert_eq!(bases[part.origin as usize].list, "22".parse().unwrap(), "each basis split by the same weights");
        assert_eq!((result.nodes, result.pods), (1, 2));
        assert_eq!(result.to_pods, "46".parse().unwrap());
        assert_eq!(result.kept_on_nodes, "2".parse().unwrap());
        assert_eq!(result.unbilled, vec![("i-9".to_string(), 1, 5.0)]);
        assert!(result.notes()[1].contains("i-9 (1 days)"), "{:?}", result.notes());
    }

    proptest::proptest! {
        /// Whatever the split data says (pods with no weight, nodes not billed that day, credits
        /// on the node, more weight than cost), the month's amount and every basis are what they
        /// were, to the unit, per (account, service); each line's amount stays its own basis's.
        #[test]
        fn the_split_conserves_every_basis_exactly(
            nodes in proptest::collection::vec((0..3usize, 1..4u32, -2_000_000_000_000i128..90_000_000_000_000i128, 0..3usize), 1..8),
            pods in proptest::collection::vec((0..4usize, 1..4u32, 0..6usize, 0.0..40.0f64, 0.0..5.0f64), 0..24),
        ) {
            let mut lines = Vec::new();
            let mut bases = Vec::new();
            for (i, (node, day, units, account)) in nodes.iter().enumerate() {
                let date = format!("2025-10-0{day}");
                let mut l = line(&date, &format!("i-{node}"), "BoxUsage", "0", vec![None], i as u32);
                l.account = Dim::new(["111", "222", "333"][*account]);
                l.amount = Money::from_units(*units);
                lines.push(l);
                let m = Money::from_units(*units);
                bases.push(CostAmounts { billed: m, billed_net: m, effective: m, effective_net: m, list: Money::from_units(units * 3 / 2) });
            }
            for (p, day) in (0..6).zip((1..4).cycle()) {
                let n = lines.len() as u32;
                lines.push(line(&format!("2025-10-0{day}"), &format!("pod/{p}"), "EKS-EC2-vCPU-Hours", "0", vec![Some("ns")], n));
                bases.push(CostAmounts::default());
            }
            let data = SplitCostData { pods: pods.iter().map(|(node, day, p, cost, unused)| pod(&format!("2025-10-0{day}"), &format!("i-{node}"), &format!("pod/{p}"), *cost, *unused)).collect() };
            let group = |lines: &[CostLine], bases: &[CostAmounts]| {
                let mut out: BTreeMap<(String, String), [i128; 6]> = BTreeMap::new();
                for l in lines {
                    let b = bases[l.origin as usize];
                    let e = out.entry((l.account.to_string(), l.service.to_string())).or_default();
                    for (k, m) in [l.amount, b.billed, b.billed_net, b.effective, b.effective_net, b.list].iter().enumerate() {
                        e[k] += m.units();
                    }
                }
                out
            };
            let before = group(&lines, &bases);
            attribute(&mut lines, &mut bases, &data);
            proptest::prop_assert_eq!(group(&lines, &bases), before);
            for l in &lines {
                proptest::prop_assert_eq!(l.amount, bases[l.origin as usize].effective);
            }
        }
    }

    #[test]
    fn usage_types() {
        assert_eq!(SplitResource::of_usage_type("APN2-EKS-EC2-vCPU-Hours"), SplitResource::Cpu);
        assert_eq!(SplitResource::of_usage_type("USE1-EKS-EC2-GB-Hours"), SplitResource::Memory);
        assert_eq!(SplitResource::of_usage_type("APN2-EKS-EC2-GPU-Hours"), SplitResource::Accelerator);
        assert_eq!(SplitResource::of_usage_type("ECS-EC2-Other"), SplitResource::Other);
    }
}
