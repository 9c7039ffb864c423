//! The allocation engine: every cost line to a team by the rule set's precedence (assign, share,
//! tag, fallback, unallocated), shared cost split by even / fixed / proportional / metric weights,
//! all in exact money, then rounded to cents once: a controlled rounding of team × source group
//! (`rounding`), then each cell's pieces to the cell's figure, so every team's total is within a
//! cent of its exact amount and the teams, the groups and the month all add up to the cent.

use std::collections::{BTreeMap, HashMap};

use crate::gpu::{GpuPool, GpuUsageReport};
use crate::money::{round_to_total, split, Cents, Money};
use crate::rules::{Field, Granularity, Matcher, RuleSet, SplitMethod, Targets, TeamId};

/// A dimension value of the grain (account, service, resource, tag, ...). Shared, not copied:
/// grain rows repeat the same few values many times over.
pub type Dim = std::sync::Arc<str>;

/// One cost line at the allocation grain (many source line items summed).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CostLine {
    pub billing_period: Dim,
    /// `YYYY-MM-DD` (UTC).
    pub usage_date: Dim,
    pub account: Dim,
    pub service: Dim,
    pub resource: Dim,
    pub usage_type: Dim,
    pub operation: Dim,
    pub region: Dim,
    pub charge_category: Dim,
    pub pricing_category: Dim,
    pub instance_type: Dim,
    /// Values of [`RuleSet::tag_keys`], in that order (trimmed; `None` when absent).
    pub tags: Vec<Option<Dim>>,
    pub amount: Money,
    pub line_items: u64,
}

/// Orders dimension values; a value shared by both (the grain interns them) is equal without
/// reading it, which keeps sorting a month of lines cheap.
fn cmp_dim(a: &Dim, b: &Dim) -> std::cmp::Ordering {
    if std::sync::Arc::ptr_eq(a, b) {
        std::cmp::Ordering::Equal
    } else {
        a.cmp(b)
    }
}

impl Ord for CostLine {
    /// By period, day, account, service, resource, usage type, operation, region, charge and
    /// pricing category, instance type, tags, then amount: the engine's canonical order.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        fn dims(l: &CostLine) -> [&Dim; 11] {
            [&l.billing_period, &l.usage_date, &l.account, &l.service, &l.resource, &l.usage_type, &l.operation, &l.region, &l.charge_category, &l.pricing_category, &l.instance_type]
        }
        dims(self)
            .iter()
            .zip(dims(other))
            .map(|(a, b)| cmp_dim(a, b))
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| {
                self.tags
                    .iter()
                    .zip(&other.tags)
                    .map(|(a, b)| match (a, b) {
                        (Some(a), Some(b)) => cmp_dim(a, b),
                        (a, b) => a.is_some().cmp(&b.is_some()),
                    })
                    .find(|o| o.is_ne())
                    .unwrap_or_else(|| self.tags.len().cmp(&other.tags.len()))
            })
            .then_with(|| self.amount.cmp(&other.amount))
            .then_with(|| self.line_items.cmp(&other.line_items))
    }
}

impl PartialOrd for CostLine {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl CostLine {
    /// `p4d.24xlarge` -> `p4d`; `db.r6g.4xlarge` -> `r6g`.
    pub fn instance_family(&self) -> &str {
        let t: &str = &self.instance_type;
        let t = ["db.", "cache.", "kafka.", "ml."].iter().find_map(|p| t.strip_prefix(p)).unwrap_or(t);
        t.split('.').next().unwrap_or("")
    }
}

/// A driver reading for a metric share: `key` is a team name, alias, or a key the rule maps.
#[derive(Clone, Debug, PartialEq)]
pub struct DriverSample {
    /// `YYYY-MM-DD`, or `None` for a value that covers the whole period.
    pub date: Option<String>,
    pub key: String,
    pub value: f64,
}

/// How a piece of cost reached its team (or the unallocated bucket, `team: None`): the column it
/// counts in. Decided by the stage that made the piece, never by its rule's name, so a rule
/// named like a GPU rule is still direct cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Assign, tag and fallback rules; unallocated: lines no rule or tag claims.
    Direct,
    /// Shared-resource splits; unallocated: a share with no one to carry it.
    Shared,
    /// GPU capacity charged by GPU-hours, and its idle pool (DESIGN.md §5); unallocated:
    /// namespaces with no team and a `separate` idle pool.
    Gpu,
}

/// One piece of allocated cost: a cost line (or its share) on one team.
#[derive(Clone, Debug, PartialEq)]
pub struct Piece {
    /// Index into [`Allocation::lines`].
    pub line: usize,
    /// `None` is the unallocated bucket.
    pub team: Option<TeamId>,
    pub kind: Kind,
    /// The rule that decided: a rule name, `tag:<key>`, or `unallocated` (shared text: one
    /// allocation per rule, not per piece).
    pub rule: Dim,
    /// `assign`, `tag`, `fallback`, `even`, `fixed`, `proportional`, `metric`, or `none`.
    pub method: Dim,
    /// This piece's share of its line, 0..=1 (1 for direct cost).
    pub ratio: f64,
    /// For splits: the team's weight input (driver value, direct cost or percentage).
    pub driver: Option<Dim>,
    pub amount: Money,
    /// The amount as printed, after largest-remainder rounding within its source group.
    pub cents: Cents,
}

/// The result: the cost lines and every piece of them.
#[derive(Clone, Debug, Default)]
pub struct Allocation {
    pub lines: Vec<CostLine>,
    pub pieces: Vec<Piece>,
    /// The GPU pools of the period, as charged (empty without `[gpu]` or GPU usage).
    pub gpu: Vec<GpuPool>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocateError {
    #[error("{at}: share `{rule}`: driver key `{key}` names no team: map it with mapping = {{ \"{key}\" = \"<team>\" }} or fix the key")]
    UnmappedDriverKey { rule: String, key: String, at: String },
    #[error("{at}: share `{rule}`: the driver has no values for {period}: check the query or file covers the billing period")]
    NoDriverData { rule: String, period: String, at: String },
    #[error("{at}: share `{rule}`: the driver sums to zero over {scope}, so its cost has no one to go to: check that the query or file measures the teams")]
    ZeroDriver { rule: String, scope: String, at: String },
    #[error("{at}: share `{rule}`: driver value {value} for `{key}` is negative or not a number")]
    BadDriverValue { rule: String, key: String, value: String, at: String },
    #[error("{at}: [gpu]: node `{node}` ({model}) has GPU usage and {what}, and rate_card has no price for `{model}`: add rate_card = {{ \"{model}\" = <price per GPU-hour> }}, or export its instance type in the node labels")]
    GpuUnpriced { node: String, model: String, what: String, at: String },
}

/// The texts pieces carry, made once per run and shared by every piece that names them.
struct Labels {
    assign: Vec<Dim>,
    share: Vec<Dim>,
    /// `tag:<key>` per team tag key.
    tag: HashMap<String, Dim>,
    unallocated: Dim,
    methods: HashMap<&'static str, Dim>,
    no_weight: Vec<Dim>,
    one_share: Dim,
}

impl Labels {
    fn new(rules: &RuleSet) -> Labels {
        let methods = ["assign", "tag", "fallback", "none", "even", "fixed", "proportional", "metric"].into_iter().map(|m| (m, Dim::from(m))).collect();
        Labels {
            assign: rules.assign.iter().map(|r| Dim::from(r.name.as_str())).collect(),
            share: rules.share.iter().map(|r| Dim::from(r.name.as_str())).collect(),
            tag: rules.team_tags.iter().map(|k| (k.clone(), Dim::from(format!("tag:{k}")))).collect(),
            unallocated: Dim::from(rules.unallocated.as_str()),
            methods,
            no_weight: rules.share.iter().map(|r| Dim::from(format!("{} (no weight)", r.method.name()))).collect(),
            one_share: Dim::from("1 share"),
        }
    }

    fn method(&self, name: &str) -> Dim {
        self.methods.get(name).cloned().unwrap_or_else(|| Dim::from(name))
    }
}

/// Allocates every line. `drivers` holds the samples of each metric share, by rule name.
pub fn allocate(rules: &RuleSet, lines: Vec<CostLine>, drivers: &HashMap<String, Vec<DriverSample>>) -> Result<Allocation, AllocateError> {
    allocate_with_gpu(rules, lines, drivers, None)
}

/// Whether a line matches a rule's `when`.
pub(crate) fn line_matches(rules: &RuleSet, tag_keys: &[String], line: &CostLine, when: &Matcher) -> bool {
    LineView::new(rules, tag_keys, line).matches(when)
}

/// Allocates every line, charging GPU capacity by the period's GPU usage first (DESIGN.md §5):
/// lines of a GPU pool with observed GPU-hours go to teams by GPU-hours; GPU lines with no
/// usage fall through to the usual precedence. On-prem hosts become cost lines of their own.
pub fn allocate_with_gpu(
    rules: &RuleSet,
    mut lines: Vec<CostLine>,
    drivers: &HashMap<String, Vec<DriverSample>>,
    gpu_usage: Option<&GpuUsageReport>,
) -> Result<Allocation, AllocateError> {
    // Without usage the GPU pools are still listed (as not measured), so reports show GPU cost.
    let no_usage = GpuUsageReport { period: lines.first().map(|l| l.billing_period.to_string()).unwrap_or_default(), ..GpuUsageReport::default() };
    let gpu = rules.gpu.as_ref().zip(gpu_usage.or(Some(&no_usage)));
    let nodes = match gpu {
        Some((gpu_rules, usage)) => {
            let (nodes, on_prem) = crate::gpu::on_prem_lines(rules, gpu_rules, usage)?;
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
    let mut decisions: HashMap<Vec<usize>, Decision> = HashMap::new();
    let (mut caching, mut hits, mut misses) = (true, 0u64, 0u64);
    let mut pieces = Vec::with_capacity(lines.len());
    let mut shared: Vec<(usize, usize)> = Vec::new(); // (line, share rule)
    for (i, line) in lines.iter().enumerate() {
        if let (Some(plan), Some((gpu_rules, _))) = (&plan, gpu) {
            if let Some(&pool) = plan.line_pool.get(&i) {
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
        let decision = if caching {
            let key = read_fields.key(line);
            match decisions.get(&key) {
                Some(d) => {
                    hits += 1;
                    d.clone()
                }
                None => {
                    misses += 1;
                    let d = decide(rules, &labels, &LineView::new(rules, &tag_keys, line));
                    decisions.insert(key, d.clone());
                    d
                }
            }
        } else {
            decide(rules, &labels, &LineView::new(rules, &tag_keys, line))
        };
        match decision {
            Decision::Direct { team, rule, method } => pieces.push(direct(i, Some(team), Kind::Direct, rule, method, line.amount)),
            Decision::Share(rule) => shared.push((i, rule)),
            Decision::Unallocated => pieces.push(direct(i, None, Kind::Direct, labels.unallocated.clone(), labels.method("none"), line.amount)),
        }
    }

    // Direct cost per team, by period and by day: the weights of proportional and "all" shares.
    let mut direct_period: BTreeMap<(&str, TeamId), Money> = BTreeMap::new();
    let mut direct_day: BTreeMap<(&str, TeamId), Money> = BTreeMap::new();
    for p in &pieces {
        // A team's GPU charge is its own use, like direct cost: proportional shares weigh it.
        if let (Kind::Direct | Kind::Gpu, Some(team)) = (&p.kind, p.team) {
            let line = &lines[p.line];
            *direct_period.entry((&*line.billing_period, team)).or_default() += p.amount;
            *direct_day.entry((&*line.usage_date, team)).or_default() += p.amount;
        }
    }
    let driver_weights = metric_weights(rules, drivers)?;

    let mut share_pieces = Vec::new();
    for (i, rule_index) in shared {
        let line = &lines[i];
        let rule = &rules.share[rule_index];
        let (scope, direct_costs) = match rule.granularity {
            Granularity::Period => (&*line.billing_period, &direct_period),
            Granularity::Day => (&*line.usage_date, &direct_day),
        };
        let positive_direct = |team: TeamId| direct_costs.get(&(scope, team)).copied().filter(|m| !m.is_negative() && !m.is_zero());
        let targets: Vec<TeamId> = match &rule.among {
            Targets::All => (0..rules.teams.len()).filter(|t| positive_direct(*t).is_some()).collect(),
            Targets::Teams(t) => t.clone(),
        };
        // (team, weight, what the weight came from)
        let mut weights: Vec<(TeamId, u128, Dim)> = match &rule.method {
            SplitMethod::Even => targets.iter().map(|t| (*t, 1, labels.one_share.clone())).collect(),
            SplitMethod::Fixed(w) => w.iter().map(|(t, units)| (*t, *units as u128, Dim::from(format!("{}%", *units as f64 / 1e6)))).collect(),
            SplitMethod::Proportional => targets
                .iter()
                .map(|t| {
                    let cost = positive_direct(*t).unwrap_or_default();
                    (*t, cost.units().max(0) as u128, Dim::from(format!("direct cost {}", cost.round_to_cents())))
                })
                .collect(),
            SplitMethod::Metric(_) => {
                let table = &driver_weights[&rule.name];
                let by_day = matches!(rule.granularity, Granularity::Day);
                let values = by_day.then(|| table.get(&(line.billing_period.to_string(), Some(line.usage_date.to_string())))).flatten();
                let values = values
                    .or_else(|| table.get(&(line.billing_period.to_string(), None)))
                    .or_else(|| table.get(&("".into(), None)));
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
            share_pieces.push(Piece {
                line: i,
                team: None,
                kind: Kind::Shared,
                rule: labels.share[rule_index].clone(),
                method: labels.no_weight[rule_index].clone(),
                ratio: 1.0,
                driver: None,
                amount: line.amount,
                cents: Cents(0),
            });
            continue;
        }
        let amounts = split(line.amount, &weights.iter().map(|(_, w, _)| *w).collect::<Vec<_>>());
        for ((team, weight, driver), amount) in weights.into_iter().zip(amounts) {
            share_pieces.push(Piece {
                line: i,
                team: Some(team),
                kind: Kind::Shared,
                rule: labels.share[rule_index].clone(),
                method: labels.method(rule.method.name()),
                ratio: weight as f64 / total as f64,
                driver: Some(driver),
                amount,
                cents: Cents(0),
            });
        }
    }
    pieces.extend(share_pieces);
    pieces.sort_by(|a, b| a.line.cmp(&b.line).then(a.team.cmp(&b.team)).then(a.rule.cmp(&b.rule)));
    round_controlled(&lines, &mut pieces);
    Ok(Allocation { lines, pieces, gpu: plan.map(|p| p.pools).unwrap_or_default() })
}

fn direct(line: usize, team: Option<TeamId>, kind: Kind, rule: Dim, method: Dim, amount: Money) -> Piece {
    Piece { line, team, kind, rule, method, ratio: 1.0, driver: None, amount, cents: Cents(0) }
}

fn driver_at(rule: &crate::rules::ShareRule) -> String {
    match &rule.method {
        SplitMethod::Metric(d) => match &d.source {
            crate::rules::DriverSource::File { at, .. } | crate::rules::DriverSource::Prometheus { at, .. } => at.to_string(),
        },
        _ => "".into(),
    }
}

/// Where driver values apply: (billing period, or "" for any; day for daily shares).
type Scope = (String, Option<String>);

/// Per metric share: scope -> team -> (weight, driver text).
type WeightTable = HashMap<Scope, HashMap<TeamId, (u128, Dim)>>;

/// Turns driver samples into integer weights per team, per period and (for daily shares) per day.
fn metric_weights(rules: &RuleSet, drivers: &HashMap<String, Vec<DriverSample>>) -> Result<HashMap<String, WeightTable>, AllocateError> {
    let mut out = HashMap::new();
    for rule in &rules.share {
        let SplitMethod::Metric(driver) = &rule.method else { continue };
        let at = driver_at(rule);
        // (sum, samples) per scope and team: weights use the sum, the driver text shows the mean.
        let mut sums: HashMap<Scope, HashMap<TeamId, (f64, u32)>> = HashMap::new();
        for sample in drivers.get(&rule.name).map(Vec::as_slice).unwrap_or(&[]) {
            if !(sample.value.is_finite() && sample.value >= 0.0) {
                return Err(AllocateError::BadDriverValue { rule: rule.name.clone(), key: sample.key.clone(), value: sample.value.to_string(), at });
            }
            let team = rules
                .resolve_team(&sample.key)
                .or_else(|| driver.mapping.iter().find(|(p, _)| p.matches(sample.key.trim())).map(|(_, t)| *t))
                .ok_or_else(|| AllocateError::UnmappedDriverKey { rule: rule.name.clone(), key: sample.key.clone(), at: at.clone() })?;
            // An undated sample covers whichever period is being allocated (drivers are loaded
            // per period): it is filed under the empty period, which lookups fall back to.
            let period = sample.date.as_deref().map_or("".into(), |d| d.get(..7).unwrap_or(d).to_string());
            let mut add = |scope: Scope| {
                let e = sums.entry(scope).or_default().entry(team).or_default();
                e.0 += sample.value;
                e.1 += 1;
            };
            add((period.clone(), None));
            if let Some(date) = &sample.date {
                add((period, Some(date.clone())));
            }
        }
        // Weights as integers: values scaled so the largest is ~1e15, keeping 15 significant digits.
        let table: WeightTable = sums
            .into_iter()
            .map(|(scope, teams)| {
                let max = teams.values().map(|(v, _)| *v).fold(0.0, f64::max);
                let scale = if max > 0.0 { 1e15 / max } else { 1.0 };
                let weights = teams
                    .into_iter()
                    .map(|(t, (v, n))| {
                        let text = if n > 1 { format!("mean {} of {n} samples", format_driver(v / n as f64)) } else { format_driver(v) };
                        (t, ((v * scale).round() as u128, Dim::from(text)))
                    })
                    .collect();
                (scope, weights)
            })
            .collect();
        out.insert(rule.name.clone(), table);
    }
    Ok(out)
}

fn format_driver(v: f64) -> String {
    if v.abs() >= 1e15 || (v != 0.0 && v.abs() < 1e-3) {
        format!("{v:.4e}")
    } else if v.fract() == 0.0 {
        format!("{}", v as i64)
    } else {
        format!("{v:.2}")
    }
}

/// Rounds pieces to cents once, consistently (DESIGN.md §3): a controlled rounding of the table
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
        let line = &lines[p.line];
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
    let table: Vec<crate::rounding::Cell> = cells
        .iter()
        .map(|(key, members)| crate::rounding::Cell { row: rows[&key.0], column: key.1, amount: members.iter().map(|&i| pieces[i].amount).sum() })
        .collect();
    let total: Money = pieces.iter().map(|p| p.amount).sum();
    // The rate card's on-prem cost is a source of its own beside the bill, so the bill's groups
    // (what services.csv prints) add up to the bill rounded down or up.
    let mut group_source = vec![0; groups.len()];
    for ((_, account, service), g) in &groups {
        group_source[*g] = usize::from(*account == crate::gpu::ON_PREM_ACCOUNT && *service == crate::gpu::ON_PREM_SERVICE);
    }
    let cell_cents = crate::rounding::controlled_rounding(&table, &row_team, &column_group, &group_source, total.round_to_cents());
    for (members, target) in cells.values().zip(cell_cents) {
        let amounts: Vec<Money> = members.iter().map(|&i| pieces[i].amount).collect();
        for (&i, cents) in members.iter().zip(round_to_total(&amounts, target)) {
            pieces[i].cents = cents;
        }
    }
}

/// The values of a line that precedence depends on: the fields any `when` of `[[assign]]` or
/// `[[share]]` names, and the tags (team tags and `when.tags`). Two lines that agree on these
/// get the same decision; the key is the values' shared allocations, so equal keys mean equal
/// values (two copies of one value only cost a second decision).
struct ReadFields {
    fields: Vec<fn(&CostLine) -> &Dim>,
    tags: usize,
}

impl ReadFields {
    fn of(rules: &RuleSet, tag_keys: &[String]) -> ReadFields {
        let mut read: Vec<&Field> = rules.assign.iter().map(|r| &r.when).chain(rules.share.iter().map(|r| &r.when)).flat_map(|w| w.conditions.iter().map(|(f, _)| f)).collect();
        read.sort_by_key(|f| f.name());
        read.dedup();
        let fields = read
            .into_iter()
            .filter_map(|f| -> Option<fn(&CostLine) -> &Dim> {
                Some(match f {
                    Field::Account => |l| &l.account,
                    Field::Service => |l| &l.service,
                    Field::Resource => |l| &l.resource,
                    Field::UsageType => |l| &l.usage_type,
                    Field::Operation => |l| &l.operation,
                    Field::Region => |l| &l.region,
                    Field::ChargeCategory => |l| &l.charge_category,
                    Field::PricingCategory => |l| &l.pricing_category,
                    Field::InstanceFamily | Field::InstanceType => |l| &l.instance_type,
                    // Team and tag conditions read the tags, which are always in the key.
                    Field::Team | Field::Tag(_) => return None,
                })
            })
            .collect();
        ReadFields { fields, tags: tag_keys.len() }
    }

    fn key(&self, line: &CostLine) -> Vec<usize> {
        let mut key = Vec::with_capacity(self.fields.len() + self.tags);
        key.extend(self.fields.iter().map(|f| std::sync::Arc::as_ptr(f(line)) as *const u8 as usize));
        key.extend(line.tags.iter().map(|t| t.as_ref().map_or(0, |v| std::sync::Arc::as_ptr(v) as *const u8 as usize)));
        key
    }
}

#[derive(Clone)]
enum Decision {
    Direct { team: TeamId, rule: Dim, method: Dim },
    Share(usize),
    Unallocated,
}

/// The field values of a line as rules see them (case-folded when the rule set says so).
struct LineView<'a> {
    rules: &'a RuleSet,
    line: &'a CostLine,
    tag_keys: &'a [String],
    /// The team named by the first present team tag, and which key said so.
    tag_team: Option<(TeamId, &'a str)>,
}

impl<'a> LineView<'a> {
    fn new(rules: &'a RuleSet, tag_keys: &'a [String], line: &'a CostLine) -> Self {
        // "First present tag key wins": the first team tag with a value decides, even when that
        // value names no team (then the line falls through to fallback / unallocated).
        let first = rules
            .team_tags
            .iter()
            .find_map(|k| line.tags.get(tag_keys.iter().position(|t| t == k)?)?.as_deref().map(|v| (k.as_str(), v)));
        let tag_team = first.and_then(|(k, v)| rules.resolve_team(v).map(|t| (t, k)));
        LineView { rules, line, tag_keys, tag_team }
    }

    fn value(&self, field: &Field) -> Option<std::borrow::Cow<'a, str>> {
        let l = self.line;
        let v = match field {
            Field::Account => &*l.account,
            Field::Service => &*l.service,
            Field::Resource => &*l.resource,
            Field::UsageType => &*l.usage_type,
            Field::Operation => &*l.operation,
            Field::Region => &*l.region,
            Field::ChargeCategory => &*l.charge_category,
            Field::PricingCategory => &*l.pricing_category,
            Field::InstanceFamily => l.instance_family(),
            Field::InstanceType => &*l.instance_type,
            Field::Team => return self.tag_team.map(|(t, _)| self.rules.fold(&self.rules.team(t).name)),
            Field::Tag(key) => {
                let i = self.tag_keys.iter().position(|k| k == key)?;
                return l.tags.get(i)?.as_deref().map(|v| self.rules.fold(v));
            }
        };
        Some(self.rules.fold(v))
    }

    fn matches(&self, matcher: &Matcher) -> bool {
        matcher.conditions.iter().all(|(field, patterns)| match self.value(field) {
            Some(v) => patterns.iter().any(|p| p.matches(&v)),
            None => false,
        })
    }
}

/// DESIGN.md §4 precedence.
fn decide(rules: &RuleSet, labels: &Labels, view: &LineView) -> Decision {
    if let Some(i) = rules.assign.iter().position(|r| !r.fallback && view.matches(&r.when)) {
        return Decision::Direct { team: rules.assign[i].team, rule: labels.assign[i].clone(), method: labels.method("assign") };
    }
    if let Some(i) = rules.share.iter().position(|r| view.matches(&r.when)) {
        return Decision::Share(i);
    }
    if let Some((team, key)) = view.tag_team {
        let rule = labels.tag.get(key).cloned().unwrap_or_else(|| Dim::from(format!("tag:{key}")));
        return Decision::Direct { team, rule, method: labels.method("tag") };
    }
    if let Some(i) = rules.assign.iter().position(|r| r.fallback && view.matches(&r.when)) {
        return Decision::Direct { team: rules.assign[i].team, rule: labels.assign[i].clone(), method: labels.method("fallback") };
    }
    Decision::Unallocated
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
            let l = &self.lines[p.line];
            out.entry((l.billing_period.to_string(), l.account.to_string(), l.service.to_string())).or_default().0 += p.cents.0;
        }
        out
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
        let line = CostLine { billing_period: "2025-10".into(), usage_date: "2025-10-03".into(), account: "1".into(), service: "X".into(), resource: "".into(), usage_type: "".into(), operation: "".into(), region: "".into(), charge_category: "Usage".into(), pricing_category: "".into(), instance_type: "".into(), tags: vec![None], amount: "4".parse().unwrap(), line_items: 1 };
        let samples = vec![DriverSample { date: None, key: "a".into(), value: 1.0 }, DriverSample { date: None, key: "b".into(), value: 3.0 }];
        let allocation = allocate(&rules, vec![line], &HashMap::from([("s".to_string(), samples)])).unwrap();
        let cents: Vec<i64> = allocation.pieces.iter().map(|p| p.cents.0).collect();
        assert_eq!(cents, vec![100, 300]);
    }

    #[test]
    fn instance_families() {
        let mut line = CostLine { billing_period: "".into(), usage_date: "".into(), account: "".into(), service: "".into(), resource: "".into(), usage_type: "".into(), operation: "".into(), region: "".into(), charge_category: "".into(), pricing_category: "".into(), instance_type: "p4d.24xlarge".into(), tags: vec![], amount: Money::ZERO, line_items: 0 };
        assert_eq!(line.instance_family(), "p4d");
        line.instance_type = "db.r6g.4xlarge".into();
        assert_eq!(line.instance_family(), "r6g");
        line.instance_type = "".into();
        assert_eq!(line.instance_family(), "");
    }
}
