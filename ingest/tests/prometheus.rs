//! Usage drivers from a real Prometheus (Debian's package, backfilled by scripts/test with
//! constant table sizes per team over Sep 25 – Nov 5, 2025): the period average comes back
//! exactly, and failures are clear and bounded.

use std::time::Duration;

use finops_ingest::prometheus::{period_bounds, PrometheusSource};

fn url() -> String {
    std::env::var("FINOPS_TEST_PROMETHEUS_URL").unwrap_or_else(|_| {
        panic!(
            "FINOPS_TEST_PROMETHEUS_URL is not set: these tests need a Prometheus with the test series. \
             Run `scripts/test`, which installs Debian's prometheus package, backfills the series with promtool \
             and starts it on 127.0.0.1"
        )
    })
}

fn by_key(samples: Vec<finops_allocate::DriverSample>) -> Vec<(String, f64)> {
    let mut v: Vec<(String, f64)> = samples.into_iter().map(|s| (s.key, s.value)).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn driver_is_the_period_average_per_team() {
    let prometheus = PrometheusSource::new(&url()).unwrap();
    let samples = prometheus.driver("sum by (team) (pg_table_size_bytes{db=\"orders\"})", "team", "2025-10").await.unwrap();
    assert_eq!(by_key(samples), vec![("orders".into(), 800e9), ("payments".into(), 300e9), ("search".into(), 100e9)]);
    // The query as written, with the period's length for $__range.
    let samples = prometheus.driver("avg_over_time(pg_table_size_bytes{db=\"orders\"}[$__range])", "team", "2025-10").await.unwrap();
    assert_eq!(by_key(samples), vec![("orders".into(), 800e9), ("payments".into(), 300e9), ("search".into(), 100e9)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn daily_driver_has_one_value_per_day_with_data() {
    let prometheus = PrometheusSource::new(&url()).unwrap();
    let samples = prometheus.daily_driver("sum by (team) (pg_table_size_bytes{db=\"orders\"})", "team", "2025-10").await.unwrap();
    assert_eq!(samples.len(), 31 * 3, "31 days of October, 3 teams");
    assert!(samples.iter().any(|s| s.date.as_deref() == Some("2025-10-01")) && samples.iter().any(|s| s.date.as_deref() == Some("2025-10-31")));
    assert!(samples.iter().filter(|s| s.key == "orders").all(|s| s.value == 800e9));
    // September has data from the 25th on only (the backfilled series start there).
    let september = prometheus.daily_driver("sum by (team) (pg_table_size_bytes{db=\"orders\"})", "team", "2025-09").await.unwrap();
    let mut days: Vec<&str> = september.iter().filter_map(|s| s.date.as_deref()).collect();
    days.dedup();
    assert_eq!(days.first(), Some(&"2025-09-25"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_period_without_data_and_a_missing_label_are_errors() {
    let prometheus = PrometheusSource::new(&url()).unwrap();
    let err = prometheus.driver("sum by (team) (pg_table_size_bytes)", "team", "2024-01").await.unwrap_err().to_string();
    assert!(err.contains("returned no series for 2024-01"), "{err}");
    let err = prometheus.daily_driver("sum by (team) (pg_table_size_bytes)", "team", "2024-01").await.unwrap_err().to_string();
    assert!(err.contains("returned no series for any day of 2024-01"), "{err}");
    let err = prometheus.driver("sum(pg_table_size_bytes)", "team", "2025-10").await.unwrap_err().to_string();
    assert!(err.contains("has no `team` label") && err.contains("sum by (team)"), "{err}");
    let err = prometheus.driver("sum by (team) (", "team", "2025-10").await.unwrap_err().to_string();
    assert!(err.contains("failed:") && err.contains("parse error"), "a bad query is reported at once: {err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_server_is_retried_a_bounded_number_of_times() {
    let mut prometheus = PrometheusSource::new("http://127.0.0.1:9").unwrap();
    prometheus.attempts = 3;
    prometheus.backoff = Duration::from_millis(20);
    let started = std::time::Instant::now();
    let err = prometheus.driver("up", "team", "2025-10").await.unwrap_err().to_string();
    assert!(err.contains("no answer after 3 attempts"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn periods_are_whole_utc_months() {
    assert_eq!(period_bounds("2025-10").unwrap(), (1_759_276_800, 1_761_955_200));
    assert_eq!(period_bounds("2025-12").unwrap().1, 1_767_225_600);
    assert!(period_bounds("2025-13").is_err());
}
