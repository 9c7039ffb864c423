//! One run at a time, enforced in the store (docs/publishing.md): a lease is an object under
//! `.locks/` of the output root, created only if absent (S3 `If-None-Match: *`; locally a file
//! created exclusively) and holding who took it and until when. A lease past its expiry is taken
//! over (S3 `If-Match` on the expired lease's ETag, so two runs cannot both take it). A run that
//! finds the lease held waits up to its patience, then stops saying which run holds it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::s3::Precondition;
use crate::sink::OutputRoot;
use crate::{Error, Result};

#[derive(Clone, Debug, Serialize, Deserialize)]
struct LeaseRecord {
    holder: String,
    purpose: String,
    acquired: String,
    expires: String,
}

/// A held lease; released by [`Lease::release`] (or by expiry if the run dies).
#[derive(Debug)]
pub struct Lease {
    root: OutputRoot,
    name: String,
}

/// Who this run is, as a lease names it: host (the Lambda's log stream when there is one) and
/// process.
pub fn holder() -> String {
    let place = std::env::var("AWS_LAMBDA_LOG_STREAM_NAME").or_else(|_| std::env::var("HOSTNAME")).unwrap_or_else(|_| "localhost".into());
    format!("{place} pid {}", std::process::id())
}

impl OutputRoot {
    /// Takes the lease `.locks/<name>.json` for `ttl`, waiting up to `patience` while another run
    /// holds it. `purpose` says what for (shown to a run that finds it held).
    pub fn acquire(&self, name: &str, purpose: &str, ttl: Duration, patience: Duration) -> Result<Lease> {
        let key = format!(".locks/{name}.json");
        let started = std::time::Instant::now();
        let mut said = false;
        loop {
            let now = chrono::Utc::now();
            let record = LeaseRecord {
                holder: holder(),
                purpose: purpose.to_string(),
                acquired: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                expires: (now + chrono::Duration::from_std(ttl).unwrap_or_default()).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            };
            let bytes = serde_json::to_vec_pretty(&record).expect("lease serialises");
            let held = match self.create_exclusive(&key, &bytes)? {
                Created::Yes => return Ok(Lease { root: self.clone(), name: key }),
                Created::Held { bytes: current, etag } => {
                    let current: Option<LeaseRecord> = serde_json::from_slice(&current).ok();
                    let expired = current.as_ref().is_none_or(|c| chrono::DateTime::parse_from_rfc3339(&c.expires).map_or(true, |e| e < now));
                    if expired && self.take_over(&key, &bytes, etag)? {
                        tracing::warn!(lease = %key, previous = ?current, "took over an expired lease (its run ended without releasing it)");
                        return Ok(Lease { root: self.clone(), name: key });
                    }
                    current
                }
            };
            let held = held.unwrap_or(LeaseRecord { holder: "another run".into(), purpose: purpose.into(), acquired: "?".into(), expires: "?".into() });
            if started.elapsed() >= patience {
                return Err(Error::Busy {
                    what: format!("{} ({})", self.shown(&key), held.purpose),
                    holder: held.holder,
                    since: held.acquired,
                    expires: held.expires,
                    advice: "nothing was published by this run; run it again once that run has finished",
                });
            }
            if !said {
                tracing::info!(lease = %key, holder = %held.holder, since = %held.acquired, "waiting for another run to finish");
                eprintln!("waiting: {} is held by {} since {} ({}); waiting up to {} s", self.shown(&key), held.holder, held.acquired, held.purpose, patience.as_secs());
                said = true;
            }
            std::thread::sleep(Duration::from_millis(500).min(patience.saturating_sub(started.elapsed())).max(Duration::from_millis(50)));
        }
    }

    fn create_exclusive(&self, key: &str, bytes: &[u8]) -> Result<Created> {
        match self {
            OutputRoot::Local(dir) => {
                let path = dir.root.join(key);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|source| Error::Io { path: parent.to_path_buf(), source })?;
                }
                match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                    Ok(mut f) => {
                        std::io::Write::write_all(&mut f, bytes).map_err(|source| Error::Io { path: path.clone(), source })?;
                        Ok(Created::Yes)
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(Created::Held { bytes: std::fs::read(&path).unwrap_or_default(), etag: None }),
                    Err(source) => Err(Error::Io { path, source }),
                }
            }
            OutputRoot::S3(dir) => match dir.put_if(key, bytes, &Precondition::Absent)? {
                Some(_) => Ok(Created::Yes),
                None => match dir.get_with_etag(key)? {
                    Some((bytes, etag)) => Ok(Created::Held { bytes, etag: Some(etag) }),
                    // Released between our write and our read: try again at once.
                    None => Ok(Created::Held { bytes: Vec::new(), etag: None }),
                },
            },
        }
    }

    /// Replaces an expired lease with ours; false when another run replaced it first.
    fn take_over(&self, key: &str, bytes: &[u8], etag: Option<String>) -> Result<bool> {
        match (self, etag) {
            (OutputRoot::S3(dir), Some(etag)) => Ok(dir.put_if(key, bytes, &Precondition::Unchanged(etag))?.is_some()),
            (OutputRoot::S3(_), None) => Ok(false),
            (OutputRoot::Local(dir), _) => {
                // Locally: remove the stale file, then create ours exclusively (of two runs
                // doing this at once, one creates it and the other waits).
                let path = dir.root.join(key);
                let _ = std::fs::remove_file(&path);
                Ok(matches!(self.create_exclusive(key, bytes)?, Created::Yes))
            }
        }
    }
}

enum Created {
    Yes,
    Held { bytes: Vec<u8>, etag: Option<String> },
}

impl Lease {
    /// Gives the lease back. A failure to remove it is logged: the lease then lapses at expiry.
    pub fn release(self) {
        let result = match &self.root {
            OutputRoot::Local(dir) => {
                let path = dir.root.join(&self.name);
                let removed = std::fs::remove_file(&path).map_err(|source| Error::Io { path: path.clone(), source });
                // The folder goes with its last lease: an output root holds months, not leftovers.
                if let Some(folder) = path.parent() {
                    let _ = std::fs::remove_dir(folder);
                }
                removed
            }
            OutputRoot::S3(dir) => dir.remove(&self.name),
        };
        if let Err(e) = result {
            tracing::warn!(lease = %self.name, error = %e, "lease not released; it lapses at its expiry");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lease_refuses_a_second_run_and_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let root = OutputRoot::Local(crate::sink::LocalDir { root: dir.path().to_path_buf() });
        let lease = root.acquire("2025-10", "publishing 2025-10", Duration::from_secs(60), Duration::ZERO).unwrap();
        let refused = root.acquire("2025-10", "publishing 2025-10", Duration::from_secs(60), Duration::from_millis(100)).unwrap_err();
        assert!(refused.to_string().contains(&holder()), "{refused}");
        assert!(refused.retryable());
        lease.release();
        root.acquire("2025-10", "publishing 2025-10", Duration::from_secs(60), Duration::ZERO).unwrap().release();
    }

    #[test]
    fn an_expired_lease_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let root = OutputRoot::Local(crate::sink::LocalDir { root: dir.path().to_path_buf() });
        let _dead = root.acquire("2025-10", "publishing", Duration::ZERO, Duration::ZERO).unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        root.acquire("2025-10", "publishing", Duration::from_secs(60), Duration::ZERO).expect("an expired lease does not block");
    }
}
