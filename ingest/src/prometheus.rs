//! Prometheus as a source of usage drivers (and, later, GPU usage): instant queries evaluated at
//! the end of a billing period over exactly that period, with bounded retries.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{Datelike, NaiveDate};
use finops_allocate::DriverSample;
use prometheus_http_query::Client;

use crate::{Error, Result};

/// A Prometheus server's HTTP API.
#[derive(Clone)]
pub struct PrometheusSource {
    client: Client,
    url: String,
    /// Attempts per query (network errors and 5xx are retried; a bad query is not).
    pub attempts: u32,
    pub backoff: Duration,
}

/// `[start, end)` of a `YYYY-MM` billing period, as Unix seconds (UTC).
pub fn period_bounds(period: &str) -> Result<(i64, i64)> {
    crate::check_month(period)?;
    let (year, month): (i32, u32) = (period[..4].parse().unwrap_or(1970), period[5..].parse().unwrap_or(1));
    let start = NaiveDate::from_ymd_opt(year, month, 1).ok_or_else(|| Error::BadMonth(period.into()))?;
    let next = if start.month() == 12 { NaiveDate::from_ymd_opt(year + 1, 1, 1) } else { NaiveDate::from_ymd_opt(year, month + 1, 1) }
        .ok_or_else(|| Error::BadMonth(period.into()))?;
    let seconds = |d: NaiveDate| d.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp()).unwrap_or(0);
    Ok((seconds(start), seconds(next)))
}

/// The evaluation time for a window ending at `end_ms` (Unix milliseconds): 1 ms before its end.
/// Range selectors include both ends, so evaluating at the end itself would count a sample on
/// the boundary in this window and the next (or this month and the next).
pub fn time_before(end_ms: i64) -> String {
    let t = end_ms - 1;
    format!("{}.{:03}", t.div_euclid(1000), t.rem_euclid(1000))
}

impl PrometheusSource {
    pub fn new(url: &str) -> Result<PrometheusSource> {
        let client = Client::try_from(url).map_err(|e| Error::Prometheus { at: url.to_string(), message: format!("not a usable URL: {e}") })?;
        Ok(PrometheusSource { client, url: url.to_string(), attempts: 4, backoff: Duration::from_millis(500) })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Evaluates `query` at `time` (Unix seconds, may carry milliseconds) and returns each
    /// series' labels and value.
    pub async fn instant(&self, query: &str, time: &str) -> Result<Vec<(HashMap<String, String>, f64)>> {
        let mut last = String::new();
        for attempt in 0..self.attempts {
            if attempt > 0 {
                tokio::time::sleep(self.backoff * 2u32.pow(attempt - 1)).await;
            }
            match self.client.query(query).query("time", time).get().await {
                Ok(result) => {
                    let prometheus_http_query::response::Data::Vector(vector) = result.into_inner().0 else {
                        return Err(Error::Prometheus {
                            at: self.url.clone(),
                            message: format!("`{query}` did not return an instant vector"),
                        });
                    };
                    return Ok(vector.into_iter().map(|v| {
                        let (labels, sample) = v.into_inner();
                        (labels, sample.value())
                    }).collect());
                }
                // Overloaded or timed out: worth another try.
                Err(prometheus_http_query::Error::Prometheus(e)) if e.is_timeout() || e.is_unavailable() || e.is_internal() => {
                    last = e.to_string();
                }
                // The server understood and refused (bad PromQL, limits): retrying cannot help.
                Err(prometheus_http_query::Error::Prometheus(e)) => {
                    return Err(Error::Prometheus { at: self.url.clone(), message: format!("`{query}` failed: {e}") })
                }
                Err(e) => last = crate::error_chain(&e),
            }
        }
        Err(Error::Prometheus {
            at: self.url.clone(),
            message: format!("no answer after {} attempts: {last}. Check the URL and that Prometheus is running", self.attempts),
        })
    }

    /// A metric driver for one billing period: the query averaged over the whole period (or, if
    /// it mentions `$__range`, the query as written with the period's length substituted),
    /// evaluated at the period's end. One sample per series, keyed by `label`.
    pub async fn driver(&self, query: &str, label: &str, period: &str) -> Result<Vec<DriverSample>> {
        let (start, end) = period_bounds(period)?;
        let samples = self.window(query, label, start, end, None).await?;
        if samples.is_empty() {
            return Err(Error::Prometheus { at: self.url.clone(), message: format!("`{query}` returned no series for {period}") });
        }
        Ok(samples)
    }

    /// The same, one value per UTC day of the period (for `granularity = "day"`). Days without
    /// data are simply absent; the engine then uses the period's weights for them.
    pub async fn daily_driver(&self, query: &str, label: &str, period: &str) -> Result<Vec<DriverSample>> {
        let (start, end) = period_bounds(period)?;
        let mut samples = Vec::new();
        for day_start in (start..end).step_by(86_400) {
            let date = chrono::DateTime::from_timestamp(day_start, 0).map(|d| d.format("%Y-%m-%d").to_string());
            samples.extend(self.window(query, label, day_start, day_start + 86_400, date).await?);
        }
        if samples.is_empty() {
            return Err(Error::Prometheus { at: self.url.clone(), message: format!("`{query}` returned no series for any day of {period}") });
        }
        Ok(samples)
    }

    /// The query averaged over `[start, end)`, one sample per series keyed by `label`.
    async fn window(&self, query: &str, label: &str, start: i64, end: i64, date: Option<String>) -> Result<Vec<DriverSample>> {
        let range = format!("{}s", end - start);
        let promql = if query.contains("$__range") {
            query.replace("$__range", &range)
        } else {
            format!("avg_over_time(({query})[{range}:1h])")
        };
        let time = time_before(end * 1000);
        self.instant(&promql, &time)
            .await?
            .into_iter()
            .map(|(labels, value)| {
                let key = labels.get(label).cloned().ok_or_else(|| Error::Prometheus {
                    at: self.url.clone(),
                    message: format!("a series of `{promql}` has no `{label}` label ({labels:?}): aggregate with `sum by ({label})`"),
                })?;
                Ok(DriverSample { date: date.clone(), key, value })
            })
            .collect()
    }
}
