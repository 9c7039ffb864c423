//! Dimensions (docs/design.md §4, "Dimensions"): every allocated piece carries one value of each
//! `[dimensions.<name>]` besides its team. A line names its own values (rules, tags, fallback
//! rules); a piece whose line names none carries the values of what it was split by — a GPU
//! charge the namespaces' values (`namespaces`) by the team's GPU weight there, a share of shared
//! cost its team's own cost (direct and GPU) per value in the share's scope — split exactly, so
//! every dimension conserves the bill. What is still unnamed is `unassigned`.

use std::collections::{BTreeMap, HashMap};

use crate::gpu::{GpuPool, GPU_IDLE_RULE};
use crate::ledger::{CostLine, Dim, DimValues, Kind, Piece};
use crate::money::{split, Cents, Money};
use crate::precedence::LineView;
use crate::rounding::{controlled_rounding_with_teams, Cell};
use crate::rules::{Dimension, RuleSet, TeamId};

/// A line's own values, one per dimension (`None`: the line names none).
pub(crate) type OwnValues = crate::dim::Tuple<Option<Dim>>;

/// The values of every dimension, each made once and shared by every piece that carries it.
pub(crate) struct Values {
    interned: Vec<HashMap<String, Dim>>,
    unassigned: Vec<Dim>,
}

impl Values {
    pub(crate) fn new(rules: &RuleSet) -> Values {
        Values { interned: vec![HashMap::new(); rules.dimensions.len()], unassigned: rules.dimensions.iter().map(|d| Dim::from(d.unassigned.as_str())).collect() }
    }

    fn intern(&mut self, d: usize, value: &str) -> Dim {
        if let Some(v) = self.interned[d].get(value) {
            return v.clone();
        }
        let v = Dim::from(value);
        self.interned[d].insert(value.to_string(), v.clone());
        v
    }

    /// The values a line names: per dimension the first matching rule, else the first present
    /// tag (through aliases), else the first matching fallback rule.
    pub(crate) fn own(&mut self, rules: &RuleSet, tag_keys: &[String], view: &LineView, line: &CostLine) -> OwnValues {
        let mut out = Vec::with_capacity(rules.dimensions.len());
        for (d, dimension) in rules.dimensions.iter().enumerate() {
            let value = own_value(rules, dimension, tag_keys, view, line);
            out.push(value.map(|v| self.intern(d, &v)));
        }
        OwnValues::new(&out)
    }

    fn or_unassigned(&self, own: &[Option<Dim>]) -> DimValues {
        own.iter().zip(&self.unassigned).map(|(v, u)| v.clone().unwrap_or_else(|| u.clone())).collect()
    }
}

fn own_value(rules: &RuleSet, dimension: &Dimension, tag_keys: &[String], view: &LineView, line: &CostLine) -> Option<String> {
    if let Some(r) = dimension.assign.iter().find(|r| !r.fallback && view.matches(&r.when)) {
        return Some(r.value.clone());
    }
    let tag = dimension.tags.iter().find_map(|k| line.tags.get(tag_keys.iter().position(|t| t == k)?)?.as_deref().filter(|v| !v.trim().is_empty()));
    if let Some(tag) = tag {
        return Some(dimension.value_of_tag(rules, tag));
    }
    dimension.assign.iter().find(|r| r.fallback && view.matches(&r.when)).map(|r| r.value.clone())
}

/// Value tuples and their weights.
type Weights = BTreeMap<DimValues, u128>;

/// A line's own values as a key: the list's code says which it is.
fn own_key(own: &OwnValues) -> u32 {
    own.code()
}

/// Splits `piece` over value tuples by `weights` (exactly; the ratio follows), or gives it the
/// one tuple there is.
fn split_piece(piece: Piece, weights: &Weights, out: &mut Vec<Piece>) {
    let total: u128 = weights.values().sum();
    if weights.len() <= 1 || total == 0 {
        let dims = weights.keys().next().cloned().unwrap_or_default();
        out.push(Piece { dims, ..piece });
        return;
    }
    let w: Vec<u128> = weights.values().copied().collect();
    for ((dims, amount), weight) in weights.keys().zip(split(piece.amount, &w)).zip(&w) {
        out.push(Piece { dims: dims.clone(), amount, ratio: piece.ratio * *weight as f64 / total as f64, ..piece.clone() });
    }
}

/// Direct and GPU pieces with their values: direct pieces carry their line's (or unassigned);
/// GPU pieces are split by the team's GPU weight per namespace where a dimension maps namespaces
/// and the line names no value. In place: a piece takes its first tuple and the other tuples'
/// pieces are appended (the engine sorts the pieces once all are made), so the month's pieces
/// are not held twice.
pub(crate) fn carry_own(rules: &RuleSet, values: &Values, own: &[OwnValues], pieces: &mut Vec<Piece>, pools: &[GpuPool], line_pool: &BTreeMap<usize, usize>) {
    let mut extra = Vec::new();
    let mut tuples = Vec::new();
    // The weights of a GPU piece depend on its pool, team, kind and own values only.
    let mut cache: HashMap<(usize, Option<TeamId>, bool, u32), Weights> = HashMap::new();
    for piece in pieces.iter_mut() {
        let line_values = &own[piece.line as usize];
        let by_namespace = piece.kind == Kind::Gpu && rules.dimensions.iter().zip(line_values.iter()).any(|(d, v)| v.is_none() && !d.namespaces.is_empty());
        match (by_namespace, line_pool.get(&(piece.line as usize))) {
            (true, Some(&pool)) => {
                let key = (pool, piece.team, &*piece.rule == GPU_IDLE_RULE, own_key(line_values));
                let weights = cache.entry(key).or_insert_with(|| namespace_weights(rules, values, line_values, piece, &pools[pool]));
                split_piece(piece.clone(), weights, &mut tuples);
                let mut split = tuples.drain(..);
                *piece = split.next().expect("a split gives at least one piece");
                extra.extend(split);
            }
            _ => piece.dims = values.or_unassigned(line_values),
        }
    }
    pieces.reserve_exact(extra.len());
    pieces.extend(extra);
}

/// A GPU piece's tuples: the namespaces its team held the pool's GPUs in, by weight. The idle
/// pool given to a team follows that team's weights; the idle pool kept apart has no namespace.
fn namespace_weights(rules: &RuleSet, values: &Values, line_values: &[Option<Dim>], piece: &Piece, pool: &GpuPool) -> BTreeMap<DimValues, u128> {
    let mut weights: BTreeMap<DimValues, u128> = BTreeMap::new();
    let kept_apart = &*piece.rule == GPU_IDLE_RULE && piece.team.is_none();
    if !kept_apart {
        for pod in pool.pods.iter().filter(|p| p.team == piece.team && p.weight_units > 0) {
            let tuple: DimValues = rules
                .dimensions
                .iter()
                .enumerate()
                .map(|(d, dimension)| match &line_values[d] {
                    Some(v) => v.clone(),
                    None => dimension.value_of_namespace(&pod.namespace).map_or_else(|| values.unassigned[d].clone(), |v| values.interned[d].get(v).cloned().unwrap_or_else(|| Dim::from(v))),
                })
                .collect();
            *weights.entry(tuple).or_default() += pod.weight_units;
        }
    }
    if weights.is_empty() {
        weights.insert(values.or_unassigned(line_values), 1);
    }
    weights
}

/// Each team's own cost (direct and GPU) per value tuple, per scope (billing period or day): what
/// a share of shared cost is split by within its team; and the weights made of it, once per
/// (scope, team, the share line's own values).
pub(crate) struct OwnMix<'a> {
    by_scope: HashMap<(&'a str, TeamId), BTreeMap<DimValues, Money>>,
    weights: HashMap<(&'a str, TeamId, u32), Weights>,
}

impl<'a> OwnMix<'a> {
    pub(crate) fn of(lines: &'a [CostLine], pieces: &[Piece], by_day: bool) -> OwnMix<'a> {
        let mut by_scope: HashMap<(&str, TeamId), BTreeMap<DimValues, Money>> = HashMap::new();
        for p in pieces {
            if let (Kind::Direct | Kind::Gpu, Some(team)) = (p.kind, p.team) {
                let line = &lines[p.line as usize];
                let scope: &str = if by_day { &line.usage_date } else { &line.billing_period };
                let tuples = by_scope.entry((scope, team)).or_default();
                match tuples.get_mut(&p.dims) {
                    Some(m) => *m += p.amount,
                    None => {
                        tuples.insert(p.dims.clone(), p.amount);
                    }
                }
            }
        }
        OwnMix { by_scope, weights: HashMap::new() }
    }
}

/// A share piece with its values: the line's own, and for the rest the team's own cost per
/// value in the share's scope (only what is positive weighs); unassigned where there is none.
pub(crate) fn carry_shared<'a>(values: &Values, own: &[OwnValues], lines: &'a [CostLine], piece: Piece, mix: &mut OwnMix<'a>, by_day: bool, out: &mut Vec<Piece>) {
    let line_values = &own[piece.line as usize];
    let Some(team) = piece.team.filter(|_| line_values.iter().any(Option::is_none)) else {
        let dims = values.or_unassigned(line_values);
        out.push(Piece { dims, ..piece });
        return;
    };
    let line = &lines[piece.line as usize];
    let scope: &str = if by_day { &line.usage_date } else { &line.billing_period };
    let OwnMix { by_scope, weights } = mix;
    let weights = weights.entry((scope, team, own_key(line_values))).or_insert_with(|| {
        let mut weights: Weights = BTreeMap::new();
        if let Some(tuples) = by_scope.get(&(scope, team)) {
            let mut projected: BTreeMap<DimValues, Money> = BTreeMap::new();
            for (tuple, amount) in tuples {
                let tuple: DimValues = tuple.iter().zip(line_values.iter()).map(|(v, own)| own.clone().unwrap_or_else(|| v.clone())).collect();
                *projected.entry(tuple).or_default() += *amount;
            }
            weights = projected.into_iter().filter(|(_, m)| m.units() > 0).map(|(t, m)| (t, m.units() as u128)).collect();
        }
        if weights.is_empty() {
            weights.insert(values.or_unassigned(line_values), 1);
        }
        weights
    });
    split_piece(piece, weights, out);
}

/// One dimension as printed: the values (by name, unassigned last), the teams (every team of
/// the rules in their order, then the unallocated bucket `None`, as `summary.csv` lists them), each team's cents per value, and each
/// value's total. Every cell and every value's total is its exact amount rounded down or up;
/// each team's row adds up to its total in `summary.csv`, and the values to the month.
#[derive(Clone, Debug, PartialEq)]
pub struct DimensionTable {
    pub name: String,
    pub values: Vec<String>,
    pub teams: Vec<Option<TeamId>>,
    /// `cells[value][team]`.
    pub cells: Vec<Vec<Cents>>,
    pub totals: Vec<Cents>,
    pub exact: Vec<Money>,
    /// False when the team totals of `summary.csv` could not be kept exactly (a rounding of
    /// this table with them does not exist); its rows are then each within a cent of exact.
    pub rows_match_summary: bool,
}

/// Dimension `d` of the rules as a table of cents (see [`DimensionTable`]), from the pieces and
/// each team's printed total (`summary.csv`'s).
pub fn table(rules: &RuleSet, pieces: &[Piece], team_totals: &BTreeMap<Option<TeamId>, Cents>, d: usize) -> DimensionTable {
    let unassigned = &rules.dimensions[d].unassigned;
    // A value's text is stored once (its code's): summed by its address first, then by name.
    let mut by_address: HashMap<(usize, Option<TeamId>), (&str, Money)> = HashMap::new();
    for p in pieces {
        let value = p.dims.get(d).map_or(unassigned.as_str(), |v| &**v);
        let e = by_address.entry((value.as_ptr() as usize, p.team)).or_insert((value, Money::ZERO));
        e.1 += p.amount;
    }
    let mut exact: BTreeMap<(bool, &str), BTreeMap<Option<TeamId>, Money>> = BTreeMap::new();
    for ((_, team), (value, amount)) in by_address {
        *exact.entry((value == unassigned, value)).or_default().entry(team).or_default() += amount;
    }
    // Every team of the rules in their order, the unallocated bucket last, as summary.csv.
    let mut teams: Vec<Option<TeamId>> = (0..rules.teams.len()).map(Some).collect();
    teams.push(None);
    let row_of: HashMap<Option<TeamId>, usize> = teams.iter().enumerate().map(|(i, t)| (*t, i)).collect();
    let values: Vec<String> = exact.keys().map(|(_, v)| v.to_string()).collect();
    let mut cells = Vec::new();
    for (column, by_team) in exact.values().enumerate() {
        for (team, amount) in by_team {
            cells.push(Cell { row: row_of[team], column, amount: *amount });
        }
    }
    let row_team: Vec<usize> = (0..teams.len()).collect();
    let column_group: Vec<usize> = (0..values.len()).collect();
    let group_source = vec![0; values.len()];
    let team_cents: Vec<Cents> = teams.iter().map(|t| team_totals.get(t).copied().unwrap_or_default()).collect();
    let month: Cents = team_cents.iter().copied().sum();
    let (cents, rows_match_summary) = match controlled_rounding_with_teams(&cells, &row_team, &column_group, &group_source, month, Some(&team_cents)) {
        Some(c) => (c, true),
        None => (controlled_rounding_with_teams(&cells, &row_team, &column_group, &group_source, month, None).expect("a two-way table always has a controlled rounding"), false),
    };
    let mut table = vec![vec![Cents(0); teams.len()]; values.len()];
    for (cell, c) in cells.iter().zip(cents) {
        table[cell.column][cell.row] = c;
    }
    let totals_by_value = table.iter().map(|row| row.iter().copied().sum()).collect();
    let exact_by_value = exact.values().map(|by_team| by_team.values().copied().sum()).collect();
    DimensionTable { name: rules.dimensions[d].name.clone(), values, teams, cells: table, totals: totals_by_value, exact: exact_by_value, rows_match_summary }
}
