//! EKS split cost allocation data (SCAD), on the fixture month built on AWS's documented
//! examples (`gen-fixtures scad`, fixtures/src/scad.rs): an m5.xlarge and a p3.16xlarge node,
//! each with two namespaces and four pods, and the cluster's control plane.
//!
//! The expected figures are worked here from AWS's published method — unit cost from the
//! resource weights (CPU:memory 9:1; GPU 9 : CPU .9 : memory .1), allocated = the larger of
//! request and use, unallocated capacity shared by allocated usage — and the pods' requests, not
//! read from the product. The month's bill is read from the parquet file itself.

mod common;

use common::*;

use std::collections::BTreeMap;

use finops_ingest::Silent;
use polars::prelude::*;

/// Hours in the fixture month (2025-10).
const HOURS: f64 = 744.0;
/// Hours the m5 node ran before it joined the cluster (no split records).
const M5_OUTSIDE: f64 = 2.0;

/// One node's hour split AWS's way: per namespace, split plus unused cost. `pods` are
/// (namespace, requested, used) of vCPU, GB and GPUs.
fn aws_split(hourly: f64, capacity: [f64; 3], weights: [f64; 3], pods: &[(&str, [f64; 3], [f64; 3])]) -> BTreeMap<String, f64> {
    let unit = hourly / (0..3).map(|r| weights[r] * capacity[r]).sum::<f64>();
    let allocated = |p: &(&str, [f64; 3], [f64; 3]), r: usize| p.1[r].max(p.2[r]);
    let mut out: BTreeMap<String, f64> = BTreeMap::new();
    for r in 0..3 {
        let total: f64 = pods.iter().map(|p| allocated(p, r)).sum();
        if total == 0.0 {
            continue;
        }
        let unused = (capacity[r] - total).max(0.0);
        for p in pods {
            let mine = allocated(p, r);
            *out.entry(p.0.to_string()).or_default() += (mine + unused * mine / total) * weights[r] * unit;
        }
    }
    out
}

fn m5_hour() -> BTreeMap<String, f64> {
    aws_split(
        1.0,
        [4.0, 16.0, 0.0],
        [9.0, 1.0, 0.0],
        &[
            ("search-api", [1.0, 4.0, 0.0], [0.1, 3.0, 0.0]),
            ("orders-api", [1.0, 4.0, 0.0], [0.9, 6.0, 0.0]),
            ("search-api", [1.0, 2.0, 0.0], [0.5, 2.0, 0.0]),
            ("orders-api", [1.0, 2.0, 0.0], [0.5, 1.0, 0.0]),
        ],
    )
}

fn p3_hour() -> BTreeMap<String, f64> {
    aws_split(
        10.0,
        [64.0, 488.0, 8.0],
        [0.9, 0.1, 9.0],
        &[
            ("ml-training", [24.0, 200.0, 4.0], [30.0, 150.0, 4.0]),
            ("ml-training", [12.0, 100.0, 2.0], [10.0, 80.0, 2.0]),
            ("search-ranking", [8.0, 60.0, 1.0], [6.0, 40.0, 1.0]),
            ("search-ranking", [4.0, 32.0, 0.0], [2.0, 20.0, 0.0]),
        ],
    )
}

fn cents(dollars: f64) -> i64 {
    (dollars * 100.0).round() as i64
}

fn text_cents(text: &str) -> i64 {
    cents(text.parse::<f64>().unwrap())
}

/// `summary.csv`'s rows by team: column name -> cents.
fn summary(dir: &std::path::Path) -> BTreeMap<String, BTreeMap<String, String>> {
    let text = std::fs::read_to_string(dir.join("summary.csv")).unwrap();
    let mut lines = text.trim_start_matches('\u{feff}').lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    lines.map(|l| l.split(',').collect::<Vec<_>>()).map(|cells| (cells[0].to_string(), header.iter().zip(&cells).map(|(h, c)| (h.to_string(), c.to_string())).collect())).collect()
}

fn config(out: &std::path::Path, gpu: &str) -> finops_lambda::config::Config {
    let mut config = finops_lambda::config::Config::default();
    config.source.location = workspace().join("fixtures/scad").display().to_string();
    config.rules = Some(workspace().join("rules/scad-example.toml"));
    config.output.location = out.display().to_string();
    config.output.focus_allocated = false;
    config.gpu.set_usage(gpu);
    config
}

#[tokio::test(flavor = "multi_thread")]
async fn the_month_is_the_bill_once_and_each_node_reaches_its_pods_teams_by_namespace_and_label() {
    let out = tempfile::tempdir().unwrap();
    let outcome = finops_lambda::monthly::run_monthly(&config(out.path(), "none"), None, &Silent).await.unwrap();
    let dir = out.path().join(&outcome.month);
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();

    // The bill, from the file: the instance hours and the control plane. The pods' split
    // records cost nothing on their own lines; their split columns repeat the nodes' cost.
    let file = std::fs::read_dir(workspace().join("fixtures/scad/data/BILLING_PERIOD=2025-10")).unwrap().next().unwrap().unwrap().path();
    let items = ParquetReader::new(std::fs::File::open(file).unwrap()).finish().unwrap();
    let sum = |name: &str| -> f64 { items.column(name).unwrap().f64().unwrap().iter().map(|v| v.unwrap_or(0.0)).sum() };
    let bill = sum("line_item_unblended_cost");
    assert_eq!(cents(bill), cents(HOURS * (1.0 + 10.0 + 0.10)), "the fixture's bill is its instance hours and control plane");
    let split_columns = sum("split_line_item_split_cost") + sum("split_line_item_unused_cost");
    assert_eq!(cents(split_columns), cents((HOURS - M5_OUTSIDE) * 1.0 + HOURS * 10.0), "the split columns repeat the nodes' cost: counting them too would count the nodes twice");

    // Every basis of the month is the bill, to the cent: nothing counted twice.
    for basis in ["unblended", "net_unblended", "amortized", "net_amortized", "list"] {
        assert_eq!(manifest["totals"][basis]["exact"].as_str().unwrap(), "8258.4", "{basis} total, exactly");
    }
    let rows = summary(&dir);
    let allocated: i64 = rows.values().map(|r| text_cents(&r["total"])).sum();
    assert_eq!(allocated, cents(bill), "the teams' totals add up to the bill");

    // The nodes' cost reached the pods' teams as AWS split it: search and ml namespaces by
    // rules on `aws_eks_namespace`, the orders pods by their `team` label.
    let (m5, p3) = (m5_hour(), p3_hour());
    let in_cluster = HOURS - M5_OUTSIDE;
    let expected = [
        ("search", m5["search-api"] * in_cluster + p3["search-ranking"] * HOURS),
        ("orders", m5["orders-api"] * in_cluster),
        ("ai", p3["ml-training"] * HOURS),
        ("platform", M5_OUTSIDE * 1.0 + HOURS * 0.10),
    ];
    for (team, dollars) in expected {
        let got = text_cents(&rows[team]["total"]);
        assert!((got - cents(dollars)).abs() <= 1, "{team}: {got} cents, AWS's split gives {dollars:.4}");
    }
    assert_eq!(text_cents(&rows["unallocated"]["total"]), 0);

    // The run says what the data did, and offers the GPU source it could use.
    let warnings: Vec<String> = manifest["warnings"].as_array().unwrap().iter().map(|w| w.as_str().unwrap().to_string()).collect();
    let said = |what: &str| warnings.iter().any(|w| w.contains(what));
    assert!(said("split cost allocation data: 8182.00 of node cost went to 8 pods on 2 nodes"), "{warnings:#?}");
    assert!(said("2.00 stayed on the instances"), "{warnings:#?}");
    assert!(said("set [gpu] source = \"scad\""), "{warnings:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn scad_charges_the_gpu_node_by_aws_weights_and_the_report_shows_the_difference_from_dcgm() {
    let dcgm = workspace().join("fixtures/scad/gpu").display().to_string();
    let (scad_out, dcgm_out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut scad_config = config(scad_out.path(), "scad");
    // DCGM usage for the comparison.
    scad_config.gpu.recorded = Some(dcgm.clone().into());
    let month = finops_lambda::monthly::run_monthly(&scad_config, None, &Silent).await.unwrap().month;
    finops_lambda::monthly::run_monthly(&config(dcgm_out.path(), &dcgm), None, &Silent).await.unwrap();
    let (scad_dir, dcgm_dir) = (scad_out.path().join(&month), dcgm_out.path().join(&month));

    // By AWS's weights: each namespace's split plus unused cost of the p3 node, CPU-only pod
    // included (it carries CPU and memory of a GPU node).
    let p3 = p3_hour();
    let scad = summary(&scad_dir);
    assert!((text_cents(&scad["ai"]["gpu"]) - cents(p3["ml-training"] * HOURS)).abs() <= 1, "ai: {}", scad["ai"]["gpu"]);
    assert!((text_cents(&scad["search"]["gpu"]) - cents(p3["search-ranking"] * HOURS)).abs() <= 1, "search: {}", scad["search"]["gpu"]);
    assert_eq!(text_cents(&scad["ai"]["gpu"]) + text_cents(&scad["search"]["gpu"]), cents(HOURS * 10.0), "the node's cost, all of it");
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(scad_dir.join("manifest.json")).unwrap()).unwrap();
    assert!(manifest["gpu"]["source"].as_str().unwrap().contains("request-based"), "the run says the split is request-based");
    assert_eq!(scad["ai"]["gpu_utilization_pct"], "", "requested GPU-hours have no utilisation");
    assert_eq!(manifest["gpu"]["basis"], "requested");

    // DCGM's split of the same node, by hand: `corrected` weighs the trainers' 4 GPUs at 30%
    // utilisation by 0.6 and 2 at 15% by 0.4, the ranker's GPU at 92% by 1; the idle pool (the
    // rest of the 8 GPUs) is shared by those weights.
    let (ai_weight, search_weight) = (4.0 * 0.6 + 2.0 * 0.4, 1.0);
    let dcgm_ai = HOURS * 10.0 * ai_weight / (ai_weight + search_weight);
    let dcgm_rows = summary(&dcgm_dir);
    assert!((text_cents(&dcgm_rows["ai"]["gpu"]) - cents(dcgm_ai)).abs() <= 1, "DCGM ai: {}", dcgm_rows["ai"]["gpu"]);

    // The difference table, in both runs the same: DCGM's column is the DCGM run's charge,
    // SCAD's the SCAD run's, each adds up to the node's cost, and the differences to zero.
    for dir in [&scad_dir, &dcgm_dir] {
        let text = std::fs::read_to_string(dir.join("gpu-scad-comparison.csv")).unwrap();
        let rows: Vec<Vec<String>> = text.trim_start_matches('\u{feff}').lines().skip(1).map(|l| l.split(',').map(str::to_string).collect()).collect();
        assert_eq!(rows.len(), 2, "{text}");
        for row in &rows {
            let team = row[1].as_str();
            assert_eq!(row[0], "p3.16xlarge OnDemand");
            assert_eq!(text_cents(&row[2]), text_cents(&dcgm_rows[team]["gpu"]), "{team}: DCGM column");
            assert_eq!(text_cents(&row[3]), text_cents(&scad[team]["gpu"]), "{team}: SCAD column");
            assert_eq!(text_cents(&row[4]), text_cents(&row[3]) - text_cents(&row[2]), "{team}: difference");
        }
        assert_eq!(rows.iter().map(|r| text_cents(&r[4])).sum::<i64>(), 0, "what one team gains another loses");
        let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
        assert_eq!(manifest["gpu"]["split_comparison"].as_array().unwrap().len(), 2);
    }
    // The report shows it.
    let pdf = std::process::Command::new("pdftotext").args(["-layout"]).arg(scad_dir.join("report.pdf")).arg("-").output().expect("pdftotext (poppler-utils) is needed: apt-get install poppler-utils");
    let text = String::from_utf8_lossy(&pdf.stdout);
    assert!(text.contains("measured (DCGM)") && text.contains("requested (SCAD)") && text.contains("split cost allocation data"), "the report's comparison table:\n{text}");
}
