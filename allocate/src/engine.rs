//! The allocation engine: runs the stages in one direction — GPU claim (`gpu`), precedence
//! (`precedence`: assign, share, tag, fallback, unallocated), shares (even / fixed / proportional
//! / metric weights, `shares`), all in exact money — then rounds to cents once: a controlled
//! rounding of team × source group (`rounding`), then each cell's pieces to the cell's figure, so
//! every team's total is within a cent of its exact amount and the teams, the groups and the
//! month all add up to the cent. The types every stage shares are in `ledger`.

use std::collections::{BTreeMap, HashMap};

use crate::gpu::{GpuPool, GpuUsageReport};
pub use crate::ledger::{AllocateError, CostLine, Dim, DimValues, DriverSample, Kind, Piece, TagValues};
use crate::money::{round_to_total, split, Cents, Money};
use crate::precedence::{decide, Decision, Labels, LineView, ReadFields};
use crate::rules::{Granularity, ProportionalTo, RuleSet, SplitMethod, Targets, TeamId};
use crate::shares::{driver_at, metric_weights};

/// The result: the cost lines and every piece of them.
#[derive(Clone, Debug, Default)]
pub struct Allocation {
    pub lines: Vec<CostLine>,
    pub pieces: Vec<Piece>,
    /// The GPU pools of the period, as charged (empty without `[gpu]` or GPU usage).
    pub gpu: Vec<GpuPool>,
}

/// Allocates every line. `drivers` holds the samples of each metric share, by rule name.
pub fn allocate(rules: &RuleSet, lines: Vec<CostLine>, drivers: &HashMap<String, Vec<DriverSample>>) -> Result<Allocation, AllocateError> {
    allocate_with_gpu(rules, lines, drivers, None)
}

/// Allocates every line, charging GPU capacity by the period's GPU usage first (docs/design.md §5):
/// lines of a GPU pool with observed GPU-hours go to teams by GPU-hours; GPU lines with no
/// usage fall through to the usual precedence. On-prem hosts become cost lines of their own.
pub fn allocate_with_gpu(rules: &RuleSet, mut lines: Vec<CostLine>, drivers: &HashMap<String, Vec<DriverSample>>, gpu_usage: Option<&GpuUsageReport>) -> Result<Allocation, AllocateError> {
    // Without usage the GPU pools are still listed (as not measured), so reports show GPU cost.
    let no_usage = GpuUsageReport { period: lines.first().map(|l| l.billing_period.to_string()).unwrap_or_default(), ..GpuUsageReport::default() };
    let gpu = rules.gpu.as_ref().zip(gpu_usage.or(Some(&no_usage)));
    let nodes = match gpu {
        Some((gpu_rules, usage)) => {
            let (nodes, on_prem) = crate::gpu::on_prem_lines(rules, gpu_rules, usage)?;
            // Exactly: the grain comes sized to its rows, and doubling it for a few on-prem
            // lines would hold a second grain's worth of memory for the whole run.
            lines.reserve_exact(on_prem.len());
            lines.extend(on_prem);
            Some(nodes)
        }
        None => None,
    };
    // A canonical order makes the result independent of how the input was ordered (grain rows
    // are distinct, so an unstable sort is as deterministic).
    lines.sort_unstable();
    let tag_keys = rules.tag_keys();
    let plan = gpu.zip(nodes.as_ref()).map(|((gpu_rules, usage), nodes)| crate::gpu::plan(rules, gpu_rules, &lines, usage, nodes));
    let labels = Labels::new(rules);
    let read_fields = ReadFields::of(rules, &tag_keys);
    // Decisions and the dimensions' own values, once per match key.
    let with_dimensions = !rules.dimensions.is_empty();
    let mut values = crate::dimensions::Values::new(rules);
    let mut own: Vec<crate::dimensions::OwnValues> = Vec::with_capacity(if with_dimensions { lines.len() } else { 0 });
    let mut decisions: HashMap<Vec<usize>, (Decision, crate::dimensions::OwnValues)> = HashMap::new();
    let (mut caching, mut hits, mut misses) = (true, 0u64, 0u64);
    let mut pieces = Vec::with_capacity(lines.len());
    let mut shared: Vec<(usize, usize)> = Vec::new(); // (line, share rule)
    for (i, line) in lines.iter().enumerate() {
        if let (Some(plan), Some((gpu_rules, _))) = (&plan, gpu) {
            if let Some(&pool) = plan.line_pool.get(&i) {
                // A GPU line's charge needs no precedence; only its own dimension values.
                if with_dimensions {
                    own.push(values.own(rules, &tag_keys, &LineView::new(rules, &tag_keys, line), line));
                }
                pieces.extend(crate::gpu::charge(gpu_rules, &plan.pools[pool], i, line));
                continue;
            }
        }
        // Precedence is decided once per distinct match key (the values the rules read), not per
        // line: grain rows of one resource on every day share theirs.
        // Where keys hardly repeat (every line its own resource) the cache only costs: it is
        // dropped once it has missed more than it hit over a large sample.
        if caching && i % 65_536 == 65_535 && hits < misses {
            caching = false;
            decisions = HashMap::new();
        }
        let mut decide_line = || {
            let view = LineView::new(rules, &tag_keys, line);
            let own_values = if with_dimensions { values.own(rules, &tag_keys, &view, line) } else { Default::default() };
            (decide(rules, &labels, &view), own_values)
        };
        let (decision, own_values) = if caching {
            let key = read_fields.key(line);
            match decisions.get(&key) {
                Some(d) => {
                    hits += 1;
                    d.clone()
                }
                None => {
                    misses += 1;
                    let d = decide_line();
                    decisions.insert(key, d.clone());
                    d
                }
            }
        } else {
            decide_line()
        };
        if with_dimensions {
            own.push(own_values);
        }
        match decision {
            Decision::Direct { team, rule, method } => pieces.push(direct(i, Some(team), Kind::Direct, rule, method, line.amount)),
            Decision::Share(rule) => shared.push((i, rule)),
            Decision::Unallocated => pieces.push(direct(i, None, Kind::Direct, labels.unallocated.clone(), labels.method("none"), line.amount)),
        }
    }

    // Own cost per team, by period and by day: the weights of proportional and "all" shares;
    // `cloud_*` leave out on-prem GPU at the rate card (ProportionalTo::Cloud).
    let mut direct_period: BTreeMap<(&str, TeamId), Money> = BTreeMap::new();
    let mut direct_day: BTreeMap<(&str, TeamId), Money> = BTreeMap::new();
    let mut cloud_period: BTreeMap<(&str, TeamId), Money> = BTreeMap::new();
    let mut cloud_day: BTreeMap<(&str, TeamId), Money> = BTreeMap::new();
    for p in &pieces {
        // A team's GPU charge is its own use, like direct cost: proportional shares weigh it.
        if let (Kind::Direct | Kind::Gpu, Some(team)) = (&p.kind, p.team) {
            let line = &lines[p.line as usize];
            *direct_period.entry((&*line.billing_period, team)).or_default() += p.amount;
            *direct_day.entry((&*line.usage_date, team)).or_default() += p.amount;
            if !crate::gpu::is_on_prem(&line.account, &line.service) {
                *cloud_period.entry((&*line.billing_period, team)).or_default() += p.amount;
                *cloud_day.entry((&*line.usage_date, team)).or_default() += p.amount;
            }
        }
    }
    let driver_weights = metric_weights(rules, drivers)?;
    // Direct and GPU pieces carry their values before shares weigh them.
    let mut mixes = if with_dimensions {
        let no_pools = (Vec::new(), BTreeMap::new());
        let (pools, line_pool) = plan.as_ref().map_or((&no_pools.0, &no_pools.1), |p| (&p.pools, &p.line_pool));
        crate::dimensions::carry_own(rules, &values, &own, &mut pieces, pools, line_pool);
        let by_day = |day: bool| rules.share.iter().any(|s| (s.granularity == Granularity::Day) == day).then(|| crate::dimensions::OwnMix::of(&lines, &pieces, day));
        Some((by_day(false), by_day(true)))
    } else {
        None
    };

    // Share pieces carry their values as they are made: a second list of them (before and after)
    // would hold the month's largest table twice.
    let share_by_day: HashMap<&str, bool> = rules.share.iter().map(|r| (r.name.as_str(), r.granularity == Granularity::Day)).collect();
    let mut share_pieces = Vec::new();
    let mut emit = |piece: Piece| match mixes.as_mut() {
        Some((period_mix, day_mix)) => {
            let by_day = share_by_day.get(&*piece.rule).copied().unwrap_or(false);
            let mix = if by_day { day_mix } else { period_mix }.as_mut().expect("a mix for each granularity a share uses");
            crate::dimensions::carry_shared(&values, &own, &lines, piece, mix, by_day, &mut share_pieces);
        }
        None => share_pieces.push(piece),
    };
    for (i, rule_index) in shared {
        let line = &lines[i];
        let rule = &rules.share[rule_index];
        let (scope, direct_costs, cloud_costs) = match rule.granularity {
            Granularity::Period => (&*line.billing_period, &direct_period, &cloud_period),
            Granularity::Day => (&*line.usage_date, &direct_day, &cloud_day),
        };
        let positive_direct = |team: TeamId| direct_costs.get(&(scope, team)).copied().filter(|m| !m.is_negative() && !m.is_zero());
        let positive_cloud = |team: TeamId| cloud_costs.get(&(scope, team)).copied().filter(|m| !m.is_negative() && !m.is_zero());
        let targets: Vec<TeamId> = match &rule.among {
            Targets::All => (0..rules.teams.len()).filter(|t| positive_direct(*t).is_some()).collect(),
            Targets::Teams(t) => t.clone(),
        };
        // (team, weight, what the weight came from)
        let mut weights: Vec<(TeamId, u128, Dim)> = match &rule.method {
            SplitMethod::Even => targets.iter().map(|t| (*t, 1, labels.one_share.clone())).collect(),
            SplitMethod::Fixed(w) => w.iter().map(|(t, units)| (*t, *units as u128, Dim::from(format!("{}%", *units as f64 / 1e6)))).collect(),
            SplitMethod::Proportional(to) => targets
                .iter()
                .map(|t| {
                    let (cost, what) = match to {
                        ProportionalTo::Cloud => (positive_cloud(*t), "direct + GPU on the AWS bill"),
                        ProportionalTo::All => (positive_direct(*t), "direct + GPU, on-prem at the rate card included"),
                    };
                    let cost = cost.unwrap_or_default();
                    (*t, cost.units().max(0) as u128, Dim::from(format!("own cost {} ({what})", cost.round_to_cents())))
                })
                .collect(),
            SplitMethod::Metric(_) => {
                let table = &driver_weights[&rule.name];
                let by_day = matches!(rule.granularity, Granularity::Day);
                let values = by_day.then(|| table.get(&(line.billing_period.to_string(), Some(line.usage_date.to_string())))).flatten();
                let values = values.or_else(|| table.get(&(line.billing_period.to_string(), None))).or_else(|| table.get(&("".into(), None)));
                let Some(values) = values else {
                    return Err(AllocateError::NoDriverData { rule: rule.name.clone(), period: line.billing_period.to_string(), at: driver_at(rule) });
                };
                if values.values().all(|(w, _)| *w == 0) {
                    // A driver that measured nothing at all is a broken driver, not a reason to
                    // leave the shared cost silently unallocated.
                    let scope = if by_day { line.usage_date.to_string() } else { line.billing_period.to_string() };
                    return Err(AllocateError::ZeroDriver { rule: rule.name.clone(), scope, at: driver_at(rule) });
                }
                targets.iter().map(|t| (*t, values.get(t).map_or(0, |(w, _)| *w), values.get(t).map_or_else(|| Dim::from("0"), |(_, s)| s.clone()))).collect()
            }
        };
        weights.retain(|(t, _, _)| targets.contains(t));
        let total: u128 = weights.iter().map(|(_, w, _)| w).sum();
        if total == 0 {
            // Nobody to carry it (no direct spend, no driver weight): it stays visible as unallocated.
            emit(Piece {
                line: i as u32,
                team: None,
                kind: Kind::Shared,
                rule: labels.share[rule_index].clone(),
                method: labels.no_weight[rule_index].clone(),
                ratio: 1.0,
                driver: None,
                amount: line.amount,
                cents: Cents(0),
                dims: DimValues::default(),
            });
            continue;
        }
        let amounts = split(line.amount, &weights.iter().map(|(_, w, _)| *w).collect::<Vec<_>>());
        for ((team, weight, driver), amount) in weights.into_iter().zip(amounts) {
            emit(Piece {
                line: i as u32,
                team: Some(team),
                kind: Kind::Shared,
                rule: labels.share[rule_index].clone(),
                method: labels.method(rule.method.name()),
                ratio: weight as f64 / total as f64,
                driver: Some(driver),
                amount,
                cents: Cents(0),
                dims: DimValues::default(),
            });
        }
    }
    drop(emit);
    pieces.reserve_exact(share_pieces.len());
    pieces.extend(share_pieces);
    // In place (a stable sort's buffer is half the pieces again). The order is total: pieces of
    // one line, team and rule differ by their dimension values, and were made in that order.
    pieces.sort_unstable_by(|a, b| a.line.cmp(&b.line).then(a.team.cmp(&b.team)).then(a.rule.cmp(&b.rule)).then(a.dims.cmp(&b.dims)));
    round_controlled(&lines, &mut pieces);
    Ok(Allocation { lines, pieces, gpu: plan.map(|p| p.pools).unwrap_or_default() })
}

fn direct(line: usize, team: Option<TeamId>, kind: Kind, rule: Dim, method: Dim, amount: Money) -> Piece {
    Piece { line: line as u32, team, kind, rule, method, ratio: 1.0, driver: None, amount, cents: Cents(0), dims: DimValues::default() }
}

/// Rounds pieces to cents once, consistently (docs/design.md §3): a controlled rounding of the table
/// (team, direct / shared / GPU) × (billing period, account, service, GPU pool or the rest), with
/// the kinds nested in their team and the pools in their source group, so every team's total and
/// each of its three parts, every source group, every GPU pool and the month are each their exact
/// amount rounded down or up (the month: to the nearest cent); then each
/// cell's pieces are rounded to that cell's figure by largest remainder. A team's lines add up to
/// its row, the rows to the month, each group's teams to its figure in `services.csv`.
fn round_controlled(lines: &[CostLine], pieces: &mut [Piece]) {
    type Part = Option<crate::gpu::PoolKey>;
    let mut groups: BTreeMap<(&str, &str, &str), usize> = BTreeMap::new();
    let mut columns: BTreeMap<(usize, Part), usize> = BTreeMap::new();
    let mut column_group = Vec::new();
    // Rows are (team, kind): a team's direct, shared and GPU columns are rounded as parts of
    // its total, so each is within a cent of its exact amount too.
    let mut cells: BTreeMap<((Option<TeamId>, Kind), usize), Vec<usize>> = BTreeMap::new();
    for (i, p) in pieces.iter().enumerate() {
        let line = &lines[p.line as usize];
        let next_group = groups.len();
        let group = *groups.entry((&*line.billing_period, &*line.account, &*line.service)).or_insert(next_group);
        let part = (p.kind == Kind::Gpu).then(|| crate::gpu::PoolKey::of_charged_line(line));
        let next_column = columns.len();
        let column = *columns.entry((group, part)).or_insert_with(|| {
            column_group.push(group);
            next_column
        });
        cells.entry(((p.team, p.kind), column)).or_default().push(i);
    }
    let mut rows: BTreeMap<(Option<TeamId>, Kind), usize> = BTreeMap::new();
    let mut teams: BTreeMap<Option<TeamId>, usize> = BTreeMap::new();
    let mut row_team = Vec::new();
    for (team, kind) in cells.keys().map(|(row, _)| *row) {
        let next_team = teams.len();
        let t = *teams.entry(team).or_insert(next_team);
        let next_row = rows.len();
        rows.entry((team, kind)).or_insert_with(|| {
            row_team.push(t);
            next_row
        });
    }
    let table: Vec<crate::rounding::Cell> =
        cells.iter().map(|(key, members)| crate::rounding::Cell { row: rows[&key.0], column: key.1, amount: members.iter().map(|&i| pieces[i].amount).sum() }).collect();
    let total: Money = pieces.iter().map(|p| p.amount).sum();
    // The rate card's on-prem cost is a source of its own beside the bill, so the bill's groups
    // (what services.csv prints) add up to the bill rounded down or up.
    let mut group_source = vec![0; groups.len()];
    for ((_, account, service), g) in &groups {
        group_source[*g] = usize::from(crate::gpu::is_on_prem(account, service));
    }
    let cell_cents = crate::rounding::controlled_rounding(&table, &row_team, &column_group, &group_source, total.round_to_cents());
    for (members, target) in cells.values().zip(cell_cents) {
        let amounts: Vec<Money> = members.iter().map(|&i| pieces[i].amount).collect();
        for (&i, cents) in members.iter().zip(round_to_total(&amounts, target)) {
            pieces[i].cents = cents;
        }
    }
}

/// Per team (and the unallocated bucket, `None`): direct, shared, GPU and total cents. The
/// parts add up to the total on every row, the unallocated bucket's included.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TeamTotals {
    pub direct: Cents,
    pub shared: Cents,
    pub gpu: Cents,
    pub exact: Money,
}

impl TeamTotals {
    pub fn total(&self) -> Cents {
        Cents(self.direct.0 + self.shared.0 + self.gpu.0)
    }
}

impl Allocation {
    pub fn team_totals(&self) -> BTreeMap<Option<TeamId>, TeamTotals> {
        let mut out: BTreeMap<Option<TeamId>, TeamTotals> = BTreeMap::new();
        for p in &self.pieces {
            let t = out.entry(p.team).or_default();
            match p.kind {
                Kind::Direct => t.direct.0 += p.cents.0,
                Kind::Shared => t.shared.0 += p.cents.0,
                Kind::Gpu => t.gpu.0 += p.cents.0,
            }
            t.exact += p.amount;
        }
        out
    }

    /// Printed cents per source group (billing period, account, service): what `services.csv`
    /// prints for the allocated cost basis, so each group's teams add up to it.
    pub fn group_cents(&self) -> BTreeMap<(String, String, String), Cents> {
        let mut out: BTreeMap<(String, String, String), Cents> = BTreeMap::new();
        for p in &self.pieces {
            let l = &self.lines[p.line as usize];
            out.entry((l.billing_period.to_string(), l.account.to_string(), l.service.to_string())).or_default().0 += p.cents.0;
        }
        out
    }

    /// The printed cents of the AWS bill and of the on-prem GPU hosts priced by the rate card,
    /// apart: the teams add up to their sum (the bill is what `services.csv` adds up to).
    pub fn billed_and_rate_card_cents(&self) -> (Cents, Cents) {
        let (mut billed, mut rate_card) = (Cents(0), Cents(0));
        for ((_, account, service), cents) in self.group_cents() {
            if crate::gpu::is_on_prem(&account, &service) {
                rate_card.0 += cents.0;
            } else {
                billed.0 += cents.0;
            }
        }
        (billed, rate_card)
    }

    /// Whether GPU cost was charged by measured GPU usage (some pool charged by GPU-hours);
    /// `None` when the rules have no `[gpu]`. Team figures of two months compare only when
    /// this agrees (`gpu::not_comparable`).
    pub fn gpu_measured(&self, rules: &crate::RuleSet) -> Option<bool> {
        rules.gpu.as_ref().map(|_| self.gpu.iter().any(|p| p.charged))
    }

    /// Share of the allocated total that reached a team (not the unallocated bucket), 0..=1;
    /// 1 for an empty month.
    pub fn coverage(&self) -> f64 {
        let (mut all, mut unallocated) = (0i64, 0i64);
        for p in &self.pieces {
            all += p.cents.0;
            if p.team.is_none() {
                unallocated += p.cents.0;
            }
        }
        if all == 0 {
            1.0
        } else {
            1.0 - unallocated as f64 / all as f64
        }
    }

    /// Dimension `d` of the rules as a table of cents that keeps `summary.csv`'s team totals.
    pub fn dimension_table(&self, rules: &RuleSet, d: usize) -> crate::dimensions::DimensionTable {
        let team_cents = self.team_totals().into_iter().map(|(team, t)| (team, t.total())).collect();
        crate::dimensions::table(rules, &self.pieces, &team_cents, d)
    }

    /// Exact total of the input lines.
    pub fn input_total(&self) -> Money {
        self.lines.iter().map(|l| l.amount).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undated_driver_samples_cover_the_period() {
        let text = "version = 1\nteam_tags = [\"team\"]\n[teams.a]\n[teams.b]\n[[share]]\nname = \"s\"\nwhen = { service = [\"X\"] }\nmethod = \"metric\"\namong = [\"a\", \"b\"]\nmetric = { source = \"prometheus\", query = \"q\" }\n";
        let rules = RuleSet::parse(std::path::Path::new("r.toml"), text).unwrap();
        let line = CostLine {
            billing_period: "2025-10".into(),
            usage_date: "2025-10-03".into(),
            account: "1".into(),
            service: "X".into(),
            resource: "".into(),
            usage_type: "".into(),
            operation: "".into(),
            region: "".into(),
            charge_category: "Usage".into(),
            pricing_category: "".into(),
            instance_type: "".into(),
            tags: vec![None].into(),
            amount: "4".parse().unwrap(),
            line_items: 1,
            origin: 0,
        };
        let samples = vec![DriverSample { date: None, key: "a".into(), value: 1.0 }, DriverSample { date: None, key: "b".into(), value: 3.0 }];
        let allocation = allocate(&rules, vec![line], &HashMap::from([("s".to_string(), samples)])).unwrap();
        let cents: Vec<i64> = allocation.pieces.iter().map(|p| p.cents.0).collect();
        assert_eq!(cents, vec![100, 300]);
    }

    #[test]
    fn instance_families() {
        let mut line = CostLine {
            billing_period: "".into(),
            usage_date: "".into(),
            account: "".into(),
            service: "".into(),
            resource: "".into(),
            usage_type: "".into(),
            operation: "".into(),
            region: "".into(),
            charge_category: "".into(),
            pricing_category: "".into(),
            instance_type: "p4d.24xlarge".into(),
            tags: TagValues::default(),
            amount: Money::ZERO,
            line_items: 0,
            origin: 0,
        };
        assert_eq!(line.instance_family(), "p4d");
        line.instance_type = "db.r6g.4xlarge".into();
        assert_eq!(line.instance_family(), "r6g");
        line.instance_type = "".into();
        assert_eq!(line.instance_family(), "");
    }
}
