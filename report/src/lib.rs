//! Outbound: the month's CSVs and manifest, written through an [`sink::OutputSink`] that
//! publishes a month whole or not at all.
//!
//! ```
//! use finops_report::csv::CsvBuilder;
//! let mut csv = CsvBuilder::new(&["team", "total"]);
//! csv.row(["=cmd", "1.00"]);
//! assert!(String::from_utf8(csv.into_bytes()).unwrap().contains("'=cmd"));
//! ```

pub mod allocation;
pub mod csv;
pub mod gpu;
pub mod manifest;
pub mod names;
pub mod pdf;
pub mod s3;
pub mod slack;
pub mod sink;
pub mod summary;

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}", path = path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("refusing to write `{0}`: output names must be plain relative paths")]
    UnsafeName(String),
    #[error("report.pdf: {0}")]
    Report(String),
}
