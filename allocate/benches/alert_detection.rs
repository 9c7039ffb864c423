//! Benchmark: how well the daily spike detection and the month-end forecast do on twelve
//! synthetic months — teams with their own levels, weekly seasonality (quiet weekends on half of
//! them), day-to-day noise, planted spikes of several sizes (in multiples of the series' true
//! MAD, never under $50), and legitimate step changes (a new service launched). Prints recall
//! per spike size, precision, alerts on step days, and the forecast's error at mid-month.
//!
//! ```text
//! cargo bench --workspace --bench alert_detection
//! ```

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Datelike, NaiveDate};
use finops_allocate::alerts::{forecast, spikes_on, DayCost, Thresholds};

/// A small deterministic generator (xorshift), with normal draws by Box-Muller.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.next().max(1e-12), self.next());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

const SIZES: [f64; 4] = [2.0, 3.0, 5.0, 10.0];

struct Team {
    days: BTreeMap<NaiveDate, f64>,
    /// Spike day -> its size in true MADs.
    spikes: BTreeMap<NaiveDate, f64>,
    /// Days of a step change and the week after it.
    steps: BTreeSet<NaiveDate>,
}

fn generate(teams: usize, noise: f64, rng: &mut Rng) -> Vec<Team> {
    let start = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
    (0..teams)
        .map(|t| {
            let mut level = 200.0 + 2800.0 * rng.next();
            let quiet_weekends = t % 2 == 0;
            let mad = 0.6745 * noise * level;
            let mut spikes = BTreeMap::new();
            let mut steps = BTreeSet::new();
            let step_day = (t % 3 == 0).then(|| start + chrono::Duration::days(120 + 40 * t as i64));
            for k in 0..8 {
                let day = start + chrono::Duration::days(35 + k * 40 + (rng.next() * 20.0) as i64);
                let size = SIZES[(k as usize + t) % SIZES.len()];
                if size * mad >= 50.0 && step_day.is_none_or(|s| (day - s).num_days().abs() > 14) {
                    spikes.insert(day, size);
                }
            }
            let mut days = BTreeMap::new();
            for k in 0..365 {
                let day = start + chrono::Duration::days(k);
                if Some(day) == step_day {
                    level *= 1.4; // a new service launched: a lasting step, not a spike
                }
                if step_day.is_some_and(|s| day >= s && (day - s).num_days() < 7) {
                    steps.insert(day);
                }
                let weekend = day.weekday().num_days_from_monday() >= 5;
                let seasonal = if quiet_weekends && weekend { 0.6 } else { 1.0 };
                let mut cost = level * seasonal * (1.0 + noise * rng.normal());
                if let Some(size) = spikes.get(&day) {
                    cost += size * 0.6745 * noise * level;
                }
                days.insert(day, cost.max(0.0));
            }
            Team { days, spikes, steps }
        })
        .collect()
}

fn main() {
    let noise = 0.04;
    let teams = generate(12, noise, &mut Rng(0x5eed_cafe));
    let default = Thresholds::default();
    let sensitive = Thresholds { min_ratio: 0.1, mad_multiple: 4.5, ..default };
    for (name, thresholds) in [("default", default), ("sensitive", sensitive)] {
        evaluate(&teams, name, &thresholds, noise);
    }
    let mut errors = Vec::new();
    for team in &teams {
        // The forecast at mid-month against the month's actual total.
        for month in 2..=12 {
            let mid = NaiveDate::from_ymd_opt(2025, month, 15).unwrap();
            let so_far: BTreeMap<NaiveDate, f64> = team.days.range(..=mid).map(|(d, v)| (*d, *v)).collect();
            let f = forecast(&so_far, mid);
            let actual: f64 = team.days.iter().filter(|(d, _)| d.month() == month).map(|(_, v)| v).sum();
            errors.push((f.expected - actual).abs() / actual);
        }
    }
    let mape = errors.iter().sum::<f64>() / errors.len() as f64 * 100.0;
    println!("forecast at mid-month: MAPE {mape:.2}% over {} team-months", errors.len());
}

fn evaluate(teams: &[Team], name: &str, thresholds: &Thresholds, noise: f64) {
    let mut found: BTreeMap<u64, (usize, usize)> = BTreeMap::new(); // size -> (detected, planted)
    let (mut false_alerts, mut step_alerts, mut true_alerts) = (0, 0, 0);
    for team in teams {
        // The product's detection path (level shifts and each series' own history included): the
        // team's days as cost lines, checked day by day from its fifth week.
        let first = *team.days.keys().next().unwrap();
        let dim = |s: &str| std::sync::Arc::<str>::from(s);
        let lines: Vec<DayCost> =
            team.days.iter().map(|(d, v)| DayCost { date: *d, team: dim("team"), service: dim("service"), account: dim("1"), resource: dim("r"), usage_type: dim("u"), amount: *v }).collect();
        let checked: Vec<NaiveDate> = team.days.range(first + chrono::Duration::days(28)..).map(|(d, _)| *d).collect();
        let alerts: std::collections::BTreeSet<NaiveDate> =
            spikes_on(&lines, &checked, &|_| *thresholds).into_iter().filter(|s| matches!(s.subject, finops_allocate::alerts::Subject::Team(_))).map(|s| s.date).collect();
        for &day in &checked {
            let alerted = alerts.contains(&day);
            if let Some(size) = team.spikes.get(&day) {
                let entry = found.entry(*size as u64).or_default();
                entry.1 += 1;
                if alerted {
                    entry.0 += 1;
                    true_alerts += 1;
                }
            } else if alerted && team.steps.contains(&day) {
                step_alerts += 1;
            } else if alerted {
                false_alerts += 1;
            }
        }
    }
    println!("spike detection, {name} thresholds {thresholds:?}: {} teams x 12 months, daily noise {:.0}%", teams.len(), noise * 100.0);
    for (size, (detected, planted)) in &found {
        println!("  spikes of {size}x the baseline MAD (and >= $50): recall {:.2} ({detected} of {planted})", *detected as f64 / (*planted).max(1) as f64);
    }
    let (at_least_3, planted_3): (usize, usize) = found.iter().filter(|(s, _)| **s >= 3).fold((0, 0), |a, (_, (d, p))| (a.0 + d, a.1 + p));
    println!("  recall on spikes >= 3x MAD: {:.2}", at_least_3 as f64 / planted_3.max(1) as f64);
    println!(
        "  precision {:.2} ({true_alerts} true alerts, {false_alerts} on ordinary days); {step_alerts} alert(s) in the first week of a step change (a new service: a real change)",
        true_alerts as f64 / (true_alerts + false_alerts).max(1) as f64
    );
}
