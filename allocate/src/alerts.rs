//! Cost alerts (docs/design.md §7), pure: daily spikes of a team's or a service's allocated cost
//! against a robust trailing baseline, with what drove them; month-over-month moves; month-end
//! forecasts; budget thresholds; idle GPU time. Delivery and "sent once" live in `report` and the
//! job; this module only decides.
//!
//! A day is a **spike** when its cost exceeds the expected cost by at least `min_excess` (money),
//! by at least `min_ratio` of the expected cost, and by at least `mad_multiple` × the baseline's
//! median absolute deviation — both an absolute and a relative impact, like AWS Cost Anomaly
//! Detection. The expected cost is the median of the previous `baseline_days` days, scaled by the
//! day's weekday factor (its weekday's median over the trailing four weeks against all days'), so a
//! quiet weekend does not make Monday look like a spike.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};

use crate::ledger::Dim;

/// Spike thresholds; `[alerts]` sets them globally, a team's `spike` table for one team.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Thresholds {
    pub baseline_days: usize,
    /// Least excess over the expected cost, in the currency.
    pub min_excess: f64,
    /// Least excess as a share of the expected cost.
    pub min_ratio: f64,
    /// Least excess in baseline MADs.
    pub mad_multiple: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds { baseline_days: 14, min_excess: 50.0, min_ratio: 0.2, mad_multiple: 3.0 }
    }
}

/// What a day's cost was expected to be.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Expected {
    pub cost: f64,
    /// Median absolute deviation of the baseline, at the day's weekday scale.
    pub mad: f64,
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Whether a day is a weekend day (Saturday, Sunday).
fn weekend(d: NaiveDate) -> bool {
    d.weekday().num_days_from_monday() >= 5
}

/// The level of workdays and of weekends against all days over the four weeks before `day`
/// (1.0 each with under three weeks of history, or no cost). Two groups, not seven weekdays:
/// four samples of one weekday are too few to tell a weekly pattern from a few random dips,
/// while twenty workdays and eight weekend days are robust — and the weekend is the pattern
/// that makes a naive baseline cry wolf on Mondays.
fn weekday_factors(series: &BTreeMap<NaiveDate, f64>, day: NaiveDate, first: NaiveDate) -> [f64; 7] {
    if (day - first).num_days() < 21 {
        return [1.0; 7];
    }
    let window: Vec<(NaiveDate, f64)> = (1..=28).map(|k| day - chrono::Duration::days(k)).filter(|d| *d >= first).map(|d| (d, series.get(&d).copied().unwrap_or(0.0))).collect();
    let overall = median(&mut window.iter().map(|(_, v)| *v).collect::<Vec<_>>());
    if overall <= 0.0 {
        return [1.0; 7];
    }
    let level = |weekend_days: bool| {
        let mut same: Vec<f64> = window.iter().filter(|(d, _)| weekend(*d) == weekend_days).map(|(_, v)| *v).collect();
        if same.len() >= 4 {
            (median(&mut same) / overall).clamp(0.05, 20.0)
        } else {
            1.0
        }
    };
    let (workday, weekend_level) = (level(false), level(true));
    std::array::from_fn(|w| if w >= 5 { weekend_level } else { workday })
}

/// The expected cost of `day` from the series' previous days (`first` is the first day the
/// series has data for; days before it are not zeros). `None` with under a week of history.
pub fn expected(series: &BTreeMap<NaiveDate, f64>, day: NaiveDate, first: NaiveDate, baseline_days: usize) -> Option<Expected> {
    let history: Vec<NaiveDate> = (1..=baseline_days as i64).map(|k| day - chrono::Duration::days(k)).filter(|d| *d >= first).collect();
    if history.len() < 7 {
        return None;
    }
    let factors = weekday_factors(series, day, first);
    let factor = |d: NaiveDate| factors[d.weekday().num_days_from_monday() as usize];
    let mut adjusted: Vec<f64> = history.iter().map(|d| series.get(d).copied().unwrap_or(0.0) / factor(*d)).collect();
    let center = median(&mut adjusted);
    let mut deviations: Vec<f64> = adjusted.iter().map(|v| (v - center).abs()).collect();
    let mad = median(&mut deviations);
    Some(Expected { cost: center * factor(day), mad: mad * factor(day) })
}

/// Whether `actual` against `expected` is a spike under `t`.
pub fn is_spike(actual: f64, expected: Expected, t: &Thresholds) -> bool {
    let excess = actual - expected.cost;
    excess >= t.min_excess && excess >= t.min_ratio * expected.cost.max(0.0) && excess >= t.mad_multiple * expected.mad
}

/// One dimension value's part of a change (a service, an account, a resource, a usage type).
#[derive(Clone, Debug, PartialEq)]
pub struct Contributor {
    /// `service`, `account`, `resource` or `usage_type`.
    pub dimension: &'static str,
    pub value: String,
    /// The value's cost that day, its baseline (median over the same days), and the difference.
    pub actual: f64,
    pub baseline: f64,
    pub change: f64,
    /// Its share of the whole change, 0..=1 (can exceed 1 when others fell).
    pub share: f64,
}

/// One day's cost of one line, for spikes and what drove them (text shared with the cost
/// lines, not copied: a month holds as many of these as allocated pieces).
#[derive(Clone, Debug, PartialEq)]
pub struct DayCost {
    pub date: NaiveDate,
    pub team: Dim,
    pub service: Dim,
    pub account: Dim,
    pub resource: Dim,
    pub usage_type: Dim,
    pub amount: f64,
}

/// What an alert is about.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Subject {
    Team(String),
    Service(String),
}

impl Subject {
    fn matches(&self, c: &DayCost) -> bool {
        match self {
            Subject::Team(t) => *c.team == **t,
            Subject::Service(s) => *c.service == **s,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Subject::Team(_) => "team",
            Subject::Service(_) => "service",
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Subject::Team(n) | Subject::Service(n) => n,
        }
    }
}

/// A day whose cost spiked.
#[derive(Clone, Debug, PartialEq)]
pub struct Spike {
    pub subject: Subject,
    pub date: NaiveDate,
    pub actual: f64,
    pub expected: Expected,
    /// The largest contributors by their share of the change, per dimension, largest first.
    pub contributors: Vec<Contributor>,
}

/// The spikes of `day` among teams and services, with their contributors. `costs` must hold the
/// baseline days too (the month before, early in a month). `thresholds` gives a team its own.
pub fn spikes(costs: &[DayCost], day: NaiveDate, thresholds: &dyn Fn(&Subject) -> Thresholds) -> Vec<Spike> {
    spikes_on(costs, &[day], thresholds)
}

/// The spikes of each of `days`: the series are summed once, and what drove a spike is read
/// only for the spikes found (a month of lines is read once per spike, not once per day).
pub fn spikes_on(costs: &[DayCost], days: &[NaiveDate], thresholds: &dyn Fn(&Subject) -> Thresholds) -> Vec<Spike> {
    let Some(first) = costs.iter().map(|c| c.date).min() else { return Vec::new() };
    // Subjects by name, then each subject's days: no text is copied per line.
    let mut index: std::collections::HashMap<(&str, bool), usize> = std::collections::HashMap::new();
    let mut subjects: Vec<(Subject, BTreeMap<NaiveDate, f64>)> = Vec::new();
    for c in costs {
        for (name, team) in [(&*c.team, true), (&*c.service, false)] {
            let at = *index.entry((name, team)).or_insert_with(|| {
                subjects.push((if team { Subject::Team(name.to_string()) } else { Subject::Service(name.to_string()) }, BTreeMap::new()));
                subjects.len() - 1
            });
            *subjects[at].1.entry(c.date).or_default() += c.amount;
        }
    }
    let series: BTreeMap<Subject, BTreeMap<NaiveDate, f64>> = subjects.into_iter().collect();
    let last = days.iter().max().copied().unwrap_or(first);
    let mut out = Vec::new();
    for (subject, values) in &series {
        let t = thresholds(subject);
        // Each series has its own history: it begins on its first day with cost, so a new team
        // or service is not measured against weeks of zeros before it existed.
        let Some(start) = series_start(values) else { continue };
        for (day, actual, expected, baseline_from) in levels(values, start, last, &t).into_iter().filter(|(d, ..)| days.contains(d)) {
            let contributors = contributors(costs, subject, day, baseline_from, t.baseline_days, actual - expected.cost);
            out.push(Spike { subject: subject.clone(), date: day, actual, expected, contributors });
        }
    }
    out.sort_by(|a, b| a.date.cmp(&b.date).then_with(|| a.subject.cmp(&b.subject)));
    out
}

/// The spike days of one series from `start` through `last`, each with its actual, expected and
/// the day its baseline began. A level shift is recognised (docs/design.md §7): when a third day
/// in a row is over the threshold, spending has moved rather than spiked, so that day is not a
/// spike and the baseline restarts from the shift's first day (a launch that is kept is told on
/// two days at most, then measured against its new level once it has a week of it).
fn levels(values: &BTreeMap<NaiveDate, f64>, start: NaiveDate, last: NaiveDate, t: &Thresholds) -> Vec<(NaiveDate, f64, Expected, NaiveDate)> {
    let mut out = Vec::new();
    let (mut from, mut run): (NaiveDate, Vec<NaiveDate>) = (start, Vec::new());
    let mut day = start;
    while day <= last {
        let actual = values.get(&day).copied().unwrap_or(0.0);
        match expected(values, day, from, t.baseline_days).filter(|e| is_spike(actual, *e, t)) {
            Some(_) if run.len() >= 2 => {
                from = run[0];
                run.clear();
            }
            Some(e) => {
                run.push(day);
                out.push((day, actual, e, from));
            }
            None => run.clear(),
        }
        day += chrono::Duration::days(1);
    }
    out
}

/// The first day of a series with cost.
fn series_start(values: &BTreeMap<NaiveDate, f64>) -> Option<NaiveDate> {
    values.iter().find(|(_, v)| **v != 0.0).map(|(d, _)| *d)
}

/// Teams and services whose spend begins on `day` (no cost on any earlier day of `costs`) with at
/// least `min` that day: told once as new spend, since they have no history to spike against.
pub fn new_spend(costs: &[DayCost], day: NaiveDate, min: &dyn Fn(&Subject) -> f64) -> Vec<(Subject, f64)> {
    let mut series: BTreeMap<Subject, BTreeMap<NaiveDate, f64>> = BTreeMap::new();
    for c in costs.iter().filter(|c| c.date <= day) {
        *series.entry(Subject::Team(c.team.to_string())).or_default().entry(c.date).or_default() += c.amount;
        *series.entry(Subject::Service(c.service.to_string())).or_default().entry(c.date).or_default() += c.amount;
    }
    // Only a series that is new within the data: one present from its first day is not.
    let data_start = costs.iter().map(|c| c.date).min();
    series
        .into_iter()
        .filter_map(|(subject, values)| {
            let start = series_start(&values)?;
            let amount = values.get(&day).copied().unwrap_or(0.0);
            (start == day && Some(start) > data_start && amount >= min(&subject)).then_some((subject, amount))
        })
        .collect()
}

/// What drove a subject's change on `day`: per dimension, each value's cost that day against its
/// median over the baseline days, largest increases first (three per dimension).
fn contributors(costs: &[DayCost], subject: &Subject, day: NaiveDate, first: NaiveDate, baseline_days: usize, change: f64) -> Vec<Contributor> {
    let baseline: Vec<NaiveDate> = (1..=baseline_days as i64).map(|k| day - chrono::Duration::days(k)).filter(|d| *d >= first).collect();
    let mut out = Vec::new();
    let dimensions: [(&'static str, fn(&DayCost) -> &str); 4] = [("service", |c| &c.service), ("account", |c| &c.account), ("resource", |c| &c.resource), ("usage_type", |c| &c.usage_type)];
    for (dimension, field) in dimensions {
        // A service's spike is that service's: its other dimensions say what drove it.
        if dimension == "service" && matches!(subject, Subject::Service(_)) {
            continue;
        }
        // Only values with cost on the day can have risen: find those, then their baseline
        // (a month of distinct resources is millions of values; a day's, a fraction).
        let mut on_day: std::collections::HashMap<&str, BTreeMap<NaiveDate, f64>> = std::collections::HashMap::new();
        for c in costs.iter().filter(|c| c.date == day && subject.matches(c)) {
            *on_day.entry(field(c)).or_default().entry(day).or_default() += c.amount;
        }
        for c in costs.iter().filter(|c| c.date != day && baseline.contains(&c.date) && subject.matches(c)) {
            if let Some(days) = on_day.get_mut(field(c)) {
                *days.entry(c.date).or_default() += c.amount;
            }
        }
        let by_value: BTreeMap<&str, BTreeMap<NaiveDate, f64>> = on_day.into_iter().collect();
        let mut rows: Vec<Contributor> = by_value
            .into_iter()
            .map(|(value, days)| {
                let actual = days.get(&day).copied().unwrap_or(0.0);
                let base = median(&mut baseline.iter().map(|d| days.get(d).copied().unwrap_or(0.0)).collect::<Vec<_>>());
                Contributor { dimension, value: value.to_string(), actual, baseline: base, change: actual - base, share: if change != 0.0 { (actual - base) / change } else { 0.0 } }
            })
            .filter(|c| c.change > 0.0)
            .collect();
        rows.sort_by(|a, b| b.change.total_cmp(&a.change).then_with(|| a.value.cmp(&b.value)));
        out.extend(rows.into_iter().take(3));
    }
    out
}

/// A month-over-month move beyond the thresholds.
#[derive(Clone, Debug, PartialEq)]
pub struct Move {
    pub subject: Subject,
    pub now: f64,
    pub before: f64,
}

impl Move {
    pub fn change_pct(&self) -> f64 {
        if self.before != 0.0 {
            (self.now - self.before) / self.before.abs() * 100.0
        } else {
            100.0
        }
    }
}

/// Rises *and* falls of at least `min_change` (money) and `min_ratio` between two months'
/// totals per subject; a subject new this month rises from zero, one gone falls to zero.
pub fn month_over_month(now: &BTreeMap<Subject, f64>, before: &BTreeMap<Subject, f64>, min_change: f64, min_ratio: f64) -> Vec<Move> {
    let mut subjects: Vec<&Subject> = now.keys().chain(before.keys()).collect();
    subjects.sort();
    subjects.dedup();
    subjects
        .into_iter()
        .filter_map(|s| {
            let (n, b) = (now.get(s).copied().unwrap_or(0.0), before.get(s).copied().unwrap_or(0.0));
            let change = (n - b).abs();
            (change >= min_change && change >= min_ratio * b.abs()).then(|| Move { subject: s.clone(), now: n, before: b })
        })
        .collect()
}

/// A month-end forecast and its range.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Forecast {
    pub month_to_date: f64,
    pub expected: f64,
    pub low: f64,
    pub high: f64,
    /// Days of the month after the last day with data: the range widens with them, and is
    /// empty (low = high = the month's total) when none are left.
    pub days_left: u32,
}

/// The month-end cost from the month's days so far: month-to-date plus, for each remaining day,
/// the daily run rate (median of the last 14 days, robust to a one-off spike) at its weekday's
/// factor; the range is the run rate ± its MAD.
pub fn forecast(days: &BTreeMap<NaiveDate, f64>, through: NaiveDate) -> Forecast {
    let month_start = through.with_day(1).expect("day 1");
    let next_month = if through.month() == 12 { NaiveDate::from_ymd_opt(through.year() + 1, 1, 1) } else { NaiveDate::from_ymd_opt(through.year(), through.month() + 1, 1) }.expect("a month");
    let month_to_date: f64 = days.range(month_start..=through).map(|(_, v)| v).sum();
    let first = days.keys().next().copied().unwrap_or(through);
    let tomorrow = through + chrono::Duration::days(1);
    let (mut expected, mut low, mut high) = (month_to_date, month_to_date, month_to_date);
    let days_left = (next_month - tomorrow).num_days().max(0) as u32;
    let mut day = tomorrow;
    while day < next_month {
        // The baseline as of the last day with data, at each remaining day's weekday.
        if let Some(e) = self::expected(days, day.min(tomorrow), first, 14).map(|e| {
            let factors = weekday_factors(days, tomorrow, first);
            let (at, of) = (factors[day.weekday().num_days_from_monday() as usize], factors[tomorrow.weekday().num_days_from_monday() as usize]);
            Expected { cost: e.cost / of * at, mad: e.mad / of * at }
        }) {
            expected += e.cost;
            low += (e.cost - e.mad).max(0.0);
            high += e.cost + e.mad;
        }
        day += chrono::Duration::days(1);
    }
    Forecast { month_to_date, expected, low, high, days_left }
}

/// The budget thresholds (shares of the budget) actual or forecast spend has reached.
pub fn budget_crossings(budget: f64, actual: f64, forecast: f64, thresholds: &[f64]) -> Vec<(&'static str, f64)> {
    let mut out = Vec::new();
    for t in thresholds {
        if actual >= t * budget {
            out.push(("actual", *t));
        } else if forecast >= t * budget {
            out.push(("forecast", *t));
        }
    }
    out
}

/// The one budget threshold a run tells a team about: the highest that actual or forecast spend
/// has reached (actual wins a tie), so a team past 100% is not also told 50% and 80% at once.
pub fn highest_crossing(budget: f64, actual: f64, forecast: f64, thresholds: &[f64]) -> Option<(&'static str, f64)> {
    budget_crossings(budget, actual, forecast, thresholds).into_iter().max_by(|a, b| a.1.total_cmp(&b.1).then_with(|| (a.0 == "actual").cmp(&(b.0 == "actual"))))
}

/// A threshold as a percentage for ids and messages: 0.995 is `99.5`, 1.0 is `100` (distinct
/// thresholds never share an id).
pub fn threshold_label(share: f64) -> String {
    let pct = (share * 1000.0).round() / 10.0;
    if pct.fract() == 0.0 {
        format!("{pct:.0}")
    } else {
        format!("{pct:.1}")
    }
}

/// The allocation's daily usage cost per team and line: what spikes are found in. Only usage is
/// daily (`Usage` and `Credit` lines); fees, purchases and taxes land on the first of the month
/// and on-prem hosts are priced for the month, so they are left to the monthly comparison.
pub fn day_costs(rules: &crate::RuleSet, allocation: &crate::Allocation) -> Vec<DayCost> {
    let mut out = Vec::new();
    let names: Vec<Dim> = rules.teams.iter().map(|t| Dim::from(t.name.as_str())).collect();
    let unallocated = Dim::from(rules.unallocated.as_str());
    let mut dates: BTreeMap<&str, Option<NaiveDate>> = BTreeMap::new();
    for p in &allocation.pieces {
        let line = &allocation.lines[p.line];
        if !matches!(&*line.charge_category, "Usage" | "Credit") || crate::gpu::is_on_prem(&line.account, &line.service) {
            continue;
        }
        let Some(date) = *dates.entry(&line.usage_date).or_insert_with(|| NaiveDate::parse_from_str(&line.usage_date, "%Y-%m-%d").ok()) else { continue };
        out.push(DayCost {
            date,
            team: p.team.map_or_else(|| unallocated.clone(), |t| names[t].clone()),
            service: line.service.clone(),
            account: line.account.clone(),
            resource: line.resource.clone(),
            usage_type: line.usage_type.clone(),
            amount: p.amount.units() as f64 / 1e12,
        });
    }
    out
}

/// Each team's whole allocated cost per day, in printed cents: every charge (usage, credits, tax,
/// fees, support, RI and Savings Plan fees, on-prem GPU at the rate card), each on the days it is
/// dated. What budgets are measured by, daily or monthly alike: through a month's last day it is
/// the team's row of `summary.csv`, to the cent.
pub fn team_day_cents(rules: &crate::RuleSet, allocation: &crate::Allocation) -> BTreeMap<String, BTreeMap<NaiveDate, crate::Cents>> {
    let mut out: BTreeMap<String, BTreeMap<NaiveDate, crate::Cents>> = BTreeMap::new();
    for p in &allocation.pieces {
        let line = &allocation.lines[p.line];
        let Ok(date) = NaiveDate::parse_from_str(&line.usage_date, "%Y-%m-%d") else { continue };
        let team = p.team.map_or_else(|| rules.unallocated.clone(), |t| rules.team(t).name.clone());
        out.entry(team).or_default().entry(date).or_default().0 += p.cents.0;
    }
    out
}

/// A namespace that held GPUs idle (under the idle threshold) for longer than allowed on a day.
#[derive(Clone, Debug, PartialEq)]
pub struct IdleGpu {
    pub date: String,
    pub namespace: String,
    /// Its team by `[gpu] namespace_team` (or a team's name); `None`: no team.
    pub team: Option<String>,
    pub gpu_hours: f64,
    pub idle_hours: f64,
    pub utilization_pct: f64,
    /// The idle hours at their pools' cost per GPU-hour: what reclaiming them would have saved.
    pub idle_cost: f64,
}

/// Namespaces idle for more than `min_idle_hours` GPU-hours on `day` (every day when `None`).
pub fn idle_gpus(rules: &crate::RuleSet, allocation: &crate::Allocation, usage: &crate::gpu::GpuUsageReport, day: Option<&str>, min_idle_hours: f64) -> Vec<IdleGpu> {
    let Some(gpu) = &rules.gpu else { return Vec::new() };
    let mut by: BTreeMap<(String, String), IdleGpu> = BTreeMap::new();
    for d in usage.days.iter().filter(|d| day.is_none_or(|x| d.date == x)) {
        let pool = allocation.gpu.iter().find(|p| p.nodes.contains(&d.node) && p.charged);
        let cost = pool.map_or(0.0, |p| p.cost_of_hours(d.idle_hours).units() as f64 / 1e12);
        let e = by.entry((d.date.clone(), d.namespace.clone())).or_insert_with(|| IdleGpu {
            date: d.date.clone(),
            namespace: d.namespace.clone(),
            team: gpu.team_of_namespace(rules, &d.namespace).map(|t| rules.team(t).name.clone()),
            gpu_hours: 0.0,
            idle_hours: 0.0,
            utilization_pct: 0.0,
            idle_cost: 0.0,
        });
        e.gpu_hours += d.gpu_hours;
        e.idle_hours += d.idle_hours;
        e.utilization_pct += d.busy_hours; // summed busy hours; turned into a percentage below
        e.idle_cost += cost;
    }
    by.into_values()
        .filter(|e| e.idle_hours > min_idle_hours)
        .map(|mut e| {
            e.utilization_pct = crate::gpu::utilization_pct(e.utilization_pct, e.gpu_hours);
            e
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2025, 10, d).unwrap()
    }

    #[test]
    fn a_quiet_weekend_does_not_make_monday_a_spike() {
        // Weekdays 100, weekends 20, for four weeks; then an ordinary Monday, then a spike.
        let start = NaiveDate::from_ymd_opt(2025, 9, 1).unwrap(); // a Monday
        let mut series = BTreeMap::new();
        for k in 0..35 {
            let d = start + chrono::Duration::days(k);
            series.insert(d, if d.weekday().num_days_from_monday() >= 5 { 20.0 } else { 100.0 });
        }
        let monday = start + chrono::Duration::days(35);
        series.insert(monday, 104.0);
        let t = Thresholds { min_excess: 10.0, ..Thresholds::default() };
        let e = expected(&series, monday, start, 14).unwrap();
        assert!(!is_spike(104.0, e, &t), "{e:?}");
        assert!(is_spike(180.0, e, &t), "{e:?}");
        // A Saturday at weekday level is a spike for a Saturday.
        let saturday = monday + chrono::Duration::days(5);
        let e = expected(&series, saturday, start, 14).unwrap();
        assert!(e.cost < 40.0, "{e:?}");
    }

    #[test]
    fn moves_both_ways_and_budgets() {
        let s = |n: &str| Subject::Team(n.into());
        let now = BTreeMap::from([(s("a"), 1500.0), (s("b"), 400.0), (s("c"), 1000.0)]);
        let before = BTreeMap::from([(s("a"), 1000.0), (s("b"), 1000.0), (s("c"), 990.0)]);
        let moves = month_over_month(&now, &before, 300.0, 0.2);
        assert_eq!(moves.iter().map(|m| m.subject.name()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(budget_crossings(1000.0, 600.0, 900.0, &[0.5, 0.8, 1.0]), vec![("actual", 0.5), ("forecast", 0.8)]);
    }

    // Regression: a team over budget got the 50, 80 and 100% messages in one run.
    #[test]
    fn one_crossing_per_run_the_highest() {
        assert_eq!(highest_crossing(1000.0, 1040.0, 1040.0, &[0.5, 0.8, 1.0]), Some(("actual", 1.0)));
        assert_eq!(highest_crossing(1000.0, 600.0, 900.0, &[0.5, 0.8, 1.0]), Some(("forecast", 0.8)));
        assert_eq!(highest_crossing(1000.0, 100.0, 200.0, &[0.5]), None);
    }

    // Regression: thresholds 0.995 and 1.0 had one id, so the second never fired.
    #[test]
    fn distinct_thresholds_have_distinct_labels() {
        assert_eq!(threshold_label(0.995), "99.5");
        assert_eq!(threshold_label(1.0), "100");
        assert_eq!(threshold_label(0.8), "80");
    }

    #[test]
    fn a_new_series_is_told_once_as_new_spend_and_never_spikes_against_days_before_it() {
        let cost = |d: u32, team: &str, service: &str, amount: f64| DayCost {
            date: day(d),
            team: Dim::from(team),
            service: Dim::from(service),
            account: Dim::from("1"),
            resource: Dim::from("r"),
            usage_type: Dim::from("u"),
            amount,
        };
        // search spends 100 a day all month; data starts on the 20th at 300 a day, and stays.
        let mut costs: Vec<DayCost> = (1..=31).map(|d| cost(d, "search", "AmazonEC2", 100.0)).collect();
        costs.extend((20..=31).map(|d| cost(d, "data", "AmazonRDS", 300.0)));
        let days: Vec<NaiveDate> = (1..=31).map(day).collect();
        let spikes = spikes_on(&costs, &days, &|_| Thresholds::default());
        assert!(spikes.is_empty(), "a new team is no spike, day after day: {spikes:?}");
        let min = |_: &Subject| 50.0;
        let told: Vec<(NaiveDate, Subject)> = days.iter().flat_map(|d| new_spend(&costs, *d, &min).into_iter().map(move |(s, _)| (*d, s))).collect();
        assert_eq!(told, vec![(day(20), Subject::Team("data".into())), (day(20), Subject::Service("AmazonRDS".into()))], "once, on its first day");
    }

    #[test]
    fn a_launch_that_is_kept_is_told_on_two_days_and_a_two_day_spike_on_both() {
        let cost = |d: u32, amount: f64| DayCost {
            date: day(d),
            team: Dim::from("search"),
            service: Dim::from("AmazonEC2"),
            account: Dim::from("1"),
            resource: Dim::from("r"),
            usage_type: Dim::from("u"),
            amount,
        };
        let noise = [0.0, 4.0, -3.0, 2.0, -5.0, 3.0, 1.0];
        // A launch on the 15th triples the level, and it stays.
        let launch: Vec<DayCost> = (1..=31).map(|d| cost(d, if d >= 15 { 300.0 } else { 100.0 } + noise[d as usize % 7])).collect();
        let days: Vec<NaiveDate> = (1..=31).map(day).collect();
        let told: Vec<NaiveDate> = spikes_on(&launch, &days, &|_| Thresholds::default()).iter().filter(|s| matches!(s.subject, Subject::Team(_))).map(|s| s.date).collect();
        assert_eq!(told, vec![day(15), day(16)], "the shift is recognised on its third day");
        // The same check run day by day finds the same.
        let daily: Vec<NaiveDate> = days.iter().flat_map(|d| spikes(&launch, *d, &|_| Thresholds::default()).into_iter().filter(|s| matches!(s.subject, Subject::Team(_))).map(|s| s.date)).collect();
        assert_eq!(daily, told);
        // A spike of two days is two spikes, and the level after it is measured as before.
        let spike: Vec<DayCost> = (1..=31).map(|d| cost(d, if d == 20 || d == 21 || d == 29 { 400.0 } else { 100.0 } + noise[d as usize % 7])).collect();
        let told: Vec<NaiveDate> = spikes_on(&spike, &days, &|_| Thresholds::default()).iter().filter(|s| matches!(s.subject, Subject::Team(_))).map(|s| s.date).collect();
        assert_eq!(told, vec![day(20), day(21), day(29)]);
    }

    #[test]
    fn the_forecast_adds_the_run_rate_for_the_days_left() {
        let series: BTreeMap<NaiveDate, f64> = (1..=15).map(|d| (day(d), 10.0)).collect();
        let f = forecast(&series, day(15));
        assert_eq!(f.month_to_date, 150.0);
        assert!((f.expected - 310.0).abs() < 1e-9, "{f:?}");
        assert!(f.low <= f.expected && f.expected <= f.high);
        assert_eq!(f.days_left, 16);
    }

    #[test]
    fn the_forecast_range_narrows_as_the_days_left_fall_and_closes_at_month_end() {
        // A noisy series: the same days known, seen from three points in the month.
        let series: BTreeMap<NaiveDate, f64> = (1..=31).map(|d| (day(d), 100.0 + [0.0, 12.0, -9.0, 5.0, -14.0, 8.0, 3.0][d as usize % 7])).collect();
        let width = |through: u32| {
            let known: BTreeMap<NaiveDate, f64> = series.range(..=day(through)).map(|(d, v)| (*d, *v)).collect();
            let f = forecast(&known, day(through));
            (f.high - f.low, f.days_left)
        };
        let (early, mid, end) = (width(15), width(25), width(31));
        assert_eq!((early.1, mid.1, end.1), (16, 6, 0));
        assert!(early.0 > mid.0 && mid.0 > 0.0, "{early:?} {mid:?}");
        assert_eq!(end.0, 0.0, "no day left, no range");
    }
}
