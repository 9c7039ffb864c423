//! Independent readers for the tests: a plain RFC 4180 CSV parser and exact decimals through
//! rust_decimal, so that what the tests compare against does not share code with `ingest`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use rust_decimal::Decimal;

pub fn workspace() -> PathBuf {
    Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR for tests and benchmarks")).join("..")
}

pub fn shared_data() -> PathBuf {
    let path = workspace().join("../shared/data/focus-1.0/focus_sample.csv");
    assert!(path.exists(), "{} is missing: the tests read the shared FOCUS sample that sits beside the repository (../shared/data)", path.display());
    path
}

/// Parses CSV text into rows of fields (quotes, doubled quotes, commas and newlines in quotes).
pub fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

/// Rows as maps from header to field.
pub fn csv_records(text: &str) -> Vec<std::collections::HashMap<String, String>> {
    let rows = parse_csv(text);
    let header = rows[0].clone();
    rows[1..].iter().map(|r| header.iter().cloned().zip(r.iter().cloned()).collect()).collect()
}

pub fn dec(text: &str) -> Decimal {
    let t = text.trim();
    if t.is_empty() || t == "NULL" {
        Decimal::ZERO
    } else {
        t.parse::<Decimal>().or_else(|_| Decimal::from_scientific(t)).unwrap_or_else(|e| panic!("{t}: {e}"))
    }
}

/// The decimal a float column means: its shortest round-trip text.
pub fn dec_f64(x: f64) -> Decimal {
    dec(&format!("{x}"))
}

pub fn money_dec(m: finops_allocate::Money) -> Decimal {
    m.to_string().parse().unwrap()
}
