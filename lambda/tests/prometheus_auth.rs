//! Prometheus reached with credentials, as a Lambda reaches it: bearer and basic auth from
//! Secrets Manager and Parameter Store (moto on loopback), and SigV4-signed queries for Amazon
//! Managed Service for Prometheus, each signature checked against botocore's. The Prometheus here
//! is a loopback receiver that records each request and answers a fixed vector.
//! Needs FINOPS_TEST_S3_ENDPOINT (moto) and FINOPS_TEST_PYTHON (a Python with botocore):
//! `scripts/test` sets both.

mod common;

use common::*;

use std::io::{BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

type Requests = Arc<Mutex<Vec<(String, Vec<(String, String)>)>>>;

fn endpoint() -> String {
    std::env::var("FINOPS_TEST_S3_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "FINOPS_TEST_S3_ENDPOINT is not set: these tests read secrets from a local moto server. \
             Run `scripts/test` (it installs moto[server] from PyPI and starts it on 127.0.0.1)"
        )
    })
}

/// A Prometheus stand-in: records every request (line and headers) and answers each instant
/// query with two series, search 3 and orders 1.
fn prometheus() -> (String, Requests) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests: Requests = Arc::default();
    let seen = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut stream = stream;
            while let Some((line, headers, _)) = common::read_request_with_headers(&mut reader) {
                seen.lock().unwrap().push((line, headers));
                let body = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"team":"search"},"value":[1759276799.999,"3"]},{"metric":{"team":"orders"},"value":[1759276799.999,"1"]}]}}"#;
                let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
            }
        }
    });
    (url, requests)
}

/// A rule set with one share split by a Prometheus metric.
fn rules(dir: &Path) -> PathBuf {
    let path = dir.join("rules.toml");
    std::fs::write(
        &path,
        "version = 1\nteam_tags = [\"team\"]\n[teams.search]\n[teams.orders]\n[teams.payments]\n\
         [[share]]\nname = \"orders-db\"\nwhen = { service = [\"AmazonRDS\"] }\nmethod = \"metric\"\namong = [\"search\", \"orders\"]\n\
         metric = { source = \"prometheus\", query = \"sum by (team) (pg_table_size_bytes{db=\\\"orders\\\"})\", label = \"team\" }\n",
    )
    .unwrap();
    path
}

fn finops(dir: &Path, config: &str, env: &[(&str, &str)]) -> Output {
    std::fs::write(dir.join("finops.toml"), config).unwrap();
    let fixtures = workspace().join("fixtures/cur2");
    let mut command = Command::new(env!("CARGO_BIN_EXE_finops"));
    command
        .args(["run", "--config", "finops.toml", "--rules", "rules.toml", "--out", "out", "--gpu-usage", "none", "--endpoint-url", &endpoint(), "--region", "us-east-1", "--source"])
        .arg(&fixtures)
        .current_dir(dir)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("AWS_SESSION_TOKEN")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("run finops")
}

fn unique(name: &str) -> String {
    format!("{name}-{}-{}", std::process::id(), std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() % 1_000_000)
}

async fn aws_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint())
        .credentials_provider(aws_sdk_s3::config::Credentials::new("testing", "testing", None, None, "moto"))
        .load()
        .await
}

fn authorizations(requests: &Requests) -> Vec<String> {
    let requests = requests.lock().unwrap();
    assert!(!requests.is_empty(), "the run queried Prometheus");
    requests.iter().map(|(_, headers)| headers.iter().find(|(n, _)| n == "authorization").map(|(_, v)| v.clone()).unwrap_or_default()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_and_basic_credentials_come_from_the_secret_stores() {
    let config = aws_config().await;
    let bearer_secret = unique("finops/prometheus-token");
    aws_sdk_secretsmanager::Client::new(&config).create_secret().name(&bearer_secret).secret_string(r#"{"token":"tok-123"}"#).send().await.expect("create the secret on moto");
    let basic_parameter = format!("/{}", unique("finops/prometheus-basic"));
    aws_sdk_ssm::Client::new(&config)
        .put_parameter()
        .name(&basic_parameter)
        .value(r#"{"username":"finops","password":"s3cret"}"#)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .expect("put the parameter on moto");

    let dir = tempfile::tempdir().unwrap();
    rules(dir.path());
    let (url, requests) = prometheus();
    let run = finops(dir.path(), &format!("[prometheus]\nurl = \"{url}\"\nauth = \"bearer\"\nsecret = \"{bearer_secret}\"\n[report]\nhistory_months = 1\n"), &[]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(authorizations(&requests).iter().all(|a| a == "Bearer tok-123"), "{:?}", requests.lock().unwrap());
    let manifest = std::fs::read_to_string(std::fs::read_dir(dir.path().join("out")).unwrap().map(|e| e.unwrap().path()).find(|p| p.is_dir()).unwrap().join("manifest.json")).unwrap();
    assert!(!manifest.contains("tok-123"), "the token never reaches an output");

    let dir = tempfile::tempdir().unwrap();
    rules(dir.path());
    let (url, requests) = prometheus();
    let run = finops(dir.path(), &format!("[prometheus]\nurl = \"{url}\"\nauth = \"basic\"\nsecret = \"ssm:{basic_parameter}\"\n[report]\nhistory_months = 1\n"), &[]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(authorizations(&requests).iter().all(|a| a == "Basic Zmlub3BzOnMzY3JldA=="), "{:?}", requests.lock().unwrap());
}

#[test]
fn a_missing_secret_or_setting_fails_the_run_naming_it_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    rules(dir.path());
    let (url, requests) = prometheus();
    let run = finops(dir.path(), &format!("[prometheus]\nurl = \"{url}\"\nauth = \"bearer\"\nsecret = \"{}\"\n", unique("finops/no-such-secret")), &[]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(stderr.contains("[prometheus] secret (FINOPS_PROMETHEUS_SECRET): could not read the secret"), "{stderr}");
    assert!(requests.lock().unwrap().is_empty(), "no query without credentials");
    assert!(!dir.path().join("out").exists() || std::fs::read_dir(dir.path().join("out")).unwrap().all(|e| !e.unwrap().path().join("manifest.json").exists()));

    let run = finops(dir.path(), &format!("[prometheus]\nurl = \"{url}\"\nauth = \"bearer\"\n"), &[]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(stderr.contains("[prometheus] auth = \"bearer\" needs [prometheus] secret (FINOPS_PROMETHEUS_SECRET)"), "{stderr}");
}

#[test]
fn sigv4_queries_carry_the_signature_botocore_computes() {
    let python = std::env::var("FINOPS_TEST_PYTHON")
        .unwrap_or_else(|_| panic!("FINOPS_TEST_PYTHON is not set: this test checks signatures with botocore. Run `scripts/test` (it points it at the moto venv's python)"));
    let dir = tempfile::tempdir().unwrap();
    rules(dir.path());
    let (url, requests) = prometheus();
    let workspace_url = format!("{url}/workspaces/ws-0123abcd");
    let run = finops(
        dir.path(),
        &format!("[prometheus]\nurl = \"{workspace_url}\"\nauth = \"sigv4\"\nregion = \"ap-northeast-2\"\n[report]\nhistory_months = 1\n"),
        &[("AWS_SESSION_TOKEN", "session-token-xyz")],
    );
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let requests = requests.lock().unwrap().clone();
    assert!(!requests.is_empty());
    for (line, headers) in &requests {
        let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()).unwrap_or_else(|| panic!("no {name} header in {headers:?}"));
        let target = line.split_whitespace().nth(1).unwrap();
        assert!(target.starts_with("/workspaces/ws-0123abcd/api/v1/query?query="), "{line}");
        let authorization = header("authorization");
        assert!(authorization.starts_with("AWS4-HMAC-SHA256 Credential=testing/"), "{authorization}");
        assert!(authorization.contains("/ap-northeast-2/aps/aws4_request"), "{authorization}");
        assert_eq!(header("x-amz-security-token"), "session-token-xyz");
        let spec = serde_json::json!({
            "method": "GET",
            "url": format!("http://{}{target}", header("host")),
            "headers": { "host": header("host"), "x-amz-date": header("x-amz-date"), "x-amz-security-token": header("x-amz-security-token") },
            "region": "ap-northeast-2",
            "service": "aps",
            "access_key": "testing",
            "secret_key": "testing",
            "token": "session-token-xyz",
        });
        let mut child = Command::new(&python)
            .arg(workspace().join("scripts/testdata/sigv4_expected.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run the botocore check");
        child.stdin.take().unwrap().write_all(spec.to_string().as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(authorization, String::from_utf8_lossy(&out.stdout).trim(), "the signature of {line}");
    }
}
