//! GPU usage for GPU chargeback (docs/design.md §5), from NVIDIA DCGM exporter series in Prometheus or
//! from recorded per-hour aggregates (the committed fixtures' default).
//!
//! A GPU-hour is *time* a GPU (or a MIG slice, by its profile's share of the GPU) was held by a
//! pod. Prometheus counts samples, so time is samples × the scrape step. Usage is read a day (the
//! window) at a time, over exactly that window: samples in `[start, end)`, so a sample on the
//! boundary never counts in two windows (or months). Raw samples come through remote read where
//! the server offers it; else instant queries evaluated 1 ms before the window's end (range
//! selectors include both ends), and a window the server refuses for `query.max-samples` is
//! halved until it fits.
//!
//! Two sources, one module each: [`dcgm`] (the DCGM exporter's series in Prometheus) and
//! [`recorded`] (per-hour aggregates in files).

use std::collections::BTreeMap;
use std::future::Future;

use finops_allocate::gpu::GpuUsageReport;

use crate::Result;

/// Five labels naming a usage record: (namespace, pod, node, model, MIG profile) in a window's
/// groups, (node, model, profile, namespace, pod) in the period's sorted usage.
type RecordKey = (String, String, String, String, String);

mod dcgm;
mod recorded;

pub use dcgm::{DcgmConfig, PrometheusGpuUsage, QueryStats, ReadMethod, UtilizationUnit};
pub use recorded::{read_recorded, RecordedGpuUsage, RECORDED_HEADER};

/// Where a billing period's GPU usage comes from.
pub trait GpuUsageSource {
    /// The period's usage; `None` when the source has nothing recorded for it. Assigned time
    /// sampled under `idle_threshold_pct` utilisation is counted as idle.
    fn usage(&self, period: &str, idle_threshold_pct: f64) -> impl Future<Output = Result<Option<GpuUsageReport>>> + Send;
}

/// `30s`, `1m`, `1h`, `1d`, `500ms` as milliseconds.
pub fn parse_duration_ms(text: &str) -> Option<i64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = t.split_at(split);
    let n: i64 = n.parse().ok()?;
    let ms: i64 = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    // A duration too long to count in milliseconds is not a duration, not a panic.
    n.checked_mul(ms).filter(|_| n > 0)
}

#[cfg(test)]
mod duration_tests {
    use super::parse_duration_ms;

    #[test]
    fn durations_that_overflow_are_rejected_not_a_panic() {
        assert_eq!(parse_duration_ms("30s"), Some(30_000));
        assert_eq!(parse_duration_ms("99999999999999999d"), None);
        assert_eq!(parse_duration_ms("0s"), None);
    }
}

/// A MIG profile's share of its GPU: `1g.10gb` on a 7-slice GPU is 1/7; a whole GPU is 1.
pub fn mig_share(profile: &str, model: &str, slices: &BTreeMap<String, u32>) -> f64 {
    let profile = profile.trim();
    if profile.is_empty() {
        return 1.0;
    }
    let compute: u32 = profile.chars().take_while(|c| c.is_ascii_digit()).collect::<String>().parse().unwrap_or(1);
    let total = slices.iter().find(|(m, _)| model.contains(m.as_str())).map_or(7, |(_, n)| *n).max(1);
    (compute as f64 / total as f64).min(1.0)
}

/// Per-day sums as the report carries them.
fn days_of(days: BTreeMap<(String, String, String), (f64, f64, f64)>) -> Vec<finops_allocate::gpu::GpuDay> {
    days.into_iter().map(|((date, node, namespace), (gpu_hours, busy_hours, idle_hours))| finops_allocate::gpu::GpuDay { date, node, namespace, gpu_hours, busy_hours, idle_hours }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("30s"), Some(30_000));
        assert_eq!(parse_duration_ms("1m"), Some(60_000));
        assert_eq!(parse_duration_ms("1d"), Some(86_400_000));
        assert_eq!(parse_duration_ms("500ms"), Some(500));
        assert_eq!(parse_duration_ms("0s"), None);
        assert_eq!(parse_duration_ms("1w"), None);
        assert_eq!(parse_duration_ms("s"), None);
    }

    #[test]
    fn mig_shares() {
        let slices = DcgmConfig::default().mig_slices;
        assert_eq!(mig_share("", "NVIDIA A100-SXM4-80GB", &slices), 1.0);
        assert_eq!(mig_share("1g.10gb", "NVIDIA A100-SXM4-80GB", &slices), 1.0 / 7.0);
        assert_eq!(mig_share("3g.40gb", "NVIDIA H100 80GB HBM3", &slices), 3.0 / 7.0);
        assert_eq!(mig_share("2g.12gb", "NVIDIA A30", &slices), 0.5);
        assert_eq!(mig_share("7g.80gb", "NVIDIA A100-SXM4-80GB", &slices), 1.0);
    }
}
