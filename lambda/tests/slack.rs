//! Alerts as a team receives them: the fixtures' planted spike found and nothing else, idle GPUs,
//! and Slack delivery against a real HTTP receiver on loopback that answers as Slack does —
//! 429 with Retry-After, a persistent 500, then 200 — so each alert arrives once, a failed one
//! waits for the next run, and no webhook URL leaks into a log or an output.

mod common;

use common::*;

use std::io::{BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `finops <args>` from the repository root, with `env` set.
fn finops(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_finops"));
    command.args(args).current_dir(workspace()).env("FINOPS_LOG", "debug");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("run finops")
}

/// A webhook receiver: answers each request with the next scripted (status, extra header), then
/// 200 once the script runs out; records every request body.
struct Receiver {
    url: String,
    bodies: Arc<Mutex<Vec<String>>>,
    script: Arc<Mutex<Vec<(u16, &'static str)>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/services/T000/B000/s3cr3t-t0ken", listener.local_addr().unwrap());
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Mutex<Vec<(u16, &'static str)>>> = Arc::new(Mutex::new(Vec::new()));
        let (b, s) = (bodies.clone(), script.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let Some((_, body)) = common::read_request(&mut reader) else { continue };
                b.lock().unwrap().push(String::from_utf8_lossy(&body).into_owned());
                let (status, header) = {
                    let mut script = s.lock().unwrap();
                    if script.is_empty() {
                        (200, "")
                    } else {
                        script.remove(0)
                    }
                };
                let reason = match status {
                    200 => "OK",
                    429 => "Too Many Requests",
                    _ => "Internal Server Error",
                };
                let answer = if status == 200 { "ok" } else { "no" };
                let _ = write!(stream, "HTTP/1.1 {status} {reason}\r\n{header}Content-Length: {}\r\nConnection: close\r\n\r\n{answer}", answer.len());
            }
        });
        Receiver { url, bodies, script }
    }

    fn script(&self, steps: &[(u16, &'static str)]) {
        *self.script.lock().unwrap() = steps.to_vec();
    }

    fn bodies(&self) -> Vec<serde_json::Value> {
        self.bodies.lock().unwrap().iter().map(|b| serde_json::from_str(b).expect("a JSON body")).collect()
    }
}

/// Every file under `dir`, as text.
fn all_text(dir: &Path) -> String {
    let mut out = String::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
            }
        }
    }
    out
}

fn alerts_of(root: &Path, month: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(root.join(month).join("alerts.json")).unwrap()).unwrap()
}

#[test]
fn the_planted_spike_is_found_with_what_drove_it_and_no_other_day_is() {
    let out = tempfile::tempdir().unwrap();
    let root = out.path().to_string_lossy().to_string();
    let run = finops(&["run", "--out", &root], &[]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let alerts = alerts_of(out.path(), "2025-10");
    let spikes = alerts["spikes"].as_array().unwrap();
    let days: std::collections::BTreeSet<&str> = spikes.iter().map(|s| s["date"].as_str().unwrap()).collect();
    assert_eq!(days.into_iter().collect::<Vec<_>>(), ["2025-10-20", "2025-10-21"], "{spikes:#?}");
    let search: Vec<&serde_json::Value> = spikes.iter().filter(|s| s["subject"] == "team" && s["name"] == "search").collect();
    assert_eq!(search.len(), 2, "{spikes:#?}");
    let drivers: Vec<&str> = search[0]["contributors"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert!(drivers[0].starts_with("service AmazonEC2: +"), "{drivers:?}");
    assert!(drivers.iter().any(|d| d.starts_with("resource i-0sp1ke")), "the spike's own instances are named: {drivers:?}");
    assert!(spikes.iter().all(|s| s["subject"] == "service" || s["name"] == "search"), "only search among teams");

    // The daily check finds the same on the day, and nothing the day before.
    let day = finops(&["alerts", "--day", "2025-10-20", "--out", &root], &[]);
    assert!(day.status.success(), "{}", text(&day.stderr));
    assert!(text(&day.stdout).contains("[spike] Cost spike: team search spent"), "{}", text(&day.stdout));
    let before = finops(&["alerts", "--day", "2025-10-19", "--out", &root], &[]);
    assert!(!text(&before.stdout).contains("[spike]"), "{}", text(&before.stdout));

    // Idle GPUs: search-ranking, held at about 5% utilisation, is alerted with its idle GPU-hours
    // and their cost; the busy training namespace is not.
    let idle = alerts["idle_gpu"].as_array().unwrap();
    let ranking = idle.iter().find(|i| i["namespace"] == "search-ranking").expect("search-ranking alerted");
    assert_eq!(ranking["team"], "search");
    assert!(ranking["idle_gpu_hours"].as_str().unwrap().parse::<f64>().unwrap() > 100.0 && ranking["idle_cost"].as_str().unwrap().parse::<f64>().unwrap() > 100.0);
    assert!(idle.iter().all(|i| i["namespace"] != "ml-training"), "{idle:?}");
    assert!(text(&day.stdout).contains("Idle GPUs: namespace search-ranking (search) held"), "{}", text(&day.stdout));
    // Budgets of the example rules: search is over its 7,000.
    let budgets = alerts["budgets"].as_array().unwrap();
    assert!(budgets.iter().any(|b| b["team"] == "search" && b["budget"] == "7000.00"), "{budgets:?}");
    assert!(alerts["found"].as_array().unwrap().iter().any(|f| f["id"] == "budget:search:2025-10:100"), "the 100% threshold alert");
    // One budget message per team per run, naming the highest threshold crossed; a complete
    // month is told without a forecast range.
    let search_budget: Vec<&serde_json::Value> = alerts["found"].as_array().unwrap().iter().filter(|f| f["kind"] == "budget" && f["route"] == "search-costs").collect();
    assert_eq!(search_budget.len(), 1, "{search_budget:#?}");
    let total = budgets.iter().find(|b| b["team"] == "search").unwrap()["actual"].as_str().unwrap().parse::<f64>().unwrap();
    let total = format!("{:.2}", total);
    let (whole, cents) = total.split_once('.').unwrap();
    let grouped = format!("{},{}.{cents}", &whole[..whole.len() - 3], &whole[whole.len() - 3..]);
    assert!(
        search_budget[0]["text"].as_str().unwrap().contains(&format!("the month's total {grouped} USD")) && !search_budget[0]["text"].as_str().unwrap().contains("forecast"),
        "{}",
        search_budget[0]
    );
}

#[test]
fn slack_gets_each_alert_once_through_429_and_500_and_no_url_leaks() {
    let receiver = Receiver::start();
    let out = tempfile::tempdir().unwrap();
    let root = out.path().to_string_lossy().to_string();
    let env = [("FINOPS_SLACK_WEBHOOK_SEARCH_COSTS", receiver.url.as_str())];

    // A persistent 500: the search team's alerts stay pending and the run fails, saying so.
    receiver.script(&[(500, ""); 40]);
    let failed = finops(&["alerts", "--day", "2025-10-20", "--out", &root], &env);
    assert!(!failed.status.success(), "{}", text(&failed.stdout));
    assert!(text(&failed.stderr).contains("could not be delivered and stay pending"), "{}", text(&failed.stderr));
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(out.path().join("alerts-state.json")).unwrap()).unwrap();
    let pending: Vec<&str> = state["pending"].as_array().unwrap().iter().map(|p| p["message"]["id"].as_str().unwrap()).collect();
    assert!(pending.contains(&"spike:team:search:2025-10-20"), "{pending:?}");
    let attempts = receiver.bodies().len();
    assert!(attempts >= 4, "retried before giving up: {attempts}");

    // Slack rate-limits once, then accepts: the next run delivers the pending alerts, each once.
    receiver.script(&[(429, "Retry-After: 1\r\n")]);
    let retried = finops(&["alerts", "--day", "2025-10-21", "--out", &root], &env);
    assert!(retried.status.success(), "{}", text(&retried.stderr));
    let bodies = receiver.bodies()[attempts..].to_vec();
    let delivered: Vec<String> = bodies[1..].iter().map(|b| b["text"].as_str().unwrap().to_string()).collect();
    for day in ["2025-10-20", "2025-10-21"] {
        let spike = |t: &&String| t.contains("Cost spike: team search spent ") && t.contains(&format!(" USD on {day},"));
        assert_eq!(delivered.iter().filter(spike).count(), 1, "search's spike of {day} delivered once: {delivered:#?}");
    }
    // The payload is Block Kit: a header, fields, the drivers, a context line.
    let spike = bodies.iter().rev().find(|b| b["text"].as_str().unwrap().contains("Cost spike: team search spent ") && b["text"].as_str().unwrap().contains(" USD on 2025-10-21,")).unwrap();
    let blocks = spike["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(blocks[0]["text"]["type"], "plain_text");
    assert!(blocks[1]["fields"].as_array().unwrap().iter().any(|f| f["text"].as_str().unwrap().starts_with("*Expected*")));
    assert!(blocks[2]["text"]["text"].as_str().unwrap().contains("service AmazonEC2"), "{blocks:#?}");
    assert_eq!(blocks.last().unwrap()["type"], "context");

    // A re-run of both days sends nothing again.
    let before = receiver.bodies().len();
    for day in ["2025-10-20", "2025-10-21"] {
        let again = finops(&["alerts", "--day", day, "--out", &root], &env);
        assert!(again.status.success(), "{}", text(&again.stderr));
        assert!(text(&again.stdout).contains("0 sent"), "{}", text(&again.stdout));
    }
    assert_eq!(receiver.bodies().len(), before, "nothing re-sent");

    // The monthly run sends the search team's monthly message and budget alert, once.
    let month = finops(&["run", "--out", &root], &env);
    assert!(month.status.success(), "{}", text(&month.stderr));
    let monthly: Vec<serde_json::Value> = receiver.bodies()[before..].to_vec();
    assert!(monthly.iter().any(|b| b["text"].as_str().unwrap().starts_with("search: ") && b["text"].as_str().unwrap().contains(" USD in 2025-10, #3 of 6 teams")), "{monthly:#?}");
    // Its total in two parts, in the report's words: the AWS bill and on-prem GPU at the rate card.
    let search = monthly.iter().find(|b| b["text"].as_str().unwrap().starts_with("search: ")).unwrap().to_string();
    assert!(search.contains("the AWS bill ") && search.contains(" + on-prem GPU at the rate card "), "{search}");
    let rerun = finops(&["run", "--out", &root], &env);
    assert!(rerun.status.success());
    assert_eq!(receiver.bodies().len(), before + monthly.len(), "the monthly messages are not sent twice");

    // The webhook's secret is in no output, no state and no log line.
    let token = "s3cr3t-t0ken";
    for (what, output) in [("failed run", &failed), ("retried run", &retried), ("monthly run", &month)] {
        assert!(!text(&output.stdout).contains(token) && !text(&output.stderr).contains(token), "{what} printed the webhook");
    }
    assert!(!all_text(out.path()).contains(token), "an output file holds the webhook");
}
