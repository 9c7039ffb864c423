//! GPU usage from recorded per-hour aggregates (the committed fixtures' default, or a recording
//! job's output).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use finops_allocate::gpu::{GpuNode, GpuUsage, GpuUsageReport};

use super::{days_of, GpuUsageSource, RecordKey};
use crate::prometheus::period_bounds;
use crate::{Error, Result};

/// Per-hour aggregates in `<dir>/<YYYY-MM>.csv.gz` (or `.csv`), as written by `gen-fixtures gpu` (or by a
/// recording job): one row per hour and (node, GPU model, MIG profile, namespace, pod).
pub struct RecordedGpuUsage {
    pub dir: PathBuf,
}

/// The recorded file's columns, in order.
pub const RECORDED_HEADER: &str = "hour,node,instance_type,capacity_type,node_gpus,gpu_model,mig_profile,namespace,pod,gpu_hours,busy_hours,idle_hours,idle_threshold_pct";

impl GpuUsageSource for RecordedGpuUsage {
    async fn usage(&self, period: &str, idle_threshold_pct: f64) -> Result<Option<GpuUsageReport>> {
        if !self.dir.is_dir() {
            return Err(Error::GpuUsage { file: self.dir.display().to_string(), message: "is not a folder: point [gpu] recorded (or --gpu-usage) at the folder of YYYY-MM.csv.gz files".into() });
        }
        let candidates = [self.dir.join(format!("{period}.csv.gz")), self.dir.join(format!("{period}.csv"))];
        match candidates.into_iter().find(|p| p.exists()) {
            Some(path) => read_recorded(&path, period, idle_threshold_pct).map(Some),
            None => Ok(None),
        }
    }
}

/// Reads and sums one recorded month. Errors name the file and line.
pub fn read_recorded(path: &Path, period: &str, idle_threshold_pct: f64) -> Result<GpuUsageReport> {
    let bad = |line: usize, message: String| Error::GpuUsage { file: path.display().to_string(), message: format!("line {line}: {message}") };
    let io = |source| Error::Io { path: path.to_path_buf(), source };
    let bytes = std::fs::read(path).map_err(io)?;
    let text = if path.extension().is_some_and(|e| e == "gz") {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(bytes.as_slice()), &mut text).map_err(io)?;
        text
    } else {
        String::from_utf8(bytes).map_err(|e| bad(0, format!("not UTF-8: {e}")))?
    };
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, header)) if header.trim() == RECORDED_HEADER => {}
        other => return Err(bad(1, format!("header is `{}`, expected `{RECORDED_HEADER}`", other.map_or("", |(_, h)| h)))),
    }
    let (start, end) = period_bounds(period)?;
    let mut usage: BTreeMap<RecordKey, GpuUsage> = BTreeMap::new();
    let mut nodes: BTreeMap<String, (GpuNode, f64)> = BTreeMap::new();
    let mut observed = 0.0;
    let mut days: BTreeMap<(String, String, String), (f64, f64, f64)> = BTreeMap::new();
    for (i, line) in lines {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        if cells.len() != 13 {
            return Err(bad(n, format!("{} cells, expected 13 ({RECORDED_HEADER})", cells.len())));
        }
        let hour = chrono::DateTime::parse_from_rfc3339(cells[0]).map_err(|_| bad(n, format!("hour `{}` is not an RFC 3339 time", cells[0])))?;
        if !(start..end).contains(&hour.timestamp()) {
            return Err(bad(n, format!("hour {} is outside {period}", cells[0])));
        }
        let number = |c: usize, name: &str| -> Result<f64> {
            let v: f64 = cells[c].parse().map_err(|_| bad(n, format!("{name} `{}` is not a number", cells[c])))?;
            if v.is_finite() && v >= 0.0 {
                Ok(v)
            } else {
                Err(bad(n, format!("{name} `{}` must be a finite number >= 0", cells[c])))
            }
        };
        let (node_gpus, gpu_hours, busy, idle, threshold) = (number(4, "node_gpus")?, number(9, "gpu_hours")?, number(10, "busy_hours")?, number(11, "idle_hours")?, number(12, "idle_threshold_pct")?);
        if (threshold - idle_threshold_pct).abs() > 1e-9 {
            return Err(bad(
                n,
                format!("idle hours were recorded at {threshold}% utilisation, but the rules' [gpu] idle_threshold is {idle_threshold_pct}%: re-record, or set idle_threshold = {threshold}"),
            ));
        }
        if busy > gpu_hours + 1e-9 || idle > gpu_hours + 1e-9 {
            return Err(bad(n, "busy_hours and idle_hours cannot exceed gpu_hours".into()));
        }
        if cells[1].is_empty() || cells[5].is_empty() {
            return Err(bad(n, "node and gpu_model must not be empty".into()));
        }
        nodes.entry(cells[1].to_string()).or_insert_with(|| (GpuNode { node: cells[1].into(), instance_type: cells[2].into(), capacity: cells[3].into() }, node_gpus));
        let key = (cells[1].to_string(), cells[5].to_string(), cells[6].to_string(), cells[7].to_string(), cells[8].to_string());
        let u = usage.entry(key).or_insert_with(|| GpuUsage {
            node: cells[1].into(),
            gpu_model: cells[5].into(),
            mig_profile: cells[6].into(),
            namespace: cells[7].into(),
            pod: cells[8].into(),
            ..GpuUsage::default()
        });
        u.gpu_hours += gpu_hours;
        u.busy_hours += busy;
        u.idle_hours += idle;
        observed += gpu_hours;
        if !cells[7].is_empty() {
            // The hour's UTC day, whatever offset the file wrote it with (the billing data's days
            // are UTC).
            let date = hour.with_timezone(&chrono::Utc).format("%Y-%m-%d").to_string();
            let d = days.entry((date, cells[1].to_string(), cells[7].to_string())).or_insert((0.0, 0.0, 0.0));
            d.0 += gpu_hours;
            d.1 += busy;
            d.2 += idle;
        }
    }
    let period_hours = (end - start) as f64 / 3600.0;
    Ok(GpuUsageReport {
        period: period.into(),
        source: path.display().to_string(),
        usage: usage.into_values().collect(),
        expected_hours: nodes.values().map(|(_, gpus)| gpus * period_hours).sum(),
        capacity_hours: nodes.iter().map(|(name, (_, gpus))| (name.clone(), gpus * period_hours)).collect(),
        nodes: nodes.into_values().map(|(n, _)| n).collect(),
        observed_hours: observed,
        days: days_of(days),
        request_based: false,
    })
}
