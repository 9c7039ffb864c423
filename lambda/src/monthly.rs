//! The monthly job: ingest a billing period, allocate it by the rule set, and publish the month's
//! outputs. It wires the crates together; the work is theirs.

use std::collections::BTreeMap;

use finops_allocate::gpu::GpuUsageReport;
use finops_allocate::{Allocation, Cents, CostBasis, Money, RuleSet};
use finops_ingest::BillingSource;
use finops_ingest::{IngestedMonth, Progress, Silent};
use finops_report::allocation::{summary_csv, team_rows, write_team_files, TeamRow};
use finops_report::manifest::PreviousMonthRecord;
use finops_report::manifest::{totals_record, InputRecord, Manifest, RulesRecord, SourceRecord};
use finops_report::sink::{MonthStaging, OutputFile, OutputSink};
use finops_report::summary::service_totals_csv;

use crate::config::{Config, GpuSourceKind};
pub use crate::job::{allocate_ingested, allocate_month, load_rules, open_source, AllocatedMonth, JobError, LoadedRules};
use crate::job::{ingest, out_root};

/// What a run produced, for the caller to print or return.
#[derive(Debug)]
pub struct MonthlyOutcome {
    pub month: String,
    pub output: String,
    /// False when the outputs equal the published month's: nothing was written.
    pub changed: bool,
    pub line_items: u64,
    pub cost_basis: CostBasis,
    pub totals: BTreeMap<CostBasis, Money>,
    /// The bill at the allocated basis as printed: the sum of `services.csv`'s column.
    pub billed_cents: Cents,
    /// On-prem GPU hosts priced by the rate card, as printed: allocated beside the bill, so the
    /// teams add up to `billed_cents + rate_card_cents`.
    pub rate_card_cents: Cents,
    /// With `[gpu]`: the GPU usage the run charged by, or why there was none.
    pub gpu_source: Option<String>,
    /// Idle GPU time at full price, whole (with `[gpu]`): pods' idle and GPUs no pod used.
    pub idle: Option<finops_report::pdf::IdleGpu>,
    /// The month before: its AWS bill, and why team figures do not compare, if not.
    pub previous: Option<finops_report::pdf::PreviousFigures>,
    pub teams: Vec<TeamRow>,
    /// Share of the allocated total that reached a team (not `unallocated`), 0..=1.
    pub coverage: f64,
    /// GPU usage coverage (share of the period with samples), when GPU usage was read.
    pub gpu_coverage: Option<f64>,
    /// What the run decided that changes the numbers or their comparison (also in the manifest).
    pub warnings: Vec<String>,
    pub files: Vec<String>,
    /// The month's alerts and what was delivered.
    pub alerts: crate::alerting::MonthAlerts,
    /// Cost Explorer calls and the reconciliation, when the run called it.
    pub cost_explorer: Option<finops_report::manifest::CostExplorerRecord>,
    /// The Athena query that aggregated the month, when Athena did.
    pub athena: Option<finops_report::manifest::AthenaRecord>,
}

/// The month before, at team level: its totals, and where they came from.
struct PreviousMonth {
    totals: Option<BTreeMap<String, Cents>>,
    /// Its team rows as `summary.csv` would print them (for the report's trend).
    summary: Option<Vec<u8>>,
    /// Its total per service at the allocated basis, and its daily usage per team, service,
    /// account, resource and usage type (for the month-over-month and spike alerts).
    services: BTreeMap<String, f64>,
    days: Vec<finops_allocate::alerts::DayCost>,
    /// Whether its GPU cost was charged by measured usage (`None` without `[gpu]`).
    gpu_measured: Option<bool>,
    record: PreviousMonthRecord,
}

impl PreviousMonth {
    fn without_figures(record: PreviousMonthRecord) -> PreviousMonth {
        PreviousMonth { totals: None, summary: None, services: BTreeMap::new(), days: Vec::new(), gpu_measured: None, record }
    }

    /// Its team figures set aside when they do not compare with this month's
    /// (`finops_allocate::gpu::not_comparable`): the bill and its services still compare.
    fn compare_with(&mut self, month: &str, gpu_measured: Option<bool>) {
        if let Some(why) = finops_allocate::gpu::not_comparable(month, gpu_measured, &self.record.month, self.gpu_measured) {
            self.totals = None;
            self.days.clear();
            self.record.not_comparable = Some(why);
        }
    }
}

/// Team totals of the month before, allocated from the same source by the same rules (one
/// aggregated pass over it). A month the source does not have is no comparison; one that cannot
/// be read or allocated is a warning, never a failure of this month.
async fn previous_month(config: &Config, store: &BillingSource, rules: &RuleSet, month: &str) -> Result<PreviousMonth, JobError> {
    let previous = finops_ingest::previous_month(month)?;
    let record =
        |figures: &str, warning, bill: Option<Cents>| PreviousMonthRecord { month: previous.clone(), figures: figures.to_string(), warning, bill: bill.map(|b| b.to_string()), not_comparable: None };
    Ok(match allocate_month(config, store, rules, Some(previous.clone()), &Silent).await {
        Ok(done) => {
            store.release(&done.ingested.inputs);
            let rows = team_rows(rules, &done.allocation, None);
            PreviousMonth {
                services: service_amounts(&done.service_totals, rules.cost_basis),
                // At the same grain as this month's days, so what drove a spike early in the month
                // is found against the same accounts, resources and usage types.
                days: finops_allocate::alerts::day_costs(rules, &done.allocation),
                summary: Some(summary_csv(&rows)),
                totals: Some(rows.into_iter().map(|r| (r.team, r.total)).collect()),
                gpu_measured: done.allocation.gpu_measured(rules),
                record: record("source", None, Some(done.allocation.billed_and_rate_card_cents().0)),
            }
        }
        Err(JobError::Ingest(finops_ingest::Error::EmptyMonth { .. })) => PreviousMonth::without_figures(record("absent", None, None)),
        Err(e) => {
            let warning = format!("previous month {previous} could not be allocated, so previous_month and change_pct are empty: {e}");
            PreviousMonth::without_figures(record("failed", Some(warning), None))
        }
    })
}

/// The report's trend: the months before `month` (up to `[report] history_months` in all), each
/// from its published `summary.csv` under the output root, else allocated from the source at team
/// level; a month the source does not have is left out. A month that fails is a warning.
async fn report_history(
    config: &Config,
    store: &BillingSource,
    rules: &RuleSet,
    month: &str,
    previous: &PreviousMonth,
    out_root: &finops_report::sink::OutputRoot,
    warnings: &mut Vec<String>,
) -> Result<Vec<finops_report::pdf::HistoryMonth>, JobError> {
    let mut months = Vec::new();
    let mut m = month.to_string();
    for _ in 1..config.report.history_months.max(1) {
        m = finops_ingest::previous_month(&m)?;
        months.push(m.clone());
    }
    let published: Vec<Option<finops_report::pdf::HistoryMonth>> = months.iter().map(|m| finops_report::pdf::read_published(out_root, m)).collect();
    // Unpublished months are read from the source newest first, at most
    // `[report] recompute_months` of them besides the month before (already read); a month the
    // source does not have costs nothing and does not count.
    let bound = config.report.recompute_months as usize;
    let available = if published.iter().skip(1).any(Option::is_none) { store.months(config.source.format).await.ok().flatten() } else { None };
    let mut computed: Vec<Option<(Vec<u8>, Option<Cents>, Option<bool>)>> = vec![None; months.len()];
    let (mut read, mut left_out, mut not_looked) = (0usize, Vec::new(), None);
    for (i, m) in months.iter().enumerate() {
        if published[i].is_some() {
            continue;
        }
        if i == 0 {
            computed[0] = previous.summary.as_ref().map(|summary| (summary.clone(), previous.record.bill.as_deref().and_then(|b| finops_report::pdf::cents(b).ok()), previous.gpu_measured));
            continue;
        }
        if available.as_ref().is_some_and(|a| !a.contains(m)) {
            continue;
        }
        if read >= bound {
            // Where the source's months are known, the month is named; where they are not
            // (FOCUS files, Cost Explorer), the run says how far back it looked.
            match &available {
                Some(_) => left_out.push(m.clone()),
                None => not_looked = not_looked.or(Some(m.clone())),
            }
            continue;
        }
        match allocate_month(config, store, rules, Some(m.clone()), &Silent).await {
            Ok(done) => {
                read += 1;
                store.release(&done.ingested.inputs);
                computed[i] = Some((summary_csv(&team_rows(rules, &done.allocation, None)), Some(done.allocation.billed_and_rate_card_cents().0), done.allocation.gpu_measured(rules)));
            }
            Err(JobError::Ingest(finops_ingest::Error::EmptyMonth { .. })) => {}
            Err(e) => {
                read += 1;
                warnings.push(format!("the report's trend leaves out {m}: it could not be allocated: {e}"));
            }
        }
    }
    if let Some(oldest) = left_out.last().cloned() {
        left_out.reverse();
        warnings.push(format!(
            "the report's trend leaves out {}: a run reads at most {bound} unpublished month(s) from the source ([report] recompute_months); publish them (`finops run --month {oldest}`) or raise the bound",
            left_out.join(", "),
        ));
    }
    if let Some(month) = not_looked {
        warnings.push(format!(
            "the report's trend does not look for {month} or earlier: a run reads at most {bound} unpublished month(s) from the source ([report] recompute_months); publish earlier months (`finops run --month {month}`) or raise the bound"
        ));
    }
    let mut out = Vec::new();
    for ((m, published), computed) in months.iter().zip(published).zip(computed).rev() {
        if let Some(published) = published {
            out.push(published);
        } else if let Some((summary, bill, gpu_measured)) = computed {
            if let Ok(teams) = finops_report::pdf::read_summary(&String::from_utf8_lossy(&summary)) {
                out.push(finops_report::pdf::history_of(m, &teams, "computed from the source", bill, gpu_measured));
            }
        }
    }
    Ok(out)
}

/// The month before as the report compares with it (its bill must be known).
fn previous_figures(record: &PreviousMonthRecord) -> Option<finops_report::pdf::PreviousFigures> {
    Some(finops_report::pdf::PreviousFigures { month: record.month.clone(), bill: finops_report::pdf::cents(record.bill.as_deref()?).ok()?, not_comparable: record.not_comparable.clone() })
}

/// Per service, the month's total at `basis`.
fn service_amounts(totals: &[finops_allocate::ServiceTotal], basis: CostBasis) -> BTreeMap<String, f64> {
    let mut out: BTreeMap<String, f64> = BTreeMap::new();
    for t in totals {
        *out.entry(t.service.clone()).or_default() += t.costs.get(basis).units() as f64 / 1e12;
    }
    out
}

/// Runs the monthly job for `month` (latest present when `None`).
pub async fn run_monthly(config: &Config, month: Option<String>, progress: &dyn Progress) -> Result<MonthlyOutcome, JobError> {
    let loaded = load_rules(&config.rules_path())?;
    let rules = &loaded.rules;
    let store = open_source(config).await?;
    // The output root first: a bad one fails the run before the month is read.
    let out_root = out_root(config).await?;
    // This month's grain first (it names the month when none was asked for), then the previous
    // month's team totals, whose allocation is dropped before this month's is made: only one
    // month's allocation is ever resident.
    let started = std::time::Instant::now();
    let ingested = ingest(config, &store, rules, month, progress).await?;
    tracing::info!(month = %ingested.month, grain_rows = ingested.grain.height(), seconds = started.elapsed().as_secs_f64(), "read to the grain");
    let started = std::time::Instant::now();
    progress.stage("previous month, for the comparison");
    let previous = previous_month(config, &store, rules, &ingested.month).await?;
    tracing::info!(seconds = started.elapsed().as_secs_f64(), "previous month");
    progress.stage("usage drivers, GPU usage and allocation");
    let AllocatedMonth { service_totals, ingested, allocation, gpu_usage, gpu_compared, gpu_comparison } = allocate_ingested(config, rules, ingested).await?;
    progress.stage("writing outputs");
    let gpu_measured = allocation.gpu_measured(rules);
    let mut previous = previous;
    previous.compare_with(&ingested.month, gpu_measured);
    let mut warnings: Vec<String> = previous.record.warning.iter().cloned().collect();
    if let Some(why) = &previous.record.not_comparable {
        warnings.push(format!(
            "team figures are not compared with {}: {why}. previous_month and change_pct are empty, no team month-over-month alert is sent, and the month's spikes are found against its own days; the bill is compared with the bill",
            previous.record.month
        ));
    }
    if let Some(keys) = &ingested.untagged_by_rules {
        warnings.push(untagged_warning(rules, keys));
    }
    warnings.extend(ingested.notes.iter().cloned());
    if ingested.format == finops_ingest::Format::CostExplorer && rules.team_tags.len() > 1 {
        warnings.push(format!(
            "Cost Explorer groups by one tag: cost is read by `{}` only; team_tags {} are not read from it",
            rules.team_tags[0],
            rules.team_tags[1..].iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ")
        ));
    }

    // Whose the unallocated cost is, and what tags those resources carry (read for the largest
    // UNTAGGED_WITH_TAGS: a month of millions of untagged resources lists every one).
    let untagged = finops_allocate::hygiene::untagged(rules, &allocation);
    let account_coverage = finops_allocate::hygiene::account_coverage(&allocation);
    let wanted: std::collections::BTreeSet<String> = untagged.iter().filter(|r| !r.resource.is_empty()).take(UNTAGGED_WITH_TAGS).map(|r| r.resource.to_string()).collect();
    let carried = ingested.resource_tags(&wanted).unwrap_or_else(|e| {
        warnings.push(format!("untagged.csv shows no resource tags: they could not be read: {e}"));
        BTreeMap::new()
    });
    if !wanted.is_empty() && ingested.frame.is_none() {
        warnings.push(format!("untagged.csv shows no resource tags: the {} source has no files to read them from", ingested.format.name()));
    }

    let owners = if config.output.focus_allocated { Some(focus_owners(&ingested, &allocation, &mut warnings)?) } else { None };

    let totals = finops_allocate::cost_frame::grand_totals(&service_totals);
    let reconciliation = reconcile(config, rules.cost_basis, &ingested, &totals, &mut warnings).await;
    let line_items = ingested.inputs.iter().map(|i| i.rows).sum();
    let rows = team_rows(rules, &allocation, previous.totals.as_ref());
    let allocated: i64 = rows.iter().map(|r| r.total.0).sum();
    let unallocated = rows.last().map_or(0, |r| r.total.0);
    let coverage = allocation.coverage();

    progress.stage("earlier months, for the report's trend");
    let history = report_history(config, &store, rules, &ingested.month, &previous, &out_root, &mut warnings).await?;
    let group_cents = allocation.group_cents();
    let (billed_cents, rate_card_cents) = allocation.billed_and_rate_card_cents();
    if coverage < config.checks.min_coverage {
        warnings.push(format!(
            "allocation coverage is {:.1}%, below the {}% threshold ([checks] min_coverage): {} of {} is unallocated; `finops explain --team unallocated` shows which lines no rule or tag claimed",
            coverage * 100.0,
            format!("{:.1}", config.checks.min_coverage * 100.0).trim_end_matches(".0"),
            Cents(unallocated),
            Cents(allocated)
        ));
    }
    let gpu_source = rules.gpu.as_ref().map(|_| gpu_source_text(config, gpu_usage.as_ref(), &ingested.month));
    if let Some(none) = gpu_source.as_ref().filter(|_| gpu_usage.is_none()) {
        warnings.push(format!("GPU usage {none}"));
    }
    // The terminal's `GPU usage:` line and the manifest's gpu.source say it was request-based.
    let charged_scad = gpu_usage.as_ref().is_some_and(|u| u.request_based);
    // Requested usage samples nothing: no coverage to state.
    let gpu_coverage = gpu_usage.as_ref().filter(|u| !u.request_based).map(|u| u.coverage());
    if let (None, Some(scad)) = (&gpu_usage, gpu_compared.as_ref().filter(|u| u.request_based)) {
        warnings.push(format!(
            "the export's split cost allocation data covers {} GPU node(s) ({:.1} GPU-hours requested): set [gpu] source = \"scad\" (or --gpu-usage scad) to charge them by AWS's request-based split",
            scad.nodes.len(),
            scad.observed_hours
        ));
    }
    let split_comparison = finops_report::gpu::split_comparison(rules, &allocation, &gpu_comparison, charged_scad);
    // What people said of earlier alerts: acknowledged spend leaves the baselines, and the
    // labels' precision goes in the report. An unreadable state is a warning, not a failure.
    let said = finops_report::slack::State::load(&finops_report::slack::StateRoot::of(&out_root)).unwrap_or_else(|e| {
        warnings.push(format!("spike labels left out: the alerts' state could not be read: {e}"));
        finops_report::slack::State::default()
    });
    let in_force = finops_report::manifest::rules_in_force(rules, charged_scad);
    let data_through = allocation.lines.iter().filter(|l| !finops_allocate::gpu::is_on_prem(&l.account, &l.service)).map(|l| l.usage_date.to_string()).max();
    let facts = finops_report::pdf::MonthFacts {
        month: ingested.month.clone(),
        cost_basis: rules.cost_basis.name().into(),
        currency: rules.currency.clone(),
        source: ingested.source.clone(),
        line_items,
        input_files: ingested.inputs.len(),
        coverage,
        gpu_coverage,
        gpu_source: gpu_source.clone(),
        data_through: data_through.clone(),
        reconciliation: reconciliation.as_ref().and_then(|(_, r)| r.as_ref()).map(|r| r.summary()),
        rules: in_force.iter().map(|r| (r.name.clone(), r.method.clone())).collect(),
        warnings: warnings.clone(),
        generator: format!("finops {}", env!("CARGO_PKG_VERSION")),
        gpu_measured,
        previous: previous_figures(&previous.record),
    };
    let mut palette_order: Vec<String> = rules.teams.iter().map(|t| t.name.clone()).collect();
    palette_order.sort();
    // Assess: the month's alerts and the messages they become. Nothing is sent until the files
    // the messages point at are published (docs/publishing.md).
    progress.stage("alerts");
    let services_now = service_amounts(&service_totals, rules.cost_basis);
    let before = (previous.record.figures == "source").then(|| crate::alerting::Before {
        teams: previous.totals.as_ref(),
        services: &previous.services,
        days: &previous.days,
        not_comparable: previous.record.not_comparable.as_deref(),
    });
    let alerts_started = std::time::Instant::now();
    let (mut month_alerts, mut messages, team_messages) = crate::alerting::monthly(rules, config, &ingested.month, &allocation, gpu_usage.as_ref(), &rows, &services_now, before, &said);
    let (found, message) = crate::alerting::untagged_message(rules, config, &ingested.month, &untagged, &carried, &account_coverage);
    month_alerts.found.push(found);
    messages.push(message);
    tracing::info!(seconds = alerts_started.elapsed().as_secs_f64(), spikes = month_alerts.report.spikes.len(), "alerts of the month");

    // Render: the month's files, then the manifest that records them.
    progress.stage("writing outputs");
    let mut alerts_json = serde_json::to_vec_pretty(&month_alerts).expect("alerts serialise");
    alerts_json.push(b'\n');
    let summary = summary_csv(&rows);
    let services = service_totals_csv(&service_totals, Some((rules.cost_basis, &group_cents)));
    let trend: Vec<finops_report::manifest::TrendRecord> = history.iter().map(|h| h.record()).collect();
    let gpu_csv = rules.gpu.is_some().then(|| finops_report::gpu::gpu_csv(rules, &allocation));
    // The month by each dimension: a table of cents that keeps summary.csv's team totals.
    let dimension_tables: Vec<_> = (0..rules.dimensions.len()).map(|d| allocation.dimension_table(rules, d)).collect();
    let dimension_files: Vec<OutputFile> = dimension_tables
        .iter()
        .enumerate()
        .map(|(d, table)| OutputFile {
            name: finops_report::dimensions::file_name(&table.name),
            bytes: finops_report::dimensions::summary_csv(rules, table, finops_report::dimensions::gpu_hours_by_value(rules, &allocation, d).as_ref()),
        })
        .collect();
    for table in dimension_tables.iter().filter(|t| !t.rows_match_summary) {
        warnings.push(format!("summary-{}.csv: no rounding of its team × value table keeps every team's total of summary.csv to the cent, so a team's row there may differ from summary.csv by a cent (each is within a cent of its exact amount)", table.name));
    }
    let commitments = finops_report::commitments::record(&finops_allocate::commitments::commitments(rules, &allocation, ingested.grain.bases()));
    let coverage_now = finops_report::untagged::coverage_record(&account_coverage);
    let untagged_csv = finops_report::untagged::untagged_csv(rules, &untagged, &carried);
    let coverage_csv = finops_report::untagged::coverage_csv(&coverage_trend(config, &out_root, &ingested.month, &coverage_now)?);
    let report = finops_report::pdf::ReportData {
        commitments: commitments.clone(),
        gpu_splits: split_comparison.clone(),
        untagged: Some(finops_report::pdf::read_untagged(&String::from_utf8_lossy(&untagged_csv), &String::from_utf8_lossy(&coverage_csv)).map_err(finops_report::Error::Report)?),
        teams: finops_report::pdf::read_summary(&String::from_utf8_lossy(&summary)).map_err(finops_report::Error::Report)?,
        services: finops_report::pdf::read_services(&String::from_utf8_lossy(&services), rules.cost_basis.name()).map_err(finops_report::Error::Report)?,
        facts,
        history,
        palette_order,
        locale: config.report.locale,
        alerts: Some(month_alerts.report.clone()),
        idle: gpu_csv.as_ref().map(|csv| finops_report::pdf::read_gpu_idle(&String::from_utf8_lossy(csv))).transpose().map_err(finops_report::Error::Report)?,
        dimensions: dimension_files.iter().map(|f| finops_report::pdf::read_dimension_summary(&String::from_utf8_lossy(&f.bytes))).collect::<Result<_, _>>().map_err(finops_report::Error::Report)?,
    };
    let started = std::time::Instant::now();
    let pdf = finops_report::pdf::report_pdf(&report).map_err(finops_report::Error::Report)?;
    tracing::info!(seconds = started.elapsed().as_secs_f64(), "report.pdf");
    let mut files = vec![
        OutputFile { name: "summary.csv".into(), bytes: summary },
        OutputFile { name: "alerts.json".into(), bytes: alerts_json },
        OutputFile { name: "services.csv".into(), bytes: services },
        OutputFile { name: "report.pdf".into(), bytes: pdf },
    ];
    if rules.gpu.is_some() {
        files.push(OutputFile { name: "gpu.csv".into(), bytes: gpu_csv.unwrap_or_default() });
        files.push(OutputFile { name: "gpu-namespaces.csv".into(), bytes: finops_report::gpu::gpu_namespaces_csv(rules, &allocation) });
        files.push(OutputFile { name: "gpu-pods.csv".into(), bytes: finops_report::gpu::gpu_pods_csv(rules, &allocation) });
        if !split_comparison.is_empty() {
            files.push(OutputFile { name: "gpu-scad-comparison.csv".into(), bytes: finops_report::gpu::split_comparison_csv(&split_comparison) });
        }
    }
    files.extend(dimension_files);
    if let Some(c) = &commitments {
        files.push(OutputFile { name: "commitments.csv".into(), bytes: finops_report::commitments::csv(c) });
    }
    files.push(OutputFile { name: "untagged.csv".into(), bytes: untagged_csv });
    files.push(OutputFile { name: "coverage.csv".into(), bytes: coverage_csv });
    let athena = ingested.athena.as_ref().map(athena_record);
    let calls = store.api_calls() + reconciliation.as_ref().map_or(0, |(calls, _)| *calls);
    let cost_explorer = (calls > 0).then(|| finops_report::manifest::CostExplorerRecord {
        calls,
        dollars: format!("{:.2}", f64::from(calls) * finops_ingest::cost_explorer::DOLLARS_PER_CALL),
        reconciliation: reconciliation.and_then(|(_, r)| r),
    });
    let mut manifest = Manifest {
        billing_period: ingested.month.clone(),
        status: "complete".into(),
        generator: format!("finops {}", env!("CARGO_PKG_VERSION")),
        source: SourceRecord { location: ingested.source.clone(), format: ingested.format.name().into(), manifest: ingested.manifest.clone() },
        inputs: ingested.inputs.iter().map(|i| InputRecord { key: i.key.clone(), bytes: i.bytes, sha256: i.sha256.clone(), rows: i.rows }).collect(),
        rules: RulesRecord { file: loaded.path.clone(), sha256: loaded.sha256.clone(), cost_basis: rules.cost_basis.name().into(), currency: rules.currency.clone(), in_force },
        line_items,
        data_through,
        totals: totals_record(&totals, (rules.cost_basis, billed_cents)),
        allocated: Cents(allocated).to_string(),
        unallocated: Cents(unallocated).to_string(),
        coverage: format!("{:.4}", coverage),
        coverage_by_account: coverage_now,
        commitments,
        bill_to_teams: finops_report::summary::bill_to_teams(rules.cost_basis.name(), billed_cents, rate_card_cents, Cents(allocated), |c| c.to_string()),
        teams: rows.iter().map(|r| (r.team.clone(), finops_report::manifest::TotalRecord { exact: r.exact.to_string(), rounded: r.total.to_string() })).collect(),
        dimensions: dimension_tables
            .iter()
            .map(|t| {
                let values = t
                    .values
                    .iter()
                    .zip(&t.totals)
                    .zip(&t.exact)
                    .map(|((v, rounded), exact)| (v.clone(), finops_report::manifest::TotalRecord { exact: exact.to_string(), rounded: rounded.to_string() }));
                (t.name.clone(), values.collect())
            })
            .collect(),
        previous_month: previous.record.clone(),
        warnings: warnings.clone(),
        cost_explorer: cost_explorer.clone(),
        athena: athena.clone(),
        gpu: finops_report::gpu::gpu_record(rules, &allocation, gpu_usage.as_ref(), gpu_source.as_deref().unwrap_or_default(), split_comparison.clone()),
        files: Vec::new(),
        trend,
    };

    // Publish, holding the month's lease: one run of a month at a time.
    progress.stage("publishing");
    let month = ingested.month.clone();
    let patience = std::time::Duration::from_secs(config.output.lock_wait_seconds);
    let lease = out_root.acquire(&month, &format!("publishing {month}"), std::time::Duration::from_secs(900), patience)?;
    let focus = owners.as_ref().map(|owners| finops_report::focus::FocusInput { rules, allocation: &allocation, bases: ingested.grain.bases(), owners });
    let published = publish_month(&out_root, &month, rules, &allocation, focus.as_ref(), &files, &mut manifest);
    let (published, before_revision) = match published {
        Ok(done) => done,
        Err(e) => {
            lease.release();
            return Err(e);
        }
    };
    drop(files);
    progress.finish();
    tracing::info!(seconds = started.elapsed().as_secs_f64(), changed = published.changed, "published");
    for left in &published.superseded_left {
        warnings.push(format!("{left}: a superseded object could not be removed (no reader reaches it; remove it by hand)"));
    }

    // Notify, only now that what the messages point at exists. A delivery failure leaves the
    // messages pending for the next run and never undoes the publish.
    let mut notes = Vec::new();
    let links = match crate::alerting::csv_links(config, &out_root, &month, &manifest.files).await {
        Ok(links) => links,
        Err(e) => {
            notes.push(format!("the monthly messages carry no CSV links: {e}"));
            BTreeMap::new()
        }
    };
    messages.extend(team_messages.iter().map(|m| m.with_link(links.get(&finops_report::names::sanitise_file_stem(&m.team)))));
    if let (true, Some(before)) = (published.changed, &before_revision) {
        // Only a team that was told the first figures is told they changed; one whose monthly
        // message is still pending gets the new figures in it.
        let told = finops_report::slack::State::load(&finops_report::slack::StateRoot::of(&out_root)).map(|s| s.sent).unwrap_or_default();
        for (team, found, message) in crate::alerting::revised(rules, config, &month, before, &manifest) {
            if told.contains_key(&format!("monthly:{team}:{month}")) {
                month_alerts.found.push(found);
                messages.push(message);
            }
        }
    }
    month_alerts.delivery = match crate::alerting::deliver(rules, config, &out_root, messages).await {
        Ok(delivery) => delivery,
        Err(e) => {
            notes.push(format!("the month is published, but its messages were not delivered: {e}; the next run (daily or monthly) delivers them"));
            finops_report::slack::Delivery::default()
        }
    };
    lease.release();
    warnings.extend(notes);
    let names: Vec<String> = manifest.files.iter().map(|f| f.name.clone()).chain(["manifest.json".to_string()]).collect();
    Ok(MonthlyOutcome {
        month,
        output: published.location,
        changed: published.changed,
        line_items,
        cost_basis: rules.cost_basis,
        totals,
        billed_cents,
        rate_card_cents,
        gpu_source,
        previous: previous_figures(&previous.record),
        idle: report.idle.clone(),
        teams: rows,
        coverage,
        gpu_coverage,
        warnings,
        files: names,
        alerts: month_alerts,
        cost_explorer,
        athena,
    })
}

/// Untagged resources whose tags `untagged.csv` shows (the largest by cost).
const UNTAGGED_WITH_TAGS: usize = 1000;

/// Each account's coverage over the published months before `month` (up to `[report]
/// history_months` in all, months published before coverage was recorded left out), then this
/// month's: what `coverage.csv` prints.
fn coverage_trend(
    config: &Config,
    out_root: &finops_report::sink::OutputRoot,
    month: &str,
    now: &BTreeMap<String, finops_report::manifest::CoverageRecord>,
) -> Result<Vec<(String, BTreeMap<String, finops_report::manifest::CoverageRecord>)>, JobError> {
    let mut months = Vec::new();
    let mut m = month.to_string();
    for _ in 1..config.report.history_months.max(1) {
        m = finops_ingest::previous_month(&m)?;
        let published = out_root.manifest(&m)?.and_then(|bytes| Manifest::parse(&bytes).ok()).filter(|p| !p.coverage_by_account.is_empty());
        if let Some(p) = published {
            months.push((m.clone(), p.coverage_by_account));
        }
    }
    months.reverse();
    months.push((month.to_string(), now.clone()));
    Ok(months)
}

/// Who bills each account, for the FOCUS allocated output; accounts whose billing account the
/// source does not name are a warning of the run (terminal and manifest). On-prem GPU at the
/// rate card is no charge of the bill and never in that output: `bill_to_teams` says how much.
fn focus_owners(ingested: &IngestedMonth, allocation: &Allocation, warnings: &mut Vec<String>) -> Result<finops_allocate::cost_frame::AccountOwners, JobError> {
    let owners = ingested.account_owners()?;
    let accounts: std::collections::BTreeSet<&str> = allocation.lines.iter().filter(|l| l.origin != finops_allocate::CostLine::OFF_BILL).map(|l| &*l.account).collect();
    let no_payer: Vec<&str> = accounts.iter().copied().filter(|a| owners.of(a).billing_account.is_none()).collect();
    if !no_payer.is_empty() {
        warnings.push(format!(
            "focus-allocated: BillingAccountId is empty for {} account(s) ({}): the {} source does not name their billing account",
            no_payer.len(),
            no_payer.iter().take(3).copied().collect::<Vec<_>>().join(", "),
            ingested.format.name()
        ));
    }
    Ok(owners)
}

/// Writes the month's files and its team CSVs beside the published version, then the manifest
/// that makes them the month. Returns what the publish did and the manifest it replaced (for
/// the revised-month messages). On error the published month is as it was.
fn publish_month(
    root: &finops_report::sink::OutputRoot,
    month: &str,
    rules: &RuleSet,
    allocation: &Allocation,
    focus: Option<&finops_report::focus::FocusInput>,
    files: &[OutputFile],
    manifest: &mut Manifest,
) -> Result<(finops_report::sink::Published, Option<Manifest>), JobError> {
    // Staged under the lease: the version it replaces is the one the revised messages compare with.
    let mut staging = root.stage(month)?;
    let before = staging.replaces().and_then(|bytes| Manifest::parse(bytes).map_err(|e| tracing::warn!(error = %e, "the published manifest is not readable; no revised messages")).ok());
    let mut records = Vec::new();
    let mut written: Result<(), finops_report::Error> = files.iter().try_for_each(|f| {
        records.push(staging.write(f)?);
        Ok(())
    });
    if written.is_ok() {
        // Team CSVs one at a time, each streamed into the staging: none is held in memory.
        written = write_team_files(rules, allocation, &mut |name, fill| {
            records.push(staging.write_streamed(name, fill)?);
            Ok(())
        });
    }
    if let (true, Some(focus)) = (written.is_ok(), focus) {
        // The FOCUS rows streamed too: a piece per row, as many as the team CSVs hold.
        written = (|| {
            records.push(staging.write_streamed("focus-allocated.parquet", &mut |out| finops_report::focus::write_parquet(focus, out))?);
            records.push(staging.write_streamed("focus-allocated.csv", &mut |out| finops_report::focus::write_csv(focus, out))?);
            Ok(())
        })();
    }
    if let Err(e) = written {
        staging.abandon();
        return Err(e.into());
    }
    manifest.files = records;
    Ok((staging.publish(&manifest.to_file())?, before))
}

/// The Athena query as the manifest records it.
fn athena_record(q: &finops_ingest::athena::AthenaQuery) -> finops_report::manifest::AthenaRecord {
    finops_report::manifest::AthenaRecord {
        query_id: q.query_id.clone(),
        sql_sha256: q.sql_sha256.clone(),
        bytes_scanned: q.bytes_scanned,
        dollars: q.dollars.clone(),
        engine_ms: q.engine_ms,
        result: q.result.clone(),
    }
}

/// With `[reconcile] cost_explorer`: the export's month total against Cost Explorer's for the
/// same metric, with the calls it took. A difference past the tolerance, or a check that could
/// not run, is a warning; the month is still published.
async fn reconcile(
    config: &Config,
    basis: CostBasis,
    ingested: &IngestedMonth,
    totals: &BTreeMap<CostBasis, Money>,
    warnings: &mut Vec<String>,
) -> Option<(u32, Option<finops_report::manifest::ReconciliationRecord>)> {
    if !config.reconcile.cost_explorer {
        return None;
    }
    if ingested.format == finops_ingest::Format::CostExplorer {
        warnings.push("[reconcile] cost_explorer is skipped: the source is Cost Explorer itself".into());
        return None;
    }
    let Some(metric) = finops_ingest::cost_explorer::metric_of(basis) else {
        warnings.push(format!("[reconcile] cost_explorer is skipped: Cost Explorer has no `{}` cost to compare with", basis.name()));
        return None;
    };
    let explorer = finops_ingest::cost_explorer::CostExplorer::open(&config.aws).await;
    let reference = explorer.month_total(&ingested.month, basis).await;
    let calls = explorer.calls();
    let reference = match reference {
        Ok(total) => total,
        Err(e) => {
            warnings.push(format!("the export could not be reconciled with Cost Explorer: {e}"));
            return Some((calls, None));
        }
    };
    let check = finops_allocate::cost_frame::Reconciliation { source: totals.get(&basis).copied().unwrap_or_default(), reference };
    let record = finops_report::manifest::ReconciliationRecord::new(metric, &check, config.reconcile.tolerance);
    tracing::info!(month = %ingested.month, summary = %record.summary(), "reconciled with Cost Explorer");
    if !record.within_tolerance {
        warnings.push(format!(
            "the export does not reconcile with Cost Explorer: {}. Check that the export covers every account of the payer and that the month is final ([reconcile] tolerance)",
            record.summary()
        ));
    }
    Some((calls, Some(record)))
}

/// Which GPU usage a run with `[gpu]` charged by, or why it had none (then GPU line items go
/// through the other rules, which changes the numbers: the caller warns).
fn gpu_source_text(config: &Config, usage: Option<&GpuUsageReport>, month: &str) -> String {
    const FALLBACK: &str = "GPU line items went through the other rules";
    match (usage, config.gpu_source()) {
        (Some(_), GpuSourceKind::Scad) => {
            "split cost allocation data of the CUR 2.0 export: AWS's request-based split of each GPU node over its pods (GPU-hours requested, GPU 9 : CPU+memory 1); no utilisation, so the rules' basis and idle threshold do not apply".into()
        }
        (None, GpuSourceKind::Scad) => format!("none: the {month} export has no split cost allocation data for GPU nodes ([gpu] source = \"scad\"); {FALLBACK}"),
        (Some(u), GpuSourceKind::Prometheus) => format!("DCGM series from Prometheus at {}", u.source),
        (Some(u), _) => format!("recorded file {}", u.source),
        (None, GpuSourceKind::Recorded) => {
            let dir = config.recorded_gpu_usage();
            format!("none: no GPU usage recorded for {month} in {} (expected {month}.csv.gz); {FALLBACK}", dir.display())
        }
        (None, GpuSourceKind::Prometheus) => {
            format!("none: Prometheus at {} has no DCGM series for {month}; {FALLBACK}", config.prometheus.url.as_deref().unwrap_or_default())
        }
        (None, _) if config.gpu.source == GpuSourceKind::None => format!("none: switched off (--gpu-usage none, or [gpu] source = \"none\"); {FALLBACK}"),
        (None, _) => {
            format!("none: no GPU usage source for this billing source (set --gpu-usage prometheus or a folder of recorded usage, or [gpu] source and [prometheus] url in finops.toml); {FALLBACK}")
        }
    }
}

/// A rule set whose team tag keys are in none of the month's data: say which keys the data has.
fn untagged_warning(rules: &RuleSet, data_keys: &std::collections::BTreeSet<String>) -> String {
    let ours = rules.team_tags.join(", ");
    if data_keys.is_empty() {
        format!("none of the rule set's team tag keys ({ours}) appear in the billing data, which carries no tags at all: no cost is allocated by tag")
    } else {
        let theirs: Vec<&str> = data_keys.iter().map(String::as_str).collect();
        format!(
            "none of the rule set's team tag keys ({ours}) appear in the billing data: no cost is allocated by tag. The data's tag keys are: {}. Name the ones that identify teams in team_tags",
            theirs.join(", ")
        )
    }
}

/// Rebuilds `report.pdf` of a month already published under the output root (a folder or an
/// S3 prefix), from its own files (summary.csv, services.csv, manifest.json) and the months
/// published before it: no billing data is read and nothing is re-allocated. The PDF and the
/// manifest's record of it are replaced, each whole.
pub async fn rebuild_report(config: &Config, month: &str) -> Result<String, JobError> {
    finops_ingest::check_month(month)?;
    let root = out_root(config).await?;
    let shown = |name: &str| root.shown(&format!("{month}/{name}"));
    let read = |name: &str| -> Result<String, JobError> {
        let bytes = root.read(month, name)?.ok_or_else(|| JobError::Output(format!("{}: not published: run `finops run --month {month}` first to publish the month", shown(name))))?;
        String::from_utf8(bytes).map_err(|_| JobError::Output(format!("{}: not UTF-8 text", shown(name))))
    };
    let (summary, services, manifest_text) = (read("summary.csv")?, read("services.csv")?, read("manifest.json")?);
    let manifest = Manifest::parse(manifest_text.as_bytes()).map_err(|e| JobError::Output(format!("{}: {e}", shown("manifest.json"))))?;
    let cost_basis = manifest.rules.cost_basis.clone();
    let teams = finops_report::pdf::read_summary(&summary).map_err(JobError::Output)?;
    let mut palette_order: Vec<String> = teams[..teams.len().saturating_sub(1)].iter().map(|t| t.team.clone()).collect();
    palette_order.sort();
    // The trend the run drew, as its manifest records it; a month published by an older finops
    // (no trend recorded) gets the months published beside it.
    let mut history = Vec::new();
    if manifest.trend.is_empty() {
        let mut m = month.to_string();
        for _ in 1..config.report.history_months.max(1) {
            m = finops_ingest::previous_month(&m)?;
            history.extend(finops_report::pdf::read_published(&root, &m));
        }
        history.reverse();
    } else {
        for record in &manifest.trend {
            history.push(finops_report::pdf::HistoryMonth::from_record(record).map_err(|e| JobError::Output(format!("{}: {e}", shown("manifest.json"))))?);
        }
    }
    let facts = finops_report::pdf::MonthFacts {
        gpu_measured: manifest.gpu.as_ref().map(finops_report::gpu::GpuRecord::measured),
        previous: previous_figures(&manifest.previous_month),
        month: month.to_string(),
        cost_basis: cost_basis.clone(),
        currency: manifest.rules.currency.clone(),
        source: manifest.source.location.clone(),
        line_items: manifest.line_items,
        input_files: manifest.inputs.len(),
        coverage: manifest.coverage.parse().unwrap_or(0.0),
        gpu_coverage: manifest.gpu.as_ref().and_then(|g| g.coverage.parse().ok()),
        gpu_source: manifest.gpu.as_ref().map(|g| g.source.clone()),
        data_through: manifest.data_through.clone(),
        reconciliation: manifest.cost_explorer.as_ref().and_then(|c| c.reconciliation.as_ref()).map(|r| r.summary()),
        rules: manifest.rules.in_force.iter().map(|r| (r.name.clone(), r.method.clone())).collect(),
        warnings: manifest.warnings.clone(),
        generator: manifest.generator.clone(),
    };
    let data = finops_report::pdf::ReportData {
        facts,
        services: finops_report::pdf::read_services(&services, &cost_basis).map_err(JobError::Output)?,
        teams,
        history,
        palette_order,
        locale: config.report.locale,
        alerts: root.read(month, "alerts.json").ok().flatten().and_then(|b| serde_json::from_slice(&b).ok()),
        idle: match root.read(month, "gpu.csv")? {
            Some(csv) => Some(finops_report::pdf::read_gpu_idle(&String::from_utf8_lossy(&csv)).map_err(|e| JobError::Output(format!("{}: {e}", shown("gpu.csv"))))?),
            None => None,
        },
        // The dimensions the manifest records, from their published summaries.
        dimensions: manifest
            .dimensions
            .keys()
            .map(|name| {
                let file = finops_report::dimensions::file_name(name);
                finops_report::pdf::read_dimension_summary(&read(&file)?).map_err(|e| JobError::Output(format!("{}: {e}", shown(&file))))
            })
            .collect::<Result<_, _>>()?,
        commitments: manifest.commitments.clone(),
        gpu_splits: manifest.gpu.as_ref().map(|g| g.split_comparison.clone()).unwrap_or_default(),
        // A month published before these files has no untagged page.
        untagged: match (root.read(month, "untagged.csv")?, root.read(month, "coverage.csv")?) {
            (Some(untagged), Some(coverage)) => Some(
                finops_report::pdf::read_untagged(&String::from_utf8_lossy(&untagged), &String::from_utf8_lossy(&coverage)).map_err(|e| JobError::Output(format!("{}: {e}", shown("untagged.csv"))))?,
            ),
            _ => None,
        },
    };
    let pdf = finops_report::pdf::report_pdf(&data).map_err(JobError::Output)?;
    // Published like a run's files: the new PDF beside the old, then the manifest recording it,
    // then the old PDF goes (each replaced whole, with the root's encryption).
    let lease = root.acquire(month, &format!("rebuilding {month}'s report"), std::time::Duration::from_secs(300), std::time::Duration::from_secs(config.output.lock_wait_seconds))?;
    let written = root.replace_published_file(month, &OutputFile { name: "report.pdf".into(), bytes: pdf });
    lease.release();
    Ok(written?)
}
