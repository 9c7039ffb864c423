//! `report.pdf`, the monthly executive report (docs/design.md §6): page one the month at a glance
//! (KPIs, the largest movers, the spend trend by team), then top teams and services, GPU figures,
//! and the tables with the rules in force and where every figure came from.
//!
//! The report reads only what the month published — `summary.csv`, `services.csv` and the
//! manifest's facts — and earlier months' `summary.csv` for the trend, so every number in it is a
//! number of the CSVs, and `finops report` can rebuild it without re-allocating. It is a pure
//! function of those inputs: fonts are named here, dates come from the month, and the trailer
//! `/ID` is a hash of the content, so the same inputs give the same bytes in any process.

mod canvas;
mod charts;

use std::collections::BTreeMap;

use finops_allocate::Cents;
use printpdf::{FontId, PdfDocument, PdfFont, PdfPage, PdfSaveOptions};
use sha2::Digest;

use crate::csv::read_rows;
use canvas::{Align, Fonts, Page, Rgb8, DOWN, INK, MARGIN, MUTED, PAGE_HEIGHT, PAGE_WIDTH, PANEL, RULE, UP};
use charts::{bars, percent_line, stacked_columns, Bar, Series};

/// Label language and number style (`[report] locale`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Locale {
    #[default]
    En,
    Ko,
}

/// What the month's manifest says about it, as the report shows it.
#[derive(Clone, Debug, Default)]
pub struct MonthFacts {
    pub month: String,
    pub cost_basis: String,
    pub currency: String,
    pub source: String,
    pub line_items: u64,
    pub input_files: usize,
    /// Share of the allocated total that reached a team, 0..=1.
    pub coverage: f64,
    /// GPU usage coverage, 0..=1, when GPU usage was read.
    pub gpu_coverage: Option<f64>,
    /// Where GPU usage came from, or why there was none.
    pub gpu_source: Option<String>,
    /// The last usage day with billing data (CUR is restated for days after the month ends).
    pub data_through: Option<String>,
    /// The export's total against Cost Explorer's, when the run reconciled them.
    pub reconciliation: Option<String>,
    /// The rules in force: (name, method).
    pub rules: Vec<(String, String)>,
    pub warnings: Vec<String>,
    pub generator: String,
    /// Whether GPU cost was charged by measured usage (`None` without `[gpu]`).
    pub gpu_measured: Option<bool>,
    /// The month before, as compared: its bill, and why its team figures do not compare, if not.
    pub previous: Option<PreviousFigures>,
}

/// The month before this one, as the comparison uses it: the bill with the bill always; team
/// figures only when `not_comparable` is `None`.
#[derive(Clone, Debug, Default)]
pub struct PreviousFigures {
    pub month: String,
    pub bill: Cents,
    pub not_comparable: Option<String>,
}

/// One team's row of `summary.csv`, with its figures as printed.
#[derive(Clone, Debug, Default)]
pub struct TeamFigures {
    pub team: String,
    pub direct: Cents,
    pub shared: Cents,
    pub gpu: Cents,
    pub total: Cents,
    pub previous: Option<Cents>,
    pub change_pct: String,
    pub gpu_hours: f64,
    pub gpu_utilization_pct: f64,
    pub idle_hours: f64,
    pub idle_cost: Cents,
    pub spot: Cents,
}

/// An earlier month's team totals and GPU hours for the trend, and where they came from.
#[derive(Clone, Debug, Default)]
pub struct HistoryMonth {
    pub month: String,
    pub teams: Vec<(String, Cents)>,
    pub gpu_hours: f64,
    pub busy_hours: f64,
    /// `published` (its summary.csv under the output root) or `computed from the source`.
    pub source: String,
    /// Its bill at the allocated basis, when known.
    pub bill: Option<Cents>,
    /// Whether GPU cost was charged by measured usage (`None` without `[gpu]`, or not recorded).
    pub gpu_measured: Option<bool>,
}

impl HistoryMonth {
    /// The month as the manifest records the trend.
    pub fn record(&self) -> crate::manifest::TrendRecord {
        crate::manifest::TrendRecord {
            month: self.month.clone(),
            source: self.source.clone(),
            teams: self.teams.iter().map(|(t, c)| (t.clone(), c.to_string())).collect(),
            gpu_hours: self.gpu_hours.to_string(),
            busy_hours: self.busy_hours.to_string(),
            bill: self.bill.map(|c| c.to_string()),
            gpu_measured: self.gpu_measured,
        }
    }

    /// The month back from the manifest's record (`{}` of an f64 reads back to the same f64).
    pub fn from_record(record: &crate::manifest::TrendRecord) -> Result<HistoryMonth, String> {
        let hours = |t: &str| t.parse::<f64>().map_err(|_| format!("trend {}: `{t}` is not a number of hours", record.month));
        Ok(HistoryMonth {
            month: record.month.clone(),
            teams: record.teams.iter().map(|(t, c)| Ok((t.clone(), cents(c)?))).collect::<Result<_, String>>()?,
            gpu_hours: hours(&record.gpu_hours)?,
            busy_hours: hours(&record.busy_hours)?,
            source: record.source.clone(),
            bill: record.bill.as_deref().map(cents).transpose()?,
            gpu_measured: record.gpu_measured,
        })
    }
}

/// The precision the spike labels imply, month by month and over all: the share of labelled
/// spikes that were real (planned or expected), not `wrong`.
pub fn label_precision(labels: &[LabelledMonth]) -> String {
    let (labelled, wrong) = labels.iter().fold((0, 0), |a, m| (a.0 + m.labelled, a.1 + m.wrong));
    let months: Vec<String> = labels.iter().map(|m| format!("{} {} labelled, {} wrong", m.month, m.labelled, m.wrong)).collect();
    format!("precision {:.0}% ({} of {labelled} labelled spikes real); {}", (labelled - wrong) as f64 / labelled.max(1) as f64 * 100.0, labelled - wrong, months.join("; "))
}

/// A spike of the month, as `alerts.json` records it.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct SpikeRecord {
    pub date: String,
    /// `team` or `service`.
    pub subject: String,
    pub name: String,
    pub actual: String,
    pub expected: String,
    pub contributors: Vec<String>,
    /// What people said of it (`finops alerts ack`): `planned`, `expected`, `wrong`, or that it
    /// repeats an acknowledged spike.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// One month's labelled spikes, for the precision the labels imply.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LabelledMonth {
    pub month: String,
    pub labelled: usize,
    /// Of them, labelled `wrong` (no spike the team would call one).
    pub wrong: usize,
}

/// A namespace's idle GPU alerts of the month.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct IdleRecord {
    pub namespace: String,
    pub team: String,
    /// Days it held more idle GPU-hours than allowed.
    pub days: usize,
    pub idle_gpu_hours: String,
    pub idle_cost: String,
}

/// A budgeted team's month.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct BudgetRecord {
    pub team: String,
    pub budget: String,
    pub actual: String,
}

/// The month's alerts, for the report (`alerts.json`'s `spikes`, `idle_gpu`, `budgets`).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct ReportAlerts {
    pub spikes: Vec<SpikeRecord>,
    pub idle_gpu: Vec<IdleRecord>,
    pub budgets: Vec<BudgetRecord>,
    /// The labelled spikes of every month so far (the alerts' state), for the data page.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<LabelledMonth>,
}

/// Everything the report shows.
#[derive(Clone, Debug, Default)]
pub struct ReportData {
    pub facts: MonthFacts,
    /// `summary.csv`'s rows, the unallocated bucket last.
    pub teams: Vec<TeamFigures>,
    /// The allocated basis per service (summed over accounts and periods), from `services.csv`.
    pub services: Vec<(String, Cents)>,
    /// Earlier months, oldest first.
    pub history: Vec<HistoryMonth>,
    /// Every team of the rule set, in its order: colours follow it, so a team keeps its colour
    /// on every page and in every month.
    pub palette_order: Vec<String>,
    pub locale: Locale,
    /// The month's spikes, idle GPU alerts and budgets (absent for a month published without).
    pub alerts: Option<ReportAlerts>,
    /// Idle GPU time at full price, whole: from `gpu.csv` (absent without `[gpu]`).
    pub idle: Option<IdleGpu>,
    /// The month by each dimension of the rules, from `summary-<dimension>.csv`.
    pub dimensions: Vec<DimensionFigures>,
    /// Untagged cost and coverage per account, from `untagged.csv` and `coverage.csv` (absent
    /// for a month published without them).
    pub untagged: Option<UntaggedFigures>,
    /// Savings Plans and Reserved Instances, from the manifest's record (absent without any).
    pub commitments: Option<crate::commitments::CommitmentsRecord>,
    /// Each team's GPU charge under DCGM's measured split and AWS's requested one, from the
    /// manifest's GPU record (empty unless the month has both).
    pub gpu_splits: Vec<crate::gpu::GpuSplitRecord>,
}

/// The report's untagged-cost page: the largest unallocated resources with what to fix, and
/// each account's coverage over the months.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UntaggedFigures {
    /// `(resource or service, account, cost, advice)`, largest first.
    pub rows: Vec<(String, String, Cents, String)>,
    /// The months of the coverage trend, oldest first.
    pub months: Vec<String>,
    /// `(account, coverage per month as printed)`, lowest coverage first.
    pub accounts: Vec<(String, Vec<String>)>,
}

/// Reads `untagged.csv` and `coverage.csv` as this program wrote them.
pub fn read_untagged(untagged: &str, coverage: &str) -> Result<UntaggedFigures, String> {
    let strip = |id: &str| crate::csv::id_of(id).to_string();
    let rows = crate::csv::read_rows(untagged);
    let header = rows.first().ok_or("untagged.csv is empty")?;
    let at = |name: &str| column(header, name, "untagged.csv");
    let (account, service, resource, cost, advice) = (at("account")?, at("service")?, at("resource")?, at("cost")?, at("advice")?);
    let mut out = UntaggedFigures::default();
    for r in &rows[1..] {
        let what = if r[resource].is_empty() { r[service].clone() } else { format!("{} ({})", r[resource], r[service]) };
        out.rows.push((what, strip(&r[account]), cents(&r[cost])?, r[advice].clone()));
    }
    let rows = crate::csv::read_rows(coverage);
    let header = rows.first().ok_or("coverage.csv is empty")?;
    out.months = header.iter().filter_map(|h| h.strip_suffix("_pct")).map(str::to_string).collect();
    for r in &rows[1..] {
        out.accounts.push((strip(&r[0]), r[1..=out.months.len()].to_vec()));
    }
    Ok(out)
}

/// Idle GPU time of the month at full price, in two named parts that add up to the pool rows of
/// `gpu.csv`: the idle time of pods (GPUs held under the idle threshold, the teams' rows) and
/// the GPUs no pod used (no pod on them, or on-prem capacity the exporter did not report).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IdleGpu {
    pub pods_hours: f64,
    pub pods_cost: Cents,
    pub no_pod_hours: f64,
    pub no_pod_cost: Cents,
}

impl IdleGpu {
    pub fn cost(&self) -> Cents {
        Cents(self.pods_cost.0 + self.no_pod_cost.0)
    }

    pub fn hours(&self) -> f64 {
        self.pods_hours + self.no_pod_hours
    }
}

/// `gpu.csv`'s idle time, whole: its pool rows' idle, and the part of it its team rows hold; the
/// rest is GPUs no pod used. Per pool by subtraction, so the parts add up to the pool rows.
pub fn read_gpu_idle(text: &str) -> Result<IdleGpu, String> {
    let rows = read_rows(text);
    let header = rows.first().ok_or("gpu.csv is empty")?;
    let c = |name: &str| column(header, name, "gpu.csv");
    let (team, hours, cost) = (c("team")?, c("idle_gpu_hours")?, c("idle_cost")?);
    let mut out = IdleGpu::default();
    for r in rows[1..].iter().filter(|r| r.len() == header.len()) {
        // A pool with no usage (`(not measured)`) has no idle figures.
        let (h, c) = (r[hours].parse::<f64>().unwrap_or(0.0), if r[cost].is_empty() { Cents(0) } else { cents(&r[cost])? });
        if r[team] == "(pool)" {
            out.no_pod_hours += h;
            out.no_pod_cost.0 += c.0;
        } else {
            out.pods_hours += h;
            out.pods_cost.0 += c.0;
        }
    }
    // The pool rows hold all of it; what the teams hold is the pods' part.
    out.no_pod_hours -= out.pods_hours;
    out.no_pod_cost.0 -= out.pods_cost.0;
    Ok(out)
}

/// An amount recorded as text (`alerts.json`'s `627.32`) as the report prints amounts, with
/// thousands separators; text that is not an amount is shown as it is.
fn amount_text(text: &str) -> String {
    cents(text).map(grouped).unwrap_or_else(|_| text.to_string())
}

/// An amount as the CSVs print it (`-1234.5`, `12.34`), in cents.
pub fn cents(text: &str) -> Result<Cents, String> {
    let t = text.trim();
    let negative = t.starts_with('-');
    let (int, frac) = t.trim_start_matches('-').split_once('.').unwrap_or((t.trim_start_matches('-'), "0"));
    let frac = format!("{frac:0<2}");
    let value = int.parse::<i64>().map_err(|_| format!("`{text}` is not an amount"))? * 100 + frac[..2].parse::<i64>().map_err(|_| format!("`{text}` is not an amount"))?;
    Ok(Cents(if negative { -value } else { value }))
}

fn column(header: &[String], name: &str, file: &str) -> Result<usize, String> {
    header.iter().position(|h| h == name).ok_or_else(|| format!("{file}: no `{name}` column"))
}

/// One value of a dimension as the report shows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ValueFigures {
    pub value: String,
    pub total: Cents,
    pub gpu_hours: Option<f64>,
    /// Each team's part, in the file's column order.
    pub teams: Vec<(String, Cents)>,
}

/// A dimension as the report shows it, from its published `summary-<dimension>.csv`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DimensionFigures {
    pub name: String,
    pub values: Vec<ValueFigures>,
}

/// Reads a published `summary-<dimension>.csv` back (the `total` row left out).
pub fn read_dimension_summary(text: &str) -> Result<DimensionFigures, String> {
    let rows = read_rows(text);
    let header = rows.first().ok_or("a dimension summary is empty")?;
    let name = header.first().cloned().unwrap_or_default();
    let teams_from = if header.get(2).is_some_and(|h| h == "gpu_hours") { 3 } else { 2 };
    let mut values = Vec::new();
    for row in rows.iter().skip(1).filter(|r| r.first().is_some_and(|v| v != "total")) {
        let total = cents(row.get(1).map_or("", String::as_str))?;
        let gpu_hours = (teams_from == 3).then(|| row.get(2).and_then(|h| h.parse().ok()).unwrap_or_default());
        let teams = header.iter().zip(row).skip(teams_from).map(|(team, cell)| Ok((team.clone(), cents(cell)?))).collect::<Result<Vec<_>, String>>()?;
        values.push(ValueFigures { value: row[0].clone(), total, gpu_hours, teams });
    }
    Ok(DimensionFigures { name, values })
}

/// `summary.csv` as the report reads it.
pub fn read_summary(text: &str) -> Result<Vec<TeamFigures>, String> {
    let rows = read_rows(text);
    let header = rows.first().ok_or("summary.csv is empty")?;
    let c = |name: &str| column(header, name, "summary.csv");
    let (team, direct, shared, gpu, total, previous, change) = (c("team")?, c("direct")?, c("shared")?, c("gpu")?, c("total")?, c("previous_month")?, c("change_pct")?);
    let (hours, util, idle_hours, idle_cost, spot) = (c("gpu_hours")?, c("gpu_utilization_pct")?, c("gpu_idle_hours")?, c("gpu_idle_cost")?, c("gpu_spot")?);
    let number = |s: &str| s.parse::<f64>().unwrap_or(0.0);
    rows[1..]
        .iter()
        .filter(|r| r.len() == header.len())
        .map(|r| {
            Ok(TeamFigures {
                team: r[team].clone(),
                direct: cents(&r[direct])?,
                shared: cents(&r[shared])?,
                gpu: cents(&r[gpu])?,
                total: cents(&r[total])?,
                previous: if r[previous].is_empty() { None } else { Some(cents(&r[previous])?) },
                change_pct: r[change].clone(),
                gpu_hours: number(&r[hours]),
                gpu_utilization_pct: number(&r[util]),
                idle_hours: number(&r[idle_hours]),
                idle_cost: cents(&r[idle_cost])?,
                spot: cents(&r[spot])?,
            })
        })
        .collect()
}

/// `services.csv` summed per service at `cost_basis`, largest first.
pub fn read_services(text: &str, cost_basis: &str) -> Result<Vec<(String, Cents)>, String> {
    let rows = read_rows(text);
    let header = rows.first().ok_or("services.csv is empty")?;
    let (service, amount) = (column(header, "service", "services.csv")?, column(header, cost_basis, "services.csv")?);
    let mut sums: BTreeMap<String, i64> = BTreeMap::new();
    for r in rows[1..].iter().filter(|r| r.len() == header.len()) {
        *sums.entry(r[service].clone()).or_default() += cents(&r[amount])?.0;
    }
    let mut out: Vec<(String, Cents)> = sums.into_iter().map(|(s, c)| (s, Cents(c))).collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(out)
}

/// A month published under `root` (its `summary.csv`, when its manifest says it is complete),
/// for the trend.
pub fn read_published(root: &crate::sink::OutputRoot, month: &str) -> Option<HistoryMonth> {
    let manifest = crate::manifest::Manifest::parse(&root.read(month, "manifest.json").ok()??).ok()?;
    let text = String::from_utf8(root.read(month, "summary.csv").ok()??).ok()?;
    let teams = read_summary(&text).ok()?;
    let bill = manifest.totals.get(&manifest.rules.cost_basis).and_then(|t| cents(&t.rounded).ok());
    Some(history_of(month, &teams, "published", bill, manifest.gpu.as_ref().map(crate::gpu::GpuRecord::measured)))
}

/// A month's trend entry from its team rows, its bill and whether GPU usage was measured.
pub fn history_of(month: &str, teams: &[TeamFigures], source: &str, bill: Option<Cents>, gpu_measured: Option<bool>) -> HistoryMonth {
    HistoryMonth {
        month: month.to_string(),
        teams: teams.iter().map(|t| (t.team.clone(), t.total)).collect(),
        gpu_hours: teams.iter().map(|t| t.gpu_hours).sum(),
        busy_hours: teams.iter().map(|t| t.gpu_hours * t.gpu_utilization_pct / 100.0).sum(),
        source: source.to_string(),
        bill,
        gpu_measured,
    }
}

/// The report's words, per locale.
struct Words {
    title: &'static str,
    bill: &'static str,
    rate_card: &'static str,
    change: &'static str,
    coverage: &'static str,
    gpu_spend: &'static str,
    gpu_util: &'static str,
    idle_cost: &'static str,
    spot_share: &'static str,
    movers: &'static str,
    no_previous: &'static str,
    not_compared: &'static str,
    not_measured: &'static str,
    trend: &'static str,
    top_teams: &'static str,
    by_service: &'static str,
    gpu_hours: &'static str,
    gpu_hours_requested: &'static str,
    gpu_util_trend: &'static str,
    gpu_splits: &'static str,
    gpu_splits_note: &'static str,
    idle_by_team: &'static str,
    no_pod: &'static str,
    all_teams: &'static str,
    rules: &'static str,
    freshness: &'static str,
    page: &'static str,
    budgets: &'static str,
    spikes: &'static str,
    no_spikes: &'static str,
    idle_alerts: &'static str,
    untagged: &'static str,
    account_coverage: &'static str,
    commitments: &'static str,
    commitment_coverage: &'static str,
    on_demand_equivalent: &'static str,
    commitment_cost: &'static str,
    unused: &'static str,
    coverage_of_eligible: &'static str,
    net_savings: &'static str,
    /// Chart and table titles of a dimension (`project`, `environment`, ...).
    spend_by: fn(&str) -> String,
    gpu_hours_by: fn(&str) -> String,
}

fn spend_by_en(dimension: &str) -> String {
    format!("Spend by {dimension}: the bill + on-prem GPU at the rate card")
}
fn gpu_hours_by_en(dimension: &str) -> String {
    format!("GPU-hours by {dimension} (from the namespaces)")
}
fn spend_by_ko(dimension: &str) -> String {
    format!("{dimension}별 비용: 청구액 + 온프레미스 GPU (단가표)")
}
fn gpu_hours_by_ko(dimension: &str) -> String {
    format!("{dimension}별 GPU 시간 (네임스페이스 기준)")
}

const EN: Words = Words {
    title: "Cloud cost report",
    bill: "AWS bill",
    rate_card: "On-prem GPU at the rate card",
    change: "The bill vs last month",
    coverage: "Allocation coverage",
    gpu_spend: "GPU spend",
    gpu_util: "Average GPU utilisation",
    idle_cost: "Idle GPU cost",
    spot_share: "Spot share of GPU spend",
    movers: "Largest movers",
    no_previous: "no previous month to compare",
    not_compared: "not compared with",
    not_measured: "GPU usage not measured: GPU cost went by the other rules, no on-prem GPU charged",
    trend: "Spend by team: the bill + on-prem GPU at the rate card",
    top_teams: "Top teams this month",
    by_service: "Spend by service: the AWS bill",
    gpu_hours: "GPU-hours and utilisation by team",
    gpu_hours_requested: "GPU-hours requested by team",
    gpu_util_trend: "GPU utilisation over the months",
    gpu_splits: "GPU cost: measured (DCGM) vs requested (split cost allocation data)",
    gpu_splits_note: "What each team carries of the GPU pools under the two splits: DCGM's measured GPU time (by the rules' basis and idle policy) and AWS's split cost allocation data (GPU-hours requested, GPU 9 : CPU+memory 1). The month was charged by the source the data page names; the difference is what the request-based split gives a team more (+) or less (-) than the measured one.",
    idle_by_team: "Idle GPU cost: pods' idle by team, and GPUs no pod used (a measure of waste, not a charge)",
    no_pod: "GPUs no pod used",
    all_teams: "All teams",
    rules: "Rules in force",
    freshness: "Data and sources",
    page: "page",
    budgets: "Budget vs actual",
    spikes: "Spikes of the month",
    no_spikes: "No daily spike this month.",
    idle_alerts: "Idle GPU alerts of the month",
    untagged: "Untagged cost",
    account_coverage: "Allocation coverage by account, by month",
    commitments: "Savings Plans and Reserved Instances",
    commitment_coverage: "Commitment coverage",
    on_demand_equivalent: "on-demand",
    commitment_cost: "cost",
    unused: "unused",
    coverage_of_eligible: "Coverage of the usage commitments can cover, at on-demand prices:",
    net_savings: "net savings after unused commitment",
    spend_by: spend_by_en,
    gpu_hours_by: gpu_hours_by_en,
};

const KO: Words = Words {
    title: "클라우드 비용 보고서",
    bill: "AWS 청구액",
    rate_card: "온프레미스 GPU (단가표 기준)",
    change: "청구액 전월 대비",
    coverage: "배분율",
    gpu_spend: "GPU 비용",
    gpu_util: "평균 GPU 사용률",
    idle_cost: "유휴 GPU 비용",
    spot_share: "GPU 비용 중 스팟 비중",
    movers: "변동이 큰 팀",
    no_previous: "비교할 전월 없음",
    not_compared: "비교하지 않음:",
    not_measured: "GPU 사용량 미측정: GPU 비용은 다른 규칙으로 배분, 온프레미스 GPU 미청구",
    trend: "팀별 비용 추이: 청구액 + 온프레미스 GPU (단가표)",
    top_teams: "이번 달 상위 팀",
    by_service: "서비스별 비용: AWS 청구액",
    gpu_hours: "팀별 GPU 시간과 사용률",
    gpu_hours_requested: "팀별 요청 GPU 시간",
    gpu_util_trend: "월별 GPU 사용률",
    gpu_splits: "GPU 비용: 측정(DCGM) 대 요청(분할 비용 할당 데이터)",
    gpu_splits_note: "두 가지 배분에서 각 팀이 GPU 풀 비용을 얼마나 부담하는지: DCGM으로 측정한 GPU 시간(규칙의 기준과 유휴 정책)과 AWS 분할 비용 할당 데이터(요청한 GPU 시간, GPU 9 : CPU+메모리 1). 이번 달에 적용된 출처는 데이터 페이지에 있으며, 차이는 요청 기반 배분이 측정 기반보다 팀에 더(+) 또는 덜(-) 부담시키는 금액입니다.",
    idle_by_team: "유휴 GPU 비용: 팀별 파드 유휴와 파드 없는 GPU (낭비의 척도, 청구액 아님)",
    no_pod: "파드 없는 GPU",
    all_teams: "전체 팀",
    rules: "적용 규칙",
    freshness: "데이터와 출처",
    page: "쪽",
    budgets: "예산 대비 실적",
    spikes: "이번 달 급증",
    no_spikes: "이번 달 일별 급증 없음.",
    idle_alerts: "이번 달 유휴 GPU 알림",
    untagged: "미배분 비용",
    account_coverage: "계정별 월별 배분율",
    commitments: "Savings Plans와 예약 인스턴스",
    commitment_coverage: "약정 적용률",
    on_demand_equivalent: "온디맨드 환산",
    commitment_cost: "비용",
    unused: "미사용",
    coverage_of_eligible: "약정 적용 가능 사용량 중 적용률 (온디맨드 가격 기준):",
    net_savings: "미사용 약정 차감 후 순절감",
    spend_by: spend_by_ko,
    gpu_hours_by: gpu_hours_by_ko,
};

/// One colour per team, by its place among the rule set's team names sorted by name (so the
/// same in every month and in `finops report`); `unallocated` and teams no longer in the rule
/// set are grey.
const PALETTE: [Rgb8; 12] = [
    Rgb8(31, 119, 180),
    Rgb8(255, 127, 14),
    Rgb8(44, 160, 44),
    Rgb8(214, 39, 40),
    Rgb8(148, 103, 189),
    Rgb8(140, 86, 75),
    Rgb8(227, 119, 194),
    Rgb8(188, 189, 34),
    Rgb8(23, 190, 207),
    Rgb8(57, 59, 121),
    Rgb8(173, 73, 74),
    Rgb8(99, 121, 57),
];
const GREY: Rgb8 = Rgb8(173, 181, 189);

/// A dimension value's colour: by its place among the values, its `unassigned` (the last, as
/// `summary-<dimension>.csv` lists them) grey.
fn dimension_color(dimension: &DimensionFigures, i: usize) -> Rgb8 {
    if i + 1 == dimension.values.len() && dimension.values.len() > 1 && dimension.values[i].value == "unassigned" {
        GREY
    } else {
        PALETTE[i % PALETTE.len()]
    }
}

/// Bars per chart; the rest are summed in one `N others` bar (the tables list everyone).
const TOP: usize = 25;

impl ReportData {
    fn color(&self, team: &str) -> Rgb8 {
        self.palette_order.iter().position(|t| t == team).map_or(GREY, |i| PALETTE[i % PALETTE.len()])
    }

    fn words(&self) -> &'static Words {
        match self.locale {
            Locale::En => &EN,
            Locale::Ko => &KO,
        }
    }

    fn month_label(&self, month: &str) -> String {
        let (year, m) = (month.get(..4).unwrap_or(""), month.get(5..7).and_then(|m| m.parse::<usize>().ok()).unwrap_or(1));
        match self.locale {
            Locale::En => {
                const NAMES: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
                format!("{} {year}", NAMES[(m + 11) % 12])
            }
            Locale::Ko => format!("{year}년 {m}월"),
        }
    }

    fn short_month(&self, month: &str) -> String {
        let label = self.month_label(month);
        match self.locale {
            Locale::En => label.replace(" 20", " '"),
            Locale::Ko => label.get(2..).map(str::to_string).unwrap_or(label),
        }
    }

    fn total(&self) -> Cents {
        self.teams.iter().map(|t| t.total).sum()
    }
}

/// The first `n` bars, and the rest summed in one grey `N others` bar (figure by `figure`).
fn top_bars(mut all: Vec<Bar>, n: usize, figure: impl Fn(f64) -> String) -> Vec<Bar> {
    if all.len() > n {
        let rest: Vec<Bar> = all.split_off(n);
        let value: f64 = rest.iter().map(|b| b.value).sum();
        all.push(Bar { label: format!("{} others", rest.len()), value, color: GREY, figure: figure(value) });
    }
    all
}

/// Money as executives read it: thousands grouped, two decimals.
pub fn grouped(c: Cents) -> String {
    let text = c.to_string();
    let (sign, rest) = text.strip_prefix('-').map_or(("", text.as_str()), |r| ("-", r));
    let (int, frac) = rest.split_once('.').unwrap_or((rest, "00"));
    let mut out = String::new();
    for (i, ch) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    format!("{sign}{out}.{frac}")
}

fn pct_change(now: Cents, before: Cents) -> Option<f64> {
    (before.0 != 0).then(|| (now.0 - before.0) as f64 / before.0.abs() as f64 * 100.0)
}

/// The pages being laid out, and where the next thing goes.
struct Doc<'f> {
    fonts: &'f Fonts,
    pages: Vec<Page<'f>>,
    y: f32,
}

impl<'f> Doc<'f> {
    fn page(&mut self) -> &mut Page<'f> {
        self.pages.last_mut().expect("a page")
    }

    fn new_page(&mut self) {
        self.pages.push(Page::new(self.fonts));
        self.y = MARGIN;
    }

    /// Room for `height` more points on this page, or a new page.
    fn room(&mut self, height: f32) {
        // The page number sits 22 pt above the edge: content may come to within 4 pt of the margin.
        if self.y + height > PAGE_HEIGHT - MARGIN - 4.0 {
            self.new_page();
        }
    }

    fn heading(&mut self, text: &str) {
        self.room(60.0);
        let y = self.y;
        self.page().text(MARGIN, y + 14.0, 13.0, true, INK, Align::Left, text);
        self.page().line(&[(MARGIN, y + 20.0), (PAGE_WIDTH - MARGIN, y + 20.0)], 0.6, RULE);
        self.y += 30.0;
    }

    /// A table; rows continue on the next page under a repeated header. `widths` are shares of
    /// the text width; the first column is left-aligned, the others right-aligned.
    fn table(&mut self, header: &[&str], widths: &[f32], rows: &[Vec<String>], bold_last: bool) {
        let width = PAGE_WIDTH - 2.0 * MARGIN;
        let total: f32 = widths.iter().sum();
        let widths: Vec<f32> = widths.iter().map(|w| w / total * width).collect();
        let row_height = 14.0;
        // Text after a right-aligned figure starts a little in, or the two would touch.
        let gap = |numeric: &[bool], i: usize| if i > 0 && !numeric[i] && numeric[i - 1] { 12.0 } else { 0.0 };
        let draw_header = |doc: &mut Doc, numeric: &[bool]| {
            let y = doc.y;
            let mut x = MARGIN;
            for (i, (h, w)) in header.iter().zip(&widths).enumerate() {
                let (ax, align) = if numeric[i] { (x + w, Align::Right) } else { (x + gap(numeric, i), Align::Left) };
                doc.page().text(ax, y + 10.0, 8.0, true, MUTED, align, h);
                x += w;
            }
            doc.page().line(&[(MARGIN, y + 14.0), (MARGIN + width, y + 14.0)], 0.6, RULE);
            doc.y += 18.0;
        };
        // Figures right-aligned, text left: a column is a figure column when every cell of it
        // reads as a number (signs, `%` and grouping aside).
        let numeric: Vec<bool> = (0..header.len())
            .map(|c| c > 0 && rows.iter().filter_map(|r| r.get(c)).filter(|v| !v.is_empty()).all(|v| v.trim_start_matches(['+', '-']).trim_end_matches('%').replace(',', "").parse::<f64>().is_ok()))
            .collect();
        self.room(row_height * 3.0);
        draw_header(self, &numeric);
        // Text cells wrap onto up to three lines (a driver, a rule name): never cut mid-sentence
        // unless longer still; figures stay on one line.
        const LINE: f32 = 10.0;
        for (n, row) in rows.iter().enumerate() {
            let bold = bold_last && n + 1 == rows.len();
            let cells: Vec<Vec<String>> = row
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(i, (cell, w))| {
                    let room = w - 6.0 - gap(&numeric, i);
                    if numeric[i] {
                        vec![self.fonts.fit(cell, 8.0, bold, room)]
                    } else {
                        let lines = self.fonts.wrap(cell, 8.0, bold, room);
                        let mut kept: Vec<String> = lines.iter().take(3).map(|l| self.fonts.fit(l, 8.0, bold, room)).collect();
                        if lines.len() > 3 {
                            let last = kept.pop().unwrap_or_default();
                            kept.push(self.fonts.fit(&format!("{last} {}", lines[3..].join(" ")), 8.0, bold, room));
                        }
                        kept
                    }
                })
                .collect();
            let height = row_height + LINE * (cells.iter().map(Vec::len).max().unwrap_or(1) - 1) as f32;
            if self.y + height > PAGE_HEIGHT - MARGIN - 4.0 {
                self.new_page();
                draw_header(self, &numeric);
            }
            let y = self.y;
            if n % 2 == 1 {
                self.page().rect(MARGIN, y, width, height, PANEL);
            }
            let mut x = MARGIN;
            for (i, (lines, w)) in cells.iter().zip(&widths).enumerate() {
                let (ax, align) = if numeric[i] { (x + w - 2.0, Align::Right) } else { (x + 2.0 + gap(&numeric, i), Align::Left) };
                for (k, line) in lines.iter().enumerate() {
                    self.page().text(ax, y + 10.0 + LINE * k as f32, 8.0, bold, INK, align, line);
                }
                x += w;
            }
            self.y += height;
        }
        self.y += 12.0;
    }

    /// A bar chart across the text width, on a new page if it does not fit.
    fn bars(&mut self, title: &str, axis: &str, items: &[Bar]) {
        self.room(50.0 + 15.0 * items.len() as f32);
        let y = self.y;
        self.y += bars(self.page(), MARGIN, y, PAGE_WIDTH - 2.0 * MARGIN, title, axis, items) + 10.0;
    }

    /// A paragraph of `size`-point text wrapped to the text width.
    fn paragraph(&mut self, text: &str, size: f32, color: Rgb8) {
        let width = PAGE_WIDTH - 2.0 * MARGIN;
        for l in self.fonts.wrap(text, size, false, width) {
            self.room(size * 1.5);
            let y = self.y;
            let fitted = self.fonts.fit(&l, size, false, width);
            self.page().text(MARGIN, y + size, size, false, color, Align::Left, &fitted);
            self.y += size * 1.45;
        }
    }
}

/// Renders the report. Deterministic: the same data gives the same bytes.
pub fn report_pdf(data: &ReportData) -> Result<Vec<u8>, String> {
    let fonts = Fonts::load()?;
    let w = data.words();
    let mut doc = Doc { fonts: &fonts, pages: Vec::new(), y: MARGIN };
    doc.new_page();
    let currency = &data.facts.currency;
    let total = data.total();
    let up = if fonts.regular.lookup_glyph_index('▲' as u32).is_some() { "▲" } else { "+" };
    let down = if fonts.regular.lookup_glyph_index('▼' as u32).is_some() { "▼" } else { "-" };

    // --- Page one: the month at a glance. ---
    let month = data.month_label(&data.facts.month);
    doc.page().text(MARGIN, MARGIN + 18.0, 20.0, true, INK, Align::Left, &format!("{} — {month}", w.title));
    let subtitle = format!("{} cost, {currency} · {} · {}", data.facts.cost_basis, data.facts.source, data.facts.generator);
    let subtitle = fonts.fit(&subtitle, 8.5, false, PAGE_WIDTH - 2.0 * MARGIN);
    doc.page().text(MARGIN, MARGIN + 33.0, 8.5, false, MUTED, Align::Left, &subtitle);
    doc.y = MARGIN + 48.0;

    // summary.csv's rows are the teams, then the unallocated bucket.
    let named: &[TeamFigures] = &data.teams[..data.teams.len().saturating_sub(1)];
    let unallocated = data.teams.last();
    let gpu: Cents = data.teams.iter().map(|t| t.gpu).sum();
    let gpu_hours: f64 = data.teams.iter().map(|t| t.gpu_hours).sum();
    let busy: f64 = data.teams.iter().map(|t| t.gpu_hours * t.gpu_utilization_pct / 100.0).sum();
    let idle_cost: Cents = data.teams.iter().map(|t| t.idle_cost).sum();
    let idle_hours: f64 = data.teams.iter().map(|t| t.idle_hours).sum();
    let spot: Cents = data.teams.iter().map(|t| t.spot).sum();
    let share = |part: Cents, of: Cents| if of.0 != 0 { part.0 as f64 / of.0 as f64 * 100.0 } else { 0.0 };
    // The bill is what services.csv adds up to; the teams' total adds on-prem GPU hosts priced
    // by the rate card. Page one shows the two apart, and their sum; the change is the bill's
    // against the bill of the month before (like with like, docs/design.md §6).
    let bill: Cents = data.services.iter().map(|(_, c)| *c).sum();
    let rate_card = Cents(total.0 - bill.0);
    let change_text = match data.facts.previous.as_ref().and_then(|p| pct_change(bill, p.bill).map(|c| (p, c))) {
        Some((p, c)) => {
            (format!("{}{:.1}%", if c >= 0.0 { "+" } else { "" }, c), format!("{} {:.1}% vs {} ({})", if c >= 0.0 { up } else { down }, c.abs(), data.short_month(&p.month), grouped(p.bill)))
        }
        None => ("–".to_string(), w.no_previous.to_string()),
    };
    let ko = data.locale == Locale::Ko;
    let unallocated_total = unallocated.map(|u| grouped(u.total)).unwrap_or_default();
    let readings: [String; 6] = if ko {
        [
            format!("{} {currency}, 팀 {}개", data.facts.cost_basis, named.len()),
            format!("미배분 {unallocated_total}"),
            format!("팀 합계의 {:.1}%", share(gpu, total)),
            format!("GPU {gpu_hours:.1}시간 기준"),
            match &data.idle {
                Some(i) => format!("파드 유휴 {} + 미사용 GPU {}", grouped(i.pods_cost), grouped(i.no_pod_cost)),
                None => format!("유휴 {idle_hours:.1} GPU시간, 정가 기준"),
            },
            format!("+ AWS 청구액 = {} (팀 합계)", grouped(total)),
        ]
    } else {
        [
            format!("{} cost, {currency}; {} teams", data.facts.cost_basis, named.len()),
            format!("unallocated {unallocated_total}"),
            format!("{:.1}% of the teams' total", share(gpu, total)),
            format!("over {gpu_hours:.1} GPU-hours"),
            match &data.idle {
                Some(i) => format!("pods idle {} + GPUs no pod used {}", grouped(i.pods_cost), grouped(i.no_pod_cost)),
                None => format!("{idle_hours:.1} idle GPU-h at full price"),
            },
            format!("+ AWS bill = {} (teams' total)", grouped(total)),
        ]
    };
    let [r_total, r_coverage, r_gpu, mut r_util, mut r_idle, r_teams] = readings;
    // GPU time as requested (split cost allocation data) has no utilisation and no idle time:
    // a dash and why, never a 0% that reads as measured.
    let request_based = data.facts.gpu_source.as_deref().is_some_and(crate::gpu::is_request_based);
    if request_based {
        r_util = if ko { format!("요청 기반: 측정 안 됨 ({gpu_hours:.1} GPU시간 요청)") } else { format!("request-based: not measured ({gpu_hours:.1} GPU-h requested)") };
        r_idle = if ko { "요청 기반: 측정 안 됨".into() } else { "request-based: not measured".into() };
    }
    let kpis: Vec<(&str, String, String)> = vec![
        (w.bill, grouped(bill), r_total),
        (w.change, change_text.0, change_text.1),
        (w.coverage, format!("{:.1}%", data.facts.coverage * 100.0), r_coverage),
        (w.gpu_spend, grouped(gpu), r_gpu),
        (w.gpu_util, if gpu_hours > 0.0 && !request_based { format!("{:.1}%", busy / gpu_hours * 100.0) } else { "–".into() }, r_util),
        (w.idle_cost, if request_based { "–".into() } else { grouped(data.idle.as_ref().map_or(idle_cost, IdleGpu::cost)) }, r_idle),
        (w.spot_share, format!("{:.1}%", share(spot, gpu)), format!("Spot {} / GPU {}", grouped(spot), grouped(gpu))),
        (w.rate_card, if rate_card.0 != 0 { grouped(rate_card) } else { "–".into() }, r_teams),
    ];
    let mut kpis = kpis;
    if let Some(c) = &data.commitments {
        let total = c.programmes.last().expect("a total row");
        let utilisation = if total.utilisation_pct.is_empty() { "–".to_string() } else { format!("{}%", total.utilisation_pct) };
        let reading =
            if ko { format!("사용률 {utilisation}, 순절감 {}", amount_text(&c.net_savings)) } else { format!("utilisation {utilisation}, net savings {}", amount_text(&c.net_savings)) };
        kpis.push((w.commitment_coverage, if c.coverage_pct.is_empty() { "–".into() } else { format!("{}%", c.coverage_pct) }, reading));
    }
    // Full rows: nine cards (with commitments) are three rows of three, not a card alone.
    let columns = if kpis.len() % 4 != 0 && kpis.len() % 3 == 0 { 3 } else { 4 };
    let card_w = (PAGE_WIDTH - 2.0 * MARGIN - (columns - 1) as f32 * 8.0) / columns as f32;
    for (i, (label, value, reading)) in kpis.iter().enumerate() {
        let (cx, cy) = (MARGIN + (i % columns) as f32 * (card_w + 8.0), doc.y + (i / columns) as f32 * 70.0);
        let page = doc.page();
        page.rect(cx, cy, card_w, 62.0, PANEL);
        page.text(cx + 8.0, cy + 14.0, 7.5, false, MUTED, Align::Left, &fonts.fit(label, 7.5, false, card_w - 16.0));
        page.text(cx + 8.0, cy + 37.0, 17.0, true, INK, Align::Left, &fonts.fit(value, 17.0, true, card_w - 16.0));
        let color = if reading.starts_with(up) {
            UP
        } else if reading.starts_with(down) {
            DOWN
        } else {
            MUTED
        };
        // A reading too long for one line takes two, a little smaller: never cut.
        let lines = fonts.wrap(reading, 7.0, false, card_w - 16.0);
        if lines.len() == 1 {
            page.text(cx + 8.0, cy + 53.0, 7.0, false, color, Align::Left, reading);
        } else {
            for (k, line) in fonts.wrap(reading, 6.3, false, card_w - 16.0).iter().take(2).enumerate() {
                page.text(cx + 8.0, cy + 48.5 + k as f32 * 7.5, 6.3, false, color, Align::Left, &fonts.fit(line, 6.3, false, card_w - 16.0));
            }
        }
    }
    doc.y += kpis.len().div_ceil(columns) as f32 * 70.0 + 6.0;

    // The three largest movers, in a sentence.
    let mut movers: Vec<(&TeamFigures, i64)> = data.teams.iter().filter_map(|t| Some((t, t.total.0 - t.previous?.0))).collect();
    movers.sort_by(|a, b| b.1.abs().cmp(&a.1.abs()).then_with(|| a.0.team.cmp(&b.0.team)));
    let not_compared = data.facts.previous.as_ref().and_then(|p| Some((data.short_month(&p.month), p.not_comparable.as_ref()?)));
    let sentence = if let Some((month, why)) = not_compared {
        format!("{}: {} {month}: {why}.", w.movers, w.not_compared)
    } else if movers.is_empty() {
        format!("{}: {}.", w.movers, w.no_previous)
    } else {
        let parts: Vec<String> = movers
            .iter()
            .take(3)
            .map(|(t, d)| {
                let pct = t.previous.and_then(|p| pct_change(t.total, p)).map(|c| format!(" ({c:+.1}%)")).unwrap_or_default();
                format!("{} {} {}{pct}", t.team, if *d >= 0 { up } else { down }, grouped(Cents(d.abs())))
            })
            .collect();
        format!("{}: {}.", w.movers, parts.join(", "))
    };
    doc.paragraph(&sentence, 9.5, INK);
    doc.y += 8.0;

    // Spend trend, stacked by team, up to the last 12 months.
    let mut months: Vec<&HistoryMonth> = data.history.iter().collect();
    let this_month = history_of(&data.facts.month, &data.teams, "this run", Some(bill), data.facts.gpu_measured);
    months.push(&this_month);
    let months: Vec<&HistoryMonth> = months.iter().rev().take(12).rev().copied().collect();
    // A month whose GPU cost went by the other rules while this month's was measured is marked:
    // its columns are not like with like (docs/design.md §6).
    let unmeasured = |m: &HistoryMonth| data.facts.gpu_measured == Some(true) && m.gpu_measured == Some(false);
    let labels: Vec<String> = months.iter().map(|m| format!("{}{}", data.short_month(&m.month), if unmeasured(m) { " °" } else { "" })).collect();
    let mut names: Vec<String> = data.palette_order.clone();
    for m in &months {
        for (t, _) in &m.teams {
            if !names.contains(t) {
                names.push(t.clone());
            }
        }
    }
    let series: Vec<Series> = names
        .iter()
        .map(|name| Series { name: name.clone(), color: data.color(name), values: months.iter().map(|m| m.teams.iter().find(|(t, _)| t == name).map_or(0.0, |(_, c)| c.0 as f64 / 100.0)).collect() })
        .filter(|s| s.values.iter().any(|v| *v != 0.0))
        .collect();
    let y = doc.y;
    let used = stacked_columns(doc.page(), MARGIN, y, PAGE_WIDTH - 2.0 * MARGIN, 230.0, w.trend, currency, &labels, &series);
    doc.y += used + 6.0;
    if months.iter().any(|m| unmeasured(m)) {
        let y = doc.y;
        doc.page().text(MARGIN, y, 7.5, false, MUTED, Align::Left, &format!("° {}", w.not_measured));
        doc.y += 12.0;
    }

    // --- Teams and services (on page one when they fit). ---
    let mut ranked: Vec<&TeamFigures> = data.teams.iter().collect();
    ranked.sort_by(|a, b| b.total.cmp(&a.total).then_with(|| a.team.cmp(&b.team)));
    let money_figure = |v: f64| grouped(Cents((v * 100.0).round() as i64));
    let team_bars = ranked.iter().map(|t| Bar { label: t.team.clone(), value: t.total.0 as f64 / 100.0, color: data.color(&t.team), figure: grouped(t.total) }).collect();
    doc.bars(w.top_teams, currency, &top_bars(team_bars, TOP, money_figure));
    let services = data.services.iter().map(|(s, c)| Bar { label: s.clone(), value: c.0 as f64 / 100.0, color: PALETTE[0], figure: grouped(*c) }).collect();
    doc.bars(w.by_service, &format!("{currency}, {} cost", data.facts.cost_basis), &top_bars(services, 12, money_figure));
    for dimension in &data.dimensions {
        let bars =
            dimension.values.iter().enumerate().map(|(i, v)| Bar { label: v.value.clone(), value: v.total.0 as f64 / 100.0, color: dimension_color(dimension, i), figure: grouped(v.total) }).collect();
        doc.bars(&(w.spend_by)(&dimension.name), currency, &top_bars(bars, TOP, money_figure));
    }

    // --- GPU. ---
    if gpu_hours > 0.0 {
        let mut gpu_teams: Vec<&TeamFigures> = data.teams.iter().filter(|t| t.gpu_hours > 0.0).collect();
        gpu_teams.sort_by(|a, b| b.gpu_hours.total_cmp(&a.gpu_hours).then_with(|| a.team.cmp(&b.team)));
        if request_based {
            let hour_bars = gpu_teams.iter().map(|t| Bar { label: t.team.clone(), value: t.gpu_hours, color: data.color(&t.team), figure: format!("{:.1} h", t.gpu_hours) }).collect();
            doc.bars(w.gpu_hours_requested, "GPU-hours requested (split cost allocation data: no utilisation measured)", &top_bars(hour_bars, TOP, |v| format!("{v:.1} h")));
        } else {
            let hour_bars = gpu_teams
                .iter()
                .map(|t| Bar { label: t.team.clone(), value: t.gpu_hours, color: data.color(&t.team), figure: format!("{:.1} h · {:.1}%", t.gpu_hours, t.gpu_utilization_pct) })
                .collect();
            doc.bars(w.gpu_hours, "GPU-hours (figure: hours · utilisation)", &top_bars(hour_bars, TOP, |v| format!("{v:.1} h")));
        }
    }
    if gpu_hours > 0.0 && !request_based {
        let util: Vec<Option<f64>> = months.iter().map(|m| (m.gpu_hours > 0.0).then(|| m.busy_hours / m.gpu_hours * 100.0)).collect();
        doc.room(32.0 + 150.0 + 20.0);
        let y = doc.y;
        doc.y += percent_line(doc.page(), MARGIN, y, PAGE_WIDTH - 2.0 * MARGIN, 150.0, w.gpu_util_trend, "busy GPU-hours / GPU-hours", &labels, &util, PALETTE[9]) + 10.0;
        let mut idle: Vec<&TeamFigures> = data.teams.iter().filter(|t| t.idle_cost.0 > 0).collect();
        idle.sort_by(|a, b| b.idle_cost.cmp(&a.idle_cost).then_with(|| a.team.cmp(&b.team)));
        let idle_bars = idle.iter().map(|t| Bar { label: t.team.clone(), value: t.idle_cost.0 as f64 / 100.0, color: data.color(&t.team), figure: grouped(t.idle_cost) }).collect();
        let mut idle_bars = top_bars(idle_bars, TOP, money_figure);
        // The idle no pod held is nobody's, but it is the plainest waste: shown beside the teams'.
        if let Some(i) = data.idle.as_ref().filter(|i| i.no_pod_cost.0 > 0) {
            idle_bars.push(Bar { label: w.no_pod.into(), value: i.no_pod_cost.0 as f64 / 100.0, color: GREY, figure: grouped(i.no_pod_cost) });
        }
        doc.bars(w.idle_by_team, currency, &idle_bars);
    }
    if gpu_hours > 0.0 {
        for dimension in data.dimensions.iter().filter(|d| d.values.iter().any(|v| v.gpu_hours.unwrap_or_default() > 0.0)) {
            let bars = dimension
                .values
                .iter()
                .enumerate()
                .filter(|(_, v)| v.gpu_hours.unwrap_or_default() > 0.0)
                .map(|(i, v)| Bar { label: v.value.clone(), value: v.gpu_hours.unwrap_or_default(), color: dimension_color(dimension, i), figure: format!("{:.1} h", v.gpu_hours.unwrap_or_default()) })
                .collect();
            doc.bars(&(w.gpu_hours_by)(&dimension.name), "GPU-hours", &top_bars(bars, TOP, |v| format!("{v:.1} h")));
        }
    }
    if !data.gpu_splits.is_empty() {
        doc.heading(w.gpu_splits);
        doc.paragraph(w.gpu_splits_note, 8.5, MUTED);
        doc.y += 6.0;
        let rows: Vec<Vec<String>> = data.gpu_splits.iter().map(|r| vec![r.pool.clone(), r.team.clone(), amount_text(&r.dcgm), amount_text(&r.scad), amount_text(&r.difference)]).collect();
        doc.table(&["pool", "team", "measured (DCGM)", "requested (SCAD)", "difference"], &[2.6, 1.6, 1.6, 1.6, 1.4], &rows, false);
    }

    // --- Budgets, spikes and idle GPUs of the month. ---
    if let Some(alerts) = &data.alerts {
        if !alerts.budgets.is_empty() {
            let budget_bars: Vec<Bar> = alerts
                .budgets
                .iter()
                .map(|b| {
                    let (budget, actual) = (cents(&b.budget).unwrap_or_default(), cents(&b.actual).unwrap_or_default());
                    let pct = if budget.0 > 0 { actual.0 as f64 / budget.0 as f64 * 100.0 } else { 0.0 };
                    Bar { label: b.team.clone(), value: pct, color: if pct > 100.0 { UP } else { data.color(&b.team) }, figure: format!("{pct:.0}% of {}", grouped(budget)) }
                })
                .collect();
            doc.bars(w.budgets, "% of the month's budget spent", &budget_bars);
        }
        doc.heading(w.spikes);
        if alerts.spikes.is_empty() {
            doc.paragraph(w.no_spikes, 9.0, MUTED);
        } else {
            let rows: Vec<Vec<String>> = alerts
                .spikes
                .iter()
                .map(|s| {
                    vec![
                        format!("{} {}{}", s.subject, s.name, s.label.as_deref().map(|l| format!(" · {l}")).unwrap_or_default()),
                        s.date.clone(),
                        amount_text(&s.actual),
                        amount_text(&s.expected),
                        s.contributors.first().cloned().unwrap_or_default(),
                    ]
                })
                .collect();
            doc.table(&["spike", "day", "cost", "expected", "largest driver"], &[2.0, 1.2, 1.1, 1.1, 3.6], &rows, false);
        }
        if !alerts.idle_gpu.is_empty() {
            doc.heading(w.idle_alerts);
            let rows: Vec<Vec<String>> = alerts.idle_gpu.iter().map(|i| vec![i.namespace.clone(), i.team.clone(), i.days.to_string(), i.idle_gpu_hours.clone(), amount_text(&i.idle_cost)]).collect();
            doc.table(&["namespace", "team", "days alerted", "idle GPU-hours", "idle cost"], &[2.5, 1.5, 1.0, 1.2, 1.2], &rows, false);
        }
    }

    // --- Tables: they follow on, filling the page (a heading never ends a page alone). ---
    doc.heading(&format!("{} — {month}", w.all_teams));
    let mut rows: Vec<Vec<String>> = data
        .teams
        .iter()
        .map(|t| {
            vec![
                t.team.clone(),
                grouped(t.direct),
                grouped(t.shared),
                grouped(t.gpu),
                grouped(t.total),
                t.previous.map(grouped).unwrap_or_default(),
                if t.change_pct.is_empty() { String::new() } else { format!("{}%", t.change_pct) },
            ]
        })
        .collect();
    let sum = |f: fn(&TeamFigures) -> Cents| -> String { grouped(data.teams.iter().map(f).sum::<Cents>()) };
    let previous_sum: Option<Cents> = data.teams.iter().map(|t| t.previous).sum();
    rows.push(vec![
        "total".into(),
        sum(|t| t.direct),
        sum(|t| t.shared),
        sum(|t| t.gpu),
        grouped(total),
        previous_sum.map(grouped).unwrap_or_default(),
        previous_sum.and_then(|p| pct_change(total, p)).map(|c| format!("{c:.1}%")).unwrap_or_default(),
    ]);
    doc.table(&["team", "direct", "shared", "gpu", "total", "previous", "change"], &[3.0, 1.4, 1.4, 1.4, 1.5, 1.5, 1.0], &rows, true);

    if !movers.is_empty() {
        doc.heading(w.movers);
        let rows: Vec<Vec<String>> = movers
            .iter()
            .take(10)
            .map(|(t, d)| {
                vec![
                    t.team.clone(),
                    t.previous.map(grouped).unwrap_or_default(),
                    grouped(t.total),
                    format!("{}{}", if *d >= 0 { "+" } else { "-" }, grouped(Cents(d.abs()))),
                    if t.change_pct.is_empty() { String::new() } else { format!("{}%", t.change_pct) },
                ]
            })
            .collect();
        doc.table(&["team", "previous", "this month", "change", "change %"], &[3.0, 1.5, 1.5, 1.5, 1.0], &rows, false);
    }

    if let Some(c) = &data.commitments {
        doc.room(300.0);
        let figure = |text: &str| cents(text).map(|c| c.0 as f64 / 100.0).unwrap_or(0.0);
        let bars: Vec<Bar> = c.programmes[..2]
            .iter()
            .flat_map(|p| {
                [(w.on_demand_equivalent, &p.on_demand_equivalent, GREY), (w.commitment_cost, &p.cost, Rgb8(44, 160, 44)), (w.unused, &p.unused, Rgb8(214, 39, 40))].map(|(what, value, color)| {
                    // The bar's label column is narrow: the programme by its initials.
                    let short: String = p.programme.split(' ').filter_map(|w| w.chars().next()).collect();
                    Bar { label: format!("{short}: {what}"), value: figure(value), color, figure: amount_text(value) }
                })
            })
            .filter(|b| b.value != 0.0)
            .collect();
        doc.bars(&format!("{} — {month}", w.commitments), currency, &bars);
        let rows: Vec<Vec<String>> = c
            .programmes
            .iter()
            .map(|p| {
                let pct = if p.utilisation_pct.is_empty() { String::new() } else { format!("{}%", p.utilisation_pct) };
                vec![p.programme.clone(), amount_text(&p.on_demand_equivalent), amount_text(&p.cost), amount_text(&p.savings), amount_text(&p.unused), pct]
            })
            .collect();
        doc.table(&["programme", "on-demand equivalent", "cost", "savings", "unused", "utilisation"], &[2.0, 1.6, 1.3, 1.3, 1.2, 1.1], &rows, true);
        let coverage = if c.coverage_pct.is_empty() { "–".to_string() } else { format!("{}%", c.coverage_pct) };
        doc.paragraph(&format!("{} {coverage} (uncovered on-demand {}); {} {}.", w.coverage_of_eligible, amount_text(&c.uncovered_on_demand), w.net_savings, amount_text(&c.net_savings)), 8.0, MUTED);
        if !c.unused_by_rule.is_empty() {
            let rows: Vec<Vec<String>> = c.unused_by_rule.iter().map(|(rule, team, amount)| vec![rule.clone(), team.clone(), amount_text(amount)]).collect();
            doc.table(&["rule", "charged to", "unused commitment"], &[3.0, 2.0, 1.5], &rows, false);
        }
    }

    if let Some(untagged) = &data.untagged {
        let total: Cents = untagged.rows.iter().map(|r| r.2).sum();
        // The page together (a table of up to 13 rows of two lines): a reader sees whose the
        // cost is and what to fix at once.
        doc.room(90.0 + 26.0 * untagged.rows.len().min(13) as f32);
        doc.heading(&format!("{} — {month}: {} {currency}", w.untagged, grouped(total)));
        // Backticks mark keys in Slack; on paper the key reads as it is.
        let mut rows: Vec<Vec<String>> = untagged.rows.iter().take(12).map(|(what, account, cost, advice)| vec![what.clone(), account.clone(), grouped(*cost), advice.replace('`', "")]).collect();
        if untagged.rows.len() > 12 {
            let rest: Cents = untagged.rows[12..].iter().map(|r| r.2).sum();
            rows.push(vec![format!("{} more (untagged.csv)", untagged.rows.len() - 12), String::new(), grouped(rest), String::new()]);
        }
        doc.table(&["resource", "account", "cost", "what to fix"], &[3.0, 1.6, 1.1, 5.0], &rows, false);
        // The last six months of the trend: a page's width.
        let shown = untagged.months.len().saturating_sub(6);
        let mut header: Vec<String> = vec!["account".into()];
        header.extend(untagged.months[shown..].iter().map(|m| data.short_month(m)));
        let rows: Vec<Vec<String>> = untagged
            .accounts
            .iter()
            .map(|(account, pcts)| std::iter::once(account.clone()).chain(pcts[shown..].iter().map(|p| if p.is_empty() { String::new() } else { format!("{p}%") })).collect())
            .collect();
        doc.heading(w.account_coverage);
        let widths: Vec<f32> = std::iter::once(2.0).chain(header[1..].iter().map(|_| 1.0)).collect();
        doc.table(&header.iter().map(String::as_str).collect::<Vec<_>>(), &widths, &rows, false);
    }

    for dimension in &data.dimensions {
        doc.heading(&format!("{} — {month}", (w.spend_by)(&dimension.name)));
        let all: Cents = dimension.values.iter().map(|v| v.total).sum();
        let mut rows: Vec<Vec<String>> = dimension
            .values
            .iter()
            .map(|v| {
                let mut teams: Vec<&(String, Cents)> = v.teams.iter().filter(|(_, c)| c.0 != 0).collect();
                teams.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                let largest: Vec<String> = teams.iter().take(3).map(|(t, c)| format!("{t} {}", grouped(*c))).collect();
                let more = if teams.len() > 3 { format!(" (+{})", teams.len() - 3) } else { String::new() };
                let share = if all.0 != 0 { format!("{:.1}%", v.total.0 as f64 * 100.0 / all.0 as f64) } else { String::new() };
                vec![v.value.clone(), grouped(v.total), share, format!("{}{more}", largest.join(", "))]
            })
            .collect();
        rows.push(vec!["total".into(), grouped(all), String::new(), String::new()]);
        doc.table(&[dimension.name.as_str(), "total", "share", "largest teams"], &[2.2, 1.5, 0.9, 5.0], &rows, true);
    }

    doc.heading(w.rules);
    let rules: Vec<Vec<String>> = data.facts.rules.iter().map(|(n, m)| vec![n.clone(), m.clone()]).collect();
    doc.table(&["rule", "method"], &[3.0, 2.0], &rules, false);

    doc.heading(w.freshness);
    let mut facts = vec![
        vec!["billing data".to_string(), format!("{} line items in {} file(s) from {}", data.facts.line_items, data.facts.input_files, data.facts.source)],
        vec!["billing data as of".to_string(), data.facts.data_through.as_ref().map_or("unknown".to_string(), |d| format!("usage through {d}"))],
        vec!["cost basis".to_string(), format!("{}, {currency}", data.facts.cost_basis)],
        vec!["the bill and the teams".to_string(), crate::summary::bill_to_teams(&data.facts.cost_basis, bill, rate_card, total, grouped)],
        vec!["allocation coverage".to_string(), format!("{:.2}%", data.facts.coverage * 100.0)],
    ];
    if let Some(source) = &data.facts.gpu_source {
        facts.push(vec!["GPU usage".to_string(), source.clone()]);
    }
    if let Some(c) = data.facts.gpu_coverage {
        facts.push(vec!["GPU usage coverage".to_string(), format!("{:.2}% of the period's GPU-hours sampled", c * 100.0)]);
    }
    if let Some(reconciliation) = &data.facts.reconciliation {
        facts.push(vec!["reconciled with Cost Explorer".to_string(), reconciliation.clone()]);
    }
    let trend: Vec<String> = months.iter().map(|m| format!("{} {} ({})", m.month, grouped(m.teams.iter().map(|(_, c)| *c).sum()), m.source)).collect();
    facts.push(vec!["trend months".to_string(), trend.join("; ")]);
    if let Some(labels) = data.alerts.as_ref().map(|a| &a.labels).filter(|l| !l.is_empty()) {
        facts.push(vec!["spike labels".to_string(), label_precision(labels)]);
    }
    for warning in &data.facts.warnings {
        facts.push(vec!["warning".to_string(), warning.clone()]);
    }
    doc.freshness(&facts);

    // Page numbers, now that the count is known.
    let count = doc.pages.len();
    for (i, page) in doc.pages.iter_mut().enumerate() {
        page.text(PAGE_WIDTH - MARGIN, PAGE_HEIGHT - 22.0, 7.0, false, MUTED, Align::Right, &format!("{month} · {} {} / {count}", w.page, i + 1));
    }
    save(data, doc.pages)
}

impl Doc<'_> {
    /// Label and text rows, the text wrapped (warnings and sources can be long).
    fn freshness(&mut self, rows: &[Vec<String>]) {
        let label_width = 130.0;
        let width = PAGE_WIDTH - 2.0 * MARGIN - label_width;
        for row in rows {
            let lines = self.fonts.wrap(&row[1], 8.0, false, width);
            self.room(12.0 * lines.len() as f32 + 4.0);
            let y = self.y;
            let label = self.fonts.fit(&row[0], 8.0, true, label_width - 8.0);
            self.page().text(MARGIN, y + 10.0, 8.0, true, MUTED, Align::Left, &label);
            for (i, l) in lines.iter().enumerate() {
                let fitted = self.fonts.fit(l, 8.0, false, width);
                self.page().text(MARGIN + label_width, y + 10.0 + 12.0 * i as f32, 8.0, false, INK, Align::Left, &fitted);
            }
            self.y += 12.0 * lines.len() as f32 + 4.0;
        }
    }
}

/// The document's bytes: fonts under our own names, dates from the month, and the trailer `/ID`
/// from a hash of the content instead of printpdf's random one.
fn save(data: &ReportData, pages: Vec<Page>) -> Result<Vec<u8>, String> {
    // Every character drawn, for the font subsets.
    let mut chars: std::collections::BTreeSet<char> = std::collections::BTreeSet::new();
    for page in &pages {
        for op in &page.ops {
            if let printpdf::Op::ShowText { items } = op {
                for item in items {
                    if let printpdf::TextItem::Text(t) = item {
                        chars.extend(t.chars());
                    }
                }
            }
        }
    }
    let fonts = pages.first().map(|p| p.fonts).ok_or("no pages")?.subset(&chars)?;
    let mut pdf = PdfDocument::new(&format!("Cloud cost report {}", data.facts.month));
    pdf.resources.fonts.map.insert(FontId(canvas::REGULAR.into()), PdfFont::new(fonts.regular));
    pdf.resources.fonts.map.insert(FontId(canvas::BOLD.into()), PdfFont::new(fonts.bold));
    let stamp = month_end(&data.facts.month);
    pdf.metadata.info.creation_date = stamp.clone();
    pdf.metadata.info.modification_date = stamp.clone();
    pdf.metadata.info.metadata_date = stamp;
    pdf.metadata.info.producer = "finops".into();
    pdf.metadata.info.creator = data.facts.generator.clone();
    let pages: Vec<PdfPage> = pages.into_iter().map(|p| PdfPage::new(printpdf::Mm(PAGE_WIDTH * 25.4 / 72.0), printpdf::Mm(PAGE_HEIGHT * 25.4 / 72.0), p.ops)).collect();
    let mut bytes = pdf.with_pages(pages).save(&PdfSaveOptions::default(), &mut Vec::new());
    fix_trailer_id(&mut bytes)?;
    Ok(bytes)
}

/// The first instant of the month after `month`, as the document's dates.
fn month_end(month: &str) -> printpdf::OffsetDateTime {
    let (y, m): (i32, u32) = (month.get(..4).and_then(|y| y.parse().ok()).unwrap_or(1970), month.get(5..7).and_then(|m| m.parse().ok()).unwrap_or(1));
    let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    let days = chrono::NaiveDate::from_ymd_opt(y, m, 1).map_or(0, |d| d.signed_duration_since(chrono::NaiveDate::default()).num_days());
    printpdf::OffsetDateTime::from_unix_timestamp(days * 86_400).unwrap_or_else(|_| printpdf::OffsetDateTime::from_unix_timestamp(0).expect("the epoch"))
}

/// Replaces the two 32-character strings of the trailer's `/ID` with a hash of everything
/// before them; the same length, so no offset moves.
fn fix_trailer_id(bytes: &mut [u8]) -> Result<(), String> {
    let at = bytes.windows(5).rposition(|w| w == b"/ID [").or_else(|| bytes.windows(4).rposition(|w| w == b"/ID[")).ok_or("the PDF has no trailer /ID")?;
    let digest = sha2::Sha256::digest(&bytes[..at]);
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    let mut strings = 0;
    let mut i = at;
    while strings < 2 && i < bytes.len() {
        if bytes[i] == b'(' {
            let end = bytes[i + 1..].iter().position(|b| *b == b')').ok_or("unterminated /ID string")? + i + 1;
            if end - i - 1 != 32 {
                return Err(format!("unexpected /ID string length {}", end - i - 1));
            }
            bytes[i + 1..end].copy_from_slice(hex.as_bytes());
            strings += 1;
            i = end;
        }
        i += 1;
    }
    if strings == 2 {
        Ok(())
    } else {
        Err("the trailer /ID has fewer than two strings".into())
    }
}
