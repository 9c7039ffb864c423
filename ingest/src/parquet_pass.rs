//! The month's one pass over CUR 2.0 parquet at the speed of the format (docs/design.md §8).
//!
//! Parquet stores CUR's text columns dictionary-encoded: a column chunk holds each distinct value
//! once and a small integer per line. This pass keeps those integers. Per row group it reads the
//! columns the grain needs straight from their pages (polars' own parquet decoder, asked for
//! dictionary codes), maps each distinct value of a chunk to an id once, and sums the five cost
//! bases per key of ids in the same pass over the lines. Text is trimmed, categorised and looked
//! up (charge and pricing category, region, tags) once per grain row of a row group, never per
//! line. Row groups, not files, are the unit of work, shared by every core; each row group's sums
//! are merged into the month's grain as soon as it is read, so memory holds the grain plus one
//! row group per core, also in a month where nearly every line is its own grain row.
//!
//! It reads only what AWS Data Exports write: parquet files with text columns, double amounts,
//! typed timestamps and `resource_tags` as a map (or a list of key/value structs). Anything else
//! (CSV, amounts as text, tags as JSON, a flattened tag column) and any line that fails a check
//! is left to the polars pass ([`crate::grain::aggregate`]), which reads every layout and names
//! the first bad cell. Both give the same grain: a test compares them on every fixture month.

use std::collections::HashMap;
use std::fs::File;
use std::io::Cursor;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use finops_allocate::cost_frame::{ChargeCategory, PricingCategory, CUR_LINE_ITEM_CATEGORIES};
use finops_allocate::engine::Dim;
use finops_allocate::{CostAmounts, CostBasis, Money};
use polars::prelude::PlSmallStr;
use polars_arrow::array::{Array, BinaryViewArrayGeneric, DictionaryArray, ListArray, PrimitiveArray, StructArray, Utf8ViewArray};
use polars_arrow::datatypes::{ArrowDataType, Field, IntegerType, Metadata, TimeUnit, DTYPE_CATEGORICAL_NEW};
use polars_buffer::Buffer;
use polars_parquet::read::{column_iter_to_arrays, infer_schema, read_metadata, BasicDecompressor, ColumnChunkMetadata, FileMetadata, PageReader, RowGroupMetadata};

use crate::cur::tag_spellings;
use crate::grain::{GrainBuilder, Pass};
use crate::scan::{float_units, FileKind, SourceFile, MAX_MONEY};

/// The raw text columns the grain is keyed by, in key order.
const TEXT: [&str; 10] = [
    "line_item_usage_account_id",
    "line_item_product_code",
    "line_item_line_item_type",
    "line_item_usage_type",
    "line_item_operation",
    "line_item_resource_id",
    "product_region_code",
    "product_region",
    "product_instance_type",
    // Only whether it is empty (a reservation's Fee line is amortized away).
    "reservation_reservation_a_r_n",
];
const ACCOUNT: usize = 0;
const SERVICE: usize = 1;
const LINE_TYPE: usize = 2;
const USAGE_TYPE: usize = 3;
const OPERATION: usize = 4;
const RESOURCE: usize = 5;
const REGION_CODE: usize = 6;
const REGION_NAME: usize = 7;
const INSTANCE: usize = 8;
const ARN: usize = 9;

/// The amounts read, each with the column it falls back to when the export lacks it (net and
/// list columns are absent for accounts without private pricing), or none (absent is zero).
const MONEY: [(&str, Option<usize>); 13] = [
    ("line_item_unblended_cost", None),
    ("line_item_net_unblended_cost", Some(UNBLENDED)),
    ("pricing_public_on_demand_cost", Some(UNBLENDED)),
    ("savings_plan_savings_plan_effective_cost", None),
    ("savings_plan_total_commitment_to_date", None),
    ("savings_plan_used_commitment", None),
    ("reservation_effective_cost", None),
    ("reservation_unused_amortized_upfront_fee_for_billing_period", None),
    ("reservation_unused_recurring_fee", None),
    ("savings_plan_net_savings_plan_effective_cost", Some(SP_EFFECTIVE)),
    ("reservation_net_effective_cost", Some(RI_EFFECTIVE)),
    ("reservation_net_unused_amortized_upfront_fee_for_billing_period", Some(RI_UNUSED_UPFRONT)),
    ("reservation_net_unused_recurring_fee", Some(RI_UNUSED_RECURRING)),
];
const UNBLENDED: usize = 0;
const NET_UNBLENDED: usize = 1;
const LIST: usize = 2;
const SP_EFFECTIVE: usize = 3;
const SP_TOTAL: usize = 4;
const SP_USED: usize = 5;
const RI_EFFECTIVE: usize = 6;
const RI_UNUSED_UPFRONT: usize = 7;
const RI_UNUSED_RECURRING: usize = 8;
const SP_NET_EFFECTIVE: usize = 9;
const RI_NET_EFFECTIVE: usize = 10;
const RI_NET_UNUSED_UPFRONT: usize = 11;
const RI_NET_UNUSED_RECURRING: usize = 12;

const BILLING_START: &str = "bill_billing_period_start_date";
const USAGE_START: &str = "line_item_usage_start_date";
const TAGS: &str = "resource_tags";

/// Why the pass handed a month to the polars pass (for the log; the grain is the same).
pub(crate) type Declined = String;

/// Reads the month's files to the grain, or says why it leaves them to the polars pass.
pub(crate) fn pass(files: &[SourceFile], tag_keys: &[String], basis: CostBasis, progress: &dyn crate::Progress) -> Result<Pass, Declined> {
    if tag_keys.len() > KEY_TAGS {
        return Err(format!("more than {KEY_TAGS} tag keys"));
    }
    let plans = files.iter().map(|f| Plan::of(f, tag_keys)).collect::<Result<Vec<_>, _>>()?;
    let units: Vec<(usize, usize)> = plans.iter().enumerate().flat_map(|(f, p)| (0..p.metadata.row_groups.len()).map(move |g| (f, g))).collect();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, units.len().max(1));
    progress.stage(&format!("summing line items: {} row group(s) of {} file(s) on {workers} core(s)", units.len(), files.len()));
    let next = AtomicUsize::new(0);
    let failed: Mutex<Option<Declined>> = Mutex::new(None);
    let month = Mutex::new(GrainBuilder::new(basis));
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut partial = Partial::new(tag_keys.len());
                    loop {
                        if failed.lock().map_or(true, |f| f.is_some()) {
                            break;
                        }
                        let at = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&(file, group)) = units.get(at) else { break };
                        if let Err(why) = partial.add_row_group(&plans[file], group, tag_keys).map(|()| partial.flush(&month)) {
                            if let Ok(mut f) = failed.lock() {
                                f.get_or_insert(why);
                            }
                            break;
                        }
                    }
                })
            })
            .collect();
        handles.into_iter().for_each(|h| h.join().expect("a row-group worker panicked"));
    });
    if let Some(why) = failed.into_inner().ok().flatten() {
        return Err(why);
    }
    let builder = month.into_inner().expect("a row-group worker panicked holding the grain");
    let rows_per_file = plans.iter().map(|p| p.metadata.num_rows as u64).collect();
    Ok(Pass { grain: builder.finish(), bad_rows: 0, rows_per_file })
}

/// How one file's columns are read: its footer, and the arrow field of each column it has.
struct Plan {
    file: File,
    display: String,
    metadata: FileMetadata,
    text: [Option<Field>; 10],
    money: [Option<Field>; 13],
    billing_start: Field,
    usage_start: Option<Field>,
    tags: Option<Field>,
}

impl Plan {
    fn of(source: &SourceFile, tag_keys: &[String]) -> Result<Plan, Declined> {
        let display = source.staged.display.clone();
        if source.kind != FileKind::Parquet {
            return Err(format!("{display} is not parquet"));
        }
        let mut file = File::open(&source.staged.path).map_err(|e| format!("{display}: {e}"))?;
        let metadata = read_metadata(&mut file).map_err(|e| format!("{display}: {e}"))?;
        let schema = infer_schema(&metadata).map_err(|e| format!("{display}: {e}"))?;
        let field = |name: &str| schema.get(name).cloned();
        for name in source.names() {
            if name.to_ascii_lowercase().starts_with("resource_tags_user_") || name.starts_with("resourceTags/") {
                return Err(format!("{display} has a flattened tag column ({name})"));
            }
        }
        let text = TEXT.map(|name| field(name));
        for (name, f) in TEXT.iter().zip(&text) {
            if let Some(f) = f {
                if !is_text(&f.dtype) {
                    return Err(format!("{display}: {name} is {:?}, not text", f.dtype));
                }
            }
        }
        let money = MONEY.map(|(name, _)| field(name));
        for ((name, _), f) in MONEY.iter().zip(&money) {
            if let Some(f) = f {
                if !matches!(f.dtype, ArrowDataType::Float64 | ArrowDataType::Float32) {
                    return Err(format!("{display}: {name} is {:?}, not a double", f.dtype));
                }
            }
        }
        if text[ACCOUNT].is_none() || text[SERVICE].is_none() || text[LINE_TYPE].is_none() || money[UNBLENDED].is_none() {
            return Err(format!("{display} lacks a required column"));
        }
        let timestamp = |name: &str| match field(name) {
            Some(f) if matches!(f.dtype, ArrowDataType::Timestamp(_, _) | ArrowDataType::Date32) => Ok(Some(f)),
            Some(f) => Err(format!("{display}: {name} is {:?}, not a timestamp", f.dtype)),
            None => Ok(None),
        };
        let billing_start = timestamp(BILLING_START)?.ok_or_else(|| format!("{display} lacks {BILLING_START}"))?;
        let usage_start = timestamp(USAGE_START)?;
        // Not read here, but text there is checked cell by cell by the polars pass.
        timestamp("line_item_usage_end_date")?;
        let tags = match field(TAGS) {
            None => None,
            Some(f) => match key_value(&f.dtype) {
                Some(_) => Some(f),
                None if tag_keys.is_empty() => None,
                None => return Err(format!("{display}: {TAGS} is {:?}, not a map of text", f.dtype)),
            },
        };
        Ok(Plan { file, display, metadata, text, money, billing_start, usage_start, tags })
    }

    /// The bytes of one column chunk (every leaf of `name`) in row group `group`.
    fn chunks<'a>(&self, group: &'a RowGroupMetadata, name: &str) -> Result<Vec<(&'a ColumnChunkMetadata, Buffer<u8>)>, Declined> {
        let columns = group.columns_under_root_iter(name).ok_or_else(|| format!("{}: row group without {name}", self.display))?;
        columns
            .map(|meta| {
                let range = meta.byte_range();
                let mut bytes = vec![0u8; (range.end - range.start) as usize];
                self.file.read_exact_at(&mut bytes, range.start).map_err(|e| format!("{}: {e}", self.display))?;
                Ok((meta, Buffer::from(bytes)))
            })
            .collect()
    }

    /// A decoded column holds a value for every line of its row group.
    fn check_rows(&self, name: &str, values: usize, rows: usize) -> Result<(), Declined> {
        if values == rows {
            Ok(())
        } else {
            Err(format!("{}: {name} has {values} values for {rows} rows", self.display))
        }
    }

    /// Decodes column `name` of row group `group` as `field` says.
    fn decode(&self, group: &RowGroupMetadata, name: &str, field: Field) -> Result<Vec<Box<dyn Array>>, Declined> {
        let chunks = self.chunks(group, name)?;
        let (decompressors, types): (Vec<_>, Vec<_>) = chunks
            .iter()
            .map(|(meta, bytes)| (BasicDecompressor::new(PageReader::new(Cursor::new(bytes.clone()), meta, vec![], usize::MAX), vec![]), &meta.descriptor().descriptor.primitive_type))
            .unzip();
        column_iter_to_arrays(decompressors, types, field, None).map(|(arrays, _)| arrays).map_err(|e| format!("{}: {name}: {e}", self.display))
    }
}

/// The key and value text arrays' types inside a map (or list of key/value structs) type.
fn key_value(dtype: &ArrowDataType) -> Option<()> {
    let inner = match dtype {
        ArrowDataType::LargeList(f) | ArrowDataType::List(f) => &f.dtype,
        ArrowDataType::Map(f, _) => &f.dtype,
        _ => return None,
    };
    let ArrowDataType::Struct(fields) = inner else { return None };
    (fields.len() == 2 && is_text(&fields[0].dtype) && is_text(&fields[1].dtype)).then_some(())
}

fn is_text(dtype: &ArrowDataType) -> bool {
    matches!(dtype, ArrowDataType::Utf8View | ArrowDataType::Utf8 | ArrowDataType::LargeUtf8)
}

/// Per text code a worker has met, what it has worked out about it (a line item type's
/// amortized class, whether an account is blank), read per line by code, not by text.
struct Facts<T>(Vec<Option<T>>);

impl<T: Copy> Facts<T> {
    fn get(&mut self, code: u32, work_out: impl FnOnce(&str) -> T) -> T {
        let at = code as usize;
        if self.0.len() <= at {
            self.0.resize(at + 1, None);
        }
        *self.0[at].get_or_insert_with(|| work_out(Dim::from_code(code).expect("a code the pass was given").as_str()))
    }
}

/// A text value's id: its code in the process-wide table of dimension values.
fn text_id(value: &str) -> u32 {
    Dim::new(value).code()
}

/// A value as the grain holds it: trimmed.
fn trimmed(code: u32) -> Dim {
    let raw = Dim::from_code(code).expect("a code the pass was given");
    let text = raw.trim();
    if text.len() == raw.len() {
        raw
    } else {
        Dim::new(text)
    }
}

/// What a line item type makes of a line's amounts (the amortized CASE of docs/design.md §3,
/// on the raw text as the polars pass compares it).
#[derive(Copy, Clone, PartialEq, Eq)]
enum Amortized {
    SavingsPlanCovered,
    SavingsPlanRecurringFee,
    Zero,
    Discounted,
    RiFee,
    Fee,
    Usage,
    Other,
}

impl Amortized {
    fn of(raw: &str) -> Amortized {
        match raw {
            "SavingsPlanCoveredUsage" => Amortized::SavingsPlanCovered,
            "SavingsPlanRecurringFee" => Amortized::SavingsPlanRecurringFee,
            "SavingsPlanNegation" | "SavingsPlanUpfrontFee" => Amortized::Zero,
            "DiscountedUsage" => Amortized::Discounted,
            "RIFee" => Amortized::RiFee,
            "Fee" => Amortized::Fee,
            "Usage" => Amortized::Usage,
            _ => Amortized::Other,
        }
    }
}

/// One worker's share of the month: sums per key of ids.
struct Partial {
    /// The code of the empty text, which is also what a null is: the grain reads both as empty.
    empty: u32,
    classes: Facts<Amortized>,
    blank: Facts<bool>,
    /// The row group being read, summed on its own (merged into the month's grain after each).
    local: Sums,
    /// Per (line item type, usage type): the charge and pricing category.
    categories: HashMap<(u32, u32), (Dim, Dim)>,
    /// Per (region code, region name): the region.
    regions: HashMap<(u32, u32), Dim>,
    /// Per month index: the billing period.
    periods: HashMap<u32, Dim>,
    /// What a tag map key held inline in its view means: (exact, trimmed) bit per tag key.
    tag_masks: HashMap<u128, (u64, u64), foldhash::fast::FixedState>,
    /// The id of a tag value held inline in its view (`u32::MAX`: empty once trimmed).
    tag_values: HashMap<u128, u32, foldhash::fast::FixedState>,
    /// Tag keys the rule set reads (the used part of a key's tag ids).
    tag_count: usize,
}

/// Key layout: the text ids (but the ARN), the billing month, the usage day, the tag ids.
const KEY_TEXT: usize = 9;
/// Tag keys a grain key holds: a fixed-size key compares and hashes inline (a month with more
/// tag keys goes to the polars pass).
const KEY_TAGS: usize = 9;
type Key = [u32; KEY_TEXT + 2 + KEY_TAGS];

/// The five bases and the line count summed per key.
#[derive(Default)]
struct Sums {
    index: HashMap<Key, usize, foldhash::fast::FixedState>,
    sums: Vec<([i128; 5], u64)>,
}

impl Sums {
    fn add(&mut self, key: Key, amounts: [i128; 5], lines: u64) {
        let at = match self.index.get(&key) {
            Some(at) => *at,
            None => {
                self.sums.push(([0; 5], 0));
                self.index.insert(key, self.sums.len() - 1);
                self.sums.len() - 1
            }
        };
        let sums = &mut self.sums[at];
        for (sum, amount) in sums.0.iter_mut().zip(amounts) {
            *sum += amount;
        }
        sums.1 += lines;
    }

    fn len(&self) -> usize {
        self.index.len()
    }
}

impl Partial {
    fn new(tag_count: usize) -> Partial {
        Partial {
            empty: text_id(""),
            classes: Facts(Vec::new()),
            blank: Facts(Vec::new()),
            local: Sums::default(),
            categories: HashMap::new(),
            regions: HashMap::new(),
            periods: HashMap::new(),
            tag_masks: HashMap::default(),
            tag_values: HashMap::default(),
            tag_count,
        }
    }

    /// Ids of a text column's lines (all 0 where the file lacks it).
    fn text_ids(&mut self, plan: &Plan, group: &RowGroupMetadata, index: usize, rows: usize) -> Result<Vec<u32>, Declined> {
        let Some(field) = &plan.text[index] else { return Ok(vec![self.empty; rows]) };
        let name = TEXT[index];
        let mut metadata = Metadata::new();
        metadata.insert(PlSmallStr::from_static(DTYPE_CATEGORICAL_NEW), PlSmallStr::from_static(""));
        let codes = Field::new(field.name.clone(), ArrowDataType::Dictionary(IntegerType::UInt32, Box::new(ArrowDataType::Utf8View), false), true).with_metadata(metadata);
        let mut ids = Vec::with_capacity(rows);
        // Dictionary pages all through (how AWS writes these columns): one lookup per distinct
        // value. A chunk that fell back to plain pages is read as text, one lookup per line.
        match plan.decode(group, name, codes) {
            Ok(arrays) => {
                for array in arrays {
                    let array = array.as_any().downcast_ref::<DictionaryArray<u32>>().ok_or_else(|| format!("{name}: not dictionary codes"))?;
                    let values = array.values().as_any().downcast_ref::<Utf8ViewArray>().ok_or_else(|| format!("{name}: dictionary not text"))?;
                    let map: Vec<u32> = values.iter().map(|v| text_id(v.unwrap_or(""))).collect();
                    let keys = array.keys();
                    match keys.validity() {
                        None => ids.extend(keys.values().iter().map(|k| map[*k as usize])),
                        Some(valid) => ids.extend(keys.values().iter().zip(valid.iter()).map(|(k, v)| if v { map[*k as usize] } else { self.empty })),
                    }
                }
            }
            Err(_) => {
                let text = Field::new(field.name.clone(), ArrowDataType::Utf8View, true);
                for array in plan.decode(group, name, text)? {
                    let values = array.as_any().downcast_ref::<Utf8ViewArray>().ok_or_else(|| format!("{name}: not text"))?;
                    ids.extend(values.iter().map(|v| text_id(v.unwrap_or(""))));
                }
            }
        }
        plan.check_rows(name, ids.len(), rows)?;
        Ok(ids)
    }

    /// A timestamp or date column as its raw integers and the integers per day.
    fn times(plan: &Plan, group: &RowGroupMetadata, field: &Field, rows: usize) -> Result<(Vec<Option<i64>>, i64), Declined> {
        let per_day = match &field.dtype {
            ArrowDataType::Timestamp(unit, _) => match unit {
                TimeUnit::Second => 86_400,
                TimeUnit::Millisecond => 86_400_000,
                TimeUnit::Microsecond => 86_400_000_000,
                TimeUnit::Nanosecond => 86_400_000_000_000,
            },
            _ => 1,
        };
        let mut out = Vec::with_capacity(rows);
        for array in plan.decode(group, &field.name, field.clone())? {
            if let Some(a) = array.as_any().downcast_ref::<PrimitiveArray<i64>>() {
                out.extend(a.iter().map(|v| v.copied()));
            } else if let Some(a) = array.as_any().downcast_ref::<PrimitiveArray<i32>>() {
                out.extend(a.iter().map(|v| v.map(|d| *d as i64)));
            } else {
                return Err(format!("{}: {} decoded as {:?}", plan.display, field.name, array.dtype()));
            }
        }
        plan.check_rows(&field.name, out.len(), rows)?;
        Ok((out, per_day))
    }

    /// An amount column as doubles, a null as NaN (a NaN in the data is a bad cell, so none is
    /// left to mistake for one); declines on a value the polars pass would name as a bad cell
    /// (not finite, or beyond what money holds).
    fn amounts(plan: &Plan, group: &RowGroupMetadata, field: &Field, rows: usize) -> Result<Vec<f64>, Declined> {
        let mut out = Vec::with_capacity(rows);
        let bad = || format!("{}: {} has a value that is not an amount", plan.display, field.name);
        for array in plan.decode(group, &field.name, field.clone())? {
            let start = out.len();
            if let Some(a) = array.as_any().downcast_ref::<PrimitiveArray<f64>>() {
                out.extend_from_slice(a.values());
            } else if let Some(a) = array.as_any().downcast_ref::<PrimitiveArray<f32>>() {
                out.extend(a.values().iter().map(|x| *x as f64));
            } else {
                return Err(format!("{}: {} decoded as {:?}", plan.display, field.name, array.dtype()));
            }
            let values = &mut out[start..];
            match array.validity() {
                None => {
                    if values.iter().any(|x| !x.is_finite() || x.abs() >= MAX_MONEY) {
                        return Err(bad());
                    }
                }
                Some(valid) => {
                    for (x, valid) in values.iter_mut().zip(valid.iter()) {
                        if !valid {
                            *x = f64::NAN;
                        } else if !x.is_finite() || x.abs() >= MAX_MONEY {
                            return Err(bad());
                        }
                    }
                }
            }
        }
        plan.check_rows(&field.name, out.len(), rows)?;
        Ok(out)
    }

    /// Per line, the id of each tag key's value (`u32::MAX`: none), as the polars pass finds it:
    /// the first entry whose key is one of the key's spellings, else the first whose trimmed key
    /// is; the value trimmed, and empty as none. Map keys and values repeat on every line, so
    /// what a short one (held inline in its view: 12 bytes or fewer) means is worked out once and
    /// looked up by its view after that.
    fn tag_ids(&mut self, plan: &Plan, group: &RowGroupMetadata, tag_keys: &[String], rows: usize) -> Result<Vec<u32>, Declined> {
        let mut out = vec![u32::MAX; rows * tag_keys.len()];
        let Some(field) = plan.tags.as_ref().filter(|_| !tag_keys.is_empty()) else { return Ok(out) };
        let spellings: Vec<[String; 4]> = tag_keys.iter().map(|k| tag_spellings(k)).collect();
        // Bit t: the key is one of tag key t's spellings (exact), or is once trimmed.
        let masks = |key: &str| {
            let mut exact = 0u64;
            let mut trimmed = 0u64;
            for (t, spelled) in spellings.iter().enumerate() {
                if spelled.iter().any(|s| s.as_str() == key) {
                    exact |= 1 << t;
                }
                if spelled.iter().any(|s| s.as_str() == key.trim()) {
                    trimmed |= 1 << t;
                }
            }
            (exact, trimmed)
        };
        let (mut exact_at, mut trimmed_at) = (vec![usize::MAX; tag_keys.len()], vec![usize::MAX; tag_keys.len()]);
        let mut row = 0usize;
        for array in plan.decode(group, TAGS, field.clone())? {
            let (offsets, entries, valid): (Vec<usize>, &StructArray, Option<_>) = if let Some(list) = array.as_any().downcast_ref::<ListArray<i64>>() {
                (list.offsets().iter().map(|o| *o as usize).collect(), list.values().as_any().downcast_ref::<StructArray>().ok_or("tags: not structs")?, list.validity().cloned())
            } else if let Some(list) = array.as_any().downcast_ref::<ListArray<i32>>() {
                (list.offsets().iter().map(|o| *o as usize).collect(), list.values().as_any().downcast_ref::<StructArray>().ok_or("tags: not structs")?, list.validity().cloned())
            } else {
                return Err(format!("{}: {TAGS} decoded as {:?}", plan.display, array.dtype()));
            };
            let keys = entries.values()[0].as_any().downcast_ref::<BinaryViewArrayGeneric<str>>().ok_or("tag keys: not text")?;
            let values = entries.values()[1].as_any().downcast_ref::<BinaryViewArrayGeneric<str>>().ok_or("tag values: not text")?;
            for line in 0..offsets.len().saturating_sub(1) {
                if row >= rows {
                    return Err(format!("{}: {TAGS} has more values than rows", plan.display));
                }
                if valid.as_ref().is_none_or(|v| v.get_bit(line)) {
                    exact_at.fill(usize::MAX);
                    trimmed_at.fill(usize::MAX);
                    for e in offsets[line]..offsets[line + 1] {
                        let Some(key) = keys.get(e) else { continue };
                        let view = keys.views()[e];
                        let (exact, trimmed) = if view.is_inline() { *self.tag_masks.entry(view.as_u128()).or_insert_with(|| masks(key)) } else { masks(key) };
                        for (t, (ex, tr)) in exact_at.iter_mut().zip(trimmed_at.iter_mut()).enumerate() {
                            if exact & (1 << t) != 0 && *ex == usize::MAX {
                                *ex = e;
                            }
                            if trimmed & (1 << t) != 0 && *tr == usize::MAX {
                                *tr = e;
                            }
                        }
                    }
                    for t in 0..tag_keys.len() {
                        let value_at = |at: usize| (at != usize::MAX).then(|| values.get(at)).flatten().map(|v| (at, v));
                        let Some((at, value)) = value_at(exact_at[t]).or_else(|| value_at(trimmed_at[t])) else { continue };
                        let view = values.views()[at];
                        let id = if view.is_inline() {
                            match self.tag_values.get(&view.as_u128()) {
                                Some(id) => *id,
                                None => {
                                    let id = self.value_id(value);
                                    self.tag_values.insert(view.as_u128(), id);
                                    id
                                }
                            }
                        } else {
                            self.value_id(value)
                        };
                        out[row * tag_keys.len() + t] = id;
                    }
                }
                row += 1;
            }
        }
        plan.check_rows(TAGS, row, rows)?;
        Ok(out)
    }

    /// A tag value's id: trimmed, and empty as none (`u32::MAX`).
    fn value_id(&mut self, value: &str) -> u32 {
        let value = value.trim();
        if value.is_empty() {
            u32::MAX
        } else {
            text_id(value)
        }
    }

    fn add_row_group(&mut self, plan: &Plan, group: usize, tag_keys: &[String]) -> Result<(), Declined> {
        let group = &plan.metadata.row_groups[group];
        let rows = group.num_rows();
        let mut text = Vec::with_capacity(TEXT.len());
        for index in 0..TEXT.len() {
            text.push(self.text_ids(plan, group, index, rows)?);
        }
        let mut money: Vec<Option<Vec<f64>>> = Vec::with_capacity(MONEY.len());
        for field in &plan.money {
            money.push(match field {
                Some(f) => Some(Self::amounts(plan, group, f, rows)?),
                None => None,
            });
        }
        let (billing, billing_per_day) = Self::times(plan, group, &plan.billing_start, rows)?;
        let usage = match &plan.usage_start {
            Some(f) => Some(Self::times(plan, group, f, rows)?),
            None => None,
        };
        let tags = self.tag_ids(plan, group, tag_keys, rows)?;

        // A column read, or the one it falls back to, or zero.
        let column = |i: usize| -> Option<&Vec<f64>> { money[i].as_ref().or_else(|| MONEY[i].1.and_then(|f| money[f].as_ref())) };
        let columns: Vec<Option<&Vec<f64>>> = (0..MONEY.len()).map(column).collect();
        // A null (NaN) is zero, as the polars pass fills it.
        let units = |i: usize, row: usize| -> i128 { columns[i].and_then(|c| float_units(c[row])).unwrap_or(0) };

        let mut key: Key = [0; KEY_TEXT + 2 + KEY_TAGS];
        let mut last_billing: Option<(i64, u32)> = None;
        for row in 0..rows {
            let class = self.classes.get(text[LINE_TYPE][row], Amortized::of);
            if class == Amortized::Usage && money[UNBLENDED].as_ref().is_some_and(|c| c[row].is_nan()) {
                return Err(format!("{}: a Usage line without line_item_unblended_cost", plan.display));
            }
            let account = text[ACCOUNT][row];
            if self.blank.get(account, |a| a.trim().is_empty()) {
                return Err(format!("{}: a line without line_item_usage_account_id", plan.display));
            }
            let Some(start) = billing[row] else { return Err(format!("{}: a line without {BILLING_START}", plan.display)) };
            let month = match last_billing {
                Some((raw, month)) if raw == start => month,
                _ => {
                    let month = month_index(start, billing_per_day).ok_or_else(|| format!("{}: {BILLING_START} out of range", plan.display))?;
                    last_billing = Some((start, month));
                    month
                }
            };
            let day = usage.as_ref().and_then(|(u, per_day)| u[row].map(|t| t.div_euclid(*per_day) as i32)).unwrap_or(0);
            for (k, column) in text.iter().take(KEY_TEXT).enumerate() {
                key[k] = column[row];
            }
            key[KEY_TEXT] = month;
            key[KEY_TEXT + 1] = day as u32;
            key[KEY_TEXT + 2..KEY_TEXT + 2 + tag_keys.len()].copy_from_slice(&tags[row * tag_keys.len()..(row + 1) * tag_keys.len()]);

            let unblended = units(UNBLENDED, row);
            let net_unblended = units(NET_UNBLENDED, row);
            let amortized = |covered: usize, discounted: usize, upfront: usize, recurring: usize, otherwise: i128| match class {
                Amortized::SavingsPlanCovered => units(covered, row),
                Amortized::SavingsPlanRecurringFee => units(SP_TOTAL, row) - units(SP_USED, row),
                Amortized::Zero => 0,
                Amortized::Discounted => units(discounted, row),
                Amortized::RiFee => units(upfront, row) + units(recurring, row),
                Amortized::Fee if text[ARN][row] != self.empty => 0,
                _ => otherwise,
            };
            let amounts = [
                unblended,
                net_unblended,
                amortized(SP_EFFECTIVE, RI_EFFECTIVE, RI_UNUSED_UPFRONT, RI_UNUSED_RECURRING, unblended),
                amortized(SP_NET_EFFECTIVE, RI_NET_EFFECTIVE, RI_NET_UNUSED_UPFRONT, RI_NET_UNUSED_RECURRING, net_unblended),
                units(LIST, row),
            ];
            // Summed first in the row group's own table: it holds the keys of a few hours of
            // the month and stays in cache, where a probe into the month's table per line
            // would miss it.
            self.local.add(key, amounts, 1);
        }
        Ok(())
    }

    /// The row group's sums as grain rows, merged into the month's grain: text trimmed, charge
    /// and pricing category and region derived once per distinct value, as the polars pass
    /// derives them. The rows are made before the grain is locked, so the other workers wait
    /// only for the merge.
    fn flush(&mut self, month: &Mutex<GrainBuilder>) {
        let mut rows: Vec<([Dim; 10], i32, CostAmounts, u64)> = Vec::with_capacity(self.local.len());
        let mut tags: Vec<Option<Dim>> = Vec::with_capacity(self.local.len() * self.tag_count);
        for (key, at) in self.local.index.drain() {
            let (charge, pricing) = *self.categories.entry((key[LINE_TYPE], key[USAGE_TYPE])).or_insert_with(|| {
                let (line_type, usage_type) = (trimmed(key[LINE_TYPE]), trimmed(key[USAGE_TYPE]));
                let (line_type, usage_type) = (line_type.as_str(), usage_type.as_str());
                let charge = CUR_LINE_ITEM_CATEGORIES.iter().find(|(t, _)| *t == line_type).map_or(ChargeCategory::Usage, |(_, c)| *c);
                let pricing = if line_type.starts_with("SavingsPlan") {
                    PricingCategory::SavingsPlan.as_str()
                } else if line_type == "DiscountedUsage" || line_type == "RIFee" {
                    PricingCategory::Reserved.as_str()
                } else if usage_type.contains("SpotUsage") {
                    PricingCategory::Spot.as_str()
                } else if line_type == "Usage" {
                    PricingCategory::OnDemand.as_str()
                } else {
                    ""
                };
                (Dim::new(charge.as_str()), Dim::new(pricing))
            });
            let region = *self.regions.entry((key[REGION_CODE], key[REGION_NAME])).or_insert_with(|| {
                let code = trimmed(key[REGION_CODE]);
                if code.is_empty() {
                    trimmed(key[REGION_NAME])
                } else {
                    code
                }
            });
            let period = *self.periods.entry(key[KEY_TEXT]).or_insert_with(|| Dim::new(&format!("{:04}-{:02}", key[KEY_TEXT] / 12, key[KEY_TEXT] % 12 + 1)));
            tags.extend(key[KEY_TEXT + 2..KEY_TEXT + 2 + self.tag_count].iter().map(|id| (*id != u32::MAX).then(|| trimmed(*id))));
            let (sums, line_items) = self.local.sums[at];
            let costs = CostAmounts {
                billed: Money::from_units(sums[0]),
                billed_net: Money::from_units(sums[1]),
                effective: Money::from_units(sums[2]),
                effective_net: Money::from_units(sums[3]),
                list: Money::from_units(sums[4]),
            };
            let text =
                [period, trimmed(key[ACCOUNT]), trimmed(key[SERVICE]), trimmed(key[RESOURCE]), trimmed(key[USAGE_TYPE]), trimmed(key[OPERATION]), region, charge, pricing, trimmed(key[INSTANCE])];
            rows.push((text, key[KEY_TEXT + 1] as i32, costs, line_items));
        }
        self.local.sums.clear();
        let mut month = month.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for (i, (text, day, costs, line_items)) in rows.into_iter().enumerate() {
            month.add_interned(text, day, &tags[i * self.tag_count..(i + 1) * self.tag_count], &costs, line_items);
        }
    }
}

/// `year * 12 + month - 1` of a timestamp or date (`per_day` of its integers in a day).
fn month_index(raw: i64, per_day: i64) -> Option<u32> {
    use chrono::Datelike;
    let day = raw.div_euclid(per_day);
    let date = chrono::NaiveDate::from_num_days_from_ce_opt(i32::try_from(day + 719_163).ok()?)?;
    u32::try_from(date.year() * 12 + date.month0() as i32).ok()
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use finops_allocate::CostBasis;
    use polars::prelude::*;

    use crate::grain::{aggregate, Pass};
    use crate::scan::SourceFile;
    use crate::store::StagedFile;

    const TAG_KEYS: [&str; 4] = ["team", "Team", "owner", "project"];

    fn open(paths: &[PathBuf], scratch: &Path) -> Vec<SourceFile> {
        paths
            .iter()
            .map(|path| {
                let bytes = std::fs::metadata(path).unwrap().len();
                let staged = StagedFile { key: path.display().to_string(), display: path.display().to_string(), path: path.clone(), bytes, sha256: String::new() };
                SourceFile::open(staged, &[""], scratch).unwrap()
            })
            .collect()
    }

    /// The polars pass over the same files.
    fn polars_pass(files: &[SourceFile], tag_keys: &[String], basis: CostBasis) -> Pass {
        let grains = files.iter().map(|f| crate::cur::frames(f, tag_keys).unwrap().1).collect();
        aggregate(grains, tag_keys, basis, &crate::Silent).unwrap()
    }

    /// A pass's grain in a canonical order, with its totals, as text to compare and print.
    fn canonical(pass: &Pass) -> (Vec<String>, Vec<String>, u64, Vec<u64>) {
        // Each line with its five bases; its origin (an index in reading order) left out.
        let mut lines: Vec<String> = pass.grain.lines().iter().map(|l| format!("{:?} {:?}", finops_allocate::CostLine { origin: 0, ..l.clone() }, pass.grain.bases()[l.origin as usize])).collect();
        lines.sort();
        let totals = pass.grain.service_totals().iter().map(|t| format!("{t:?}")).collect();
        (lines, totals, pass.grain.line_items(), pass.rows_per_file.clone())
    }

    fn assert_same(paths: &[PathBuf], what: &str) {
        let scratch = tempfile::tempdir().unwrap();
        let files = open(paths, scratch.path());
        let tag_keys: Vec<String> = TAG_KEYS.iter().map(|k| k.to_string()).collect();
        for basis in CostBasis::ALL {
            let fast = super::pass(&files, &tag_keys, basis, &crate::Silent).unwrap_or_else(|why| panic!("{what}: the dictionary pass declined: {why}"));
            let reference = polars_pass(&files, &tag_keys, basis);
            let (fast, reference) = (canonical(&fast), canonical(&reference));
            assert!(!reference.0.is_empty(), "{what}: an empty grain proves nothing");
            assert_eq!(fast.0.len(), reference.0.len(), "{what} ({basis:?}): grain rows");
            for (a, b) in fast.0.iter().zip(&reference.0) {
                assert_eq!(a, b, "{what} ({basis:?}): first differing grain row");
            }
            assert_eq!(fast.1, reference.1, "{what} ({basis:?}): service totals");
            assert_eq!((fast.2, &fast.3), (reference.2, &reference.3), "{what} ({basis:?}): line items");
        }
    }

    #[test]
    fn the_dictionary_pass_gives_the_polars_grain_on_every_fixture_month() {
        let root = Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR for tests and benchmarks")).join("../fixtures/cur2/data");
        let mut months: Vec<PathBuf> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).collect();
        months.sort();
        assert!(months.len() >= 6, "fixture months under {}", root.display());
        for month in months {
            let files: Vec<PathBuf> = std::fs::read_dir(&month).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "parquet")).collect();
            assert_same(&files, &month.display().to_string());
        }
        // A month with split cost allocation data: its pods' records are lines like any other.
        let scad = root.join("../../scad/data/BILLING_PERIOD=2025-10");
        let files: Vec<PathBuf> = std::fs::read_dir(&scad).unwrap().map(|e| e.unwrap().path()).collect();
        assert_same(&files, &scad.display().to_string());
    }

    /// Cells the grain must read alike both ways: padded text, nulls for empty, a region only by
    /// name, tag keys and values padded, a null tag value before a set one, a reservation fee.
    #[test]
    fn the_dictionary_pass_reads_edge_cells_as_the_polars_pass_does() {
        let dir = tempfile::tempdir().unwrap();
        let n = 8;
        let text = |name: &str, values: [Option<&str>; 8]| Column::new(name.into(), values.to_vec());
        let money = |name: &str, values: [Option<f64>; 8]| Column::new(name.into(), values.to_vec());
        let ms = DataType::Datetime(TimeUnit::Milliseconds, None);
        let start = Column::new("bill_billing_period_start_date".into(), vec![1_759_276_800_000i64; n]).cast(&ms).unwrap();
        let usage: Vec<i64> = (0..n as i64).map(|i| 1_759_276_800_000 + i * 7_200_000 * 7).collect();
        let usage = Column::new("line_item_usage_start_date".into(), usage).cast(&ms).unwrap();
        let keys = [Some("user_team"), Some(" user_team "), Some("user_owner"), None, Some("user_Team"), Some("user_team"), Some("user_project"), Some("user_team")];
        let values = [Some(" search "), Some("orders"), Some("data"), None, Some(""), None, Some("p1"), Some("  ")];
        // Row 7 has no tags at all: a null map.
        let tags = df!("__row" => [0u32, 1, 2, 3, 4, 5, 5, 6], "key" => keys.to_vec(), "value" => values.to_vec()).unwrap().lazy().group_by_stable([col("__row")]).agg([as_struct(vec![
            col("key"),
            col("value"),
        ])
        .alias("resource_tags")]);
        let frame = DataFrame::new(
            n,
            vec![
                Column::new("__row".into(), (0..n as u32).collect::<Vec<u32>>()),
                start,
                usage,
                text(
                    "line_item_usage_account_id",
                    [Some("111111111111"), Some(" 111111111111 "), Some("222222222222"), Some("222222222222"), Some("333333333333"), Some("333333333333"), Some("111111111111"), Some("111111111111")],
                ),
                text("line_item_product_code", [Some("AmazonEC2"), Some("AmazonEC2 "), None, Some(""), Some("AmazonS3"), Some("AmazonS3"), Some("AmazonEC2"), Some("AmazonEC2")]),
                text("line_item_line_item_type", [Some("Usage"), Some(" Usage"), Some("SavingsPlanCoveredUsage"), Some("Fee"), Some("RIFee"), Some("DiscountedUsage"), Some("Tax"), Some("Fee")]),
                text("line_item_usage_type", [Some("BoxUsage"), Some("SpotUsage:c5"), None, Some("x"), Some("HeavyUsage"), Some("HeavyUsage"), Some(""), Some("y")]),
                text("line_item_operation", [Some("RunInstances"), None, Some("RunInstances"), Some(""), Some(" Op "), Some("Op"), None, None]),
                text("line_item_resource_id", [Some("i-1"), Some("i-1 "), Some("i-2"), None, Some("r-1"), Some("r-1"), None, None]),
                text("product_region_code", [Some("us-east-1"), None, Some(""), Some("  "), Some("eu-west-1"), Some("eu-west-1"), None, None]),
                text("product_region", [Some("x"), Some("us-west-2"), Some("ap-south-1"), Some("n"), None, None, None, None]),
                text("product_instance_type", [Some("m5.large"), None, Some("p5.48xlarge"), None, None, None, None, None]),
                text("reservation_reservation_a_r_n", [None, None, None, Some("arn:aws:ec2:r"), Some("arn"), Some("arn"), None, Some(" ")]),
                money("line_item_unblended_cost", [Some(1.25), Some(0.1), Some(3.0), Some(100.0), Some(0.0), Some(0.0), Some(0.07), Some(5.0)]),
                money("line_item_net_unblended_cost", [Some(1.0), None, Some(2.5), Some(90.0), Some(0.0), None, Some(0.07), Some(4.5)]),
                money("savings_plan_savings_plan_effective_cost", [None, None, Some(2.0), None, None, None, None, None]),
                money("reservation_effective_cost", [None, None, None, None, None, Some(0.5), None, None]),
                money("reservation_unused_amortized_upfront_fee_for_billing_period", [None, None, None, None, Some(12.5), None, None, None]),
                money("reservation_unused_recurring_fee", [None, None, None, None, Some(1234.5678), None, None, None]),
                money("pricing_public_on_demand_cost", [Some(2.0), Some(0.3), Some(4.0), None, None, Some(1.0), None, None]),
            ],
        )
        .unwrap();
        let mut frame = frame.lazy().join(tags, [col("__row")], [col("__row")], JoinArgs::new(JoinType::Left)).sort(["__row"], Default::default()).drop(cols(["__row"])).collect().unwrap();
        let path = dir.path().join("edge.parquet");
        ParquetWriter::new(std::fs::File::create(&path).unwrap()).finish(&mut frame).unwrap();
        assert_same(&[path], "edge cells");
    }

    /// A text column with a value per line is written with plain pages, not a dictionary: the
    /// pass reads it as text, a lookup per line, to the same grain. (The reservation ARN: only
    /// whether it is empty counts, on Fee lines.)
    #[test]
    fn a_column_without_a_dictionary_is_read_as_text() {
        let dir = tempfile::tempdir().unwrap();
        let n = 20_000;
        let ms = DataType::Datetime(TimeUnit::Milliseconds, None);
        let mut frame = DataFrame::new(
            n,
            vec![
                Column::new("bill_billing_period_start_date".into(), vec![1_759_276_800_000i64; n]).cast(&ms).unwrap(),
                Column::new("line_item_usage_start_date".into(), (0..n as i64).map(|i| 1_759_276_800_000 + (i % 5) * 86_400_000).collect::<Vec<_>>()).cast(&ms).unwrap(),
                Column::new("line_item_usage_account_id".into(), vec!["111111111111"; n]),
                Column::new("line_item_product_code".into(), vec!["AmazonEC2"; n]),
                Column::new("line_item_line_item_type".into(), (0..n).map(|i| if i % 3 == 0 { "Fee" } else { "Usage" }).collect::<Vec<_>>()),
                Column::new("line_item_resource_id".into(), (0..n).map(|i| format!("i-{:04}", i % 97)).collect::<Vec<_>>()),
                Column::new(
                    "reservation_reservation_a_r_n".into(),
                    (0..n).map(|i| if i % 7 == 0 { String::new() } else { format!("arn:aws:ec2:r/{i:012x}{}", " ".repeat(i % 2)) }).collect::<Vec<_>>(),
                ),
                Column::new("line_item_unblended_cost".into(), (0..n).map(|i| i as f64 / 7.0).collect::<Vec<_>>()),
            ],
        )
        .unwrap();
        let path = dir.path().join("plain.parquet");
        ParquetWriter::new(std::fs::File::create(&path).unwrap()).finish(&mut frame).unwrap();
        assert_same(&[path], "a text column in plain pages");
    }

    /// A month where nearly every line is its own grain row (the worst case) is read by the
    /// dictionary pass too, row group by row group across the workers, to the polars pass's grain.
    #[test]
    fn a_month_of_distinct_lines_is_read_row_group_by_row_group() {
        let dir = tempfile::tempdir().unwrap();
        let n = 20_000;
        let ms = DataType::Datetime(TimeUnit::Milliseconds, None);
        let mut frame = DataFrame::new(
            n,
            vec![
                Column::new("bill_billing_period_start_date".into(), vec![1_759_276_800_000i64; n]).cast(&ms).unwrap(),
                Column::new("line_item_usage_start_date".into(), (0..n as i64).map(|i| 1_759_276_800_000 + (i % 31) * 86_400_000).collect::<Vec<_>>()).cast(&ms).unwrap(),
                Column::new("line_item_usage_account_id".into(), vec!["111111111111"; n]),
                Column::new("line_item_product_code".into(), vec!["AmazonEC2"; n]),
                Column::new("line_item_line_item_type".into(), vec!["Usage"; n]),
                // A resource per line, and every 1,000th repeated in a later row group, so rows
                // of one key arrive from different workers.
                Column::new("line_item_resource_id".into(), (0..n).map(|i| format!("i-{}", if i % 1000 == 999 { i - 999 } else { i })).collect::<Vec<_>>()),
                Column::new("line_item_unblended_cost".into(), (0..n).map(|i| i as f64 / 7.0).collect::<Vec<_>>()),
            ],
        )
        .unwrap();
        let path = dir.path().join("distinct.parquet");
        ParquetWriter::new(std::fs::File::create(&path).unwrap()).with_row_group_size(Some(2_500)).finish(&mut frame).unwrap();
        assert_same(&[path], "a line per grain row");
    }

    /// A month the dictionary pass must leave to the polars pass (which names the cell).
    #[test]
    fn a_bad_cell_is_left_to_the_polars_pass() {
        let dir = tempfile::tempdir().unwrap();
        let ms = DataType::Datetime(TimeUnit::Milliseconds, None);
        let mut frame = DataFrame::new(
            2,
            vec![
                Column::new("bill_billing_period_start_date".into(), vec![1_759_276_800_000i64; 2]).cast(&ms).unwrap(),
                Column::new("line_item_usage_account_id".into(), vec!["111111111111", "111111111111"]),
                Column::new("line_item_product_code".into(), vec!["AmazonEC2", "AmazonEC2"]),
                Column::new("line_item_line_item_type".into(), vec!["Usage", "Usage"]),
                Column::new("line_item_unblended_cost".into(), vec![1.0, f64::NAN]),
            ],
        )
        .unwrap();
        let path = dir.path().join("bad.parquet");
        ParquetWriter::new(std::fs::File::create(&path).unwrap()).finish(&mut frame).unwrap();
        let files = open(&[path], dir.path());
        let why = super::pass(&files, &[], CostBasis::Amortized, &crate::Silent).err().expect("declined");
        assert!(why.contains("line_item_unblended_cost"), "{why}");
    }
}
