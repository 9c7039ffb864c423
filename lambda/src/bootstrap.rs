//! `bootstrap`: the pipeline as an AWS Lambda function (`provided.al2023`). EventBridge Scheduler
//! invokes it with `{"job":"daily"}` or `{"job":"monthly","month":"YYYY-MM"}` (the month defaults
//! to the previous one); an EventBridge scheduled-event envelope with the same in `detail` works
//! too. The configuration is read once per container, from `FINOPS_CONFIG` (a packaged TOML file)
//! and the environment; the jobs are the CLI's. Logs are JSON lines; an error's type says whether
//! a retry can help (`Retryable.*` or `Fatal.*`).

use finops_ingest::Silent;
use finops_lambda::config::Config;
use finops_lambda::monthly::JobError;
use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde_json::{json, Value};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// What to run, from the event.
#[derive(Debug, PartialEq)]
enum Job {
    Daily { day: Option<String> },
    Monthly { month: String },
}

fn fatal(kind: &str, message: impl Into<String>) -> Diagnostic {
    Diagnostic { error_type: format!("Fatal.{kind}"), error_message: message.into() }
}

/// The job an event asks for; `today` gives the default month (the previous one).
fn job(event: &Value, today: chrono::NaiveDate) -> Result<Job, Diagnostic> {
    let body = if event.get("job").is_some() { event } else { event.get("detail").unwrap_or(event) };
    let text = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_string);
    match text("job").as_deref() {
        Some("daily") => Ok(Job::Daily { day: text("day") }),
        Some("monthly") => {
            let month = match text("month") {
                Some(m) => m,
                None => finops_ingest::previous_month(&today.format("%Y-%m").to_string()).map_err(|e| fatal("BadEvent", e.to_string()))?,
            };
            Ok(Job::Monthly { month })
        }
        Some(other) => Err(fatal("BadEvent", format!("unknown job `{other}`: use {{\"job\":\"daily\"}} or {{\"job\":\"monthly\",\"month\":\"YYYY-MM\"}}"))),
        None => Err(fatal("BadEvent", format!("the event has no `job`: use {{\"job\":\"daily\"}} or {{\"job\":\"monthly\",\"month\":\"YYYY-MM\"}}; got {event}"))),
    }
}

/// A job's error as the Runtime API reports it: whether a retry can help is in its type
/// (asynchronous retries are off in the template; an operator or a retrying caller reads it).
fn diagnostic(error: &JobError) -> Diagnostic {
    let kind = match error {
        JobError::Ingest(finops_ingest::Error::EmptyMonth { .. }) => "NoData",
        JobError::Ingest(_) => "BillingData",
        JobError::Rules(_) | JobError::RuleSet(_) => "Rules",
        JobError::Allocate(_) => "Allocation",
        JobError::Report(finops_report::Error::Busy { .. }) => "MonthBusy",
        JobError::Report(_) | JobError::Output(_) => "Output",
    };
    Diagnostic { error_type: format!("{}.{kind}", if error.retryable() { "Retryable" } else { "Fatal" }), error_message: error.to_string() }
}

async fn handle(config: &Config, event: LambdaEvent<Value>) -> Result<Value, Diagnostic> {
    let job = job(&event.payload, chrono::Utc::now().date_naive())?;
    tracing::info!(?job, request = %event.context.request_id, "job");
    match job {
        Job::Monthly { month } => {
            // Pending alerts never fail the monthly job: the month is published and the next
            // daily run delivers them (re-running the month would not help).
            let outcome = finops_lambda::monthly::run_monthly(config, Some(month), &Silent).await.map_err(|e| diagnostic(&e))?;
            let pending = outcome.alerts.delivery.pending.len();
            if pending > 0 {
                tracing::warn!(pending, month = %outcome.month, "alerts pending: the next daily run delivers them");
            }
            Ok(json!({
                "job": "monthly",
                "month": outcome.month,
                "output": outcome.output,
                "changed": outcome.changed,
                "alerts_pending": pending,
                "line_items": outcome.line_items,
                "coverage": format!("{:.4}", outcome.coverage),
                "teams": outcome.teams.iter().map(|t| (t.team.clone(), t.total.to_string())).collect::<std::collections::BTreeMap<_, _>>(),
                "alerts_sent": outcome.alerts.delivery.sent.len(),
                "warnings": outcome.warnings,
            }))
        }
        Job::Daily { day } => {
            let outcome = finops_lambda::alerting::run_daily(config, day, finops_lambda::alerting::ShortBaseline::Retry, &Silent).await.map_err(|e| diagnostic(&e))?;
            if !outcome.delivery.pending.is_empty() {
                return Err(Diagnostic { error_type: "Retryable.AlertsPending".into(), error_message: format!("{}: {} alert(s) pending", outcome.days.join(", "), outcome.delivery.pending.len()) });
            }
            Ok(json!({
                "job": "daily",
                "days": outcome.days,
                "notes": outcome.notes,
                "found": outcome.found.len(),
                "sent": outcome.delivery.sent.len(),
                "recorded": outcome.written,
            }))
        }
    }
}

/// The text of `FINOPS_CONFIG` when it names an S3 object (`s3://bucket/key`).
async fn config_from_s3() -> Result<Option<String>, String> {
    let Some(uri) = std::env::var("FINOPS_CONFIG").ok().filter(|u| u.starts_with("s3://")) else { return Ok(None) };
    let (bucket, key) = uri["s3://".len()..].split_once('/').ok_or_else(|| format!("FINOPS_CONFIG: `{uri}` is not s3://bucket/key"))?;
    let aws = finops_ingest::store::AwsSettings::new(None, std::env::var("FINOPS_AWS_ENDPOINT_URL").ok().filter(|e| !e.is_empty()));
    let object = aws.s3_client().await.get_object().bucket(bucket).key(key).send().await.map_err(|e| format!("FINOPS_CONFIG: could not read {uri}: {}", aws_sdk_s3::error::DisplayErrorContext(&e)))?;
    let bytes = object.body.collect().await.map_err(|e| format!("FINOPS_CONFIG: could not read {uri}: {e}"))?.into_bytes();
    String::from_utf8(bytes.to_vec()).map(Some).map_err(|_| format!("FINOPS_CONFIG: {uri} is not UTF-8 text"))
}

/// The Slack webhook URLs under `FINOPS_SLACK_PARAMETERS` in Parameter Store, one SecureString
/// per route (`/finops/slack/search-costs`), and/or in the Secrets Manager secret
/// `FINOPS_SLACK_SECRET`, read once per container into the config, in memory only. A path that cannot be read fails the start, naming the setting (never the URLs).
async fn slack_webhooks(mut config: Config) -> Result<Config, String> {
    // Or one Secrets Manager secret holding `{"<route>": "<webhook URL>", ...}`.
    if let Some(secret) = std::env::var("FINOPS_SLACK_SECRET").ok().filter(|p| !p.trim().is_empty()) {
        let text = finops_ingest::secrets::read_secret(&config.aws, &secret, "FINOPS_SLACK_SECRET").await.map_err(|e| e.to_string())?;
        let routes: std::collections::BTreeMap<String, String> =
            serde_json::from_str(&text).map_err(|_| format!("FINOPS_SLACK_SECRET: the secret `{secret}` must be a JSON object of route name to webhook URL"))?;
        tracing::info!(routes = routes.len(), "Slack webhooks from Secrets Manager");
        config.alerts.webhooks.extend(routes);
    }
    let Some(path) = std::env::var("FINOPS_SLACK_PARAMETERS").ok().filter(|p| !p.trim().is_empty()) else { return Ok(config) };
    let path = path.trim_end_matches('/').to_string();
    let ssm = aws_sdk_ssm::Client::new(&config.aws.sdk_config().await);
    let mut pages = ssm.get_parameters_by_path().path(&path).recursive(true).with_decryption(true).into_paginator().send();
    let mut routes = 0;
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| format!("FINOPS_SLACK_PARAMETERS: could not read the parameters under {path}: {}", aws_sdk_ssm::error::DisplayErrorContext(&e)))?;
        for parameter in page.parameters() {
            let (Some(name), Some(value)) = (parameter.name(), parameter.value()) else { continue };
            let route = name.strip_prefix(&path).unwrap_or(name).trim_start_matches('/').to_string();
            config.alerts.webhooks.insert(route, value.to_string());
            routes += 1;
        }
    }
    tracing::info!(routes, path = %path, "Slack webhooks from Parameter Store");
    Ok(config)
}

/// A configuration step's result: its error is logged (the only place a failed start is seen)
/// and fails the container's start.
fn at_start<T, E: std::fmt::Display>(result: Result<T, E>) -> Result<T, lambda_runtime::Error> {
    result.map_err(|e| {
        tracing::error!(error = %e, "configuration");
        e.to_string().into()
    })
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    tracing_subscriber::fmt().json().with_env_filter(tracing_subscriber::EnvFilter::try_from_env("FINOPS_LOG").unwrap_or_else(|_| "info".into())).with_current_span(false).without_time().init();
    // Built once per container: a bad config fails the container's start, naming the setting.
    let fetched = at_start(config_from_s3().await)?;
    let config = at_start(Config::from_environment_with(fetched.as_deref()))?;
    let mut config = at_start(slack_webhooks(config).await)?;
    // Prometheus credentials are read once: a missing secret fails the start, naming the setting.
    let aws = config.aws.clone();
    at_start(config.prometheus.resolve(&aws).await)?;
    if let Some(auth) = &config.prometheus.resolved {
        tracing::info!(auth = ?auth, "Prometheus credentials");
    }
    let config = &config;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move { handle(config, event).await })).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_name_their_job() {
        let today = chrono::NaiveDate::from_ymd_opt(2025, 11, 3).unwrap();
        assert_eq!(job(&json!({"job": "daily"}), today).unwrap(), Job::Daily { day: None });
        assert_eq!(job(&json!({"job": "monthly"}), today).unwrap(), Job::Monthly { month: "2025-10".into() });
        assert_eq!(job(&json!({"job": "monthly", "month": "2025-09"}), today).unwrap(), Job::Monthly { month: "2025-09".into() });
        let envelope = json!({"version": "0", "detail-type": "Scheduled Event", "source": "aws.scheduler", "detail": {"job": "daily", "day": "2025-10-20"}});
        assert_eq!(job(&envelope, today).unwrap(), Job::Daily { day: Some("2025-10-20".into()) });
        assert!(job(&json!({"hello": 1}), today).unwrap_err().error_message.contains("the event has no `job`"));
        assert_eq!(job(&json!({"job": "weekly"}), today).unwrap_err().error_type, "Fatal.BadEvent");
    }
}
