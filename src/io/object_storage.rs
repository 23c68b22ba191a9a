//! Object storage (S3-compatible, GCS, Azure) through the `object_store` crate: a location
//! opened from a `spec.*.objectStore` reference and its Secret's keys, ranged streaming reads,
//! and errors that name the object and say what to fix. Credential values never appear in
//! messages or `Debug` output.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::path::Path;
use object_store::{ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, RetryConfig};

use super::observed_store::{ObservedStore, StoreObserver};
use crate::api::ObjectStoreRef;
use crate::net::{AddressPolicy, StoreResolver};

/// The Secret keys read for each scheme (documented in docs/object-storage.md and on `ObjectStoreRef`).
pub const S3_KEYS: &[&str] = &["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"];
pub const GCS_KEYS: &[&str] = &["GOOGLE_SERVICE_ACCOUNT_KEY"];
pub const AZURE_KEYS: &[&str] = &[
    "AZURE_STORAGE_ACCOUNT_NAME",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
];

/// How long a failing request is retried (5xx, resets) before the step reports it.
const RETRY_TIMEOUT: Duration = Duration::from_secs(30);

/// What went wrong with object storage, by what the Batch should do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageErrorKind {
    /// The object or bucket does not exist (yet): wait and retry.
    NotFound,
    /// The credentials were refused: fix the Secret.
    Unauthorized,
    /// The reference itself is unusable (bad URL, unknown scheme).
    Invalid,
    /// Anything else (server errors, connection failures): retry.
    Transient,
}

/// An object-storage failure with a message naming the object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StorageError {
    pub kind: StorageErrorKind,
    pub message: String,
}

impl StorageError {
    /// A local file that could not be read or written on the way to or from storage.
    pub fn local(path: &std::path::Path, e: std::io::Error) -> Self {
        Self {
            kind: StorageErrorKind::Transient,
            message: format!("{}: {e}", path.display()),
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self {
            kind: StorageErrorKind::Invalid,
            message: message.into(),
        }
    }
}

/// An object or prefix, with a client for its bucket.
#[derive(Clone)]
pub struct ObjectLocation {
    store: Arc<dyn ObjectStore>,
    path: Path,
    /// The URL as the user wrote it (for messages).
    pub url: String,
    /// Which Secret holds the credentials (for messages), e.g. `Secret default/s3`.
    credentials_from: String,
}

impl std::fmt::Debug for ObjectLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectLocation")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl ObjectLocation {
    /// The object or prefix `url` in the same bucket, through the same client (which holds its
    /// own TLS roots and connection pool: one per bucket, not one per object).
    pub fn elsewhere(&self, url: &str) -> Result<ObjectLocation, StorageError> {
        let parsed = url::Url::parse(url).map_err(|e| StorageError::invalid(format!("url {url:?}: {e}")))?;
        let path = Path::parse(parsed.path().trim_start_matches('/'))
            .map_err(|e| StorageError::invalid(format!("url {url:?}: {e}")))?;
        Ok(ObjectLocation {
            store: self.store.clone(),
            path,
            url: url.to_string(),
            credentials_from: self.credentials_from.clone(),
        })
    }
}

/// An object held in memory, for unit tests: `url` names it in messages.
#[cfg(test)]
pub(crate) async fn in_memory(url: &str, bytes: Bytes) -> ObjectLocation {
    let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let path = Path::from("object");
    store.put(&path, bytes.into()).await.expect("an in-memory put");
    ObjectLocation {
        store,
        path,
        url: url.to_string(),
        credentials_from: "nothing".to_string(),
    }
}

/// Object stores already opened, one per bucket, endpoint, region and set of credentials: each
/// client holds its own TLS roots and connection pool, so a client per object (a sweep's
/// 2,000 children) cost hundreds of MiB and a client build per read. Bounded: past
/// [`MAX_OPENED`] stores the oldest are forgotten wholesale (and opened again when needed).
#[derive(Default)]
pub struct OpenedStores(std::sync::Mutex<std::collections::HashMap<String, ObjectLocation>>);

/// Stores remembered at most by [`OpenedStores`].
const MAX_OPENED: usize = 256;

impl OpenedStores {
    /// The location of `reference` through the store opened for its bucket with the
    /// credentials `credentials_id` names (a Secret's namespace, name and resourceVersion), or
    /// through the one `open` makes (which also says what is wrong with a bad URL).
    pub fn location<E>(
        &self,
        reference: &ObjectStoreRef,
        credentials_id: &str,
        open: impl FnOnce() -> Result<ObjectLocation, E>,
    ) -> Result<ObjectLocation, E> {
        let Ok(url) = url::Url::parse(&reference.url) else {
            return open();
        };
        let key = format!(
            "{}://{} {:?} {:?} {credentials_id}",
            url.scheme(),
            url.host_str().unwrap_or_default(),
            reference.endpoint,
            reference.region
        );
        let known = self.lock().get(&key).and_then(|o| o.elsewhere(&reference.url).ok());
        if let Some(location) = known {
            return Ok(location);
        }
        let opened = open()?;
        let mut stores = self.lock();
        if stores.len() >= MAX_OPENED {
            stores.clear();
        }
        stores.insert(key, opened.clone());
        Ok(opened)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, ObjectLocation>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The Secret keys a scheme's credentials are read from (the documented ones; others are
/// ignored).
pub fn credential_keys(url: &str) -> &'static [&'static str] {
    match url.split_once("://").map(|(scheme, _)| scheme) {
        Some("s3") => &["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"],
        Some("gs") => &["GOOGLE_SERVICE_ACCOUNT_KEY"],
        Some("az") => &[
            "AZURE_STORAGE_ACCOUNT_NAME",
            "AZURE_STORAGE_ACCOUNT_KEY",
            "AZURE_STORAGE_SAS_TOKEN",
        ],
        _ => &[],
    }
}

/// Opens `reference` with `credentials` (Secret key -> value, only the scheme's keys are used);
/// `credentials_from` says where they came from, for messages. Without credentials the reads
/// are anonymous: no client ever falls back to the machine's own identity (instance metadata,
/// environment). Connections go only to addresses `addresses` allows.
pub fn open(
    reference: &ObjectStoreRef,
    credentials: &BTreeMap<String, String>,
    credentials_from: &str,
    addresses: &Arc<AddressPolicy>,
) -> Result<ObjectLocation, StorageError> {
    let url =
        url::Url::parse(&reference.url).map_err(|e| StorageError::invalid(format!("url {:?}: {e}", reference.url)))?;
    let bucket = url.host_str().unwrap_or_default().to_string();
    if bucket.is_empty() {
        return Err(StorageError::invalid(format!(
            "url {:?} names no bucket",
            reference.url
        )));
    }
    let retry = RetryConfig {
        retry_timeout: RETRY_TIMEOUT,
        ..RetryConfig::default()
    };
    if let Some(endpoint) = &reference.endpoint {
        let parsed =
            url::Url::parse(endpoint).map_err(|e| StorageError::invalid(format!("endpoint {endpoint:?}: {e}")))?;
        addresses
            .check_url(&parsed)
            .map_err(|refused| StorageError::invalid(format!("endpoint: {refused}")))?;
    }
    let client_options = || client_options().with_dns_resolver(Arc::new(StoreResolver(addresses.clone())));
    let key = |name: &str| credentials.get(name).filter(|v| !v.is_empty());
    let store: Arc<dyn ObjectStore> = match url.scheme() {
        "s3" => {
            let mut builder = AmazonS3Builder::new()
                .with_bucket_name(&bucket)
                .with_region(reference.region.as_deref().unwrap_or("us-east-1"))
                .with_client_options(client_options())
                .with_retry(retry);
            if let Some(endpoint) = &reference.endpoint {
                builder = builder
                    .with_endpoint(endpoint)
                    .with_allow_http(endpoint.starts_with("http://"));
            }
            for (name, config) in [
                ("AWS_ACCESS_KEY_ID", AmazonS3ConfigKey::AccessKeyId),
                ("AWS_SECRET_ACCESS_KEY", AmazonS3ConfigKey::SecretAccessKey),
                ("AWS_SESSION_TOKEN", AmazonS3ConfigKey::Token),
            ] {
                if let Some(value) = key(name) {
                    builder = builder.with_config(config, value.trim());
                }
            }
            if key("AWS_ACCESS_KEY_ID").is_none() {
                builder = builder.with_skip_signature(true);
            }
            Arc::new(builder.build().map_err(|e| build_error(reference, e))?)
        }
        "gs" => {
            let mut builder = GoogleCloudStorageBuilder::new()
                .with_bucket_name(&bucket)
                .with_client_options(client_options())
                .with_retry(retry);
            if let Some(value) = key("GOOGLE_SERVICE_ACCOUNT_KEY") {
                builder = builder.with_config(GoogleConfigKey::ServiceAccountKey, value);
            } else {
                builder = builder.with_skip_signature(true);
            }
            Arc::new(builder.build().map_err(|e| build_error(reference, e))?)
        }
        "az" => {
            let mut builder = MicrosoftAzureBuilder::new()
                .with_container_name(&bucket)
                .with_client_options(client_options())
                .with_retry(retry);
            if let Some(endpoint) = &reference.endpoint {
                builder = builder
                    .with_endpoint(endpoint.clone())
                    .with_allow_http(endpoint.starts_with("http://"));
            }
            for (name, config) in [
                ("AZURE_STORAGE_ACCOUNT_NAME", AzureConfigKey::AccountName),
                ("AZURE_STORAGE_ACCOUNT_KEY", AzureConfigKey::AccessKey),
                ("AZURE_STORAGE_SAS_TOKEN", AzureConfigKey::SasKey),
            ] {
                if let Some(value) = key(name) {
                    builder = builder.with_config(config, value.trim());
                }
            }
            if key("AZURE_STORAGE_ACCOUNT_KEY").is_none() && key("AZURE_STORAGE_SAS_TOKEN").is_none() {
                builder = builder.with_skip_signature(true);
            }
            Arc::new(builder.build().map_err(|e| build_error(reference, e))?)
        }
        other => {
            return Err(StorageError::invalid(format!(
                "url {:?}: scheme {other}:// is not supported (use s3://, gs:// or az://)",
                reference.url
            )));
        }
    };
    let path = Path::parse(url.path().trim_start_matches('/'))
        .map_err(|e| StorageError::invalid(format!("url {:?}: {e}", reference.url)))?;
    Ok(ObjectLocation {
        store,
        path,
        url: reference.url.clone(),
        credentials_from: credentials_from.to_string(),
    })
}

/// No idle connections are kept: every reference opens its own client, and a run of a large
/// sweep holds hundreds of them, whose pooled connections (and buffers) would pile up (bench/
/// sweep, 50 children: 65.9 MiB peak with pooling, 51.9 MiB without). Each request is a large
/// streamed transfer, so a new connection per request costs little.
fn client_options() -> ClientOptions {
    ClientOptions::new().with_pool_max_idle_per_host(0)
}

fn build_error(reference: &ObjectStoreRef, e: object_store::Error) -> StorageError {
    StorageError::invalid(format!("cannot use {}: {}", reference.url, without_source(&e)))
}

impl ObjectLocation {
    /// The size of the object, checking that it exists and the credentials are accepted.
    pub async fn size(&self) -> Result<u64, StorageError> {
        match self.store.head(&self.path).await {
            Ok(meta) => Ok(meta.size),
            Err(object_store::Error::NotFound { .. }) if !self.bucket_exists().await => Err(StorageError {
                kind: StorageErrorKind::NotFound,
                message: format!("the bucket of {} does not exist; create it or fix the url", self.url),
            }),
            Err(e) => Err(self.classify(&e)),
        }
    }

    /// A HEAD answers 404 without a body for a missing object and a missing bucket alike; a
    /// listing tells them apart.
    async fn bucket_exists(&self) -> bool {
        let first = self.store.list(Some(&self.path)).next().await;
        !matches!(first, Some(Err(e)) if names_missing_bucket(&e))
    }

    /// Reads the object from `offset` to its end (of `size` bytes). With `likely_end`, the first
    /// GET stops there (a bounded range) and the rest is asked for only if the reader goes on
    /// past it, so a slice read does not pull the remainder of a large object over the wire.
    pub fn read_from(
        &self,
        offset: u64,
        likely_end: Option<u64>,
        size: u64,
    ) -> BoxStream<'static, std::io::Result<Bytes>> {
        if offset >= size {
            return futures::stream::empty().boxed();
        }
        match likely_end.filter(|end| *end > offset && *end < size) {
            Some(end) => {
                let rest = self.clone();
                let more = futures::stream::once(async move { rest.get(GetRange::Offset(end)) }).flatten();
                self.get(GetRange::Bounded(offset..end)).chain(more).boxed()
            }
            None => self.get(GetRange::Offset(offset)),
        }
    }

    fn get(&self, range: GetRange) -> BoxStream<'static, std::io::Result<Bytes>> {
        let (store, path, this) = (Arc::clone(&self.store), self.path.clone(), self.clone());
        let options = GetOptions {
            range: Some(range),
            ..GetOptions::default()
        };
        futures::stream::once(async move { store.get_opts(&path, options).await })
            .map_ok(|result| result.into_stream())
            .try_flatten()
            .map_err(move |e| std::io::Error::other(this.classify(&e)))
            .boxed()
    }

    /// This location with every call on its store (and on its children's) reported to
    /// `observer`.
    pub fn observed_by(self, observer: Arc<dyn StoreObserver>) -> Self {
        Self {
            store: Arc::new(ObservedStore::new(self.store, observer)),
            ..self
        }
    }

    /// The location `name` under this prefix (`s3://b/results/` + `output.jsonl`).
    pub fn child(&self, name: &str) -> ObjectLocation {
        ObjectLocation {
            path: self.path.clone().join(name),
            url: format!("{}/{name}", self.url.trim_end_matches('/')),
            ..self.clone()
        }
    }

    pub(crate) fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Turns a client error into one that names the object and what to do.
    pub fn classify(&self, e: &object_store::Error) -> StorageError {
        let url = &self.url;
        let (kind, message) = match e {
            _ if names_missing_bucket(e) => (
                StorageErrorKind::NotFound,
                format!("the bucket of {url} does not exist; create it or fix the url"),
            ),
            object_store::Error::NotFound { .. } => (
                StorageErrorKind::NotFound,
                format!("object {url} does not exist; upload it or fix the url"),
            ),
            object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => (
                StorageErrorKind::Unauthorized,
                format!(
                    "{url}: the storage refused the credentials from {} (check its keys: {})",
                    self.credentials_from,
                    self.key_names()
                ),
            ),
            _ => (StorageErrorKind::Transient, format!("{url}: {}", without_source(e))),
        };
        StorageError { kind, message }
    }

    fn key_names(&self) -> String {
        let keys = match self.url.split("://").next() {
            Some("gs") => GCS_KEYS,
            Some("az") => AZURE_KEYS,
            _ => S3_KEYS,
        };
        keys.join(", ")
    }
}

/// Whether the server said the bucket does not exist (S3 `NoSuchBucket`, Azure
/// `ContainerNotFound`), which the client reports as a generic or not-found error.
fn names_missing_bucket(e: &object_store::Error) -> bool {
    let detail = format!("{e:?}");
    detail.contains("NoSuchBucket") || detail.contains("ContainerNotFound")
}

/// The error's own text, first line only and bounded (responses can be long XML bodies).
fn without_source(e: &object_store::Error) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    first.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(url: &str, endpoint: Option<&str>) -> ObjectStoreRef {
        ObjectStoreRef {
            url: url.into(),
            endpoint: endpoint.map(str::to_owned),
            ..Default::default()
        }
    }

    /// A store is reused only for the same bucket and the same credentials: another Secret (or
    /// another version of it, or another namespace's) opens a client of its own.
    #[test]
    fn opened_stores_are_shared_only_within_a_bucket_and_its_credentials() {
        let stores = OpenedStores::default();
        let opens = std::cell::Cell::new(0);
        let location = |url: &str, credentials: &str| {
            let r = reference(url, Some("http://127.0.0.1:9"));
            stores
                .location(&r, credentials, || {
                    opens.set(opens.get() + 1);
                    open(&r, &BTreeMap::new(), "test", &Arc::new(AddressPolicy::local()))
                })
                .unwrap()
        };
        let first = location("s3://b/one.jsonl", "Secret a/s 1");
        let second = location("s3://b/two.jsonl", "Secret a/s 1");
        assert_eq!(opens.get(), 1);
        assert_eq!(
            (first.path().as_ref(), second.path().as_ref()),
            ("one.jsonl", "two.jsonl")
        );
        assert_eq!(second.url, "s3://b/two.jsonl");
        location("s3://b/one.jsonl", "Secret a/s 2");
        location("s3://b/one.jsonl", "Secret other/s 1");
        location("s3://c/one.jsonl", "Secret a/s 1");
        assert_eq!(opens.get(), 4);
    }

    /// Without a key, every cloud's client signs nothing: no fall-back to the machine's own
    /// identity (Azure's managed identity and GCP's/AWS's instance credentials are reached
    /// through the metadata service only when a client would sign).
    #[test]
    fn reads_without_credentials_are_anonymous_on_every_cloud() {
        let policy = Arc::new(AddressPolicy::local());
        for (url, endpoint) in [
            ("az://container/in.jsonl", Some("https://account.blob.core.windows.net")),
            ("s3://bucket/in.jsonl", None),
            ("gs://bucket/in.jsonl", None),
        ] {
            let mut credentials = BTreeMap::new();
            if url.starts_with("az") {
                credentials.insert("AZURE_STORAGE_ACCOUNT_NAME".to_string(), "account".to_string());
            }
            let location = open(&reference(url, endpoint), &credentials, "test", &policy).unwrap();
            let described = format!("{:?}", location.store);
            assert!(described.contains("skip_signature: true"), "{url}: {described}");
        }
    }

    #[test]
    fn an_endpoint_at_a_metadata_address_is_refused() {
        let policy = Arc::new(AddressPolicy::local());
        let Err(err) = open(
            &reference("s3://bucket/in.jsonl", Some("http://169.254.169.254:80")),
            &BTreeMap::new(),
            "test",
            &policy,
        ) else {
            panic!("refused")
        };
        assert!(err.message.contains("link-local or cloud metadata"), "{}", err.message);
    }
}
