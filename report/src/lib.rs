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
pub mod commitments;
pub mod csv;
pub mod diff;
pub mod dimensions;
pub mod focus;
pub mod gpu;
pub mod lock;
pub mod manifest;
pub mod names;
pub mod pdf;
pub mod publish;
pub mod s3;
pub mod sink;
pub mod slack;
pub mod summary;
pub mod untagged;

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}", path = path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("refusing to write `{0}`: output names must be plain relative paths")]
    UnsafeName(String),
    /// The PDF could not be laid out.
    #[error("report.pdf: {0}")]
    Report(String),
    #[error("{uri}: could not {action} on S3: {detail}")]
    S3 { uri: String, action: &'static str, detail: String, retryable: bool },
    /// A published file (a manifest, the alerts' state) that cannot be read as what it is.
    #[error("{at}: {detail}")]
    Invalid { at: String, detail: String },
    /// Another run holds the lock (docs/publishing.md): nothing was written.
    #[error("{what} is held by {holder} since {since} (until {expires} at the latest): {advice}")]
    Busy { what: String, holder: String, since: String, expires: String, advice: &'static str },
    #[error("Slack: {0}")]
    Slack(String),
}

impl Error {
    /// Whether running the job again can help: storage and network faults and a held lock
    /// pass; bad names, unreadable published files and layout failures do not.
    pub fn retryable(&self) -> bool {
        match self {
            Error::Io { .. } | Error::Busy { .. } | Error::Slack(_) => true,
            Error::S3 { retryable, .. } => *retryable,
            Error::UnsafeName(_) | Error::Report(_) | Error::Invalid { .. } => false,
        }
    }
}
