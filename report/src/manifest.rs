//! `manifest.json`: what a month was made from and what it holds. Written last; readers trust a
//! month only when its manifest exists. No clock time in it, so identical inputs give identical
//! bytes.

use std::collections::BTreeMap;

use finops_allocate::{Cents, CostBasis, Money};
use serde::Serialize;

use crate::publish::OutputFile;
pub use crate::publish::{sha256_hex, FileRecord};

#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct Manifest {
    pub billing_period: String,
    /// `complete`: every file below was written in full.
    pub status: String,
    pub generator: String,
    pub source: SourceRecord,
    pub inputs: Vec<InputRecord>,
    pub rules: RulesRecord,
    pub line_items: u64,
    /// The last usage day with billing data in the month.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_through: Option<String>,
    /// Per cost basis: the exact total and its rounding to cents.
    pub totals: BTreeMap<String, TotalRecord>,
    /// The rules' cost basis as allocated: the sum of every team row, including unallocated.
    pub allocated: String,
    pub unallocated: String,
    /// Share of the allocated total that reached a team.
    pub coverage: String,
    /// Account -> its cost that reached a team, its whole cost (as printed) and the share: what
    /// `coverage.csv`'s trend reads of the months before (absent in months of older finops).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub coverage_by_account: BTreeMap<String, CoverageRecord>,
    /// Savings Plans and Reserved Instances of the month (absent without any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commitments: Option<crate::commitments::CommitmentsRecord>,
    /// How `services.csv` (the AWS bill) and `summary.csv` (the teams) reconcile, in one line.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bill_to_teams: String,
    /// Team -> total as in summary.csv, and the exact amount it rounds.
    pub teams: BTreeMap<String, TotalRecord>,
    /// Dimension -> value -> total as in `summary-<dimension>.csv`, and the exact amount it
    /// rounds (rules with `[dimensions.*]` only).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dimensions: BTreeMap<String, BTreeMap<String, TotalRecord>>,
    /// The month `previous_month` and `change_pct` compare against, and where its figures came from.
    pub previous_month: PreviousMonthRecord,
    /// What the run decided that changes the numbers or what they are compared with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Cost Explorer: the billable calls the run made, and the export's total against Cost
    /// Explorer's (present when the run called it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_explorer: Option<CostExplorerRecord>,
    /// The Athena query that aggregated the month (present when Athena did).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub athena: Option<AthenaRecord>,
    /// GPU chargeback: usage source, coverage and pools (present when the rules have `[gpu]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu: Option<crate::gpu::GpuRecord>,
    pub files: Vec<FileRecord>,
    /// The report's trend as this run drew it (the months before this one), so `finops report`
    /// rebuilds the same PDF from the published month alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trend: Vec<TrendRecord>,
}

/// One account's coverage in a month.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct CoverageRecord {
    pub allocated: String,
    pub total: String,
    /// 0..=1, four decimals.
    pub coverage: String,
}

/// One month of the report's trend: its team totals (as `summary.csv` prints them, in its
/// order), GPU-hours and busy GPU-hours (shortest exact decimal text), and where it came from.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct TrendRecord {
    pub month: String,
    pub source: String,
    pub teams: Vec<(String, String)>,
    pub gpu_hours: String,
    pub busy_hours: String,
    /// The month's bill at the allocated basis, as printed (absent in trends of older finops).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bill: Option<String>,
    /// Whether GPU cost was charged by measured usage (absent without `[gpu]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_measured: Option<bool>,
}

/// The query that aggregated a month on Athena: its id, the SHA-256 of its exact SQL, what it
/// scanned and what that cost ($5 per TB), and where its result object is.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct AthenaRecord {
    pub query_id: String,
    pub sql_sha256: String,
    pub bytes_scanned: u64,
    pub dollars: String,
    pub engine_ms: i64,
    pub result: String,
}

/// What the run asked of Cost Explorer, and what it said.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct CostExplorerRecord {
    /// GetCostAndUsage requests (AWS charges $0.01 each).
    pub calls: u32,
    pub dollars: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reconciliation: Option<ReconciliationRecord>,
}

/// The export's month total beside Cost Explorer's, for the same metric.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct ReconciliationRecord {
    pub metric: String,
    /// Exact amounts, and the difference (export minus Cost Explorer).
    pub source_total: String,
    pub cost_explorer_total: String,
    pub difference: String,
    /// |difference| / Cost Explorer's total, in percent.
    pub difference_pct: String,
    pub tolerance_pct: String,
    pub within_tolerance: bool,
}

impl ReconciliationRecord {
    pub fn new(metric: &str, r: &finops_allocate::cost_frame::Reconciliation, tolerance: f64) -> ReconciliationRecord {
        ReconciliationRecord {
            metric: metric.to_string(),
            source_total: r.source.to_string(),
            cost_explorer_total: r.reference.to_string(),
            difference: r.difference().to_string(),
            difference_pct: format!("{:.4}", r.relative() * 100.0),
            tolerance_pct: format!("{}", tolerance * 100.0),
            within_tolerance: r.agrees(tolerance),
        }
    }

    /// One line for a person: both totals in cents and how far apart they are.
    pub fn summary(&self) -> String {
        let cents = |s: &str| s.parse::<Money>().map(|m| m.round_to_cents().to_string()).unwrap_or_else(|_| s.to_string());
        format!(
            "export {} vs Cost Explorer {} ({}): differ by {} ({}%), {} {}%",
            cents(&self.source_total),
            cents(&self.cost_explorer_total),
            self.metric,
            cents(&self.difference),
            self.difference_pct,
            if self.within_tolerance { "within" } else { "more than" },
            self.tolerance_pct
        )
    }
}

#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct PreviousMonthRecord {
    pub month: String,
    /// `source`: allocated from the billing source by the same rules (one aggregated pass);
    /// `absent`: the source has no such month; `failed`: it could not be read (see `warning`).
    pub figures: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    /// Its bill at the allocated basis, as printed: page one compares the bill with the bill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bill: Option<String>,
    /// Why its team figures are not compared with this month's, when they are not
    /// (`finops_allocate::gpu::not_comparable`): `previous_month` and `change_pct` are then empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_comparable: Option<String>,
}

#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct RulesRecord {
    pub file: String,
    pub sha256: String,
    pub cost_basis: String,
    pub currency: String,
    /// Every rule in precedence order, as the report lists them: (name, method).
    pub in_force: Vec<RuleRecord>,
}

#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct RuleRecord {
    pub name: String,
    pub method: String,
}

/// The rule set's rules in the order they are applied, named as the report shows them.
/// `gpu_requested`: GPU pools were weighed by split cost allocation data, not the basis.
pub fn rules_in_force(rules: &finops_allocate::RuleSet, gpu_requested: bool) -> Vec<RuleRecord> {
    let mut out = Vec::new();
    if let Some(gpu) = &rules.gpu {
        let idle = match gpu.idle {
            finops_allocate::gpu::IdlePolicy::Share => "share".to_string(),
            finops_allocate::gpu::IdlePolicy::Separate => "separate".to_string(),
            finops_allocate::gpu::IdlePolicy::Team(t) => format!("to {}", rules.team(t).name),
        };
        let method = if gpu_requested { format!("gpu: {} (split cost allocation data)", finops_allocate::gpu::basis_name(gpu, true)) } else { format!("gpu: basis {}, idle {idle}", gpu.basis.name()) };
        out.push(RuleRecord { name: "[gpu] GPU capacity by GPU-hours".into(), method });
    }
    for a in rules.assign.iter().filter(|a| !a.fallback) {
        out.push(RuleRecord { name: a.name.clone(), method: format!("assign to {}", rules.team(a.team).name) });
    }
    for s in &rules.share {
        let method = match s.method {
            finops_allocate::rules::SplitMethod::Proportional(finops_allocate::rules::ProportionalTo::Cloud) => "proportional to cloud cost".to_string(),
            finops_allocate::rules::SplitMethod::Proportional(finops_allocate::rules::ProportionalTo::All) => "proportional to all cost".to_string(),
            _ => s.method.name().to_string(),
        };
        out.push(RuleRecord { name: s.name.clone(), method: format!("share: {method}") });
    }
    out.push(RuleRecord { name: format!("team tags: {}", rules.team_tags.join(", ")), method: "tag".into() });
    for a in rules.assign.iter().filter(|a| a.fallback) {
        out.push(RuleRecord { name: a.name.clone(), method: format!("fallback to {}", rules.team(a.team).name) });
    }
    // Each dimension: where its values come from, in the order they are tried.
    for d in &rules.dimensions {
        let mut from: Vec<String> = d.assign.iter().filter(|r| !r.fallback).map(|r| format!("rule '{}' ({})", r.name, r.value)).collect();
        if !d.tags.is_empty() {
            from.push(format!("tags {}", d.tags.join(", ")));
        }
        from.extend(d.assign.iter().filter(|r| r.fallback).map(|r| format!("fallback '{}' ({})", r.name, r.value)));
        if !d.namespaces.is_empty() {
            from.push(format!("GPU time by {} namespace pattern(s)", d.namespaces.len()));
        }
        out.push(RuleRecord { name: format!("[dimensions.{}]", d.name), method: format!("{}; else {}", from.join(", then "), d.unassigned) });
    }
    out
}

#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct SourceRecord {
    pub location: String,
    pub format: String,
    pub manifest: Option<String>,
}

#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct InputRecord {
    pub key: String,
    pub bytes: u64,
    pub sha256: String,
    pub rows: u64,
}

#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct TotalRecord {
    pub exact: String,
    pub rounded: String,
}

/// What a reader needs of a published manifest: the files it points to (any other field is
/// left as is, so manifests of other finops versions read too).
#[derive(Clone, Debug, serde::Deserialize)]
pub struct PublishedFiles {
    pub files: Vec<FileRecord>,
    #[serde(default)]
    pub teams: BTreeMap<String, TotalRecord>,
}

impl PublishedFiles {
    pub fn parse(bytes: &[u8]) -> std::result::Result<PublishedFiles, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("not a finops manifest ({e}): restore it, or remove the month's folder and run the month again"))
    }

    pub fn file(&self, name: &str) -> Option<&FileRecord> {
        self.files.iter().find(|f| f.name == name)
    }
}

/// Per cost basis, the exact total and its printed figure: rounded to the nearest cent, except
/// the allocated basis, which prints what the allocation's controlled rounding gave the bill (so
/// it equals the sum of `services.csv`'s column).
pub fn totals_record(totals: &BTreeMap<CostBasis, Money>, allocated: (CostBasis, Cents)) -> BTreeMap<String, TotalRecord> {
    totals
        .iter()
        .map(|(basis, amount)| {
            let rounded = if *basis == allocated.0 { allocated.1 } else { amount.round_to_cents() };
            (basis.name().to_string(), TotalRecord { exact: amount.to_string(), rounded: rounded.to_string() })
        })
        .collect()
}

pub fn file_records(files: &[OutputFile]) -> Vec<FileRecord> {
    files.iter().map(FileRecord::of).collect()
}

impl Manifest {
    /// A published manifest, read back (`finops report` rebuilds from it).
    pub fn parse(bytes: &[u8]) -> std::result::Result<Manifest, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("not a manifest this finops reads ({e}): re-run the month to publish it again"))
    }

    pub fn to_file(&self) -> OutputFile {
        let mut bytes = serde_json::to_vec_pretty(self).expect("manifest serialises");
        bytes.push(b'\n');
        OutputFile { name: "manifest.json".into(), bytes }
    }
}
