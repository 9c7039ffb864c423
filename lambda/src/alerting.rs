//! The alert jobs (docs/design.md §7): the daily check (`finops alerts`) and the monthly messages that
//! `finops run` adds. Detection is `finops_allocate::alerts`; delivery and "sent once" are
//! `finops_report::slack`; this module reads the months, words the messages and records what
//! happened in `alerts.json`.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};
use finops_allocate::alerts::{self, DayCost, IdleGpu, Move, Spike, Subject};
use finops_allocate::{Cents, RuleSet};
use finops_ingest::{Progress, Silent};
use finops_report::pdf::{grouped, BudgetRecord, IdleRecord, ReportAlerts, SpikeRecord};
use finops_report::sink::OutputRoot;
use finops_report::slack::{blocks, Delivery, Message, Webhooks};
use serde::Serialize;

use crate::config::Config;
use crate::job::{allocate_month, load_rules, out_root, JobError};

/// An amount as the messages print it.
pub fn money(amount: f64, currency: &str) -> String {
    format!("{} {currency}", grouped(Cents((amount * 100.0).round() as i64)))
}

fn route_of(rules: &RuleSet, config: &Config, team: Option<&str>) -> String {
    team.and_then(|t| rules.resolve_team(t)).and_then(|t| rules.team(t).slack.clone()).unwrap_or_else(|| config.alerts.default_route.clone())
}

/// What an alert was, for `alerts.json` and the report.
#[derive(Clone, Debug, Serialize)]
pub struct Found {
    pub id: String,
    pub kind: &'static str,
    pub route: String,
    pub text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spike: Option<SpikeRecord>,
    /// Why it is recorded and not sent (a repeat of an acknowledged planned or expected spike).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
}

/// A spike's message: the team's day, the series it was found in against what was expected of it,
/// what drove it.
pub fn spike_alert(rules: &RuleSet, config: &Config, spike: &Spike) -> (Found, Message) {
    let currency = &rules.currency;
    let (kind, name) = (spike.subject.kind(), spike.subject.name());
    let route = route_of(rules, config, Some(name));
    let change = spike.excess();
    // A share of an expectation of zero or less (credits that outweighed usage) means nothing:
    // the change is said in money only.
    let pct = (spike.expected.cost > 0.0).then(|| format!(" (+{:.0}%)", change / spike.expected.cost * 100.0));
    let contributors: Vec<String> = spike.contributors.iter().map(|c| format!("{} {}: +{} ({:.0}% of the change)", c.dimension, c.value, money(c.change, currency), c.share * 100.0)).collect();
    // Where it was found: the team's whole day, or one of its series (a resource's spike is
    // plain in its own series and a sliver of the team's day).
    let (found_in, series_spent) = match spike.grain {
        alerts::Grain::Team => ("the team's whole day".to_string(), String::new()),
        grain => {
            let series = format!("{} {}", grain.name(), spike.series);
            (series.clone(), format!(", its {series} spent {}", money(spike.actual, currency)))
        }
    };
    let spent = if spike.grain == alerts::Grain::Team { spike.actual } else { spike.team_actual };
    let text = match &pct {
        Some(pct) => format!("Cost spike: {kind} {name} spent {} on {}{series_spent}, expected {}{pct}", money(spent, currency), spike.date, money(spike.expected.cost, currency)),
        None => format!(
            "Cost spike: {kind} {name} spent {} on {}{series_spent}, {} more than expected (expected {}: no usual spend to compare with)",
            money(spent, currency),
            spike.date,
            money(change, currency),
            money(spike.expected.cost, currency)
        ),
    };
    let pct = pct.unwrap_or_default();
    let id = format!("spike:{kind}:{name}:{}", spike.date);
    let t = config.alerts.thresholds(&spike.subject);
    let message = Message {
        id: id.clone(),
        route: route.clone(),
        text: text.clone(),
        blocks: blocks(
            &format!("Cost spike: {name} ({kind}), {}", spike.date),
            &[
                ("Found in", found_in),
                ("Cost", money(spike.actual, currency)),
                ("Expected", money(spike.expected.cost, currency)),
                ("Change", format!("+{}{pct}, {:.1}σ", money(change, currency), spike.expected.sigmas_over(spike.actual))),
                ("Team's day", money(spike.team_actual, currency)),
                ("Basis", format!("{}, daily usage", rules.cost_basis.name())),
            ],
            "What drove it",
            &contributors,
            &format!(
                "finops · baseline: median of the previous {} days at the weekday's level; a spike is {} and {:.0}% and {}σ over it",
                t.baseline_days,
                money(t.min_excess, currency),
                t.min_ratio * 100.0,
                t.sigmas
            ),
        ),
    };
    let record = SpikeRecord {
        date: spike.date.to_string(),
        subject: kind.into(),
        name: name.into(),
        actual: format!("{:.2}", spike.actual),
        expected: format!("{:.2}", spike.expected.cost),
        contributors,
        label: None,
    };
    (Found { id, kind: "spike", route, text, spike: Some(record), held: None }, message)
}

/// A spike's alert with what people said of it: its label (`finops alerts ack`), or, for a
/// repeat of an acknowledged planned or expected spike, why it is held (recorded, not sent).
pub fn labelled_spike_alert(rules: &RuleSet, config: &Config, said: &finops_report::slack::State, spike: &Spike) -> (Found, Message) {
    let (mut found, message) = spike_alert(rules, config, spike);
    let repeat = spike.repeat_of.map(|day| {
        let of = format!("spike:team:{}:{day}", spike.subject.name());
        let reason = said.labels.get(&of).map_or("known", |l| l.reason.name());
        (format!("repeat of {day}, {reason}"), format!("not sent: it repeats {of}, acknowledged {reason}"))
    });
    let label = said.labels.get(&found.id).map(|l| l.reason.name().to_string()).or_else(|| repeat.as_ref().map(|r| r.0.clone()));
    if let Some(record) = &mut found.spike {
        record.label = label;
    }
    found.held = repeat.map(|r| r.1);
    (found, message)
}

/// Records a person's label on an alert in the alerts' state (`finops alerts ack`): the alert
/// must have been sent or be pending under the output root. Returns what it recorded.
pub async fn acknowledge(config: &Config, id: &str, reason: alerts::Feedback) -> Result<String, JobError> {
    let root = out_root(config).await?;
    let state_root = finops_report::slack::StateRoot::of(&root);
    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let known = finops_report::slack::State::update(&state_root, |state| {
        let known = state.sent.contains_key(id) || state.pending.iter().any(|p| p.message.id == id);
        if known {
            state.labels.insert(id.to_string(), finops_report::slack::Label { reason, at: at.clone() });
        }
        known
    })?;
    if !known {
        return Err(JobError::Output(format!(
            "no alert `{id}` was sent or is pending under {}: the ids are in alerts/<day>.json (e.g. spike:team:search:2025-10-20)",
            root.shown("alerts-state.json")
        )));
    }
    let effect = if reason.leaves_baseline() {
        match finops_report::slack::spike_of(id) {
            Some((team, day)) => format!("{team}'s {day} leaves its later baselines, and its repeats on the days right after are recorded, not sent"),
            None => "recorded".to_string(),
        }
    } else {
        "counted as a false alert in the report's label precision".to_string()
    };
    Ok(format!("{id}: {} ({effect})", reason.name()))
}

/// A confirmed level shift's message: the spikes of its first days were the start of a new level,
/// which the series is measured against from now on.
pub fn shift_alert(rules: &RuleSet, config: &Config, shift: &alerts::LevelShift) -> (Found, Message) {
    let currency = &rules.currency;
    let team = shift.subject.name();
    let route = route_of(rules, config, Some(team));
    let series = match shift.grain {
        alerts::Grain::Team => "its whole day".to_string(),
        grain => format!("its {} {}", grain.name(), shift.series),
    };
    let text = format!(
        "Level shift confirmed: team {team}, {series} has cost about {} a day since {} (expected {} before): the spike alerts from {} were the start of a new level, which it is measured against from now on",
        money(shift.level, currency),
        shift.from,
        money(shift.before, currency),
        shift.from
    );
    let id = format!("shift:team:{team}:{}", shift.from);
    let message = Message {
        id: id.clone(),
        route: route.clone(),
        text: text.clone(),
        blocks: blocks(
            &format!("Level shift: {team}, since {}", shift.from),
            &[
                ("Series", series),
                ("New level", format!("{} a day", money(shift.level, currency))),
                ("Before", format!("{} a day", money(shift.before, currency))),
                ("Confirmed", shift.confirmed.to_string()),
            ],
            "",
            &[],
            "finops · a third day in a row over the threshold is a new level, not a spike",
        ),
    };
    (Found { id, kind: "level-shift", route, text, spike: None, held: None }, message)
}

/// A team's first day of spend, or a service's first day in a team: told once, in place of
/// spikes it has no history for.
pub fn new_spend_alert(rules: &RuleSet, config: &Config, new: &alerts::NewSpend, day: NaiveDate) -> (Found, Message) {
    let currency = &rules.currency;
    let team = &new.team;
    let route = route_of(rules, config, Some(team));
    let (what, id) = match &new.service {
        None => (format!("team {team} spent {} on {day}, its first day of cost", money(new.amount, currency)), format!("new:team:{team}:{day}")),
        Some(service) => (format!("team {team} spent {} on {service} on {day}, its first day of {service}", money(new.amount, currency)), format!("new:team:{team}:{service}:{day}")),
    };
    let text = format!("New spend: {what} (no history yet: it is checked for spikes once it has cost on ten of its last 14 days)");
    let message = Message {
        id: id.clone(),
        route: route.clone(),
        text: text.clone(),
        blocks: blocks(
            &format!("New spend: {team}{}, {day}", new.service.as_deref().map(|s| format!(" on {s}")).unwrap_or_default()),
            &[("Cost", money(new.amount, currency)), ("Basis", format!("{}, daily usage", rules.cost_basis.name()))],
            "",
            &[],
            "finops · a series begins on its first day with cost",
        ),
    };
    (Found { id, kind: "new-spend", route, text, spike: None, held: None }, message)
}

/// An idle GPU namespace's message: its idle GPU-hours and what they cost.
pub fn idle_alert(rules: &RuleSet, config: &Config, idle: &IdleGpu) -> (Found, Message) {
    let currency = &rules.currency;
    let route = route_of(rules, config, idle.team.as_deref());
    let team = idle.team.clone().unwrap_or_else(|| rules.unallocated.clone());
    let text = format!(
        "Idle GPUs: namespace {} ({team}) held {:.1} GPU-hours under the idle threshold on {}, costing {}; its GPU utilisation that day was {:.1}%",
        idle.namespace,
        idle.idle_hours,
        idle.date,
        money(idle.idle_cost, currency),
        idle.utilization_pct
    );
    let id = format!("idle-gpu:{}:{}", idle.namespace, idle.date);
    let message = Message {
        id: id.clone(),
        route: route.clone(),
        text: text.clone(),
        blocks: blocks(
            &format!("Idle GPUs: {} on {}", idle.namespace, idle.date),
            &[
                ("Team", team),
                ("Idle GPU-hours", format!("{:.1} of {:.1}", idle.idle_hours, idle.gpu_hours)),
                ("Their cost (reclaimable)", money(idle.idle_cost, currency)),
                ("GPU utilisation", format!("{:.1}%", idle.utilization_pct)),
            ],
            "",
            &[],
            &format!("finops · no standing idle GPUs: more than {:.0} idle GPU-hours in a day is alerted", config.alerts.idle_gpu_hours),
        ),
    };
    (Found { id, kind: "idle-gpu", route, text, spike: None, held: None }, message)
}

/// A budget threshold reached by actual or forecast spend (once per threshold per month). A
/// complete month (its forecast is its total) is told without a forecast.
pub fn budget_alert(rules: &RuleSet, config: &Config, team: &str, month: &str, budget: Cents, share: f64, what: &str, actual: f64, forecast: &alerts::Forecast) -> (Found, Message) {
    let currency = &rules.currency;
    let route = route_of(rules, config, Some(team));
    let budget_amount = budget.0 as f64 / 100.0;
    let pct = alerts::threshold_label(share);
    let complete = forecast.days_left == 0;
    let text = if complete {
        format!("Budget: team {team} has reached {pct}% of its {month} budget {} (the month's total {})", money(budget_amount, currency), money(actual, currency))
    } else {
        format!(
            "Budget: team {team} has reached {pct}% of its {month} budget {} by {what} spend (month to date {}, forecast {} [{} to {}] with {} day(s) to go)",
            money(budget_amount, currency),
            money(actual, currency),
            money(forecast.expected, currency),
            money(forecast.low, currency),
            money(forecast.high, currency),
            forecast.days_left
        )
    };
    // Actual and forecast crossings of one threshold are told apart.
    let id = match what {
        "forecast" => format!("budget-forecast:{team}:{month}:{pct}"),
        _ => format!("budget:{team}:{month}:{pct}"),
    };
    let mut fields = vec![("Budget", money(budget_amount, currency))];
    if complete {
        fields.push(("The month", format!("{} ({:.0}%)", money(actual, currency), actual / budget_amount * 100.0)));
    } else {
        fields.push(("Month to date", format!("{} ({:.0}%)", money(actual, currency), actual / budget_amount * 100.0)));
        fields.push(("Month-end forecast", format!("{} ({:.0}%)", money(forecast.expected, currency), forecast.expected / budget_amount * 100.0)));
        fields.push(("Forecast range", format!("{} – {} ({} day(s) to go)", money(forecast.low, currency), money(forecast.high, currency), forecast.days_left)));
    }
    let context = if complete {
        "finops · the month's allocated total reached the threshold".to_string()
    } else {
        format!("finops · {what} spend reached the threshold; forecast: run rate of the last 14 days at each weekday's level")
    };
    let message = Message { id: id.clone(), route: route.clone(), text: text.clone(), blocks: blocks(&format!("Budget {pct}% reached: {team}, {month}"), &fields, "", &[], &context) };
    (Found { id, kind: "budget", route, text, spike: None, held: None }, message)
}

/// A month-over-month move, up or down.
pub fn move_alert(rules: &RuleSet, config: &Config, month: &str, m: &Move) -> (Found, Message) {
    let currency = &rules.currency;
    let (kind, name) = (m.subject.kind(), m.subject.name());
    let route = route_of(rules, config, matches!(m.subject, Subject::Team(_)).then_some(name));
    let direction = if m.now >= m.before { "rose" } else { "fell" };
    let text = format!("Month over month: {kind} {name} {direction} {:+.1}% to {} in {month} (from {})", m.change_pct(), money(m.now, currency), money(m.before, currency));
    let id = format!("monthly-move:{kind}:{name}:{month}");
    let message = Message {
        id: id.clone(),
        route: route.clone(),
        text: text.clone(),
        blocks: blocks(
            &format!("{name} {direction} {:+.1}% in {month}", m.change_pct()),
            &[("This month", money(m.now, currency)), ("Last month", money(m.before, currency))],
            "",
            &[],
            "finops · monthly comparison",
        ),
    };
    (Found { id, kind: "monthly-move", route, text, spike: None, held: None }, message)
}

/// What a daily check found and did.
#[derive(Debug, Serialize)]
pub struct DailyOutcome {
    /// The days checked, oldest first (none when every complete day was checked already).
    pub days: Vec<String>,
    /// What the run decided about which days it checked (a catch-up, days skipped, a baseline
    /// month it could not read).
    pub notes: Vec<String>,
    pub found: Vec<Found>,
    pub delivery: Delivery,
    /// Where each day's `alerts/<day>.json` was written.
    #[serde(skip)]
    pub written: Vec<String>,
}

/// The latest complete day of a month's allocation: CUR restates a day until the next day has
/// data, so the last day with cost is not complete yet (once next month's first day appears, the
/// month's last day is). On-prem rate-card lines cover every day and say nothing of it.
fn latest_complete_day(allocation: &finops_allocate::Allocation) -> Option<NaiveDate> {
    let last = allocation.lines.iter().filter(|l| !finops_allocate::gpu::is_on_prem(&l.account, &l.service)).map(|l| &*l.usage_date).max()?;
    NaiveDate::parse_from_str(last, "%Y-%m-%d").ok().map(|d| d - chrono::Duration::days(1))
}

/// The days a scheduled check checks: every day after the last one checked through the latest
/// complete day, at most `catch_up` of them (the latest); the first run checks the latest day
/// only. Also how many unchecked days were too old to catch up.
pub fn days_to_check(checked_through: Option<NaiveDate>, latest: NaiveDate, catch_up: u32) -> (Vec<NaiveDate>, i64) {
    let Some(checked) = checked_through else { return (vec![latest], 0) };
    let unchecked = (latest - checked).num_days();
    if unchecked <= 0 {
        return (Vec::new(), 0);
    }
    let taken = unchecked.min(i64::from(catch_up.max(1)));
    ((0..taken).rev().map(|k| latest - chrono::Duration::days(k)).collect(), unchecked - taken)
}

/// The month a scheduled check reads first: Cost Explorer's is the month of yesterday (the
/// current month, or on the 1st the one that just ended); a file source names its latest month
/// itself (`None`).
pub fn scheduled_month(cost_explorer: bool, today: NaiveDate) -> Option<String> {
    cost_explorer.then(|| month_of(today - chrono::Duration::days(1)))
}

fn month_of(day: NaiveDate) -> String {
    day.format("%Y-%m").to_string()
}

/// The daily check. Scheduled (no `day`): every complete day since the last day it checked
/// (recorded in the alert state), across month boundaries, catching up at most
/// `[alerts] catch_up_days` after an outage; with `day`, that day only. Each day: its spikes and
/// idle GPUs, and budget thresholds reached by its month so far or its forecast; delivered to
/// Slack, recorded in `<out>/alerts/<day>.json`.
pub async fn run_daily(config: &Config, day: Option<String>, short_baseline: ShortBaseline, progress: &dyn Progress) -> Result<DailyOutcome, JobError> {
    let loaded = load_rules(&config.rules_path())?;
    let rules = &loaded.rules;
    let store = crate::job::open_source(config).await?;
    let root = out_root(config).await?;
    let state_root = finops_report::slack::StateRoot::of(&root);
    // The alerts' state as this run starts: the last day checked, and what people said of alerts.
    let said = finops_report::slack::State::load(&state_root)?;
    let asked = match &day {
        Some(d) => Some(NaiveDate::parse_from_str(d, "%Y-%m-%d").map_err(|_| JobError::Output(format!("--day `{d}` is not a date like 2025-10-20")))?),
        None => None,
    };
    // Each month read once, whichever days need it.
    let mut months: BTreeMap<String, crate::job::AllocatedMonth> = BTreeMap::new();
    let mut notes = Vec::new();
    let days = match asked {
        Some(d) => vec![d],
        None => {
            progress.stage("the month so far");
            // Cost Explorer reads the month asked of it: the current one (yesterday's, on the
            // 1st); files name their latest month themselves.
            let current = scheduled_month(matches!(store, finops_ingest::BillingSource::CostExplorer(_)), chrono::Utc::now().date_naive());
            let done = allocate_month(config, &store, rules, current, &Silent).await?;
            let latest = latest_complete_day(&done.allocation).ok_or_else(|| JobError::Output(format!("{}: no usage days to check", done.ingested.month)))?;
            months.insert(done.ingested.month.clone(), done);
            let checked = said.checked_through.as_deref().and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
            let (days, skipped) = days_to_check(checked, latest, config.alerts.catch_up_days);
            if let (Some(first), Some(checked)) = (days.first(), checked) {
                if days.len() > 1 || skipped > 0 {
                    notes.push(format!(
                        "caught up from {first} (last checked {checked}){}",
                        if skipped > 0 { format!("; {skipped} older unchecked day(s) skipped ([alerts] catch_up_days = {})", config.alerts.catch_up_days) } else { String::new() }
                    ));
                }
            }
            days
        }
    };
    // The baseline reaches back six weeks (its spread, `alerts::SPREAD_DAYS`) or `baseline_days`:
    // into the months before the first day checked.
    let lookback = chrono::Duration::days(config.alerts.baseline_days.max(alerts::SPREAD_DAYS) as i64);
    // Every month from the first day's baseline through the last day checked, each once.
    let mut needed: Vec<String> = Vec::new();
    if let (Some(first), Some(last)) = (days.first(), days.last()) {
        let mut m = (*first - lookback).with_day(1).expect("day 1");
        while m <= *last {
            needed.push(month_of(m));
            m = m.checked_add_months(chrono::Months::new(1)).expect("a month");
        }
    }
    for m in &needed {
        if months.contains_key(m) {
            continue;
        }
        let for_baseline = !days.iter().any(|d| month_of(*d) == *m);
        progress.stage(&format!("{m}{}", if for_baseline { ", for the baseline" } else { "" }));
        match allocate_month(config, &store, rules, Some(m.clone()), &Silent).await {
            Ok(done) => {
                months.insert(m.clone(), done);
            }
            // A failure that a later try may not meet (S3 or the network) fails a scheduled
            // run before anything is recorded or sent, so its retry checks the days with their
            // whole baseline; otherwise (or by hand) the baseline is shorter, and it says so.
            Err(e) if for_baseline && !(short_baseline == ShortBaseline::Retry && e.retryable()) => notes.push(format!("the baseline leaves out {m}: it could not be read: {e}")),
            Err(e) => return Err(e),
        }
    }
    let mut costs: Vec<DayCost> = Vec::new();
    for done in months.values() {
        costs.extend(alerts::day_costs(rules, &done.allocation));
    }
    let mut found = Vec::new();
    let mut messages = Vec::new();
    let mut written = Vec::new();
    // Spikes of every day at once: each series is walked once (a day's status never depends on
    // the days after it), and what drove each is read from the lines.
    let found_on_days = alerts::detect(&costs, &days, &|s| config.alerts.thresholds(s), &said.known_spend());
    let spikes = &found_on_days.spikes;
    // Each month's team days once, however many of its days are checked.
    let team_days: BTreeMap<&str, _> = months.iter().map(|(m, done)| (m.as_str(), alerts::team_day_cents(rules, &done.allocation))).collect();
    for day in &days {
        let (mut day_found, mut day_messages) = (Vec::new(), Vec::new());
        for spike in spikes.iter().filter(|s| s.date == *day) {
            let (f, m) = labelled_spike_alert(rules, config, &said, spike);
            if f.held.is_none() {
                day_messages.push(m);
            }
            day_found.push(f);
        }
        for shift in found_on_days.shifts.iter().filter(|s| s.confirmed == *day) {
            let (f, m) = shift_alert(rules, config, shift);
            day_found.push(f);
            day_messages.push(m);
        }
        for new in alerts::new_spend(&costs, *day, &|s| config.alerts.thresholds(s).min_excess) {
            let (f, m) = new_spend_alert(rules, config, &new, *day);
            day_found.push(f);
            day_messages.push(m);
        }
        let month = month_of(*day);
        if let Some(done) = months.get(&month) {
            if let Some(usage) = &done.gpu_usage {
                for idle in alerts::idle_gpus(rules, &done.allocation, usage, Some(&day.to_string()), config.alerts.idle_gpu_hours) {
                    let (f, m) = idle_alert(rules, config, &idle);
                    day_found.push(f);
                    day_messages.push(m);
                }
            }
            for (f, m) in budget_alerts(rules, config, &team_days[month.as_str()], &month, *day) {
                day_found.push(f);
                day_messages.push(m);
            }
        }
        let record = DailyRecord { day: day.to_string(), notes: &notes, found: &day_found };
        let mut bytes = serde_json::to_vec_pretty(&record).expect("alerts serialise");
        bytes.push(b'\n');
        written.push(root.put(&format!("alerts/{day}.json"), &bytes)?);
        found.extend(day_found);
        messages.extend(day_messages);
    }
    progress.stage("delivering to Slack");
    let delivery = deliver(rules, config, &root, messages).await?;
    // The days are checked once what they found is queued or sent (pending messages stay in the
    // state); a check of a day asked for by hand never moves the schedule back.
    if let Some(last) = days.last().filter(|_| asked.is_none()) {
        let last = last.to_string();
        finops_report::slack::State::update(&state_root, |state| {
            if state.checked_through.as_deref().is_none_or(|c| c < last.as_str()) {
                state.checked_through = Some(last.clone());
            }
        })?;
    }
    progress.finish();
    Ok(DailyOutcome { days: days.iter().map(|d| d.to_string()).collect(), notes, found, delivery, written })
}

/// What the daily check does when a month its baseline needs cannot be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShortBaseline {
    /// Check with the shorter baseline, and say so (a run by hand).
    Warn,
    /// Fail before anything is recorded or sent when the error may pass (S3, the network), so
    /// the scheduler's retry checks the days whole (the Lambda); other errors are warnings.
    Retry,
}

/// One checked day's record, `alerts/<day>.json`.
#[derive(Serialize)]
struct DailyRecord<'a> {
    day: String,
    /// What the run decided about its days (a catch-up, a baseline month it could not read).
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    notes: &'a [String],
    found: &'a [Found],
}

/// Budget thresholds reached by each budgeted team's month to date (through `day`: its whole
/// allocated cost, `alerts::team_day_cents`) or its month-end forecast.
pub fn budget_alerts(rules: &RuleSet, config: &Config, team_days: &BTreeMap<String, BTreeMap<NaiveDate, Cents>>, month: &str, day: NaiveDate) -> Vec<(Found, Message)> {
    let mut out = Vec::new();
    for team in rules.teams.iter().filter(|t| t.budget.is_some()) {
        let budget = team.budget.expect("filtered");
        let days: BTreeMap<NaiveDate, f64> = team_days.get(&team.name).map(|d| d.range(..=day).map(|(d, c)| (*d, c.0 as f64 / 100.0)).collect()).unwrap_or_default();
        let forecast = alerts::forecast(&days, day);
        if let Some((what, share)) = alerts::highest_crossing(budget.0 as f64 / 100.0, forecast.month_to_date, forecast.expected, &config.alerts.budget_thresholds) {
            out.push(budget_alert(rules, config, &team.name, month, budget, share, what, forecast.month_to_date, &forecast));
        }
    }
    out
}

/// The webhooks of every route the rule set and config name.
pub fn webhooks(rules: &RuleSet, config: &Config) -> Webhooks {
    let routes: Vec<String> = rules.teams.iter().filter_map(|t| t.slack.clone()).chain([config.alerts.default_route.clone()]).collect();
    Webhooks::resolve(routes.iter().map(String::as_str), &config.alerts.webhooks)
}

/// Every spike and level shift of the month's days (for the monthly record and the report): each day checked
/// against its own trailing baseline, acknowledged known spend left out of it.
pub fn month_detection(costs: &[DayCost], config: &Config, said: &finops_report::slack::State) -> alerts::Detection {
    let days: Vec<NaiveDate> = costs.iter().map(|c| c.date).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    alerts::detect(costs, &days, &|s| config.alerts.thresholds(s), &said.known_spend())
}

/// The month's alerts: its spikes and idle GPU namespaces (found day by day, for the record and
/// the report; the daily check sends those), and the monthly messages this run sends —
/// month-over-month moves of teams and services, budget thresholds, and each team's monthly
/// message with where it stands among the teams.
#[derive(Debug, Default, Serialize)]
pub struct MonthAlerts {
    pub month: String,
    #[serde(flatten)]
    pub report: ReportAlerts,
    pub found: Vec<Found>,
    /// What this run's delivery did: not in `alerts.json`, which is published before anything
    /// is sent and so stays the same on a re-run (the alerts' state records what was sent).
    #[serde(skip)]
    pub delivery: Delivery,
}

/// Delivers `messages` and any left pending by earlier runs, holding the alerts' lease so that
/// overlapping runs (a manual run beside a scheduled one) never send one twice.
pub async fn deliver(rules: &RuleSet, config: &Config, root: &OutputRoot, messages: Vec<Message>) -> Result<Delivery, JobError> {
    let webhooks = webhooks(rules, config);
    let patience = std::time::Duration::from_secs(config.output.lock_wait_seconds);
    let lease = root.acquire("alerts", "delivering alerts to Slack", std::time::Duration::from_secs(900), patience)?;
    let delivery = finops_report::slack::deliver(messages, &webhooks, &finops_report::slack::StateRoot::of(root), finops_report::slack::Retry::default()).await;
    lease.release();
    Ok(delivery?)
}

/// The month before, as the monthly alerts compare with it.
pub struct Before<'a> {
    /// Its team totals; `None` when they do not compare with this month's (`not_comparable`).
    pub teams: Option<&'a BTreeMap<String, Cents>>,
    pub services: &'a BTreeMap<String, f64>,
    pub days: &'a [DayCost],
    pub not_comparable: Option<&'a str>,
}

/// Finds the month's alerts and words its monthly messages (not sent here).
#[allow(clippy::too_many_arguments)]
pub fn monthly(
    rules: &RuleSet,
    config: &Config,
    month: &str,
    allocation: &finops_allocate::Allocation,
    gpu_usage: Option<&finops_allocate::gpu::GpuUsageReport>,
    rows: &[finops_report::allocation::TeamRow],
    services: &BTreeMap<String, f64>,
    before: Option<Before>,
    said: &finops_report::slack::State,
) -> (MonthAlerts, Vec<Message>, Vec<TeamMessage>) {
    let currency = &rules.currency;
    let mut costs = alerts::day_costs(rules, allocation);
    let first_day = NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d").ok();
    if let Some(b) = &before {
        costs.extend(b.days.iter().cloned());
    }
    let mut out = MonthAlerts { month: month.to_string(), ..MonthAlerts::default() };
    let detection = month_detection(&costs, config, said);
    for spike in detection.spikes.iter().filter(|s| Some(s.date) >= first_day) {
        let (mut found, _) = labelled_spike_alert(rules, config, said, spike);
        // The spikes that began a level shift say so in the report.
        let shift = detection.shifts.iter().find(|s| s.subject == spike.subject && s.from <= spike.date && spike.date < s.confirmed);
        if let (Some(record), Some(shift)) = (&mut found.spike, shift) {
            record.label.get_or_insert_with(|| format!("new level from {}", shift.from));
        }
        out.report.spikes.extend(found.spike);
    }
    // The labels of every month so far, through this one: the precision they imply.
    out.report.labels =
        said.labelled_by_month().into_iter().filter(|(m, _)| m.as_str() <= month).map(|(month, (labelled, wrong))| finops_report::pdf::LabelledMonth { month, labelled, wrong }).collect();
    let idle = gpu_usage.map(|u| alerts::idle_gpus(rules, allocation, u, None, config.alerts.idle_gpu_hours)).unwrap_or_default();
    let mut by_namespace: BTreeMap<&str, (String, usize, f64, f64)> = BTreeMap::new();
    for i in &idle {
        let e = by_namespace.entry(&i.namespace).or_insert_with(|| (i.team.clone().unwrap_or_else(|| rules.unallocated.clone()), 0, 0.0, 0.0));
        e.1 += 1;
        e.2 += i.idle_hours;
        e.3 += i.idle_cost;
    }
    out.report.idle_gpu = by_namespace
        .into_iter()
        .map(|(namespace, (team, days, hours, cost))| IdleRecord { namespace: namespace.into(), team, days, idle_gpu_hours: format!("{hours:.1}"), idle_cost: format!("{cost:.2}") })
        .collect();

    let mut messages = Vec::new();
    let mut team_messages = Vec::new();
    let mut add = |(found, message): (Found, Message), out: &mut MonthAlerts| {
        out.found.push(found);
        messages.push(message);
    };
    if let Some(b) = &before {
        let now_teams: BTreeMap<Subject, f64> = rows.iter().map(|r| (Subject::Team(r.team.clone()), r.total.0 as f64 / 100.0)).collect();
        let then_teams: BTreeMap<Subject, f64> = b.teams.into_iter().flatten().map(|(t, c)| (Subject::Team(t.clone()), c.0 as f64 / 100.0)).collect();
        let now_services: BTreeMap<Subject, f64> = services.iter().map(|(s, v)| (Subject::Service(s.clone()), *v)).collect();
        let then_services: BTreeMap<Subject, f64> = b.services.iter().map(|(s, v)| (Subject::Service(s.clone()), *v)).collect();
        let (change, ratio) = (config.alerts.monthly_min_change, config.alerts.monthly_min_ratio);
        // Teams only when their figures compare (a month with no team figures is no baseline).
        let teams = if b.teams.is_some() { alerts::month_over_month(&now_teams, &then_teams, change, ratio) } else { Vec::new() };
        for m in teams.iter().chain(&alerts::month_over_month(&now_services, &then_services, change, ratio)) {
            add(move_alert(rules, config, month, m), &mut out);
        }
    }
    // Budgets against the month's allocated totals (the whole month: actual is the forecast).
    for team in rules.teams.iter().filter(|t| t.budget.is_some()) {
        let budget = team.budget.expect("filtered");
        let actual = rows.iter().find(|r| r.team == team.name).map_or(0.0, |r| r.total.0 as f64 / 100.0);
        out.report.budgets.push(BudgetRecord { team: team.name.clone(), budget: budget.to_string(), actual: format!("{actual:.2}") });
        let whole = alerts::Forecast { month_to_date: actual, expected: actual, low: actual, high: actual, days_left: 0 };
        if let Some((what, share)) = alerts::highest_crossing(budget.0 as f64 / 100.0, actual, actual, &config.alerts.budget_thresholds) {
            add(budget_alert(rules, config, &team.name, month, budget, share, what, actual, &whole), &mut out);
        }
    }
    // Each team's monthly message: its total, its change, where it stands among the teams.
    let named: Vec<&finops_report::allocation::TeamRow> = rows.iter().filter(|r| r.team != rules.unallocated).collect();
    let mut ranked: Vec<&finops_report::allocation::TeamRow> = named.clone();
    ranked.sort_by(|a, b| b.total.cmp(&a.total).then_with(|| a.team.cmp(&b.team)));
    let mut totals: Vec<f64> = named.iter().map(|r| r.total.0 as f64 / 100.0).collect();
    totals.sort_by(f64::total_cmp);
    let median = totals.get(totals.len() / 2).copied().unwrap_or(0.0);
    for (rank, row) in ranked.iter().enumerate() {
        let total = row.total.0 as f64 / 100.0;
        let mut fields = vec![("Total", money(total, currency)), ("Among the teams", format!("#{} of {} (median team {})", rank + 1, named.len(), money(median, currency)))];
        // The bill and the rate card apart, in the report's words (docs/design.md §6).
        let on_prem = row.gpu_usage.on_prem;
        if on_prem.0 != 0 {
            let bill = (row.total.0 - on_prem.0) as f64 / 100.0;
            fields.push(("Of which", format!("the AWS bill {} + on-prem GPU at the rate card {}", money(bill, currency), money(on_prem.0 as f64 / 100.0, currency))));
        }
        if let Some(p) = row.previous {
            let before = p.0 as f64 / 100.0;
            let pct = if before != 0.0 { (total - before) / before.abs() * 100.0 } else { 0.0 };
            fields.push(("vs last month", format!("{pct:+.1}% (from {})", money(before, currency))));
        } else if let Some(why) = before.as_ref().and_then(|b| b.not_comparable) {
            fields.push(("vs last month", format!("not compared: {why}")));
        }
        if let Some(b) = rules.resolve_team(&row.team).and_then(|t| rules.team(t).budget) {
            fields.push(("Budget", format!("{:.0}% of {}", total / (b.0 as f64 / 100.0) * 100.0, money(b.0 as f64 / 100.0, currency))));
        }
        let g = &row.gpu_usage;
        let mut lines = Vec::new();
        if g.gpu_hours > 0.0 {
            fields.push(("GPU", format!("{} for {:.1} GPU-hours at {:.1}% utilisation", money(row.gpu.0 as f64 / 100.0, currency), g.gpu_hours, g.utilization_pct())));
            lines.push(format!(
                "Idle GPU time: {:.1} GPU-hours held under the idle threshold, {} at full price: what reclaiming them would have saved",
                g.idle_hours,
                money(g.idle_cost.0 as f64 / 100.0, currency)
            ));
        }
        let text = format!("{}: {} in {month}, #{} of {} teams", row.team, money(total, currency), rank + 1, named.len());
        let id = format!("monthly:{}:{month}", row.team);
        let route = route_of(rules, config, Some(&row.team));
        out.found.push(Found { id: id.clone(), kind: "monthly", route: route.clone(), text: text.clone(), spike: None, held: None });
        team_messages.push(TeamMessage {
            team: row.team.clone(),
            id,
            route,
            text,
            header: format!("{} — {month}", row.team),
            fields: fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            lines,
            context: format!("finops · {} cost, {currency}", rules.cost_basis.name()),
        });
    }
    (out, messages, team_messages)
}

/// The month's untagged cost, for the platform team (`[alerts] untagged_route`, else the default
/// route): how much no rule claimed, the largest offenders with what to fix, and the accounts
/// with the lowest coverage. Made every month (cost that stays untagged is still news).
pub fn untagged_message(
    rules: &RuleSet,
    config: &Config,
    month: &str,
    rows: &[finops_allocate::hygiene::Untagged],
    carried: &BTreeMap<String, BTreeMap<String, String>>,
    accounts: &[finops_allocate::hygiene::AccountCoverage],
) -> (Found, Message) {
    let currency = &rules.currency;
    let route = config.alerts.untagged_route.clone().unwrap_or_else(|| config.alerts.default_route.clone());
    let unallocated: i64 = rows.iter().map(|r| r.cents.0).sum();
    let total: i64 = accounts.iter().map(|a| a.total.0).sum();
    let share = if total == 0 { 0.0 } else { unallocated as f64 / total as f64 * 100.0 };
    let text = format!("Untagged cost {month}: {} ({share:.1}% of the allocated total) reached no team", money(unallocated as f64 / 100.0, currency));
    let none = BTreeMap::new();
    let lines: Vec<String> = rows
        .iter()
        .take(5)
        .map(|r| {
            let what = if r.resource.is_empty() { format!("{} in {}", r.service, r.account) } else { format!("{} ({}, {})", r.resource, r.service, r.account) };
            let advice = finops_allocate::hygiene::advice(rules, r, carried.get(&*r.resource).unwrap_or(&none));
            format!("{}: {what}: {advice}", money(r.cents.0 as f64 / 100.0, currency))
        })
        .collect();
    let mut lowest: Vec<&finops_allocate::hygiene::AccountCoverage> = accounts.iter().filter(|a| a.allocated != a.total).collect();
    lowest.sort_by(|a, b| a.share().total_cmp(&b.share()).then_with(|| a.account.cmp(&b.account)));
    let mut fields = vec![("Untagged", format!("{} ({share:.1}%)", money(unallocated as f64 / 100.0, currency))), ("Resources", rows.len().to_string())];
    for a in lowest.iter().take(3) {
        fields.push(("Account coverage", format!("{}: {:.1}%", a.account, a.share() * 100.0)));
    }
    let id = format!("untagged:{month}");
    let message = Message {
        id: id.clone(),
        route: route.clone(),
        text: text.clone(),
        blocks: blocks(&format!("Untagged cost — {month}"), &fields, "Largest, and what to fix", &lines, "finops · untagged.csv lists every resource; coverage.csv each account by month"),
    };
    (Found { id, kind: "untagged", route, text, spike: None, held: None }, message)
}

/// A team's monthly message, waiting for the link to its published CSV (messages are made
/// only once what they point at exists: docs/publishing.md).
#[derive(Clone, Debug)]
pub struct TeamMessage {
    pub team: String,
    pub id: String,
    pub route: String,
    pub text: String,
    header: String,
    fields: Vec<(String, String)>,
    lines: Vec<String>,
    context: String,
}

impl TeamMessage {
    /// The message, with its CSV link when there is one.
    pub fn with_link(&self, link: Option<&CsvLink>) -> Message {
        let mut lines = self.lines.clone();
        if let Some(link) = link {
            lines.push(format!("Your lines: {} ({})", link.url, link.note));
        }
        let fields: Vec<(&str, String)> = self.fields.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        Message { id: self.id.clone(), route: self.route.clone(), text: self.text.clone(), blocks: blocks(&self.header, &fields, "Details", &lines, &self.context) }
    }
}

/// A link to a team's published CSV and what a reader should know about it (when it expires,
/// or that it needs an AWS sign-in).
#[derive(Clone, Debug, PartialEq)]
pub struct CsvLink {
    pub url: String,
    pub note: String,
}

/// Each team's CSV as its monthly message links it, from the published month's records (so a
/// link always points at an object that exists): a local output's path; in S3, per `[output]
/// links`, the console's page for the object, a presigned download link that says when it
/// expires, or nothing.
pub async fn csv_links(config: &Config, root: &OutputRoot, month: &str, files: &[finops_report::manifest::FileRecord]) -> Result<BTreeMap<String, CsvLink>, JobError> {
    let mut out = BTreeMap::new();
    for file in files.iter().filter(|f| f.name.starts_with("teams/") && f.name.ends_with(".csv")) {
        let stem = &file.name["teams/".len()..file.name.len() - ".csv".len()];
        let at = format!("{month}/{}", file.stored_at());
        let link = match (root, config.output.links) {
            (OutputRoot::Local(dir), _) => CsvLink { url: dir.root.join(&at).display().to_string(), note: "on the machine that ran finops".into() },
            (OutputRoot::S3(_), crate::config::LinkKind::None) => continue,
            (OutputRoot::S3(dir), crate::config::LinkKind::Console) => CsvLink { url: dir.console_link(&at), note: "AWS console: sign in to open it; the link does not expire".into() },
            (OutputRoot::S3(dir), crate::config::LinkKind::Presigned) => {
                let (url, until) = dir.presign_for_up_to(&at, std::time::Duration::from_secs(7 * 86_400)).await?;
                let until: chrono::DateTime<chrono::Utc> = until.into();
                CsvLink { url, note: format!("download link valid until {} UTC", until.format("%Y-%m-%d %H:%M")) }
            }
        };
        out.insert(stem.to_string(), link);
    }
    Ok(out)
}

/// A published month run again with changed figures (AWS restates a closed month for about two
/// weeks): one "revised" message per team whose total changed, old -> new. The id carries the
/// new total, so a later revision is told again and the same one never twice.
pub fn revised(rules: &RuleSet, config: &Config, month: &str, before: &finops_report::manifest::Manifest, now: &finops_report::manifest::Manifest) -> Vec<(String, Found, Message)> {
    let cents = |t: Option<&finops_report::manifest::TotalRecord>| t.and_then(|t| t.rounded.parse::<finops_allocate::Money>().ok()).map_or(Cents(0), |m| m.round_to_cents());
    let basis = rules.cost_basis.name();
    let (bill_before, bill_now) = (cents(before.totals.get(basis)), cents(now.totals.get(basis)));
    let teams: std::collections::BTreeSet<&String> = before.teams.keys().chain(now.teams.keys()).collect();
    let mut out = Vec::new();
    for team in teams {
        let (old, new) = (cents(before.teams.get(team)), cents(now.teams.get(team)));
        if old == new {
            continue;
        }
        let change = Cents(new.0 - old.0);
        let sign = if change.0 >= 0 { "+" } else { "−" };
        let amount = |c: Cents| format!("{} {}", grouped(c), rules.currency);
        let change_text = format!("{sign}{}", amount(Cents(change.0.abs())));
        // No possessive: "orders's" reads wrong, and no rule fits every team name.
        let text = format!("Revised: team {team}, {month}: now {} (was {}, {change_text}); the month's billing data changed after it was first published", amount(new), amount(old));
        let id = format!("revised:{team}:{month}:{new}");
        let route = route_of(rules, config, Some(team));
        let message = Message {
            id: id.clone(),
            route: route.clone(),
            text: text.clone(),
            blocks: blocks(
                &format!("Revised: {team}, {month}"),
                &[("Now", amount(new)), ("Before", amount(old)), ("Change", change_text.clone()), ("The month's AWS bill", format!("{} → {}", amount(bill_before), amount(bill_now)))],
                "What changed",
                &[format!("AWS updated {month}'s billing data after the month was published; the report, summary.csv and your CSV were republished with the new figures")],
                &format!("finops · {basis} cost, {}", rules.currency),
            ),
        };
        out.push((team.clone(), Found { id, kind: "revised", route, text, spike: None, held: None }, message));
    }
    out
}

#[cfg(test)]
mod daily_tests {
    use super::*;

    fn d(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    // Regression: 0.995 and 1.0 shared the id `100`, so the second was taken as sent already.
    #[test]
    fn thresholds_of_99_5_and_100_percent_both_fire_each_on_its_day() {
        let rules = RuleSet::parse(std::path::Path::new("t.toml"), "version = 1\nteam_tags = [\"team\"]\n[teams.search]\nbudget = 1000\n").unwrap();
        let config = Config { alerts: crate::config::AlertsConfig { budget_thresholds: vec![0.995, 1.0], ..Default::default() }, ..Config::default() };
        // A month of 32.10 a day ends at 995.10 (99.5%); one of 32.30 a day at 1,001.30 (100.1%).
        let ids = |cents: i64| {
            let days: BTreeMap<NaiveDate, Cents> = (1..=31).map(|k| (d(&format!("2025-10-{k:02}")), Cents(cents))).collect();
            let team_days = BTreeMap::from([("search".to_string(), days)]);
            budget_alerts(&rules, &config, &team_days, "2025-10", d("2025-10-31")).into_iter().map(|(f, _)| f.id).collect::<Vec<_>>()
        };
        assert_eq!(ids(3210), ["budget:search:2025-10:99.5"]);
        assert_eq!(ids(3230), ["budget:search:2025-10:100"]);
    }

    #[test]
    fn cost_explorer_is_read_for_the_month_of_yesterday_and_files_for_their_latest() {
        assert_eq!(scheduled_month(true, d("2025-11-20")).as_deref(), Some("2025-11"));
        assert_eq!(scheduled_month(true, d("2025-12-01")).as_deref(), Some("2025-11"), "on the 1st, the month that just ended");
        assert_eq!(scheduled_month(false, d("2025-11-20")), None);
    }

    #[test]
    fn the_days_to_check_run_from_the_last_checked_to_the_latest_complete_bounded() {
        assert_eq!(days_to_check(None, d("2025-10-30"), 7), (vec![d("2025-10-30")], 0), "a first run checks the latest day");
        assert_eq!(days_to_check(Some(d("2025-10-30")), d("2025-10-30"), 7), (vec![], 0), "nothing twice");
        assert_eq!(days_to_check(Some(d("2025-10-30")), d("2025-11-01"), 7), (vec![d("2025-10-31"), d("2025-11-01")], 0), "across the month's end");
        assert_eq!(days_to_check(Some(d("2025-10-01")), d("2025-10-10"), 3), (vec![d("2025-10-08"), d("2025-10-09"), d("2025-10-10")], 6));
    }
}

#[cfg(test)]
mod spike_text_tests {
    use super::*;

    #[test]
    fn a_confirmed_level_shift_says_its_first_days_were_the_start_of_a_new_level() {
        let rules = RuleSet::parse(std::path::Path::new("t.toml"), "version = 1\nteam_tags = [\"team\"]\n[teams.search]\n").unwrap();
        let day = |d: u32| NaiveDate::from_ymd_opt(2025, 10, d).unwrap();
        let shift =
            alerts::LevelShift { subject: Subject::Team("search".into()), grain: alerts::Grain::Service, series: "AmazonEC2".into(), from: day(15), confirmed: day(17), before: 100.0, level: 300.0 };
        let (found, message) = shift_alert(&rules, &Config::default(), &shift);
        assert_eq!(found.id, "shift:team:search:2025-10-15");
        assert!(
            found.text.starts_with("Level shift confirmed: team search, its service AmazonEC2 has cost about 300.00 USD a day since 2025-10-15 (expected 100.00 USD before): the spike alerts from 2025-10-15 were the start of a new level"),
            "{}",
            found.text
        );
        assert_eq!(message.id, found.id);
    }

    #[test]
    fn a_spike_over_an_expectation_of_zero_or_less_is_said_in_money_not_percent() {
        let rules = RuleSet::parse(std::path::Path::new("t.toml"), "version = 1\nteam_tags = [\"team\"]\n[teams.search]\n").unwrap();
        let config = Config::default();
        let spike = |expected: f64| Spike {
            subject: Subject::Team("search".into()),
            date: NaiveDate::from_ymd_opt(2025, 10, 20).unwrap(),
            grain: alerts::Grain::Team,
            series: "search".into(),
            actual: 120.0,
            expected: alerts::Expected { cost: expected, mad: 1.0, recurring: expected, log_sigma: None },
            team_actual: 120.0,
            contributors: Vec::new(),
            repeat_of: None,
        };
        let (found, _) = spike_alert(&rules, &config, &spike(-30.0));
        assert!(found.text.contains("150.00 USD more than expected (expected -30.00 USD: no usual spend to compare with)") && !found.text.contains('%'), "{}", found.text);
        let (found, _) = spike_alert(&rules, &config, &spike(60.0));
        assert!(found.text.ends_with("expected 60.00 USD (+100%)"), "{}", found.text);
    }
}
