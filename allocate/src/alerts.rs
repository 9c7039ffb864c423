//! Cost alerts (docs/design.md §7), pure: daily spikes of a team's allocated cost against robust
//! trailing baselines, with what drove them; new spend; month-over-month moves; month-end
//! forecasts; budget thresholds; idle GPU time. Delivery and "sent once" live in `report` and the
//! job; this module only decides.
//!
//! A series' day is over its threshold when its cost exceeds the expected cost by at least
//! `min_excess` (money), by at least `min_ratio` of the expected cost, and by at least `sigmas`
//! robust standard deviations of the baseline — both an absolute and a relative impact, like AWS
//! Cost Anomaly Detection. The expected cost is the median of the previous `baseline_days` days,
//! scaled by the day's weekday factor (workdays' and weekends' medians over the trailing four
//! weeks against all days'), so a quiet weekend does not make Monday look like a spike; the spread
//! is measured over six weeks, in logs where the days all cost more than zero. Each team is watched in
//! its whole day and in its services and resources, and told once per day.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{Datelike, NaiveDate};

use crate::ledger::Dim;

/// Spike thresholds; `[alerts]` sets them globally, a team's `spike` table for one team. Every
/// series of a team (its whole day, its services and resources) is held to them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Thresholds {
    pub baseline_days: usize,
    /// Least excess over the expected cost, in the currency: the money floor.
    pub min_excess: f64,
    /// Least excess as a share of the expected cost.
    pub min_ratio: f64,
    /// Least excess in the series' standard deviations, estimated robustly (1.4826 × the
    /// baseline's median absolute deviation, so one outlier in the baseline does not widen it).
    pub sigmas: f64,
}

impl Default for Thresholds {
    /// Chosen with the detection benchmark (README, "Benchmarks"): on a team of ~15 resources with
    /// lognormal noise, spikes of 3× the team's daily MAD on one resource are found and ordinary
    /// days stay quiet.
    fn default() -> Self {
        Thresholds { baseline_days: 14, min_excess: 50.0, min_ratio: 0.2, sigmas: 5.0 }
    }
}

/// σ of a normal distribution from its median absolute deviation.
pub const MAD_TO_SIGMA: f64 = 1.4826;

/// What a day's cost was expected to be.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Expected {
    pub cost: f64,
    /// Median absolute deviation of the baseline, at the day's weekday scale.
    pub mad: f64,
    /// The second-highest day of the last six weeks, at the day's weekday scale: a day not
    /// above it is spending that recurs (a job that runs now and then), not a spike.
    pub recurring: f64,
    /// The baseline's spread in logs, when its days all cost more than zero: costs vary by
    /// multiples (a resource's noise is lognormal), so a day is measured by how many times its
    /// usual cost it is, not by how many dollars above it.
    pub log_sigma: Option<f64>,
}

impl Expected {
    /// The baseline's spread as a standard deviation (robust: from the MAD).
    pub fn sigma(&self) -> f64 {
        self.mad * MAD_TO_SIGMA
    }

    /// How many of the baseline's standard deviations `actual` is above the expected cost: in
    /// logs when the baseline has them, else in money.
    pub fn sigmas_over(&self, actual: f64) -> f64 {
        match self.log_sigma {
            Some(s) if actual > 0.0 && self.cost > 0.0 => (actual / self.cost).ln() / s,
            _ => (actual - self.cost) / self.sigma(),
        }
    }
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

/// The interquartile range of values sorted from the largest down.
fn iqr(descending: &[f64]) -> f64 {
    let quartile = |q: f64| descending[((descending.len() - 1) as f64 * q).round() as usize];
    quartile(0.25) - quartile(0.75)
}

/// Days of cost a series needs in its baseline before it is measured: five in seven (with the
/// default 14 days, ten: two weeks of workdays). A series that costs on fewer (a job that runs
/// now and then) has no usual day to be measured against: it is left to its service and team.
fn history_days(baseline_days: usize) -> usize {
    (baseline_days * 5).div_ceil(7).max(5)
}

/// Days the baseline's spread is measured over, and how far back a check reads: six weeks (a
/// MAD of two weeks' days is itself too noisy to set a threshold in σ; six weeks' is steady).
pub const SPREAD_DAYS: usize = 42;

/// The expected cost of `day` from the series' previous days (`first` is the first day the
/// series has data for; days before it are not zeros). `None` until the series has enough
/// history: cost on five days in seven of its baseline and of its six weeks (ten of 14 days by
/// default), so a resource that runs now and then is left to its service and team, never
/// measured against a median of zeros.
pub fn expected(series: &BTreeMap<NaiveDate, f64>, day: NaiveDate, first: NaiveDate, baseline_days: usize) -> Option<Expected> {
    expected_leaving_out(series, day, first, baseline_days, &|_| false)
}

/// `expected`, leaving out of the baseline the days `left_out` names (spikes acknowledged as
/// planned or expected: real, known spend that is not the usual level).
fn expected_leaving_out(series: &BTreeMap<NaiveDate, f64>, day: NaiveDate, first: NaiveDate, baseline_days: usize, left_out: &dyn Fn(NaiveDate) -> bool) -> Option<Expected> {
    let history: Vec<NaiveDate> = (1..=baseline_days as i64).map(|k| day - chrono::Duration::days(k)).filter(|d| *d >= first && !left_out(*d)).collect();
    // The spread over six weeks (`SPREAD_DAYS`).
    let spread: Vec<NaiveDate> = (1..=baseline_days.max(SPREAD_DAYS) as i64).map(|k| day - chrono::Duration::days(k)).filter(|d| *d >= first && !left_out(*d)).collect();
    // Enough history: cost on five days in seven, over the baseline and over the six weeks.
    let with_cost = |days: &[NaiveDate]| days.iter().filter(|d| series.get(d).is_some_and(|v| *v != 0.0)).count();
    if with_cost(&history) < history_days(baseline_days) || with_cost(&spread) < (spread.len() * 5).div_ceil(7) {
        return None;
    }
    let factors = weekday_factors(series, day, first);
    let factor = |d: NaiveDate| factors[d.weekday().num_days_from_monday() as usize];
    let mut adjusted: Vec<f64> = history.iter().map(|d| series.get(d).copied().unwrap_or(0.0) / factor(*d)).collect();
    let center = median(&mut adjusted);
    let mut spread: Vec<f64> = spread.iter().map(|d| series.get(d).copied().unwrap_or(0.0) / factor(*d)).collect();
    spread.sort_by(|a, b| b.total_cmp(a));
    let recurring = spread.get(1).copied().unwrap_or(f64::MIN);
    let mut deviations: Vec<f64> = spread.iter().map(|v| (v - center).abs()).collect();
    // The MAD, unless the days fall in two groups (a job that runs on some days): then half of
    // them sit at one level and the MAD sees only that level's noise, so the spread is at least
    // the interquartile range's (in MAD terms: IQR / 2 for a normal distribution).
    let mad = median(&mut deviations).max(iqr(&spread) / 2.0);
    let log_sigma = (center > 0.0 && spread.iter().all(|v| *v > 0.0)).then(|| {
        let logs: Vec<f64> = spread.iter().map(|v| v.ln()).collect();
        median(&mut logs.iter().map(|l| (l - center.ln()).abs()).collect::<Vec<_>>()).max(iqr(&logs) / 2.0) * MAD_TO_SIGMA
    });
    Some(Expected { cost: center * factor(day), mad: mad * factor(day), recurring: recurring * factor(day), log_sigma })
}

/// Whether `actual` against `expected` is a spike under `t`.
pub fn is_spike(actual: f64, expected: Expected, t: &Thresholds) -> bool {
    let excess = actual - expected.cost;
    excess >= t.min_excess && excess >= t.min_ratio * expected.cost.max(0.0) && expected.sigmas_over(actual) >= t.sigmas && actual > expected.recurring
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
    /// Its share of the spike's excess, 0..=1 (can exceed 1 when others fell).
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

/// What a person said of a spike (`finops alerts ack`), as AWS Cost Anomaly Detection takes
/// feedback.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Feedback {
    /// Real spend the team planned (a load test, a migration).
    Planned,
    /// Real spend that was to be expected (a month-end batch, a known customer event).
    Expected,
    /// Not a spike the team would call one: a false alert.
    Wrong,
}

impl Feedback {
    pub fn name(self) -> &'static str {
        match self {
            Feedback::Planned => "planned",
            Feedback::Expected => "expected",
            Feedback::Wrong => "wrong",
        }
    }

    /// Known spend is not the usual level: it leaves later baselines, and its repeats on the
    /// days right after are not sent again.
    pub fn leaves_baseline(self) -> bool {
        matches!(self, Feedback::Planned | Feedback::Expected)
    }
}

/// The series a team's spike was found in, finest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Grain {
    Resource,
    Service,
    Team,
}

impl Grain {
    pub fn name(self) -> &'static str {
        match self {
            Grain::Resource => "resource",
            Grain::Service => "service",
            Grain::Team => "team",
        }
    }
}

/// A team's day that spiked: one per team and day, found in whichever of its series shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Spike {
    /// The team.
    pub subject: Subject,
    pub date: NaiveDate,
    /// The series the spike was found in (the most specific one that carries most of the
    /// excess): the team's whole day, or one of its services or resources.
    pub grain: Grain,
    /// That series' value (a service or resource; the team's name for its whole day).
    pub series: String,
    /// That series' cost on the day and what was expected of it.
    pub actual: f64,
    pub expected: Expected,
    /// The team's whole daily usage cost that day.
    pub team_actual: f64,
    /// What drove it, the series it was found in first, then per dimension (resources, usage
    /// types, services, accounts) the largest increases against the baseline days.
    pub contributors: Vec<Contributor>,
    /// The acknowledged planned or expected spike this one repeats (its next days, while they
    /// stay over the threshold): recorded, not sent again.
    pub repeat_of: Option<NaiveDate>,
}

impl Spike {
    /// The excess over what was expected.
    pub fn excess(&self) -> f64 {
        self.actual - self.expected.cost
    }
}

/// The spikes of `day`, with their contributors. `costs` must hold the baseline days too (the
/// month before, early in a month). `thresholds` gives a team its own.
pub fn spikes(costs: &[DayCost], day: NaiveDate, thresholds: &dyn Fn(&Subject) -> Thresholds) -> Vec<Spike> {
    spikes_on(costs, &[day], thresholds)
}

type SeriesKey<'a> = (usize, Grain, &'a str);

/// The spikes of each of `days` (docs/design.md §7). A spike on one resource is lost in its
/// team's total but plain in its own series, so each team is watched at every grain with enough
/// history — its whole day, each service, and each resource that spent at least the money floor
/// on a checked day (one under it cannot carry an alert alone; its cost still counts in its
/// service and team) — each against its own robust baseline, and rolled
/// up to one alert per team and day naming the series it was found in. The series are summed
/// once; what drove a spike is read only for the spikes found.
pub fn spikes_on(costs: &[DayCost], days: &[NaiveDate], thresholds: &dyn Fn(&Subject) -> Thresholds) -> Vec<Spike> {
    spikes_leaving_out(costs, days, thresholds, &BTreeSet::new())
}

/// `spikes_on`, leaving the `(team, day)`s of `left_out` out of that team's baselines (spikes
/// acknowledged as planned or expected, `Feedback::leaves_baseline`).
pub fn spikes_leaving_out(costs: &[DayCost], days: &[NaiveDate], thresholds: &dyn Fn(&Subject) -> Thresholds, left_out: &BTreeSet<(String, NaiveDate)>) -> Vec<Spike> {
    detect(costs, days, thresholds, left_out).spikes
}

/// A level shift confirmed: a series over its threshold a third day in a row after at least
/// one of the first two was alerted. Told once, on the day it is confirmed, so the alerts of its
/// first days are read as the start of a new level.
#[derive(Clone, Debug, PartialEq)]
pub struct LevelShift {
    /// The team.
    pub subject: Subject,
    /// The series that moved (the most specific carrying at least half of the largest move).
    pub grain: Grain,
    pub series: String,
    /// Its first day, and the day it was confirmed (the third).
    pub from: NaiveDate,
    pub confirmed: NaiveDate,
    /// What a day was expected to cost before it, and the average of its three days.
    pub before: f64,
    pub level: f64,
}

/// What the daily detection finds on its days: spikes and confirmed level shifts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Detection {
    pub spikes: Vec<Spike>,
    pub shifts: Vec<LevelShift>,
}

/// The spikes and level shifts of each of `days` (`spikes_leaving_out`, with the shifts).
pub fn detect(costs: &[DayCost], days: &[NaiveDate], thresholds: &dyn Fn(&Subject) -> Thresholds, left_out: &BTreeSet<(String, NaiveDate)>) -> Detection {
    let Some(data_start) = costs.iter().map(|c| c.date).min() else { return Detection::default() };
    let checked: HashSet<NaiveDate> = days.iter().copied().collect();
    let last = days.iter().max().copied().unwrap_or(data_start);
    let mut team_index: HashMap<&str, usize> = HashMap::new();
    let mut teams: Vec<(&str, Thresholds)> = Vec::new();
    let team_at: Vec<u32> = costs
        .iter()
        .map(|c| {
            let name: &str = &c.team;
            *team_index.entry(name).or_insert_with(|| {
                teams.push((name, thresholds(&Subject::Team(name.to_string()))));
                teams.len() - 1
            }) as u32
        })
        .collect();
    // Resources worth a series of their own: at least the money floor on a checked day. Summed
    // by sorting the checked costs' positions by (team, resource, day) rather than in a map: in a
    // month where nearly every line is its own resource the map was the check's largest table.
    let mut resource_days: Vec<u32> = (0..costs.len() as u32).filter(|&i| checked.contains(&costs[i as usize].date)).collect();
    let key = |i: u32| (team_at[i as usize], costs[i as usize].resource.code(), costs[i as usize].date);
    // Stable: each key's amounts are summed in the order of the lines.
    resource_days.sort_by_key(|&i| key(i));
    let mut watched: HashSet<(usize, &str)> = HashSet::new();
    for day in resource_days.chunk_by(|&a, &b| key(a) == key(b)) {
        let (t, _, _) = key(day[0]);
        if day.iter().map(|&i| costs[i as usize].amount).sum::<f64>() >= teams[t as usize].1.min_excess {
            watched.insert((t as usize, &costs[day[0] as usize].resource));
        }
    }
    drop(resource_days);
    let mut series: HashMap<SeriesKey, BTreeMap<NaiveDate, f64>> = HashMap::new();
    for (c, &t) in costs.iter().zip(&team_at) {
        let t = t as usize;
        for (grain, value) in [(Grain::Team, ""), (Grain::Service, &*c.service)] {
            *series.entry((t, grain, value)).or_default().entry(c.date).or_default() += c.amount;
        }
        if watched.contains(&(t, &*c.resource)) {
            *series.entry((t, Grain::Resource, &c.resource)).or_default().entry(c.date).or_default() += c.amount;
        }
    }
    // New spend is told as new spend, not as a spike: a team's whole day is measured without the
    // cost of services it has just begun (those still short of enough history).
    let mut young: HashMap<(usize, NaiveDate), f64> = HashMap::new();
    for ((t, grain, _), values) in &series {
        if *grain != Grain::Service || series_start(values).is_none_or(|s| s <= data_start) {
            continue;
        }
        for (day, v) in values.iter().filter(|(_, v)| **v != 0.0).take(history_days(teams[*t].1.baseline_days)) {
            *young.entry((*t, *day)).or_default() += v;
        }
    }
    // Every series' days over its threshold, per team and day.
    let mut flagged: BTreeMap<(usize, NaiveDate), Vec<(Grain, &str, Over)>> = BTreeMap::new();
    let mut moved: BTreeMap<(usize, NaiveDate), Vec<(Grain, &str, Shifted)>> = BTreeMap::new();
    for ((t, grain, value), values) in &series {
        let Some(start) = series_start(values) else { continue };
        let explained = |d: NaiveDate| if *grain == Grain::Team { young.get(&(*t, d)).copied().unwrap_or(0.0) } else { 0.0 };
        let team = teams[*t].0;
        let skip = |d: NaiveDate| !left_out.is_empty() && left_out.contains(&(team.to_string(), d));
        let walk = levels(values, start, last, &teams[*t].1, &explained, &skip);
        for over in walk.over.into_iter().filter(|o| checked.contains(&o.day)) {
            flagged.entry((*t, over.day)).or_default().push((*grain, value, over));
        }
        for shift in walk.shifts.into_iter().filter(|s| checked.contains(&s.confirmed)) {
            moved.entry((*t, shift.confirmed)).or_default().push((*grain, value, shift));
        }
    }
    let shifts: Vec<LevelShift> = moved
        .into_iter()
        .map(|((t, confirmed), found)| {
            let (grain, value, s) = most_specific(&found, |s| s.level - s.before);
            let team = teams[t].0;
            LevelShift {
                subject: Subject::Team(team.to_string()),
                grain: *grain,
                series: if *grain == Grain::Team { team.to_string() } else { value.to_string() },
                from: s.from,
                confirmed,
                before: s.before,
                level: s.level,
            }
        })
        .collect();
    let mut out = Vec::new();
    for ((t, day), found) in flagged {
        // The driver: the most specific series that carries at least half of the largest excess
        // (a resource that is the change, not a resource that is a sliver of a service's rise).
        let (grain, value, over) = most_specific(&found, |o| o.actual - o.expected.cost);
        let (grain, value, actual, expected, from) = (*grain, *value, over.actual, over.expected, over.from);
        // The episode of an acknowledged spike goes on while any of its series repeats it.
        let repeat_of = found.iter().filter_map(|f| f.2.repeat_of).min();
        let (team, t_thresholds) = teams[t];
        let subject = Subject::Team(team.to_string());
        let team_actual = series.get(&(t, Grain::Team, "")).and_then(|v| v.get(&day)).copied().unwrap_or(0.0);
        let excess = actual - expected.cost;
        let mut contributors = Vec::new();
        if grain != Grain::Team {
            contributors.push(Contributor { dimension: grain.name(), value: value.to_string(), actual, baseline: expected.cost, change: excess, share: 1.0 });
        }
        contributors.extend(self::contributors(costs, team, day, from, t_thresholds.baseline_days, excess).into_iter().filter(|c| !(c.dimension == grain.name() && c.value == value)));
        out.push(Spike { subject, date: day, grain, series: if grain == Grain::Team { team.to_string() } else { value.to_string() }, actual, expected, team_actual, contributors, repeat_of });
    }
    out.sort_by(|a, b| a.date.cmp(&b.date).then_with(|| a.subject.cmp(&b.subject)));
    Detection { spikes: out, shifts }
}

/// Of a team's series that moved on a day, the one to name: the most specific that carries at
/// least half of the largest move (a resource that is the change, not a resource that is a
/// sliver of a service's rise), the largest move within a grain. `found` is never empty.
fn most_specific<'a, T>(found: &'a [(Grain, &'a str, T)], change: impl Fn(&T) -> f64) -> &'a (Grain, &'a str, T) {
    let largest = found.iter().map(|f| change(&f.2)).fold(f64::MIN, f64::max);
    found.iter().filter(|f| change(&f.2) >= largest / 2.0).min_by(|a, b| a.0.cmp(&b.0).then_with(|| change(&b.2).total_cmp(&change(&a.2)))).expect("a series that moved")
}

/// The over-threshold days of one series from `start` through `last`, each with its actual,
/// expected and the day its baseline began; `explained(day)` is cost the day holds that is not
/// measured (new spend), taken off the excess before it is alerted. A level shift is recognised
/// (docs/design.md §7): when a third day in a row is over the threshold, spending has moved
/// rather than spiked, so that day is not a spike and the baseline restarts from the shift's
/// first day (a change that is kept is told on two days at most, then measured against its new
/// level once it has enough history at it).
fn levels(values: &BTreeMap<NaiveDate, f64>, start: NaiveDate, last: NaiveDate, t: &Thresholds, explained: &dyn Fn(NaiveDate) -> f64, left_out: &dyn Fn(NaiveDate) -> bool) -> Walk {
    let mut out = Vec::new();
    let mut shifts = Vec::new();
    // A series that never goes below zero cannot exceed its expected cost by more than its cost:
    // its days under the money floor need no baseline.
    let never_negative = values.values().all(|v| *v >= 0.0);
    // The current run of days over the threshold: each day, whether it was alerted, and what it
    // was expected to cost.
    let (mut from, mut run): (NaiveDate, Vec<(NaiveDate, bool, f64)>) = (start, Vec::new());
    // Acknowledged known spend and the days over the threshold right after it (its repeats):
    // left out of the baseline and of level shifts.
    let (mut known, mut episode): (BTreeSet<NaiveDate>, Option<NaiveDate>) = (BTreeSet::new(), None);
    let mut day = start;
    while day <= last {
        let actual = values.get(&day).copied().unwrap_or(0.0);
        let over = if never_negative && actual < t.min_excess { None } else { expected_leaving_out(values, day, from, t.baseline_days, &|d| known.contains(&d)).filter(|e| is_spike(actual, *e, t)) };
        let yesterday = day - chrono::Duration::days(1);
        match over {
            _ if left_out(day) => {
                known.insert(day);
                // Its repeats follow only a day the series was over.
                episode = over.map(|_| day);
                if let Some(e) = over {
                    out.push(Over { day, actual, expected: e, from, repeat_of: None });
                }
            }
            Some(e) if episode.is_some() && known.contains(&yesterday) => {
                known.insert(day);
                out.push(Over { day, actual, expected: e, from, repeat_of: episode });
            }
            Some(_) if run.len() >= 2 => {
                // Told only when its start was alerted (new spend's start is told as new spend).
                if run.iter().any(|r| r.1) {
                    let level = (run.iter().map(|r| values.get(&r.0).copied().unwrap_or(0.0)).sum::<f64>() + actual) / 3.0;
                    shifts.push(Shifted { from: run[0].0, confirmed: day, before: run[0].2, level });
                }
                from = run[0].0;
                run.clear();
            }
            Some(e) => {
                let alerted = is_spike(actual - explained(day), e, t);
                run.push((day, alerted, e.cost));
                if alerted {
                    out.push(Over { day, actual, expected: e, from, repeat_of: None });
                }
            }
            None => run.clear(),
        }
        day += chrono::Duration::days(1);
    }
    Walk { over: out, shifts }
}

/// One series walked through its days.
struct Walk {
    over: Vec<Over>,
    shifts: Vec<Shifted>,
}

/// A series' level shift, confirmed on its third day.
struct Shifted {
    from: NaiveDate,
    confirmed: NaiveDate,
    before: f64,
    level: f64,
}

/// A day of a series over its threshold.
struct Over {
    day: NaiveDate,
    actual: f64,
    expected: Expected,
    /// The day its baseline began.
    from: NaiveDate,
    /// The acknowledged known spike it repeats (the day after it, or after another repeat).
    repeat_of: Option<NaiveDate>,
}

/// The first day of a series with cost.
fn series_start(values: &BTreeMap<NaiveDate, f64>) -> Option<NaiveDate> {
    values.iter().find(|(_, v)| **v != 0.0).map(|(d, _)| *d)
}

/// Spend with no history: a team's first day of cost, or a service's first day in a team that
/// already spent. Told once, in place of spikes it has no history for.
#[derive(Clone, Debug, PartialEq)]
pub struct NewSpend {
    pub team: String,
    /// The service new to the team; `None`: the team itself is new.
    pub service: Option<String>,
    pub amount: f64,
}

/// Teams, and services within a team, whose spend begins on `day` (no cost on any earlier day of
/// `costs`) with at least the team's `min` that day. A series present from the data's first day
/// is not new.
pub fn new_spend(costs: &[DayCost], day: NaiveDate, min: &dyn Fn(&Subject) -> f64) -> Vec<NewSpend> {
    let mut series: BTreeMap<(&str, Option<&str>), BTreeMap<NaiveDate, f64>> = BTreeMap::new();
    for c in costs.iter().filter(|c| c.date <= day) {
        *series.entry((&c.team, None)).or_default().entry(c.date).or_default() += c.amount;
        *series.entry((&c.team, Some(&c.service))).or_default().entry(c.date).or_default() += c.amount;
    }
    let data_start = costs.iter().map(|c| c.date).min();
    let new_team: HashSet<&str> = series.iter().filter(|((_, s), v)| s.is_none() && series_start(v) == Some(day)).map(|((t, _), _)| *t).collect();
    series
        .iter()
        .filter_map(|((team, service), values)| {
            let start = series_start(values)?;
            let amount = values.get(&day).copied().unwrap_or(0.0);
            // A new team's services are the team's news, told once with it.
            let told = service.is_none() || !new_team.contains(team);
            (told && start == day && Some(start) > data_start && amount >= min(&Subject::Team(team.to_string()))).then(|| NewSpend {
                team: team.to_string(),
                service: service.map(str::to_string),
                amount,
            })
        })
        .collect()
}

/// What drove a team's change on `day`: per dimension (resources, usage types, services,
/// accounts), each value's cost that day against its median over the baseline days, the largest
/// increases first (two per dimension).
fn contributors(costs: &[DayCost], team: &str, day: NaiveDate, first: NaiveDate, baseline_days: usize, change: f64) -> Vec<Contributor> {
    let baseline: Vec<NaiveDate> = (1..=baseline_days as i64).map(|k| day - chrono::Duration::days(k)).filter(|d| *d >= first).collect();
    let mut out = Vec::new();
    let dimensions: [(&'static str, fn(&DayCost) -> &str); 4] = [("resource", |c| &c.resource), ("usage_type", |c| &c.usage_type), ("service", |c| &c.service), ("account", |c| &c.account)];
    for (dimension, field) in dimensions {
        // Only values with cost on the day can have risen: find those, then their baseline
        // (a month of distinct resources is millions of values; a day's, a fraction).
        let mut on_day: HashMap<&str, BTreeMap<NaiveDate, f64>> = HashMap::new();
        for c in costs.iter().filter(|c| c.date == day && *c.team == *team) {
            *on_day.entry(field(c)).or_default().entry(day).or_default() += c.amount;
        }
        for c in costs.iter().filter(|c| c.date != day && baseline.contains(&c.date) && *c.team == *team) {
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
        out.extend(rows.into_iter().take(2));
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
            Expected { cost: e.cost / of * at, mad: e.mad / of * at, recurring: e.recurring / of * at, ..e }
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
    let mut out: Vec<DayCost> = Vec::new();
    let names: Vec<Dim> = rules.teams.iter().map(|t| Dim::from(t.name.as_str())).collect();
    let unallocated = Dim::from(rules.unallocated.as_str());
    let mut dates: BTreeMap<&str, Option<NaiveDate>> = BTreeMap::new();
    // Pieces come in line order, then team: a line's pieces for one team (a GPU charge split by
    // namespace, a share split by project) are one cost here, as they have one key.
    let mut last: Option<(u32, Option<crate::rules::TeamId>)> = None;
    for p in &allocation.pieces {
        let line = &allocation.lines[p.line as usize];
        if !matches!(&*line.charge_category, "Usage" | "Credit") || crate::gpu::is_on_prem(&line.account, &line.service) {
            continue;
        }
        let Some(date) = *dates.entry(&line.usage_date).or_insert_with(|| NaiveDate::parse_from_str(&line.usage_date, "%Y-%m-%d").ok()) else { continue };
        if last == Some((p.line, p.team)) {
            if let Some(cost) = out.last_mut() {
                cost.amount += p.amount.units() as f64 / 1e12;
                continue;
            }
        }
        last = Some((p.line, p.team));
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
        let line = &allocation.lines[p.line as usize];
        let Ok(date) = NaiveDate::parse_from_str(&line.usage_date, "%Y-%m-%d") else { continue };
        let team = rules.team_or_unallocated(p.team).to_string();
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

    fn cost(d: u32, team: &str, service: &str, resource: &str, amount: f64) -> DayCost {
        DayCost { date: day(d), team: Dim::from(team), service: Dim::from(service), account: Dim::from("1"), resource: Dim::from(resource), usage_type: Dim::from(service), amount }
    }

    /// Day-to-day noise of a few percent, the same every week.
    const NOISE: [f64; 7] = [0.0, 4.0, -3.0, 2.0, -5.0, 3.0, 1.0];

    #[test]
    fn a_new_team_or_service_is_told_once_as_new_spend_and_never_spikes_against_days_before_it() {
        // search spends about 100 a day all month and begins SageMaker on the 25th (kept); data
        // starts on the 20th at 300 a day, and stays.
        let mut costs: Vec<DayCost> = (1..=31).map(|d| cost(d, "search", "AmazonEC2", "i-1", 100.0 + NOISE[d as usize % 7])).collect();
        costs.extend((25..=31).map(|d| cost(d, "search", "AmazonSageMaker", "nb-1", 200.0)));
        costs.extend((20..=31).map(|d| cost(d, "data", "AmazonRDS", "db-1", 300.0)));
        let days: Vec<NaiveDate> = (1..=31).map(day).collect();
        let spikes = spikes_on(&costs, &days, &|_| Thresholds::default());
        assert!(spikes.is_empty(), "new spend is no spike, day after day: {spikes:?}");
        assert!(detect(&costs, &days, &|_| Thresholds::default(), &BTreeSet::new()).shifts.is_empty(), "nor a level shift to tell");
        let min = |_: &Subject| 50.0;
        let told: Vec<(NaiveDate, String, Option<String>)> = days.iter().flat_map(|d| new_spend(&costs, *d, &min).into_iter().map(move |n| (*d, n.team, n.service))).collect();
        assert_eq!(told, vec![(day(20), "data".into(), None), (day(25), "search".into(), Some("AmazonSageMaker".into()))], "once, on its first day");
    }

    #[test]
    fn a_spike_on_one_resource_lost_in_its_team_is_found_in_its_own_series_and_named_first() {
        // Fifteen resources of about 200 a day, each with its own noise; on the 24th one of them
        // spends 150 more: 5% of the team's 3,000 day, under any share of the team's total.
        let resources: Vec<String> = (0..15).map(|r| format!("i-{r:02}")).collect();
        let mut costs = Vec::new();
        for d in 1..=31u32 {
            for (k, r) in resources.iter().enumerate() {
                let spike = if d == 24 && k == 7 { 150.0 } else { 0.0 };
                costs.push(cost(d, "search", if k < 8 { "AmazonEC2" } else { "AmazonRDS" }, r, 200.0 + NOISE[(d as usize + k) % 7] + spike));
            }
        }
        let days: Vec<NaiveDate> = (15..=31).map(day).collect();
        let spikes = spikes_on(&costs, &days, &|_| Thresholds::default());
        assert_eq!(spikes.len(), 1, "{spikes:#?}");
        let s = &spikes[0];
        assert_eq!((s.date, s.grain, s.series.as_str()), (day(24), Grain::Resource, "i-07"));
        assert!((s.excess() - 150.0).abs() < 10.0, "{s:?}");
        assert_eq!((s.contributors[0].dimension, s.contributors[0].value.as_str()), ("resource", "i-07"), "the resource first");
        assert!(s.team_actual > 3000.0, "{s:?}");
        // The team's whole day alone does not show it (5% of the day, under the relative floor).
        let whole: Vec<DayCost> = costs.iter().map(|c| DayCost { resource: Dim::from("all"), service: Dim::from("all"), usage_type: Dim::from("all"), ..c.clone() }).collect();
        assert!(spikes_on(&whole, &days, &|_| Thresholds::default()).is_empty());
    }

    #[test]
    fn a_launch_that_is_kept_is_told_on_two_days_and_a_two_day_spike_on_both() {
        let cost = |d: u32, amount: f64| cost(d, "search", "AmazonEC2", "r", amount);
        let noise = NOISE;
        // A launch on the 15th triples the level, and it stays.
        let launch: Vec<DayCost> = (1..=31).map(|d| cost(d, if d >= 15 { 300.0 } else { 100.0 } + noise[d as usize % 7])).collect();
        let days: Vec<NaiveDate> = (1..=31).map(day).collect();
        let told: Vec<NaiveDate> = spikes_on(&launch, &days, &|_| Thresholds::default()).iter().map(|s| s.date).collect();
        assert_eq!(told, vec![day(15), day(16)], "the shift is recognised on its third day");
        // And told once, on that day, as the start of a new level.
        let shifts = detect(&launch, &days, &|_| Thresholds::default(), &BTreeSet::new()).shifts;
        assert_eq!(shifts.iter().map(|s| (s.from, s.confirmed)).collect::<Vec<_>>(), vec![(day(15), day(17))], "{shifts:?}");
        assert!((shifts[0].level - 300.0).abs() < 10.0 && (shifts[0].before - 100.0).abs() < 10.0, "{shifts:?}");
        // The same check run day by day finds the same.
        let daily: Vec<NaiveDate> = days.iter().flat_map(|d| spikes(&launch, *d, &|_| Thresholds::default()).into_iter().map(|s| s.date)).collect();
        assert_eq!(daily, told);
        // A spike of two days is two spikes, and the level after it is measured as before.
        let spike: Vec<DayCost> = (1..=31).map(|d| cost(d, if d == 20 || d == 21 || d == 29 { 400.0 } else { 100.0 } + noise[d as usize % 7])).collect();
        let told: Vec<NaiveDate> = spikes_on(&spike, &days, &|_| Thresholds::default()).iter().map(|s| s.date).collect();
        assert_eq!(told, vec![day(20), day(21), day(29)]);
    }

    #[test]
    fn an_acknowledged_planned_spike_leaves_the_baseline_and_its_repeats_are_marked() {
        let cost = |d: u32, amount: f64| cost(d, "search", "AmazonEC2", "r", amount);
        // A planned load test on the 18th to the 21st at 400 a day, then the usual 100; on the
        // 26th a real spike of 250.
        let series: Vec<DayCost> = (1..=31)
            .map(|d| {
                cost(
                    d,
                    if (18..=21).contains(&d) {
                        400.0
                    } else if d == 26 {
                        250.0
                    } else {
                        100.0
                    } + NOISE[d as usize % 7],
                )
            })
            .collect();
        let days: Vec<NaiveDate> = (1..=31).map(day).collect();
        let t = |_: &Subject| Thresholds::default();
        // Unacknowledged, the third day is a level shift: the baseline restarts at 400 a day
        // and the real spike of the 26th is lost under it.
        let told: Vec<NaiveDate> = spikes_on(&series, &days, &t).iter().map(|s| s.date).collect();
        assert_eq!(told, vec![day(18), day(19)]);
        // Acknowledged as planned on its first day: its next days are its repeats, no level
        // shift is taken, the baseline leaves them out, and the 26th is found.
        let left_out = BTreeSet::from([("search".to_string(), day(18))]);
        let found: Vec<(NaiveDate, Option<NaiveDate>)> = spikes_leaving_out(&series, &days, &t, &left_out).iter().map(|s| (s.date, s.repeat_of)).collect();
        assert_eq!(found, vec![(day(18), None), (day(19), Some(day(18))), (day(20), Some(day(18))), (day(21), Some(day(18))), (day(26), None)]);
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
