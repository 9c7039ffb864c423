//! The month's one pass (DESIGN.md §8): every line item of the period checked and summed to the
//! allocation grain — day × the columns the rules and outputs read — with all five cost bases and
//! the line count, in one streaming query. Service totals, manifest totals and the engine's cost
//! lines are all read off the grain, never off another scan of the files; memory follows the
//! number of grain rows, not line items.

use std::collections::HashMap;
use std::sync::Arc;

use finops_allocate::cost_frame::{col, tag_column};
use finops_allocate::engine::CostLine;
use finops_allocate::{CostAmounts, CostBasis, ServiceTotal};
use polars::prelude::*;

use crate::frame::{collect_streaming, money_values};
use crate::scan::BAD;

/// Rows of the month whose cells failed a check, per grain row (zero on a clean month).
const BAD_ROWS: &str = "__bad_rows";

/// Per line: whether any of its cells failed a check.
pub(crate) const BAD_FLAG: &str = "__bad_flag";

/// The text columns of the grain, in key order.
pub const TEXT_KEYS: [&str; 10] = [
    col::BILLING_PERIOD,
    col::ACCOUNT,
    col::SERVICE,
    col::RESOURCE,
    col::USAGE_TYPE,
    col::OPERATION,
    col::REGION,
    col::CHARGE_CATEGORY,
    col::PRICING_CATEGORY,
    col::INSTANCE_TYPE,
];

/// The cost columns, in [`CostBasis::ALL`] order.
const MONEY: [&str; 5] = [col::BILLED, col::BILLED_NET, col::EFFECTIVE, col::EFFECTIVE_NET, col::LIST];

/// A month at the allocation grain: one row per (day, account, service, resource, usage type,
/// operation, region, charge and pricing category, instance type, team tags), with the five cost
/// bases summed exactly and the number of line items behind the row.
#[derive(Clone)]
pub struct Grain {
    frame: DataFrame,
    tag_keys: Vec<String>,
}

/// What the pass found, before it is trusted.
pub(crate) struct Pass {
    pub grain: Grain,
    /// Line items whose cells failed a check (the caller names the first one).
    pub bad_rows: u64,
    /// Line items of the period in each file, in the order given.
    pub rows_per_file: Vec<u64>,
}

/// What a pre-aggregation computes per group of line items: the five cost bases, the line
/// count, and how many lines failed a check.
pub(crate) fn aggregations() -> Vec<Expr> {
    let mut aggs: Vec<Expr> = MONEY.iter().map(|m| polars::prelude::col(*m).sum()).collect();
    aggs.push(len().cast(DataType::UInt64).alias(col::LINE_ITEMS));
    aggs.push(polars::prelude::col(BAD_FLAG).sum().cast(DataType::UInt64).alias(BAD_ROWS));
    aggs
}

/// The columns [`aggregations`] makes, to carry through a selection.
pub(crate) fn aggregated_columns() -> Vec<Expr> {
    MONEY.iter().chain([&col::LINE_ITEMS, &BAD_ROWS]).map(|c| polars::prelude::col(*c)).collect()
}

/// A file's cost frame (a row per line item) pre-aggregated to the grain.
pub(crate) fn pre_aggregate(lines: LazyFrame, tag_keys: &[String]) -> LazyFrame {
    lines.with_column(polars::prelude::col(BAD).is_not_null().alias(BAD_FLAG)).group_by(grain_keys(tag_keys)).agg(aggregations())
}

/// Sums the month's pre-aggregated files (each at the grain, with line and bad-line counts)
/// to the month's grain. Each file is read once, one file at a time (its own query uses every
/// core): memory holds one file's working set and the grain, not every file's at once.
pub(crate) fn aggregate(files: Vec<LazyFrame>, tag_keys: &[String]) -> PolarsResult<Pass> {
    let mut parts = Vec::with_capacity(files.len());
    let mut rows_per_file = Vec::with_capacity(files.len());
    for file in files {
        let part = collect_streaming(file)?;
        rows_per_file.push(part.column(col::LINE_ITEMS)?.cast(&DataType::UInt64)?.u64()?.sum().unwrap_or(0));
        parts.push(part.lazy());
    }
    let all = concat(parts, UnionArgs { parallel: true, rechunk: false, ..Default::default() })?;
    let aggs: Vec<Expr> = aggregated_columns().into_iter().map(|c| c.sum()).collect();
    let frame = collect_streaming(all.group_by(grain_keys(tag_keys)).agg(aggs))?;
    let bad_rows = frame.column(BAD_ROWS)?.cast(&DataType::UInt64)?.u64()?.sum().unwrap_or(0);
    let frame = frame.drop(BAD_ROWS)?;
    Ok(Pass { grain: Grain { frame, tag_keys: tag_keys.to_vec() }, bad_rows, rows_per_file })
}

fn grain_keys(tag_keys: &[String]) -> Vec<Expr> {
    let mut keys: Vec<Expr> = TEXT_KEYS.iter().map(|k| polars::prelude::col(*k)).collect();
    keys.push(polars::prelude::col(col::USAGE_DATE));
    keys.extend(tag_keys.iter().map(|k| polars::prelude::col(tag_column(k))));
    keys
}

/// Shares one allocation per distinct value of a text column: grain rows repeat the same
/// accounts, services and tags many times over.
#[derive(Default)]
struct Interner(foldhash::HashMap<Box<str>, Arc<str>>);

impl Interner {
    fn get(&mut self, value: &str) -> Arc<str> {
        if let Some(v) = self.0.get(value) {
            return v.clone();
        }
        let v: Arc<str> = Arc::from(value);
        self.0.insert(value.into(), v.clone());
        v
    }
}

impl Grain {
    /// Grain rows.
    pub fn height(&self) -> usize {
        self.frame.height()
    }

    /// Line items behind the grain.
    pub fn line_items(&self) -> u64 {
        self.frame.column(col::LINE_ITEMS).ok().and_then(|c| c.cast(&DataType::UInt64).ok()?.u64().ok()?.sum()).unwrap_or(0)
    }

    /// Drops the grain's rows (keeping nothing but its tag keys) once the engine holds its cost
    /// lines and the service totals are taken: at the worst case, as many rows as line items.
    pub fn release(&mut self) {
        self.frame = DataFrame::empty();
    }

    /// The grain as a polars frame (for tests and ad hoc queries).
    pub fn frame(&self) -> &DataFrame {
        &self.frame
    }

    /// Exact totals per (billing period, account, service), sorted by those keys: the
    /// conservation grain of DESIGN.md §3, summed from the grain in exact i128 decimals.
    pub fn service_totals(&self) -> PolarsResult<Vec<ServiceTotal>> {
        let keys = [col::BILLING_PERIOD, col::ACCOUNT, col::SERVICE];
        let mut aggs: Vec<Expr> = MONEY.iter().map(|c| polars::prelude::col(*c).sum()).collect();
        aggs.push(polars::prelude::col(col::LINE_ITEMS).sum());
        let df = self.frame.clone().lazy().group_by(keys.map(polars::prelude::col)).agg(aggs).sort(keys, SortMultipleOptions::default()).collect()?;
        let text = |name: &str| -> PolarsResult<Vec<String>> { Ok(df.column(name)?.str()?.iter().map(|v| v.unwrap_or_default().to_string()).collect()) };
        let (periods, accounts, services) = (text(keys[0])?, text(keys[1])?, text(keys[2])?);
        let amounts: Vec<Vec<finops_allocate::Money>> = MONEY.iter().map(|c| money_values(&df, c)).collect::<PolarsResult<_>>()?;
        let counts: Vec<u64> = df.column(col::LINE_ITEMS)?.cast(&DataType::UInt64)?.u64()?.iter().map(|v| v.unwrap_or(0)).collect();
        Ok((0..df.height())
            .map(|i| ServiceTotal {
                billing_period: periods[i].clone(),
                account: accounts[i].clone(),
                service: services[i].clone(),
                line_items: counts[i],
                costs: CostAmounts {
                    billed: amounts[0][i],
                    billed_net: amounts[1][i],
                    effective: amounts[2][i],
                    effective_net: amounts[3][i],
                    list: amounts[4][i],
                },
            })
            .collect())
    }

    /// The engine's cost lines at one cost basis, with `tag_keys` in the order the rules read
    /// them (a key the month was not read with is absent on every line). Values are shared, not
    /// copied per row.
    pub fn cost_lines(&self, basis: CostBasis, tag_keys: &[String]) -> PolarsResult<Vec<CostLine>> {
        let df = &self.frame;
        let mut interner = Interner::default();
        let mut text_columns = Vec::with_capacity(TEXT_KEYS.len());
        for key in TEXT_KEYS {
            let values: Vec<Arc<str>> = df.column(key)?.str()?.iter().map(|v| interner.get(v.unwrap_or_default())).collect();
            text_columns.push(values);
        }
        let dates: Vec<Arc<str>> = {
            let column = df.column(col::USAGE_DATE)?.cast(&DataType::Int32)?;
            let mut by_day: HashMap<i32, Arc<str>> = HashMap::new();
            column
                .i32()?
                .iter()
                .map(|d| {
                    let d = d.unwrap_or(0);
                    by_day
                        .entry(d)
                        .or_insert_with(|| {
                            let date = chrono::NaiveDate::from_num_days_from_ce_opt(d + 719_163).map(|d| d.format("%Y-%m-%d").to_string()).unwrap_or_default();
                            Arc::from(date)
                        })
                        .clone()
                })
                .collect()
        };
        let mut tag_columns: Vec<Vec<Option<Arc<str>>>> = Vec::with_capacity(tag_keys.len());
        for key in tag_keys {
            let present = self.tag_keys.iter().any(|k| k.trim() == key.trim());
            let values = if present {
                df.column(&tag_column(key))?.str()?.iter().map(|v| v.map(|v| interner.get(v))).collect()
            } else {
                vec![None; df.height()]
            };
            tag_columns.push(values);
        }
        let amounts = money_values(df, basis.column())?;
        let counts: Vec<u64> = df.column(col::LINE_ITEMS)?.cast(&DataType::UInt64)?.u64()?.iter().map(|v| v.unwrap_or(0)).collect();
        let mut text: Vec<std::vec::IntoIter<Arc<str>>> = text_columns.into_iter().map(Vec::into_iter).collect();
        let mut next = |c: usize| text[c].next().expect("one value per row");
        Ok((0..df.height())
            .map(|i| CostLine {
                billing_period: next(0),
                account: next(1),
                service: next(2),
                resource: next(3),
                usage_type: next(4),
                operation: next(5),
                region: next(6),
                charge_category: next(7),
                pricing_category: next(8),
                instance_type: next(9),
                usage_date: dates[i].clone(),
                tags: tag_columns.iter().map(|t| t[i].clone()).collect(),
                amount: amounts[i],
                line_items: counts[i],
            })
            .collect())
    }
}
