//! The month's one pass (docs/design.md §8): every line item of the period checked and summed to the
//! allocation grain — day × the columns the rules and outputs read — with all five cost bases and
//! the line count, in one streaming query. Service totals, manifest totals and the engine's cost
//! lines are all read off the grain, never off another scan of the files; memory follows the
//! number of grain rows, not line items.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};

use finops_allocate::cost_frame::{col, tag_column};
use finops_allocate::engine::{CostLine, Dim, TagValues};
use finops_allocate::{CostAmounts, CostBasis, Money, ServiceTotal};
use polars::prelude::*;

use crate::frame::{collect_streaming, money_values};
use crate::scan::BAD;

/// Rows of the month whose cells failed a check, per grain row (zero on a clean month).
const BAD_ROWS: &str = "__bad_rows";

/// Per line: whether any of its cells failed a check.
pub(crate) const BAD_FLAG: &str = "__bad_flag";

/// The text columns of the grain, in key order.
pub const TEXT_KEYS: [&str; 10] =
    [col::BILLING_PERIOD, col::ACCOUNT, col::SERVICE, col::RESOURCE, col::USAGE_TYPE, col::OPERATION, col::REGION, col::CHARGE_CATEGORY, col::PRICING_CATEGORY, col::INSTANCE_TYPE];

/// The cost columns, in [`CostBasis::ALL`] order.
const MONEY: [&str; 5] = [col::BILLED, col::BILLED_NET, col::EFFECTIVE, col::EFFECTIVE_NET, col::LIST];

/// A month at the allocation grain: one cost line per (day, account, service, resource, usage
/// type, operation, region, charge and pricing category, instance type, team tags) at the rule
/// set's cost basis, with the number of line items behind it, and the exact totals of every
/// (billing period, account, service) at all five bases. Held as the engine's own cost lines with
/// every text value interned, so a month of hourly line items costs what its grain rows do.
#[derive(Clone, Default)]
pub struct Grain {
    lines: Vec<CostLine>,
    service_totals: Vec<ServiceTotal>,
    line_items: u64,
    /// Each line's amounts at all five bases, by [`CostLine::origin`] (the lines' own `amount`
    /// is the rule set's basis): the FOCUS allocated output's origin charges.
    bases: Vec<CostAmounts>,
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

/// Sums the month's pre-aggregated files (each at the grain, with line and bad-line counts) to
/// the month's grain at `basis`. Each file is read once, one file at a time (its own query uses
/// every core), and its rows are merged into the month's cost lines as they come: memory holds
/// one file's working set and the grain, never every file's rows at once nor a second copy of
/// the grain. A key can recur across files (CUR splits a month by size, not by day), so rows
/// merge on the whole key.
pub(crate) fn aggregate(files: Vec<LazyFrame>, tag_keys: &[String], basis: CostBasis, progress: &dyn crate::Progress) -> PolarsResult<Pass> {
    let mut month = GrainBuilder::new(basis);
    let mut rows_per_file = Vec::with_capacity(files.len());
    let mut bad_rows = 0;
    let count = files.len();
    for (i, file) in files.into_iter().enumerate() {
        progress.stage(&format!("summing line items: file {} of {count}", i + 1));
        let part = collect_streaming(file)?;
        let (lines, bad) = month.add_frame(&part, tag_keys)?;
        rows_per_file.push(lines);
        bad_rows += bad;
    }
    Ok(Pass { grain: month.finish(), bad_rows, rows_per_file })
}

fn grain_keys(tag_keys: &[String]) -> Vec<Expr> {
    let mut keys: Vec<Expr> = TEXT_KEYS.iter().map(|k| polars::prelude::col(*k)).collect();
    keys.push(polars::prelude::col(col::USAGE_DATE));
    keys.extend(tag_keys.iter().map(|k| polars::prelude::col(tag_column(k))));
    keys
}

/// The codes of the texts this month has read so far: grain rows repeat the same accounts,
/// services and tags many times over, and a local map answers without the process-wide table's
/// lock.
#[derive(Default)]
struct Interner(foldhash::HashSet<Dim>);

impl Interner {
    fn get(&mut self, value: &str) -> Dim {
        if let Some(v) = self.0.get(value) {
            return *v;
        }
        let v = Dim::new(value);
        self.0.insert(v);
        v
    }
}

/// The month's grain as it is built: cost lines, an index from a key's hash to the line that
/// holds it (collisions chained), and the service totals.
#[derive(Default)]
struct Merge {
    lines: Vec<CostLine>,
    index: foldhash::HashMap<u64, u32>,
    /// For each line, the next line whose key has the same hash (`u32::MAX`: none).
    chain: Vec<u32>,
    interner: Interner,
    /// The tag value lists met so far.
    tag_lists: foldhash::HashSet<TagValues>,
    days: HashMap<i32, Dim>,
    /// Per (billing period, account, service), by the values' codes: the key, its totals.
    services: foldhash::HashMap<(u32, u32, u32), ((Dim, Dim, Dim), CostAmounts, u64)>,
    hasher: foldhash::fast::FixedState,
    line_items: u64,
    bases: Vec<CostAmounts>,
}

/// The text values of a grain row, by code.
fn same_key(line: &CostLine, dims: &[Dim; 11], tags: TagValues) -> bool {
    let ours = [
        &line.billing_period,
        &line.usage_date,
        &line.account,
        &line.service,
        &line.resource,
        &line.usage_type,
        &line.operation,
        &line.region,
        &line.charge_category,
        &line.pricing_category,
        &line.instance_type,
    ];
    ours.iter().zip(dims).all(|(a, b)| *a == b) && line.tags == tags
}

/// One row at the allocation grain, as any engine delivers it: the polars pass, a Cost Explorer
/// response, an Athena or DuckDB result. Rows with the same key are summed.
pub struct GrainRow<'a> {
    /// The text keys in [`TEXT_KEYS`] order (`""` when absent).
    pub text: [&'a str; 10],
    /// The usage day as days since 1970-01-01 (UTC).
    pub day: i32,
    /// Values of the requested tag keys, in their order.
    pub tags: &'a [Option<&'a str>],
    pub costs: CostAmounts,
    pub line_items: u64,
}

/// Builds a month's [`Grain`] from rows, whatever engine aggregated them.
pub struct GrainBuilder {
    merge: Merge,
    basis: CostBasis,
    /// A row's tags interned (kept to reuse its allocation).
    tags: Vec<Option<Dim>>,
}

impl GrainBuilder {
    pub fn new(basis: CostBasis) -> GrainBuilder {
        GrainBuilder { merge: Merge::default(), basis, tags: Vec::new() }
    }

    pub fn add(&mut self, row: &GrainRow) {
        let text = row.text.map(|t| self.merge.interner.get(t));
        let mut tags = std::mem::take(&mut self.tags);
        tags.clear();
        tags.extend(row.tags.iter().map(|value| value.map(|v| self.merge.interner.get(v))));
        let values = self.merge.tag_values(&tags);
        self.merge.add_interned(text, row.day, values, &row.costs, row.line_items, self.basis);
        self.tags = tags;
    }

    /// Adds a row whose text keys ([`TEXT_KEYS`] order) and tags are already values.
    pub(crate) fn add_interned(&mut self, text: [Dim; 10], day: i32, tags: &[Option<Dim>], costs: &CostAmounts, line_items: u64) {
        let tags = self.merge.tag_values(tags);
        self.merge.add_interned(text, day, tags, costs, line_items, self.basis);
    }

    /// Adds one file's pre-aggregated rows (the polars pass); returns its line items and
    /// failed-check lines.
    fn add_frame(&mut self, part: &DataFrame, tag_keys: &[String]) -> PolarsResult<(u64, u64)> {
        let height = part.height();
        let text: Vec<&StringChunked> = TEXT_KEYS.iter().map(|k| part.column(k).and_then(|c| c.str())).collect::<PolarsResult<_>>()?;
        let mut text: Vec<_> = text.into_iter().map(|c| c.iter()).collect();
        let tag_columns: Vec<&StringChunked> = tag_keys.iter().map(|k| part.column(&tag_column(k)).and_then(|c| c.str())).collect::<PolarsResult<_>>()?;
        let mut tag_columns: Vec<_> = tag_columns.into_iter().map(|c| c.iter()).collect();
        let dates = part.column(col::USAGE_DATE)?.cast(&DataType::Int32)?;
        let mut dates = dates.i32()?.iter();
        let money: Vec<Vec<Money>> = MONEY.iter().map(|m| money_values(part, m)).collect::<PolarsResult<_>>()?;
        let counts = part.column(col::LINE_ITEMS)?.cast(&DataType::UInt64)?;
        let mut counts = counts.u64()?.iter();
        let bad = part.column(BAD_ROWS)?.cast(&DataType::UInt64)?.u64()?.sum().unwrap_or(0);

        let before = self.merge.line_items;
        let mut tags: Vec<Option<&str>> = Vec::with_capacity(tag_keys.len());
        self.merge.lines.reserve(height);
        self.merge.chain.reserve(height);
        for row in 0..height {
            let text: [&str; 10] = std::array::from_fn(|c| text[c].next().flatten().unwrap_or_default());
            tags.clear();
            tags.extend(tag_columns.iter_mut().map(|c| c.next().flatten()));
            let costs = CostAmounts { billed: money[0][row], billed_net: money[1][row], effective: money[2][row], effective_net: money[3][row], list: money[4][row] };
            self.add(&GrainRow { text, day: dates.next().flatten().unwrap_or(0), tags: &tags, costs, line_items: counts.next().flatten().unwrap_or(0) });
        }
        Ok((self.merge.line_items - before, bad))
    }

    pub fn finish(self) -> Grain {
        self.merge.finish()
    }
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date.
pub fn day_number(date: &str) -> Option<i32> {
    use chrono::Datelike;
    let d = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    Some(d.num_days_from_ce() - 719_163)
}

impl Merge {
    /// A row's tag values as the grain holds them, found here before the process-wide table.
    fn tag_values(&mut self, tags: &[Option<Dim>]) -> TagValues {
        if let Some(values) = self.tag_lists.get(tags) {
            return *values;
        }
        let values = TagValues::new(tags);
        self.tag_lists.insert(values);
        values
    }

    /// Adds one grain row (its text interned): summed into the line with its key, or a new line.
    fn add_interned(&mut self, text: [Dim; 10], day: i32, tags: TagValues, costs: &CostAmounts, count: u64, basis: CostBasis) {
        let [period, account, service, resource, usage_type, operation, region, charge, pricing, instance] = text;
        let day = self.days.entry(day).or_insert_with(|| Dim::new(&day_text(day))).clone();
        self.line_items += count;

        // By code; sorted by text when the grain is finished.
        let service_key = (period.code(), account.code(), service.code());
        let service_total = self.services.entry(service_key).or_insert_with(|| ((period.clone(), account.clone(), service.clone()), CostAmounts::default(), 0));
        service_total.1.add(costs);
        service_total.2 += count;

        let dims = [period, day, account, service, resource, usage_type, operation, region, charge, pricing, instance];
        let mut hasher = self.hasher.build_hasher();
        dims.iter().for_each(|d| d.code().hash(&mut hasher));
        tags.code().hash(&mut hasher);
        let hash = hasher.finish();
        let amount = costs.get(basis);

        let mut at = self.index.get(&hash).copied().unwrap_or(u32::MAX);
        while at != u32::MAX && !same_key(&self.lines[at as usize], &dims, tags) {
            at = self.chain[at as usize];
        }
        if at != u32::MAX {
            let line = &mut self.lines[at as usize];
            line.amount += amount;
            line.line_items += count as u32;
            self.bases[at as usize].add(costs);
            return;
        }
        let new = u32::try_from(self.lines.len()).ok().filter(|&n| n != CostLine::OFF_BILL).expect("fewer than 4 billion grain rows");
        self.bases.push(*costs);
        self.chain.push(self.index.insert(hash, new).unwrap_or(u32::MAX));
        let [billing_period, usage_date, account, service, resource, usage_type, operation, region, charge_category, pricing_category, instance_type] = dims;
        self.lines.push(CostLine {
            billing_period,
            usage_date,
            account,
            service,
            resource,
            usage_type,
            operation,
            region,
            charge_category,
            pricing_category,
            instance_type,
            tags,
            amount,
            line_items: count as u32,
            origin: new,
        });
    }

    fn finish(mut self) -> Grain {
        self.lines.shrink_to_fit();
        self.bases.shrink_to_fit();
        let mut services: Vec<_> = self.services.into_values().collect();
        services.sort_by(|a, b| a.0.cmp(&b.0));
        let service_totals = services
            .into_iter()
            .map(|((period, account, service), costs, line_items)| ServiceTotal { billing_period: period.to_string(), account: account.to_string(), service: service.to_string(), line_items, costs })
            .collect();
        Grain { lines: self.lines, service_totals, line_items: self.line_items, bases: self.bases }
    }
}

/// Days since 1970-01-01 as `YYYY-MM-DD`.
fn day_text(days: i32) -> String {
    chrono::NaiveDate::from_num_days_from_ce_opt(days + 719_163).map(|d| d.format("%Y-%m-%d").to_string()).unwrap_or_default()
}

impl Grain {
    /// Grain rows.
    pub fn height(&self) -> usize {
        self.lines.len()
    }

    /// Line items behind the grain.
    pub fn line_items(&self) -> u64 {
        self.line_items
    }

    /// The grain's cost lines (tags in the order the month was read with).
    pub fn lines(&self) -> &[CostLine] {
        &self.lines
    }

    /// Exact totals per (billing period, account, service), sorted by those keys: the
    /// conservation grain of docs/design.md §3, summed in exact decimals as the grain was built.
    pub fn service_totals(&self) -> &[ServiceTotal] {
        &self.service_totals
    }

    /// A line's amounts at all five bases, by its [`CostLine::origin`].
    pub fn bases(&self) -> &[CostAmounts] {
        &self.bases
    }

    /// Splits each node's instance lines over its pods by the month's split cost allocation
    /// data (`finops_allocate::scad`): new lines for the pods, bases for each, the instances
    /// keeping what the data does not cover. Totals per account and service do not change.
    pub fn split_to_pods(&mut self, data: &finops_allocate::scad::SplitCostData) -> finops_allocate::scad::SplitAttribution {
        finops_allocate::scad::attribute(&mut self.lines, &mut self.bases, data)
    }

    /// Hands the cost lines to the engine, leaving the grain without them: at the worst case
    /// there are as many as line items, and the month never holds two copies.
    pub fn take_cost_lines(&mut self) -> Vec<CostLine> {
        std::mem::take(&mut self.lines)
    }
}
