//! The allocated month as people read it: `summary.csv` (one row per team), `teams/<team>.csv`
//! (that team's line-level allocation) and the `explain` text. Every figure is a sum of the
//! pieces' rounded cents, so a team's CSV adds up exactly to its summary row, and the summary
//! adds up exactly to the month's allocated total.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use finops_allocate::{Allocation, Cents, Kind, Money, Piece, RuleSet};

use crate::csv::{CsvBuilder, CsvWriter};
use crate::names::sanitise_file_stem;
use crate::sink::OutputFile;

/// A team's (or the unallocated bucket's) figures for the month.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TeamRow {
    pub team: String,
    pub direct: Cents,
    pub shared: Cents,
    pub gpu: Cents,
    pub total: Cents,
    /// The exact amount before rounding; `total` is the sum of the team's printed lines.
    pub exact: Money,
    pub previous: Option<Cents>,
    pub gpu_usage: GpuFigures,
}

/// A team's GPU figures for the month (docs/design.md §5), summed over the GPU pools.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GpuFigures {
    pub gpu_hours: f64,
    pub busy_hours: f64,
    /// Assigned GPU-hours sampled under the idle threshold, and what those hours cost.
    pub idle_hours: f64,
    pub idle_cost: Cents,
    /// GPU cost by how the capacity was bought; the three add up to the `gpu` column.
    pub on_demand: Cents,
    pub spot: Cents,
    pub on_prem: Cents,
    /// The part of `gpu_hours` that was requested, not measured (split cost allocation data).
    pub requested_hours: f64,
}

impl GpuFigures {
    pub fn utilization_pct(&self) -> f64 {
        finops_allocate::gpu::utilization_pct(self.busy_hours, self.gpu_hours)
    }

    /// Utilisation as `summary.csv` prints it: empty when none of the hours was measured.
    pub fn utilization_text(&self) -> String {
        if self.gpu_hours > 0.0 && self.requested_hours >= self.gpu_hours {
            String::new()
        } else {
            format!("{:.1}", self.utilization_pct())
        }
    }
}

/// GPU figures per team (`None`: the unallocated bucket), from the pools and the GPU pieces.
pub fn gpu_figures(allocation: &Allocation) -> BTreeMap<Option<usize>, GpuFigures> {
    use finops_allocate::gpu::{Capacity, PoolKey};
    let mut out: BTreeMap<Option<usize>, GpuFigures> = BTreeMap::new();
    for pool in allocation.gpu.iter().filter(|p| p.charged) {
        for (team, t) in &pool.teams {
            let f = out.entry(*team).or_default();
            f.gpu_hours += t.gpu_hours;
            if pool.request_based {
                f.requested_hours += t.gpu_hours;
            }
            f.busy_hours += t.busy_hours;
            f.idle_hours += t.idle_hours;
            f.idle_cost.0 += pool.cost_of_hours(t.idle_hours).round_to_cents().0;
        }
    }
    for p in allocation.pieces.iter().filter(|p| p.kind == Kind::Gpu) {
        let f = out.entry(p.team).or_default();
        match PoolKey::of_charged_line(&allocation.lines[p.line as usize]).capacity {
            Capacity::OnDemand => f.on_demand.0 += p.cents.0,
            Capacity::Spot => f.spot.0 += p.cents.0,
            Capacity::OnPrem => f.on_prem.0 += p.cents.0,
        }
    }
    out
}

/// Rows per team in rule-set order, then the unallocated bucket.
pub fn team_rows(rules: &RuleSet, allocation: &Allocation, previous: Option<&BTreeMap<String, Cents>>) -> Vec<TeamRow> {
    let totals = allocation.team_totals();
    let mut gpu = gpu_figures(allocation);
    let mut rows = Vec::new();
    let mut push = |name: String, id: Option<usize>| {
        let t = totals.get(&id).cloned().unwrap_or_default();
        let gpu_usage = gpu.remove(&id).unwrap_or_default();
        rows.push(TeamRow {
            previous: previous.map(|p| p.get(&name).copied().unwrap_or_default()),
            team: name,
            direct: t.direct,
            shared: t.shared,
            // The unallocated bucket's GPU part (unmapped namespaces, a separate idle pool) too.
            gpu: Cents(gpu_usage.on_demand.0 + gpu_usage.spot.0 + gpu_usage.on_prem.0),
            total: t.total(),
            exact: t.exact,
            gpu_usage,
        });
    };
    for (id, team) in rules.teams.iter().enumerate() {
        push(team.name.clone(), Some(id));
    }
    push(rules.unallocated.clone(), None);
    rows
}

/// Change against the previous month, in percent with one decimal; empty when there is no base.
fn change_pct(now: Cents, before: Option<Cents>) -> String {
    match before {
        Some(b) if b.0 != 0 => format!("{:.1}", (now.0 - b.0) as f64 * 100.0 / b.0.abs() as f64),
        _ => String::new(),
    }
}

/// `summary.csv`.
pub fn summary_csv(rows: &[TeamRow]) -> Vec<u8> {
    let mut csv = CsvBuilder::new(&[
        "team",
        "direct",
        "shared",
        "gpu",
        "total",
        "previous_month",
        "change_pct",
        "gpu_hours",
        "gpu_utilization_pct",
        "gpu_idle_hours",
        "gpu_idle_cost",
        "gpu_on_demand",
        "gpu_spot",
        "gpu_on_prem",
    ]);
    for r in rows {
        let g = &r.gpu_usage;
        let cells = [
            r.team.clone(),
            r.direct.to_string(),
            r.shared.to_string(),
            r.gpu.to_string(),
            r.total.to_string(),
            r.previous.map(|c| c.to_string()).unwrap_or_default(),
            change_pct(r.total, r.previous),
            format!("{:.1}", g.gpu_hours),
            g.utilization_text(),
            format!("{:.1}", g.idle_hours),
            g.idle_cost.to_string(),
            g.on_demand.to_string(),
            g.spot.to_string(),
            g.on_prem.to_string(),
        ];
        csv.row(cells.iter().map(String::as_str));
    }
    csv.into_bytes()
}

/// `teams/<team>.csv` for every team and the unallocated bucket (as `teams/<unallocated>.csv`),
/// made one at a time and handed to `write` whole (tests and benchmarks that compare bytes).
pub fn for_each_team_file<E>(rules: &RuleSet, allocation: &Allocation, write: &mut dyn FnMut(OutputFile) -> Result<(), E>) -> Result<(), E> {
    write_team_files(rules, allocation, &mut |name, fill| {
        let mut bytes = Vec::new();
        fill(&mut bytes).expect("writing into memory does not fail");
        write(OutputFile { name: name.to_string(), bytes })
    })
}

/// `teams/<team>.csv` for every team and the unallocated bucket, each streamed row by row into
/// the writer `write` gives it (a staging file): a month where every line is its own grain row
/// never holds a team's file in memory, only the positions of that team's pieces.
pub fn write_team_files<E>(rules: &RuleSet, allocation: &Allocation, write: &mut dyn FnMut(&str, &mut crate::publish::Fill) -> Result<(), E>) -> Result<(), E> {
    let tag_keys = rules.tag_keys();
    let teams: Vec<(Option<usize>, String)> = rules.teams.iter().enumerate().map(|(i, t)| (Some(i), t.name.clone())).chain([(None, rules.unallocated.clone())]).collect();
    // One column per dimension after the fixed ones, so a sheet's columns stay where they were.
    let mut header = vec!["date", "account", "service", "resource", "usage_type", "pricing_category", "charge_category", "rule", "method", "ratio", "driver", "amount", "tags"];
    header.extend(rules.dimensions.iter().map(|d| d.name.as_str()));
    for (id, name) in teams {
        // Unique: rule validation refuses two teams with one stem.
        let stem = sanitise_file_stem(&name);
        let mut pieces: Vec<u32> = (0..allocation.pieces.len() as u32).filter(|&i| allocation.pieces[i as usize].team == id).collect();
        let key = |i: &u32| {
            let p = &allocation.pieces[*i as usize];
            let l = &allocation.lines[p.line as usize];
            (&l.usage_date, &l.account, &l.service, &l.resource, &l.usage_type, &p.rule)
        };
        pieces.sort_by(|a, b| key(a).cmp(&key(b)));
        let mut fill = |out: &mut dyn std::io::Write| -> std::io::Result<()> {
            let mut csv = CsvWriter::new(out, &header)?;
            for &i in &pieces {
                let p = &allocation.pieces[i as usize];
                let l = &allocation.lines[p.line as usize];
                let ratio = format!("{:.6}", p.ratio);
                let amount = p.cents.to_string();
                let driver = p.driver.as_deref().unwrap_or_default();
                let account = crate::csv::text_id(&l.account);
                // The line's values of the rule set's tag keys: in unallocated.csv, what to fix (a
                // value that names no team, or no value at all).
                let tags = tag_keys.iter().zip(&l.tags).filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}"))).collect::<Vec<_>>().join("; ");
                let fixed = [&*l.usage_date, &account, &l.service, &l.resource, &l.usage_type, &l.pricing_category, &l.charge_category, &p.rule, &p.method, &ratio, driver, &amount, &tags];
                csv.row(fixed.into_iter().chain(p.dims.iter().map(|v| &**v)))?;
            }
            Ok(())
        };
        write(&format!("teams/{stem}.csv"), &mut fill)?;
    }
    Ok(())
}

/// Why a team got what it got: direct cost by rule, and each share with its method, ratio and
/// driver. `service` narrows it to one service.
///
/// A team that is not in the rule set, or a service the month does not have, is an error that
/// says what is (with a "did you mean" for a near miss): a wrong name must not print zeros.
pub fn explain(rules: &RuleSet, allocation: &Allocation, team: &str, service: Option<&str>) -> Result<String, String> {
    let id = if team == rules.unallocated {
        None
    } else {
        let Some(id) = rules.resolve_team(team) else {
            let mut names: Vec<String> = rules.teams.iter().map(|t| t.name.clone()).collect();
            names.extend(rules.teams.iter().flat_map(|t| t.aliases.iter().cloned()));
            names.push(rules.unallocated.clone());
            let teams: Vec<&str> = rules.teams.iter().map(|t| t.name.as_str()).collect();
            return Err(format!("`{team}` is not a team or alias in the rule set{}; teams: {}, and `{}`", finops_allocate::rules::suggestion(team, &names), teams.join(", "), rules.unallocated));
        };
        Some(id)
    };
    if let Some(service) = service {
        let services: std::collections::BTreeSet<&str> = allocation.lines.iter().map(|l| &*l.service).collect();
        if !services.contains(service) {
            let candidates: Vec<String> = services.iter().map(|s| s.to_string()).collect();
            let hint =
                candidates.iter().find(|c| c.eq_ignore_ascii_case(service)).map(|c| format!(" (did you mean `{c}`?)")).unwrap_or_else(|| finops_allocate::rules::suggestion(service, &candidates));
            let period = allocation.lines.first().map(|l| l.billing_period.to_string()).unwrap_or_default();
            return Err(format!("`{service}` is not a service in {period}{hint}; its services: {}", candidates.join(", ")));
        }
    }
    let name = rules.team_or_unallocated(id).to_string();
    let in_scope = |p: &&Piece| service.is_none_or(|s| &*allocation.lines[p.line as usize].service == s);
    let mine: Vec<&Piece> = allocation.pieces.iter().filter(|p| p.team == id).filter(in_scope).collect();
    let period = allocation.lines.first().map(|l| l.billing_period.to_string()).unwrap_or_default();
    let total: Cents = mine.iter().map(|p| p.cents).sum();
    let mut out = String::new();
    let scope = service.map(|s| format!(", service {s}")).unwrap_or_default();
    let _ = writeln!(out, "{name} — {period}{scope}, {} cost: {total} {}", rules.cost_basis.name(), rules.currency);

    let mut direct: BTreeMap<(&str, &str), (Cents, usize)> = BTreeMap::new();
    let mut shared: BTreeMap<&str, Vec<&Piece>> = BTreeMap::new();
    let mut gpu: BTreeMap<(String, &str, &str), Vec<&Piece>> = BTreeMap::new();
    for p in &mine {
        match p.kind {
            Kind::Gpu => {
                let pool = finops_allocate::gpu::PoolKey::of_charged_line(&allocation.lines[p.line as usize]).label();
                gpu.entry((pool, &*p.rule, &*p.method)).or_default().push(p);
            }
            Kind::Direct => {
                let e = direct.entry((&*p.rule, &*p.method)).or_default();
                e.0 .0 += p.cents.0;
                e.1 += 1;
            }
            Kind::Shared => shared.entry(&*p.rule).or_default().push(p),
        }
    }
    let direct_total: Cents = direct.values().map(|(c, _)| *c).sum();
    let _ = writeln!(out, "\n  direct: {direct_total}");
    for ((rule, method), (cents, lines)) in &direct {
        let why = match *method {
            "tag" => format!("tagged `{}` with this team or an alias", rule.trim_start_matches("tag:")),
            "assign" => "matched [[assign]] rule".to_string(),
            "fallback" => "untagged, matched fallback [[assign]] rule".to_string(),
            _ => "no rule, no team tag".to_string(),
        };
        let _ = writeln!(out, "    {cents:>14}  {rule} ({why}), {lines} cost lines");
    }
    let shared_total: Cents = shared.values().flatten().map(|p| p.cents).sum();
    let _ = writeln!(out, "\n  shared: {shared_total}");
    for (rule, pieces) in &shared {
        let cents: Cents = pieces.iter().map(|p| p.cents).sum();
        // A line split over dimension values is several pieces: its amount counts once.
        let lines: std::collections::BTreeSet<usize> = pieces.iter().map(|p| p.line as usize).collect();
        let pool: Money = lines.iter().map(|l| allocation.lines[*l].amount).sum();
        let got: Money = pieces.iter().map(|p| p.amount).sum();
        let method = &*pieces[0].method;
        let ratio = if pool.is_zero() { 0.0 } else { got.units() as f64 / pool.units() as f64 };
        let mut drivers: Vec<&str> = pieces.iter().filter_map(|p| p.driver.as_deref()).collect();
        drivers.sort_unstable();
        drivers.dedup();
        let driver = match drivers.as_slice() {
            [one] => format!("driver: {one}"),
            many => format!("{} different daily drivers", many.len()),
        };
        let _ = writeln!(out, "    {cents:>14}  {rule}: {method} split, {:.2}% of the shared {}; {driver}", ratio * 100.0, pool.round_to_cents());
    }
    if !gpu.is_empty() {
        let gpu_total: Cents = gpu.values().flatten().map(|p| p.cents).sum();
        let _ = writeln!(out, "\n  gpu: {gpu_total}");
        for ((pool, rule, method), pieces) in &gpu {
            let cents: Cents = pieces.iter().map(|p| p.cents).sum();
            let what = if *rule == finops_allocate::gpu::GPU_RULE { format!("GPU-hours, basis {method}") } else { format!("idle pool, {method}") };
            let driver = pieces.iter().filter_map(|p| p.driver.as_deref()).next().unwrap_or("");
            let _ = writeln!(out, "    {cents:>14}  {pool}: {what}; {driver}");
        }
        let rows = team_rows(rules, allocation, None);
        if let Some(row) = rows.iter().find(|r| r.team == name).filter(|r| r.gpu_usage.idle_hours > 0.0) {
            let _ = writeln!(
                out,
                "\n  idle GPU-hours: {:.1} held under the idle threshold, worth {} at the pools' full price per GPU-hour (summary.csv gpu_idle_cost): a measure of waste, not part of the charge above, so it can exceed it",
                row.gpu_usage.idle_hours, row.gpu_usage.idle_cost
            );
        }
    }
    for (d, dimension) in rules.dimensions.iter().enumerate() {
        // The team's lines by value: what its column of summary-<dimension>.csv holds (within a
        // cent per value there; here the lines' own cents, which add up to the total above).
        let mut by_value: BTreeMap<&str, Cents> = BTreeMap::new();
        for p in &mine {
            by_value.entry(p.dims.get(d).map_or(dimension.unassigned.as_str(), |v| &**v)).or_default().0 += p.cents.0;
        }
        let mut values: Vec<(&str, Cents)> = by_value.into_iter().filter(|(_, c)| c.0 != 0).collect();
        values.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        let _ = writeln!(out, "\n  by {}:", dimension.name);
        for (value, cents) in values {
            let _ = writeln!(out, "    {cents:>14}  {value}");
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: GPU charges were recognised by rule name, so an `[[assign]]` named `gpu` was
    /// counted in both `direct` and `gpu`, and the summary row no longer added up.
    #[test]
    fn an_assign_rule_named_gpu_is_direct_in_the_summary() {
        let text = "version = 1\nteam_tags = [\"team\"]\n[teams.ai]\n[[assign]]\nname = \"gpu\"\nwhen = { service = [\"AmazonEC2\"] }\nteam = \"ai\"\n";
        let rules = RuleSet::parse(std::path::Path::new("r.toml"), text).unwrap();
        let line = finops_allocate::CostLine {
            billing_period: "2025-10".into(),
            usage_date: "2025-10-01".into(),
            account: "1".into(),
            service: "AmazonEC2".into(),
            resource: "i-1".into(),
            usage_type: "BoxUsage:p4d.24xlarge".into(),
            operation: "".into(),
            region: "".into(),
            charge_category: "Usage".into(),
            pricing_category: "OnDemand".into(),
            instance_type: "p4d.24xlarge".into(),
            tags: vec![None].into(),
            amount: "12.34".parse().unwrap(),
            line_items: 1,
            origin: 0,
        };
        let allocation = finops_allocate::allocate(&rules, vec![line], &Default::default()).unwrap();
        let ai = &team_rows(&rules, &allocation, None)[0];
        assert_eq!((ai.direct, ai.gpu, ai.total), (Cents(1234), Cents(0), Cents(1234)));
        assert_eq!(ai.gpu_usage.on_demand, Cents(0));
    }
}
