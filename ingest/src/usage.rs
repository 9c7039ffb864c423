//! Usage drivers for metric shares (table sizes, Redis key counts, Kafka partition bytes): from a
//! CSV file (`date`, `team` or `key`, `value`) or from a Prometheus instant query over the period.

use std::collections::HashMap;

use finops_allocate::rules::{DriverSource, RuleSet};
use finops_allocate::DriverSample;

use crate::{Error, Result};

/// Reads every metric driver the rule set names, keyed by share rule name, for one period.
/// `prometheus` answers the Prometheus drivers (`None` when no server is configured).
pub async fn load_drivers(rules: &RuleSet, period: &str, prometheus: Option<&crate::prometheus::PrometheusSource>) -> Result<HashMap<String, Vec<DriverSample>>> {
    let mut out = HashMap::new();
    for (share, driver) in rules.metric_shares() {
        let rule = share.name.as_str();
        let daily = share.granularity == finops_allocate::rules::Granularity::Day;
        let samples = match &driver.source {
            DriverSource::File { path, at } => read_driver_file(path, &at.to_string())?.into_iter().filter(|s| s.date.as_deref().is_none_or(|d| d.starts_with(period))).collect(),
            DriverSource::Prometheus { query, label, at } => {
                let Some(source) = prometheus else {
                    return Err(Error::Prometheus { at: at.to_string(), message: format!("share `{rule}` reads Prometheus: set [prometheus] url in the config or pass --prometheus-url") });
                };
                let samples = if daily { source.daily_driver(query, label, period).await } else { source.driver(query, label, period).await };
                samples.map_err(|e| match e {
                    Error::Prometheus { at: url, message } => Error::Prometheus { at: at.to_string(), message: format!("{url}: {message}") },
                    other => other,
                })?
            }
        };
        out.insert(rule.to_string(), samples);
    }
    Ok(out)
}

/// A driver CSV: header `date,team,value` or `date,key,value` (`date` may be empty for a
/// whole-period value). Errors name the file, the line and the rules position that refers to it.
pub fn read_driver_file(path: &std::path::Path, at: &str) -> Result<Vec<DriverSample>> {
    let bad = |message: String| Error::Driver { at: at.to_string(), file: path.display().to_string(), message };
    let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut lines = text.lines().enumerate();
    let (_, header) = lines.next().ok_or_else(|| bad("the file is empty: expected a header `date,team,value`".into()))?;
    let header: Vec<String> = header.split(',').map(|h| h.trim().to_ascii_lowercase()).collect();
    let find = |names: &[&str]| header.iter().position(|h| names.contains(&h.as_str()));
    let (Some(date), Some(key), Some(value)) = (find(&["date"]), find(&["team", "key"]), find(&["value"])) else {
        return Err(bad(format!("header is `{}`: expected columns date, team (or key), value", header.join(","))));
    };
    let mut samples = Vec::new();
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        let cell = |c: usize| cells.get(c).copied().unwrap_or("");
        let number: f64 = cell(value).parse().map_err(|_| bad(format!("line {}: value `{}` is not a number", i + 1, cell(value))))?;
        if !number.is_finite() || number < 0.0 {
            return Err(bad(format!("line {}: value `{}` must be a finite number >= 0", i + 1, cell(value))));
        }
        let day = cell(date);
        if !day.is_empty() && chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").is_err() {
            return Err(bad(format!("line {}: date `{day}` is not YYYY-MM-DD", i + 1)));
        }
        if cell(key).is_empty() {
            return Err(bad(format!("line {}: the team/key cell is empty", i + 1)));
        }
        samples.push(DriverSample { date: (!day.is_empty()).then(|| day.to_string()), key: cell(key).to_string(), value: number });
    }
    Ok(samples)
}
