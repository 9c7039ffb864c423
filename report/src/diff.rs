//! A rule change previewed (`finops diff`, docs/design.md §6 "Rule changes"): one month allocated
//! under the rules in force and under proposed rules, compared — per team and per dimension
//! value (before, after, change), per rule (what each decided before and after), and the cost
//! lines whose owners changed. Every figure is the one a run with those rules prints, so the
//! table matches two separate runs to the cent, and each section's changes add up to zero.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use finops_allocate::{Allocation, Cents, Money, RuleSet};

use crate::csv::CsvBuilder;

/// One row of the comparison: printed figures, and the exact amounts they round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub name: String,
    pub before: Cents,
    pub after: Cents,
    pub exact_before: Money,
    pub exact_after: Money,
    /// For a rule: what changed hands between teams under it (the teams' gains).
    pub moved: Option<Cents>,
}

impl Change {
    pub fn change(&self) -> Cents {
        Cents(self.after.0 - self.before.0)
    }

    /// A printed change of a cent whose exact amount did not change: rounding alone.
    pub fn rounding_only(&self) -> bool {
        self.change().0 != 0 && self.exact_before == self.exact_after
    }

    /// The change in percent of `before`; `None` when there was nothing before.
    pub fn pct(&self) -> Option<f64> {
        (self.before.0 != 0).then(|| self.change().0 as f64 * 100.0 / self.before.0.abs() as f64)
    }
}

/// A cost line (at the grain, summed over what the rules do not see) whose owners changed.
#[derive(Clone, Debug, PartialEq)]
pub struct MovedLine {
    pub date: String,
    pub account: String,
    pub service: String,
    pub resource: String,
    pub usage_type: String,
    /// Owners and their exact parts, before and after (`team 12.34`).
    pub before: String,
    pub after: String,
    /// How much changed hands: the sum of the parts that grew.
    pub moved: Money,
}

/// The whole comparison.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleDiff {
    pub month: String,
    pub base: String,
    pub proposed: String,
    pub currency: String,
    pub teams: Vec<Change>,
    /// Per dimension (of either rule set, by name): its values.
    pub dimensions: Vec<(String, Vec<Change>)>,
    /// What each rule (`tag:<key>`, the unallocated bucket, GPU) decided.
    pub rules: Vec<Change>,
    /// The lines whose owners changed, largest move first.
    pub moved_lines: Vec<MovedLine>,
}

/// A printed figure and the exact amount it rounds.
type Figure = (Cents, Money);

/// Summary.csv's figure per team of `rules` (the unallocated bucket too).
fn team_cents(rules: &RuleSet, allocation: &Allocation) -> BTreeMap<String, Figure> {
    let totals = allocation.team_totals();
    let mut out: BTreeMap<String, Figure> = (0..rules.teams.len()).map(|t| (rules.team(t).name.clone(), (Cents(0), Money::ZERO))).collect();
    out.insert(rules.unallocated.clone(), (Cents(0), Money::ZERO));
    for (team, t) in totals {
        out.insert(rules.team_or_unallocated(team).to_string(), (t.total(), t.exact));
    }
    out
}

/// Before and after of every name in either map; rows that are zero in both are left out.
fn changes(before: &BTreeMap<String, Figure>, after: &BTreeMap<String, Figure>) -> Vec<Change> {
    let names: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    let none = (Cents(0), Money::ZERO);
    let mut out: Vec<Change> = names
        .into_iter()
        .map(|n| {
            let (b, a) = (before.get(n).unwrap_or(&none), after.get(n).unwrap_or(&none));
            Change { name: n.clone(), before: b.0, after: a.0, exact_before: b.1, exact_after: a.1, moved: None }
        })
        .filter(|c| c.before.0 != 0 || c.after.0 != 0)
        .collect();
    out.sort_by(|a, b| b.change().0.abs().cmp(&a.change().0.abs()).then_with(|| a.name.cmp(&b.name)));
    out
}

/// Each dimension's printed values (summary-<dimension>.csv's totals).
fn dimension_cents(rules: &RuleSet, allocation: &Allocation) -> BTreeMap<String, BTreeMap<String, Figure>> {
    (0..rules.dimensions.len())
        .map(|d| {
            let table = allocation.dimension_table(rules, d);
            (table.name.clone(), table.values.iter().cloned().zip(table.totals.iter().copied().zip(table.exact.iter().copied())).collect())
        })
        .collect()
}

/// Per rule: its cost, and its cost per team (printed cents).
fn rule_cents<'a>(rules: &'a RuleSet, allocation: &'a Allocation) -> (BTreeMap<String, Figure>, BTreeMap<(&'a str, &'a str), i64>) {
    // Pieces share their rule's text: summed by its address first, named once at the end.
    let mut by_rule: std::collections::HashMap<(usize, Option<usize>), (&str, Cents, Money), foldhash::fast::RandomState> = Default::default();
    for p in &allocation.pieces {
        let e = by_rule.entry((p.rule.code() as usize, p.team)).or_insert((&p.rule, Cents(0), Money::ZERO));
        e.1 .0 += p.cents.0;
        e.2 += p.amount;
    }
    let (mut totals, mut by_team): (BTreeMap<String, Figure>, BTreeMap<(&str, &str), i64>) = (BTreeMap::new(), BTreeMap::new());
    for ((_, team), (rule, cents, exact)) in by_rule {
        let t = totals.entry(rule.to_string()).or_insert((Cents(0), Money::ZERO));
        t.0 .0 += cents.0;
        t.1 += exact;
        *by_team.entry((rule, rules.team_or_unallocated(team))).or_default() += cents.0;
    }
    (totals, by_team)
}

/// What identifies a line to a person: day, account, service, resource, usage type, operation
/// and charge category (borrowed: a month has millions of pieces).
type LineKey<'a> = [&'a str; 7];

fn line_key(l: &finops_allocate::CostLine) -> LineKey<'_> {
    [&l.usage_date, &l.account, &l.service, &l.resource, &l.usage_type, &l.operation, &l.charge_category]
}

/// Each line's first index and exact parts per owner.
type Owners<'a> = std::collections::HashMap<LineKey<'a>, (usize, Parts<'a>), foldhash::fast::RandomState>;

/// Owners of a line and their exact parts (a line has a few owners: a short list).
type Parts<'a> = Vec<(&'a str, Money)>;

fn part(parts: &Parts, team: &str) -> Money {
    parts.iter().find(|(t, _)| *t == team).map_or(Money::ZERO, |(_, m)| *m)
}

/// Exact parts per owner of each line. Pieces come in line order, so a line's key is made once.
fn owners<'a>(rules: &'a RuleSet, allocation: &'a Allocation) -> Owners<'a> {
    let mut out: Owners<'a> = Owners::with_capacity_and_hasher(allocation.lines.len(), foldhash::fast::RandomState::default());
    let mut at = 0;
    let pieces = &allocation.pieces;
    while at < pieces.len() {
        let line = pieces[at].line;
        let index = line as usize;
        let end = pieces[at..].iter().position(|p| p.line != line).map_or(pieces.len(), |n| at + n);
        let entry = out.entry(line_key(&allocation.lines[index])).or_insert_with(|| (index, Vec::new()));
        for p in &pieces[at..end] {
            let team = rules.team_or_unallocated(p.team);
            match entry.1.iter_mut().find(|(t, _)| *t == team) {
                Some((_, m)) => *m += p.amount,
                None => entry.1.push((team, p.amount)),
            }
        }
        at = end;
    }
    out
}

fn owners_text(parts: &Parts) -> String {
    let mut parts: Vec<&(&str, Money)> = parts.iter().filter(|(_, m)| !m.is_zero()).collect();
    parts.sort_by_key(|(t, _)| *t);
    parts.iter().map(|(t, m)| format!("{t} {}", m.round_to_cents())).collect::<Vec<_>>().join(", ")
}

/// Compares a month allocated under `base` and under `proposed`.
pub fn compare(month: &str, base: (&RuleSet, &Allocation), proposed: (&RuleSet, &Allocation)) -> RuleDiff {
    let (base_rules, before) = base;
    let (proposed_rules, after) = proposed;
    let teams = changes(&team_cents(base_rules, before), &team_cents(proposed_rules, after));
    let (dims_before, dims_after) = (dimension_cents(base_rules, before), dimension_cents(proposed_rules, after));
    let names: BTreeSet<&String> = dims_before.keys().chain(dims_after.keys()).collect();
    let empty = BTreeMap::new();
    let dimensions = names.into_iter().map(|n| (n.clone(), changes(dims_before.get(n).unwrap_or(&empty), dims_after.get(n).unwrap_or(&empty)))).collect();
    let ((rules_before, teams_before), (rules_after, teams_after)) = (rule_cents(base_rules, before), rule_cents(proposed_rules, after));
    let mut rules = changes(&rules_before, &rules_after);
    for rule in &mut rules {
        // What changed hands under the rule: the sum of its teams' gains.
        let keys: BTreeSet<&(&str, &str)> = teams_before.keys().chain(teams_after.keys()).filter(|(r, _)| *r == rule.name).collect();
        let gained: i64 = keys.into_iter().map(|k| teams_after.get(k).copied().unwrap_or(0) - teams_before.get(k).copied().unwrap_or(0)).filter(|d| *d > 0).sum();
        rule.moved = Some(Cents(gained));
    }
    rules.retain(|r| r.change().0 != 0 || r.moved.is_some_and(|m| m.0 != 0) || r.before.0 != 0);
    rules.sort_by(|a, b| b.moved.unwrap_or_default().cmp(&a.moved.unwrap_or_default()).then_with(|| a.name.cmp(&b.name)));
    let (owners_before, owners_after) = (owners(base_rules, before), owners(proposed_rules, after));
    let none = (0, Vec::new());
    let mut moved_lines: Vec<MovedLine> = Vec::new();
    for (key, (line, then)) in &owners_before {
        let now = &owners_after.get(key).unwrap_or(&none).1;
        // What changed hands: the parts that grew (an owner only after counts whole).
        let moved: Money = now.iter().map(|(t, m)| *m - part(then, t)).filter(|d| !d.is_negative()).sum();
        if moved.is_zero() {
            continue;
        }
        let l = &before.lines[*line];
        moved_lines.push(MovedLine {
            date: l.usage_date.to_string(),
            account: l.account.to_string(),
            service: l.service.to_string(),
            resource: l.resource.to_string(),
            usage_type: l.usage_type.to_string(),
            before: owners_text(then),
            after: owners_text(now),
            moved,
        });
    }
    moved_lines.sort_by(|a, b| b.moved.cmp(&a.moved).then_with(|| (&a.date, &a.account, &a.service, &a.resource).cmp(&(&b.date, &b.account, &b.service, &b.resource))));
    RuleDiff { month: month.to_string(), base: base_rules.file.clone(), proposed: proposed_rules.file.clone(), currency: base_rules.currency.clone(), teams, dimensions, rules, moved_lines }
}

/// A change as printed: `+12.34`, `-5.00`, `0.00`.
pub fn signed(c: Cents) -> String {
    if c.0 > 0 {
        format!("+{c}")
    } else {
        c.to_string()
    }
}

fn pct(change: &Change) -> String {
    change.pct().map(|p| format!("{p:+.1}%")).unwrap_or_else(|| "new".to_string())
}

impl RuleDiff {
    /// The largest absolute change of a team.
    pub fn largest_team_move(&self) -> Option<&Change> {
        self.teams.iter().max_by_key(|c| c.change().0.abs())
    }

    fn sections(&self) -> Vec<(String, &[Change])> {
        let mut out: Vec<(String, &[Change])> = vec![("team".to_string(), &self.teams)];
        out.extend(self.dimensions.iter().map(|(n, c)| (n.clone(), c.as_slice())));
        out
    }

    /// The rules under which cost changed hands, or changed in total.
    fn moving_rules(&self) -> Vec<&Change> {
        self.rules.iter().filter(|r| r.change().0 != 0 || r.moved.is_some_and(|m| m.0 != 0)).collect()
    }

    /// For a terminal.
    pub fn text(&self, lines: usize) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{} allocated under {} (before) and {} (after), {}", self.month, self.base, self.proposed, self.currency);
        for (what, rows) in self.sections() {
            let _ = writeln!(out, "\n  by {what}:");
            if rows.iter().all(|c| c.change().0 == 0) {
                let _ = writeln!(out, "    no change");
                continue;
            }
            for c in rows.iter().filter(|c| c.change().0 != 0) {
                let note = if c.rounding_only() { "  (rounding: its exact amount did not change)" } else { "" };
                let _ = writeln!(out, "    {:<28} {:>14} -> {:>14}  {:>13}  {:>7}{note}", c.name, c.before.to_string(), c.after.to_string(), signed(c.change()), pct(c));
            }
        }
        let _ = writeln!(out, "\n  by rule (cost each rule decided, and what changed hands under it):");
        let moving = self.moving_rules();
        if moving.is_empty() {
            let _ = writeln!(out, "    no change");
        }
        for r in moving {
            let _ = writeln!(out, "    {:<28} {:>14} -> {:>14}  moved {}", r.name, r.before.to_string(), r.after.to_string(), r.moved.unwrap_or_default());
        }
        let _ = writeln!(out, "\n  cost lines whose owners changed: {}", self.moved_lines.len());
        for l in self.moved_lines.iter().take(lines) {
            let _ = writeln!(out, "    {} {} {} {} {}: {} -> {} ({} moved)", l.date, l.account, l.service, l.resource, l.usage_type, l.before, l.after, l.moved.round_to_cents());
        }
        if self.moved_lines.len() > lines {
            let _ = writeln!(out, "    ... and {} more (--format csv lists them all)", self.moved_lines.len() - lines);
        }
        out
    }

    /// For a pull-request comment: a table per section, the largest moved lines in a fold.
    pub fn markdown(&self, lines: usize) -> String {
        let cell = |s: &str| s.replace('|', "\\|");
        let mut out = String::new();
        let _ = writeln!(out, "### Rule change preview: {}\n", self.month);
        let _ = writeln!(out, "`{}` → `{}`, {} at the rules' cost basis.\n", cell(&self.base), cell(&self.proposed), self.currency);
        for (what, rows) in self.sections() {
            let changed: Vec<&Change> = rows.iter().filter(|c| c.change().0 != 0).collect();
            let _ = writeln!(out, "**By {what}**{}\n", if changed.is_empty() { ": no change" } else { "" });
            if changed.is_empty() {
                continue;
            }
            let _ = writeln!(out, "| {what} | before | after | change | % |\n|---|---:|---:|---:|---:|");
            for c in changed {
                let note = if c.rounding_only() { " (rounding)" } else { "" };
                let _ = writeln!(out, "| {} | {} | {} | {}{note} | {} |", cell(&c.name), c.before, c.after, signed(c.change()), pct(c));
            }
            out.push('\n');
        }
        let moving = self.moving_rules();
        let _ = writeln!(out, "**By rule**{}\n", if moving.is_empty() { ": no change" } else { "" });
        if !moving.is_empty() {
            let _ = writeln!(out, "| rule | before | after | changed hands |\n|---|---:|---:|---:|");
            for r in moving {
                let _ = writeln!(out, "| {} | {} | {} | {} |", cell(&r.name), r.before, r.after, r.moved.unwrap_or_default());
            }
            out.push('\n');
        }
        let _ = writeln!(out, "<details><summary>{} cost lines change owner</summary>\n", self.moved_lines.len());
        if !self.moved_lines.is_empty() {
            let _ = writeln!(out, "| date | account | service | resource | before | after | moved |\n|---|---|---|---|---|---|---:|");
            for l in self.moved_lines.iter().take(lines) {
                let _ = writeln!(out, "| {} | {} | {} | {} | {} | {} | {} |", l.date, l.account, cell(&l.service), cell(&l.resource), cell(&l.before), cell(&l.after), l.moved.round_to_cents());
            }
            if self.moved_lines.len() > lines {
                let _ = writeln!(out, "\n… and {} more.", self.moved_lines.len() - lines);
            }
        }
        out.push_str("\n</details>\n");
        out
    }

    /// For a spreadsheet: every row of every section, then every moved line.
    pub fn csv(&self) -> Vec<u8> {
        let mut csv = CsvBuilder::new(&["section", "name", "before", "after", "change", "change_pct", "moved", "owners_before", "owners_after"]);
        let sections = self.sections().into_iter().chain([("rule".to_string(), self.rules.as_slice())]);
        for (what, rows) in sections {
            for c in rows {
                let moved = c.moved.map(|m| m.to_string()).unwrap_or_default();
                csv.row([what.as_str(), &c.name, &c.before.to_string(), &c.after.to_string(), &c.change().to_string(), &c.pct().map(|p| format!("{p:.1}")).unwrap_or_default(), &moved, "", ""]);
            }
        }
        for l in &self.moved_lines {
            let name = format!("{} {} {} {} {}", l.date, l.account, l.service, l.resource, l.usage_type);
            csv.row(["line", &name, "", "", "", "", &l.moved.round_to_cents().to_string(), &l.before, &l.after]);
        }
        csv.into_bytes()
    }
}
