//! The real AWS SDK against a local moto server: a month read from S3 gives byte-identical
//! outputs to the same month read from disk, and an unreadable object is a clear error.
//! Needs FINOPS_TEST_S3_ENDPOINT: `scripts/test` installs moto and starts it on loopback.

mod common;

use common::aws::*;
use common::*;

use std::path::Path;
use std::process::{Command, Output};

use aws_sdk_s3::config::Credentials;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::StorageClass;

/// `finops <command> --rules <the shipped rule set> <args>` from `cwd` (outside the repository,
/// so the rule set is named, as a user running elsewhere names it).
fn finops(args: &[&str], cwd: &Path) -> Output {
    let rules = workspace().join("rules/example.toml");
    Command::new(env!("CARGO_BIN_EXE_finops"))
        .arg(args[0])
        .arg("--rules")
        .arg(rules)
        .args(&args[1..])
        .current_dir(cwd)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("run finops")
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_month_gives_byte_identical_outputs_to_the_local_read() {
    let month = latest_month();
    let bucket = unique("finops-cur");
    // Every month: the job reads the previous one too, for month-over-month change.
    upload_months(&bucket, "cur2/finops-cur2", &fixture_months(), None).await;
    let cwd = tempfile::tempdir().unwrap();
    let endpoint = endpoint();
    // The same recorded GPU usage for both reads: GPU nodes are charged by GPU-hours in both.
    let gpu = workspace().join("fixtures/gpu").to_string_lossy().to_string();
    let remote = finops(
        &["run", "--source", &format!("s3://{bucket}/cur2/finops-cur2"), "--endpoint-url", &endpoint, "--region", "us-east-1", "--month", &month, "--out", "s3", "--gpu-usage", &gpu],
        cwd.path(),
    );
    assert!(remote.status.success(), "{}", String::from_utf8_lossy(&remote.stderr));
    let fixtures = workspace().join("fixtures/cur2");
    let local = finops(&["run", "--source", &fixtures.to_string_lossy(), "--month", &month, "--out", "local", "--gpu-usage", &gpu], cwd.path());
    assert!(local.status.success(), "{}", String::from_utf8_lossy(&local.stderr));

    let read = |root: &str, name: &str| std::fs::read(cwd.path().join(root).join(&month).join(name)).unwrap();
    let names: Vec<String> = std::fs::read_dir(cwd.path().join("local").join(&month).join("teams"))
        .unwrap()
        .map(|e| format!("teams/{}", e.unwrap().file_name().to_string_lossy()))
        .chain(["summary.csv".to_string(), "services.csv".to_string()])
        .collect();
    assert!(names.len() > 3);
    for name in &names {
        assert_eq!(read("s3", name), read("local", name), "{name} differs between S3 and local reads");
    }
    let mut remote_manifest: serde_json::Value = serde_json::from_slice(&read("s3", "manifest.json")).unwrap();
    let mut local_manifest: serde_json::Value = serde_json::from_slice(&read("local", "manifest.json")).unwrap();
    assert_eq!(remote_manifest["source"]["location"], format!("s3://{bucket}/cur2/finops-cur2"));
    // Only where the data came from may differ; keys, hashes, row counts and totals may not.
    remote_manifest["source"]["location"] = serde_json::Value::Null;
    local_manifest["source"]["location"] = serde_json::Value::Null;
    // report.pdf prints where the data came from, so its record differs in that alone.
    for manifest in [&mut remote_manifest, &mut local_manifest] {
        let files = manifest["files"].as_array_mut().unwrap();
        let at = files.iter().position(|f| f["name"] == "report.pdf").expect("report.pdf is published");
        files.remove(at);
    }
    assert_eq!(remote_manifest, local_manifest);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_object_that_cannot_be_read_is_named_and_nothing_is_written() {
    // CUR months moved to Glacier by a lifecycle rule: listed, but GetObject is refused.
    let month = latest_month();
    let bucket = unique("finops-glacier");
    upload_months(&bucket, "exports", std::slice::from_ref(&month), Some(StorageClass::Glacier)).await;
    let cwd = tempfile::tempdir().unwrap();
    let result = finops(&["run", "--source", &format!("s3://{bucket}/exports"), "--endpoint-url", &endpoint(), "--region", "us-east-1", "--month", &month, "--out", "out"], cwd.path());
    assert!(!result.status.success());
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains(&format!("s3://{bucket}/exports/data/BILLING_PERIOD={month}/")), "{stderr}");
    assert!(stderr.contains("could not read the object on S3"), "{stderr}");
    assert!(stderr.contains("InvalidObjectState"), "the service's own reason is shown: {stderr}");
    assert!(!cwd.path().join("out").join(&month).exists());

    let missing = finops(&["run", "--source", &format!("s3://{}/x", unique("no-such-bucket")), "--endpoint-url", &endpoint(), "--region", "us-east-1", "--out", "out"], cwd.path());
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("could not list objects on S3") && stderr.contains("NoSuchBucket"), "{stderr}");
}

/// S3 output: the month's files land under the report prefix encrypted (SSE-S3), the same bytes
/// as a local run's, the manifest last; a re-run replaces the month whole (a file the new run no
/// longer writes is gone); a failed run writes nothing; the alerts' state sits beside the months.
#[tokio::test(flavor = "multi_thread")]
async fn a_month_published_to_s3_is_encrypted_whole_and_replaced_whole() {
    let month = latest_month();
    let bucket = unique("finops-reports");
    upload_months(&bucket, "cur2/export", &fixture_months(), None).await;
    let s3 = client();
    let endpoint = endpoint();
    let gpu = workspace().join("fixtures/gpu").to_string_lossy().to_string();
    let cwd = tempfile::tempdir().unwrap();
    let source = format!("s3://{bucket}/cur2/export");
    let out = format!("s3://{bucket}/reports");
    let run = |out: &str, month: &str| {
        finops(&["run", "--source", &source, "--endpoint-url", &endpoint, "--region", "us-east-1", "--month", month, "--out", out, "--gpu-usage", &gpu, "--quiet"], cwd.path())
    };
    // A file from an earlier run of the month that this run does not write.
    s3.put_object().bucket(&bucket).key(format!("reports/{month}/teams/gone.csv")).body(ByteStream::from_static(b"old")).send().await.unwrap();

    let result = run(&out, &month);
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    assert!(String::from_utf8_lossy(&result.stdout).contains(&format!("wrote s3://{bucket}/reports/{month}/")), "{}", String::from_utf8_lossy(&result.stdout));
    let local = run(&cwd.path().join("local").to_string_lossy(), &month);
    assert!(local.status.success(), "{}", String::from_utf8_lossy(&local.stderr));

    let manifest: serde_json::Value =
        serde_json::from_slice(&s3.get_object().bucket(&bucket).key(format!("reports/{month}/manifest.json")).send().await.unwrap().body.collect().await.unwrap().into_bytes()).unwrap();
    for file in manifest["files"].as_array().unwrap() {
        let name = file["name"].as_str().unwrap();
        // Every reader goes through the manifest: it says where each file's bytes are.
        let key = format!("reports/{month}/{}", file["object"].as_str().expect("an S3 month records each file's object"));
        assert!(key.starts_with(&format!("reports/{month}/v/")) && key.ends_with(name), "{key}");
        let head = s3.head_object().bucket(&bucket).key(&key).send().await.unwrap_or_else(|e| panic!("{key}: {e}"));
        assert_eq!(head.server_side_encryption(), Some(&aws_sdk_s3::types::ServerSideEncryption::Aes256), "{key} is encrypted at rest");
        let body = s3.get_object().bucket(&bucket).key(&key).send().await.unwrap().body.collect().await.unwrap().into_bytes();
        assert_eq!(body.len() as u64, file["bytes"].as_u64().unwrap(), "{key}");
        if name.ends_with(".csv") {
            assert_eq!(body.to_vec(), std::fs::read(cwd.path().join("local").join(&month).join(name)).unwrap(), "{name}: the same bytes as a local run");
        }
    }
    let gone = s3.head_object().bucket(&bucket).key(format!("reports/{month}/teams/gone.csv")).send().await;
    assert!(gone.is_err(), "a file the month no longer has is removed when the month is replaced");
    assert!(s3.head_object().bucket(&bucket).key("reports/alerts-state.json").send().await.is_ok(), "the alerts' state sits beside the months");

    // `finops report` rebuilds the published month's PDF in S3 in Korean: the PDF is replaced
    // (encrypted) and the manifest records the new one.
    std::fs::write(cwd.path().join("ko.toml"), format!("[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{endpoint}\"\n[report]\nlocale = \"ko\"\n")).unwrap();
    let rebuilt = Command::new(env!("CARGO_BIN_EXE_finops"))
        .args(["report", "--month", &month, "--out", &out, "--config", "ko.toml"])
        .current_dir(cwd.path())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    assert!(rebuilt.status.success(), "{}", String::from_utf8_lossy(&rebuilt.stderr));
    let after: serde_json::Value =
        serde_json::from_slice(&s3.get_object().bucket(&bucket).key(format!("reports/{month}/manifest.json")).send().await.unwrap().body.collect().await.unwrap().into_bytes()).unwrap();
    let recorded = after["files"].as_array().unwrap().iter().find(|f| f["name"] == "report.pdf").unwrap().clone();
    let key = format!("reports/{month}/{}", recorded["object"].as_str().unwrap());
    assert!(String::from_utf8_lossy(&rebuilt.stdout).contains(&format!("s3://{bucket}/{key}")), "{}", String::from_utf8_lossy(&rebuilt.stdout));
    let head = s3.head_object().bucket(&bucket).key(&key).send().await.unwrap();
    assert_eq!(head.server_side_encryption(), Some(&aws_sdk_s3::types::ServerSideEncryption::Aes256));
    let pdf = s3.get_object().bucket(&bucket).key(&key).send().await.unwrap().body.collect().await.unwrap().into_bytes().to_vec();
    let before = manifest["files"].as_array().unwrap().iter().find(|f| f["name"] == "report.pdf").unwrap().clone();
    let old_key = format!("reports/{month}/{}", before["object"].as_str().unwrap());
    assert!(s3.head_object().bucket(&bucket).key(&old_key).send().await.is_err(), "the superseded PDF is removed once the manifest points to the new one");
    let before = before["sha256"].as_str().unwrap().to_string();
    use sha2::Digest;
    let hash: String = sha2::Sha256::digest(&pdf).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(recorded["sha256"], hash.as_str(), "the manifest records the rebuilt PDF");
    assert_ne!(hash, before, "the Korean report differs from the English one");

    // A month with no data: an error, and nothing written for it.
    let failed = run(&out, "2019-01");
    assert!(!failed.status.success());
    let listed = s3.list_objects_v2().bucket(&bucket).prefix("reports/2019-01/").send().await.unwrap();
    assert_eq!(listed.key_count(), Some(0), "nothing written for a failed month");
}

/// The real `bootstrap` against a local Runtime API: a scheduled monthly event reads the month
/// from S3 and publishes it back to S3, reporting success; a month with no data reports a fatal
/// error that says so and writes nothing; a missing setting fails the start, naming it.
#[tokio::test(flavor = "multi_thread")]
async fn the_lambda_bootstrap_runs_scheduled_months_from_s3_to_s3() {
    let month = latest_month();
    let bucket = unique("finops-lambda");
    upload_months(&bucket, "cur2/export", &fixture_months(), None).await;
    let api = RuntimeApi::start(vec![
        serde_json::json!({"version": "0", "detail-type": "Scheduled Event", "source": "aws.scheduler", "detail": {"job": "monthly", "month": month}}),
        serde_json::json!({"job": "monthly", "month": "2019-01"}),
    ]);
    let (endpoint, rules, gpu) = (endpoint(), workspace().join("rules/example.toml"), workspace().join("fixtures/gpu"));
    let (source, output) = (format!("s3://{bucket}/cur2/export"), format!("s3://{bucket}/reports"));
    // The default route's Slack webhook, as a SecureString in Parameter Store.
    let hook = Hook::start();
    let parameters = format!("/{bucket}/slack");
    let ssm_config = aws_sdk_ssm::Config::builder()
        .behavior_version_latest()
        .region(aws_sdk_ssm::config::Region::new("us-east-1"))
        .endpoint_url(endpoint.clone())
        .credentials_provider(aws_sdk_ssm::config::Credentials::new("testing", "testing", None, None, "moto"))
        .build();
    aws_sdk_ssm::Client::from_conf(ssm_config)
        .put_parameter()
        .name(format!("{parameters}/finops"))
        .value(&hook.url)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .expect("put the webhook parameter on moto");
    // The config file itself in S3: a coverage threshold the fixtures miss, so its warning shows
    // the file was read.
    s3_put(&bucket, "config/finops.toml", b"[checks]\nmin_coverage = 0.999\n").await;
    let config_uri = format!("s3://{bucket}/config/finops.toml");
    let mut child = bootstrap(&[
        ("FINOPS_CONFIG", config_uri.as_str()),
        ("FINOPS_SLACK_PARAMETERS", parameters.as_str()),
        ("AWS_LAMBDA_RUNTIME_API", api.address.as_str()),
        ("FINOPS_SOURCE", &source),
        ("FINOPS_OUTPUT", &output),
        ("FINOPS_RULES", &rules.to_string_lossy()),
        ("FINOPS_GPU_USAGE", &gpu.to_string_lossy()),
        ("FINOPS_AWS_ENDPOINT_URL", &endpoint),
        ("FINOPS_LINKS", "presigned"),
    ]);
    let started = std::time::Instant::now();
    while api.results.lock().unwrap().len() < 2 && started.elapsed() < std::time::Duration::from_secs(120) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    let output_of_child = child.wait_with_output().unwrap();
    let results = api.results.lock().unwrap().clone();
    assert_eq!(results.len(), 2, "two invocations answered; logs:\n{}", String::from_utf8_lossy(&output_of_child.stdout));
    assert!(results[0].0.ends_with("/response"), "{results:?}");
    let answer: serde_json::Value = serde_json::from_str(&results[0].1).unwrap();
    assert_eq!(answer["month"], month.as_str());
    assert_eq!(answer["output"], format!("s3://{bucket}/reports/{month}"));
    assert!(answer["warnings"].as_array().unwrap().iter().any(|w| w.as_str().unwrap().contains("below the 99.9% threshold ([checks] min_coverage)")), "the S3 config was read: {answer}");
    // The data team (no route of its own) got its monthly message through the webhook from SSM.
    assert!(answer["alerts_sent"].as_u64().unwrap() >= 1, "{answer}");
    let data_message = hook.bodies.lock().unwrap().iter().find(|b| b.contains("data: ") && b.contains(" USD in ") && b.contains(" teams")).cloned().expect("the data team's monthly message");
    // Its CSV link is presigned: it downloads the team's CSV without credentials.
    let message: serde_json::Value = serde_json::from_str(&data_message).unwrap();
    let details = message["blocks"].as_array().unwrap().iter().filter_map(|b| b["text"]["text"].as_str()).find(|t| t.contains("Your lines: ")).expect("a CSV link").to_string();
    let link = details.split("Your lines: ").nth(1).unwrap().split_whitespace().next().unwrap().replace("&amp;", "&");
    assert!(link.contains(&format!("/reports/{month}/v/")) && link.contains("/teams/data.csv?") && link.contains("X-Amz-Signature="), "{link}");
    assert!(details.contains("download link valid until "), "the message states the link's real expiry: {details}");
    let csv = http_get(&link);
    assert!(csv.starts_with("HTTP/1.1 200") && csv.contains("\u{feff}date,account,service"), "{}", &csv[..csv.len().min(300)]);
    let s3 = client();
    let head = s3.head_object().bucket(&bucket).key(format!("reports/{month}/manifest.json")).send().await.expect("the month is published");
    assert_eq!(head.server_side_encryption(), Some(&aws_sdk_s3::types::ServerSideEncryption::Aes256));
    assert!(results[1].0.ends_with("/error"), "{results:?}");
    let error: serde_json::Value = serde_json::from_str(&results[1].1).unwrap();
    assert_eq!(error["errorType"], "Fatal.NoData", "{error}");
    assert!(error["errorMessage"].as_str().unwrap().contains("no billing data for 2019-01"), "{error}");
    let listed = s3.list_objects_v2().bucket(&bucket).prefix("reports/2019-01/").send().await.unwrap();
    assert_eq!(listed.key_count(), Some(0));
    // Logs are JSON lines, and the webhook's secret is in none of them.
    let logs = String::from_utf8_lossy(&output_of_child.stdout);
    assert!(!logs.contains("hook-s3cr3t") && !String::from_utf8_lossy(&output_of_child.stderr).contains("hook-s3cr3t"), "{logs}");
    assert!(logs.lines().filter(|l| !l.trim().is_empty()).all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()), "{logs}");

    // A missing setting fails the container's start at once, naming it; nothing is written.
    let mut bad = bootstrap(&[("AWS_LAMBDA_RUNTIME_API", api.address.as_str()), ("FINOPS_OUTPUT", &output), ("FINOPS_RULES", &rules.to_string_lossy())]);
    let status = bad.wait().unwrap();
    let mut said = String::new();
    std::io::Read::read_to_string(bad.stdout.as_mut().unwrap(), &mut said).unwrap();
    std::io::Read::read_to_string(bad.stderr.as_mut().unwrap(), &mut said).unwrap();
    assert!(!status.success());
    assert!(said.contains("FINOPS_SOURCE: not set"), "{said}");

    // So does a Prometheus secret that is not there, read at start (never per invocation).
    let mut bad = bootstrap(&[
        ("AWS_LAMBDA_RUNTIME_API", api.address.as_str()),
        ("FINOPS_SOURCE", "s3://nowhere/cur"),
        ("FINOPS_OUTPUT", &output),
        ("FINOPS_RULES", &rules.to_string_lossy()),
        ("FINOPS_AWS_ENDPOINT_URL", &endpoint),
        ("FINOPS_PROMETHEUS_URL", "http://127.0.0.1:9"),
        ("FINOPS_PROMETHEUS_AUTH", "bearer"),
        ("FINOPS_PROMETHEUS_SECRET", "finops/no-such-secret"),
    ]);
    let status = bad.wait().unwrap();
    let mut said = String::new();
    std::io::Read::read_to_string(bad.stdout.as_mut().unwrap(), &mut said).unwrap();
    std::io::Read::read_to_string(bad.stderr.as_mut().unwrap(), &mut said).unwrap();
    assert!(!status.success());
    assert!(said.contains("[prometheus] secret (FINOPS_PROMETHEUS_SECRET): could not read the secret `finops/no-such-secret`"), "{said}");
    assert!(said.contains("ResourceNotFoundException"), "the service's reason is shown: {said}");
}

/// A webhook receiver that accepts every message (200) and keeps the bodies.
async fn s3_put(bucket: &str, key: &str, bytes: &'static [u8]) {
    client().put_object().bucket(bucket).key(key).body(ByteStream::from_static(bytes)).send().await.expect("put object on moto");
}

fn python() -> String {
    std::env::var("FINOPS_TEST_PYTHON")
        .unwrap_or_else(|_| panic!("FINOPS_TEST_PYTHON is not set: the Athena test runs the grain query in DuckDB to seed moto. Run `scripts/test` (it sets it to the test venv's python)"))
}

/// moto's state manager: Athena executions advance only after `times` status checks.
fn athena_transitions(times: Option<u64>) {
    let (path, body) = match times {
        Some(times) => ("set-transition", serde_json::json!({"model_name": "athena::execution", "transition": {"progression": "manual", "times": times}})),
        None => ("unset-transition", serde_json::json!({"model_name": "athena::execution"})),
    };
    let response = http_post(&format!("{}/moto-api/state-manager/{path}", endpoint()), &body.to_string());
    assert!(response.starts_with("HTTP/1.1 2"), "{response}");
}

/// The Athena engine against moto's Athena and S3, everything that uses moto's Athena in order
/// (its result queue and state manager are the server's): the real `bootstrap` runs a month
/// with `engine = "athena"` and publishes team CSVs byte-identical to the local run's, its
/// manifest naming the query, the SQL's hash and the scan's cost; a query still queued at the
/// timeout is stopped and fails the run; a query cancelled in Athena fails it with that reason.
/// Nothing is written by a failed run.
#[tokio::test(flavor = "multi_thread")]
async fn the_athena_engine_runs_the_grain_query_and_publishes_the_month() {
    let month = latest_month();
    let bucket = unique("finops-athena");
    upload_months(&bucket, "cur2/export", &fixture_months(), None).await;
    let work = tempfile::tempdir().unwrap();
    let fixtures = workspace().join("fixtures/cur2").to_string_lossy().to_string();
    let gpu = workspace().join("fixtures/gpu").to_string_lossy().to_string();

    // The reference: the month allocated locally.
    let local = finops(&["run", "--source", &fixtures, "--month", &month, "--out", "local", "--gpu-usage", &gpu], work.path());
    assert!(local.status.success(), "{}", String::from_utf8_lossy(&local.stderr));
    // What Athena would return for the month: the same grain query, run in DuckDB. Queued on
    // moto for the month, then an empty result for the month before.
    let duck_sql = finops(&["sql", "--source", &fixtures, "--month", &month, "--dialect", "duckdb"], work.path());
    assert!(duck_sql.status.success(), "{}", String::from_utf8_lossy(&duck_sql.stderr));
    std::fs::write(work.path().join("q.sql"), &duck_sql.stdout).unwrap();
    let ran = Command::new(python()).arg(workspace().join("scripts/testdata/duckdb_grain.py")).arg(work.path().join("q.sql")).arg(work.path().join("r.csv")).output().unwrap();
    assert!(ran.status.success(), "{}", String::from_utf8_lossy(&ran.stderr));
    let seeded = Command::new(python()).arg(workspace().join("scripts/testdata/athena_seed.py")).arg(endpoint()).arg(work.path().join("r.csv")).arg("-").output().unwrap();
    assert!(seeded.status.success(), "{}", String::from_utf8_lossy(&seeded.stderr));

    let api = RuntimeApi::start(vec![serde_json::json!({"job": "monthly", "month": month})]);
    let rules = workspace().join("rules/example.toml");
    let config = work.path().join("finops.toml");
    std::fs::write(&config, "[report]\nhistory_months = 1\n").unwrap();
    let (source, output, results) = (format!("s3://{bucket}/cur2/export"), format!("s3://{bucket}/reports"), format!("s3://{bucket}/athena-results/"));
    let endpoint = endpoint();
    let mut child = bootstrap(&[
        ("AWS_LAMBDA_RUNTIME_API", api.address.as_str()),
        ("FINOPS_CONFIG", &config.to_string_lossy()),
        ("FINOPS_SOURCE", &source),
        ("FINOPS_OUTPUT", &output),
        ("FINOPS_RULES", &rules.to_string_lossy()),
        ("FINOPS_GPU_USAGE", &gpu),
        ("FINOPS_ENGINE", "athena"),
        ("FINOPS_ATHENA_OUTPUT", &results),
        ("FINOPS_AWS_ENDPOINT_URL", &endpoint),
        ("FINOPS_LINKS", "presigned"),
    ]);
    let started = std::time::Instant::now();
    while api.results.lock().unwrap().is_empty() && started.elapsed() < std::time::Duration::from_secs(120) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    let logs = child.wait_with_output().unwrap();
    let answered = api.results.lock().unwrap().clone();
    assert_eq!(answered.len(), 1, "logs:\n{}", String::from_utf8_lossy(&logs.stdout));
    assert!(answered[0].0.ends_with("/response"), "{answered:?}\n{}", String::from_utf8_lossy(&logs.stdout));

    let s3 = client();
    let read = |key: String| {
        let s3 = s3.clone();
        let bucket = bucket.clone();
        async move { s3.get_object().bucket(bucket).key(key).send().await.unwrap().body.collect().await.unwrap().into_bytes().to_vec() }
    };
    let teams: Vec<String> = std::fs::read_dir(work.path().join("local").join(&month).join("teams")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
    assert!(teams.len() > 3);
    for team in &teams {
        let ours = std::fs::read(work.path().join("local").join(&month).join("teams").join(team)).unwrap();
        assert!(read_published(&bucket, "reports", &month, &format!("teams/{team}")).await == ours, "teams/{team} differs between the Athena and the local engine");
    }
    let manifest: serde_json::Value = serde_json::from_slice(&read(format!("reports/{month}/manifest.json")).await).unwrap();
    let trino = finops(&["sql", "--source", &fixtures, "--month", &month], work.path());
    use sha2::Digest;
    let hash: String = sha2::Sha256::digest(&trino.stdout).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(manifest["athena"]["sql_sha256"], hash.as_str(), "the manifest hashes the SQL `finops sql` prints: {manifest}");
    assert!(manifest["athena"]["query_id"].as_str().is_some_and(|id| !id.is_empty()));
    assert_eq!(manifest["athena"]["bytes_scanned"], 0, "moto reports no bytes scanned");
    assert_eq!(manifest["athena"]["dollars"], "0.000050", "the 10 MB minimum at $5/TB");
    assert!(manifest["athena"]["result"].as_str().unwrap().starts_with(&results));
    assert_eq!(manifest["source"]["location"], "athena:cid_data_export.cur2");

    // A query that stays queued past [athena] timeout_seconds is stopped; the run fails and
    // writes nothing.
    athena_transitions(Some(1_000_000));
    std::fs::write(work.path().join("slow.toml"), "[athena]\ntimeout_seconds = 2\noutput_location = \"".to_string() + &results + "\"\n[report]\nhistory_months = 1\n").unwrap();
    let args = [
        "run",
        "--config",
        "slow.toml",
        "--engine",
        "athena",
        "--source",
        &source,
        "--endpoint-url",
        &endpoint,
        "--region",
        "us-east-1",
        "--month",
        &month,
        "--out",
        "timed-out",
        "--gpu-usage",
        "none",
    ];
    let timed_out = finops(&args, work.path());
    let stderr = String::from_utf8_lossy(&timed_out.stderr);
    assert!(!timed_out.status.success());
    assert!(stderr.contains("did not finish within 2 s ([athena] timeout_seconds); it was stopped"), "{stderr}");
    assert!(!work.path().join("timed-out").join(&month).exists());

    // A query cancelled in Athena (by someone else, or by the workgroup's limits) fails the run
    // with that state.
    std::fs::write(work.path().join("slow.toml"), "[athena]\ntimeout_seconds = 60\noutput_location = \"".to_string() + &results + "\"\n[report]\nhistory_months = 1\n").unwrap();
    let running = Command::new(env!("CARGO_BIN_EXE_finops"))
        .args(["run", "--rules"])
        .arg(&rules)
        .args([
            "--config",
            "slow.toml",
            "--engine",
            "athena",
            "--source",
            &source,
            "--endpoint-url",
            &endpoint,
            "--region",
            "us-east-1",
            "--month",
            &month,
            "--out",
            "cancelled",
            "--gpu-usage",
            "none",
        ])
        .current_dir(work.path())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let athena = aws_sdk_athena::Client::from_conf(
        aws_sdk_athena::Config::builder()
            .behavior_version_latest()
            .region(aws_sdk_athena::config::Region::new("us-east-1"))
            .endpoint_url(&endpoint)
            .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
            .build(),
    );
    let before: std::collections::BTreeSet<String> = athena.list_query_executions().send().await.unwrap().query_execution_ids().iter().cloned().collect();
    let mut stopped = None;
    for _ in 0..200 {
        let now = athena.list_query_executions().send().await.unwrap();
        if let Some(id) = now.query_execution_ids().iter().find(|id| !before.contains(*id)) {
            athena.stop_query_execution().query_execution_id(id).send().await.unwrap();
            stopped = Some(id.clone());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let stopped = stopped.expect("the run started a query");
    let cancelled = running.wait_with_output().unwrap();
    athena_transitions(None);
    let stderr = String::from_utf8_lossy(&cancelled.stderr);
    assert!(!cancelled.status.success());
    assert!(stderr.contains(&format!("Athena query {stopped}: was cancelled")), "{stderr}");
    assert!(!work.path().join("cancelled").join(&month).exists());

    // moto never fails a query nor counts bytes: a loopback proxy in front of it rewrites
    // Athena's GetQueryExecution answers, the rest passes through. A FAILED query fails the run
    // with Athena's own reason, and writes nothing.
    let failing = athena_proxy(std::sync::Arc::new(|execution: &mut serde_json::Value| {
        execution["Status"]["State"] = "FAILED".into();
        execution["Status"]["StateChangeReason"] = "COLUMN_NOT_FOUND: line 14:5: Column 'product_region_code' cannot be resolved".into();
        execution["Status"]["AthenaError"] = serde_json::json!({"ErrorCategory": 2, "ErrorType": 1006, "Retryable": false, "ErrorMessage": "Column 'product_region_code' cannot be resolved"});
    }));
    std::fs::write(
        work.path().join("athena.toml"),
        "[athena]
output_location = \""
            .to_string()
            + &results
            + "\"\n[report]\nhistory_months = 1\n",
    )
    .unwrap();
    let run = |endpoint: &str, out: &str| {
        finops(
            &["run", "--config", "athena.toml", "--engine", "athena", "--source", &source, "--endpoint-url", endpoint, "--region", "us-east-1", "--month", &month, "--out", out, "--gpu-usage", &gpu],
            work.path(),
        )
    };
    let failed = run(&failing, "failed");
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success());
    assert!(stderr.contains(": failed: COLUMN_NOT_FOUND: line 14:5: Column 'product_region_code' cannot be resolved"), "{stderr}");
    assert!(!work.path().join("failed").join(&month).exists());

    // The bytes a query scanned are printed and recorded with their cost: 123,456,789,012 bytes
    // bill as 123,457 MB at $5 per TB.
    let seeded = Command::new(python()).arg(workspace().join("scripts/testdata/athena_seed.py")).arg(&endpoint).arg(work.path().join("r.csv")).arg("-").output().unwrap();
    assert!(seeded.status.success(), "{}", String::from_utf8_lossy(&seeded.stderr));
    let scanning = athena_proxy(std::sync::Arc::new(|execution: &mut serde_json::Value| {
        execution["Statistics"]["DataScannedInBytes"] = 123_456_789_012u64.into();
    }));
    // With engine = "auto", a month over [athena] auto_min_bytes goes to Athena, and the run
    // says so.
    std::fs::write(work.path().join("athena.toml"), "[athena]\nauto_min_bytes = 1\noutput_location = \"".to_string() + &results + "\"\n[report]\nhistory_months = 1\n").unwrap();
    let scanned = finops(
        &["run", "--config", "athena.toml", "--engine", "auto", "--source", &source, "--endpoint-url", &scanning, "--region", "us-east-1", "--month", &month, "--out", "scanned", "--gpu-usage", &gpu],
        work.path(),
    );
    assert!(scanned.status.success(), "{}", String::from_utf8_lossy(&scanned.stderr));
    assert!(String::from_utf8_lossy(&scanned.stderr).contains(&format!("warning: engine auto: {month} aggregated by Athena (")), "{}", String::from_utf8_lossy(&scanned.stderr));
    let stdout = String::from_utf8_lossy(&scanned.stdout);
    assert!(stdout.contains("scanned 123456789012 bytes ($0.617285 at $5/TB)"), "{stdout}");
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(work.path().join("scanned").join(&month).join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["athena"]["bytes_scanned"], 123_456_789_012u64);
    assert_eq!(manifest["athena"]["dollars"], "0.617285");
    for team in &teams {
        let ours = std::fs::read(work.path().join("local").join(&month).join("teams").join(team)).unwrap();
        assert!(std::fs::read(work.path().join("scanned").join(&month).join("teams").join(team)).unwrap() == ours, "teams/{team}");
    }

    // Under the threshold, auto aggregates locally, starts no query, and says so.
    let queries = athena.list_query_executions().send().await.unwrap().query_execution_ids().len();
    std::fs::write(work.path().join("athena.toml"), "[report]\nhistory_months = 1\n").unwrap();
    let small = finops(
        &["run", "--config", "athena.toml", "--engine", "auto", "--source", &source, "--endpoint-url", &endpoint, "--region", "us-east-1", "--month", &month, "--out", "small", "--gpu-usage", &gpu],
        work.path(),
    );
    assert!(small.status.success(), "{}", String::from_utf8_lossy(&small.stderr));
    let stderr = String::from_utf8_lossy(&small.stderr);
    assert!(stderr.contains(&format!("warning: engine auto: {month} aggregated locally (")) && stderr.contains("under [athena] auto_min_bytes 2147483648"), "{stderr}");
    assert_eq!(athena.list_query_executions().send().await.unwrap().query_execution_ids().len(), queries, "no Athena query for a small month");
}

/// A loopback proxy in front of moto: every request passes through unchanged, except that the
/// JSON answer to Athena's GetQueryExecution goes through `rewrite` (its `QueryExecution`).
fn athena_proxy(rewrite: std::sync::Arc<dyn Fn(&mut serde_json::Value) + Send + Sync>) -> String {
    moto_proxy(std::sync::Arc::new(move |_line: &str, headers: &[(String, String)]| {
        let target = headers.iter().find(|(n, _)| n == "x-amz-target").map(|(_, v)| v.as_str());
        if target != Some("AmazonAthena.GetQueryExecution") {
            return Intercept::Pass;
        }
        let rewrite = rewrite.clone();
        Intercept::Rewrite(Box::new(move |body: &[u8]| {
            let mut answer: serde_json::Value = serde_json::from_slice(body).unwrap();
            rewrite(&mut answer["QueryExecution"]);
            answer.to_string().into_bytes()
        }))
    }))
}
