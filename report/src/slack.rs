//! Slack delivery (DESIGN.md §7): alert messages as Block Kit, posted to incoming webhooks, each
//! alert sent once in effect.
//!
//! **Exactly once in effect.** A state file beside the outputs (`alerts-state.json` under the
//! output root) remembers every alert id delivered and every message still pending. Each message
//! is recorded the moment Slack accepts it (the file is written beside and renamed into place, so
//! it is never half-written): a re-run sends nothing twice, and a message that could not be
//! delivered (Slack down, a 4xx) stays pending and goes out on the next run. The one window left
//! is a crash after Slack's 200 and before the rename: that message is sent again on the next
//! run — at least once, never lost.
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

impl State {
    pub fn path(root: &Path) -> PathBuf {
        root.join(STATE)
    }

    /// The state under `root` (empty when there is none yet).
    pub fn load(root: &StateRoot) -> crate::Result<State> {
        let (bytes, shown) = match root {
            StateRoot::Local(dir) => {
                let path = State::path(dir);
                match std::fs::read(&path) {
                    Ok(bytes) => (Some(bytes), path.display().to_string()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, String::new()),
                    Err(source) => return Err(crate::Error::Io { path, source }),
                }
            }
            StateRoot::S3(dir) => (dir.get(STATE)?, dir.uri(STATE)),
        };
        match bytes {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| crate::Error::Report(format!("{shown}: {e}: fix or remove it (it records which alerts were sent)"))),
            None => Ok(State::default()),
        }
    }

    /// Writes the state whole: locally beside its file and renamed into place, in S3 as one
    /// object (a PUT replaces an object atomically). Never half-written.
    pub fn save(&self, root: &StateRoot) -> crate::Result<()> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("state serialises");
        bytes.push(b'\n');
        match root {
            StateRoot::Local(dir) => {
                std::fs::create_dir_all(dir).map_err(|source| crate::Error::Io { path: dir.to_path_buf(), source })?;
                let (path, staged) = (State::path(dir), dir.join(".alerts-state.json.new"));
                std::fs::write(&staged, &bytes).and_then(|()| std::fs::rename(&staged, &path)).map_err(|source| crate::Error::Io { path, source })
            }
            StateRoot::S3(dir) => dir.put(STATE, &bytes),
        }
    }
}

/// What a delivery did, message by message.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Delivery {
    pub sent: Vec<String>,
    /// Delivered by an earlier run: not sent again.
    pub already_sent: Vec<String>,
    /// (id, why) of messages left pending for the next run.
    pub pending: Vec<(String, String)>,
    /// (id, why) of messages with no webhook for their route: not sent, not retried.
    pub unrouted: Vec<(String, String)>,
}

/// How hard to try before leaving a message pending.
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    pub attempts: u32,
    /// First backoff after a 5xx or a network error; doubled each time.
    pub backoff: Duration,
    /// The longest `Retry-After` honoured; a longer one leaves the message pending.
    pub max_wait: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry { attempts: 4, backoff: Duration::from_millis(500), max_wait: Duration::from_secs(60) }
    }
}

/// Delivers the state's pending messages, then `messages`, skipping any already sent; records
/// each delivery in the state under `root` as it happens.
pub async fn deliver(messages: Vec<Message>, webhooks: &Webhooks, root: &StateRoot, retry: Retry) -> crate::Result<Delivery> {
    let mut state = State::load(root)?;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().map_err(|e| crate::Error::Report(format!("HTTP client: {}", e.without_url())))?;
    let mut queue: Vec<Message> = state.pending.drain(..).map(|p| p.message).collect();
    for m in messages {
        if !queue.iter().any(|q| q.id == m.id) {
            queue.push(m);
        }
    }
    let mut delivery = Delivery::default();
    for message in queue {
        if state.sent.contains_key(&message.id) {
            delivery.already_sent.push(message.id);
            continue;
        }
        let Some(url) = webhooks.urls.get(&message.route) else {
            let why = format!("no webhook for route `{}`: set {} (or [alerts.webhooks] in the config)", message.route, webhook_variable(&message.route));
            delivery.unrouted.push((message.id, why));
            continue;
        };
        match post(&client, url, &message, retry).await {
            Ok(()) => {
                state.sent.insert(message.id.clone(), message.route.clone());
                state.save(root)?;
                tracing::info!(alert = %message.id, route = %message.route, "sent to Slack");
                delivery.sent.push(message.id);
            }
            Err(reason) => {
                tracing::warn!(alert = %message.id, route = %message.route, %reason, "left pending");
                delivery.pending.push((message.id.clone(), reason.clone()));
                state.pending.push(Pending { message, reason });
            }
        }
    }
    state.save(root)?;
    Ok(delivery)
}

/// Posts one message: 429 waits `Retry-After`, 5xx and network errors back off, other 4xx fail
/// at once. The error names the route's status, never the URL.
async fn post(client: &reqwest::Client, url: &str, message: &Message, retry: Retry) -> Result<(), String> {
    let body = serde_json::json!({ "text": message.text, "blocks": message.blocks });
    let mut backoff = retry.backoff;
    let mut last = String::new();
    for attempt in 1..=retry.attempts {
        match client.post(url).json(&body).send().await {
            Ok(response) if response.status().is_success() => return Ok(()),
            Ok(response) if response.status().as_u16() == 429 => {
                let wait = response.headers().get("retry-after").and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok()).map_or(backoff, Duration::from_secs);
                last = format!("Slack said 429 (rate limited) on attempt {attempt}");
                if wait > retry.max_wait {
                    return Err(format!("{last}; Retry-After {} s is longer than this run waits", wait.as_secs()));
                }
                tokio::time::sleep(wait).await;
            }
            Ok(response) if response.status().is_server_error() => {
                last = format!("Slack answered {} on attempt {attempt}", response.status());
                if attempt < retry.attempts {
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
            }
            Ok(response) => {
                let status = response.status();
                let text: String = response.text().await.unwrap_or_default().chars().take(200).collect();
                return Err(format!("Slack refused the message: {status} {text} (a revoked or wrong webhook?)"));
            }
            Err(e) => {
                last = format!("no answer from Slack on attempt {attempt}: {}", e.without_url());
                if attempt < retry.attempts {
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
            }
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
        let fields: Vec<serde_json::Value> =
            fields.iter().take(10).map(|(k, v)| serde_json::json!({ "type": "mrkdwn", "text": format!("*{}*\n{}", escape(k), escape(v)) })).collect();
        blocks.push(serde_json::json!({ "type": "section", "fields": fields }));
    }
    if !lines.is_empty() {
        let text = format!("*{}*\n{}", escape(lines_title), lines.iter().map(|l| format!("• {}", escape(l))).collect::<Vec<_>>().join("\n"));
        blocks.push(serde_json::json!({ "type": "section", "text": { "type": "mrkdwn", "text": text.chars().take(2900).collect::<String>() } }));
    }
    blocks.push(serde_json::json!({ "type": "context", "elements": [{ "type": "mrkdwn", "text": escape(context) }] }));
    serde_json::Value::Array(blocks)
}
