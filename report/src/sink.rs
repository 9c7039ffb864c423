//! Where a month's outputs go, published as a commit (docs/publishing.md): a month's files are
//! written beside the published version, and its `manifest.json`, written last, is what makes
//! them the month. Until then the previous version stays whole; a failed run leaves it byte for
//! byte as it was, and a run whose outputs equal the published ones changes nothing.

use std::path::{Path, PathBuf};

use crate::manifest::PublishedFiles;
pub use crate::publish::{FileRecord, MonthStaging, OutputFile, OutputSink, Published};
use crate::{Error, Result};

/// A local output root, e.g. `out/`, holding one folder per month.
#[derive(Clone, Debug)]
pub struct LocalDir {
    pub root: PathBuf,
}

/// A month staged beside its target folder under a local output root. The folder keeps the
/// plain layout (`out/2025-10/teams/search.csv`): publishing swaps the staged folder in with two
/// renames, and a crash between them is repaired by the next run, which puts the retired
/// folder back before anything else.
pub struct LocalStaging {
    target: PathBuf,
    staging: PathBuf,
    retired: PathBuf,
    /// The published month's manifest when staging began.
    published: Option<Vec<u8>>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io { path, source }
}

impl LocalDir {
    /// Refuses a root that is a file: the months are published under a folder.
    pub fn check(&self) -> Result<()> {
        if self.root.exists() && !self.root.is_dir() {
            return Err(Error::Invalid { at: self.root.display().to_string(), detail: "is a file, not a folder: --out (or [output] location) names the folder the months are published under".into() });
        }
        Ok(())
    }

    /// A month folder that a crash left retired with no successor is put back.
    fn repair(&self, month: &str) -> Result<()> {
        let target = self.root.join(month);
        if target.exists() {
            return Ok(());
        }
        let prefix = format!(".{month}.old-");
        let Ok(entries) = std::fs::read_dir(&self.root) else { return Ok(()) };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with(&prefix) && path.join("manifest.json").exists() {
                tracing::warn!(from = %path.display(), to = %target.display(), "restoring a published month a crashed run left aside");
                return std::fs::rename(&path, &target).map_err(io(&target));
            }
        }
        Ok(())
    }
}

impl OutputSink for LocalDir {
    type Staging = LocalStaging;

    fn stage(&self, month: &str) -> Result<LocalStaging> {
        self.check()?;
        std::fs::create_dir_all(&self.root).map_err(io(&self.root))?;
        self.repair(month)?;
        let staging = self.root.join(format!(".{month}.partial-{}", std::process::id()));
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(io(&staging))?;
        }
        std::fs::create_dir_all(&staging).map_err(io(&staging))?;
        let target = self.root.join(month);
        let published = std::fs::read(target.join("manifest.json")).ok();
        Ok(LocalStaging { retired: self.root.join(format!(".{month}.old-{}", std::process::id())), target, staging, published })
    }
}

impl MonthStaging for LocalStaging {
    fn write(&mut self, file: &OutputFile) -> Result<FileRecord> {
        self.write_streamed(&file.name, &mut |out| out.write_all(&file.bytes))
    }

    fn write_streamed(&mut self, name: &str, fill: &mut crate::publish::Fill) -> Result<FileRecord> {
        let path = self.staging.join(crate::names::safe_relative_path(name)?);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        crate::publish::stream_to_file(&path, name, fill).map_err(io(&path))
    }

    fn replaces(&self) -> Option<&[u8]> {
        self.published.as_deref()
    }

    fn publish(self, manifest: &OutputFile) -> Result<Published> {
        let LocalStaging { target, staging, retired, published } = self;
        let location = target.display().to_string();
        if published.is_some_and(|published| published == manifest.bytes) {
            // The manifest records every file's hash: equal manifests, equal months.
            let _ = std::fs::remove_dir_all(&staging);
            return Ok(Published { location, changed: false, superseded_left: Vec::new() });
        }
        let path = staging.join("manifest.json");
        if let Err(source) = std::fs::write(&path, &manifest.bytes) {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(Error::Io { path, source });
        }
        // Swap: the old month (if any) steps aside, the new one takes its name, the old one goes.
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
        let mut superseded_left = Vec::new();
        if retired.exists() && std::fs::remove_dir_all(&retired).is_err() {
            superseded_left.push(retired.display().to_string());
        }
        Ok(Published { location, changed: true, superseded_left })
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
    fn write(&mut self, file: &OutputFile) -> Result<FileRecord> {
        match self {
            AnyStaging::Local(s) => s.write(file),
            AnyStaging::S3(s) => s.write(file),
        }
    }

    fn write_streamed(&mut self, name: &str, fill: &mut crate::publish::Fill) -> Result<FileRecord> {
        match self {
            AnyStaging::Local(s) => s.write_streamed(name, fill),
            AnyStaging::S3(s) => s.write_streamed(name, fill),
        }
    }

    fn replaces(&self) -> Option<&[u8]> {
        match self {
            AnyStaging::Local(s) => s.replaces(),
            AnyStaging::S3(s) => s.replaces(),
        }
    }

    fn publish(self, manifest: &OutputFile) -> Result<Published> {
        match self {
            AnyStaging::Local(s) => s.publish(manifest),
            AnyStaging::S3(s) => s.publish(manifest),
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
    /// The published manifest of `month` (`None` when the month is not published).
    pub fn manifest(&self, month: &str) -> Result<Option<Vec<u8>>> {
        self.read_object(month, "manifest.json")
    }

    /// A published file of a month, found through the month's manifest (`None` when the month
    /// is not published or has no such file): what the report's trend, `finops report` and the
    /// links read. A month counts only with its manifest.
    pub fn read(&self, month: &str, name: &str) -> Result<Option<Vec<u8>>> {
        let Some(manifest) = self.manifest(month)? else { return Ok(None) };
        if name == "manifest.json" {
            return Ok(Some(manifest));
        }
        let files = PublishedFiles::parse(&manifest).map_err(|detail| Error::Invalid { at: self.shown(&format!("{month}/manifest.json")), detail })?;
        let Some(record) = files.file(name) else { return Ok(None) };
        self.read_object(month, record.stored_at())
    }

    /// A stored object under the month's folder, by its path there.
    fn read_object(&self, month: &str, stored_at: &str) -> Result<Option<Vec<u8>>> {
        match self {
            OutputRoot::Local(dir) => {
                let path = dir.root.join(month).join(crate::names::safe_relative_path(stored_at)?);
                match std::fs::read(&path) {
                    Ok(bytes) => Ok(Some(bytes)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(source) => Err(Error::Io { path, source }),
                }
            }
            OutputRoot::S3(dir) => dir.get(&format!("{month}/{stored_at}")),
        }
    }

    /// Where `name` under the root is, as a person would write it.
    pub fn shown(&self, name: &str) -> String {
        match self {
            OutputRoot::Local(dir) => dir.root.join(name).display().to_string(),
            OutputRoot::S3(dir) => dir.uri(name),
        }
    }

    /// Replaces one file of a published month (`finops report` rebuilding its PDF): the new
    /// bytes are written beside the published ones, then the manifest that records them, then
    /// the superseded object goes. Returns where the file now is.
    pub fn replace_published_file(&self, month: &str, file: &OutputFile) -> Result<String> {
        let at = self.shown(&format!("{month}/manifest.json"));
        let bytes = self.manifest(month)?.ok_or_else(|| Error::Invalid { at: at.clone(), detail: "the month is not published".into() })?;
        let mut manifest = crate::manifest::Manifest::parse(&bytes).map_err(|detail| Error::Invalid { at: at.clone(), detail })?;
        let Some(record) = manifest.files.iter_mut().find(|f| f.name == file.name) else {
            return Err(Error::Invalid { at, detail: format!("lists no {} (published by an older finops): run the month again", file.name) });
        };
        let before = record.clone();
        let mut new = FileRecord::of(file);
        let written = match self {
            OutputRoot::Local(_) => self.put(&format!("{month}/{}", file.name), &file.bytes)?,
            OutputRoot::S3(dir) => {
                let object = format!("{}/{}", crate::s3::run_folder(), file.name);
                dir.put(&format!("{month}/{object}"), &file.bytes)?;
                new.object = Some(object);
                dir.uri(&format!("{month}/{}", new.stored_at()))
            }
        };
        *record = new;
        self.put(&format!("{month}/manifest.json"), &manifest.to_file().bytes)?;
        if let OutputRoot::S3(dir) = self {
            if !manifest.files.iter().any(|f| f.stored_at() == before.stored_at()) {
                if let Err(e) = dir.remove(&format!("{month}/{}", before.stored_at())) {
                    tracing::warn!(error = %e, "the superseded file was left in place (no reader reaches it)");
                }
            }
        }
        Ok(written)
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

    fn manifest(records: &[FileRecord]) -> OutputFile {
        OutputFile { name: "manifest.json".into(), bytes: serde_json::to_vec(&serde_json::json!({ "files": records })).unwrap() }
    }

    #[test]
    fn replaces_a_month_whole() {
        let dir = tempfile::tempdir().unwrap();
        let sink = LocalDir { root: dir.path().to_path_buf() };
        sink.publish("2025-10", &[file("a.csv", "1"), file("old.csv", "x")], &manifest).unwrap();
        let second = sink.publish("2025-10", &[file("a.csv", "2"), file("teams/t.csv", "3")], &manifest).unwrap();
        assert!(second.changed);
        let month = dir.path().join("2025-10");
        assert_eq!(std::fs::read_to_string(month.join("a.csv")).unwrap(), "2");
        assert!(!month.join("old.csv").exists(), "files of the previous run must not linger");
        assert!(month.join("teams/t.csv").exists());
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("2025-10")]);
    }

    #[test]
    fn a_failed_write_leaves_the_published_month_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let sink = LocalDir { root: dir.path().to_path_buf() };
        sink.publish("2025-11", &[file("ok.csv", "1")], &manifest).unwrap();
        let result = sink.publish("2025-11", &[file("ok.csv", "2"), file("../escape.csv", "2")], &manifest);
        assert!(result.is_err());
        assert_eq!(std::fs::read_to_string(dir.path().join("2025-11/ok.csv")).unwrap(), "1");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no partial month may remain");
    }

    #[test]
    fn an_unchanged_month_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let sink = LocalDir { root: dir.path().to_path_buf() };
        sink.publish("2025-10", &[file("a.csv", "1")], &manifest).unwrap();
        let again = sink.publish("2025-10", &[file("a.csv", "1")], &manifest).unwrap();
        assert!(!again.changed);
    }

    // Regression: a crash between the two renames of a publish left no month folder at all.
    #[test]
    fn a_month_left_aside_by_a_crash_is_restored() {
        let dir = tempfile::tempdir().unwrap();
        let sink = LocalDir { root: dir.path().to_path_buf() };
        sink.publish("2025-10", &[file("a.csv", "1")], &manifest).unwrap();
        std::fs::rename(dir.path().join("2025-10"), dir.path().join(".2025-10.old-99")).unwrap();
        let root = OutputRoot::Local(sink.clone());
        sink.stage("2025-10").unwrap().abandon();
        assert_eq!(root.read("2025-10", "a.csv").unwrap().unwrap(), b"1");
    }
}
