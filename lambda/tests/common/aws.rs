//! The AWS side of the tests: moto's endpoint and an S3 client for it, fixture months uploaded
//! to a bucket, a Lambda Runtime API and a Slack webhook receiver on loopback, and the real
//! `bootstrap` binary started against them.

use std::process::Command;

use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::StorageClass;

use super::{fixture_months, read_request, workspace};

pub fn endpoint() -> String {
    std::env::var("FINOPS_TEST_S3_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "FINOPS_TEST_S3_ENDPOINT is not set: the S3 tests need a local moto server. \
             Run `scripts/test` (it installs moto[server] from PyPI and starts it on 127.0.0.1), \
             or start `moto_server -p 5000` and export FINOPS_TEST_S3_ENDPOINT=http://127.0.0.1:5000"
        )
    })
}

pub fn client() -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version_latest()
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint())
        .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

pub fn latest_month() -> String {
    fixture_months().pop().unwrap()
}

/// Uploads fixture months (data and metadata) under `prefix`; `storage` applies to data files.
pub async fn upload_months(bucket: &str, prefix: &str, months: &[String], storage: Option<StorageClass>) {
    let s3 = client();
    s3.create_bucket().bucket(bucket).send().await.expect("create bucket on moto");
    for (month, part) in months.iter().flat_map(|m| [(m, "data"), (m, "metadata")]) {
        let dir = workspace().join(format!("fixtures/cur2/{part}/BILLING_PERIOD={month}"));
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let key = format!("{prefix}/{part}/BILLING_PERIOD={month}/{}", path.file_name().unwrap().to_string_lossy());
            let mut put = s3.put_object().bucket(bucket).key(key).body(ByteStream::from_path(&path).await.unwrap());
            if part == "data" {
                if let Some(class) = storage.clone() {
                    put = put.storage_class(class);
                }
            }
            put.send().await.expect("put object on moto");
        }
    }
}

pub fn unique(name: &str) -> String {
    format!("{name}-{}-{}", std::process::id(), std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() % 1_000_000)
}

/// A Lambda Runtime API on loopback: serves `events` in turn to `next`, records each response or
/// error, then holds `next` open (the function waits for work, as on AWS).
pub struct RuntimeApi {
    pub address: String,
    pub results: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
}

impl RuntimeApi {
    pub fn start(events: Vec<serde_json::Value>) -> RuntimeApi {
        use std::io::{BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let results = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let events = std::sync::Arc::new(std::sync::Mutex::new(events));
        let recorded = results.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (recorded, events) = (recorded.clone(), events.clone());
                std::thread::spawn(move || {
                    let mut writer = stream.try_clone().unwrap();
                    let mut reader = BufReader::new(stream);
                    let mut served = 0;
                    loop {
                        let Some((request, body)) = read_request(&mut reader) else { return };
                        let path = request.split_whitespace().nth(1).unwrap_or("").to_string();
                        if path.ends_with("/invocation/next") {
                            let next = {
                                let mut events = events.lock().unwrap();
                                (!events.is_empty()).then(|| events.remove(0))
                            };
                            let Some(event) = next else {
                                std::thread::sleep(std::time::Duration::from_secs(600));
                                return;
                            };
                            served += 1;
                            let body = event.to_string();
                            let deadline = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() + 900_000;
                            let _ = write!(
                                writer,
                                "HTTP/1.1 200 OK\r\nLambda-Runtime-Aws-Request-Id: req-{served}-{}\r\nLambda-Runtime-Deadline-Ms: {deadline}\r\n\
                                 Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:123456789012:function:finops\r\n\
                                 Lambda-Runtime-Trace-Id: Root=1-00000000-000000000000000000000000\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                                body.len(),
                                body.len()
                            );
                        } else {
                            recorded.lock().unwrap().push((path, String::from_utf8_lossy(&body).into_owned()));
                            let _ = write!(writer, "HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\n{{}}");
                        }
                    }
                });
            }
        });
        RuntimeApi { address, results }
    }
}

pub fn bootstrap(env: &[(&str, &str)]) -> std::process::Child {
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_finops")).with_file_name("bootstrap");
    lambda_process(&binary, &std::env::temp_dir(), env)
}

/// `binary` started as Lambda starts a function: from `cwd` (the task root), with only the
/// environment Lambda gives it (moto's test credentials) and `env`, its output captured.
pub fn lambda_process(binary: &std::path::Path, cwd: &std::path::Path, env: &[(&str, &str)]) -> std::process::Child {
    let mut command = Command::new(binary);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_LAMBDA_FUNCTION_NAME", "finops")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "3008")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/finops")
        .current_dir(cwd)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    command.spawn().unwrap_or_else(|e| panic!("start {}: {e}", binary.display()))
}

pub struct Hook {
    pub url: String,
    pub bodies: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Hook {
    pub fn start() -> Hook {
        use std::io::{BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/services/hook-s3cr3t", listener.local_addr().unwrap());
        let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = bodies.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let Some((_, body)) = read_request(&mut reader) else { continue };
                kept.lock().unwrap().push(String::from_utf8_lossy(&body).into_owned());
                let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
            }
        });
        Hook { url, bodies }
    }
}

/// A plain HTTP GET of `url` (no credentials), returning the whole response.
pub fn http_get(url: &str) -> String {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("an http:// link (moto)");
    let (host, path) = rest.split_once('/').unwrap();
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    write!(stream, "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

/// What a [`moto_proxy`] does with one request.
pub enum Intercept {
    /// Pass it to moto and its answer back.
    Pass,
    /// Pass it to moto and its answer's body back through this.
    Rewrite(Box<dyn FnOnce(&[u8]) -> Vec<u8> + Send>),
    /// Answer it without moto: (status line, body).
    Answer(&'static str, String),
    /// Pass it to moto, then answer this instead of moto's answer (a response lost on the way).
    Lose(&'static str, String),
}

/// A loopback proxy in front of moto; `intercept` sees each request's line and headers (names
/// lower-cased) and decides. Returns its URL.
pub fn moto_proxy(intercept: std::sync::Arc<dyn Fn(&str, &[(String, String)]) -> Intercept + Send + Sync>) -> String {
    use std::io::{BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let upstream = endpoint().trim_start_matches("http://").to_string();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { continue };
            let (intercept, upstream) = (intercept.clone(), upstream.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(client.try_clone().unwrap());
                while let Some((line, headers, body)) = super::read_request_with_headers(&mut reader) {
                    let decision = intercept(&line, &headers);
                    if let Intercept::Answer(status, text) = &decision {
                        let answer = format!("HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{text}", text.len());
                        if client.write_all(answer.as_bytes()).is_err() {
                            break;
                        }
                        continue;
                    }
                    let mut moto = std::net::TcpStream::connect(&upstream).unwrap();
                    let mut request = format!("{line}\r\n");
                    for (name, value) in headers.iter().filter(|(n, _)| n != "connection") {
                        request.push_str(&format!("{name}: {value}\r\n"));
                    }
                    request.push_str("connection: close\r\n\r\n");
                    moto.write_all(request.as_bytes()).unwrap();
                    moto.write_all(&body).unwrap();
                    let mut response = Vec::new();
                    moto.read_to_end(&mut response).unwrap();
                    if let Intercept::Lose(status, text) = &decision {
                        response = format!("HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{text}", text.len()).into_bytes();
                    }
                    if let Intercept::Rewrite(rewrite) = decision {
                        let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                        let body = rewrite(&response[split..]);
                        let head = String::from_utf8_lossy(&response[..split]);
                        let mut rebuilt: Vec<u8> =
                            head.lines().filter(|l| !l.is_empty() && !l.to_ascii_lowercase().starts_with("content-length:")).map(|l| format!("{l}\r\n")).collect::<String>().into_bytes();
                        rebuilt.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
                        rebuilt.extend_from_slice(&body);
                        response = rebuilt;
                    }
                    if client.write_all(&response).is_err() {
                        break;
                    }
                }
            });
        }
    });
    url
}

/// A published file of a month under `bucket/prefix`, found through the month's manifest (as
/// every reader finds it).
pub async fn read_published(bucket: &str, prefix: &str, month: &str, name: &str) -> Vec<u8> {
    let s3 = client();
    let get = |key: String| {
        let s3 = s3.clone();
        async move { s3.get_object().bucket(bucket).key(&key).send().await.unwrap_or_else(|e| panic!("{key}: {e}")).body.collect().await.unwrap().into_bytes().to_vec() }
    };
    let manifest: serde_json::Value = serde_json::from_slice(&get(format!("{prefix}/{month}/manifest.json")).await).unwrap();
    let record = manifest["files"].as_array().unwrap().iter().find(|f| f["name"] == name).unwrap_or_else(|| panic!("{name} is not in the manifest"));
    get(format!("{prefix}/{month}/{}", record["object"].as_str().unwrap_or(name))).await
}

/// Every object under `prefix/` with its bytes: what a reader could see of a month.
pub async fn objects_under(bucket: &str, prefix: &str) -> std::collections::BTreeMap<String, Vec<u8>> {
    let s3 = client();
    let mut out = std::collections::BTreeMap::new();
    let mut pages = s3.list_objects_v2().bucket(bucket).prefix(format!("{prefix}/")).into_paginator().send();
    while let Some(page) = pages.next().await {
        for object in page.unwrap().contents() {
            let key = object.key().unwrap().to_string();
            let bytes = s3.get_object().bucket(bucket).key(&key).send().await.unwrap().body.collect().await.unwrap().into_bytes().to_vec();
            out.insert(key, bytes);
        }
    }
    out
}
