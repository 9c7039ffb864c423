//! The month by dimension (docs/design.md §6): `summary-<dimension>.csv`, one row per value with
//! its total and each team's part — a team × value pivot — and a `total` row. Every figure is its
//! exact amount rounded down or up; each value's teams add up to its total, each team's column to
//! its total in `summary.csv`, and the values to the month.

use std::collections::BTreeMap;

use finops_allocate::dimensions::DimensionTable;
use finops_allocate::{Allocation, Cents, RuleSet};

use crate::csv::CsvBuilder;

/// The file a dimension's summary is published as.
pub fn file_name(dimension: &str) -> String {
    format!("summary-{dimension}.csv")
}

/// GPU-hours held per value of a dimension that maps namespaces (pods' time; time no pod held
/// is nobody's); `None` for a dimension without `namespaces`.
pub fn gpu_hours_by_value(rules: &RuleSet, allocation: &Allocation, d: usize) -> Option<BTreeMap<String, f64>> {
    let dimension = &rules.dimensions[d];
    if dimension.namespaces.is_empty() {
        return None;
    }
    let mut hours: BTreeMap<String, f64> = BTreeMap::new();
    for pod in allocation.gpu.iter().filter(|p| p.charged).flat_map(|p| &p.pods) {
        let value = dimension.value_of_namespace(&pod.namespace).unwrap_or(&dimension.unassigned);
        *hours.entry(value.to_string()).or_default() += pod.gpu_hours;
    }
    Some(hours)
}

/// `summary-<dimension>.csv`: `<dimension>, total, [gpu_hours,] <each team>, <unallocated>`.
pub fn summary_csv(rules: &RuleSet, table: &DimensionTable, gpu_hours: Option<&BTreeMap<String, f64>>) -> Vec<u8> {
    let teams: Vec<&str> = table.teams.iter().map(|t| rules.team_or_unallocated(*t)).collect();
    let mut header: Vec<&str> = vec![&table.name, "total"];
    if gpu_hours.is_some() {
        header.push("gpu_hours");
    }
    header.extend(teams.iter().copied());
    let mut csv = CsvBuilder::new(&header);
    let mut row = |label: &str, total: Cents, hours: Option<f64>, cells: &[Cents]| {
        let mut out = vec![label.to_string(), total.to_string()];
        if gpu_hours.is_some() {
            out.push(format!("{:.1}", hours.unwrap_or_default()));
        }
        out.extend(cells.iter().map(|c| c.to_string()));
        csv.row(out.iter().map(String::as_str));
    };
    for ((value, total), cells) in table.values.iter().zip(&table.totals).zip(&table.cells) {
        row(value, *total, gpu_hours.map(|h| h.get(value).copied().unwrap_or_default()), cells);
    }
    let team_totals: Vec<Cents> = (0..table.teams.len()).map(|t| table.cells.iter().map(|row| row[t]).sum()).collect();
    row("total", table.totals.iter().copied().sum(), gpu_hours.map(|h| h.values().sum()), &team_totals);
    csv.into_bytes()
}
