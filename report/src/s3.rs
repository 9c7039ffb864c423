//! A month's outputs in S3 (`s3://bucket/prefix/YYYY-MM/…`), published as a commit
//! (docs/publishing.md): a run writes its files under a run-specific folder of the month
//! (`YYYY-MM/v/<run>/…`), then the month's `manifest.json`, the single pointer to the current
//! version, and only then removes objects no manifest points to. Until the new manifest is in
//! place the previous version is whole and readable; a failed run removes only what it wrote.
//! A file whose bytes the published version already holds is not written again: it keeps its
//! object, so a re-run over unchanged data writes nothing and leaves every object as it was.
//! The alerts' state and the locks live beside the months (`prefix/alerts-state.json`,
//! `prefix/.locks/`). Objects are encrypted at rest: SSE-S3, or SSE-KMS with the configured key.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;

use crate::manifest::PublishedFiles;
use crate::publish::{FileRecord, MonthStaging, OutputFile, OutputSink, Published};
use crate::{Error, Result};

/// Runs an SDK call from the synchronous sink interface (the job runs on a multi-threaded
/// tokio runtime; this thread parks while the call runs on it).
fn wait<F: std::future::Future>(future: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(future))
}

/// The error's text with its sources, without repeating what a source already said.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        source = inner.source();
    }
    text
}

/// An SDK failure as this crate reports it. Throttling, 5xx, timeouts and network failures are
/// retryable; a refusal (access denied, no such bucket, a bad request) is not.
fn error<E>(uri: String, action: &'static str, e: SdkError<E, HttpResponse>) -> Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    let retryable = match &e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
        SdkError::ServiceError(_) => status(&e).is_some_and(|s| s == 429 || s >= 500),
        _ => false,
    };
    let detail = match &e {
        SdkError::ServiceError(service) => format!("{} (HTTP {})", chain(service.err()), status(&e).map_or("?".into(), |s| s.to_string())),
        other => chain(other),
    };
    Error::S3 { uri, action, detail, retryable }
}

/// The HTTP status of the response, when there was one.
fn status<E>(e: &SdkError<E, HttpResponse>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

/// Whether a write was refused because its condition failed (412), or lost a race with another
/// conditional write of the same key (409).
fn precondition_failed<E>(e: &SdkError<E, HttpResponse>) -> bool {
    matches!(status(e), Some(412) | Some(409))
}

/// A write's condition on the object already there.
#[derive(Clone, Debug)]
pub enum Precondition {
    /// Only if there is no such object (`If-None-Match: *`).
    Absent,
    /// Only if the object is still this version (`If-Match: <ETag>`).
    Unchanged(String),
}

/// An output root in S3.
#[derive(Clone, Debug)]
pub struct S3Dir {
    pub client: aws_sdk_s3::Client,
    pub bucket: String,
    /// No leading or trailing `/`; may be empty.
    pub prefix: String,
    /// SSE-KMS with this key (ARN or alias) instead of SSE-S3.
    pub kms_key: Option<String>,
    /// The client's credentials, for a presigned link's real expiry.
    pub credentials: Option<aws_sdk_s3::config::SharedCredentialsProvider>,
}

impl S3Dir {
    /// The key of `name` under the root.
    pub fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    pub fn uri(&self, name: &str) -> String {
        format!("s3://{}/{}", self.bucket, self.key(name))
    }

    fn put_request(&self, name: &str, bytes: &[u8]) -> aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder {
        let request = self.client.put_object().bucket(&self.bucket).key(self.key(name)).body(ByteStream::from(bytes.to_vec()));
        match &self.kms_key {
            Some(key) => request.server_side_encryption(ServerSideEncryption::AwsKms).ssekms_key_id(key),
            None => request.server_side_encryption(ServerSideEncryption::Aes256),
        }
    }

    /// Writes one object from a local file, streamed from disk, encrypted at rest.
    pub fn put_file(&self, name: &str, path: &std::path::Path) -> Result<()> {
        let body = wait(ByteStream::from_path(path)).map_err(|e| Error::Io { path: path.to_path_buf(), source: std::io::Error::other(e) })?;
        let request = self.client.put_object().bucket(&self.bucket).key(self.key(name)).body(body);
        let request = match &self.kms_key {
            Some(key) => request.server_side_encryption(ServerSideEncryption::AwsKms).ssekms_key_id(key),
            None => request.server_side_encryption(ServerSideEncryption::Aes256),
        };
        wait(request.send()).map(|_| ()).map_err(|e| error(self.uri(name), "write the object", e))
    }

    /// Writes one object, encrypted at rest.
    pub fn put(&self, name: &str, bytes: &[u8]) -> Result<()> {
        wait(self.put_request(name, bytes).send()).map(|_| ()).map_err(|e| error(self.uri(name), "write the object", e))
    }

    /// Writes one object only if `condition` holds; `Ok(None)` when it did not (another writer
    /// got there first). Returns the new object's ETag.
    pub fn put_if(&self, name: &str, bytes: &[u8], condition: &Precondition) -> Result<Option<String>> {
        let request = match condition {
            Precondition::Absent => self.put_request(name, bytes).if_none_match("*"),
            Precondition::Unchanged(etag) => self.put_request(name, bytes).if_match(etag),
        };
        match wait(request.send()) {
            Ok(out) => Ok(Some(out.e_tag().unwrap_or_default().to_string())),
            Err(e) if precondition_failed(&e) => Ok(None),
            Err(e) => Err(error(self.uri(name), "write the object", e)),
        }
    }

    /// One object's bytes, `None` when there is none.
    pub fn get(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.get_with_etag(name)?.map(|(bytes, _)| bytes))
    }

    /// One object's bytes and ETag, `None` when there is none.
    pub fn get_with_etag(&self, name: &str) -> Result<Option<(Vec<u8>, String)>> {
        let result = wait(self.client.get_object().bucket(&self.bucket).key(self.key(name)).send());
        match result {
            Ok(object) => {
                let etag = object.e_tag().unwrap_or_default().to_string();
                let bytes = wait(object.body.collect()).map_err(|e| Error::S3 { uri: self.uri(name), action: "read the object", detail: chain(&e), retryable: true })?;
                Ok(Some((bytes.into_bytes().to_vec(), etag)))
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
            Err(e) => Err(error(self.uri(name), "read the object", e)),
        }
    }

    /// A link that downloads `name` until `until` without credentials (for a team's CSV in its
    /// Slack message). Whoever holds it can read that one object until then.
    pub async fn presign(&self, name: &str, expires_in: std::time::Duration) -> Result<String> {
        let config = aws_sdk_s3::presigning::PresigningConfig::expires_in(expires_in).map_err(|e| Error::S3 {
            uri: self.uri(name),
            action: "presign a link to the object",
            detail: e.to_string(),
            retryable: false,
        })?;
        let request = self.client.get_object().bucket(&self.bucket).key(self.key(name)).presigned(config).await.map_err(|e| error(self.uri(name), "presign a link to the object", e))?;
        Ok(request.uri().to_string())
    }

    /// A presigned download link for `name`, valid for `longest` or until the signing
    /// credentials expire, whichever is sooner (a link signed with a Lambda role's session
    /// credentials dies with them), and when it expires.
    pub async fn presign_for_up_to(&self, name: &str, longest: std::time::Duration) -> Result<(String, std::time::SystemTime)> {
        use aws_sdk_s3::config::ProvideCredentials;
        let now = std::time::SystemTime::now();
        let mut until = now + longest;
        if let Some(provider) = &self.credentials {
            let credentials = provider.provide_credentials().await.map_err(|e| Error::S3 { uri: self.uri(name), action: "presign a link to the object", detail: chain(&e), retryable: true })?;
            if let Some(expiry) = credentials.expiry() {
                until = until.min(expiry);
            }
        }
        let valid = until.duration_since(now).unwrap_or_default().max(std::time::Duration::from_secs(60));
        Ok((self.presign(name, valid).await?, now + valid))
    }

    /// The AWS console's page for `name` (works for anyone who can sign in with read access,
    /// and never expires).
    pub fn console_link(&self, name: &str) -> String {
        let region = self.client.config().region().map_or("us-east-1".to_string(), |r| r.to_string());
        let key: String = self.key(name).bytes().map(|b| if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect();
        format!("https://{region}.console.aws.amazon.com/s3/object/{}?region={region}&bucketType=general&prefix={key}", self.bucket)
    }

    /// Removes one object by its name under the root.
    pub fn remove(&self, name: &str) -> Result<()> {
        self.delete(&self.key(name))
    }

    fn delete(&self, key: &str) -> Result<()> {
        wait(self.client.delete_object().bucket(&self.bucket).key(key).send()).map(|_| ()).map_err(|e| error(format!("s3://{}/{key}", self.bucket), "delete the object", e))
    }

    /// Every key under `under/`.
    fn list(&self, under: &str) -> Result<Vec<String>> {
        let prefix = format!("{}/", self.key(under));
        let mut pages = self.client.list_objects_v2().bucket(&self.bucket).prefix(&prefix).into_paginator().send();
        let mut keys = Vec::new();
        while let Some(page) = wait(pages.next()) {
            let page = page.map_err(|e| error(self.uri(under), "list the objects", e))?;
            keys.extend(page.contents().iter().filter_map(|o| o.key().map(str::to_string)));
        }
        Ok(keys)
    }

    /// Removes every object of `month` that its manifest does not point to (superseded
    /// versions, files of failed runs, the flat layout of finops before 0.2). Returns the keys
    /// that could not be removed (they are harmless: no reader reaches them).
    fn remove_unreferenced(&self, month: &str, manifest: &PublishedFiles) -> Result<Vec<String>> {
        let kept: std::collections::BTreeSet<String> = manifest.files.iter().map(|f| self.key(&format!("{month}/{}", f.stored_at()))).chain([self.key(&format!("{month}/manifest.json"))]).collect();
        let mut left = Vec::new();
        for key in self.list(month)?.into_iter().filter(|k| !kept.contains(k)) {
            if let Err(e) = self.delete(&key) {
                tracing::warn!(key = %key, error = %e, "superseded object left in place");
                left.push(key);
            }
        }
        Ok(left)
    }
}

/// A month being written to S3: a new version beside the published one.
pub struct S3Staging {
    root: S3Dir,
    month: String,
    /// The run's folder under the month (`v/<run>`).
    version: String,
    /// The published version's manifest, when there is one.
    published: Option<(Vec<u8>, PublishedFiles)>,
    /// Keys this run wrote.
    written: Vec<String>,
}

/// A run's folder name: sortable by time, unique per process.
pub(crate) fn run_folder() -> String {
    let now = chrono::Utc::now();
    format!("v/{}-{:x}{:04x}", now.format("%Y%m%dT%H%M%S%.3fZ"), std::process::id(), now.timestamp_subsec_nanos() & 0xffff)
}

impl OutputSink for S3Dir {
    type Staging = S3Staging;

    fn stage(&self, month: &str) -> Result<S3Staging> {
        let published = match self.get(&format!("{month}/manifest.json"))? {
            Some(bytes) => {
                let files = PublishedFiles::parse(&bytes).map_err(|detail| Error::Invalid { at: self.uri(&format!("{month}/manifest.json")), detail })?;
                Some((bytes, files))
            }
            None => None,
        };
        Ok(S3Staging { root: self.clone(), month: month.to_string(), version: run_folder(), published, written: Vec::new() })
    }
}

impl MonthStaging for S3Staging {
    fn write(&mut self, file: &OutputFile) -> Result<FileRecord> {
        crate::names::safe_relative_path(&file.name)?;
        self.store(FileRecord::of(file), |root, key| root.put(key, &file.bytes))
    }

    /// Made into a local temporary file (the Lambda's `/tmp`), then uploaded from it: the
    /// object's hash is known before the upload, so bytes the published version holds are not
    /// sent again.
    fn write_streamed(&mut self, name: &str, fill: &mut crate::publish::Fill) -> Result<FileRecord> {
        crate::names::safe_relative_path(name)?;
        let local = std::env::temp_dir().join(format!("finops-{}-{}-{}", std::process::id(), self.version, name).replace('/', "_"));
        let result = crate::publish::stream_to_file(&local, name, fill)
            .map_err(|source| Error::Io { path: local.clone(), source })
            .and_then(|record| self.store(record, |root, key| root.put_file(key, &local)));
        let _ = std::fs::remove_file(&local);
        result
    }

    fn replaces(&self) -> Option<&[u8]> {
        self.published.as_ref().map(|(bytes, _)| bytes.as_slice())
    }

    fn publish(mut self, manifest: &OutputFile) -> Result<Published> {
        let location = self.root.uri(&self.month);
        if self.published.as_ref().is_some_and(|(bytes, _)| *bytes == manifest.bytes) {
            // Nothing changed: the published month stays byte for byte as it was.
            self.abandon_written();
            return Ok(Published { location, changed: false, superseded_left: Vec::new() });
        }
        let files = PublishedFiles::parse(&manifest.bytes).map_err(|detail| Error::Invalid { at: format!("{location}/manifest.json (being written)"), detail })?;
        // The commit: from here on readers see the new version.
        let key = format!("{}/manifest.json", self.month);
        if let Err(e) = self.root.put(&key, &manifest.bytes) {
            // A PUT whose answer was lost may still have landed: the new objects are then the
            // month, and removing them would break it. Only a manifest still not ours is undone.
            if !self.root.get(&key).is_ok_and(|now| now.as_deref() == Some(manifest.bytes.as_slice())) {
                self.abandon_written();
                return Err(e);
            }
            tracing::warn!(error = %e, "the manifest write reported an error but landed: the month is published");
        }
        let superseded_left = self.root.remove_unreferenced(&self.month, &files).unwrap_or_else(|e| vec![format!("(listing failed: {e})")]);
        Ok(Published { location, changed: true, superseded_left })
    }

    fn abandon(mut self) {
        self.abandon_written();
    }
}

impl S3Staging {
    /// Stores a file of this version by `put` (given the root and the object's key), unless the
    /// published version already holds the same bytes: then the record points at its object.
    fn store(&mut self, mut record: FileRecord, put: impl FnOnce(&S3Dir, &str) -> Result<()>) -> Result<FileRecord> {
        if let Some(kept) = self.published.as_ref().and_then(|(_, p)| p.files.iter().find(|f| f.name == record.name && f.sha256 == record.sha256 && f.bytes == record.bytes)) {
            return Ok(kept.clone());
        }
        let object = format!("{}/{}", self.version, record.name);
        let key = format!("{}/{object}", self.month);
        put(&self.root, &key)?;
        self.written.push(self.root.key(&key));
        record.object = Some(object);
        Ok(record)
    }

    fn abandon_written(&mut self) {
        for key in self.written.drain(..) {
            if let Err(e) = self.root.delete(&key) {
                tracing::warn!(key = %key, error = %e, "an abandoned run's object left in place (no manifest points to it)");
            }
        }
    }
}
