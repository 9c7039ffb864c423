//! Prometheus as a source of usage drivers and GPU usage: instant queries evaluated at the end of
//! a billing period over exactly that period, with bounded retries; raw samples through remote
//! read ([`remote_read`]) where reading every sample is the point.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{Datelike, NaiveDate};
use finops_allocate::DriverSample;
use prometheus_http_query::Client;

use crate::{Error, Result};

mod remote_read;
pub(crate) use remote_read::is_stale;
pub use remote_read::{Labels, MatchOp, RawRead};

/// How queries prove who they are.
#[derive(Clone, Default)]
pub enum PrometheusAuth {
    #[default]
    None,
    /// HTTP basic auth (a self-hosted Prometheus behind a proxy).
    Basic { username: String, password: String },
    /// `Authorization: Bearer <token>`.
    Bearer { token: String },
    /// Amazon Managed Service for Prometheus: every query signed with SigV4 for service `aps`,
    /// with the credentials of the SDK's chain (the Lambda's role).
    SigV4 { region: String, credentials: aws_credential_types::provider::SharedCredentialsProvider },
}

impl std::fmt::Debug for PrometheusAuth {
    /// Names the kind only: credentials never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PrometheusAuth::None => "none",
            PrometheusAuth::Basic { .. } => "basic",
            PrometheusAuth::Bearer { .. } => "bearer",
            PrometheusAuth::SigV4 { .. } => "sigv4",
        })
    }
}

impl PrometheusAuth {
    /// Basic or bearer credentials from a secret's text: `{"username": .., "password": ..}` for
    /// basic; `{"token": ..}` or the bare token for bearer.
    pub fn from_secret(kind: &str, text: &str, setting: &str) -> Result<PrometheusAuth> {
        let bad = |message: &str| Error::Prometheus { at: setting.to_string(), message: message.to_string() };
        let json: Option<serde_json::Value> = serde_json::from_str(text).ok();
        let field = |name: &str| json.as_ref().and_then(|j| j.get(name)).and_then(|v| v.as_str()).map(str::to_string);
        match kind {
            "basic" => Ok(PrometheusAuth::Basic {
                username: field("username").ok_or_else(|| bad("the secret for basic auth must be JSON with `username` and `password`"))?,
                password: field("password").ok_or_else(|| bad("the secret for basic auth has no `password`"))?,
            }),
            "bearer" => {
                let token = if json.is_some() { field("token").ok_or_else(|| bad("the secret for bearer auth must be the token, or JSON with `token`"))? } else { text.trim().to_string() };
                if token.is_empty() {
                    return Err(bad("the secret for bearer auth is empty"));
                }
                Ok(PrometheusAuth::Bearer { token })
            }
            other => Err(bad(&format!("`{other}` credentials do not come from a secret"))),
        }
    }
}

/// How the queries travel: prometheus-http-query's client (plain, basic or bearer), or signed
/// requests for Amazon Managed Service for Prometheus (each signature covers its own URL and
/// time, which a client with fixed headers cannot carry).
#[derive(Clone)]
enum Transport {
    Client(Client),
    SigV4 { http: reqwest::Client, region: String, credentials: aws_credential_types::provider::SharedCredentialsProvider },
}

/// A Prometheus server's HTTP API.
#[derive(Clone)]
pub struct PrometheusSource {
    transport: Transport,
    url: String,
    /// Attempts per query (network errors and 5xx are retried; a bad query is not).
    pub attempts: u32,
    pub backoff: Duration,
}

/// RFC 3986 percent-encoding of everything but the unreserved characters (SigV4's URI encoding).
fn uri_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What one try of a query came to, when not an answer.
enum Attempt {
    /// The network or the server (5xx, 429): another try may help.
    Retry(String),
    /// The query or the credentials were refused: retrying cannot help.
    Fail(String),
}

/// `[start, end)` of a `YYYY-MM` billing period, as Unix seconds (UTC).
pub fn period_bounds(period: &str) -> Result<(i64, i64)> {
    crate::check_month(period)?;
    let (year, month): (i32, u32) = (period[..4].parse().unwrap_or(1970), period[5..].parse().unwrap_or(1));
    let start = NaiveDate::from_ymd_opt(year, month, 1).ok_or_else(|| Error::BadMonth(period.into()))?;
    let next = if start.month() == 12 { NaiveDate::from_ymd_opt(year + 1, 1, 1) } else { NaiveDate::from_ymd_opt(year, month + 1, 1) }.ok_or_else(|| Error::BadMonth(period.into()))?;
    let seconds = |d: NaiveDate| d.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp()).unwrap_or(0);
    Ok((seconds(start), seconds(next)))
}

/// The evaluation time for a window ending at `end_ms` (Unix milliseconds): 1 ms before its end.
/// Range selectors include both ends, so evaluating at the end itself would count a sample on
/// the boundary in this window and the next (or this month and the next).
pub fn time_before(end_ms: i64) -> String {
    let t = end_ms - 1;
    format!("{}.{:03}", t.div_euclid(1000), t.rem_euclid(1000))
}

impl PrometheusSource {
    pub fn new(url: &str) -> Result<PrometheusSource> {
        PrometheusSource::with_auth(url, PrometheusAuth::None)
    }

    pub fn with_auth(url: &str, auth: PrometheusAuth) -> Result<PrometheusSource> {
        let bad_url = |e: String| {
            // `host:9090` parses as a URL of scheme `host`: say what is missing.
            let hint = if url.starts_with("http://") || url.starts_with("https://") { String::new() } else { format!("; a Prometheus URL starts with http:// or https://, e.g. http://{url}") };
            Error::Prometheus { at: url.to_string(), message: format!("not a usable URL ({e}){hint}") }
        };
        // Checked here, once: a URL no request can be made to is no reason to retry.
        match reqwest::Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => {}
            Ok(u) => return Err(bad_url(format!("scheme `{}` is not http or https", u.scheme()))),
            Err(e) => return Err(bad_url(e.to_string())),
        }
        let header = |value: String| -> Result<reqwest::header::HeaderMap> {
            let mut value =
                reqwest::header::HeaderValue::from_str(&value).map_err(|_| Error::Prometheus { at: url.to_string(), message: "the credentials hold characters a header cannot carry".into() })?;
            value.set_sensitive(true);
            Ok(reqwest::header::HeaderMap::from_iter([(reqwest::header::AUTHORIZATION, value)]))
        };
        let with_headers = |headers: reqwest::header::HeaderMap| -> Result<Client> {
            let http = reqwest::Client::builder().default_headers(headers).build().map_err(|e| bad_url(e.to_string()))?;
            Client::from(http, url).map_err(|e| bad_url(e.to_string()))
        };
        let transport = match auth {
            PrometheusAuth::None => Transport::Client(Client::try_from(url).map_err(|e| bad_url(e.to_string()))?),
            PrometheusAuth::Basic { username, password } => Transport::Client(with_headers(header(format!("Basic {}", aws_smithy_types::base64::encode(format!("{username}:{password}"))))?)?),
            PrometheusAuth::Bearer { token } => Transport::Client(with_headers(header(format!("Bearer {token}"))?)?),
            PrometheusAuth::SigV4 { region, credentials } => {
                reqwest::Url::parse(url).map_err(|e| bad_url(e.to_string()))?;
                Transport::SigV4 { http: reqwest::Client::new(), region, credentials }
            }
        };
        Ok(PrometheusSource { transport, url: url.trim_end_matches('/').to_string(), attempts: 4, backoff: Duration::from_millis(500) })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Evaluates `query` at `time` (Unix seconds, may carry milliseconds) and returns each
    /// series' labels and value.
    pub async fn instant(&self, query: &str, time: &str) -> Result<Vec<(HashMap<String, String>, f64)>> {
        let mut last = String::new();
        for attempt in 0..self.attempts {
            if attempt > 0 {
                tokio::time::sleep(self.backoff * 2u32.pow(attempt - 1)).await;
            }
            let client = match &self.transport {
                Transport::Client(client) => client,
                Transport::SigV4 { http, region, credentials } => match self.signed_instant(http, region, credentials, query, time).await {
                    Ok(samples) => return Ok(samples),
                    Err(Attempt::Retry(message)) => {
                        last = message;
                        continue;
                    }
                    Err(Attempt::Fail(message)) => return Err(Error::Prometheus { at: self.url.clone(), message }),
                },
            };
            match client.query(query).query("time", time).get().await {
                Ok(result) => {
                    let prometheus_http_query::response::Data::Vector(vector) = result.into_inner().0 else {
                        return Err(Error::Prometheus { at: self.url.clone(), message: format!("`{query}` did not return an instant vector") });
                    };
                    return Ok(vector
                        .into_iter()
                        .map(|v| {
                            let (labels, sample) = v.into_inner();
                            (labels, sample.value())
                        })
                        .collect());
                }
                // Overloaded or timed out: worth another try.
                Err(prometheus_http_query::Error::Prometheus(e)) if e.is_timeout() || e.is_unavailable() || e.is_internal() => {
                    last = e.to_string();
                }
                // The server understood and refused (bad PromQL, limits): retrying cannot help.
                Err(prometheus_http_query::Error::Prometheus(e)) => return Err(Error::Prometheus { at: self.url.clone(), message: format!("`{query}` failed: {e}") }),
                Err(e) => last = crate::error_chain(&e),
            }
        }
        Err(Error::Prometheus { at: self.url.clone(), message: format!("no answer after {} attempts: {last}. Check the URL and that Prometheus is running", self.attempts) })
    }

    /// One instant query to Amazon Managed Service for Prometheus, signed with SigV4 (service
    /// `aps`) over its exact URL, and its vector read from the standard API response.
    async fn signed_instant(
        &self,
        http: &reqwest::Client,
        region: &str,
        credentials: &aws_credential_types::provider::SharedCredentialsProvider,
        query: &str,
        time: &str,
    ) -> std::result::Result<Vec<(HashMap<String, String>, f64)>, Attempt> {
        use aws_credential_types::provider::ProvideCredentials;
        // Encoded as SigV4's canonical form does (a space is %20, never `+`), so the signature
        // covers the query exactly as the service decodes it.
        let url = format!("{}/api/v1/query?query={}&time={}", self.url, uri_encode(query), uri_encode(time));
        let url = reqwest::Url::parse(&url).map_err(|e| Attempt::Fail(format!("not a usable URL: {e}")))?;
        let identity: aws_smithy_runtime_api::client::identity::Identity =
            credentials.provide_credentials().await.map_err(|e| Attempt::Fail(format!("no AWS credentials to sign the query with: {}", crate::error_chain(&e))))?.into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name("aps")
            .time(std::time::SystemTime::now())
            .settings(aws_sigv4::http_request::SigningSettings::default())
            .build()
            .map_err(|e| Attempt::Fail(format!("signing: {e}")))?
            .into();
        let signable = aws_sigv4::http_request::SignableRequest::new("GET", url.as_str(), std::iter::empty(), aws_sigv4::http_request::SignableBody::Bytes(&[]))
            .map_err(|e| Attempt::Fail(format!("signing: {e}")))?;
        let (instructions, _) = aws_sigv4::http_request::sign(signable, &params).map_err(|e| Attempt::Fail(format!("signing: {e}")))?.into_parts();
        let mut request = http.get(url);
        for (name, value) in instructions.headers() {
            request = request.header(name, value);
        }
        let response = request.send().await.map_err(|e| Attempt::Retry(crate::error_chain(&e)))?;
        let status = response.status();
        let body = response.text().await.map_err(|e| Attempt::Retry(crate::error_chain(&e)))?;
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(Attempt::Retry(format!("HTTP {status}: {}", body.chars().take(300).collect::<String>())));
        }
        if !status.is_success() {
            return Err(Attempt::Fail(format!("`{query}` failed: HTTP {status}: {}", body.chars().take(300).collect::<String>())));
        }
        let json: serde_json::Value = serde_json::from_str(&body).map_err(|e| Attempt::Fail(format!("not a Prometheus API response: {e}")))?;
        if json["data"]["resultType"] != "vector" {
            return Err(Attempt::Fail(format!("`{query}` did not return an instant vector")));
        }
        let series = json["data"]["result"].as_array().cloned().unwrap_or_default();
        series
            .iter()
            .map(|s| {
                let labels = s["metric"].as_object().map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect()).unwrap_or_default();
                let value = s["value"][1].as_str().and_then(|v| v.parse::<f64>().ok()).ok_or_else(|| Attempt::Fail(format!("`{query}`: a sample is not a number: {s}")))?;
                Ok((labels, value))
            })
            .collect()
    }

    /// A metric driver for one billing period: the query averaged over the whole period (or, if
    /// it mentions `$__range`, the query as written with the period's length substituted),
    /// evaluated at the period's end. One sample per series, keyed by `label`.
    pub async fn driver(&self, query: &str, label: &str, period: &str) -> Result<Vec<DriverSample>> {
        let (start, end) = period_bounds(period)?;
        let samples = self.window(query, label, start, end, None).await?;
        if samples.is_empty() {
            return Err(Error::Prometheus { at: self.url.clone(), message: format!("`{query}` returned no series for {period}") });
        }
        Ok(samples)
    }

    /// The same, one value per UTC day of the period (for `granularity = "day"`). Days without
    /// data are simply absent; the engine then uses the period's weights for them.
    pub async fn daily_driver(&self, query: &str, label: &str, period: &str) -> Result<Vec<DriverSample>> {
        let (start, end) = period_bounds(period)?;
        let mut samples = Vec::new();
        for day_start in (start..end).step_by(86_400) {
            let date = chrono::DateTime::from_timestamp(day_start, 0).map(|d| d.format("%Y-%m-%d").to_string());
            samples.extend(self.window(query, label, day_start, day_start + 86_400, date).await?);
        }
        if samples.is_empty() {
            return Err(Error::Prometheus { at: self.url.clone(), message: format!("`{query}` returned no series for any day of {period}") });
        }
        Ok(samples)
    }

    /// The query averaged over `[start, end)`, one sample per series keyed by `label`.
    async fn window(&self, query: &str, label: &str, start: i64, end: i64, date: Option<String>) -> Result<Vec<DriverSample>> {
        let range = format!("{}s", end - start);
        let promql = if query.contains("$__range") { query.replace("$__range", &range) } else { format!("avg_over_time(({query})[{range}:1h])") };
        let time = time_before(end * 1000);
        self.instant(&promql, &time)
            .await?
            .into_iter()
            .map(|(labels, value)| {
                let key = labels
                    .get(label)
                    .cloned()
                    .ok_or_else(|| Error::Prometheus { at: self.url.clone(), message: format!("a series of `{promql}` has no `{label}` label ({labels:?}): aggregate with `sum by ({label})`") })?;
                Ok(DriverSample { date: date.clone(), key, value })
            })
            .collect()
    }
}
