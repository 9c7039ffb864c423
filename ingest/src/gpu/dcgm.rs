//! GPU usage from NVIDIA DCGM exporter series in Prometheus, over day-bounded windows (module
//! docs of [`super`] say why), each window's samples grouped by pod and GPU. Two ways to the same
//! figures: the raw samples through remote read, summed here (the default where the server offers
//! it), or PromQL instant queries that make the server do three passes over every sample.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use finops_allocate::gpu::{GpuNode, GpuUsage, GpuUsageReport};
use serde::Deserialize;

use super::{days_of, mig_share, parse_duration_ms, GpuUsageSource, RecordKey};
use crate::prometheus::{is_stale, period_bounds, time_before, Labels, MatchOp, PrometheusSource, RawRead};
use crate::{Error, Result};

/// How the DCGM samples are read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadMethod {
    /// Remote read where the server offers it, else PromQL queries (the run says which).
    #[default]
    Auto,
    /// Raw samples through `/api/v1/read` (streamed chunks); an error where the server lacks it.
    RemoteRead,
    /// PromQL instant queries only (Amazon Managed Service for Prometheus, Thanos, a proxy that
    /// passes the query API only).
    Query,
}

/// The unit a utilisation metric is exported in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UtilizationUnit {
    /// 0–100 (`DCGM_FI_DEV_GPU_UTIL`).
    #[default]
    Percent,
    /// 0–1 (`DCGM_FI_PROF_GR_ENGINE_ACTIVE` and the newer profiling metrics).
    Ratio,
}

impl UtilizationUnit {
    fn per_unit(self) -> f64 {
        match self {
            UtilizationUnit::Percent => 100.0,
            UtilizationUnit::Ratio => 1.0,
        }
    }
}

/// Metric and label names of the DCGM exporter and the node labels, as scraped. Defaults are
/// today's common ones (dcgm-exporter with Kubernetes pod mapping, kube-state-metrics).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DcgmConfig {
    /// Utilisation of whole GPUs.
    pub utilization_metric: String,
    pub utilization_unit: UtilizationUnit,
    /// Utilisation of MIG slices (`DCGM_FI_DEV_GPU_UTIL` is not reported on MIG).
    pub mig_utilization_metric: String,
    pub mig_utilization_unit: UtilizationUnit,
    /// The first of these labels with a value names the pod's namespace (`exported_namespace`
    /// first: when Prometheus renames a clashing label, it holds the workload's namespace).
    pub namespace_labels: Vec<String>,
    pub pod_labels: Vec<String>,
    /// A series whose pod name contains one of these is the exporter's own (a scrape target's
    /// labels added without honor_labels), not a workload: its GPU time has no pod.
    pub exporter_pods: Vec<String>,
    pub node_labels: Vec<String>,
    pub model_label: String,
    pub gpu_label: String,
    pub mig_profile_label: String,
    pub mig_instance_label: String,
    /// The exporter's scrape interval: one sample stands for this much time.
    pub step: String,
    /// Query window; a window the server refuses for its sample limit is halved. Windows are cut
    /// at midnight (UTC), so a window over a day is a day: idle time lands on its own day.
    pub window: String,
    /// Window queries in flight at once.
    pub parallel: usize,
    /// Remote read or PromQL queries (`auto`: remote read where the server offers it).
    pub read: ReadMethod,
    /// Node labels (kube-state-metrics): which nodes are which instance type, Spot or not.
    pub node_info_metric: String,
    pub node_info_node_label: String,
    pub instance_type_labels: Vec<String>,
    pub capacity_labels: Vec<String>,
    /// Compute slices per GPU model for MIG profile shares (`3g.40gb` on a 7-slice GPU is 3/7).
    /// Models not listed have 7 (A100, H100, H200); the A30 has 4.
    pub mig_slices: BTreeMap<String, u32>,
}

impl Default for DcgmConfig {
    fn default() -> Self {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        DcgmConfig {
            utilization_metric: "DCGM_FI_DEV_GPU_UTIL".into(),
            utilization_unit: UtilizationUnit::Percent,
            mig_utilization_metric: "DCGM_FI_PROF_GR_ENGINE_ACTIVE".into(),
            mig_utilization_unit: UtilizationUnit::Ratio,
            namespace_labels: strings(&["exported_namespace", "namespace"]),
            pod_labels: strings(&["exported_pod", "pod"]),
            exporter_pods: strings(&["dcgm-exporter"]),
            node_labels: strings(&["Hostname", "hostname"]),
            model_label: "modelName".into(),
            gpu_label: "gpu".into(),
            mig_profile_label: "GPU_I_PROFILE".into(),
            mig_instance_label: "GPU_I_ID".into(),
            step: "30s".into(),
            window: "1d".into(),
            parallel: 4,
            read: ReadMethod::Auto,
            node_info_metric: "kube_node_labels".into(),
            node_info_node_label: "node".into(),
            instance_type_labels: strings(&["label_node_kubernetes_io_instance_type", "label_beta_kubernetes_io_instance_type"]),
            capacity_labels: strings(&["label_karpenter_sh_capacity_type", "label_eks_amazonaws_com_capacity_type"]),
            mig_slices: BTreeMap::from([("NVIDIA A30".to_string(), 4)]),
        }
    }
}

/// DCGM exporter series in Prometheus.
#[derive(Clone)]
pub struct PrometheusGpuUsage {
    pub prometheus: PrometheusSource,
    pub config: DcgmConfig,
}

/// What one query window gave, per series group.
#[derive(Default)]
struct WindowStats {
    /// (namespace, pod, node, model, profile) -> (samples, utilisation sum, idle samples)
    groups: HashMap<RecordKey, (f64, f64, f64)>,
    /// (node, model, profile) -> GPUs (or slices) seen
    gpus: HashMap<(String, String, String), f64>,
    /// Samples read by the window's queries.
    samples_touched: f64,
}

/// One utilisation metric and how to read it: whole GPUs, or MIG slices.
#[derive(Clone)]
struct Family {
    metric: String,
    /// Utilisation per unit of the metric (100 for percent).
    per_unit: f64,
    mig: bool,
    /// The idle threshold in the metric's unit.
    threshold: f64,
    step_ms: i64,
}

/// Figures of a query run, for benchmarks and logs.
#[derive(Clone, Debug, Default)]
pub struct QueryStats {
    /// Requests: PromQL queries or remote reads.
    pub queries: u32,
    pub samples_touched: f64,
    /// How the samples were read, and why when remote read was not used.
    pub method: String,
}

/// (node, model, profile) -> the (GPU, MIG instance) pairs with samples in a window.
type GpusSeen = HashMap<(String, String, String), BTreeSet<(String, String)>>;

/// One series of a remote read as it is summed: its group, its GPU, its window figures and the
/// idle check's step in progress (the step's latest sample so far).
struct RawSeries {
    labels: Labels,
    key: RecordKey,
    gpu: (String, String),
    samples: f64,
    util: f64,
    idle: f64,
    step: Option<(i64, f64)>,
}

impl PrometheusGpuUsage {
    /// The value of the first of `names` a series has (non-empty), by its `label` lookup.
    fn first<'a>(label: &impl Fn(&str) -> Option<&'a str>, names: &[String]) -> String {
        names.iter().find_map(|n| label(n).filter(|v| !v.is_empty())).unwrap_or_default().to_string()
    }

    /// The group a series belongs to, from its labels: (namespace, pod, node, model, profile).
    /// A series of the exporter's own pod has no pod.
    fn record_key<'a>(&self, label: impl Fn(&str) -> Option<&'a str>) -> RecordKey {
        let c = &self.config;
        let first = |names: &[String]| Self::first(&label, names);
        let (mut namespace, mut pod) = (first(&c.namespace_labels), first(&c.pod_labels));
        if c.exporter_pods.iter().any(|p| !p.is_empty() && pod.contains(p.as_str())) {
            (namespace, pod) = (String::new(), String::new());
        }
        (namespace, pod, first(&c.node_labels), label(&c.model_label).unwrap_or_default().to_string(), label(&c.mig_profile_label).unwrap_or_default().to_string())
    }

    /// Every label a group is made of, for `by (...)`.
    fn group_labels(&self) -> Vec<String> {
        let c = &self.config;
        let mut labels: Vec<String> = c.namespace_labels.iter().chain(&c.pod_labels).chain(&c.node_labels).cloned().collect();
        labels.push(c.model_label.clone());
        labels.push(c.mig_profile_label.clone());
        labels
    }

    /// One query for a metric family over one window: sample counts, utilisation sums and idle
    /// sample counts per group, and the GPUs seen per node, each tagged by a `finops_stat` label.
    fn window_query(&self, family: &Family, window_ms: i64) -> String {
        let Family { metric, mig, threshold, step_ms, .. } = family;
        let (mig, threshold, step_ms) = (*mig, *threshold, *step_ms);
        let c = &self.config;
        let profile = &c.mig_profile_label;
        let selector = if mig { format!("{metric}{{{profile}!=\"\"}}") } else { format!("{metric}{{{profile}=\"\"}}") };
        let by = self.group_labels().join(", ");
        let node = c.node_labels.iter().chain([&c.model_label, profile]).cloned().collect::<Vec<_>>().join(", ");
        let w = format!("{window_ms}ms");
        let stat = |q: String, name: &str| format!("label_replace({q}, \"finops_stat\", \"{name}\", \"\", \"\")");
        // Backfilled and stopped series carry no staleness markers, so a plain `X < t` in a
        // subquery would see each series for 5 minutes after its last sample; looking back
        // one step less 1 ms sees exactly the sample of each step.
        let latest = format!("last_over_time({selector}[{}ms])", step_ms - 1);
        [
            stat(format!("sum by ({by}) (count_over_time({selector}[{w}]))"), "samples"),
            stat(format!("sum by ({by}) (sum_over_time({selector}[{w}]))"), "util"),
            stat(format!("sum by ({by}) (count_over_time(({latest} < {threshold})[{w}:{step_ms}ms]))"), "idle"),
            stat(format!("count by ({node}) (count by ({node}, {}, {}) (count_over_time({selector}[{w}])))", c.gpu_label, c.mig_instance_label), "gpus"),
        ]
        .join(" or ")
    }

    /// Runs a window; a window the server refuses for its sample limit is split in two.
    async fn window(&self, family: &Family, start_ms: i64, end_ms: i64, out: &mut WindowStats, stats: &mut QueryStats) -> Result<()> {
        let step_ms = family.step_ms;
        let query = self.window_query(family, end_ms - start_ms);
        let time = time_before(end_ms);
        stats.queries += 1;
        let result = match self.prometheus.instant(&query, &time).await {
            Ok(r) => r,
            Err(Error::Prometheus { message, .. }) if message.contains("too many samples") && end_ms - start_ms > 2 * step_ms => {
                let middle = start_ms + ((end_ms - start_ms) / 2 / step_ms) * step_ms;
                Box::pin(self.window(family, start_ms, middle, out, stats)).await?;
                return Box::pin(self.window(family, middle, end_ms, out, stats)).await;
            }
            Err(e) => return Err(e),
        };
        for (labels, value) in result {
            let key = self.record_key(|name| labels.get(name).map(String::as_str));
            match labels.get("finops_stat").map(String::as_str) {
                Some("gpus") => {
                    let seen = out.gpus.entry((key.2, key.3, key.4)).or_default();
                    *seen = seen.max(value);
                }
                Some(stat) => {
                    let g = out.groups.entry(key).or_default();
                    match stat {
                        "samples" => {
                            g.0 += value;
                            // count, sum and the idle subquery each read the window's samples.
                            out.samples_touched += 3.0 * value;
                        }
                        "util" => g.1 += value,
                        _ => g.2 += value,
                    }
                }
                None => {}
            }
        }
        Ok(())
    }

    /// A window from the raw samples (remote read), summed as the PromQL window sums them:
    /// samples in `[start, end)` count; the idle check at each step `s` of the window (a multiple
    /// of the step) reads the latest sample in `(s - step, s]`, so the read reaches one step back.
    async fn window_raw(&self, family: &Family, start_ms: i64, end_ms: i64, out: &mut WindowStats, stats: &mut QueryStats) -> Result<()> {
        let c = &self.config;
        let step = family.step_ms;
        let profile = if family.mig { MatchOp::NotEqual } else { MatchOp::Equal };
        let matchers = [(MatchOp::Equal, "__name__", family.metric.as_str()), (profile, c.mig_profile_label.as_str(), "")];
        let mut gpus: GpusSeen = HashMap::new();
        let threshold = family.threshold;
        let finish = |series: RawSeries, out: &mut WindowStats, gpus: &mut GpusSeen| {
            let idle = series.idle + f64::from(series.step.is_some_and(|(_, v)| v < threshold));
            if series.samples > 0.0 {
                let (_, _, node, model, profile) = &series.key;
                gpus.entry((node.clone(), model.clone(), profile.clone())).or_default().insert(series.gpu);
            }
            if series.samples > 0.0 || idle > 0.0 {
                out.samples_touched += series.samples;
                let g = out.groups.entry(series.key).or_default();
                g.0 += series.samples;
                g.1 += series.util;
                g.2 += idle;
            }
        };
        let mut current: Option<RawSeries> = None;
        stats.queries += 1;
        let read = self
            .prometheus
            .remote_read(&matchers, start_ms - step + 1, end_ms - 1, |labels, samples| {
                if current.as_ref().is_none_or(|s| &s.labels != labels) {
                    if let Some(done) = current.take() {
                        finish(done, out, &mut gpus);
                    }
                    let label = |name: &str| labels.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
                    let gpu = (label(&c.gpu_label).unwrap_or_default().to_string(), label(&c.mig_instance_label).unwrap_or_default().to_string());
                    current = Some(RawSeries { labels: labels.clone(), key: self.record_key(label), gpu, samples: 0.0, util: 0.0, idle: 0.0, step: None });
                }
                let series = current.as_mut().expect("a series in progress");
                for &(t, v) in samples {
                    if is_stale(v) {
                        continue;
                    }
                    if (start_ms..end_ms).contains(&t) {
                        series.samples += 1.0;
                        series.util += v;
                    }
                    let s = t.div_euclid(step) * step + if t.rem_euclid(step) == 0 { 0 } else { step };
                    if !(start_ms..end_ms).contains(&s) {
                        continue;
                    }
                    match series.step {
                        Some((at, _)) if at == s => series.step = Some((s, v)),
                        Some((_, latest)) => {
                            series.idle += f64::from(latest < threshold);
                            series.step = Some((s, v));
                        }
                        None => series.step = Some((s, v)),
                    }
                }
            })
            .await?;
        if let RawRead::Unsupported(why) = read {
            return Err(Error::Prometheus { at: self.prometheus.url().to_string(), message: format!("remote read stopped working mid-run: {why}") });
        }
        if let Some(done) = current.take() {
            finish(done, out, &mut gpus);
        }
        for (key, seen) in gpus {
            let n = seen.len() as f64;
            let g = out.gpus.entry(key).or_default();
            *g = g.max(n);
        }
        Ok(())
    }

    /// Whether to read raw samples: `read` as configured, and for `auto` whether the server
    /// answers a remote read (a tiny one: the chunks around the period's last millisecond).
    async fn choose_read(&self, metric: &str, end_ms: i64) -> Result<(bool, String)> {
        let at = self.prometheus.url();
        match self.config.read {
            ReadMethod::Query => Ok((false, "PromQL queries ([gpu.prometheus] read = \"query\")".into())),
            method => match self.prometheus.remote_read(&[(MatchOp::Equal, "__name__", metric)], end_ms - 1, end_ms - 1, |_, _| {}).await? {
                RawRead::Done => Ok((true, "remote read (raw samples, summed here)".into())),
                RawRead::Unsupported(why) if method == ReadMethod::Auto => {
                    tracing::warn!("{at}: {why}; reading GPU usage with PromQL queries instead (slower, same figures); set [gpu.prometheus] read = \"query\" to skip the attempt");
                    Ok((false, format!("PromQL queries (remote read unavailable: {why})")))
                }
                RawRead::Unsupported(why) => Err(Error::Prometheus { at: at.to_string(), message: format!("[gpu.prometheus] read = \"remote_read\", but {why}: set read = \"auto\" or \"query\"") }),
            },
        }
    }

    /// Which node is which instance type and capacity, from the node labels over the period.
    async fn nodes(&self, start_ms: i64, end_ms: i64) -> Result<Vec<GpuNode>> {
        let c = &self.config;
        let by: Vec<String> = [c.node_info_node_label.clone()].into_iter().chain(c.instance_type_labels.clone()).chain(c.capacity_labels.clone()).collect();
        let query = format!("max by ({}) (last_over_time({}[{}ms]))", by.join(", "), c.node_info_metric, end_ms - start_ms);
        let time = time_before(end_ms);
        let mut nodes: BTreeMap<String, GpuNode> = BTreeMap::new();
        for (labels, _) in self.prometheus.instant(&query, &time).await? {
            let node = labels.get(&c.node_info_node_label).cloned().unwrap_or_default();
            if node.is_empty() {
                continue;
            }
            let label = |name: &str| labels.get(name).map(String::as_str);
            nodes.insert(node.clone(), GpuNode { node, instance_type: Self::first(&label, &c.instance_type_labels), capacity: Self::first(&label, &c.capacity_labels) });
        }
        Ok(nodes.into_values().collect())
    }

    /// The period's usage and the query figures.
    pub async fn usage_with_stats(&self, period: &str, idle_threshold_pct: f64) -> Result<(GpuUsageReport, QueryStats)> {
        let c = &self.config;
        let bad_config =
            |what: &str, value: &str| Error::Prometheus { at: self.prometheus.url().to_string(), message: format!("[gpu.prometheus] {what} = \"{value}\" is not a duration like 30s, 1m, 1d") };
        let step_ms = parse_duration_ms(&c.step).ok_or_else(|| bad_config("step", &c.step))?;
        let window_ms = parse_duration_ms(&c.window).ok_or_else(|| bad_config("window", &c.window))?.max(step_ms);
        let (start, end) = period_bounds(period)?;
        let (start_ms, end_ms) = (start * 1000, end * 1000);
        let mut stats = QueryStats::default();
        let mut usage: BTreeMap<RecordKey, GpuUsage> = BTreeMap::new();
        let mut gpus: BTreeMap<(String, String, String), f64> = BTreeMap::new();
        let step_hours = step_ms as f64 / 3_600_000.0;
        let families = [(&c.utilization_metric, c.utilization_unit, false), (&c.mig_utilization_metric, c.mig_utilization_unit, true)].map(|(metric, unit, mig)| Family {
            metric: metric.clone(),
            per_unit: unit.per_unit(),
            mig,
            threshold: idle_threshold_pct / 100.0 * unit.per_unit(),
            step_ms,
        });
        let (raw, method) = self.choose_read(&c.utilization_metric, end_ms).await?;
        stats.method = method;
        let mut jobs = Vec::new();
        for family in &families {
            for (window_start, window_end) in windows(start_ms, end_ms, window_ms) {
                jobs.push((family.clone(), window_start, window_end));
            }
        }
        // A few windows in flight at once; results are merged in window order, so the sums (and
        // the report) do not depend on which answer arrived first.
        let mut results: Vec<Option<(WindowStats, QueryStats)>> = (0..jobs.len()).map(|_| None).collect();
        let mut running = tokio::task::JoinSet::new();
        let mut next = 0;
        while next < jobs.len() || !running.is_empty() {
            while next < jobs.len() && running.len() < c.parallel.max(1) {
                let (family, window_start, window_end) = jobs[next].clone();
                let me = self.clone();
                let index = next;
                running.spawn(async move {
                    let (mut w, mut s) = (WindowStats::default(), QueryStats::default());
                    let read = if raw { me.window_raw(&family, window_start, window_end, &mut w, &mut s).await } else { me.window(&family, window_start, window_end, &mut w, &mut s).await };
                    read.map(|()| (index, w, s))
                });
                next += 1;
            }
            let Some(done) = running.join_next().await else { break };
            // Dropping `running` on an error aborts the windows still in flight.
            let (index, w, s) = done.map_err(|e| Error::Prometheus { at: self.prometheus.url().to_string(), message: format!("a query task failed: {e}") })??;
            results[index] = Some((w, s));
        }
        let mut days: BTreeMap<(String, String, String), (f64, f64, f64)> = BTreeMap::new();
        for ((family, window_start, _), result) in jobs.iter().zip(results) {
            let (w, s) = result.expect("every window ran");
            // Windows never cross midnight (UTC): a window's idle time is its start day's.
            let date = chrono::DateTime::from_timestamp_millis(*window_start).map(|t| t.format("%Y-%m-%d").to_string()).unwrap_or_default();
            for ((namespace, _, node, model, profile), (samples, util, idle)) in w.groups.iter().filter(|((ns, ..), _)| !ns.is_empty()) {
                let share = mig_share(profile, model, &c.mig_slices);
                let d = days.entry((date.clone(), node.clone(), namespace.clone())).or_insert((0.0, 0.0, 0.0));
                d.0 += samples * step_hours * share;
                d.1 += util / family.per_unit * step_hours * share;
                d.2 += idle * step_hours * share;
            }
            stats.queries += s.queries;
            stats.samples_touched += w.samples_touched;
            for ((namespace, pod, node, model, profile), (samples, util, idle)) in w.groups {
                let share = mig_share(&profile, &model, &c.mig_slices);
                let u = usage.entry((node.clone(), model.clone(), profile.clone(), namespace.clone(), pod.clone())).or_insert_with(|| GpuUsage {
                    node,
                    gpu_model: model,
                    mig_profile: profile,
                    namespace,
                    pod,
                    ..GpuUsage::default()
                });
                u.gpu_hours += samples * step_hours * share;
                u.busy_hours += util / family.per_unit * step_hours * share;
                u.idle_hours += idle * step_hours * share;
            }
            for (key, seen) in w.gpus {
                let g = gpus.entry(key).or_default();
                *g = g.max(seen);
            }
        }
        let period_hours = (end - start) as f64 / 3600.0;
        let mut capacity_hours: BTreeMap<String, f64> = BTreeMap::new();
        for ((node, model, profile), n) in &gpus {
            *capacity_hours.entry(node.clone()).or_default() += n * mig_share(profile, model, &c.mig_slices) * period_hours;
        }
        let expected_hours = capacity_hours.values().sum();
        let usage: Vec<GpuUsage> = usage.into_values().collect();
        let observed_hours = usage.iter().map(|u| u.gpu_hours).sum();
        let nodes = if usage.is_empty() { Vec::new() } else { self.nodes(start_ms, end_ms).await? };
        stats.queries += u32::from(!usage.is_empty());
        let source = format!("{}, read with {}", self.prometheus.url(), stats.method);
        let report = GpuUsageReport { period: period.into(), source, usage, nodes, expected_hours, capacity_hours, observed_hours, request_based: false, days: days_of(days) };
        Ok((report, stats))
    }
}

/// The query windows of `[start_ms, end_ms)`: `window_ms` long, never across midnight (UTC), so
/// each window's usage belongs to one day (the daily idle alerts and `gpu.csv`'s days).
fn windows(start_ms: i64, end_ms: i64, window_ms: i64) -> Vec<(i64, i64)> {
    const DAY_MS: i64 = 86_400_000;
    let mut out = Vec::new();
    let mut start = start_ms;
    while start < end_ms {
        let midnight = (start.div_euclid(DAY_MS) + 1) * DAY_MS;
        let end = (start + window_ms).min(midnight).min(end_ms);
        out.push((start, end));
        start = end;
    }
    out
}

impl GpuUsageSource for PrometheusGpuUsage {
    async fn usage(&self, period: &str, idle_threshold_pct: f64) -> Result<Option<GpuUsageReport>> {
        Ok(Some(self.usage_with_stats(period, idle_threshold_pct).await?.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Regression: a 7-day window put a week's idle hours on its first day.
    #[test]
    fn query_windows_never_cross_midnight() {
        let (day, hour) = (86_400_000i64, 3_600_000i64);
        let start = 1_759_276_800_000; // 2025-10-01T00:00:00Z
        let week = windows(start, start + 3 * day, 7 * day);
        assert_eq!(week, vec![(start, start + day), (start + day, start + 2 * day), (start + 2 * day, start + 3 * day)]);
        assert_eq!(windows(start, start + day, 6 * hour).len(), 4);
        // A period that begins mid-day (a restated tail) still breaks at midnight.
        let late = windows(start + 20 * hour, start + day + 2 * hour, day);
        assert_eq!(late, vec![(start + 20 * hour, start + day), (start + day, start + day + 2 * hour)]);
    }

    #[test]
    fn evaluation_is_one_millisecond_before_the_window_end() {
        assert_eq!(crate::prometheus::time_before(1_761_955_200_000), "1761955199.999");
        assert_eq!(crate::prometheus::time_before(1_761_955_200_500), "1761955200.499");
    }
}
