//! Controlled rounding of a table of exact amounts to cents (Cox & Ernst, 1982): every cell is
//! rounded down or up, and so is every row total, every column total, every group of columns and
//! the grand total — all at once. Rounding each line on its own lets a team's printed total drift
//! by many cents from its exact amount; rounding rows alone breaks the columns. A two-way table
//! (with columns nested in groups) always has a controlled rounding, and a small max-flow finds
//! one: the cells rounded up are a flow from rows to columns whose every node stays between the
//! floor and the ceiling of its fractional total.

use std::collections::VecDeque;

use crate::money::{Cents, Money};

/// Units of money in one cent.
const UNITS_PER_CENT: i128 = 10_000_000_000;

/// One cell of the table: its row, its column and its exact amount.
#[derive(Clone, Copy, Debug)]
pub struct Cell {
    pub row: usize,
    pub column: usize,
    pub amount: Money,
}

/// Rounds `cells` to cents so that each cell, each row's total, each column's total, each
/// group's total (`column_group[column]`) and each source's total (`group_source[group]`: groups
/// nest in sources, e.g. the bill and the rate-card cost) is its exact amount rounded down or up,
/// and the grand total is exactly `total` (the exact grand total rounded down or up). Where
/// several roundings qualify, cells and rows with the larger fractions are rounded up first.
///
/// Rows nest the same way: `row_team[row]` groups rows (a team's direct, shared and GPU parts)
/// into totals that are rounded down or up too.
pub fn controlled_rounding(cells: &[Cell], row_team: &[usize], column_group: &[usize], group_source: &[usize], total: Cents) -> Vec<Cents> {
    controlled_rounding_with_teams(cells, row_team, column_group, group_source, total, None).expect("controlled rounding: no feasible rounding (a two-way table always has one)")
}

/// [`controlled_rounding`] with each team's total given (`team_totals[team]`, each its exact
/// amount rounded down or up, as printed elsewhere), so a second table of the same pieces keeps
/// the first one's team figures. `None` when no rounding keeps them (possible once totals are
/// fixed; never without).
pub fn controlled_rounding_with_teams(cells: &[Cell], row_team: &[usize], column_group: &[usize], group_source: &[usize], total: Cents, team_totals: Option<&[Cents]>) -> Option<Vec<Cents>> {
    let rows = row_team.len();
    let teams = row_team.iter().map(|t| t + 1).max().unwrap_or(0);
    let columns = column_group.len();
    let groups = group_source.len();
    let sources = group_source.iter().map(|s| s + 1).max().unwrap_or(0);
    let floor_of = |m: Money| (m.units().div_euclid(UNITS_PER_CENT) as i64, m.units().rem_euclid(UNITS_PER_CENT));
    let floors: Vec<(i64, i128)> = cells.iter().map(|c| floor_of(c.amount)).collect();
    // Fractional totals (in units below a cent, summed) per row, column, group and overall.
    let mut row_frac = vec![0i128; rows];
    let mut team_frac = vec![0i128; teams];
    let mut column_frac = vec![0i128; columns];
    let mut group_frac = vec![0i128; groups];
    let mut source_frac = vec![0i128; sources];
    for (cell, (_, rem)) in cells.iter().zip(&floors) {
        row_frac[cell.row] += rem;
        team_frac[row_team[cell.row]] += rem;
        column_frac[cell.column] += rem;
        group_frac[column_group[cell.column]] += rem;
        source_frac[group_source[column_group[cell.column]]] += rem;
    }
    let all_frac: i128 = row_frac.iter().sum();
    let floor_sum: i64 = floors.iter().map(|(f, _)| f).sum();
    let bounds = |frac: i128| -> (i64, i64) {
        let lo = (frac / UNITS_PER_CENT) as i64;
        (lo, lo + i64::from(frac % UNITS_PER_CENT != 0))
    };
    let ups = total.0 - floor_sum;
    let (lo, hi) = bounds(all_frac);
    assert!((lo..=hi).contains(&ups), "controlled rounding: total {total} is not the grand total rounded (floors {floor_sum}, fractions {all_frac})");

    // Nodes: source, sink, rows, columns, groups, sources. Edges carry [lower, upper] bounds.
    // Edges are added largest fraction first: the search tries them in that order.
    let (source, sink) = (0, 1);
    let row_node = |r: usize| 2 + r;
    let column_node = |c: usize| 2 + rows + c;
    let group_node = |g: usize| 2 + rows + columns + g;
    let source_node = |s: usize| 2 + rows + columns + groups + s;
    let team_node = |t: usize| 2 + rows + columns + groups + sources + t;
    let mut flow = BoundedFlow::new(2 + rows + columns + groups + sources + teams);
    let (mut team_floor, mut team_fractions) = (vec![0i64; teams], vec![0i64; teams]);
    for (cell, (floor, rem)) in cells.iter().zip(&floors) {
        team_floor[row_team[cell.row]] += floor;
        team_fractions[row_team[cell.row]] += i64::from(*rem != 0);
    }
    // A given total is reached by rounding up some of the team's cells with a fraction: no
    // fewer than none, no more than all.
    if let Some(given) = team_totals {
        if (0..teams).any(|t| !(0..=team_fractions[t]).contains(&(given[t].0 - team_floor[t]))) {
            return None;
        }
    }
    let mut team_order: Vec<usize> = (0..teams).collect();
    team_order.sort_by_key(|t| std::cmp::Reverse(team_frac[*t] % UNITS_PER_CENT));
    for t in team_order {
        let (lo, hi) = match team_totals {
            Some(given) => {
                let ups = given[t].0 - team_floor[t];
                (ups, ups)
            }
            None => bounds(team_frac[t]),
        };
        flow.edge(source, team_node(t), lo, hi);
    }
    let mut row_order: Vec<usize> = (0..rows).collect();
    row_order.sort_by_key(|r| std::cmp::Reverse(row_frac[*r] % UNITS_PER_CENT));
    for r in row_order {
        let (lo, hi) = bounds(row_frac[r]);
        flow.edge(team_node(row_team[r]), row_node(r), lo, hi);
    }
    let mut cell_order: Vec<usize> = (0..cells.len()).filter(|i| floors[*i].1 != 0).collect();
    cell_order.sort_by_key(|i| std::cmp::Reverse(floors[*i].1));
    let mut cell_edges: Vec<Option<usize>> = vec![None; cells.len()];
    for i in cell_order {
        cell_edges[i] = Some(flow.edge(row_node(cells[i].row), column_node(cells[i].column), 0, 1));
    }
    for (c, frac) in column_frac.iter().enumerate() {
        let (lo, hi) = bounds(*frac);
        flow.edge(column_node(c), group_node(column_group[c]), lo, hi);
    }
    for (g, frac) in group_frac.iter().enumerate() {
        let (lo, hi) = bounds(*frac);
        flow.edge(group_node(g), source_node(group_source[g]), lo, hi);
    }
    for (s, frac) in source_frac.iter().enumerate() {
        let (lo, hi) = bounds(*frac);
        flow.edge(source_node(s), sink, lo, hi);
    }
    flow.edge(sink, source, ups, ups);
    if !flow.solve() {
        return None;
    }
    Some(cells.iter().zip(&floors).zip(&cell_edges).map(|((_, (floor, _)), edge)| Cents(floor + edge.map_or(0, |e| flow.flow_of(e)))).collect())
}

/// A circulation with lower and upper bounds on its edges, solved as a max-flow (Dinic) from a
/// super source to a super sink that carry the lower bounds.
struct BoundedFlow {
    nodes: usize,
    /// (to, capacity left, index of the reverse edge)
    edges: Vec<(usize, i64, usize)>,
    adjacency: Vec<Vec<usize>>,
    lower: Vec<i64>,
    excess: Vec<i64>,
}

impl BoundedFlow {
    fn new(nodes: usize) -> Self {
        BoundedFlow { nodes, edges: Vec::new(), adjacency: vec![Vec::new(); nodes + 2], lower: Vec::new(), excess: vec![0; nodes + 2] }
    }

    fn raw_edge(&mut self, from: usize, to: usize, capacity: i64) -> usize {
        let index = self.edges.len();
        self.edges.push((to, capacity, index + 1));
        self.edges.push((from, 0, index));
        self.adjacency[from].push(index);
        self.adjacency[to].push(index + 1);
        self.lower.push(0);
        self.lower.push(0);
        index
    }

    /// An edge that must carry between `lower` and `upper` units; returns its id.
    fn edge(&mut self, from: usize, to: usize, lower: i64, upper: i64) -> usize {
        let index = self.raw_edge(from, to, upper - lower);
        self.lower[index] = lower;
        self.excess[to] += lower;
        self.excess[from] -= lower;
        index
    }

    /// What an edge carries in the solution.
    fn flow_of(&self, edge: usize) -> i64 {
        self.lower[edge] + self.edges[edge + 1].1
    }

    /// Whether every lower bound can be met.
    fn solve(&mut self) -> bool {
        let (super_source, super_sink) = (self.nodes, self.nodes + 1);
        let mut needed = 0;
        for v in 0..self.nodes {
            let e = self.excess[v];
            if e > 0 {
                self.raw_edge(super_source, v, e);
                needed += e;
            } else if e < 0 {
                self.raw_edge(v, super_sink, -e);
            }
        }
        self.max_flow(super_source, super_sink) == needed
    }

    fn max_flow(&mut self, s: usize, t: usize) -> i64 {
        let mut total = 0;
        loop {
            let mut level = vec![usize::MAX; self.adjacency.len()];
            level[s] = 0;
            let mut queue = VecDeque::from([s]);
            while let Some(v) = queue.pop_front() {
                for &e in &self.adjacency[v] {
                    let (to, cap, _) = self.edges[e];
                    if cap > 0 && level[to] == usize::MAX {
                        level[to] = level[v] + 1;
                        queue.push_back(to);
                    }
                }
            }
            if level[t] == usize::MAX {
                return total;
            }
            let mut next = vec![0usize; self.adjacency.len()];
            loop {
                let pushed = self.augment(s, t, i64::MAX, &level, &mut next);
                if pushed == 0 {
                    break;
                }
                total += pushed;
            }
        }
    }

    /// One blocking-flow path, iteratively (the graph can be deep enough to matter for recursion).
    fn augment(&mut self, s: usize, t: usize, limit: i64, level: &[usize], next: &mut [usize]) -> i64 {
        let mut path: Vec<usize> = Vec::new();
        let mut v = s;
        loop {
            if v == t {
                let pushed = path.iter().map(|&e| self.edges[e].1).min().unwrap_or(limit).min(limit);
                for &e in &path {
                    self.edges[e].1 -= pushed;
                    let reverse = self.edges[e].2;
                    self.edges[reverse].1 += pushed;
                }
                return pushed;
            }
            let mut advanced = false;
            while next[v] < self.adjacency[v].len() {
                let e = self.adjacency[v][next[v]];
                let (to, cap, _) = self.edges[e];
                if cap > 0 && level[to] == level[v] + 1 {
                    path.push(e);
                    v = to;
                    advanced = true;
                    break;
                }
                next[v] += 1;
            }
            if !advanced {
                // Dead end: retreat and never try this edge again in this phase.
                let Some(e) = path.pop() else { return 0 };
                v = self.edges[self.edges[e].2].0;
                next[v] += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(cells: &[Cell], row_team: &[usize], column_group: &[usize], group_source: &[usize]) -> Result<(), TestCaseError> {
        let (rows, groups) = (row_team.len(), group_source.len());
        let exact_total: Money = cells.iter().map(|c| c.amount).sum();
        let total = exact_total.round_to_cents();
        let cents = controlled_rounding(cells, row_team, column_group, group_source, total);
        let within = |exact: Money, printed: i64| {
            let diff = printed as i128 * UNITS_PER_CENT - exact.units();
            diff > -UNITS_PER_CENT && diff < UNITS_PER_CENT
        };
        prop_assert_eq!(cents.iter().map(|c| c.0).sum::<i64>(), total.0);
        for (cell, c) in cells.iter().zip(&cents) {
            prop_assert!(within(cell.amount, c.0), "cell {:?} -> {}", cell, c);
        }
        let sums = |key: &dyn Fn(&Cell) -> usize, n: usize| {
            let mut exact = vec![Money::ZERO; n];
            let mut printed = vec![0i64; n];
            for (cell, c) in cells.iter().zip(&cents) {
                exact[key(cell)] += cell.amount;
                printed[key(cell)] += c.0;
            }
            exact.into_iter().zip(printed).collect::<Vec<_>>()
        };
        for (exact, printed) in sums(&|c| c.row, rows)
            .into_iter()
            .chain(sums(&|c| c.column, column_group.len()))
            .chain(sums(&|c| column_group[c.column], groups))
            .chain(sums(&|c| group_source[column_group[c.column]], 2))
            .chain(sums(&|c| row_team[c.row], 3))
        {
            prop_assert!(within(exact, printed), "{} printed as {}", exact, printed);
        }
        Ok(())
    }

    #[test]
    fn a_second_table_keeps_the_team_totals_it_is_given_or_says_it_cannot() {
        // Two teams over two values: team 0 holds 0.3 and 0.4 of a cent, team 1 0.7 and 0.6; each
        // value is a cent exactly, team 0's total rounds to 0 or 1, team 1's to 1 or 2.
        let units = |tenths: i128| Money::from_units(tenths * UNITS_PER_CENT / 10);
        let cells: Vec<Cell> = [(0, 0, 3), (0, 1, 4), (1, 0, 7), (1, 1, 6)].iter().map(|&(row, column, t)| Cell { row, column, amount: units(t) }).collect();
        for given in [[Cents(0), Cents(2)], [Cents(1), Cents(1)]] {
            let cents = controlled_rounding_with_teams(&cells, &[0, 1], &[0, 1], &[0, 0], Cents(2), Some(&given)).expect("a rounding with these team totals");
            let rows = [cents[0].0 + cents[1].0, cents[2].0 + cents[3].0];
            assert_eq!(rows, [given[0].0, given[1].0]);
            assert_eq!((cents[0].0 + cents[2].0, cents[1].0 + cents[3].0), (1, 1), "each value stays its exact cent");
        }
        // A total no rounding of the team's cells reaches is refused, not made up.
        assert_eq!(controlled_rounding_with_teams(&cells, &[0, 1], &[0, 1], &[0, 0], Cents(2), Some(&[Cents(2), Cents(0)])), None);
    }

    #[test]
    fn rows_that_rounding_line_by_line_would_drift() {
        // 30 lines of 0.004 each for one team: line by line that is 0.00; the team's total 0.12.
        let cells: Vec<Cell> = (0..30).map(|c| Cell { row: 0, column: c, amount: "0.004".parse().unwrap() }).collect();
        let cents = controlled_rounding(&cells, &[0], &vec![0; 30], &[0], Cents(12));
        assert_eq!(cents.iter().map(|c| c.0).sum::<i64>(), 12);
    }

    proptest! {
        #[test]
        fn every_row_column_group_and_the_total_round_down_or_up(
            raw in proptest::collection::vec((0..6usize, 0..9usize, -20_000_000_000_000i128..90_000_000_000_000i128), 1..60),
            group_of in proptest::collection::vec(0..3usize, 9),
        ) {
            // One cell per (row, column), as the engine builds them.
            let mut merged: std::collections::BTreeMap<(usize, usize), i128> = Default::default();
            for (r, c, u) in raw {
                *merged.entry((r, c)).or_default() += u;
            }
            let cells: Vec<Cell> = merged.into_iter().map(|((row, column), u)| Cell { row, column, amount: Money::from_units(u) }).collect();
            check(&cells, &[0, 0, 1, 1, 2, 2], &group_of, &[0, 0, 1])?;
        }
    }
}
