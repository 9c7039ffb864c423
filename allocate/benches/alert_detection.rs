//! Benchmark: how well the daily spike detection and the month-end forecast do on six synthetic
//! months shaped like a real bill — teams of about fifteen resources across a few services, each
//! resource with its own level and lognormal day-to-day noise, quiet weekends on half the teams, a
//! batch job that runs on some days only; spikes planted on **one resource** each, sized 2, 3, 5
//! and 10× the team's daily MAD (some on the first and last days of a month); a new service
//! launched and kept on four teams; a team that starts in month three. It runs the product's own
//! detection (`alerts::spikes_on`, `alerts::new_spend`) day by day and prints, per threshold set:
//! recall per spike size (spikes of at least $50), precision, the alerts in the two weeks after a
//! launch, the new team's alerts in its first four weeks, and the share of true alerts whose
//! first-named resource is the planted one. Then the forecast's error at mid-month.
//!
//! ```text
//! cargo bench --workspace --bench alert_detection
//! ```

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Datelike, NaiveDate};
use finops_allocate::alerts::{forecast, new_spend, spikes_on, DayCost, Thresholds};

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
const SERVICES: [&str; 4] = ["AmazonEC2", "AmazonRDS", "AmazonS3", "AmazonElastiCache"];

fn start() -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, 1, 1).unwrap()
}

const DAYS: i64 = 181; // January to June

struct Planted {
    team: String,
    resource: String,
    /// In the team's daily MADs.
    size: f64,
    amount: f64,
}

struct Data {
    lines: Vec<DayCost>,
    /// (team, day) -> the spike planted there.
    spikes: BTreeMap<(String, NaiveDate), Planted>,
    /// (team, launch day).
    launches: Vec<(String, NaiveDate)>,
    new_team: (String, NaiveDate),
    /// Each team's daily totals, for the forecast.
    totals: BTreeMap<String, BTreeMap<NaiveDate, f64>>,
}

struct Resource {
    name: String,
    service: &'static str,
    usage_type: String,
    level: f64,
    sigma: f64,
    /// Share of days it runs (1.0: every day).
    duty: f64,
    from: i64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn generate(teams: usize, rng: &mut Rng) -> Data {
    let dim = finops_allocate::engine::Dim::new;
    let mut data = Data { lines: Vec::new(), spikes: BTreeMap::new(), launches: Vec::new(), new_team: (String::new(), start()), totals: BTreeMap::new() };
    for t in 0..=teams {
        let team = format!("team-{t:02}");
        // The last team is new: it starts in month three.
        let team_from = if t == teams { 59 + (rng.next() * 10.0) as i64 } else { 0 };
        if t == teams {
            data.new_team = (team.clone(), start() + chrono::Duration::days(team_from));
        }
        let team_level = 1000.0 + 4000.0 * rng.next();
        let quiet_weekends = t % 2 == 0;
        let mut resources: Vec<Resource> = (0..15)
            .map(|r| {
                let service = SERVICES[r % SERVICES.len()];
                Resource {
                    name: format!("{team}-{}-{r:02}", &service[6..].to_lowercase()),
                    service,
                    usage_type: format!("USE1-{}-{}", &service[6..], r % 2),
                    level: team_level / 15.0 * (0.5 * rng.normal()).exp(),
                    sigma: 0.05 + 0.1 * rng.next(),
                    duty: if r == 14 { 0.5 } else { 1.0 },
                    from: team_from,
                }
            })
            .collect();
        // A new service launched and kept (+40% of the team's level) on every third team.
        if t % 3 == 0 && t < teams {
            let day = 75 + 20 * (t as i64 / 3) + (rng.next() * 10.0) as i64;
            data.launches.push((team.clone(), start() + chrono::Duration::days(day)));
            for r in 0..2 {
                resources.push(Resource {
                    name: format!("{team}-sagemaker-{r:02}"),
                    service: "AmazonSageMaker",
                    usage_type: "USE1-ml.g5.xlarge".into(),
                    level: team_level * 0.2,
                    sigma: 0.08,
                    duty: 1.0,
                    from: day,
                });
            }
        }
        // Each resource's days without spikes; the team's noiseless days for its true MAD.
        let mut costs: Vec<Vec<f64>> = vec![vec![0.0; DAYS as usize]; resources.len()];
        let mut noise = Vec::new();
        for k in team_from..DAYS {
            let day = start() + chrono::Duration::days(k);
            let seasonal = if quiet_weekends && day.weekday().num_days_from_monday() >= 5 { 0.6 } else { 1.0 };
            let (mut total, mut expected) = (0.0, 0.0);
            for (i, r) in resources.iter().enumerate().filter(|(_, r)| k >= r.from) {
                let runs = r.duty >= 1.0 || rng.next() < r.duty;
                let cost = if runs { r.level * seasonal * (r.sigma * rng.normal() - r.sigma * r.sigma / 2.0).exp() } else { 0.0 };
                costs[i][k as usize] = cost;
                total += cost;
                expected += r.level * seasonal * r.duty;
            }
            noise.push(total - expected);
        }
        let center = median(noise.clone());
        let team_mad = median(noise.iter().map(|n| (n - center).abs()).collect());
        // Eight spikes, each on one always-on resource, 2-10× the team's daily MAD, at least ten
        // days apart, none in the four weeks after a launch; some on a month's first or last days.
        let launch = data.launches.iter().find(|(l, _)| *l == team).map(|(_, d)| (*d - start()).num_days());
        let mut days_taken: Vec<i64> = Vec::new();
        for s in 0..8 {
            let first_checked = team_from + 35;
            let day = if s % 3 == 0 {
                // A month boundary: the 1st, 2nd, or the last day of a month.
                let month = 2 + (rng.next() * 4.0) as u32;
                let first = NaiveDate::from_ymd_opt(2025, month, 1).unwrap();
                let pick = [0i64, 1, -1][(rng.next() * 3.0) as usize % 3];
                (first - start()).num_days() + pick
            } else {
                first_checked + (rng.next() * (DAYS - first_checked) as f64) as i64
            };
            if day < first_checked || day >= DAYS || days_taken.iter().any(|d| (d - day).abs() < 10) || launch.is_some_and(|l| (0..28).contains(&(day - l))) {
                continue;
            }
            days_taken.push(day);
            let size = SIZES[(s + t) % SIZES.len()];
            let r = (rng.next() * 14.0) as usize; // never the batch job (index 14)
            let amount = size * team_mad;
            costs[r][day as usize] += amount;
            data.spikes.insert((team.clone(), start() + chrono::Duration::days(day)), Planted { team: team.clone(), resource: resources[r].name.clone(), size, amount });
        }
        let totals = data.totals.entry(team.clone()).or_default();
        for (i, r) in resources.iter().enumerate() {
            let (team, service, resource, usage_type, account) = (dim(&team), dim(r.service), dim(&r.name), dim(&r.usage_type), dim(&format!("1111{t:08}")));
            for (k, cost) in costs[i].iter().enumerate().filter(|(_, c)| **c > 0.0) {
                let date = start() + chrono::Duration::days(k as i64);
                *totals.entry(date).or_default() += cost;
                data.lines.push(DayCost { date, team: team.clone(), service: service.clone(), account: account.clone(), resource: resource.clone(), usage_type: usage_type.clone(), amount: *cost });
            }
        }
    }
    data
}

fn main() {
    // Another data set of the same shape: FINOPS_BENCH_SEED=<number>.
    let seed = std::env::var("FINOPS_BENCH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_cafe);
    let data = generate(12, &mut Rng(seed));
    let planted_50 = data.spikes.values().filter(|p| p.amount >= 50.0).count();
    println!(
        "detection data: {} teams of ~15 resources (one new in month 3), {} days, {} cost lines; {} spikes planted on one resource each ({planted_50} of at least $50); {} launches kept",
        data.totals.len(),
        DAYS,
        data.lines.len(),
        data.spikes.len(),
        data.launches.len()
    );
    let default = Thresholds::default();
    evaluate(&data, "default", &default, true);
    println!("the defaults against others (recall on >= 3x MAD and >= $50 / precision / alerts in the two weeks after a launch):");
    for sigmas in [4.0, 4.5, 5.0, 5.5, 6.0] {
        for min_ratio in [0.0, 0.1, 0.2] {
            evaluate(&data, "", &Thresholds { sigmas, min_ratio, ..default }, false);
        }
    }
    let mut errors = Vec::new();
    for days in data.totals.values() {
        // The forecast at mid-month against the month's actual total, for months the team spent all of.
        let first = *days.keys().next().unwrap();
        for month in 2..=6 {
            let mid = NaiveDate::from_ymd_opt(2025, month, 15).unwrap();
            if first > NaiveDate::from_ymd_opt(2025, month, 1).unwrap() - chrono::Duration::days(28) {
                continue;
            }
            let so_far: BTreeMap<NaiveDate, f64> = days.range(..=mid).map(|(d, v)| (*d, *v)).collect();
            let f = forecast(&so_far, mid);
            let actual: f64 = days.iter().filter(|(d, _)| d.month() == month).map(|(_, v)| v).sum();
            errors.push((f.expected - actual).abs() / actual);
        }
    }
    let mape = errors.iter().sum::<f64>() / errors.len() as f64 * 100.0;
    println!("forecast at mid-month: MAPE {mape:.2}% over {} team-months", errors.len());
}

fn evaluate(data: &Data, name: &str, thresholds: &Thresholds, detail: bool) {
    let checked: Vec<NaiveDate> = (28..DAYS).map(|k| start() + chrono::Duration::days(k)).collect();
    let began = std::time::Instant::now();
    let spikes = spikes_on(&data.lines, &checked, &|_| *thresholds);
    let took = began.elapsed();
    let mut notices: Vec<(String, NaiveDate)> = Vec::new();
    if detail {
        for day in &checked {
            notices.extend(new_spend(&data.lines, *day, &|_| thresholds.min_excess).into_iter().map(|n| (n.team, *day)));
        }
    }
    let launch_window = |team: &str, day: NaiveDate| data.launches.iter().any(|(t, l)| t == team && (0..14).contains(&(day - *l).num_days()));
    let new_team_window = |team: &str, day: NaiveDate| *team == *data.new_team.0 && (0..28).contains(&(day - data.new_team.1).num_days());
    let mut found: BTreeMap<u64, (usize, usize)> = BTreeMap::new(); // size -> (detected, planted)
    let (mut true_alerts, mut false_alerts, mut launch_alerts, mut new_team_alerts, mut named_right) = (0, 0, 0, 0, 0);
    let mut small = (0, 0);
    let alerted: BTreeSet<(String, NaiveDate)> = spikes.iter().map(|s| (s.subject.name().to_string(), s.date)).collect();
    for p in data.spikes.iter().filter(|((_, d), _)| checked.contains(d)) {
        let ((team, day), planted) = p;
        let hit = alerted.contains(&(team.clone(), *day));
        if planted.amount < 50.0 {
            small.1 += 1;
            small.0 += hit as usize;
            continue;
        }
        let e = found.entry(planted.size as u64).or_default();
        e.1 += 1;
        e.0 += hit as usize;
    }
    for s in &spikes {
        let team = s.subject.name();
        if let Some(p) = data.spikes.get(&(team.to_string(), s.date)) {
            true_alerts += 1;
            let first_resource = s.contributors.iter().find(|c| c.dimension == "resource").map(|c| c.value.as_str());
            named_right += (first_resource == Some(p.resource.as_str()) && p.team == team) as usize;
        } else if launch_window(team, s.date) {
            launch_alerts += 1;
        } else if new_team_window(team, s.date) {
            new_team_alerts += 1;
        } else {
            false_alerts += 1;
        }
    }
    let recall_3: (usize, usize) = found.iter().filter(|(s, _)| **s >= 3).fold((0, 0), |a, (_, (d, p))| (a.0 + d, a.1 + p));
    let precision = true_alerts as f64 / (true_alerts + false_alerts).max(1) as f64;
    if !detail {
        println!(
            "  sigmas {:.1}, min_ratio {:.1}: recall {:.2}, precision {:.2} ({false_alerts} false), launch alerts {launch_alerts}",
            thresholds.sigmas,
            thresholds.min_ratio,
            recall_3.0 as f64 / recall_3.1.max(1) as f64,
            precision
        );
        return;
    }
    println!("spike detection, {name} thresholds {thresholds:?} ({:.0} ms for {} days):", took.as_secs_f64() * 1e3, checked.len());
    for (size, (detected, planted)) in &found {
        println!("  spikes of {size}x the team's daily MAD (and >= $50): recall {:.2} ({detected} of {planted})", *detected as f64 / (*planted).max(1) as f64);
    }
    println!("  recall on spikes >= 3x MAD and >= $50: {:.2} ({} of {})", recall_3.0 as f64 / recall_3.1.max(1) as f64, recall_3.0, recall_3.1);
    println!("  (spikes under $50, not to be alerted: {} of {} alerted)", small.0, small.1);
    println!("  precision {precision:.2} ({true_alerts} true alerts, {false_alerts} on ordinary days)");
    let launch_notices = notices.iter().filter(|(t, d)| launch_window(t, *d)).count();
    println!(
        "  launches: {launch_alerts} spike alert(s) and {launch_notices} new-spend notice(s) in the two weeks after {} launches ({:.1} alerts per launch)",
        data.launches.len(),
        (launch_alerts + launch_notices) as f64 / data.launches.len() as f64
    );
    let new_team_notices = notices.iter().filter(|(t, d)| new_team_window(t, *d)).count();
    println!("  the new team: {new_team_alerts} spike alert(s) and {new_team_notices} new-spend notice(s) in its first four weeks");
    println!("  the planted resource named first in {:.2} of true alerts ({named_right} of {true_alerts})", named_right as f64 / true_alerts.max(1) as f64);
}
