//! What each command does: the jobs are the library's; this prints what they did.

use std::path::PathBuf;

use anyhow::Context;
use finops_allocate::CostBasis;
use finops_lambda::config::Config;
use finops_lambda::monthly::{allocate_month, load_rules, run_monthly};

use super::args::{AckReason, AlertsAction, Cli, Command, DiffFormat, RulesCommand};
use super::progress::TerminalProgress;

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run { month, out, quiet, source } => {
            let mut settings = source.settings_with_secrets().await?;
            if let Some(out) = out {
                settings.output.location = out;
            }
            let progress = TerminalProgress::new(quiet);
            let outcome = run_monthly(&settings, month, &progress).await.with_context(|| format!("monthly job on {} failed; nothing was written", settings.source.location))?;
            println!("billing period {}: {} line items from {}", outcome.month, outcome.line_items, settings.source.location);
            for basis in CostBasis::ALL {
                if let Some(total) = outcome.totals.get(&basis) {
                    let (printed, marker) = if basis == outcome.cost_basis { (outcome.billed_cents, "  <- allocated") } else { (total.round_to_cents(), "") };
                    println!("  {:<14} {:>16}{marker}", basis.name(), printed.to_string());
                }
            }
            println!("teams ({}):", outcome.cost_basis.name());
            for row in &outcome.teams {
                println!("  {:<14} {:>16}", row.team, row.total.to_string());
            }
            let allocated: finops_allocate::Cents = outcome.teams.iter().map(|r| r.total).sum();
            println!("  {:<14} {:>16}", "", "-".repeat(12));
            if outcome.rate_card_cents == finops_allocate::Cents(0) {
                println!("  {:<14} {:>16}  = the AWS bill ({})", "total", allocated.to_string(), outcome.cost_basis.name());
            } else {
                println!("  {:<14} {:>16}  = the AWS bill {} + on-prem GPU at the rate card {}", "total", allocated.to_string(), outcome.billed_cents, outcome.rate_card_cents);
            }
            if let Some(p) = &outcome.previous {
                let change = (p.bill.0 != 0).then(|| format!(" ({:+.1}%)", (outcome.billed_cents.0 - p.bill.0) as f64 / p.bill.0.abs() as f64 * 100.0)).unwrap_or_default();
                println!("the AWS bill vs {}: {} -> {}{change}", p.month, p.bill, outcome.billed_cents);
                if let Some(why) = &p.not_comparable {
                    println!("team figures not compared with {}: {why}", p.month);
                }
            }
            let unallocated = outcome.teams.last().map(|r| r.total.to_string()).unwrap_or_default();
            println!("allocation coverage: {:.1}% (unallocated {unallocated})", outcome.coverage * 100.0);
            if let Some(source) = &outcome.gpu_source {
                println!("GPU usage: {source}");
            }
            if outcome.gpu_source.as_deref().is_some_and(finops_report::gpu::is_request_based) {
                let gpu: finops_allocate::Cents = outcome.teams.iter().map(|r| r.gpu).sum();
                let hours: f64 = outcome.teams.iter().map(|r| r.gpu_usage.gpu_hours).sum();
                println!("GPU: {gpu} charged by AWS's split over {hours:.1} GPU-hours requested (no utilisation measured)");
            }
            if let Some(gpu_coverage) = outcome.gpu_coverage {
                let gpu: finops_allocate::Cents = outcome.teams.iter().map(|r| r.gpu).sum();
                let hours: f64 = outcome.teams.iter().map(|r| r.gpu_usage.gpu_hours).sum();
                println!("GPU: {gpu} charged by {hours:.1} GPU-hours; usage data covers {:.2}% of the period", gpu_coverage * 100.0);
                if let Some(i) = &outcome.idle {
                    println!(
                        "idle GPU time at full price: {} for {:.1} GPU-hours = pods idle {} ({:.1} h) + GPUs no pod used {} ({:.1} h)",
                        i.cost(),
                        i.hours(),
                        i.pods_cost,
                        i.pods_hours,
                        i.no_pod_cost,
                        i.no_pod_hours
                    );
                }
            }
            if let Some(q) = &outcome.athena {
                println!("Athena: query {} scanned {} bytes (${} at $5/TB), {} ms; result {}", q.query_id, q.bytes_scanned, q.dollars, q.engine_ms, q.result);
            }
            if let Some(ce) = &outcome.cost_explorer {
                println!("Cost Explorer: {} GetCostAndUsage call(s), ${}", ce.calls, ce.dollars);
                if let Some(r) = &ce.reconciliation {
                    println!("reconciliation: {}", r.summary());
                }
            }
            if outcome.changed {
                println!("wrote {}/:", outcome.output);
            } else {
                println!("unchanged {}/: the published month already holds exactly these outputs; nothing was written", outcome.output);
            }
            for file in outcome.files.iter().filter(|f| !f.starts_with("teams/")) {
                println!("  {}/{}", outcome.output, file);
            }
            let teams = outcome.files.iter().filter(|f| f.starts_with("teams/")).count();
            println!("  {}/teams/ ({teams} team CSVs)", outcome.output);
            let a = &outcome.alerts;
            print_alerts(
                &format!("alerts for {} ({} daily spikes, {} namespaces with idle GPUs; the daily check sends those)", outcome.month, a.report.spikes.len(), a.report.idle_gpu.len()),
                &a.found,
                &a.delivery,
                &format!("{}/alerts.json", outcome.output),
            );
            // Last, where they are seen: what the run decided that changes the numbers (also in
            // the manifest's `warnings`).
            for warning in &outcome.warnings {
                eprintln!("warning: {warning}");
            }
            if !a.delivery.pending.is_empty() {
                // The month is published; its messages wait for the next run (daily or monthly).
                eprintln!("warning: {} alert(s) could not be delivered and stay pending; the next run (daily or monthly) delivers them", a.delivery.pending.len());
            }
            Ok(())
        }
        Command::Alerts { action: Some(AlertsAction::Ack { id, reason, out, config }), .. } => {
            let mut settings = match &config {
                Some(path) => Config::load(path)?,
                None => Config::default(),
            };
            if let Some(out) = out {
                settings.output.location = out;
            }
            let reason = match reason {
                AckReason::Planned => finops_allocate::alerts::Feedback::Planned,
                AckReason::Expected => finops_allocate::alerts::Feedback::Expected,
                AckReason::Wrong => finops_allocate::alerts::Feedback::Wrong,
            };
            println!("{}", finops_lambda::alerting::acknowledge(&settings, &id, reason).await.context("could not record the label")?);
            Ok(())
        }
        Command::Alerts { action: None, day, out, quiet, source } => {
            let mut settings = source.settings_with_secrets().await?;
            if let Some(out) = out {
                settings.output.location = out;
            }
            let progress = TerminalProgress::new(quiet);
            let outcome = finops_lambda::alerting::run_daily(&settings, day, finops_lambda::alerting::ShortBaseline::Warn, &progress).await.context("daily alert check failed")?;
            if outcome.days.is_empty() {
                println!("every complete day is checked already (see checked_through in alerts-state.json); --day DAY checks a day again");
            }
            for note in &outcome.notes {
                println!("{note}");
            }
            print_alerts(&format!("alerts for {}", outcome.days.join(", ")), &outcome.found, &outcome.delivery, &outcome.written.join(", "));
            if !outcome.delivery.pending.is_empty() {
                anyhow::bail!("{} alert(s) could not be delivered and stay pending; the next run retries them", outcome.delivery.pending.len());
            }
            Ok(())
        }
        Command::Report { month, out, config } => {
            let mut settings = match &config {
                Some(path) => Config::load(path)?,
                None => Config::default(),
            };
            if let Some(out) = out {
                settings.output.location = out;
            }
            let started = std::time::Instant::now();
            let written = finops_lambda::monthly::rebuild_report(&settings, &month).await?;
            println!("wrote {written} in {:.2} s", started.elapsed().as_secs_f64());
            Ok(())
        }
        Command::Rules { command: RulesCommand::Check { path } } => {
            let files = rule_files(&path)?;
            let mut problems = 0;
            for file in &files {
                match load_rules(file) {
                    Ok(loaded) => {
                        let r = &loaded.rules;
                        // Driver files are part of a rule set's validity: read them now.
                        // and checked as `run` will check them (keys that map to no team).
                        let mut driver_problems = 0;
                        let mut samples = std::collections::HashMap::new();
                        for (rule, driver) in r.metric_drivers() {
                            if let finops_allocate::rules::DriverSource::File { path, at } = &driver.source {
                                match finops_ingest::usage::read_driver_file(path, &at.to_string()) {
                                    Ok(read) => {
                                        samples.insert(rule.to_string(), read);
                                    }
                                    Err(e) => {
                                        eprintln!("{e}");
                                        driver_problems += 1;
                                    }
                                }
                            }
                        }
                        for problem in finops_allocate::shares::check_metric_drivers(r, &samples) {
                            eprintln!("{problem}");
                            driver_problems += 1;
                        }
                        if driver_problems == 0 {
                            let gpu = r.gpu.as_ref().map(|g| format!("; GPU chargeback by {} GPU-hours", g.basis.name())).unwrap_or_default();
                            let names: Vec<&str> = r.dimensions.iter().map(|d| d.name.as_str()).collect();
                            let dimensions = if names.is_empty() { String::new() } else { format!("; {} ({})", count(names.len(), "dimension"), names.join(", ")) };
                            println!(
                                "{}: ok ({}, {}, {}; cost basis {}{gpu}{dimensions})",
                                file.display(),
                                count(r.teams.len(), "team"),
                                count(r.assign.len(), "assign rule"),
                                count(r.share.len(), "share rule"),
                                r.cost_basis.name()
                            );
                        }
                        problems += driver_problems;
                    }
                    Err(finops_lambda::monthly::JobError::RuleSet(e)) => {
                        eprintln!("{e}");
                        problems += e.problems.len();
                    }
                    Err(e) => {
                        eprintln!("{e}");
                        problems += 1;
                    }
                }
            }
            if problems > 0 {
                anyhow::bail!("{problems} problem(s) in {}", path.display());
            }
            Ok(())
        }
        Command::Sql { month, dialect, source } => {
            let settings = source.settings()?;
            let loaded = load_rules(&settings.rules_path())?;
            let tag_keys = loaded.rules.tag_keys();
            let query = match dialect {
                finops_ingest::grain_sql::Dialect::Trino => {
                    finops_ingest::check_month(&month)?;
                    finops_ingest::grain_sql::GrainQuery {
                        month: month.clone(),
                        tag_keys,
                        table: finops_ingest::grain_sql::Table::Catalog { database: settings.athena.database.clone(), table: settings.athena.table.clone() },
                    }
                }
                finops_ingest::grain_sql::Dialect::DuckDb => {
                    let source = finops_lambda::monthly::open_source(&settings).await?;
                    source.grain_query(settings.source.format, &month, &tag_keys).await?
                }
            };
            print!("{}", query.render(dialect));
            Ok(())
        }
        Command::Diff { base, month, format, lines, fail_above, quiet, source } => {
            let Some(proposed_path) = source.rules.clone() else {
                anyhow::bail!(
                    "finops diff compares proposed rules with the rules in force: give them with --rules <proposed.toml> (and --base <rules.toml> when the rules in force are not the config's)"
                );
            };
            let base_path = match base {
                Some(path) => path,
                None => {
                    let mut in_force = source.clone();
                    in_force.rules = None;
                    in_force.settings()?.rules_path()
                }
            };
            let limit = fail_above.as_deref().map(MoveLimit::parse).transpose()?;
            let settings = source.settings_with_secrets().await?;
            let (base, proposed) = (load_rules(&base_path)?, load_rules(&proposed_path)?);
            let store = finops_lambda::monthly::open_source(&settings).await?;
            let (month, before, after) = finops_lambda::job::allocate_twice(&settings, &store, &base.rules, &proposed.rules, month, &TerminalProgress::new(quiet)).await?;
            let started = std::time::Instant::now();
            let diff = finops_report::diff::compare(&month, (&base.rules, &before), (&proposed.rules, &after));
            tracing::info!(seconds = started.elapsed().as_secs_f64(), moved_lines = diff.moved_lines.len(), "compared");
            match format {
                DiffFormat::Text => print!("{}", diff.text(lines)),
                DiffFormat::Markdown => print!("{}", diff.markdown(lines)),
                DiffFormat::Csv => {
                    use std::io::Write as _;
                    std::io::stdout().write_all(&diff.csv())?;
                }
            }
            if let Some(limit) = limit {
                let over: Vec<String> = diff
                    .teams
                    .iter()
                    .filter(|c| limit.exceeded_by(c))
                    .map(|c| format!("{} {} ({})", c.name, finops_report::diff::signed(c.change()), c.pct().map_or("new".to_string(), |p| format!("{p:+.1}%"))))
                    .collect();
                if !over.is_empty() {
                    return Err(OverLimit(format!("{} moved more than --fail-above {}: {}", if over.len() == 1 { "a team" } else { "teams" }, limit.text, over.join(", "))).into());
                }
            }
            Ok(())
        }
        Command::Explain { team, month, service, quiet, source } => {
            let settings = source.settings_with_secrets().await?;
            let loaded = load_rules(&settings.rules_path())?;
            let store = finops_lambda::monthly::open_source(&settings).await?;
            let done = allocate_month(&settings, &store, &loaded.rules, month, &TerminalProgress::new(quiet)).await?;
            let text = finops_report::allocation::explain(&loaded.rules, &done.allocation, &team, service.as_deref()).map_err(|e| anyhow::anyhow!("{e} ({})", loaded.path))?;
            print!("{text}");
            Ok(())
        }
    }
}

/// `finops diff --fail-above`: an amount, or a share of a team's cost before (`5%`).
struct MoveLimit {
    text: String,
    amount: Option<i64>,
    pct: Option<f64>,
}

impl MoveLimit {
    fn parse(text: &str) -> anyhow::Result<MoveLimit> {
        let bad = || anyhow::anyhow!("--fail-above {text}: give an amount (500) or a percentage of the team's cost before (5%)");
        let t = text.trim();
        match t.strip_suffix('%') {
            Some(p) => Ok(MoveLimit { text: t.to_string(), amount: None, pct: Some(p.trim().parse::<f64>().ok().filter(|p| p.is_finite() && *p >= 0.0).ok_or_else(bad)?) }),
            None => {
                let money: finops_allocate::Money = t.parse().map_err(|_| bad())?;
                if money.is_negative() {
                    return Err(bad());
                }
                Ok(MoveLimit { text: t.to_string(), amount: Some(money.round_to_cents().0), pct: None })
            }
        }
    }

    fn exceeded_by(&self, change: &finops_report::diff::Change) -> bool {
        let moved = change.change().0.abs();
        match (self.amount, self.pct) {
            (Some(limit), _) => moved > limit,
            // A team that had nothing before moves by an infinite share once it moves at all.
            (_, Some(pct)) => change.pct().map_or(moved > 0, |p| p.abs() > pct),
            _ => false,
        }
    }
}

/// A preview whose change is over the limit asked for: the command exits with status 2.
#[derive(Debug)]
pub struct OverLimit(pub String);

impl std::fmt::Display for OverLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OverLimit {}

/// What an alert run found and did with it, one line each.
fn print_alerts(title: &str, found: &[finops_lambda::alerting::Found], delivery: &finops_report::slack::Delivery, written: &str) {
    println!(
        "{title}: {} found, {} sent, {} already sent, {} pending, {} without a webhook",
        found.len(),
        delivery.sent.len(),
        delivery.already_sent.len(),
        delivery.pending.len(),
        delivery.unrouted.len()
    );
    for f in found {
        match &f.held {
            Some(held) => println!("  [{}, held] {} ({held})", f.kind, f.text),
            None => println!("  [{}] {} -> {}", f.kind, f.text, f.route),
        }
    }
    for (id, why) in &delivery.pending {
        eprintln!("warning: alert {id} pending: {why}");
    }
    if !delivery.unrouted.is_empty() {
        println!(
            "  not sent: {} alert(s) have no webhook for their route; set FINOPS_SLACK_WEBHOOK_<ROUTE> (e.g. {}) or [alerts.webhooks]",
            delivery.unrouted.len(),
            delivery.unrouted[0].1.split("set ").nth(1).and_then(|r| r.split(' ').next()).unwrap_or("FINOPS_SLACK_WEBHOOK_FINOPS")
        );
    }
    println!("recorded in {written}");
}

/// An error and its causes on one line, each said once: several of ours (and the SDK's) put
/// their source's text in their own message too, which `{:#}` would print twice
/// (`No such file or directory (os error 2): No such file or directory (os error 2)`).
pub fn error_text(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

/// `1 share rule`, `2 share rules`.
fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// A rules file, or every `*.toml` in a folder (sorted).
fn rule_files(path: &std::path::Path) -> anyhow::Result<Vec<PathBuf>> {
    if path.is_dir() {
        let mut files: Vec<PathBuf> =
            std::fs::read_dir(path).with_context(|| path.display().to_string())?.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "toml")).collect();
        files.sort();
        if files.is_empty() {
            anyhow::bail!("{}: no *.toml rule files", path.display());
        }
        Ok(files)
    } else {
        Ok(vec![path.to_path_buf()])
    }
}
