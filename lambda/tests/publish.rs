//! Publishing as a commit, notifying after (docs/publishing.md), against moto's S3 and a real
//! HTTP receiver for Slack:
//! - a loopback proxy in front of moto fails the k-th object write of a re-run, for every k: the
//!   published month stays byte for byte as it was and nothing is sent; then a clean run publishes
//!   and tells each team once;
//! - overlapping runs of one month: a held month refuses with the holder's name, two runs at once
//!   publish once and send each message once, and each team's link downloads its own CSV;
//! - a revised month: one changed line item tells the one changed team; an unchanged re-run writes
//!   and sends nothing.
//!
//! Needs FINOPS_TEST_S3_ENDPOINT (moto) and FINOPS_TEST_PYTHON (DuckDB, to change a line item):
//! `scripts/test` sets both.

mod common;

use common::aws::*;
use common::*;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

/// Every Slack route of the shipped rules, and the default route.
const ROUTES: [&str; 6] = ["finops", "search-costs", "orders-costs", "payments-costs", "ai-costs", "platform-costs"];
const TEAMS: [&str; 6] = ["search", "orders", "payments", "data", "ai", "platform"];

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The shipped rules, with their driver files named absolutely (the copy lives in a temp folder),
/// and `edit` applied.
fn rules_copy(dir: &Path, name: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let text = std::fs::read_to_string(workspace().join("rules/example.toml")).unwrap();
    let text = text.replace("path = \"../fixtures/usage/", &format!("path = \"{}/fixtures/usage/", workspace().display()));
    let path = dir.join(name);
    std::fs::write(&path, edit(text)).unwrap();
    path
}

/// `finops run` of `month` from `bucket`'s export to its `reports` prefix, through `endpoint`,
/// with every route's webhook at `hook` (none when `None`) and `config` when given.
fn run(endpoint: &str, bucket: &str, month: &str, rules: &Path, hook: Option<&str>, config: Option<&Path>, cwd: &Path) -> Output {
    let gpu = workspace().join("fixtures/gpu");
    let mut command = Command::new(env!("CARGO_BIN_EXE_finops"));
    command
        .args(["run", "--source", &format!("s3://{bucket}/cur2/export"), "--endpoint-url", endpoint, "--region", "us-east-1", "--month", month])
        .args(["--out", &format!("s3://{bucket}/reports"), "--quiet"])
        .arg("--rules")
        .arg(rules)
        .arg("--gpu-usage")
        .arg(&gpu)
        .current_dir(cwd)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    for route in ROUTES {
        let variable = format!("FINOPS_SLACK_WEBHOOK_{}", route.to_uppercase().replace('-', "_"));
        match hook {
            Some(url) => command.env(variable, url),
            None => command.env_remove(variable),
        };
    }
    command.output().expect("run finops")
}

/// The texts of the messages the receiver got.
fn sent(hook: &Hook) -> Vec<String> {
    hook.bodies.lock().unwrap().iter().map(|b| serde_json::from_str::<serde_json::Value>(b).unwrap()["text"].as_str().unwrap().to_string()).collect()
}

/// The rules with a restatement: the support bill split differently, so team totals and files
/// change on a re-run.
fn restated_rules(dir: &Path) -> PathBuf {
    rules_copy(dir, "restated.toml", |t| {
        let edited = t.replace("weights = { search = 25, orders = 20,", "weights = { search = 20, orders = 25,");
        assert_ne!(edited, t, "the shipped rules still have the support weights this test moves");
        edited
    })
}

/// An HTTP request line's method and path (without the query): what the fault proxy matches.
fn method_and_path(line: &str) -> (&str, &str) {
    let mut parts = line.split_whitespace();
    (parts.next().unwrap_or(""), parts.next().unwrap_or("").split('?').next().unwrap_or(""))
}

/// How many of `texts` are `team`'s monthly message for `month`.
fn monthly_messages(texts: &[String], team: &str, month: &str) -> usize {
    texts.iter().filter(|t| t.starts_with(&format!("{team}: ")) && t.contains(&format!(" in {month}, #"))).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_rerun_leaves_the_published_month_byte_identical_and_tells_no_one() {
    let month = latest_month();
    let bucket = unique("finops-faults");
    upload_months(&bucket, "cur2/export", &fixture_months(), None).await;
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_copy(dir.path(), "rules.toml", |t| t);
    let restated = restated_rules(dir.path());
    let hook = Hook::start();

    // Published once, with no webhooks: its messages wait in the alerts' state.
    let first = run(&endpoint(), &bucket, &month, &rules, None, None, dir.path());
    assert!(first.status.success(), "{}", text(&first.stderr));
    let published = objects_under(&bucket, &format!("reports/{month}")).await;
    assert!(published.len() > 10, "{:?}", published.keys());

    // Re-runs whose k-th object write under the month fails (every retry of it): each fails,
    // the month stays byte for byte as published, and no message goes out.
    let month_path = format!("/{bucket}/reports/{month}/");
    let mut k = 1;
    let writes = loop {
        assert!(k < 60, "a re-run kept failing");
        let seen: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
        let (recorded, prefix) = (seen.clone(), month_path.clone());
        let proxy = moto_proxy(Arc::new(move |line: &str, _headers: &[(String, String)]| {
            let (method, path) = method_and_path(line);
            if method != "PUT" || !path.starts_with(&prefix) {
                return Intercept::Pass;
            }
            let mut keys = recorded.lock().unwrap();
            if !keys.iter().any(|key| key == path) {
                keys.push(path.to_string());
            }
            if keys.len() >= k && keys[k - 1] == path {
                return Intercept::Answer("503 Slow Down", "<Error><Code>SlowDown</Code><Message>injected by the test</Message></Error>".into());
            }
            Intercept::Pass
        }));
        let rerun = run(&proxy, &bucket, &month, &restated, Some(&hook.url), None, dir.path());
        if rerun.status.success() {
            assert!(seen.lock().unwrap().len() < k, "write {k} was failed, yet the run succeeded");
            break k - 1;
        }
        let failing = seen.lock().unwrap().get(k - 1).cloned().unwrap_or_else(|| panic!("run {k} failed before any write: {}", text(&rerun.stderr)));
        let key = failing.trim_start_matches(&format!("/{bucket}/"));
        assert!(text(&rerun.stderr).contains(key) && text(&rerun.stderr).contains("could not write the object on S3"), "write {k} ({key}) named in: {}", text(&rerun.stderr));
        assert!(objects_under(&bucket, &format!("reports/{month}")).await == published, "write {k} ({key}) failing changed the published month");
        assert!(sent(&hook).is_empty(), "a message went out although write {k} failed: {:?}", sent(&hook));
        k += 1;
    };
    // The support split moves money between search and orders: their CSVs, the summary, the
    // report and the manifest are written; files whose bytes are already published are not.
    assert!((4..published.len()).contains(&writes), "the restatement writes what changed, and only that: {writes} writes");

    // The clean run published the restated month and told each team once.
    let now = objects_under(&bucket, &format!("reports/{month}")).await;
    assert!(now != published);
    let manifest: serde_json::Value = serde_json::from_slice(&now[&format!("reports/{month}/manifest.json")]).unwrap();
    let mut referenced: Vec<String> = manifest["files"].as_array().unwrap().iter().map(|f| format!("reports/{month}/{}", f["object"].as_str().unwrap())).collect();
    referenced.push(format!("reports/{month}/manifest.json"));
    referenced.sort();
    assert_eq!(now.keys().cloned().collect::<Vec<_>>(), referenced, "the superseded version is removed once the new manifest is in place");
    let texts = sent(&hook);
    for team in TEAMS {
        assert_eq!(monthly_messages(&texts, team, &month), 1, "{team}'s monthly message, once: {texts:#?}");
    }
    assert!(!texts.iter().any(|t| t.starts_with("Revised")), "no team was told the first figures, so none is told a revision: {texts:#?}");

    // The same run again writes nothing and sends nothing.
    let again = run(&endpoint(), &bucket, &month, &restated, Some(&hook.url), None, dir.path());
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(text(&again.stdout).contains("unchanged s3://"), "{}", text(&again.stdout));
    assert!(objects_under(&bucket, &format!("reports/{month}")).await == now);
    assert_eq!(sent(&hook).len(), texts.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn overlapping_runs_publish_once_and_tell_each_team_once_with_a_link_to_its_own_lines() {
    let month = latest_month();
    let bucket = unique("finops-overlap");
    upload_months(&bucket, "cur2/export", &fixture_months(), None).await;
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_copy(dir.path(), "rules.toml", |t| t);
    let config = dir.path().join("finops.toml");
    std::fs::write(&config, "[output]\nlinks = \"presigned\"\nlock_wait_seconds = 2\n").unwrap();
    let hook = Hook::start();

    // A month held by another run: this one waits its 2 s, then stops naming the holder, and
    // writes nothing.
    let lease = serde_json::json!({"holder": "ip-10-0-0-1 pid 4242", "purpose": format!("publishing {month}"), "acquired": "2026-01-01T00:00:00Z", "expires": "2999-01-01T00:00:00Z"});
    client().put_object().bucket(&bucket).key(format!("reports/.locks/{month}.json")).body(lease.to_string().into_bytes().into()).send().await.unwrap();
    let refused = run(&endpoint(), &bucket, &month, &rules, Some(&hook.url), Some(&config), dir.path());
    assert!(!refused.status.success());
    assert!(text(&refused.stderr).contains("is held by ip-10-0-0-1 pid 4242"), "{}", text(&refused.stderr));
    assert!(objects_under(&bucket, &format!("reports/{month}")).await.is_empty(), "a refused run writes nothing");
    assert!(sent(&hook).is_empty());
    client().delete_object().bucket(&bucket).key(format!("reports/.locks/{month}.json")).send().await.unwrap();

    // Two runs at once (a manual run beside the scheduled one), waiting as long as they need.
    std::fs::write(&config, "[output]\nlinks = \"presigned\"\n").unwrap();
    let runs: Vec<std::thread::JoinHandle<Output>> = (0..2)
        .map(|_| {
            let (endpoint, bucket, month, rules, url, config, cwd) = (endpoint(), bucket.clone(), month.clone(), rules.clone(), hook.url.clone(), config.clone(), dir.path().to_path_buf());
            std::thread::spawn(move || run(&endpoint, &bucket, &month, &rules, Some(&url), Some(&config), &cwd))
        })
        .collect();
    let outputs: Vec<Output> = runs.into_iter().map(|r| r.join().unwrap()).collect();
    for output in &outputs {
        assert!(output.status.success(), "{}", text(&output.stderr));
    }
    let wrote = outputs.iter().filter(|o| text(&o.stdout).contains("wrote s3://")).count();
    let unchanged = outputs.iter().filter(|o| text(&o.stdout).contains("unchanged s3://")).count();
    assert_eq!((wrote, unchanged), (1, 1), "one publishes, the other finds it published");
    let texts = sent(&hook);
    let mut distinct = texts.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), texts.len(), "no message was sent twice: {texts:#?}");
    for team in TEAMS {
        assert_eq!(monthly_messages(&texts, team, &month), 1, "{team}'s monthly message, once: {texts:#?}");
    }

    // Each team's link, fetched without credentials, is that team's own CSV.
    for body in hook.bodies.lock().unwrap().iter() {
        let message: serde_json::Value = serde_json::from_str(body).unwrap();
        let Some(team) = TEAMS.iter().find(|t| monthly_messages(&[message["text"].as_str().unwrap().to_string()], t, &month) == 1) else { continue };
        let details = message["blocks"].as_array().unwrap().iter().filter_map(|b| b["text"]["text"].as_str()).find(|t| t.contains("Your lines: ")).expect("a CSV link").to_string();
        let link = details.split("Your lines: ").nth(1).unwrap().split_whitespace().next().unwrap().replace("&amp;", "&");
        let response = http_get(&link);
        assert!(response.starts_with("HTTP/1.1 200"), "{team}: {}", &response[..response.len().min(300)]);
        let own = read_published(&bucket, "reports", &month, &format!("teams/{team}.csv")).await;
        assert!(response.ends_with(&*String::from_utf8_lossy(&own)), "{team}'s link returns its own CSV");
    }
}

#[test]
fn team_names_with_one_file_stem_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, "version = 1\nteam_tags = [\"team\"]\n[teams.\"data eng\"]\n[teams.data_eng]\n").unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_finops")).args(["rules", "check"]).arg(&rules).output().unwrap();
    assert!(!check.status.success());
    let said = text(&check.stderr);
    assert!(said.contains("teams `data eng` and `data_eng` would share the file teams/data_eng.csv"), "{said}");
    assert!(said.contains("rules.toml:4:8:"), "the error points at the second team: {said}");
}

/// A rule set with tags only: a changed line item moves its own team's total and no other.
const TAG_RULES: &str = "version = 1\ncurrency = \"USD\"\ncost_basis = \"amortized\"\nteam_tags = [\"team\", \"Team\", \"owner\"]\n\
[teams.search]\naliases = [\"Search\", \"search-team\", \"검색\"]\nslack = \"search-costs\"\n[teams.orders]\naliases = [\"Orders\"]\nslack = \"orders-costs\"\n\
[teams.payments]\nslack = \"payments-costs\"\n[teams.data]\naliases = [\"Data\"]\n[teams.ai]\naliases = [\"AI\"]\nslack = \"ai-costs\"\n[teams.platform]\nslack = \"platform-costs\"\n";

/// The fixture month's data file with 100.00 more on one of search's usage lines (unblended,
/// blended and net unblended alike, so every cost basis moves), written by DuckDB as parquet.
fn with_one_line_item_changed(src: &Path, dst: &Path) {
    let python = std::env::var("FINOPS_TEST_PYTHON").unwrap_or_else(|_| panic!("FINOPS_TEST_PYTHON is not set: run `scripts/test` (it installs DuckDB into the test venv)"));
    let sql = format!(
        "CREATE VIEW t AS SELECT * FROM read_parquet('{src}', hive_partitioning = false);
         CREATE TABLE pick AS SELECT min(identity_line_item_id) AS id FROM t WHERE line_item_line_item_type = 'Usage' AND line_item_unblended_cost > 1
           AND resource_tags['user_team'] = 'search';
         COPY (SELECT * REPLACE (
             CASE WHEN identity_line_item_id = (SELECT id FROM pick) THEN line_item_unblended_cost + 100 ELSE line_item_unblended_cost END AS line_item_unblended_cost,
             CASE WHEN identity_line_item_id = (SELECT id FROM pick) THEN line_item_blended_cost + 100 ELSE line_item_blended_cost END AS line_item_blended_cost,
             CASE WHEN identity_line_item_id = (SELECT id FROM pick) THEN line_item_net_unblended_cost + 100 ELSE line_item_net_unblended_cost END AS line_item_net_unblended_cost)
           FROM t) TO '{dst}' (FORMAT parquet, COMPRESSION snappy);",
        src = src.display(),
        dst = dst.display()
    );
    let script = format!("import duckdb\nc = duckdb.connect()\nc.execute({sql:?})\nassert c.execute('SELECT id FROM pick').fetchone()[0] is not None, 'no usage line of search found'\n");
    let out = Command::new(python).args(["-c", &script]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revised_month_tells_the_changed_team_only_and_an_unchanged_one_nothing() {
    let month = latest_month();
    let bucket = unique("finops-revised");
    upload_months(&bucket, "cur2/export", &fixture_months(), None).await;
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("tags.toml");
    std::fs::write(&rules, TAG_RULES).unwrap();
    let hook = Hook::start();

    let first = run(&endpoint(), &bucket, &month, &rules, Some(&hook.url), None, dir.path());
    assert!(first.status.success(), "{}", text(&first.stderr));
    let told = sent(&hook);
    assert_eq!(monthly_messages(&told, "search", &month), 1, "{told:#?}");
    let published = objects_under(&bucket, &format!("reports/{month}")).await;

    // The day-15 run over an unchanged month: nothing written, nothing sent.
    let same = run(&endpoint(), &bucket, &month, &rules, Some(&hook.url), None, dir.path());
    assert!(same.status.success(), "{}", text(&same.stderr));
    assert!(text(&same.stdout).contains("unchanged s3://"), "{}", text(&same.stdout));
    assert!(objects_under(&bucket, &format!("reports/{month}")).await == published, "an unchanged month's objects are untouched");
    assert_eq!(sent(&hook).len(), told.len(), "nothing sent for an unchanged month");

    // AWS restates one line item of search's; the day-15 run tells search, and only search.
    let data = workspace().join(format!("fixtures/cur2/data/BILLING_PERIOD={month}"));
    let file = std::fs::read_dir(&data).unwrap().map(|e| e.unwrap().path()).find(|p| p.extension().is_some_and(|e| e == "parquet")).unwrap();
    let changed = dir.path().join("changed.parquet");
    with_one_line_item_changed(&file, &changed);
    let key = format!("cur2/export/data/BILLING_PERIOD={month}/{}", file.file_name().unwrap().to_string_lossy());
    client().put_object().bucket(&bucket).key(&key).body(std::fs::read(&changed).unwrap().into()).send().await.unwrap();
    let revised = run(&endpoint(), &bucket, &month, &rules, Some(&hook.url), None, dir.path());
    assert!(revised.status.success(), "{}", text(&revised.stderr));
    assert!(text(&revised.stdout).contains("wrote s3://"), "{}", text(&revised.stdout));
    let new: Vec<String> = sent(&hook)[told.len()..].to_vec();
    assert_eq!(new.len(), 1, "one message, to the changed team: {new:#?}\n{}\n{}", text(&revised.stdout), text(&revised.stderr));
    assert!(new[0].starts_with(&format!("Revised: team search, {month}: now ")) && new[0].contains("+100.00 USD"), "{}", new[0]);

    // And that revision is told once.
    let again = run(&endpoint(), &bucket, &month, &rules, Some(&hook.url), None, dir.path());
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(sent(&hook).len(), told.len() + 1);
}

// Regression: `--out` naming a file said only "File exists (os error 17)".
#[test]
fn an_output_root_that_is_a_file_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("report.pdf");
    std::fs::write(&file, b"not a folder").unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_finops")).args(["run", "--quiet", "--out"]).arg(&file).current_dir(workspace()).output().unwrap();
    assert!(!run.status.success());
    let said = text(&run.stderr);
    assert!(said.contains(&format!("{}: is a file, not a folder", file.display())), "{said}");
    assert_eq!(std::fs::read(&file).unwrap(), b"not a folder", "the file is left as it was");
}

// Regression: a manifest PUT that landed but whose answer was lost made the run delete the new
// objects the published manifest now pointed to.
#[tokio::test(flavor = "multi_thread")]
async fn a_manifest_write_whose_answer_is_lost_leaves_a_whole_month() {
    let month = latest_month();
    let bucket = unique("finops-lost");
    upload_months(&bucket, "cur2/export", &fixture_months(), None).await;
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_copy(dir.path(), "rules.toml", |t| t);
    let restated = restated_rules(dir.path());
    assert!(run(&endpoint(), &bucket, &month, &rules, None, None, dir.path()).status.success());
    let manifest_path = format!("/{bucket}/reports/{month}/manifest.json");
    let proxy = moto_proxy(Arc::new(move |line: &str, _headers: &[(String, String)]| {
        let (method, path) = method_and_path(line);
        if method == "PUT" && path == manifest_path {
            return Intercept::Lose("503 Slow Down", "<Error><Code>SlowDown</Code><Message>answer lost by the test</Message></Error>".into());
        }
        Intercept::Pass
    }));
    let rerun = run(&proxy, &bucket, &month, &restated, None, None, dir.path());
    assert!(rerun.status.success(), "the manifest landed, so the month is published: {}", text(&rerun.stderr));
    let objects = objects_under(&bucket, &format!("reports/{month}")).await;
    let manifest: serde_json::Value = serde_json::from_slice(&objects[&format!("reports/{month}/manifest.json")]).unwrap();
    for file in manifest["files"].as_array().unwrap() {
        let key = format!("reports/{month}/{}", file["object"].as_str().unwrap());
        assert!(objects.contains_key(&key), "{key}: the published manifest points to an object that was deleted");
    }
    assert!(manifest["rules"]["file"].as_str().unwrap().ends_with("restated.toml"), "the restated month is the one published");
}
