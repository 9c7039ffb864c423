//! `focus-allocated.parquet` and `focus-allocated.csv` (docs/design.md §6 "FOCUS allocated
//! output"): every allocated piece of a charge of the bill as a FOCUS 1.3 Cost and Usage row.
//! The row keeps its origin charge's columns and adds the 1.3 allocation columns; for every
//! origin charge the allocated costs at each basis and the `AllocatedRatio`s add up exactly to
//! the charge.
//!
//! The origin charge is a grain row: the month's line items of one day and one key summed
//! (docs/design.md §8). Columns the grain does not carry (quantities, prices, SKUs,
//! commitment IDs, names) are present and null.

use std::collections::HashMap;
use std::rc::Rc;

use finops_allocate::cost_frame::{AccountOwners, CostAmounts, PricingCategory};
use finops_allocate::money::split;
use finops_allocate::rules::SplitMethod;
use finops_allocate::{Allocation, CostBasis, CostLine, Kind, Money, Piece, RuleSet};
use polars::prelude::*;

use crate::csv::CsvWriter;

/// Rows per parquet row group and per batch built in memory.
const BATCH_ROWS: usize = 65_536;

/// `AllocatedRatio` is written to 12 decimals; the ratios of one origin charge add up to
/// exactly 1 at that precision.
const RATIO_UNITS: i128 = 1_000_000_000_000;

/// Prefix of the tags this product defines in `AllocatedTags` (FOCUS: data generator-defined
/// tag keys carry a documented prefix of their own).
pub const TAG_PREFIX: &str = "finops/";

/// FOCUS text columns the grain does not carry: written, all null.
const NULL_TEXT: [&str; 18] = [
    "AvailabilityZone",
    "BillingAccountName",
    "BillingAccountType",
    "ChargeClass",
    "ChargeDescription",
    "CommitmentDiscountCategory",
    "CommitmentDiscountId",
    "CommitmentDiscountName",
    "CommitmentDiscountStatus",
    "CommitmentDiscountType",
    "ConsumedUnit",
    "PricingUnit",
    "RegionName",
    "ResourceName",
    "ResourceType",
    "SkuId",
    "SkuPriceId",
    "SubAccountName",
];

/// FOCUS quantities and unit prices, which the grain does not carry either: all null, typed
/// as the decimals they are.
const NULL_DECIMAL: [&str; 4] = ["ConsumedQuantity", "ContractedUnitPrice", "ListUnitPrice", "PricingQuantity"];

/// Text columns, in file order after the cost and time columns.
const TEXT: [&str; 26] = [
    "BillingAccountId",
    "BillingCurrency",
    "ChargeCategory",
    "HostProviderName",
    "InvoiceIssuerName",
    "PricingCategory",
    "ProviderName",
    "PublisherName",
    "RegionId",
    "ResourceId",
    "ServiceCategory",
    "ServiceName",
    "ServiceProviderName",
    "SubAccountId",
    "Tags",
    "AllocatedMethodId",
    "AllocatedMethodDetails",
    "AllocatedResourceId",
    "AllocatedResourceName",
    "AllocatedTags",
    "x_UsageType",
    "x_Operation",
    "x_InstanceType",
    "x_CostBasis",
    "x_Team",
    "x_AllocationKind",
];

/// Cost columns: FOCUS name and the basis it holds.
const COSTS: [(&str, CostBasis); 4] = [("BilledCost", CostBasis::Unblended), ("ContractedCost", CostBasis::NetUnblended), ("EffectiveCost", CostBasis::Amortized), ("ListCost", CostBasis::List)];

/// Time columns.
const TIMES: [&str; 4] = ["BillingPeriodStart", "BillingPeriodEnd", "ChargePeriodStart", "ChargePeriodEnd"];

/// What the output is made from.
pub struct FocusInput<'a> {
    pub rules: &'a RuleSet,
    pub allocation: &'a Allocation,
    /// Each origin charge's amounts at the five bases, by [`CostLine::origin`].
    pub bases: &'a [CostAmounts],
    pub owners: &'a AccountOwners,
}

/// One allocated row, before it is written.
struct Row<'a> {
    line: &'a CostLine,
    piece: &'a Piece,
    /// Position of the origin charge in the allocation's lines (`x_OriginChargeId`).
    origin: u32,
    costs: [Money; 4],
    ratio: Money,
}

impl<'a> FocusInput<'a> {
    /// The rows of the allocation's bill lines, in the allocation's order (line, team, rule),
    /// handed to `out` in batches.
    fn rows(&self, out: &mut dyn FnMut(&[Row<'a>]) -> std::io::Result<()>) -> std::io::Result<()> {
        let pieces = &self.allocation.pieces;
        let mut batch: Vec<Row<'a>> = Vec::with_capacity(BATCH_ROWS.min(pieces.len()));
        for of_line in pieces.chunk_by(|a, b| a.line == b.line) {
            let line = &self.allocation.lines[of_line[0].line as usize];
            if line.origin != CostLine::OFF_BILL {
                self.origin_rows(line, of_line[0].line, of_line, &mut batch);
                if batch.len() >= BATCH_ROWS {
                    out(&batch)?;
                    batch.clear();
                }
            }
        }
        if !batch.is_empty() {
            out(&batch)?;
        }
        Ok(())
    }

    /// The allocated rows of one origin charge: the pieces' amounts at the rules' basis, the
    /// other bases split exactly in the same proportions.
    fn origin_rows(&self, line: &'a CostLine, line_index: u32, pieces: &'a [Piece], batch: &mut Vec<Row<'a>>) {
        let origin = self.bases[line.origin as usize];
        let weights = finops_allocate::ledger::proportions(pieces);
        let ratios = split(Money::from_units(RATIO_UNITS), &weights);
        let by_basis: Vec<Vec<Money>> =
            COSTS.iter().map(|(_, basis)| if *basis == self.rules.cost_basis { pieces.iter().map(|p| p.amount).collect() } else { split(origin.get(*basis), &weights) }).collect();
        for (i, piece) in pieces.iter().enumerate() {
            batch.push(Row { line, piece, origin: line_index, costs: std::array::from_fn(|b| by_basis[b][i]), ratio: ratios[i] });
        }
    }
}

/// The text of one row's text columns, in [`TEXT`] order, with the JSON cells made once per
/// distinct value (a month repeats a few thousand tag sets and rules over millions of rows).
struct Texts<'r> {
    rules: &'r RuleSet,
    tag_keys: Vec<String>,
    /// Driver unit by share rule name.
    units: HashMap<&'r str, String>,
    /// `Tags` by the line's tag values (their code).
    tags: HashMap<u32, Option<Rc<str>>>,
    /// `AllocatedTags` by team and dimension values (their code).
    allocated: HashMap<(Option<usize>, u32), Rc<str>>,
    /// `AllocatedMethodDetails` after the ratio, by rule, method, driver and kind.
    details: HashMap<(u32, u32, Option<u32>, Kind), Rc<str>>,
    /// `ServiceCategory` by service (its code).
    categories: HashMap<u32, &'static str>,
    /// The four timestamps by billing period and day (their codes).
    times: HashMap<(u32, u32), [Option<i64>; 4]>,
    cells: [Option<Text<'r>>; 26],
}

/// One cell's text: borrowed from the allocation, shared from a cache, or made for the row.
#[derive(Clone)]
enum Text<'r> {
    Borrowed(&'r str),
    Shared(Rc<str>),
    Owned(String),
}

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            Text::Borrowed(s) => s,
            Text::Shared(s) => s,
            Text::Owned(s) => s,
        }
    }
}

impl<'r> Texts<'r> {
    fn new(rules: &'r RuleSet) -> Texts<'r> {
        let units = rules
            .share
            .iter()
            .map(|s| {
                let unit = match &s.method {
                    SplitMethod::Even => "Teams".to_string(),
                    SplitMethod::Fixed(_) => "Percent".to_string(),
                    SplitMethod::Proportional(_) => rules.currency.clone(),
                    SplitMethod::Metric(m) => m.unit.clone(),
                };
                (s.name.as_str(), unit)
            })
            .collect();
        Texts {
            rules,
            tag_keys: rules.tag_keys(),
            units,
            tags: HashMap::new(),
            allocated: HashMap::new(),
            details: HashMap::new(),
            categories: HashMap::new(),
            times: HashMap::new(),
            cells: Default::default(),
        }
    }

    /// `AllocatedMethodDetails`: `{"Elements":[{"AllocatedRatio":r,"UsageUnit":u,
    /// "UsageQuantity":q}],"x_Method":m}`. The unit and quantity where the driver is a number (a
    /// split's weight input; a percentage is written with its sign), the driver's text as
    /// `x_Driver` where it is a sentence (a GPU charge).
    fn details(&mut self, row: &Row) -> String {
        let p = row.piece;
        let key = (p.rule.code(), p.method.code(), p.driver.map(|d| d.code()), p.kind);
        let units = &self.units;
        let tail = self.details.entry(key).or_insert_with(|| {
            let driver = p.driver.as_deref();
            let quantity = |d: &str| d.trim().trim_end_matches('%').parse::<f64>().ok().filter(|q| q.is_finite());
            let mut element = String::new();
            if let (Some(quantity), Some(unit)) = (driver.and_then(quantity), units.get(&*p.rule)) {
                element = format!(",\"UsageUnit\":{},\"UsageQuantity\":{}", serde_json::json!(unit), serde_json::json!(quantity));
            } else if p.kind == Kind::Gpu {
                element = ",\"UsageUnit\":\"GPU-hours\"".to_string();
            }
            let sentence = driver.filter(|d| quantity(d).is_none()).map(|d| format!(",\"x_Driver\":{}", serde_json::json!(d))).unwrap_or_default();
            format!("{element}}}],\"x_Method\":{}{sentence}}}", serde_json::json!(&*p.method)).into()
        });
        // The ratio as Money prints it: at most 12 decimals, a valid JSON number.
        format!("{{\"Elements\":[{{\"AllocatedRatio\":{}{tail}", row.ratio)
    }

    /// A row's four timestamps (see [`TIMES`]), worked out once per period and day.
    fn times(&mut self, l: &CostLine) -> [Option<i64>; 4] {
        *self.times.entry((l.billing_period.code(), l.usage_date.code())).or_insert_with(|| times(l))
    }

    fn fill(&mut self, input: &'r FocusInput, row: &Row<'r>) {
        use Text::{Borrowed, Owned, Shared};
        let (l, p) = (row.line, row.piece);
        let rules = self.rules;
        let owner = input.owners.of(&l.account);
        let team = p.team.map(|t| rules.teams[t].name.as_str());
        let nonempty = |s: &'r str| (!s.trim().is_empty()).then_some(Borrowed(s));
        let provider = owner.provider.as_deref().map(Borrowed);
        let tag_keys = &self.tag_keys;
        let tags = self
            .tags
            .entry(l.tags.code())
            .or_insert_with(|| {
                let object: serde_json::Map<String, serde_json::Value> = tag_keys.iter().zip(l.tags.iter()).filter_map(|(k, v)| v.as_ref().map(|v| (k.clone(), serde_json::json!(&**v)))).collect();
                (!object.is_empty()).then(|| serde_json::Value::Object(object).to_string().into())
            })
            .clone();
        let allocated = self
            .allocated
            .entry((p.team, p.dims.code()))
            .or_insert_with(|| {
                let mut object = serde_json::Map::new();
                if let Some(team) = team {
                    object.insert(format!("{TAG_PREFIX}team"), serde_json::json!(team));
                }
                for (d, v) in rules.dimensions.iter().zip(p.dims.iter()) {
                    object.insert(format!("{TAG_PREFIX}{}", d.name), serde_json::json!(&**v));
                }
                serde_json::Value::Object(object).to_string().into()
            })
            .clone();
        let details = self.details(row);
        self.cells = [
            owner.billing_account.as_deref().map(Borrowed),
            Some(Borrowed(&rules.currency)),
            Some(Borrowed(&*l.charge_category)),
            provider.clone(),
            provider.clone(),
            focus_pricing_category(&l.pricing_category, &l.charge_category).map(Borrowed),
            provider.clone(),
            provider.clone(),
            nonempty(&l.region),
            nonempty(&l.resource),
            Some(Borrowed(*self.categories.entry(l.service.code()).or_insert_with(|| service_category(&l.service)))),
            Some(Borrowed(&*l.service)),
            provider,
            Some(Borrowed(&*l.account)),
            tags.map(Shared),
            Some(Borrowed(&*p.rule)),
            Some(Owned(details)),
            team.map(Borrowed),
            team.map(Borrowed),
            Some(Shared(allocated)),
            nonempty(&l.usage_type),
            nonempty(&l.operation),
            nonempty(&l.instance_type),
            Some(Borrowed(rules.cost_basis.name())),
            Some(Borrowed(team.unwrap_or(&rules.unallocated))),
            Some(Borrowed(kind_name(p.kind))),
        ];
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Direct => "direct",
        Kind::Shared => "shared",
        Kind::Gpu => "gpu",
    }
}

/// FOCUS `PricingCategory` of the grain's pricing category: on-demand is Standard, spot Dynamic,
/// a commitment Committed; none on a charge that is not usage (FOCUS: null for tax, credits and
/// purchases without a pricing model).
fn focus_pricing_category(ours: &str, charge_category: &str) -> Option<&'static str> {
    Some(match ours {
        s if s == PricingCategory::OnDemand.as_str() || s == "Standard" => "Standard",
        s if s == PricingCategory::Spot.as_str() || s == "Dynamic" => "Dynamic",
        s if s == PricingCategory::SavingsPlan.as_str() || s == PricingCategory::Reserved.as_str() || s == "Committed" => "Committed",
        "" if charge_category != "Usage" => return None,
        _ => "Other",
    })
}

/// FOCUS `ServiceCategory` from the service's name (a CUR product code or a FOCUS ServiceName):
/// the grain does not carry the source's category, so a known service gets its FOCUS category
/// and anything else `Other`.
pub fn service_category(service: &str) -> &'static str {
    const CATEGORIES: [(&str, &[&str]); 11] = [
        ("AI and Machine Learning", &["sagemaker", "bedrock", "machine learning", "rekognition", "comprehend", "textract", "polly", "transcribe"]),
        ("Analytics", &["athena", "glue", "redshift", "kinesis", "elasticmapreduce", "emr", "opensearch", "elasticsearch", "quicksight", "msk", "kafka"]),
        ("Databases", &["rds", "relational database", "dynamodb", "elasticache", "documentdb", "neptune", "aurora", "memorydb", "database", "db for"]),
        ("Identity", &["key management", "kms", "secrets manager", "cognito", "directory service"]),
        ("Security", &["waf", "security hub", "securityhub", "guardduty", "inspector", "shield", "macie"]),
        ("Management and Governance", &["cloudwatch", "cloudtrail", "config", "systems manager", "ssm", "organizations"]),
        ("Integration", &["sqs", "simple queue", "sns", "simple notification", "eventbridge", "events", "step functions", "stepfunctions", "mq"]),
        (
            "Networking",
            &[
                "cloudfront",
                "route 53",
                "route53",
                "virtual private cloud",
                "vpc",
                "load balancing",
                "elb",
                "api gateway",
                "apigateway",
                "directconnect",
                "direct connect",
                "network",
                "data transfer",
                "datatransfer",
            ],
        ),
        ("Storage", &["s3", "simple storage", "elastic file system", "efs", "fsx", "glacier", "backup", "storage", "ebs", "block_storage"]),
        ("Compute", &["ec2", "elastic compute", "lambda", "elastic container service", "ecs", "eks", "kubernetes", "fargate", "batch", "lightsail", "virtual machine", "compute", "on-prem"]),
        ("Developer Tools", &["codebuild", "codepipeline", "codecommit", "cloud9", "x-ray", "xray"]),
    ];
    let name = service.to_ascii_lowercase();
    let words: Vec<&str> = name.split(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_').filter(|w| !w.is_empty()).collect();
    // A needle of one word must be a word of the name (`ecs` is not in `Elastic...`); a longer
    // needle may be any part of it (`amazonec2` holds `ec2`).
    let holds =
        |needle: &str| if needle.contains(' ') { name.contains(needle) } else { words.iter().any(|w| *w == needle || (w.starts_with("amazon") || w.starts_with("aws")) && w.ends_with(needle)) };
    CATEGORIES.iter().find(|(_, needles)| needles.iter().any(|n| holds(n))).map_or("Other", |(c, _)| c)
}

/// Start and end of a billing period `YYYY-MM` and of a charge day `YYYY-MM-DD`, in ms since
/// 1970 (UTC).
fn period_bounds(period: &str) -> Option<(i64, i64)> {
    let start = chrono::NaiveDate::parse_from_str(&format!("{period}-01"), "%Y-%m-%d").ok()?;
    let end = start.checked_add_months(chrono::Months::new(1))?;
    Some((ms(start), ms(end)))
}

fn day_bounds(day: &str) -> Option<(i64, i64)> {
    let start = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?;
    Some((ms(start), ms(start.succ_opt()?)))
}

fn ms(day: chrono::NaiveDate) -> i64 {
    day.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc().timestamp_millis()
}

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string()).unwrap_or_default()
}

/// The four timestamps of a row (see [`TIMES`]).
fn times(l: &CostLine) -> [Option<i64>; 4] {
    let (bs, be) = period_bounds(&l.billing_period).unzip();
    let (cs, ce) = day_bounds(&l.usage_date).unzip();
    [bs, be, cs, ce]
}

/// Every column's name, in file order.
pub fn header() -> Vec<&'static str> {
    let mut names: Vec<&str> = COSTS.iter().map(|(n, _)| *n).collect();
    names.extend(TIMES);
    names.extend(TEXT);
    names.extend(NULL_TEXT);
    names.extend(NULL_DECIMAL);
    names.push("x_OriginChargeId");
    names
}

/// Writes `focus-allocated.parquet` into `out`, row group by row group.
pub fn write_parquet(input: &FocusInput, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let mut writer: Option<polars::io::parquet::write::BatchedWriter<&mut dyn std::io::Write>> = None;
    let mut out = Some(out);
    let mut texts = Texts::new(input.rules);
    let failed = |e: PolarsError| std::io::Error::other(e.to_string());
    input.rows(&mut |rows| {
        let frame = batch_frame(input, rows, &mut texts).map_err(failed)?;
        if writer.is_none() {
            let sink = out.take().expect("one writer");
            writer = Some(ParquetWriter::new(sink).with_compression(ParquetCompression::Zstd(None)).batched(frame.schema()).map_err(failed)?);
        }
        writer.as_mut().expect("made above").write_batch(&frame).map_err(failed)
    })?;
    match writer {
        Some(w) => w.finish().map(|_| ()).map_err(failed),
        // A month with no charge of the bill: the file still has its columns.
        None => {
            let mut frame = batch_frame(input, &[], &mut texts).map_err(failed)?;
            ParquetWriter::new(out.take().expect("unused")).finish(&mut frame).map(|_| ()).map_err(failed)
        }
    }
}

/// One batch of rows as a frame of the output's columns and types: costs `Decimal(38, 12)`,
/// times UTC milliseconds, the rest text.
fn batch_frame<'a>(input: &'a FocusInput, rows: &[Row<'a>], texts: &mut Texts<'a>) -> PolarsResult<DataFrame> {
    let n = rows.len();
    let mut columns: Vec<Column> = Vec::with_capacity(header().len());
    for (b, (name, _)) in COSTS.iter().enumerate() {
        let units: Int128Chunked = rows.iter().map(|r| Some(r.costs[b].units())).collect();
        columns.push(units.into_decimal_unchecked(38, finops_allocate::money::MONEY_SCALE as usize).into_series().with_name((*name).into()).into_column());
    }
    let stamps: Vec<[Option<i64>; 4]> = rows.iter().map(|r| texts.times(r.line)).collect();
    for (t, name) in TIMES.iter().enumerate() {
        let values: Int64Chunked = stamps.iter().map(|s| s[t]).collect();
        columns.push(values.into_datetime(TimeUnit::Milliseconds, Some(TimeZone::UTC)).into_series().with_name((*name).into()).into_column());
    }
    let mut builders: Vec<StringChunkedBuilder> = TEXT.iter().map(|name| StringChunkedBuilder::new((*name).into(), n)).collect();
    for row in rows {
        texts.fill(input, row);
        for (builder, cell) in builders.iter_mut().zip(&texts.cells) {
            match cell {
                Some(v) => builder.append_value(&**v),
                None => builder.append_null(),
            }
        }
    }
    columns.extend(builders.into_iter().map(|b| b.finish().into_series().into_column()));
    columns.extend(NULL_TEXT.iter().map(|name| Series::full_null((*name).into(), n, &DataType::String).into_column()));
    columns.extend(NULL_DECIMAL.iter().map(|name| Series::full_null((*name).into(), n, &DataType::Decimal(38, finops_allocate::money::MONEY_SCALE as usize)).into_column()));
    columns.push(UInt32Chunked::from_iter_values("x_OriginChargeId".into(), rows.iter().map(|r| r.origin)).into_series().into_column());
    DataFrame::new(n, columns)
}

/// Writes `focus-allocated.csv` (the same rows and columns, costs in full precision, times as
/// ISO 8601 UTC) into `out`.
pub fn write_csv(input: &FocusInput, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let header = header();
    let mut csv = CsvWriter::new(out, &header)?;
    let mut texts = Texts::new(input.rules);
    // Times are days and months: a few dozen texts.
    let mut stamps: HashMap<i64, String> = HashMap::new();
    input.rows(&mut |rows| {
        for row in rows {
            texts.fill(input, row);
            let costs = row.costs.map(|m| m.to_string());
            let times = texts.times(row.line).map(|t| t.map_or("", |t| stamps.entry(t).or_insert_with(|| iso(t)).as_str()).to_string());
            let origin = row.origin.to_string();
            let cells = costs
                .iter()
                .chain(&times)
                .map(String::as_str)
                .chain(texts.cells.iter().map(|c| c.as_deref().unwrap_or_default()))
                .chain(NULL_TEXT.iter().chain(&NULL_DECIMAL).map(|_| ""))
                .chain([origin.as_str()]);
            csv.row(cells)?;
        }
        Ok(())
    })
}
