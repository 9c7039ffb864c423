//! Reads a CUR 2.0 month's split cost allocation data (docs/design.md §5b): the pods' split
//! records, summed per day, node, pod and resource. What they mean, and how they attribute the
//! nodes' cost, is `finops_allocate::scad`.

use finops_allocate::scad::{PodSplit, SplitCostData, SplitResource};
use polars::prelude::*;

use crate::scan::{bad_value, month_of, position, SourceFile, ROW};
use crate::{Error, Result};

/// The column that says a CUR 2.0 export has split cost allocation data, and names a split
/// record's node.
pub const PARENT: &str = "split_line_item_parent_resource_id";

/// The split amounts and the allocated usage, each zero where the export lacks it.
const NUMBERS: [&str; 3] = ["split_line_item_split_cost", "split_line_item_unused_cost", "split_line_item_split_usage"];

/// A pod's namespace from its resource ID, `arn:aws:eks:<region>:<account>:pod/<cluster>/<namespace>/<pod>/<uid>`
/// (what the `aws:eks:namespace` tag holds, without reading the tag map per record); empty for
/// an ECS task.
pub(crate) fn namespace_of(pod: &str) -> &str {
    let mut parts = pod.split('/');
    match parts.next() {
        Some(head) if head.ends_with(":pod") => parts.nth(1).unwrap_or(""),
        _ => "",
    }
}

/// Whether any of the month's files has split cost allocation data columns.
pub(crate) fn present(files: &[SourceFile]) -> bool {
    files.iter().any(|f| f.has(PARENT))
}

/// The month's split records: one query per file over the split columns, filtered to records
/// with a parent node and summed per (day, node, pod, usage type).
pub(crate) fn read(files: &[SourceFile], month: &str) -> Result<SplitCostData> {
    let mut pods = Vec::new();
    for file in files.iter().filter(|f| f.has(PARENT)) {
        let unreadable = |e: PolarsError| Error::Unreadable { file: file.staged.display.clone(), message: e.to_string() };
        let start = file.timestamp("line_item_usage_start_date")?;
        let period = file.timestamp("bill_billing_period_start_date")?;
        // Keys as they are (a date, dictionary text), cast once per group, not per record.
        let mut select = vec![start.value.dt().date().alias("date"), col(PARENT).alias("parent"), col("line_item_resource_id").alias("pod"), col("line_item_usage_type").alias("usage_type")];
        // Read and checked as every amount is (`SourceFile::money`): exact, a bad cell flagged.
        let mut bad = Vec::new();
        let mut flags = Vec::new();
        for name in NUMBERS {
            let checked = file.money(name)?;
            let flag = checked.bad.map_or(lit(false), |c| c.flag);
            select.push(checked.value.alias(name));
            bad.push(flag.clone().cast(DataType::UInt32).alias(format!("bad {name}")));
            flags.push(flag);
        }
        select.extend(bad);
        let rows = file.frame.clone().filter(col(PARENT).is_not_null().and(month_of(period.value).eq(lit(month)))).select(select);
        let mut aggs: Vec<Expr> = NUMBERS.iter().map(|n| col(*n).sum()).collect();
        aggs.extend(NUMBERS.iter().map(|n| col(format!("bad {n}")).sum()));
        let grouped = rows.group_by([col("date"), col("parent"), col("pod"), col("usage_type")]).agg(aggs);
        let key = |name: &str| col(name).cast(DataType::String).str().strip_chars(lit(NULL)).fill_null(lit("")).alias(name);
        let mut keys = vec![key("date"), key("parent"), key("pod"), key("usage_type")];
        keys.extend(NUMBERS.iter().map(|n| col(*n).cast(DataType::Float64)));
        keys.extend(NUMBERS.iter().map(|n| col(format!("bad {n}"))));
        let df = crate::frame::collect_streaming(grouped.select(keys).filter(col("parent").neq(lit("")))).map_err(unreadable)?;
        for (name, flag) in NUMBERS.into_iter().zip(flags) {
            let count: u64 = df.column(&format!("bad {name}")).and_then(|c| c.cast(&DataType::UInt64)).map_err(unreadable)?.u64().map_err(unreadable)?.sum().unwrap_or(0);
            if count > 0 {
                // Named like any bad cell: file, line or row, column, value (one narrow query).
                let first = file.frame.clone().filter(flag).select([col(ROW).first()]).collect().map_err(unreadable)?;
                let row = first.column(ROW).and_then(|c| c.cast(&DataType::UInt64)).map_err(unreadable)?.u64().map_err(unreadable)?.get(0).unwrap_or(0);
                return Err(Error::BadValue { file: file.staged.display.clone(), position: position(file, row), column: name.to_string(), value: bad_value(file, row, name) });
            }
        }
        let text = |name: &str| -> Result<Vec<String>> { Ok(df.column(name).and_then(|c| c.str().cloned()).map_err(unreadable)?.iter().map(|v| v.unwrap_or_default().to_string()).collect()) };
        let float = |name: &str| -> Result<Vec<f64>> { Ok(df.column(name).and_then(|c| c.f64().cloned()).map_err(unreadable)?.iter().map(|v| v.unwrap_or(0.0)).collect()) };
        let (dates, parents, ids, types) = (text("date")?, text("parent")?, text("pod")?, text("usage_type")?);
        let (cost, unused, usage) = (float(NUMBERS[0])?, float(NUMBERS[1])?, float(NUMBERS[2])?);
        for i in 0..df.height() {
            pods.push(PodSplit {
                date: dates[i].clone(),
                parent: parents[i].clone(),
                pod: ids[i].clone(),
                namespace: namespace_of(&ids[i]).to_string(),
                resource: SplitResource::of_usage_type(&types[i]),
                split_usage: usage[i],
                split_cost: cost[i],
                unused_cost: unused[i],
            });
        }
    }
    // One order whatever the files' and the query's: the attribution's order follows it.
    pods.sort_by(|a, b| (&a.date, &a.parent, &a.pod, a.resource).cmp(&(&b.date, &b.parent, &b.pod, b.resource)).then(a.split_cost.total_cmp(&b.split_cost)));
    Ok(SplitCostData { pods })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_pods_namespace_is_in_its_resource_id() {
        assert_eq!(super::namespace_of("arn:aws:eks:ap-northeast-2:222222222222:pod/prod-cluster/search-api/search-api-7d9f8-x2k4p/0b1c"), "search-api");
        assert_eq!(super::namespace_of("arn:aws:ecs:us-east-1:123456789012:task/cluster/0f1e"), "");
        assert_eq!(super::namespace_of(""), "");
    }
}
