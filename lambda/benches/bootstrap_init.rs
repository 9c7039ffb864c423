//! Benchmark: the Lambda `bootstrap`'s init time — from process start to its first request for
//! work (`GET /2018-06-01/runtime/invocation/next`) on a Runtime API served on loopback. Cold
//! starts pay it on every new container. Median of several starts; asserts nothing.
//!
//! ```text
//! cargo bench --workspace --bench bootstrap_init
//! ```

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 15;

fn main() {
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_finops")).with_file_name("bootstrap");
    let rules = std::path::Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR for tests and benchmarks")).join("../rules/example.toml");
    let mut times = Vec::new();
    for _ in 0..RUNS {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let started = Instant::now();
        let mut child = Command::new(&binary)
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", &address)
            .env("AWS_LAMBDA_FUNCTION_NAME", "finops")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "3008")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/finops")
            .env("AWS_REGION", "us-east-1")
            .env("FINOPS_SOURCE", "s3://bench-cur/cur2/export")
            .env("FINOPS_OUTPUT", "s3://bench-reports/finops")
            .env("FINOPS_RULES", &rules)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start bootstrap");
        let (stream, _) = listener.accept().expect("the first connection");
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).unwrap();
        let elapsed = started.elapsed();
        assert!(line.contains("/runtime/invocation/next"), "{line}");
        times.push(elapsed);
        let _ = child.kill();
        let _ = child.wait();
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("bootstrap init (start to its first `next`), {RUNS} starts: median {:.1} ms, fastest {:.1} ms, slowest {:.1} ms", ms(times[RUNS / 2]), ms(times[0]), ms(times[RUNS - 1]));
}
