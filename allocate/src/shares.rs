//! Shared-resource weights (docs/design.md §4): metric drivers turned into integer weights per team,
//! per billing period and per day, with the text each piece shows for its weight.

use std::collections::HashMap;

use crate::ledger::{AllocateError, Dim, DriverSample};
use crate::rules::{RuleSet, SplitMethod, TeamId};

pub(crate) fn driver_at(rule: &crate::rules::ShareRule) -> String {
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
pub(crate) type WeightTable = HashMap<Scope, HashMap<TeamId, (u128, Dim)>>;

/// Turns driver samples into integer weights per team, per period and (for daily shares) per day.
pub(crate) fn metric_weights(rules: &RuleSet, drivers: &HashMap<String, Vec<DriverSample>>) -> Result<HashMap<String, WeightTable>, AllocateError> {
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
                        let unit = &driver.unit;
                        let text = if n > 1 { format!("mean {} {unit} over {n} samples", format_driver(v / n as f64)) } else { format!("{} {unit}", format_driver(v)) };
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

/// Checks driver samples as the engine will read them (every key maps to a team, every value
/// is a finite number >= 0), without a month of billing data: what `rules check` reports, so a
/// rule set it passes is not rejected by `run` for its drivers.
///
/// A driver that measures nothing over a scope (all zero, or no sample at all) is the error `run`
/// meets when a shared line falls in that scope: reported here, before any month is read.
pub fn check_metric_drivers(rules: &RuleSet, drivers: &HashMap<String, Vec<DriverSample>>) -> Vec<AllocateError> {
    let mut out = Vec::new();
    let mut names: Vec<&String> = drivers.keys().collect();
    names.sort();
    for rule in names {
        let samples = &drivers[rule];
        match metric_weights(rules, &HashMap::from([(rule.clone(), samples.clone())])) {
            Err(e) => out.push(e),
            Ok(tables) => {
                let Some(share) = rules.share.iter().find(|s| &s.name == rule) else { continue };
                let table = tables.get(rule);
                // The scopes the rule splits by: periods, or days with `granularity = "day"`.
                let by_day = matches!(share.granularity, crate::rules::Granularity::Day);
                let mut scopes: Vec<&Scope> = table.map(|t| t.keys().filter(|(_, day)| day.is_some() == by_day).collect()).unwrap_or_default();
                scopes.sort();
                let zero = |scope: &Scope| table.and_then(|t| t.get(scope)).is_none_or(|values| values.values().all(|(w, _)| *w == 0));
                if scopes.is_empty() {
                    out.push(AllocateError::ZeroDriver { rule: rule.clone(), scope: "every period (the driver has no samples)".into(), at: driver_at(share) });
                }
                for scope in scopes.into_iter().filter(|s| zero(s)) {
                    let scope = match scope {
                        (period, Some(day)) if !period.is_empty() => format!("{period}, day {day}"),
                        (period, _) if !period.is_empty() => period.clone(),
                        _ => "the whole file".to_string(),
                    };
                    out.push(AllocateError::ZeroDriver { rule: rule.clone(), scope, at: driver_at(share) });
                }
            }
        }
    }
    out
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
