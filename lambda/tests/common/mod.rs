//! What these tests share: the repository's paths, and the loopback servers' request reader
//! (the Slack receiver, the Lambda Runtime API, the Prometheus stand-in).
#![allow(dead_code)] // each test binary uses a part of it

pub mod aws;

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::path::{Path, PathBuf};

/// The repository's root.
pub fn workspace() -> PathBuf {
    Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR for tests and benchmarks")).join("..")
}

/// The committed CUR 2.0 fixture months, oldest first.
pub fn fixture_months() -> Vec<String> {
    let mut months: Vec<String> =
        std::fs::read_dir(workspace().join("fixtures/cur2/data")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().trim_start_matches("BILLING_PERIOD=").to_string()).collect();
    months.sort();
    months
}

/// The config of the default run (the committed CUR 2.0 fixtures, the shipped rules, the
/// recorded GPU usage), publishing under `out`.
pub fn default_run(out: &Path) -> finops_lambda::config::Config {
    let mut config = finops_lambda::config::Config::default();
    config.source.location = workspace().join("fixtures/cur2").display().to_string();
    config.rules = Some(workspace().join("rules/example.toml"));
    config.gpu.set_usage(&workspace().join("fixtures/gpu").display().to_string());
    config.output.location = out.display().to_string();
    config
}

/// A bare HTTP/1.1 POST of a JSON body (moto's own API, which the SDK does not speak),
/// returning the whole response.
pub fn http_post(url: &str, body: &str) -> String {
    use std::io::Write;
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut stream = TcpStream::connect(host).unwrap();
    write!(stream, "POST /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// Reads one HTTP/1.1 request: its request line and its body (by Content-Length). `None` when
/// the client closed the connection.
pub fn read_request(reader: &mut BufReader<TcpStream>) -> Option<(String, Vec<u8>)> {
    read_request_with_headers(reader).map(|(line, _, body)| (line, body))
}

/// The same, with the headers (names lower-cased, in order).
pub fn read_request_with_headers(reader: &mut BufReader<TcpStream>) -> Option<(String, Vec<(String, String)>, Vec<u8>)> {
    let mut request = String::new();
    if reader.read_line(&mut request).unwrap_or(0) == 0 {
        return None;
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let length = headers.iter().find(|(n, _)| n == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0usize);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((request.trim_end().to_string(), headers, body))
}
