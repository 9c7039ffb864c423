//! The publishing interface (docs/publishing.md): a month's files, the records the manifest
//! keeps of them, and the sink a month is published through. A leaf: every output root and the
//! manifest build on it.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Result;

/// The lowercase hex SHA-256 the manifest records for files and rules.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileRecord {
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
    /// Where the bytes are stored, relative to the month's folder, when not at `name` (in S3,
    /// `v/<run>/<name>`: the version that wrote them; docs/publishing.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
}

impl FileRecord {
    pub fn of(file: &OutputFile) -> FileRecord {
        FileRecord { name: file.name.clone(), bytes: file.bytes.len() as u64, sha256: sha256_hex(&file.bytes), object: None }
    }

    /// The stored object's path relative to the month's folder.
    pub fn stored_at(&self) -> &str {
        self.object.as_deref().unwrap_or(&self.name)
    }
}

/// Something that writes a file's bytes into the writer it is given.
pub type Fill<'a> = dyn FnMut(&mut dyn std::io::Write) -> std::io::Result<()> + 'a;

/// Counts and hashes what passes through it, for a file's record written as a stream.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: std::io::Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter { inner, hasher: Sha256::new(), bytes: 0 }
    }

    /// The record of what was written as `name`, and the writer, flushed.
    pub fn finish(mut self, name: &str) -> std::io::Result<(FileRecord, W)> {
        self.inner.flush()?;
        let sha256 = self.hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Ok((FileRecord { name: name.to_string(), bytes: self.bytes, sha256, object: None }, self.inner))
    }
}

impl<W: std::io::Write> std::io::Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes the file `fill` makes to `path` (buffered), and returns its record as `name`.
pub fn stream_to_file(path: &std::path::Path, name: &str, fill: &mut Fill) -> std::io::Result<FileRecord> {
    let mut out = HashingWriter::new(std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?));
    fill(&mut out)?;
    out.finish(name).map(|(record, _)| record)
}

/// One output file of a month, by its path relative to the month folder (`teams/search.csv`).
pub struct OutputFile {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// What a publish did.
#[derive(Clone, Debug)]
pub struct Published {
    /// Where the month is (a folder, or `s3://bucket/prefix/YYYY-MM`).
    pub location: String,
    /// False when the new outputs equal the published ones: nothing was written.
    pub changed: bool,
    /// Superseded objects that could not be removed (no reader reaches them).
    pub superseded_left: Vec<String>,
}

/// Receives a complete month of outputs.
pub trait OutputSink {
    type Staging: MonthStaging;
    /// Starts a month: its files are written aside, invisible until published.
    fn stage(&self, month: &str) -> Result<Self::Staging>;

    /// Writes every file of `month`, then `manifest(records)` as the commit.
    fn publish(&self, month: &str, files: &[OutputFile], manifest: &dyn Fn(&[FileRecord]) -> OutputFile) -> Result<Published> {
        let mut staging = self.stage(month)?;
        let mut records = Vec::new();
        for file in files {
            match staging.write(file) {
                Ok(record) => records.push(record),
                Err(e) => {
                    staging.abandon();
                    return Err(e);
                }
            }
        }
        staging.publish(&manifest(&records))
    }
}

/// A month being written: files go in one at a time (so a large team's CSV need not wait in
/// memory for the others), then the manifest publishes them together, or all is abandoned.
pub trait MonthStaging {
    /// Writes one file of the new version; returns its manifest record (with where it is
    /// stored).
    fn write(&mut self, file: &OutputFile) -> Result<FileRecord>;
    /// Writes one file as `fill` makes it, never holding the whole file in memory: a team's CSV
    /// of a month where every line is its own grain row runs to hundreds of megabytes.
    fn write_streamed(&mut self, name: &str, fill: &mut Fill) -> Result<FileRecord>;
    /// The manifest of the published version this one replaces, as read when staging began
    /// (`None` for a month not published yet).
    fn replaces(&self) -> Option<&[u8]>;
    /// Writes `manifest` (its records from [`MonthStaging::write`]), which makes the new
    /// version the month, then removes what it superseded. On error nothing published changed.
    fn publish(self, manifest: &OutputFile) -> Result<Published>;
    /// Removes what was written: a failed run leaves the published month as it was.
    fn abandon(self);
}

#[cfg(test)]
mod streamed {
    use std::io::Write;

    use super::*;

    /// A file written as a stream gets the record of the same bytes written whole.
    #[test]
    fn a_streamed_record_equals_the_whole_files() {
        let bytes: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let mut out = HashingWriter::new(Vec::new());
        for chunk in bytes.chunks(777) {
            out.write_all(chunk).unwrap();
        }
        let (record, written) = out.finish("teams/search.csv").unwrap();
        assert_eq!(written, bytes);
        assert_eq!(record, FileRecord::of(&OutputFile { name: "teams/search.csv".into(), bytes }));
    }
}
