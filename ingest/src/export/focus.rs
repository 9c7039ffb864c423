//! FinOps FOCUS 1.0–1.2 exports (CSV or parquet) into the cost frame. Any .csv or .parquet file
//! under the root is read; files may hold several billing periods, so the month is chosen from
//! the data. Tags arrive as one JSON object per row; they are parsed once per distinct object,
//! not once per row.

use std::collections::{BTreeMap, BTreeSet};

use finops_allocate::cost_frame::{col, tag_column, PricingCategory};
use polars::prelude::*;

use super::Export;
use crate::scan::{first_bad, month_of, required_cell, FileKind, SourceFile, BAD, ROW};
use crate::store::{BillingStore, ObjectMeta};
use crate::{Error, Format, Result};

pub(crate) struct Focus;

impl Export for Focus {
    fn format(&self) -> Format {
        Format::Focus
    }

    fn layout_name(&self) -> &'static str {
        "FOCUS (.csv or .parquet files)"
    }

    fn recognises(&self, key: &str) -> bool {
        FileKind::of(key).is_some()
    }

    fn months(&self, _objects: &[ObjectMeta]) -> BTreeSet<String> {
        BTreeSet::new()
    }

    fn month_manifest(&self, _store: &BillingStore, _objects: &[ObjectMeta], _month: &str) -> Result<Option<String>> {
        Ok(None)
    }

    fn manifest_entries(&self, _store: &BillingStore, _manifest: &str, _text: &str) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    fn files_without_manifest(&self, objects: &[ObjectMeta], _month: &str) -> Vec<String> {
        objects.iter().filter(|o| FileKind::of(&o.key).is_some()).map(|o| o.key.clone()).collect()
    }

    /// FOCUS exports write `NULL` for an absent value as well as leaving it empty.
    fn null_texts(&self) -> &'static [&'static str] {
        &["NULL", ""]
    }

    fn frames(&self, file: &SourceFile, tag_keys: &[String]) -> Result<(LazyFrame, Option<LazyFrame>)> {
        Ok((cost_frame(file, tag_keys)?, None))
    }

    fn tag_keys_in(&self, file: &SourceFile) -> Result<BTreeSet<String>> {
        tag_keys_in(file)
    }

    fn periods_in_data(&self) -> bool {
        true
    }
}

const REQUIRED: [&str; 5] = ["BillingPeriodStart", "ChargePeriodStart", "BilledCost", "ServiceName", "ChargeCategory"];
const FORMAT: &str = "FOCUS 1.0-1.2";

/// The cost frame of one FOCUS file, with `__row` and `__bad` for the check pass.
pub(crate) fn cost_frame(file: &SourceFile, tag_keys: &[String]) -> Result<LazyFrame> {
    for column in REQUIRED {
        file.require(column, FORMAT)?;
    }
    let billing_start = file.timestamp("BillingPeriodStart")?;
    let charge_start = file.timestamp("ChargePeriodStart")?;
    let charge_end = file.timestamp("ChargePeriodEnd")?;
    let billed = file.money("BilledCost")?;
    let effective = if file.has("EffectiveCost") { file.money("EffectiveCost")? } else { file.money("BilledCost")? };
    let list = if file.has("ListCost") { file.money("ListCost")? } else { file.money("BilledCost")? };

    // FOCUS PricingCategory: Standard (on-demand), Dynamic (spot), Committed (a commitment
    // discount, whose type tells Savings Plan from reservation), Other.
    let pricing = file.text("PricingCategory");
    let commitment_type = file.text("CommitmentDiscountType").str().to_lowercase();
    let pricing_category = when(pricing.clone().eq(lit("Standard")))
        .then(lit(PricingCategory::OnDemand.as_str()))
        .when(pricing.clone().eq(lit("Dynamic")))
        .then(lit(PricingCategory::Spot.as_str()))
        .when(pricing.clone().eq(lit("Committed")).and(commitment_type.str().contains_literal(lit("savings"))))
        .then(lit(PricingCategory::SavingsPlan.as_str()))
        .when(pricing.clone().eq(lit("Committed")))
        .then(lit(PricingCategory::Reserved.as_str()))
        .otherwise(pricing);
    let first_text = |names: &[&str]| names.iter().find(|n| file.has(n)).map_or(lit(""), |n| file.text(n));
    let usage_quantity = ["ConsumedQuantity", "UsageQuantity"].iter().find(|n| file.has(n)).map_or(lit(0.0), |n| polars::prelude::col(*n).cast(DataType::Float64).fill_null(lit(0.0)));

    let mut columns = vec![
        month_of(billing_start.value.clone()).alias(col::BILLING_PERIOD),
        charge_start.value.clone().alias(col::CHARGE_PERIOD_START),
        charge_end.value.clone().alias(col::CHARGE_PERIOD_END),
        charge_start.value.clone().dt().date().alias(col::USAGE_DATE),
        first_text(&["ProviderName", "ServiceProviderName"]).alias(col::PROVIDER),
        file.text("BillingAccountId").alias(col::BILLING_ACCOUNT),
        file.text("SubAccountId").alias(col::ACCOUNT),
        file.text("ServiceName").alias(col::SERVICE),
        file.text("ChargeCategory").alias(col::CHARGE_CATEGORY),
        file.text("ChargeCategory").alias(col::LINE_ITEM_TYPE),
        first_text(&["x_UsageType", "SkuId"]).alias(col::USAGE_TYPE),
        first_text(&["x_Operation"]).alias(col::OPERATION),
        file.text("ResourceId").alias(col::RESOURCE),
        first_text(&["RegionId", "Region"]).alias(col::REGION),
        pricing_category.alias(col::PRICING_CATEGORY),
        first_text(&["x_InstanceType"]).alias(col::INSTANCE_TYPE),
        usage_quantity.alias(col::USAGE_QUANTITY),
        first_text(&["ConsumedUnit", "UsageUnit", "PricingUnit"]).alias(col::USAGE_UNIT),
        billed.value.clone().alias(col::BILLED),
        billed.value.clone().alias(col::BILLED_NET),
        effective.value.clone().alias(col::EFFECTIVE),
        effective.value.clone().alias(col::EFFECTIVE_NET),
        list.value.clone().alias(col::LIST),
        first_bad([required_cell(file, "BillingPeriodStart"), billing_start.bad, charge_start.bad, charge_end.bad, billed.bad, effective.bad, list.bad]).alias(BAD),
        polars::prelude::col(ROW),
    ];
    if tag_keys.is_empty() || !file.has("Tags") {
        columns.extend(tag_keys.iter().map(|k| lit(NULL).cast(DataType::String).alias(tag_column(k))));
        return Ok(file.frame.clone().select(columns));
    }
    const TAGS: &str = "__tags";
    columns.push(polars::prelude::col("Tags").cast(DataType::String).alias(TAGS));
    let lookup = tag_lookup(file, tag_keys, TAGS)?;
    Ok(file.frame.clone().select(columns).join(lookup, [polars::prelude::col(TAGS)], [polars::prelude::col(TAGS)], JoinArgs::new(JoinType::Left)).drop(cols([TAGS])))
}

/// The tag keys of a FOCUS file's `Tags` objects: what to tell a user whose rule set's keys are
/// in none of the data. Only read when that happens.
pub(crate) fn tag_keys_in(file: &SourceFile) -> Result<BTreeSet<String>> {
    if !file.has("Tags") {
        return Ok(BTreeSet::new());
    }
    let lookup = tag_lookup(file, &[], "__tags")?.collect().map_err(|e| Error::Unreadable { file: file.staged.display.clone(), message: e.to_string() })?;
    let texts = lookup.column("__tags").and_then(|c| c.str().cloned()).map_err(|e| Error::Unreadable { file: file.staged.display.clone(), message: e.to_string() })?;
    let mut keys = BTreeSet::new();
    for text in texts.iter().flatten() {
        if let Ok(object) = parse_tags(text) {
            keys.extend(object.into_keys());
        }
    }
    Ok(keys)
}

/// One row per distinct `Tags` object: the object text and the value of each requested key.
fn tag_lookup(file: &SourceFile, tag_keys: &[String], tags_column: &str) -> Result<LazyFrame> {
    let distinct = file
        .frame
        .clone()
        .select([polars::prelude::col("Tags").cast(DataType::String).alias(tags_column)])
        .filter(polars::prelude::col(tags_column).is_not_null())
        .unique(None, UniqueKeepStrategy::Any)
        .collect()
        .map_err(|e| Error::Unreadable { file: file.staged.display.clone(), message: e.to_string() })?;
    let unreadable = |e: PolarsError| Error::Unreadable { file: file.staged.display.clone(), message: e.to_string() };
    let texts: Vec<String> = distinct.column(tags_column).and_then(|c| c.str().cloned()).map_err(unreadable)?.iter().flatten().map(str::to_string).collect();
    let mut values: Vec<Vec<Option<String>>> = vec![Vec::with_capacity(texts.len()); tag_keys.len()];
    for text in &texts {
        let object = parse_tags(text).map_err(|message| Error::BadTags { file: file.staged.display.clone(), value: text.chars().take(120).collect(), message })?;
        for (i, key) in tag_keys.iter().enumerate() {
            values[i].push(lookup_tag(&object, key));
        }
    }
    let mut frame_columns = vec![Column::new(tags_column.into(), texts)];
    for (key, v) in tag_keys.iter().zip(values) {
        frame_columns.push(Column::new(tag_column(key).into(), v));
    }
    let height = frame_columns[0].len();
    Ok(DataFrame::new(height, frame_columns).map_err(unreadable)?.lazy())
}

/// A FOCUS `Tags` cell: a JSON object of string (or scalar) values.
fn parse_tags(text: &str) -> std::result::Result<BTreeMap<String, String>, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not a JSON object: {e}"))?;
    let serde_json::Value::Object(map) = value else {
        return Err("not a JSON object".into());
    };
    Ok(map
        .into_iter()
        .filter_map(|(k, v)| match v {
            serde_json::Value::String(s) => Some((k, s)),
            serde_json::Value::Null => None,
            other => Some((k, other.to_string())),
        })
        .collect())
}

/// The value for a key: an exact key first, else one equal after trimming (` org` for `org`).
fn lookup_tag(object: &BTreeMap<String, String>, key: &str) -> Option<String> {
    let key = key.trim();
    let value = object.get(key).or_else(|| object.iter().find(|(k, _)| k.trim() == key).map(|(_, v)| v))?;
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_keys_match_after_trimming_and_exact_wins() {
        let object = parse_tags(r#"{" org": "a", "org": "b", "team ": " search "}"#).unwrap();
        assert_eq!(lookup_tag(&object, "org").as_deref(), Some("b"));
        assert_eq!(lookup_tag(&object, "team").as_deref(), Some("search"));
        assert_eq!(lookup_tag(&object, "owner"), None);
        assert!(parse_tags("[1]").is_err());
    }
}
