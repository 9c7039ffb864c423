//! Scanning one staged file lazily, reading its columns by name with typed, checked conversions,
//! and the check pass that turns a bad cell into an error naming file, line and column.

use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use finops_allocate::money::MONEY_SCALE;
use polars::prelude::*;

use crate::frame::money_dtype;
use crate::store::StagedFile;
use crate::{Error, Result};

/// Row number within its file (0-based), added before anything filters rows.
pub(crate) const ROW: &str = "__row";
/// The column of a row's first bad cell; null when the row is clean. Only the name: the value is
/// read back for the one cell an error names, not made into text on every row.
pub(crate) const BAD: &str = "__bad";

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum FileKind {
    Parquet,
    Csv,
    CsvGz,
}

impl FileKind {
    pub(crate) fn of(key: &str) -> Option<FileKind> {
        let lower = key.to_ascii_lowercase();
        if lower.ends_with(".parquet") {
            Some(FileKind::Parquet)
        } else if lower.ends_with(".csv") {
            Some(FileKind::Csv)
        } else if lower.ends_with(".csv.gz") {
            Some(FileKind::CsvGz)
        } else {
            None
        }
    }

    pub(crate) fn is_csv(self) -> bool {
        matches!(self, FileKind::Csv | FileKind::CsvGz)
    }
}

/// One input file opened for a lazy scan, with its schema already read (so a corrupt file or a
/// missing column is reported before any query runs).
pub(crate) struct SourceFile {
    pub staged: StagedFile,
    pub kind: FileKind,
    pub frame: LazyFrame,
    pub schema: SchemaRef,
}

impl SourceFile {
    /// Opens a staged file. CSV is read as text throughout: amounts are parsed exactly later, and a
    /// bad cell must become a clear error rather than a guessed type. `.csv.gz` is inflated into
    /// `scratch` first.
    pub(crate) fn open(staged: StagedFile, null_texts: &[&str], scratch: &Path) -> Result<SourceFile> {
        let kind = FileKind::of(&staged.key).ok_or_else(|| Error::Unreadable { file: staged.display.clone(), message: "not a .parquet, .csv or .csv.gz file".into() })?;
        let unreadable = |e: PolarsError| Error::Unreadable { file: staged.display.clone(), message: e.to_string() };
        let path = match kind {
            FileKind::CsvGz => inflate(&staged, scratch)?,
            _ => staged.path.clone(),
        };
        let pl_path = PlRefPath::try_from_path(&path).map_err(unreadable)?;
        let frame = match kind {
            FileKind::Parquet => LazyFrame::scan_parquet(pl_path, ScanArgsParquet::default()).map_err(unreadable)?,
            FileKind::Csv | FileKind::CsvGz => {
                let nulls = NullValues::AllColumns(null_texts.iter().map(|s| PlSmallStr::from(*s)).collect());
                LazyCsvReader::new(pl_path).with_has_header(true).with_infer_schema_length(Some(0)).with_null_values(Some(nulls)).finish().map_err(unreadable)?
            }
        };
        let mut frame = frame;
        let schema = frame.collect_schema().map_err(unreadable)?;
        let frame = frame.with_row_index(ROW, None);
        Ok(SourceFile { staged, kind, frame, schema })
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.schema.contains(name)
    }

    /// The column names as the file spells them.
    pub(crate) fn names(&self) -> Vec<String> {
        self.schema.iter_names().map(|n| n.to_string()).collect()
    }

    /// Fails with the file and the column when a required column is absent; when the file is
    /// plainly another format's (a CUR file read as FOCUS, or the reverse), says that instead.
    pub(crate) fn require(&self, name: &str, format: &str) -> Result<()> {
        if self.has(name) {
            return Ok(());
        }
        let reading_focus = format.starts_with("FOCUS");
        let other = if reading_focus {
            ["line_item_unblended_cost", "lineItem/UnblendedCost", "line_item_line_item_type"]
                .into_iter()
                .find(|c| self.has(c))
                .map(|c| (c, "a CUR file (CUR 2.0 or legacy)", "cur2 (legacy CUR: cur)"))
        } else {
            ["BilledCost", "EffectiveCost", "ChargeCategory"].into_iter().find(|c| self.has(c)).map(|c| (c, "a FOCUS file", "focus"))
        };
        Err(match other {
            Some((evidence, found, use_format)) => {
                Error::WrongFormat { file: self.staged.display.clone(), found: found.into(), asked: format.into(), evidence: evidence.into(), use_format: use_format.into() }
            }
            None => Error::MissingColumn { file: self.staged.display.clone(), column: name.to_string(), format: format.to_string() },
        })
    }

    /// A text column, trimmed; empty string where the column or the cell is missing.
    pub(crate) fn text(&self, name: &str) -> Expr {
        match self.schema.get(name) {
            None => lit(""),
            Some(DataType::String) => polars::prelude::col(name).str().strip_chars(lit(NULL)).fill_null(lit("")),
            Some(_) => polars::prelude::col(name).cast(DataType::String).fill_null(lit("")),
        }
    }

    /// A text column or null where absent (for coalescing alternatives).
    pub(crate) fn text_or_null(&self, name: &str) -> Option<Expr> {
        self.has(name).then(|| self.text(name))
    }

    /// An amount column as exact money plus an expression that names the first bad cell.
    /// Empty cells are zero; text that is not a number, NaN and infinities are errors.
    pub(crate) fn money(&self, name: &str) -> Result<Checked> {
        let raw = polars::prelude::col(name);
        let (value, bad) = match self.schema.get(name) {
            None => return Ok(Checked { value: lit(0).cast(money_dtype()), bad: None }),
            Some(DataType::String) => {
                let trimmed = raw.clone().str().strip_chars(lit(NULL));
                let parsed = trimmed.clone().cast(money_dtype());
                let bad = trimmed.clone().is_not_null().and(trimmed.neq(lit(""))).and(parsed.clone().is_null());
                (parsed, Some(bad))
            }
            Some(DataType::Float64 | DataType::Float32) => {
                // Non-finite or beyond Decimal(38, 12): an error naming the cell, never a zero.
                let bad = raw.clone().is_nan().or(raw.clone().is_infinite()).or(raw.clone().gt_eq(lit(MAX_MONEY))).or(raw.clone().lt_eq(lit(-MAX_MONEY)));
                let parsed = raw.clone().cast(DataType::Float64).map(floats_to_money, |_, field| Ok(Field::new(field.name().clone(), money_dtype())));
                (parsed, Some(bad))
            }
            Some(dtype) if dtype.is_primitive_numeric() || dtype.is_decimal() => (raw.clone().cast(money_dtype()), None),
            Some(dtype) => return Err(Error::WrongType { file: self.staged.display.clone(), column: name.to_string(), found: dtype.to_string(), expected: "a number".into() }),
        };
        let bad = bad.map(|flag| Check { column: name.to_string(), flag });
        Ok(Checked { value: value.fill_null(lit(0).cast(money_dtype())), bad })
    }

    /// A timestamp column as `Datetime(us)` in UTC. Text in the common export spellings
    /// (`2025-10-01T00:00:00Z`, `2025-10-01T00:00:00.000Z`, `2025-10-01 00:00:00`) is accepted.
    pub(crate) fn timestamp(&self, name: &str) -> Result<Checked> {
        let raw = polars::prelude::col(name);
        let datetime = DataType::Datetime(TimeUnit::Microseconds, None);
        match self.schema.get(name) {
            None => Ok(Checked { value: lit(NULL).cast(datetime), bad: None }),
            Some(DataType::String) => {
                let trimmed = raw.clone().str().strip_chars(lit(NULL));
                let normalised = trimmed.clone().str().replace_all(lit("T"), lit(" "), true).str().head(lit(19));
                let options = StrptimeOptions { format: Some("%Y-%m-%d %H:%M:%S".into()), strict: false, exact: true, cache: true };
                let parsed = normalised.str().strptime(datetime, options, lit("raise"));
                let flag = trimmed.clone().is_not_null().and(trimmed.neq(lit(""))).and(parsed.clone().is_null());
                Ok(Checked { value: parsed, bad: Some(Check { column: name.to_string(), flag }) })
            }
            Some(DataType::Datetime(_, _)) => Ok(Checked { value: raw.cast(datetime), bad: None }),
            Some(DataType::Date) => Ok(Checked { value: raw.cast(datetime), bad: None }),
            Some(dtype) => Err(Error::WrongType { file: self.staged.display.clone(), column: name.to_string(), found: dtype.to_string(), expected: "a timestamp".into() }),
        }
    }
}

/// Magnitude from which an amount no longer fits `Decimal(38, 12)`.
pub(crate) const MAX_MONEY: f64 = 1e26;

/// A float column as exact money: each double becomes the decimal the exporter meant — its
/// shortest round-trip text (0.1 stays 0.1, not 0.1000000000000000055) — rounded to 12 places.
/// Non-finite and out-of-range values become null (the check column names them).
fn floats_to_money(column: Column) -> PolarsResult<Column> {
    let floats = column.f64()?;
    let units: Int128Chunked = floats.iter().map(|v| v.and_then(float_units)).collect();
    let decimals = units.into_decimal_unchecked(38, MONEY_SCALE as usize);
    Ok(decimals.into_series().with_name(column.name().clone()).into_column())
}

/// The 10^-12 units of a double's shortest round-trip decimal, rounded half away from zero.
///
/// Below 2^10 in magnitude the product `x * 10^12` is computed with an error under 0.2 units
/// (the double's own spacing there is at most 2^-42), so rounding it lands on the same integer as
/// the shortest decimal: no text needed for the common case. Larger amounts go through the text.
pub(crate) fn float_units(x: f64) -> Option<i128> {
    if x == 0.0 {
        return Some(0);
    }
    if !x.is_finite() || x.abs() >= MAX_MONEY {
        return None;
    }
    if x.abs() < 1024.0 {
        return Some((x * 1e12).round() as i128);
    }
    // `{}` prints the shortest text that reads back as the same double, never in exponent form.
    let text = format!("{x}");
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.as_str()),
    };
    let (int_part, frac_part) = digits.split_once('.').unwrap_or((digits, ""));
    let mut units: i128 = int_part.parse::<i128>().ok()? * 10i128.pow(MONEY_SCALE);
    let kept = &frac_part[..frac_part.len().min(MONEY_SCALE as usize)];
    if !kept.is_empty() {
        units += kept.parse::<i128>().ok()? * 10i128.pow(MONEY_SCALE - kept.len() as u32);
    }
    if frac_part.as_bytes().get(MONEY_SCALE as usize).is_some_and(|d| *d >= b'5') {
        units += 1;
    }
    Some(if negative { -units } else { units })
}

/// A cell check: the column it names, and a flag that is true on a bad cell.
#[derive(Clone)]
pub(crate) struct Check {
    pub column: String,
    pub flag: Expr,
}

/// A converted column and, where conversion can fail, what names the failing cell.
pub(crate) struct Checked {
    pub value: Expr,
    pub bad: Option<Check>,
}

/// Flags a cell that must not be empty (a key the month is grouped by: an account, a billing
/// period): a null or blank one would silently become an "" group. Only text can be blank.
pub(crate) fn required_cell(file: &SourceFile, name: &str) -> Option<Check> {
    let raw = polars::prelude::col(name);
    let missing = match file.schema.get(name) {
        None => return None,
        Some(DataType::String) => raw.clone().is_null().or(raw.str().strip_chars(lit(NULL)).eq(lit(""))),
        Some(_) => raw.is_null(),
    };
    Some(Check { column: name.to_string(), flag: missing })
}

/// The first bad cell of a row, over all checked columns.
pub(crate) fn first_bad(checks: impl IntoIterator<Item = Option<Check>>) -> Expr {
    let named: Vec<Expr> = checks.into_iter().flatten().map(|c| when(c.flag).then(lit(c.column)).otherwise(lit(NULL).cast(DataType::String))).collect();
    if named.is_empty() {
        lit(NULL).cast(DataType::String)
    } else {
        coalesce(&named)
    }
}

/// Whether any check failed on a row: what the one pass counts (no text per row).
pub(crate) fn any_bad(checks: impl IntoIterator<Item = Option<Check>>) -> Expr {
    checks.into_iter().flatten().map(|c| c.flag).reduce(|a, b| a.or(b)).unwrap_or(lit(false)).fill_null(lit(false))
}

/// `YYYY-MM` of a timestamp expression.
pub(crate) fn month_of(timestamp: Expr) -> Expr {
    timestamp.dt().strftime("%Y-%m")
}

/// Names the first bad cell of the month's files (file, row or line, column, value), one narrow
/// query per file: the one pass only counts bad lines, this runs when it counted some.
pub(crate) fn check_files(files: &[SourceFile], checked: &[LazyFrame]) -> Result<()> {
    for (file, frame) in files.iter().zip(checked) {
        let summary = crate::frame::collect_streaming(frame.clone().select([
            polars::prelude::col(ROW).filter(polars::prelude::col(BAD).is_not_null()).first().alias("bad_row"),
            polars::prelude::col(BAD).filter(polars::prelude::col(BAD).is_not_null()).first().alias("bad_cell"),
        ]))
        .map_err(|e| Error::Unreadable { file: file.staged.display.clone(), message: e.to_string() })?;
        let bad_cell = summary.column("bad_cell").ok().and_then(|c| c.str().ok()?.get(0).map(str::to_string));
        if let Some(cell) = bad_cell {
            let row = summary.column("bad_row").ok().and_then(|c| c.cast(&DataType::UInt64).ok()?.u64().ok()?.get(0)).unwrap_or(0);
            let column = cell.as_str();
            let value = bad_value(file, row, column);
            let position = position(file, row);
            return Err(Error::BadValue { file: file.staged.display.clone(), position, column: column.to_string(), value: value.to_string() });
        }
    }
    Ok(())
}

/// Where a row is, as a person finds it: CSV data row 0 is line 2 (after the header); parquet
/// rows count from 1.
pub(crate) fn position(file: &SourceFile, row: u64) -> String {
    if file.kind.is_csv() {
        format!("line {}", row + 2)
    } else {
        format!("row {}", row + 1)
    }
}

/// The text of one cell, for an error message: `null` or `(empty)` when there is none.
pub(crate) fn bad_value(file: &SourceFile, row: u64, column: &str) -> String {
    let cell = file
        .frame
        .clone()
        .filter(polars::prelude::col(ROW).cast(DataType::UInt64).eq(lit(row)))
        .select([polars::prelude::col(column).cast(DataType::String)])
        .collect()
        .ok()
        .and_then(|df| df.column(column).ok()?.str().ok()?.get(0).map(str::to_string));
    match cell {
        None => "null".into(),
        Some(text) if text.trim().is_empty() => "(empty)".into(),
        Some(text) => text,
    }
}

fn inflate(staged: &StagedFile, scratch: &Path) -> Result<PathBuf> {
    let name = staged.key.replace('/', "__");
    let target = scratch.join(name.trim_end_matches(".gz"));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    let input = std::fs::File::open(&staged.path).map_err(io(&staged.path))?;
    let mut decoder = flate2::read::MultiGzDecoder::new(BufReader::new(input));
    let mut output = BufWriter::new(std::fs::File::create(&target).map_err(io(&target))?);
    std::io::copy(&mut decoder, &mut output).map_err(|e| Error::Unreadable { file: staged.display.clone(), message: format!("not a readable gzip file: {e}") })?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::float_units;

    #[test]
    fn floats_become_the_decimal_they_print_as() {
        // Each double reads as its shortest decimal, exactly, small or large.
        for (x, units) in [
            (0.1, 100_000_000_000i128),
            (-0.1, -100_000_000_000),
            (0.0000000001, 100),
            (1023.9999999999, 1_023_999_999_999_900),
            (12345.67, 12_345_670_000_000_000),
            (-98765.4321, -98_765_432_100_000_000),
            (1e20, 100_000_000_000_000_000_000_000_000_000_000),
        ] {
            assert_eq!(float_units(x), Some(units), "{x}");
        }
        for x in [f64::NAN, f64::INFINITY, -f64::INFINITY, 1e26, -2e30] {
            assert_eq!(float_units(x), None, "{x}");
        }
    }

    #[test]
    fn fast_path_agrees_with_the_text_below_1024() {
        // The fast path (x * 10^12, rounded) equals the shortest text for every double with
        // at most 12 decimals below 1024: a sweep over many such amounts.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let decimals = (state % 13) as u32;
            let units = (state >> 20) as i128 % (1_024 * 10i128.pow(decimals));
            let text = format!("{}.{:0width$}", units / 10i128.pow(decimals), units % 10i128.pow(decimals), width = decimals as usize);
            let x: f64 = text.parse().unwrap();
            let expected: finops_allocate::Money = format!("{x}").parse().unwrap();
            assert_eq!(float_units(x), Some(expected.units()), "{text}");
        }
    }
}
