//! GPU usage sources failing: a Prometheus that answers errors is retried a bounded number of
//! times and then named in a clear error; a refused query is not retried; a bad recorded file
//! is named by file and line.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use finops_ingest::gpu::{read_recorded, DcgmConfig, GpuUsageSource, PrometheusGpuUsage, RECORDED_HEADER};
use finops_ingest::prometheus::PrometheusSource;

/// A loopback HTTP server giving every request the same answer; counts the requests.
fn answering(status: &'static str, body: &'static str) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            seen.fetch_add(1, Ordering::SeqCst);
            let mut buffer = [0u8; 8192];
            let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
            let _ = stream.read(&mut buffer);
            let answer = format!("HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    (url, count)
}

/// One window at a time, so the requests counted are one query's attempts.
fn source(url: &str) -> PrometheusGpuUsage {
    let mut prometheus = PrometheusSource::new(url).unwrap();
    prometheus.backoff = Duration::from_millis(10);
    PrometheusGpuUsage { prometheus, config: DcgmConfig { parallel: 1, ..DcgmConfig::default() } }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_overloaded_prometheus_is_retried_four_times_then_named() {
    let (url, count) = answering("503 Service Unavailable", "{\"status\":\"error\",\"errorType\":\"unavailable\",\"error\":\"too many concurrent queries\"}");
    let err = source(&url).usage("2025-10", 10.0).await.unwrap_err().to_string();
    assert_eq!(count.load(Ordering::SeqCst), 4, "bounded retries: 4 attempts");
    assert!(err.contains(&url) && err.contains("no answer after 4 attempts") && err.contains("too many concurrent queries"), "{err}");

    // With windows in flight in parallel, each retries on its own: still bounded, by 4 per window.
    let (url, count) = answering("502 Bad Gateway", "<html>bad gateway</html>");
    let mut parallel = source(&url);
    parallel.config.parallel = 4;
    let err = parallel.usage("2025-10", 10.0).await.unwrap_err().to_string();
    let requests = count.load(Ordering::SeqCst);
    assert!((4..=16).contains(&requests), "{requests} requests");
    assert!(err.contains("no answer after 4 attempts"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_query_is_not_retried() {
    let (url, count) = answering("400 Bad Request", "{\"status\":\"error\",\"errorType\":\"bad_data\",\"error\":\"unknown function\"}");
    let err = source(&url).usage("2025-10", 10.0).await.unwrap_err().to_string();
    // One remote read, refused (so the read falls back to PromQL), then one query, refused:
    // neither is tried again.
    assert_eq!(count.load(Ordering::SeqCst), 2);
    assert!(err.contains("bad_data: unknown function"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_prometheus_fails_after_bounded_attempts() {
    let err = source("http://127.0.0.1:9").usage("2025-10", 10.0).await.unwrap_err().to_string();
    assert!(err.starts_with("http://127.0.0.1:9: Prometheus: no answer after 4 attempts"), "{err}");
}

#[test]
fn bad_recorded_files_are_named_by_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("2025-10.csv");
    let row = "2025-10-01T00:00:00Z,n1,p4d.24xlarge,on-demand,8,NVIDIA A100-SXM4-40GB,,ml,ml-0";
    let check = |body: String, threshold: f64| {
        std::fs::write(&path, body).unwrap();
        read_recorded(&path, "2025-10", threshold).unwrap_err().to_string()
    };
    let err = check(format!("{RECORDED_HEADER}\n{row},1.0,0.5,0,10\n{row},x,0.5,0,10\n"), 10.0);
    assert_eq!(err, format!("GPU usage {}: line 3: gpu_hours `x` is not a number", path.display()));
    let err = check(format!("{RECORDED_HEADER}\n{row},1.0,0.5,0,10\n"), 15.0);
    assert!(err.contains("line 2: idle hours were recorded at 10% utilisation, but the rules' [gpu] idle_threshold is 15%"), "{err}");
    let err = check(format!("{RECORDED_HEADER}\n{row},1.0,1.5,0,10\n"), 10.0);
    assert!(err.contains("line 2: busy_hours and idle_hours cannot exceed gpu_hours"), "{err}");
    let err = check("hour,node\n".to_string(), 10.0);
    assert!(err.contains("line 1: header is `hour,node`"), "{err}");
    let err = check(format!("{RECORDED_HEADER}\n2025-11-01T00:00:00Z,n1,p4d.24xlarge,on-demand,8,M,,ml,ml-0,1,0,0,10\n"), 10.0);
    assert!(err.contains("line 2: hour 2025-11-01T00:00:00Z is outside 2025-10"), "{err}");

    let ok = read_recorded(
        &{
            std::fs::write(&path, format!("{RECORDED_HEADER}\n{row},1.5,0.75,0,10\n{row},0.5,0.25,0,10\n")).unwrap();
            path.clone()
        },
        "2025-10",
        10.0,
    )
    .unwrap();
    assert_eq!(ok.usage.len(), 1);
    assert_eq!((ok.usage[0].gpu_hours, ok.usage[0].busy_hours), (2.0, 1.0));
    assert_eq!(ok.expected_hours, 8.0 * 744.0);
}

/// A recorded hour written with a UTC offset counts on its UTC day (the billing data's days are
/// UTC): 23:30 at -02:00 on the 20th is 01:30 on the 21st.
#[test]
fn a_recorded_hour_with_an_offset_lands_on_its_utc_day() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("2025-10.csv");
    let row = |hour: &str| format!("{hour},node-1,p4d.24xlarge,on-demand,8,NVIDIA A100-SXM4-40GB,,search-ranking,ranker-0,1,0.1,0.9,10\n");
    std::fs::write(&path, format!("{RECORDED_HEADER}\n{}{}", row("2025-10-20T23:30:00-02:00"), row("2025-10-20T12:00:00+09:00"))).unwrap();
    let report = read_recorded(&path, "2025-10", 10.0).unwrap();
    let mut days: Vec<(&str, f64)> = report.days.iter().map(|d| (d.date.as_str(), d.idle_hours)).collect();
    days.sort_by(|a, b| a.0.cmp(b.0));
    assert_eq!(days, vec![("2025-10-20", 0.9), ("2025-10-21", 0.9)], "{:?}", report.days);
}
