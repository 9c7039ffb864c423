//! A month's outputs in S3 (`s3://bucket/prefix/YYYY-MM/…`), server-side encrypted, published so
//! that readers never take a half month for a whole one: a month counts only with its
//! `manifest.json`, so a run first removes the month's manifest, then writes every file, the
//! manifest last, and only then removes files the new month no longer has. A failed run removes
//! what it wrote; the month then reads as not published (no manifest) until a run completes.
//! The alerts' state object lives beside the months (`prefix/alerts-state.json`).

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;

use crate::sink::{MonthStaging, OutputFile, OutputSink};
use crate::{Error, Result};

/// Runs an SDK call from the synchronous sink interface (the job runs on a multi-threaded
/// tokio runtime; this thread parks while the call runs on it).
fn wait<F: std::future::Future>(future: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(future))
}

fn error(uri: String, action: &str, e: impl std::error::Error) -> Error {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let inner = inner.to_string();
        if !text.contains(&inner) {
            text.push_str(": ");
            text.push_str(&inner);
        }
        source = source.and_then(|s| s.source());
    }
    Error::Report(format!("{uri}: could not {action} on S3: {text}"))
}

/// An output root in S3.
#[derive(Clone, Debug)]
pub struct S3Dir {
    pub client: aws_sdk_s3::Client,
    pub bucket: String,
    /// No leading or trailing `/`; may be empty.
    pub prefix: String,
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

    /// Writes one object, encrypted at rest (SSE-S3).
    pub fn put(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.key(name))
            .server_side_encryption(ServerSideEncryption::Aes256)
            .body(ByteStream::from(bytes.to_vec()))
            .send();
        wait(request).map(|_| ()).map_err(|e| error(self.uri(name), "write the object", e))
    }

    /// One object's bytes, `None` when there is none.
    pub fn get(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let result = wait(self.client.get_object().bucket(&self.bucket).key(self.key(name)).send());
        match result {
            Ok(object) => wait(object.body.collect()).map(|b| Some(b.into_bytes().to_vec())).map_err(|e| error(self.uri(name), "read the object", e)),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
            Err(e) => Err(error(self.uri(name), "read the object", e)),
        }
    }

    /// A link that downloads `name` for `days` days without credentials (for a team's CSV in
    /// its Slack message). Whoever holds it can read that one object until it expires.
    pub async fn presign(&self, name: &str, days: u64) -> Result<String> {
        let config = aws_sdk_s3::presigning::PresigningConfig::expires_in(std::time::Duration::from_secs(days * 86_400))
            .map_err(|e| Error::Report(format!("presigning {}: {e}", self.uri(name))))?;
        let request = self.client.get_object().bucket(&self.bucket).key(self.key(name)).presigned(config).await.map_err(|e| error(self.uri(name), "presign a link to the object", e))?;
        Ok(request.uri().to_string())
    }

    fn delete(&self, key: &str) -> Result<()> {
        wait(self.client.delete_object().bucket(&self.bucket).key(key).send()).map(|_| ()).map_err(|e| error(format!("s3://{}/{key}", self.bucket), "delete the object", e))
    }

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
}

/// A month being written to S3.
pub struct S3Staging {
    root: S3Dir,
    month: String,
    written: Vec<String>,
}

impl OutputSink for S3Dir {
    type Staging = S3Staging;

    fn stage(&self, month: &str) -> Result<S3Staging> {
        // The month stops counting as published before any of its files change.
        self.delete(&self.key(&format!("{month}/manifest.json")))?;
        Ok(S3Staging { root: self.clone(), month: month.to_string(), written: Vec::new() })
    }
}

impl MonthStaging for S3Staging {
    fn write(&mut self, file: &OutputFile) -> Result<()> {
        crate::names::safe_relative_path(&file.name)?;
        let name = format!("{}/{}", self.month, file.name);
        self.root.put(&name, &file.bytes)?;
        self.written.push(self.root.key(&name));
        Ok(())
    }

    fn publish(self) -> Result<String> {
        // Files an earlier run of the month wrote and this one did not (a team gone).
        for key in self.root.list(&self.month)? {
            if !self.written.contains(&key) {
                self.root.delete(&key)?;
            }
        }
        Ok(self.root.uri(&self.month))
    }

    fn abandon(self) {
        for key in &self.written {
            let _ = self.root.delete(key);
        }
    }
}
