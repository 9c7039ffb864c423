//! The month's grain query as SQL (docs/design.md §8 Scale): the same pass as the polars one —
//! every line item of a CUR 2.0 month checked and summed to day × the grain's columns × the
//! rule set's tag keys, at all five cost bases with the CID amortized formula, with the line
//! count and the failed checks as counts — defined once and rendered for Trino (Amazon Athena)
//! and for DuckDB, so it can be run and checked here. Its result, wherever it ran, is read back
//! into the same [`Grain`] the local pass builds.

use std::io::Read;

use finops_allocate::cost_frame::CUR_LINE_ITEM_CATEGORIES;
use finops_allocate::{CostAmounts, CostBasis, Money};

use crate::grain::{day_number, Grain, GrainBuilder, GrainRow};
use crate::{Error, Result};

/// Which SQL engine a rendering is for.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// Trino, as Amazon Athena (engine version 3) runs it, over the CUR 2.0 / CID table.
    Trino,
    /// DuckDB, over the export's parquet files.
    DuckDb,
}

impl std::str::FromStr for Dialect {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "trino" | "athena" => Ok(Dialect::Trino),
            "duckdb" => Ok(Dialect::DuckDb),
            other => Err(format!("unknown SQL dialect `{other}`: use trino (Athena) or duckdb")),
        }
    }
}

/// What the query reads from.
#[derive(Clone, Debug)]
pub enum Table {
    /// A catalogued table (Athena): `database.table`, pruned to the month by its
    /// `billing_period` partition.
    Catalog { database: String, table: String },
    /// The month's parquet files themselves (DuckDB): exactly the files the export's manifest
    /// names, so a restated month is counted once; `tags` is how they store `resource_tags`.
    Files { uris: Vec<String>, tags: TagColumn },
}

/// How parquet files store CUR 2.0's `resource_tags`. DuckDB binds a lambda over a list but not
/// over a MAP, and casts neither into the other, so the query is written for the one the files
/// hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TagColumn {
    /// A parquet MAP, as AWS Data Exports writes it.
    Map,
    /// A list of key/value structs, as some tools (and polars) write it.
    Entries,
}

/// A parquet file's footer, read alone (not the file): its last 8 bytes give the metadata's
/// length.
async fn footer(store: &crate::store::BillingStore, key: &str) -> crate::Result<polars_parquet::parquet::metadata::FileMetadata> {
    let unreadable = |message: String| crate::Error::Unreadable { file: store.display(key), message };
    let mut tail = store.read_tail(key, 64 * 1024).await?;
    let length = tail.len();
    if length < 8 || &tail[length - 4..] != b"PAR1" {
        return Err(unreadable("not a parquet file (no PAR1 footer)".into()));
    }
    let metadata_length = u32::from_le_bytes(tail[length - 8..length - 4].try_into().expect("4 bytes")) as u64;
    if metadata_length + 8 > length as u64 {
        tail = store.read_tail(key, metadata_length + 8).await?;
    }
    // The footer alone reads as a file: its metadata is found from the end.
    let mut bytes = b"PAR1".to_vec();
    bytes.extend_from_slice(&tail);
    let mut reader = <polars::io::parquet::read::ParquetReader<_> as polars::prelude::SerReader<_>>::new(std::io::Cursor::new(bytes));
    Ok(reader.get_metadata().map_err(|e| unreadable(e.to_string()))?.as_ref().clone())
}

/// How a parquet file stores `resource_tags`, from its footer (polars reads a MAP and a list of
/// key/value structs alike; the file's arrow schema tells them apart).
pub(crate) async fn tag_column(store: &crate::store::BillingStore, key: &str) -> crate::Result<TagColumn> {
    let metadata = footer(store, key).await?;
    // By the parquet annotation itself: writers mark a map with the MAP logical type, the MAP
    // converted type, or both (AWS and polars write both, which polars' schema inference then
    // reads as a list of structs, DuckDB as a MAP).
    use polars_parquet::parquet::schema::types::{GroupConvertedType, GroupLogicalType, ParquetType};
    let is_map = metadata.schema().fields().iter().any(|f| match f {
        ParquetType::GroupType { field_info, logical_type, converted_type, .. } if field_info.name.as_str() == "resource_tags" => {
            matches!(logical_type, Some(GroupLogicalType::Map)) || matches!(converted_type, Some(GroupConvertedType::Map | GroupConvertedType::MapKeyValue))
        }
        _ => false,
    });
    Ok(if is_map { TagColumn::Map } else { TagColumn::Entries })
}

/// Whether a parquet file of the export has split cost allocation data, from its footer.
pub(crate) async fn has_split_cost(store: &crate::store::BillingStore, key: &str) -> crate::Result<bool> {
    Ok(footer(store, key).await?.schema().fields().iter().any(|f| f.name() == crate::scad::PARENT))
}

/// The month's grain query: a billing period, the tag keys the rules read, and where the line
/// items are.
#[derive(Clone, Debug)]
pub struct GrainQuery {
    pub month: String,
    pub tag_keys: Vec<String>,
    pub table: Table,
}

/// The result's columns, in order: the text keys of [`crate::grain::TEXT_KEYS`] with the usage
/// day after the billing period, then one `tag_<n>` per tag key, then the sums.
const KEYS: [&str; 11] = ["billing_period", "usage_date", "account", "service", "resource", "usage_type", "operation", "region", "charge_category", "pricing_category", "instance_type"];
const SUMS: [&str; 7] = ["billed", "billed_net", "effective", "effective_net", "list", "line_items", "bad_rows"];

/// The CUR 2.0 amount columns the query converts to exact decimals.
const AMOUNTS: [(&str, &str); 13] = [
    ("unblended", "line_item_unblended_cost"),
    ("net_unblended", "line_item_net_unblended_cost"),
    ("list", "pricing_public_on_demand_cost"),
    ("sp_effective", "savings_plan_savings_plan_effective_cost"),
    ("sp_net_effective", "savings_plan_net_savings_plan_effective_cost"),
    ("sp_total", "savings_plan_total_commitment_to_date"),
    ("sp_used", "savings_plan_used_commitment"),
    ("ri_effective", "reservation_effective_cost"),
    ("ri_net_effective", "reservation_net_effective_cost"),
    ("ri_unused_upfront", "reservation_unused_amortized_upfront_fee_for_billing_period"),
    ("ri_net_unused_upfront", "reservation_net_unused_amortized_upfront_fee_for_billing_period"),
    ("ri_unused_recurring", "reservation_unused_recurring_fee"),
    ("ri_net_unused_recurring", "reservation_net_unused_recurring_fee"),
];

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

impl Dialect {
    /// A double amount as DECIMAL(38, 12), NULL where the cell fails its check.
    fn money(self, column: &str) -> String {
        let exact = match self {
            // Trino converts a double through its shortest decimal text.
            Dialect::Trino => format!("CAST({column} AS DECIMAL(38, 12))"),
            // DuckDB casts as round(x * 10^12), exact only while that product is below 2^53:
            // larger amounts go through their shortest text, as the local pass reads them.
            Dialect::DuckDb => {
                format!("CASE WHEN abs({column}) < 1024 THEN CAST({column} AS DECIMAL(38, 12)) ELSE CAST(CAST({column} AS VARCHAR) AS DECIMAL(38, 12)) END")
            }
        };
        format!("CASE WHEN {} THEN NULL ELSE {exact} END", self.bad_amount(column))
    }

    /// NaN, infinite, or beyond DECIMAL(38, 12): a cell no bill can hold.
    fn bad_amount(self, column: &str) -> String {
        match self {
            Dialect::Trino => format!("(is_nan({column}) OR is_infinite({column}) OR abs({column}) >= 1e26)"),
            Dialect::DuckDb => format!("(isnan({column}) OR isinf({column}) OR abs({column}) >= 1e26)"),
        }
    }

    fn month_of(self, timestamp: &str) -> String {
        match self {
            Dialect::Trino => format!("date_format({timestamp}, '%Y-%m')"),
            Dialect::DuckDb => format!("strftime({timestamp}, '%Y-%m')"),
        }
    }

    /// The first tag value whose key is one of `spellings` exactly, else after trimming the key
    /// (CUR 2.0's `resource_tags` is a map in the catalogued table and in AWS's parquet files;
    /// DuckDB reads a MAP's entries through `map_entries`, a list of key/value structs as it is).
    fn tag(self, spellings: &[String], tags: TagColumn) -> String {
        let list = spellings.iter().map(|s| quote(s)).collect::<Vec<_>>().join(", ");
        let value = match self {
            Dialect::Trino => {
                format!("coalesce(element_at(map_values(map_filter(resource_tags, (k, v) -> k IN ({list}))), 1), element_at(map_values(map_filter(resource_tags, (k, v) -> trim(k) IN ({list}))), 1))")
            }
            Dialect::DuckDb => {
                let entries = match tags {
                    TagColumn::Map => "map_entries(resource_tags)",
                    TagColumn::Entries => "resource_tags",
                };
                format!("coalesce(list_filter({entries}, lambda t: t.key IN ({list}))[1].value, list_filter({entries}, lambda t: trim(t.key) IN ({list}))[1].value)")
            }
        };
        format!("NULLIF(trim({value}), '')")
    }

    fn name(self) -> &'static str {
        match self {
            Dialect::Trino => "Trino (Amazon Athena engine version 3)",
            Dialect::DuckDb => "DuckDB",
        }
    }
}

/// A text column, trimmed, empty where null.
fn text(column: &str) -> String {
    format!("coalesce(trim({column}), '')")
}

impl GrainQuery {
    /// The query's text for `dialect`.
    pub fn render(&self, dialect: Dialect) -> String {
        let mut sql = String::new();
        sql.push_str(&format!("-- finops grain query for billing period {}, {} rendering.\n", self.month, dialect.name()));
        sql.push_str("-- One row per day x account x service x resource x usage type x operation x region x charge and\n");
        sql.push_str("-- pricing category x instance type x team tags; amounts summed exactly at five cost bases.\n");
        let (from, filter) = match (&self.table, dialect) {
            (Table::Catalog { database, table }, _) => (format!("\"{}\".\"{}\"", database.replace('"', "\"\""), table.replace('"', "\"\"")), format!("billing_period = {}", quote(&self.month))),
            (Table::Files { uris: files, .. }, Dialect::DuckDb) => {
                let list = files.iter().map(|f| quote(f)).collect::<Vec<_>>().join(", ");
                (format!("read_parquet([{list}], union_by_name = true)"), "TRUE".to_string())
            }
            (Table::Files { uris: files, .. }, Dialect::Trino) => {
                // Trino has no file reader: name the files for the reader of the text.
                (format!("\"cur2\".\"data\" /* files: {} */", files.join(", ")), format!("billing_period = {}", quote(&self.month)))
            }
        };

        // Per line: the raw line item type, exact amounts, the checks.
        sql.push_str("WITH raw AS (\n  SELECT\n");
        let mut raw = vec![
            "    coalesce(line_item_line_item_type, '') AS type_raw".to_string(),
            format!("    {} AS line_item_type", text("line_item_line_item_type")),
            format!("    {} AS billing_period", dialect.month_of("bill_billing_period_start_date")),
            "    CAST(CAST(line_item_usage_start_date AS DATE) AS VARCHAR) AS usage_date".to_string(),
            format!("    {} AS account", text("line_item_usage_account_id")),
            format!("    {} AS service", text("line_item_product_code")),
            format!("    {} AS resource", text("line_item_resource_id")),
            format!("    {} AS usage_type", text("line_item_usage_type")),
            format!("    {} AS operation", text("line_item_operation")),
            format!("    {} AS region", text("product_region_code")),
            format!("    {} AS instance_type", text("product_instance_type")),
            format!("    {} AS reservation_arn", "coalesce(reservation_reservation_a_r_n, '')"),
        ];
        for (i, key) in self.tag_keys.iter().enumerate() {
            let tags = match &self.table {
                Table::Files { tags, .. } => *tags,
                Table::Catalog { .. } => TagColumn::Map,
            };
            raw.push(format!("    {} AS tag_{}", dialect.tag(&crate::cur::tag_spellings(key), tags), i + 1));
        }
        for (alias, column) in AMOUNTS {
            raw.push(format!("    {} AS {alias}", dialect.money(column)));
        }
        // A line fails its checks on an amount no bill can hold, a missing billing period or
        // account, or a Usage line without a cost (a broken export, not a free line).
        let mut checks: Vec<String> = AMOUNTS.iter().map(|(_, c)| format!("coalesce({}, FALSE)", dialect.bad_amount(c))).collect();
        checks.push("bill_billing_period_start_date IS NULL".into());
        checks.push("coalesce(trim(line_item_usage_account_id), '') = ''".into());
        checks.push("(line_item_unblended_cost IS NULL AND line_item_line_item_type = 'Usage')".into());
        raw.push(format!("    CASE WHEN {} THEN 1 ELSE 0 END AS bad", checks.join("\n      OR ")));
        sql.push_str(&raw.join(",\n"));
        sql.push_str(&format!("\n  FROM {from}\n  WHERE {filter}\n),\n"));

        // Per line: the grain's categories and the five bases, amortized as AWS's Cloud
        // Intelligence Dashboards compute it (docs/design.md §3).
        let amortized = |covered: &str, discounted: &str, upfront: &str, recurring: &str, otherwise: &str| {
            format!(
                "CASE type_raw\n      WHEN 'SavingsPlanCoveredUsage' THEN {covered}\n      WHEN 'SavingsPlanRecurringFee' THEN sp_total - sp_used\n      WHEN 'SavingsPlanNegation' THEN CAST(0 AS DECIMAL(38, 12))\n      WHEN 'SavingsPlanUpfrontFee' THEN CAST(0 AS DECIMAL(38, 12))\n      WHEN 'DiscountedUsage' THEN {discounted}\n      WHEN 'RIFee' THEN {upfront} + {recurring}\n      ELSE CASE WHEN type_raw = 'Fee' AND reservation_arn <> '' THEN CAST(0 AS DECIMAL(38, 12)) ELSE {otherwise} END\n    END"
            )
        };
        let charge = CUR_LINE_ITEM_CATEGORIES.iter().map(|(t, c)| format!("WHEN {} THEN '{}'", quote(t), c.as_str())).collect::<Vec<_>>().join(" ");
        let keys = self.key_columns();
        sql.push_str("line_items AS (\n  SELECT\n");
        let mut lines: Vec<String> = keys.iter().filter(|k| *k != "charge_category" && *k != "pricing_category").map(|k| format!("    {k}")).collect();
        lines.push(format!("    CASE line_item_type {charge} ELSE 'Usage' END AS charge_category"));
        lines.push(
            "    CASE\n      WHEN line_item_type LIKE 'SavingsPlan%' THEN 'SavingsPlan'\n      WHEN line_item_type IN ('DiscountedUsage', 'RIFee') THEN 'Reserved'\n      WHEN usage_type LIKE '%SpotUsage%' THEN 'Spot'\n      WHEN line_item_type = 'Usage' THEN 'OnDemand'\n      ELSE ''\n    END AS pricing_category"
                .into(),
        );
        lines.push("    unblended AS billed".into());
        lines.push("    net_unblended AS billed_net".into());
        lines.push(format!("    {} AS effective", amortized("sp_effective", "ri_effective", "ri_unused_upfront", "ri_unused_recurring", "unblended")));
        lines.push(format!("    {} AS effective_net", amortized("sp_net_effective", "ri_net_effective", "ri_net_unused_upfront", "ri_net_unused_recurring", "net_unblended")));
        lines.push("    list".into());
        lines.push("    bad".into());
        sql.push_str(&lines.join(",\n"));
        sql.push_str("\n  FROM raw\n)\n");

        sql.push_str("SELECT\n");
        let mut out: Vec<String> = keys.iter().map(|k| format!("  {k}")).collect();
        let [amounts @ .., line_items, bad_rows] = SUMS;
        for sum in amounts {
            out.push(format!("  sum({sum}) AS {sum}"));
        }
        out.push(format!("  count(*) AS {line_items}"));
        out.push(format!("  sum(bad) AS {bad_rows}"));
        sql.push_str(&out.join(",\n"));
        sql.push_str("\nFROM line_items\nGROUP BY ");
        sql.push_str(&(1..=keys.len()).map(|i| i.to_string()).collect::<Vec<_>>().join(", "));
        sql.push('\n');
        sql
    }

    /// The grain's key columns: the text keys and the day, then one `tag_<n>` per tag key.
    fn key_columns(&self) -> Vec<String> {
        KEYS.iter().map(|k| k.to_string()).chain((1..=self.tag_keys.len()).map(|i| format!("tag_{i}"))).collect()
    }

    /// The result's header, as the query names its columns.
    pub fn columns(&self) -> Vec<String> {
        let mut columns = self.key_columns();
        columns.extend(SUMS.iter().map(|s| s.to_string()));
        columns
    }
}

/// What reading a result found.
pub struct GrainResult {
    pub grain: Grain,
    /// Line items whose cells failed a check.
    pub bad_rows: u64,
}

/// Reads a grain query's result as CSV (Athena's result object, or DuckDB's `COPY ... TO`): a
/// header row, then one row per grain row; an empty unquoted field is NULL. `what` names the
/// result in errors.
pub fn read_result(reader: impl Read, query: &GrainQuery, basis: CostBasis, what: &str) -> Result<GrainResult> {
    let bad = |row: u64, message: String| Error::Unreadable { file: what.to_string(), message: format!("result row {row}: {message}") };
    let mut csv = csv::ReaderBuilder::new().has_headers(true).from_reader(reader);
    let expected = query.columns();
    let header: Vec<String> = csv.headers().map_err(|e| bad(0, e.to_string()))?.iter().map(|h| h.trim().to_ascii_lowercase()).collect();
    if header != expected {
        return Err(bad(0, format!("the columns are {header:?}, expected {expected:?}: the result is not of this grain query (rerun the query `finops sql` prints)")));
    }
    let tags = query.tag_keys.len();
    let mut builder = GrainBuilder::new(basis);
    let mut bad_rows = 0u64;
    let mut record = csv::StringRecord::new();
    let mut row = 0u64;
    // Rows come grouped by day more often than not: parse a day's text once.
    let mut last_day = (String::new(), 0i32);
    while csv.read_record(&mut record).map_err(|e| bad(row + 1, e.to_string()))? {
        row += 1;
        let field = |i: usize| record.get(i).unwrap_or_default();
        if field(1) != last_day.0 {
            let day = day_number(field(1)).ok_or_else(|| bad(row, format!("usage_date `{}` is not a YYYY-MM-DD date", field(1))))?;
            last_day = (field(1).to_string(), day);
        }
        let day = last_day.1;
        let money = |i: usize| -> Result<Money> {
            let text = field(i).trim();
            if text.is_empty() {
                return Ok(Money::ZERO);
            }
            text.parse().map_err(|e| bad(row, format!("`{}` = `{text}`: {e}", expected[i])))
        };
        let count = |i: usize| -> Result<u64> { field(i).trim().parse().map_err(|_| bad(row, format!("`{}` = `{}` is not a count", expected[i], field(i)))) };
        let at = KEYS.len() + tags;
        let costs = CostAmounts { billed: money(at)?, billed_net: money(at + 1)?, effective: money(at + 2)?, effective_net: money(at + 3)?, list: money(at + 4)? };
        let line_items = count(at + 5)?;
        bad_rows += count(at + 6)?;
        // Tags borrow the record's text: no copy of it per row.
        let values: Vec<Option<&str>> = (0..tags).map(|t| Some(field(KEYS.len() + t)).filter(|v| !v.is_empty())).collect();
        let text = [field(0), field(2), field(3), field(4), field(5), field(6), field(7), field(8), field(9), field(10)];
        builder.add(&GrainRow { text, day, tags: &values, costs, line_items });
    }
    Ok(GrainResult { grain: builder.finish(), bad_rows })
}

#[cfg(test)]
mod tests {
    use crate::store::BillingStore;

    #[tokio::test]
    async fn a_footer_says_whether_an_export_has_split_cost_allocation_data() {
        let fixtures = std::path::Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR for tests and benchmarks")).join("../fixtures");
        let with = BillingStore::Local { root: fixtures.join("scad") };
        assert!(super::has_split_cost(&with, "data/BILLING_PERIOD=2025-10/finops-cur2-scad-00001.snappy.parquet").await.unwrap());
        let without = BillingStore::Local { root: fixtures.join("cur2") };
        assert!(!super::has_split_cost(&without, "data/BILLING_PERIOD=2025-10/finops-cur2-00001.snappy.parquet").await.unwrap());
    }
}
