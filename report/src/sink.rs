//! Where a month's outputs go. A month is replaced as a whole: files are written beside the
//! target and swapped in only when all of them, manifest last, are complete, so a failed run
//! leaves no half-written month behind.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// One output file of a month, by its path relative to the month folder (`teams/search.csv`).
pub struct OutputFile {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// Receives a complete month of outputs.
pub trait OutputSink {
    type Staging: MonthStaging;
    /// Starts a month: its files are written aside, invisible until published.
    fn stage(&self, month: &str) -> Result<Self::Staging>;

    /// Writes every file of `month` and makes them visible together. Returns where they are.
    fn publish(&self, month: &str, files: &[OutputFile]) -> Result<String> {
        let mut staging = self.stage(month)?;
        for file in files {
            if let Err(e) = staging.write(file) {
                staging.abandon();
                return Err(e);
            }
        }
        staging.publish()
    }
}

/// A month being written: files go in one at a time (so a large team's CSV need not wait in
/// memory for the others), then the month is published whole or abandoned.
pub trait MonthStaging {
    fn write(&mut self, file: &OutputFile) -> Result<()>;
    /// Makes every written file visible together; returns where the month is.
    fn publish(self) -> Result<String>;
    /// Removes what was written: a failed run leaves nothing behind.
    fn abandon(self);
}

/// A local output root, e.g. `out/`, holding one folder per month.
#[derive(Clone, Debug)]
pub struct LocalDir {
    pub root: PathBuf,
}

/// A month staged beside its target folder under a local output root.
pub struct LocalStaging {
    target: PathBuf,
    staging: PathBuf,
    retired: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io { path, source }
}

impl OutputSink for LocalDir {
    type Staging = LocalStaging;

    fn stage(&self, month: &str) -> Result<LocalStaging> {
        std::fs::create_dir_all(&self.root).map_err(io(&self.root))?;
        let staging = self.root.join(format!(".{month}.partial-{}", std::process::id()));
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(io(&staging))?;
        }
        std::fs::create_dir_all(&staging).map_err(io(&staging))?;
        Ok(LocalStaging {
            target: self.root.join(month),
            retired: self.root.join(format!(".{month}.old-{}", std::process::id())),
            staging,
        })
    }
}

impl MonthStaging for LocalStaging {
    fn write(&mut self, file: &OutputFile) -> Result<()> {
        let path = self.staging.join(crate::names::safe_relative_path(&file.name)?);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&path, &file.bytes).map_err(io(&path))
    }

    fn publish(self) -> Result<String> {
        // Swap: the old month (if any) steps aside, the new one takes its name, the old one goes.
        let LocalStaging { target, staging, retired } = self;
        if target.exists() {
            if let Err(source) = std::fs::rename(&target, &retired) {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(Error::Io { path: target, source });
            }
        }
        if let Err(source) = std::fs::rename(&staging, &target) {
            let _ = std::fs::rename(&retired, &target);
            let _ = std::fs::remove_dir_all(&staging);
            return Err(Error::Io { path: target, source });
        }
        if retired.exists() {
            std::fs::remove_dir_all(&retired).map_err(io(&retired))?;
        }
        Ok(target.display().to_string())
    }

    fn abandon(self) {
        let _ = std::fs::remove_dir_all(&self.staging);
    }
}

/// A local folder or an S3 prefix: the output root a job was given.
#[derive(Clone, Debug)]
pub enum OutputRoot {
    Local(LocalDir),
    S3(crate::s3::S3Dir),
}

/// A month being written to either kind of root.
pub enum AnyStaging {
    Local(LocalStaging),
    S3(crate::s3::S3Staging),
}

impl OutputSink for OutputRoot {
    type Staging = AnyStaging;

    fn stage(&self, month: &str) -> Result<AnyStaging> {
        Ok(match self {
            OutputRoot::Local(dir) => AnyStaging::Local(dir.stage(month)?),
            OutputRoot::S3(dir) => AnyStaging::S3(dir.stage(month)?),
        })
    }
}

impl MonthStaging for AnyStaging {
    fn write(&mut self, file: &OutputFile) -> Result<()> {
        match self {
            AnyStaging::Local(s) => s.write(file),
            AnyStaging::S3(s) => s.write(file),
        }
    }

    fn publish(self) -> Result<String> {
        match self {
            AnyStaging::Local(s) => s.publish(),
            AnyStaging::S3(s) => s.publish(),
        }
    }

    fn abandon(self) {
        match self {
            AnyStaging::Local(s) => s.abandon(),
            AnyStaging::S3(s) => s.abandon(),
        }
    }
}

impl OutputRoot {
    /// A published file of a month (`None` when absent): what the report's trend and
    /// `finops report` read.
    pub fn read(&self, month: &str, name: &str) -> Result<Option<Vec<u8>>> {
        match self {
            OutputRoot::Local(dir) => match std::fs::read(dir.root.join(month).join(name)) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(source) => Err(Error::Io { path: dir.root.join(month).join(name), source }),
            },
            OutputRoot::S3(dir) => dir.get(&format!("{month}/{name}")),
        }
    }

    /// Where the alerts' state is kept.
    pub fn state(&self) -> crate::slack::StateRoot {
        match self {
            OutputRoot::Local(dir) => crate::slack::StateRoot::Local(dir.root.clone()),
            OutputRoot::S3(dir) => crate::slack::StateRoot::S3(dir.clone()),
        }
    }

    /// Writes a file outside any month (a daily check's `alerts/<day>.json`), whole.
    pub fn put(&self, name: &str, bytes: &[u8]) -> Result<String> {
        match self {
            OutputRoot::Local(dir) => {
                let path = dir.root.join(crate::names::safe_relative_path(name)?);
                let staged = path.with_extension("partial");
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(io(parent))?;
                }
                std::fs::write(&staged, bytes).and_then(|()| std::fs::rename(&staged, &path)).map_err(io(&path))?;
                Ok(path.display().to_string())
            }
            OutputRoot::S3(dir) => {
                crate::names::safe_relative_path(name)?;
                dir.put(name, bytes)?;
                Ok(dir.uri(name))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, text: &str) -> OutputFile {
        OutputFile { name: name.into(), bytes: text.as_bytes().to_vec() }
    }

    #[test]
    fn replaces_a_month_whole() {
        let dir = tempfile::tempdir().unwrap();
        let sink = LocalDir { root: dir.path().to_path_buf() };
        sink.publish("2025-10", &[file("a.csv", "1"), file("old.csv", "x")]).unwrap();
        sink.publish("2025-10", &[file("a.csv", "2"), file("teams/t.csv", "3")]).unwrap();
        let month = dir.path().join("2025-10");
        assert_eq!(std::fs::read_to_string(month.join("a.csv")).unwrap(), "2");
        assert!(!month.join("old.csv").exists(), "files of the previous run must not linger");
        assert!(month.join("teams/t.csv").exists());
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("2025-10")]);
    }

    #[test]
    fn a_failed_write_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let sink = LocalDir { root: dir.path().to_path_buf() };
        let result = sink.publish("2025-11", &[file("ok.csv", "1"), file("../escape.csv", "2")]);
        assert!(result.is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "no partial month may remain");
    }
}
