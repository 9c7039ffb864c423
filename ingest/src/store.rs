//! Where billing files live: a local directory or an S3 prefix. Readers list relative keys and ask
//! for a local, readable copy of each file they use; S3 objects are staged to a temporary
//! directory (Lambda's `/tmp` holds 10 GB) so polars can scan them lazily like local files.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// Where a source or an output lives, as the user wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    S3 {
        bucket: String,
        prefix: String,
    },
    /// The Cost Explorer API (a source only).
    CostExplorer,
}

impl Location {
    /// `s3://bucket/prefix`, `cost-explorer`, or a local path.
    pub fn parse(text: &str) -> Result<Location> {
        if text == "cost-explorer" {
            return Ok(Location::CostExplorer);
        }
        match text.strip_prefix("s3://") {
            Some(rest) => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(Error::BadLocation { location: text.to_string(), reason: "an S3 location needs a bucket: s3://<bucket>/<prefix>".into() });
                }
                Ok(Location::S3 { bucket: bucket.to_string(), prefix: prefix.trim_end_matches('/').to_string() })
            }
            None => Ok(Location::Local(PathBuf::from(text))),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Location::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            Location::CostExplorer => write!(f, "cost-explorer"),
        }
    }
}

/// Connection settings for S3 (and other AWS APIs): region and an endpoint override, which is how
/// tests reach a local moto server.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSettings {
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    /// The SDK config, loaded once for these region and endpoint and shared by every client made
    /// from these settings and their clones: one credential chain and one HTTP connection pool
    /// per process, which a Lambda container keeps across invocations.
    #[serde(skip)]
    loaded: std::sync::Arc<std::sync::Mutex<Option<(SdkKey, aws_config::SdkConfig)>>>,
}

type SdkKey = (Option<String>, Option<String>);

impl PartialEq for AwsSettings {
    fn eq(&self, other: &Self) -> bool {
        (&self.region, &self.endpoint_url) == (&other.region, &other.endpoint_url)
    }
}

impl Eq for AwsSettings {}

impl AwsSettings {
    pub fn new(region: Option<String>, endpoint_url: Option<String>) -> AwsSettings {
        AwsSettings { region, endpoint_url, ..AwsSettings::default() }
    }

    /// The shared SDK config: the default credential chain, with our region and endpoint.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        let key: SdkKey = (self.region.clone(), self.endpoint_url.clone());
        if let Some((k, config)) = self.loaded.lock().expect("not poisoned").as_ref() {
            if *k == key {
                return config.clone();
            }
        }
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = &self.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(endpoint) = &self.endpoint_url {
            loader = loader.endpoint_url(endpoint.clone());
        }
        let config = loader.load().await;
        *self.loaded.lock().expect("not poisoned") = Some((key, config.clone()));
        config
    }

    pub async fn s3_client(&self) -> aws_sdk_s3::Client {
        let shared = self.sdk_config().await;
        // Path-style addressing: local endpoints (moto, MinIO) have no per-bucket DNS names.
        let config = aws_sdk_s3::config::Builder::from(&shared).force_path_style(self.endpoint_url.is_some()).build();
        aws_sdk_s3::Client::from_conf(config)
    }
}

/// One object under the source root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Path relative to the source root, `/`-separated.
    pub key: String,
    pub bytes: u64,
}

/// A file ready to be scanned, with the content hash the manifest records.
#[derive(Clone, Debug)]
pub struct StagedFile {
    pub key: String,
    /// What to show a person: the local path or the `s3://` URI.
    pub display: String,
    pub path: PathBuf,
    pub bytes: u64,
    pub sha256: String,
}

/// A source of billing files. Contract: `list` returns every object under the root exactly once,
/// keys relative to the root; `stage` returns a local path whose bytes are the object's bytes.
pub enum BillingStore {
    Local { root: PathBuf },
    S3 { client: aws_sdk_s3::Client, bucket: String, prefix: String, staging: tempfile::TempDir },
}

impl BillingStore {
    pub async fn open(location: &Location, aws: &AwsSettings) -> Result<BillingStore> {
        match location {
            Location::Local(root) => {
                if !root.is_dir() {
                    return Err(Error::BadLocation { location: root.display().to_string(), reason: "no such directory; pass --source with the folder holding the billing export".into() });
                }
                Ok(BillingStore::Local { root: root.clone() })
            }
            Location::CostExplorer => Err(Error::BadLocation { location: location.to_string(), reason: "the Cost Explorer API holds no files; open it as a billing source, not a store".into() }),
            Location::S3 { bucket, prefix } => {
                let staging = tempfile::Builder::new().prefix("finops-staging-").tempdir().map_err(|source| Error::Io { path: std::env::temp_dir(), source })?;
                Ok(BillingStore::S3 { client: aws.s3_client().await, bucket: bucket.clone(), prefix: prefix.clone(), staging })
            }
        }
    }

    /// The root as the user would write it.
    pub fn root(&self) -> String {
        match self {
            BillingStore::Local { root } => root.display().to_string(),
            BillingStore::S3 { bucket, prefix, .. } => Location::S3 { bucket: bucket.clone(), prefix: prefix.clone() }.to_string(),
        }
    }

    /// How a person finds the object with this key.
    pub fn display(&self, key: &str) -> String {
        match self {
            BillingStore::Local { root } => root.join(key).display().to_string(),
            BillingStore::S3 { bucket, prefix, .. } => format!("s3://{bucket}/{}", s3_key(prefix, key)),
        }
    }

    /// Every object under the root, sorted by key.
    pub async fn list(&self) -> Result<Vec<ObjectMeta>> {
        Ok(objects_of(self.list_with_folders().await?))
    }

    /// The months whose CUR 2.0 folder (`…/BILLING_PERIOD=YYYY-MM/`) exists in `listed` (from
    /// `list_with_folders`) and holds no file: a month the export has not delivered yet, or a
    /// copy cut short. Each with the folder as a person finds it.
    pub fn empty_month_folders(&self, listed: &[ObjectMeta]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for folder in listed.iter().filter(|o| o.key.ends_with('/')) {
            let name = folder.key.trim_end_matches('/').rsplit('/').next().unwrap_or_default();
            let Some(month) = name.strip_prefix("BILLING_PERIOD=").filter(|m| crate::check_month(m).is_ok()) else { continue };
            if !listed.iter().any(|o| !o.key.ends_with('/') && o.key.starts_with(&folder.key)) {
                out.push((month.to_string(), self.display(&folder.key)));
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// The objects, and the folders as keys ending in `/` (local directories; S3's folder
    /// markers), sorted by key.
    pub async fn list_with_folders(&self) -> Result<Vec<ObjectMeta>> {
        let mut objects = match self {
            BillingStore::Local { root } => {
                let mut out = Vec::new();
                list_local(root, root, &mut out)?;
                out
            }
            BillingStore::S3 { client, bucket, prefix, .. } => {
                let list_prefix = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
                let mut pages = client.list_objects_v2().bucket(bucket).prefix(&list_prefix).into_paginator().send();
                let mut out = Vec::new();
                while let Some(page) = pages.next().await {
                    let page = page.map_err(|e| {
                        crate::aws_error(&format!("s3://{bucket}/{list_prefix}"), &e, |message| Error::S3 { uri: format!("s3://{bucket}/{list_prefix}"), action: "list objects", message })
                    })?;
                    for object in page.contents() {
                        let Some(key) = object.key() else { continue };
                        let Some(relative) = key.strip_prefix(&list_prefix) else { continue };
                        if relative.is_empty() {
                            continue;
                        }
                        out.push(ObjectMeta { key: relative.to_string(), bytes: object.size().unwrap_or(0).max(0) as u64 });
                    }
                }
                out
            }
        };
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }

    /// A local, readable copy of one object (the file itself for a local store).
    pub async fn stage(&self, key: &str) -> Result<StagedFile> {
        let display = self.display(key);
        match self {
            BillingStore::Local { root } => {
                let path = root.join(key);
                let (bytes, sha256) = hash_file(&path)?;
                Ok(StagedFile { key: key.to_string(), display, path, bytes, sha256 })
            }
            BillingStore::S3 { client, bucket, prefix, staging } => {
                let full_key = s3_key(prefix, key);
                let s3_err = |action: &'static str, message: String| Error::S3 { uri: display.clone(), action, message };
                let response = client
                    .get_object()
                    .bucket(bucket)
                    .key(&full_key)
                    .send()
                    .await
                    .map_err(|e| crate::aws_error(&format!("s3://{bucket}/{full_key}"), &e, |message| s3_err("read the object", message)))?;
                let path = staging_path(staging.path(), key);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|source| Error::Io { path: parent.to_path_buf(), source })?;
                }
                let mut body = response.body;
                let mut file = std::fs::File::create(&path).map_err(|source| Error::Io { path: path.clone(), source })?;
                let mut hasher = Sha256::new();
                let mut bytes = 0u64;
                while let Some(chunk) = body.next().await {
                    let chunk = chunk.map_err(|e| s3_err("read the object", e.to_string()))?;
                    hasher.update(&chunk);
                    bytes += chunk.len() as u64;
                    std::io::Write::write_all(&mut file, &chunk).map_err(|source| Error::Io { path: path.clone(), source })?;
                }
                Ok(StagedFile { key: key.to_string(), display, path, bytes, sha256: hex(&hasher.finalize()) })
            }
        }
    }

    /// The last `bytes` bytes of an object (all of it when shorter): a parquet footer, read
    /// without downloading the file.
    pub async fn read_tail(&self, key: &str, bytes: u64) -> Result<Vec<u8>> {
        let display = self.display(key);
        match self {
            BillingStore::Local { root } => {
                use std::io::{Read, Seek, SeekFrom};
                let path = root.join(key);
                let io = |source| Error::Io { path: path.clone(), source };
                let mut file = std::fs::File::open(&path).map_err(io)?;
                let length = file.metadata().map_err(io)?.len();
                file.seek(SeekFrom::Start(length.saturating_sub(bytes))).map_err(io)?;
                let mut out = Vec::new();
                file.read_to_end(&mut out).map_err(io)?;
                Ok(out)
            }
            BillingStore::S3 { client, bucket, prefix, .. } => {
                let full_key = s3_key(prefix, key);
                let s3_err = |message: String| Error::S3 { uri: display.clone(), action: "read the object's footer", message };
                let response =
                    client.get_object().bucket(bucket).key(&full_key).range(format!("bytes=-{bytes}")).send().await.map_err(|e| crate::aws_error(&format!("s3://{bucket}/{full_key}"), &e, s3_err))?;
                let body = response.body.collect().await.map_err(|e| Error::S3 { uri: display.clone(), action: "read the object's footer", message: e.to_string() })?;
                Ok(body.into_bytes().to_vec())
            }
        }
    }

    /// Deletes the staged copies of `keys` once what they were read for is built (an S3 source
    /// stages each object to local disk, which a Lambda has 10 GB of; a folder is read in place).
    /// A copy that cannot be removed stays until the staging folder goes with the run.
    pub fn release<'a>(&self, keys: impl IntoIterator<Item = &'a str>) {
        if let BillingStore::S3 { staging, .. } = self {
            for key in keys {
                if let Some(folder) = staging_path(staging.path(), key).parent() {
                    let _ = std::fs::remove_dir_all(folder);
                }
            }
        }
    }

    /// The whole object as text (manifests).
    pub async fn read_text(&self, key: &str) -> Result<String> {
        let staged = self.stage(key).await?;
        std::fs::read_to_string(&staged.path).map_err(|source| Error::Io { path: staged.path.clone(), source })
    }
}

/// The objects of a listing from `list_with_folders`, without its folders.
pub fn objects_of(listed: Vec<ObjectMeta>) -> Vec<ObjectMeta> {
    listed.into_iter().filter(|o| !o.key.ends_with('/')).collect()
}

fn s3_key(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}/{key}")
    }
}

fn list_local(root: &Path, dir: &Path, out: &mut Vec<ObjectMeta>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Io { path: dir.to_path_buf(), source })?;
    for entry in entries {
        let entry = entry.map_err(|source| Error::Io { path: dir.to_path_buf(), source })?;
        let path = entry.path();
        let file_type = entry.file_type().map_err(|source| Error::Io { path: path.clone(), source })?;
        if file_type.is_dir() {
            let relative = path.strip_prefix(root).expect("listed under root");
            let key = relative.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
            out.push(ObjectMeta { key: format!("{key}/"), bytes: 0 });
            list_local(root, &path, out)?;
        } else if file_type.is_file() {
            let relative = path.strip_prefix(root).expect("listed under root");
            let key = relative.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
            let bytes = entry.metadata().map(|m| m.len()).unwrap_or(0);
            out.push(ObjectMeta { key, bytes });
        }
    }
    Ok(())
}

fn hash_file(path: &Path) -> Result<(u64, String)> {
    let io = |source| Error::Io { path: path.to_path_buf(), source };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buffer).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        bytes += n as u64;
    }
    Ok((bytes, hex(&hasher.finalize())))
}

/// Where an S3 object is staged: a folder per key (named by a hash of the whole key) holding the
/// key's last segment. Nothing in a key — `..`, `/`, an absolute path — can reach outside the
/// staging folder, and two keys never share a file.
fn staging_path(staging: &Path, key: &str) -> PathBuf {
    let name = key.rsplit('/').next().unwrap_or("");
    let name = if name.is_empty() || name == "." || name == ".." { "object" } else { name };
    let digest = Sha256::digest(key.as_bytes());
    staging.join(hex(&digest[..8])).join(name)
}

pub(crate) fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod staging_tests {
    use super::staging_path;
    use std::path::Path;

    /// Regression: an S3 key with `..` segments was joined onto the staging folder as is and could
    /// write outside it.
    #[test]
    fn keys_cannot_escape_the_staging_folder() {
        let root = Path::new("/tmp/staging-root");
        for key in ["../../etc/passwd", "a/../../b.parquet", "/abs/x.parquet", "..", "data/BILLING_PERIOD=2025-10/x.parquet"] {
            let path = staging_path(root, key);
            assert!(path.starts_with(root), "{key} -> {}", path.display());
            assert!(path.components().all(|c| !matches!(c, std::path::Component::ParentDir)), "{key} -> {}", path.display());
        }
        assert_ne!(staging_path(root, "a/x.parquet"), staging_path(root, "b/x.parquet"));
        assert!(staging_path(root, "data/x.snappy.parquet").to_string_lossy().ends_with("x.snappy.parquet"));
    }
}
