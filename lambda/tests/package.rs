//! The function as the README packages and the template configures it: `deploy/package` builds
//! the package (with the native `bootstrap` where the arm64 build would go: these machines have
//! no arm64 standard library), and the packaged binary runs from the package folder, as Lambda
//! runs it from /var/task, with exactly the environment `deploy/template.yaml` gives it at its
//! default parameters, under a local Runtime API against moto. It publishes the month; the same
//! event again leaves every published object byte-identical and sends nothing.
//!
//! Needs FINOPS_TEST_S3_ENDPOINT (moto): `scripts/test` starts it.

mod common;

use common::aws::*;
use common::*;

use std::collections::BTreeMap;

/// The template's parameters and their defaults, and the function's environment as written in
/// the template (`!Ref Param`, `!Sub …${Param}…`, or a plain value).
fn template_environment(parameters: &BTreeMap<&str, String>) -> Vec<(String, String)> {
    let template = std::fs::read_to_string(workspace().join("deploy/template.yaml")).unwrap();
    let mut defaults: BTreeMap<String, String> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut in_parameters = false;
    for line in template.lines() {
        if !line.starts_with(' ') {
            in_parameters = line.starts_with("Parameters:");
            continue;
        }
        if in_parameters && line.starts_with("  ") && !line.starts_with("   ") {
            current = Some(line.trim().trim_end_matches(':').to_string());
        } else if let (true, Some(name), Some(value)) = (in_parameters, &current, line.trim().strip_prefix("Default: ")) {
            defaults.insert(name.clone(), value.trim_matches('"').to_string());
        }
    }
    let value_of =
        |name: &str| -> String { parameters.get(name).cloned().or_else(|| defaults.get(name).cloned()).unwrap_or_else(|| panic!("template parameter {name} has no default and the test gives none")) };
    let block = template.split("      Environment:\n        Variables:\n").nth(1).expect("the function's environment");
    let mut env = Vec::new();
    for line in block.lines().take_while(|l| l.starts_with("          ")) {
        let (name, value) = line.trim().split_once(": ").unwrap();
        let value = if let Some(param) = value.strip_prefix("!Ref ") {
            value_of(param)
        } else if let Some(pattern) = value.strip_prefix("!Sub ") {
            let mut out = String::new();
            let mut rest = pattern;
            while let Some(at) = rest.find("${") {
                out.push_str(&rest[..at]);
                let end = rest[at..].find('}').unwrap() + at;
                out.push_str(&value_of(&rest[at + 2..end]));
                rest = &rest[end + 1..];
            }
            out.push_str(rest);
            out
        } else {
            value.to_string()
        };
        env.push((name.to_string(), value));
    }
    env
}

#[tokio::test(flavor = "multi_thread")]
async fn the_packaged_function_publishes_a_month_and_a_repeat_changes_nothing() {
    let month = latest_month();
    let bucket = unique("finops-package");
    upload_months(&bucket, "cur2/export", &fixture_months(), None).await;
    let dir = tempfile::tempdir().unwrap();
    let package = dir.path().join("package");

    // Packaged exactly as the README says, with the native bootstrap.
    let native = std::path::Path::new(env!("CARGO_BIN_EXE_finops")).with_file_name("bootstrap");
    let packaged = std::process::Command::new(workspace().join("deploy/package")).arg("--binary").arg(&native).arg("--out").arg(&package).output().unwrap();
    assert!(packaged.status.success(), "{}", String::from_utf8_lossy(&packaged.stderr));
    assert!(package.join("rules/example.toml").is_file() && package.join("fixtures/usage").is_dir(), "the rules and the files they name are packaged");

    // The Slack webhook where the template's default SlackWebhookParameters path looks.
    let hook = Hook::start();
    let ssm = aws_sdk_ssm::Client::from_conf(
        aws_sdk_ssm::Config::builder()
            .behavior_version_latest()
            .region(aws_sdk_ssm::config::Region::new("us-east-1"))
            .endpoint_url(endpoint())
            .credentials_provider(aws_sdk_ssm::config::Credentials::new("testing", "testing", None, None, "moto"))
            .build(),
    );
    ssm.put_parameter().name("/finops/slack/finops").value(&hook.url).r#type(aws_sdk_ssm::types::ParameterType::SecureString).overwrite(true).send().await.unwrap();

    let parameters: BTreeMap<&str, String> =
        [("CurBucket", bucket.clone()), ("CurPrefix", "cur2/export".to_string()), ("ReportBucket", bucket.clone()), ("AthenaWorkGroup", "finops-test".to_string())].into();
    let env = template_environment(&parameters);
    assert!(env.iter().any(|(k, v)| k == "FINOPS_RULES" && v == "rules/example.toml"), "{env:?}");
    assert!(env.iter().any(|(k, v)| k == "FINOPS_ENGINE" && v == "local"), "the default engine needs no Athena table: {env:?}");

    let event = serde_json::json!({"version": "0", "detail-type": "Scheduled Event", "source": "aws.scheduler", "detail": {"job": "monthly", "month": month}});
    let api = RuntimeApi::start(vec![event.clone(), event]);
    let endpoint = endpoint();
    let mut settings: Vec<(&str, &str)> = vec![("AWS_LAMBDA_RUNTIME_API", api.address.as_str()), ("FINOPS_AWS_ENDPOINT_URL", endpoint.as_str())];
    settings.extend(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let mut child = lambda_process(&package.join("bootstrap"), &package, &settings);

    let mut wait_for = |n: usize| {
        let started = std::time::Instant::now();
        while api.results.lock().unwrap().len() < n && started.elapsed() < std::time::Duration::from_secs(300) {
            if let Ok(Some(status)) = child.try_wait() {
                let mut said = String::new();
                std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut said).unwrap();
                std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut said).unwrap();
                panic!("the packaged bootstrap exited ({status}) before answering {n} invocation(s):\n{said}");
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    wait_for(1);
    let first = objects_under(&bucket, &format!("finops/{month}")).await;
    let told = hook.bodies.lock().unwrap().len();
    wait_for(2);
    let _ = child.kill();
    let logs = child.wait_with_output().unwrap();
    let results = api.results.lock().unwrap().clone();
    assert_eq!(results.len(), 2, "two invocations answered; logs:\n{}{}", String::from_utf8_lossy(&logs.stdout), String::from_utf8_lossy(&logs.stderr));
    for (path, body) in &results {
        assert!(path.ends_with("/response"), "{path}: {body}\n{}", String::from_utf8_lossy(&logs.stdout));
    }
    let answers: Vec<serde_json::Value> = results.iter().map(|(_, b)| serde_json::from_str(b).unwrap()).collect();
    assert_eq!(answers[0]["changed"], true, "{}", answers[0]);
    assert_eq!(answers[1]["changed"], false, "the same event again publishes nothing: {}", answers[1]);
    assert!(first.contains_key(&format!("finops/{month}/manifest.json")), "{:?}", first.keys());
    assert!(told >= 1, "the monthly messages went to the default route's webhook from Parameter Store");
    let second = objects_under(&bucket, &format!("finops/{month}")).await;
    assert!(second == first, "every published object, manifest.json and alerts.json included, is byte-identical after the repeat");
    assert_eq!(hook.bodies.lock().unwrap().len(), told, "the repeat sends nothing");
}
