//! Slack delivery (docs/design.md §7): alert messages as Block Kit, posted to incoming webhooks, each
//! alert sent once in effect.
//!
//! **Exactly once in effect** (docs/publishing.md). A state file beside the outputs
//! (`alerts-state.json` under the output root) remembers every alert id delivered and every
//! message still pending. Messages are queued in it before any is sent, and each is recorded the
//! moment Slack accepts it; every change is a conditional write (S3 `If-Match` on the ETag it was
//! read at, re-read and re-applied on 412), so two runs never lose each other's records. A
//! re-run sends nothing twice, and a message that could not be delivered (Slack down, a 4xx, no
//! webhook for its route in this run) stays pending and goes out on the next run. The one window
//! left is a crash after Slack's 200 and before the record: that message is sent again on the
//! next run — at least once, never lost.
//!
//! **Secrets.** Webhook URLs come from the environment (`FINOPS_SLACK_WEBHOOK_<ROUTE>`) or the
//! config, and never appear in a log line, an error or an output: errors name the route.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One Slack message for one alert, to one route.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Stable across runs: the same alert always has the same id (what "sent once" keys on).
    pub id: String,
    /// The route (a team's `slack`, or the default route).
    pub route: String,
    /// The notification text (Slack shows it where blocks cannot be shown).
    pub text: String,
    /// Block Kit blocks.
    pub blocks: serde_json::Value,
}

/// Route -> webhook URL. Never printed.
#[derive(Clone, Default)]
pub struct Webhooks {
    urls: BTreeMap<String, String>,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Webhooks({} routes: {:?})", self.urls.len(), self.urls.keys().collect::<Vec<_>>())
    }
}

/// The environment variable that holds a route's webhook URL: `FINOPS_SLACK_WEBHOOK_` and the
/// route in upper case, other characters as `_` (`search-costs` -> `FINOPS_SLACK_WEBHOOK_SEARCH_COSTS`).
pub fn webhook_variable(route: &str) -> String {
    let name: String = route.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
    format!("FINOPS_SLACK_WEBHOOK_{name}")
}

impl Webhooks {
    /// The URLs of `routes`: each from its environment variable, else from `configured`.
    pub fn resolve<'a>(routes: impl Iterator<Item = &'a str>, configured: &BTreeMap<String, String>) -> Webhooks {
        let mut urls = BTreeMap::new();
        for route in routes {
            let url = std::env::var(webhook_variable(route)).ok().filter(|u| !u.is_empty()).or_else(|| configured.get(route).cloned());
            if let Some(url) = url {
                urls.insert(route.to_string(), url);
            }
        }
        Webhooks { urls }
    }

    pub fn has(&self, route: &str) -> bool {
        self.urls.contains_key(route)
    }

    pub fn is_empty(&self) -> bool {
        self.urls.is_empty()
    }

    /// Every URL, for tests that check none of them leaked.
    pub fn secrets(&self) -> impl Iterator<Item = &str> {
        self.urls.values().map(String::as_str)
    }
}

/// What is remembered between runs.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    /// Ids of alerts delivered, each with the route it went to.
    pub sent: BTreeMap<String, String>,
    /// Messages found but not delivered yet, with why.
    pub pending: Vec<Pending>,
    /// The last day the scheduled daily check checked (`YYYY-MM-DD`): the next run checks every
    /// complete day after it, across month boundaries (docs/publishing.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_through: Option<String>,
    /// What people said of alerts (`finops alerts ack`), by alert id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, Label>,
}

/// A person's label on an alert: acknowledged spend (planned, expected) or a false alert.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Label {
    pub reason: finops_allocate::alerts::Feedback,
    /// When it was said (RFC 3339, UTC).
    pub at: String,
}

impl State {
    /// The `(team, day)`s of spikes acknowledged as planned or expected: left out of that team's
    /// later baselines (spike ids are `spike:team:<team>:<day>`).
    pub fn known_spend(&self) -> std::collections::BTreeSet<(String, chrono::NaiveDate)> {
        self.labels.iter().filter(|(_, l)| l.reason.leaves_baseline()).filter_map(|(id, _)| spike_of(id)).collect()
    }

    /// Per month (`YYYY-MM`), the labelled spikes and how many of them were wrong.
    pub fn labelled_by_month(&self) -> BTreeMap<String, (usize, usize)> {
        let mut out: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for (id, label) in &self.labels {
            if let Some((_, day)) = spike_of(id) {
                let e = out.entry(day.format("%Y-%m").to_string()).or_default();
                e.0 += 1;
                e.1 += (label.reason == finops_allocate::alerts::Feedback::Wrong) as usize;
            }
        }
        out
    }
}

/// The team and day of a team spike's alert id.
pub fn spike_of(id: &str) -> Option<(String, chrono::NaiveDate)> {
    let (team, day) = id.strip_prefix("spike:team:")?.rsplit_once(':')?;
    Some((team.to_string(), chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?))
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    pub message: Message,
    pub reason: String,
}

/// Where the state is kept: beside the months of the output root.
#[derive(Clone, Debug)]
pub enum StateRoot {
    Local(PathBuf),
    S3(crate::s3::S3Dir),
}

const STATE: &str = "alerts-state.json";

impl StateRoot {
    /// The state of an output root: beside its months.
    pub fn of(root: &crate::sink::OutputRoot) -> StateRoot {
        match root {
            crate::sink::OutputRoot::Local(dir) => StateRoot::Local(dir.root.clone()),
            crate::sink::OutputRoot::S3(dir) => StateRoot::S3(dir.clone()),
        }
    }
}

/// The state as read, with the version it was read at (S3's ETag), for a conditional save.
struct Versioned {
    state: State,
    etag: Option<String>,
}

impl State {
    pub fn path(root: &Path) -> PathBuf {
        root.join(STATE)
    }

    /// The state under `root` (empty when there is none yet).
    pub fn load(root: &StateRoot) -> crate::Result<State> {
        Ok(State::load_versioned(root)?.state)
    }

    fn load_versioned(root: &StateRoot) -> crate::Result<Versioned> {
        let (found, shown) = match root {
            StateRoot::Local(dir) => {
                let path = State::path(dir);
                match std::fs::read(&path) {
                    Ok(bytes) => (Some((bytes, None)), path.display().to_string()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, String::new()),
                    Err(source) => return Err(crate::Error::Io { path, source }),
                }
            }
            StateRoot::S3(dir) => (dir.get_with_etag(STATE)?.map(|(b, e)| (b, Some(e))), dir.uri(STATE)),
        };
        match found {
            Some((bytes, etag)) => {
                let state = serde_json::from_slice(&bytes).map_err(|e| crate::Error::Invalid { at: shown, detail: format!("{e}: fix or remove it (it records which alerts were sent)") })?;
                Ok(Versioned { state, etag })
            }
            None => Ok(Versioned { state: State::default(), etag: None }),
        }
    }

    /// Saves the state whole, only if nobody changed it since it was read at `etag` (S3:
    /// `If-Match`, or `If-None-Match: *` when there was none). False when somebody did. Locally
    /// the file is written beside and renamed into place (one process at a time holds the
    /// alerts' lease there).
    fn save_if(&self, root: &StateRoot, etag: Option<&str>) -> crate::Result<bool> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("state serialises");
        bytes.push(b'\n');
        match root {
            StateRoot::Local(dir) => {
                std::fs::create_dir_all(dir).map_err(|source| crate::Error::Io { path: dir.to_path_buf(), source })?;
                let (path, staged) = (State::path(dir), dir.join(".alerts-state.json.new"));
                std::fs::write(&staged, &bytes).and_then(|()| std::fs::rename(&staged, &path)).map_err(|source| crate::Error::Io { path, source })?;
                Ok(true)
            }
            StateRoot::S3(dir) => {
                let condition = match etag {
                    Some(e) => crate::s3::Precondition::Unchanged(e.to_string()),
                    None => crate::s3::Precondition::Absent,
                };
                Ok(dir.put_if(STATE, &bytes, &condition)?.is_some())
            }
        }
    }

    /// Reads the state, applies `change`, and saves it conditionally; when another run saved
    /// in between (412), reads again and re-applies, so no run's change is lost.
    pub fn update<T>(root: &StateRoot, mut change: impl FnMut(&mut State) -> T) -> crate::Result<T> {
        for _ in 0..8 {
            let Versioned { mut state, etag } = State::load_versioned(root)?;
            let out = change(&mut state);
            if state.save_if(root, etag.as_deref())? {
                return Ok(out);
            }
            tracing::info!("the alerts' state changed under this run; reading it again");
        }
        Err(crate::Error::Slack("the alerts' state kept changing under this run (8 tries): another run is writing it; run again".into()))
    }

    /// Queues `message` unless it was sent: a fresh message replaces a pending one with the
    /// same id (its figures are newer). True when it is now pending.
    fn enqueue(&mut self, message: Message) -> bool {
        if self.sent.contains_key(&message.id) {
            return false;
        }
        match self.pending.iter_mut().find(|p| p.message.id == message.id) {
            Some(p) => p.message = message,
            None => self.pending.push(Pending { message, reason: "not sent yet".into() }),
        }
        true
    }
}

/// What a delivery did, message by message.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Delivery {
    pub sent: Vec<String>,
    /// Delivered by an earlier run: not sent again.
    pub already_sent: Vec<String>,
    /// (id, why) of messages Slack did not take: pending for the next run.
    pub pending: Vec<(String, String)>,
    /// (id, why) of messages whose route has no webhook in this run: pending too, delivered by
    /// the first run that has one.
    pub unrouted: Vec<(String, String)>,
}

/// How hard to try before leaving a message pending.
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    pub attempts: u32,
    /// First backoff after a 429 without `Retry-After`, a 5xx or a network error; doubled each
    /// time.
    pub backoff: Duration,
    /// The longest `Retry-After` honoured; a longer one leaves the message pending.
    pub max_wait: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry { attempts: 4, backoff: Duration::from_millis(500), max_wait: Duration::from_secs(60) }
    }
}

/// Queues `messages` in the state (each once: one already sent is not queued again), then
/// delivers every pending message whose route has a webhook, recording each delivery in the
/// state the moment Slack takes it. Messages are queued before any is sent, so a run that dies
/// mid-way leaves the rest pending for the next.
pub async fn deliver(messages: Vec<Message>, webhooks: &Webhooks, root: &StateRoot, retry: Retry) -> crate::Result<Delivery> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().map_err(|e| crate::Error::Slack(format!("HTTP client: {}", e.without_url())))?;
    let mut delivery = Delivery::default();
    let queue = State::update(root, |state| {
        let mut already = Vec::new();
        for m in &messages {
            if !state.enqueue(m.clone()) {
                already.push(m.id.clone());
            }
        }
        (already, state.pending.iter().map(|p| p.message.clone()).collect::<Vec<_>>())
    })?;
    delivery.already_sent = queue.0;
    for message in queue.1 {
        let Some(url) = webhooks.urls.get(&message.route) else {
            let why = format!("no webhook for route `{}` in this run: set {} (or [alerts.webhooks] in the config); it stays pending", message.route, webhook_variable(&message.route));
            tracing::warn!(alert = %message.id, route = %message.route, "no webhook for its route: stays pending");
            delivery.unrouted.push((message.id, why));
            continue;
        };
        match post(&client, url, &message, retry).await {
            Ok(()) => {
                State::update(root, |s| {
                    s.sent.insert(message.id.clone(), message.route.clone());
                    s.pending.retain(|p| p.message.id != message.id);
                })?;
                tracing::info!(alert = %message.id, route = %message.route, "sent to Slack");
                delivery.sent.push(message.id);
            }
            Err(reason) => {
                tracing::warn!(alert = %message.id, route = %message.route, %reason, "left pending");
                delivery.pending.push((message.id.clone(), reason));
            }
        }
    }
    if !delivery.pending.is_empty() || !delivery.unrouted.is_empty() {
        // Why each is still pending, for whoever reads the state.
        State::update(root, |s| {
            for (id, why) in delivery.pending.iter().chain(&delivery.unrouted) {
                set_reason(s, id, why);
            }
        })?;
    }
    Ok(delivery)
}

fn set_reason(state: &mut State, id: &str, reason: &str) {
    if let Some(p) = state.pending.iter_mut().find(|p| p.message.id == id) {
        p.reason = reason.to_string();
    }
}

/// How long a 429 asks to wait: `Retry-After` in seconds or as an HTTP date; `None` when absent
/// or unreadable.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get("retry-after")?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some((at.with_timezone(&chrono::Utc) - chrono::Utc::now()).to_std().unwrap_or(Duration::ZERO))
}

/// Posts one message: 429 waits `Retry-After` (else backs off), 5xx and network errors back
/// off, other 4xx fail at once; no wait after the last attempt. The error names the route's
/// status, never the URL.
async fn post(client: &reqwest::Client, url: &str, message: &Message, retry: Retry) -> Result<(), String> {
    let body = serde_json::json!({ "text": message.text, "blocks": message.blocks });
    let mut backoff = retry.backoff;
    let mut last = String::new();
    for attempt in 1..=retry.attempts {
        let wait = match client.post(url).json(&body).send().await {
            Ok(response) if response.status().is_success() => return Ok(()),
            Ok(response) if response.status().as_u16() == 429 => {
                last = format!("Slack said 429 (rate limited) on attempt {attempt}");
                match retry_after(response.headers()) {
                    Some(wait) if wait > retry.max_wait => return Err(format!("{last}; Retry-After {} s is longer than this run waits", wait.as_secs())),
                    Some(wait) => wait,
                    None => backoff,
                }
            }
            Ok(response) if response.status().is_server_error() => {
                last = format!("Slack answered {} on attempt {attempt}", response.status());
                backoff
            }
            Ok(response) => {
                let status = response.status();
                let text: String = response.text().await.unwrap_or_default().chars().take(200).collect();
                return Err(format!("Slack refused the message: {status} {text} (a revoked or wrong webhook?)"));
            }
            Err(e) => {
                last = format!("no answer from Slack on attempt {attempt}: {}", e.without_url());
                backoff
            }
        };
        if attempt < retry.attempts {
            tokio::time::sleep(wait).await;
            backoff *= 2;
        }
    }
    Err(format!("{last}; gave up after {} attempts", retry.attempts))
}

/// Text for Slack's mrkdwn: `&`, `<` and `>` escaped.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A message's blocks: a header, labelled fields, optional lines (bulleted), and a context line.
pub fn blocks(header: &str, fields: &[(&str, String)], lines_title: &str, lines: &[String], context: &str) -> serde_json::Value {
    let mut blocks = vec![serde_json::json!({ "type": "header", "text": { "type": "plain_text", "text": header.chars().take(150).collect::<String>() } })];
    if !fields.is_empty() {
        let fields: Vec<serde_json::Value> = fields.iter().take(10).map(|(k, v)| serde_json::json!({ "type": "mrkdwn", "text": format!("*{}*\n{}", escape(k), escape(v)) })).collect();
        blocks.push(serde_json::json!({ "type": "section", "fields": fields }));
    }
    if !lines.is_empty() {
        let text = format!("*{}*\n{}", escape(lines_title), lines.iter().map(|l| format!("• {}", escape(l))).collect::<Vec<_>>().join("\n"));
        blocks.push(serde_json::json!({ "type": "section", "text": { "type": "mrkdwn", "text": text.chars().take(2900).collect::<String>() } }));
    }
    blocks.push(serde_json::json!({ "type": "context", "elements": [{ "type": "mrkdwn", "text": escape(context) }] }));
    serde_json::Value::Array(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: &str, text: &str) -> Message {
        Message { id: id.into(), route: "finops".into(), text: text.into(), blocks: serde_json::Value::Null }
    }

    // Regression: a stale pending message with the same id won over the fresh one.
    #[test]
    fn a_fresh_message_replaces_a_stale_pending_one_and_a_sent_one_is_not_queued() {
        let mut state = State::default();
        assert!(state.enqueue(message("budget:search:2025-10:80", "old figures")));
        assert!(state.enqueue(message("budget:search:2025-10:80", "new figures")));
        assert_eq!(state.pending.len(), 1);
        assert_eq!(state.pending[0].message.text, "new figures");
        state.sent.insert("monthly:search:2025-10".into(), "search-costs".into());
        assert!(!state.enqueue(message("monthly:search:2025-10", "again")));
        assert_eq!(state.pending.len(), 1);
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("retry-after", "7".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        let at = chrono::Utc::now() + chrono::Duration::seconds(30);
        headers.insert("retry-after", at.format("%a, %d %b %Y %H:%M:%S GMT").to_string().parse().unwrap());
        let wait = retry_after(&headers).expect("an HTTP date is honoured");
        assert!(wait > Duration::from_secs(25) && wait <= Duration::from_secs(30), "{wait:?}");
        headers.insert("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::ZERO), "a date in the past means now");
        headers.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&headers), None, "unreadable: the caller backs off instead");
    }

    // Regression: unrouted messages were dropped from the state instead of staying pending.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_message_without_a_webhook_stays_pending_for_a_run_that_has_one() {
        let dir = tempfile::tempdir().unwrap();
        let root = StateRoot::Local(dir.path().to_path_buf());
        let delivery = deliver(vec![message("spike:team:data:2025-10-20", "spike")], &Webhooks::default(), &root, Retry::default()).await.unwrap();
        assert_eq!(delivery.unrouted.len(), 1);
        assert!(delivery.unrouted[0].1.contains("FINOPS_SLACK_WEBHOOK_FINOPS"), "{:?}", delivery.unrouted);
        let state = State::load(&root).unwrap();
        assert_eq!(state.pending.len(), 1, "still pending");
        assert!(state.pending[0].reason.contains("no webhook for route `finops`"));
    }
}
