//! AWS Cost and Usage Reports into the cost frame: CUR 2.0 (Data Exports, parquet, `resource_tags`
//! map) and legacy CUR (CSV, CSV.gz or parquet; `lineItem/UnblendedCost` or Athena-style
//! `line_item_unblended_cost` names; one `resourceTags/user:<key>` column per tag key).
//! Both are read through the same snake-case names, so one mapping serves them.

use std::collections::BTreeSet;

use finops_allocate::cost_frame::{col, ChargeCategory, PricingCategory, CUR_LINE_ITEM_CATEGORIES};
use polars::prelude::*;

use crate::frame::money_dtype;
use crate::scan::{any_bad, first_bad, month_of, required_cell, Checked, SourceFile, BAD, ROW};
use crate::{Error, Result};

/// Columns without which a CUR file cannot be allocated.
const REQUIRED: [&str; 5] = ["bill_billing_period_start_date", "line_item_usage_account_id", "line_item_line_item_type", "line_item_product_code", "line_item_unblended_cost"];

/// The Athena-style name AWS gives a legacy CUR CSV header: `lineItem/UnblendedCost` ->
/// `line_item_unblended_cost`, `reservation/ReservationARN` -> `reservation_reservation_a_r_n`.
pub(crate) fn athena_name(header: &str) -> String {
    let mut out = String::with_capacity(header.len() + 8);
    for c in header.trim().chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
        } else {
            out.push('_');
        }
    }
    let mut collapsed = String::with_capacity(out.len());
    for c in out.chars() {
        if !(c == '_' && collapsed.ends_with('_')) {
            collapsed.push(c);
        }
    }
    collapsed.trim_matches('_').to_string()
}

/// Renames legacy CSV headers to their snake-case names. Tag columns keep their spelling: their
/// keys are case-sensitive, which the snake-case form would lose.
pub(crate) fn normalise_legacy_headers(file: &mut SourceFile) {
    let names = file.names();
    let (old, new): (Vec<String>, Vec<String>) =
        names.iter().filter(|n| n.contains('/') && !n.starts_with("resourceTags/")).map(|n| (n.clone(), athena_name(n))).filter(|(_, new)| !names.contains(new)).unzip();
    if old.is_empty() {
        return;
    }
    file.frame = file.frame.clone().rename(old.clone(), new.clone(), true);
    let mut schema = (*file.schema).clone();
    for (o, n) in old.iter().zip(&new) {
        let _ = schema.rename(o, n.into());
    }
    file.schema = std::sync::Arc::new(schema);
}

/// Raw columns the grain's dimensions are derived from (those present in a file are its
/// pre-aggregation keys).
const DIMENSION_SOURCES: [&str; 10] = [
    "bill_billing_period_start_date",
    "line_item_usage_account_id",
    "line_item_product_code",
    "line_item_line_item_type",
    "line_item_usage_type",
    "line_item_operation",
    "line_item_resource_id",
    "product_region_code",
    "product_region",
    "product_instance_type",
];

/// One CUR file as the cost frame (a row per line item, with `__row` and `__bad` for the
/// check pass), and as its pre-aggregated grain: line items summed per distinct raw key and
/// day first, and only then normalised (trimmed, categorised, tags looked up), so the per-line
/// work is the amounts and the checks, not text. Both give the same dimensions and totals.
pub(crate) fn frames(file: &SourceFile, tag_keys: &[String]) -> Result<(LazyFrame, LazyFrame)> {
    for column in REQUIRED {
        file.require(column, "CUR (Cost and Usage Report)")?;
    }
    let line_item_type = file.text("line_item_line_item_type");
    let is = |t: &str| line_item_type.clone().eq(lit(t));
    // Per line (the amortized CASE) the raw cell is compared: trimming every line's text costs
    // more than the rest of the line's work, and CUR writes these values without padding.
    let raw_text = |name: &str| match file.schema.get(name) {
        Some(DataType::String) => polars::prelude::col(name).fill_null(lit("")),
        _ => file.text(name),
    };
    let raw_type = raw_text("line_item_line_item_type");
    let is_raw = |t: &str| raw_type.clone().eq(lit(t));
    let usage_type = file.text("line_item_usage_type");

    let billing_start = file.timestamp("bill_billing_period_start_date")?;
    let usage_start = file.timestamp("line_item_usage_start_date")?;
    let usage_end = file.timestamp("line_item_usage_end_date")?;

    let unblended = file.money("line_item_unblended_cost")?;
    let net_unblended = optional_money(file, "line_item_net_unblended_cost", &unblended)?;
    let list = optional_money(file, "pricing_public_on_demand_cost", &unblended)?;
    let sp_effective = file.money("savings_plan_savings_plan_effective_cost")?;
    let sp_total = file.money("savings_plan_total_commitment_to_date")?;
    let sp_used = file.money("savings_plan_used_commitment")?;
    let ri_effective = file.money("reservation_effective_cost")?;
    let ri_unused_upfront = file.money("reservation_unused_amortized_upfront_fee_for_billing_period")?;
    let ri_unused_recurring = file.money("reservation_unused_recurring_fee")?;
    let sp_net_effective = optional_money(file, "savings_plan_net_savings_plan_effective_cost", &sp_effective)?;
    let ri_net_effective = optional_money(file, "reservation_net_effective_cost", &ri_effective)?;
    let ri_net_unused_upfront = optional_money(file, "reservation_net_unused_amortized_upfront_fee_for_billing_period", &ri_unused_upfront)?;
    let ri_net_unused_recurring = optional_money(file, "reservation_net_unused_recurring_fee", &ri_unused_recurring)?;
    let reservation_arn = raw_text("reservation_reservation_a_r_n");

    // Amortized cost exactly as AWS's Cloud Intelligence Dashboards compute it (docs/design.md §3).
    let amortized = |covered: &Expr, discounted: &Expr, unused_upfront: &Expr, unused_recurring: &Expr, otherwise: &Expr| {
        when(is_raw("SavingsPlanCoveredUsage"))
            .then(covered.clone())
            .when(is_raw("SavingsPlanRecurringFee"))
            .then(sp_total.value.clone() - sp_used.value.clone())
            .when(is_raw("SavingsPlanNegation").or(is_raw("SavingsPlanUpfrontFee")))
            .then(lit(0).cast(money_dtype()))
            .when(is_raw("DiscountedUsage"))
            .then(discounted.clone())
            .when(is_raw("RIFee"))
            .then(unused_upfront.clone() + unused_recurring.clone())
            .when(is_raw("Fee").and(reservation_arn.clone().neq(lit(""))))
            .then(lit(0).cast(money_dtype()))
            .otherwise(otherwise.clone())
            .cast(money_dtype())
    };
    let effective = amortized(&sp_effective.value, &ri_effective.value, &ri_unused_upfront.value, &ri_unused_recurring.value, &unblended.value);
    let effective_net = amortized(&sp_net_effective.value, &ri_net_effective.value, &ri_net_unused_upfront.value, &ri_net_unused_recurring.value, &net_unblended.value);

    let charge_category = CUR_LINE_ITEM_CATEGORIES.iter().rev().fold(lit(ChargeCategory::Usage.as_str()), |otherwise, (t, category)| when(is(t)).then(lit(category.as_str())).otherwise(otherwise));

    let pricing_category = when(line_item_type.clone().str().starts_with(lit("SavingsPlan")))
        .then(lit(PricingCategory::SavingsPlan.as_str()))
        .when(is("DiscountedUsage").or(is("RIFee")))
        .then(lit(PricingCategory::Reserved.as_str()))
        .when(usage_type.clone().str().contains_literal(lit("SpotUsage")))
        .then(lit(PricingCategory::Spot.as_str()))
        .when(is("Usage"))
        .then(lit(PricingCategory::OnDemand.as_str()))
        .otherwise(lit(""));

    let region = match (file.text_or_null("product_region_code"), file.text_or_null("product_region")) {
        (Some(code), Some(name)) => when(code.clone().neq(lit(""))).then(code).otherwise(name),
        (Some(one), None) | (None, Some(one)) => one,
        (None, None) => lit(""),
    };
    let usage_quantity = if file.has("line_item_usage_amount") { polars::prelude::col("line_item_usage_amount").cast(DataType::Float64).fill_null(lit(0.0)) } else { lit(0.0) };

    // The grain's dimensions, as expressions over the raw columns (per line, or per distinct
    // raw key after pre-aggregation).
    let mut dimensions = vec![
        month_of(billing_start.value.clone()).alias(col::BILLING_PERIOD),
        file.text("line_item_usage_account_id").alias(col::ACCOUNT),
        file.text("line_item_product_code").alias(col::SERVICE),
        charge_category.alias(col::CHARGE_CATEGORY),
        usage_type.alias(col::USAGE_TYPE),
        file.text("line_item_operation").alias(col::OPERATION),
        file.text("line_item_resource_id").alias(col::RESOURCE),
        region.alias(col::REGION),
        pricing_category.alias(col::PRICING_CATEGORY),
        file.text("product_instance_type").alias(col::INSTANCE_TYPE),
    ];
    let mut tag_sources: Vec<String> = Vec::new();
    for key in tag_keys {
        let (value, sources) = tag_value(file, key);
        dimensions.push(value.alias(finops_allocate::cost_frame::tag_column(key)));
        tag_sources.extend(sources.into_iter().filter(|s| !tag_sources.contains(s)).collect::<Vec<_>>());
    }
    let money = vec![
        unblended.value.clone().alias(col::BILLED),
        net_unblended.value.clone().alias(col::BILLED_NET),
        effective.alias(col::EFFECTIVE),
        effective_net.alias(col::EFFECTIVE_NET),
        list.value.clone().alias(col::LIST),
    ];
    let usage_date = usage_start.value.clone().dt().date().alias(col::USAGE_DATE);
    let mut columns = dimensions.clone();
    columns.extend([
        usage_start.value.clone().alias(col::CHARGE_PERIOD_START),
        usage_end.value.clone().alias(col::CHARGE_PERIOD_END),
        usage_date.clone(),
        lit("AWS").alias(col::PROVIDER),
        file.text("bill_payer_account_id").alias(col::BILLING_ACCOUNT),
        line_item_type.clone().alias(col::LINE_ITEM_TYPE),
        usage_quantity.alias(col::USAGE_QUANTITY),
        file.text("pricing_unit").alias(col::USAGE_UNIT),
    ]);
    columns.extend(money.iter().cloned());
    // A Usage line without a cost is a broken export, not a free line.
    let missing_cost = file
        .has("line_item_unblended_cost")
        .then(|| crate::scan::Check { column: "line_item_unblended_cost".into(), flag: polars::prelude::col("line_item_unblended_cost").is_null().and(is_raw("Usage")) });
    let checks = [
        missing_cost,
        required_cell(file, "bill_billing_period_start_date"),
        required_cell(file, "line_item_usage_account_id"),
        billing_start.bad,
        usage_start.bad,
        usage_end.bad,
        unblended.bad,
        net_unblended.bad,
        list.bad,
        sp_effective.bad,
        sp_total.bad,
        sp_used.bad,
        ri_effective.bad,
        ri_unused_upfront.bad,
        ri_unused_recurring.bad,
        sp_net_effective.bad,
        ri_net_effective.bad,
        ri_net_unused_upfront.bad,
        ri_net_unused_recurring.bad,
    ];
    let bad = any_bad(checks.clone()).alias(crate::grain::BAD_FLAG);
    columns.push(first_bad(checks).alias(BAD));
    columns.push(polars::prelude::col(ROW));
    let lines = file.frame.clone().select(columns);

    let raw: Vec<Expr> = DIMENSION_SOURCES.iter().map(|s| s.to_string()).chain(tag_sources).filter(|name| file.has(name)).map(|name| polars::prelude::col(name.as_str())).collect();
    let mut per_line = raw.clone();
    per_line.push(usage_date);
    per_line.extend(money);
    per_line.push(bad);
    let mut keys = raw;
    keys.push(polars::prelude::col(col::USAGE_DATE));
    let mut normalised = dimensions;
    normalised.push(polars::prelude::col(col::USAGE_DATE));
    normalised.extend(crate::grain::aggregated_columns());
    let grain = file.frame.clone().select(per_line).group_by(keys).agg(crate::grain::aggregations()).select(normalised);
    Ok((lines, grain))
}

/// A net column where the export has it, else the gross figure it falls back to (accounts
/// without private discounts get no net columns).
fn optional_money(file: &SourceFile, name: &str, fallback: &Checked) -> Result<Checked> {
    if file.has(name) {
        file.money(name)
    } else {
        Ok(Checked { value: fallback.value.clone(), bad: None })
    }
}

/// The names a tag key goes by in CUR exports' tag maps: as written, CUR 2.0's `user_<key>`,
/// and the legacy `user:<key>` and `resourceTags/user:<key>` (the key trimmed).
pub(crate) fn tag_spellings(key: &str) -> [String; 4] {
    let key = key.trim();
    [key.to_string(), format!("user_{key}"), format!("user:{key}"), format!("resourceTags/user:{key}")]
}

/// The value of one tag key: from the CUR 2.0 `resource_tags` map, from a flattened
/// `resource_tags_user_<key>` column, or from a legacy `resourceTags/user:<key>` column. Keys are
/// compared trimmed; an exact key wins over one that only matches after trimming.
fn tag_value(file: &SourceFile, key: &str) -> (Expr, Vec<String>) {
    let key = key.trim();
    let spellings = tag_spellings(key);
    let mut candidates: Vec<Expr> = Vec::new();
    let mut sources: Vec<String> = Vec::new();
    if let Some(DataType::List(inner)) = file.schema.get("resource_tags") {
        if matches!(inner.as_ref(), DataType::Struct(_)) {
            let map_key = || element().struct_().field_by_name("key");
            let map_value = || element().struct_().field_by_name("value");
            let matches = |k: Expr| spellings.iter().map(|s| k.clone().eq(lit(s.as_str()))).reduce(|a, b| a.or(b)).unwrap();
            let exact = polars::prelude::col("resource_tags").list().eval(map_value().filter(matches(map_key()))).list().first();
            let trimmed = polars::prelude::col("resource_tags").list().eval(map_value().filter(matches(map_key().str().strip_chars(lit(NULL))))).list().first();
            candidates.push(exact);
            candidates.push(trimmed);
            sources.push("resource_tags".into());
        }
    }
    if let Some(DataType::String) = file.schema.get("resource_tags") {
        // CUR 2.0 exported as CSV writes the tag map as JSON text: read the key from it.
        let wanted = spellings.clone();
        let name = format!("resource_tags[{key}]");
        candidates.push(polars::prelude::col("resource_tags").map(move |c| json_tag(&c, &wanted), move |_, _| Ok(Field::new(name.as_str().into(), DataType::String))));
        sources.push("resource_tags".into());
    }
    for name in file.names() {
        let legacy = name.strip_prefix("resourceTags/").map(|rest| rest.strip_prefix("user:").unwrap_or(rest).trim() == key);
        let athena = name.to_ascii_lowercase() == format!("resource_tags_user_{}", key.to_ascii_lowercase());
        if legacy == Some(true) || athena {
            candidates.push(polars::prelude::col(name.as_str()).cast(DataType::String));
            sources.push(name.clone());
        }
    }
    if candidates.is_empty() {
        return (lit(NULL).cast(DataType::String), sources);
    }
    let value = coalesce(&candidates).str().strip_chars(lit(NULL));
    (when(value.clone().neq(lit(""))).then(value).otherwise(lit(NULL)), sources)
}

/// The user tag keys a file carries, named as a rule set would name them (`team`, not
/// `user_team` or `resourceTags/user:team`): what to tell a user whose rule set's keys are in
/// none of the data. Only read when that happens.
pub(crate) fn tag_keys_in(file: &SourceFile) -> Result<BTreeSet<String>> {
    let unreadable = |e: PolarsError| Error::Unreadable { file: file.staged.display.clone(), message: e.to_string() };
    let mut keys = BTreeSet::new();
    match file.schema.get("resource_tags") {
        Some(DataType::List(inner)) if matches!(inner.as_ref(), DataType::Struct(_)) => {
            let names =
                polars::prelude::col("resource_tags").list().eval(element().struct_().field_by_name("key")).explode(ExplodeOptions { empty_as_null: false, keep_nulls: false }).unique().alias("key");
            let df = file.frame.clone().select([names]).collect().map_err(unreadable)?;
            keys.extend(df.column("key").and_then(|c| c.str().cloned()).map_err(unreadable)?.iter().flatten().map(rule_key));
        }
        Some(DataType::String) => {
            let df = file.frame.clone().select([polars::prelude::col("resource_tags")]).unique(None, UniqueKeepStrategy::Any).collect().map_err(unreadable)?;
            for text in df.column("resource_tags").and_then(|c| c.str().cloned()).map_err(unreadable)?.iter().flatten() {
                if let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(text) {
                    keys.extend(map.keys().map(|k| rule_key(k)));
                }
            }
        }
        _ => {}
    }
    keys.extend(file.names().iter().filter_map(|name| column_tag_key(name)));
    Ok(keys)
}

/// The tag key a column of its own holds, as the rules name it: a legacy `resourceTags/user:<key>`
/// or a flattened `resource_tags_user_<key>`; `None` for any other column.
pub(crate) fn column_tag_key(name: &str) -> Option<String> {
    if let Some(rest) = name.strip_prefix("resourceTags/") {
        Some(rule_key(rest))
    } else if name.to_ascii_lowercase().starts_with("resource_tags_user_") {
        Some(name["resource_tags_user_".len()..].to_string())
    } else {
        None
    }
}

/// A tag key as the rules name it: AWS's `user_` / `user:` prefix for user tags dropped.
pub(crate) fn rule_key(key: &str) -> String {
    let key = key.trim();
    key.strip_prefix("user_").or_else(|| key.strip_prefix("user:")).unwrap_or(key).to_string()
}

/// The value of a tag key in a column of JSON objects (`{"user_team":"search"}`), by the key's
/// spellings in order, an exact key before a trimmed one; null where absent or not an object.
fn json_tag(column: &Column, spellings: &[String]) -> PolarsResult<Column> {
    let texts = column.str()?;
    let values: StringChunked = texts
        .iter()
        .map(|text| {
            let object = match serde_json::from_str::<serde_json::Value>(text?) {
                Ok(serde_json::Value::Object(map)) => map,
                _ => return None,
            };
            let value = |found: &serde_json::Value| found.as_str().map(str::to_string).or_else(|| (!found.is_null()).then(|| found.to_string()));
            spellings.iter().find_map(|s| object.get(s.as_str()).and_then(value)).or_else(|| spellings.iter().find_map(|s| object.iter().find(|(k, _)| k.trim() == s).and_then(|(_, v)| value(v))))
        })
        .collect();
    Ok(values.with_name(column.name().clone()).into_column())
}

#[cfg(test)]
mod tests {
    use super::athena_name;

    #[test]
    fn legacy_headers_get_athena_names() {
        assert_eq!(athena_name("lineItem/UnblendedCost"), "line_item_unblended_cost");
        assert_eq!(athena_name("lineItem/UsageAccountId"), "line_item_usage_account_id");
        assert_eq!(athena_name("reservation/ReservationARN"), "reservation_reservation_a_r_n");
        assert_eq!(athena_name("pricing/publicOnDemandCost"), "pricing_public_on_demand_cost");
        assert_eq!(athena_name("savingsPlan/SavingsPlanEffectiveCost"), "savings_plan_savings_plan_effective_cost");
        assert_eq!(athena_name("bill/BillingPeriodStartDate"), "bill_billing_period_start_date");
        assert_eq!(athena_name("product/regionCode"), "product_region_code");
    }
}
