//! Every object-store call through one wrapper: an [`ObservedStore`] is an [`ObjectStore`] that
//! delegates each call to the store it wraps and tells a [`StoreObserver`] which operation ran,
//! how it ended, how long it took and how many bytes it moved. A location wrapped once
//! ([`ObjectLocation::observed_by`](super::object_storage::ObjectLocation::observed_by), as the
//! controller does with every one it opens) has each call counted whoever makes it: reads,
//! uploads, listings, deletes. The caller supplies the observer (the controller records metrics
//! with it); this module knows nothing of what it does.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result, UploadPart,
};

/// Which way the bytes of a call went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the store (a GET's body).
    Read,
    /// To the store (a PUT's or an uploaded part's body).
    Write,
}

impl Direction {
    /// `read` or `write`.
    pub fn label(self) -> &'static str {
        match self {
            Direction::Read => "read",
            Direction::Write => "write",
        }
    }
}

/// Told about every object-store call. Must be cheap: it runs inline.
///
/// `operation` is one of a fixed set named after the store's methods: `get`, `get_range`,
/// `get_ranges`, `head`, `put`, `put_multipart` (starting an upload), `put_part`,
/// `complete_multipart`, `abort_multipart`, `list`, `list_with_delimiter`, `delete`, `copy`,
/// `rename`.
pub trait StoreObserver: Send + Sync {
    /// A call ended with `outcome` ([`outcome`]'s labels) after `elapsed`: for a GET until its
    /// response headers, for a listing until its first page.
    fn request(&self, operation: &'static str, outcome: &'static str, elapsed: Duration);
    /// `bytes` of a call's body went `direction` (a GET's as they stream in, a PUT's once it
    /// succeeded).
    fn bytes(&self, operation: &'static str, direction: Direction, bytes: u64);
}

/// How a call ended, as a bounded label: `success`, `not_found`, `unauthorized` or `error`.
pub fn outcome<T>(result: &Result<T>) -> &'static str {
    match result {
        Ok(_) => "success",
        Err(object_store::Error::NotFound { .. }) => "not_found",
        Err(object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }) => {
            "unauthorized"
        }
        Err(_) => "error",
    }
}

/// A store whose every call is reported to an observer.
pub struct ObservedStore {
    inner: Arc<dyn ObjectStore>,
    observer: Arc<dyn StoreObserver>,
}

impl ObservedStore {
    /// Wraps `inner`, reporting to `observer`.
    pub fn new(inner: Arc<dyn ObjectStore>, observer: Arc<dyn StoreObserver>) -> Self {
        Self { inner, observer }
    }

    fn record<T>(&self, operation: &'static str, started: Instant, result: &Result<T>) {
        self.observer.request(operation, outcome(result), started.elapsed());
    }

    /// The result with its body counted as it streams.
    fn counted(&self, operation: &'static str, result: GetResult) -> GetResult {
        let (meta, range) = (result.meta.clone(), result.range.clone());
        let (attributes, extensions) = (result.attributes.clone(), result.extensions.clone());
        let observer = Arc::clone(&self.observer);
        let body = result.into_stream().inspect(move |chunk| {
            if let Ok(chunk) = chunk {
                observer.bytes(operation, Direction::Read, chunk.len() as u64);
            }
        });
        GetResult {
            payload: GetResultPayload::Stream(body.boxed()),
            meta,
            range,
            attributes,
            extensions,
        }
    }
}

impl fmt::Debug for ObservedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObservedStore")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for ObservedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

#[async_trait]
impl ObjectStore for ObservedStore {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        let (started, len) = (Instant::now(), payload.content_length() as u64);
        let result = self.inner.put_opts(location, payload, opts).await;
        self.record("put", started, &result);
        if result.is_ok() {
            self.observer.bytes("put", Direction::Write, len);
        }
        result
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        let started = Instant::now();
        let result = self.inner.put_multipart_opts(location, opts).await;
        self.record("put_multipart", started, &result);
        let observer = Arc::clone(&self.observer);
        result.map(|inner| Box::new(ObservedUpload { inner, observer }) as Box<dyn MultipartUpload>)
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let operation = match (options.head, &options.range) {
            (true, _) => "head",
            (false, Some(_)) => "get_range",
            (false, None) => "get",
        };
        let started = Instant::now();
        let result = self.inner.get_opts(location, options).await;
        self.record(operation, started, &result);
        match operation {
            "head" => result,
            _ => result.map(|r| self.counted(operation, r)),
        }
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let started = Instant::now();
        let result = self.inner.get_ranges(location, ranges).await;
        self.record("get_ranges", started, &result);
        if let Ok(parts) = &result {
            let len = parts.iter().map(|part| part.len() as u64).sum();
            self.observer.bytes("get_ranges", Direction::Read, len);
        }
        result
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        let observer = Arc::clone(&self.observer);
        let mut since = Instant::now();
        self.inner
            .delete_stream(locations)
            .inspect(move |result| {
                observer.request("delete", outcome(result), since.elapsed());
                since = Instant::now();
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.listing(self.inner.list(prefix))
    }

    fn list_with_offset(&self, prefix: Option<&Path>, offset: &Path) -> BoxStream<'static, Result<ObjectMeta>> {
        self.listing(self.inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let started = Instant::now();
        let result = self.inner.list_with_delimiter(prefix).await;
        self.record("list_with_delimiter", started, &result);
        result
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        let started = Instant::now();
        let result = self.inner.copy_opts(from, to, options).await;
        self.record("copy", started, &result);
        result
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        let started = Instant::now();
        let result = self.inner.rename_opts(from, to, options).await;
        self.record("rename", started, &result);
        result
    }
}

impl ObservedStore {
    /// A listing counts once when its first page answers (or it ends empty, or is dropped
    /// unread), and once more for each later error.
    fn listing(&self, entries: BoxStream<'static, Result<ObjectMeta>>) -> BoxStream<'static, Result<ObjectMeta>> {
        let mut call = ListCall {
            observer: Arc::clone(&self.observer),
            started: Instant::now(),
            recorded: false,
        };
        entries
            .inspect(move |entry| match (call.recorded, entry) {
                (false, _) => call.record(outcome(entry)),
                (true, Err(_)) => call.observer.request("list", outcome(entry), Duration::ZERO),
                (true, Ok(_)) => {}
            })
            .boxed()
    }
}

/// One listing, recorded once (on its first entry, else when it is dropped).
struct ListCall {
    observer: Arc<dyn StoreObserver>,
    started: Instant,
    recorded: bool,
}

impl ListCall {
    fn record(&mut self, outcome: &'static str) {
        self.recorded = true;
        self.observer.request("list", outcome, self.started.elapsed());
    }
}

impl Drop for ListCall {
    fn drop(&mut self) {
        if !self.recorded {
            self.record("success");
        }
    }
}

/// A multipart upload whose parts, completion and abort are reported.
struct ObservedUpload {
    inner: Box<dyn MultipartUpload>,
    observer: Arc<dyn StoreObserver>,
}

impl fmt::Debug for ObservedUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObservedUpload")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl MultipartUpload for ObservedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let (observer, started, len) = (Arc::clone(&self.observer), Instant::now(), data.content_length() as u64);
        let part = self.inner.put_part(data);
        Box::pin(async move {
            let result = part.await;
            observer.request("put_part", outcome(&result), started.elapsed());
            if result.is_ok() {
                observer.bytes("put_part", Direction::Write, len);
            }
            result
        })
    }

    async fn complete(&mut self) -> Result<PutResult> {
        let started = Instant::now();
        let result = self.inner.complete().await;
        self.observer
            .request("complete_multipart", outcome(&result), started.elapsed());
        result
    }

    async fn abort(&mut self) -> Result<()> {
        let started = Instant::now();
        let result = self.inner.abort().await;
        self.observer
            .request("abort_multipart", outcome(&result), started.elapsed());
        result
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use futures::TryStreamExt;
    use object_store::memory::InMemory;
    use object_store::{GetRange, ObjectStoreExt, WriteMultipart};

    use super::*;

    /// Every report, in order.
    #[derive(Default)]
    struct Recorder {
        requests: Mutex<Vec<(&'static str, &'static str)>>,
        bytes: Mutex<Vec<(&'static str, &'static str, u64)>>,
    }

    impl StoreObserver for Recorder {
        fn request(&self, operation: &'static str, outcome: &'static str, _: Duration) {
            self.requests.lock().unwrap().push((operation, outcome));
        }
        fn bytes(&self, operation: &'static str, direction: Direction, bytes: u64) {
            self.bytes.lock().unwrap().push((operation, direction.label(), bytes));
        }
    }

    impl Recorder {
        fn take(&self) -> (Vec<(&'static str, &'static str)>, u64) {
            let requests = std::mem::take(&mut *self.requests.lock().unwrap());
            let bytes = std::mem::take(&mut *self.bytes.lock().unwrap());
            (requests, bytes.iter().map(|(_, _, n)| n).sum())
        }
    }

    fn observed() -> (Arc<dyn ObjectStore>, Arc<Recorder>) {
        let recorder = Arc::new(Recorder::default());
        let store = ObservedStore::new(Arc::new(InMemory::new()), recorder.clone());
        (Arc::new(store), recorder)
    }

    #[tokio::test]
    async fn each_call_is_counted_with_its_outcome_and_bytes() {
        let (store, recorder) = observed();
        let path = Path::from("in.jsonl");
        store.put(&path, PutPayload::from_static(b"0123456789")).await.unwrap();
        assert_eq!(recorder.take(), (vec![("put", "success")], 10));

        let body = store.get(&path).await.unwrap().bytes().await.unwrap();
        assert_eq!(body.len(), 10);
        assert_eq!(recorder.take(), (vec![("get", "success")], 10));

        let options = GetOptions {
            range: Some(GetRange::Bounded(2..5)),
            ..GetOptions::default()
        };
        let body = store.get_opts(&path, options).await.unwrap().bytes().await.unwrap();
        assert_eq!(&body[..], b"234");
        assert_eq!(recorder.take(), (vec![("get_range", "success")], 3));

        assert_eq!(store.head(&path).await.unwrap().size, 10);
        assert_eq!(recorder.take(), (vec![("head", "success")], 0));

        let missing = store.head(&Path::from("absent")).await;
        assert!(missing.is_err());
        assert_eq!(recorder.take(), (vec![("head", "not_found")], 0));

        let listed: Vec<ObjectMeta> = store.list(None).try_collect().await.unwrap();
        assert_eq!(listed.len(), 1);
        store.delete(&path).await.unwrap();
        assert_eq!(recorder.take(), (vec![("list", "success"), ("delete", "success")], 0));
    }

    #[tokio::test]
    async fn a_multipart_upload_counts_its_parts_and_their_bytes() {
        let (store, recorder) = observed();
        let upload = store.put_multipart(&Path::from("out.jsonl")).await.unwrap();
        let mut writer = WriteMultipart::new_with_chunk_size(upload, 4);
        writer.write(b"0123456789");
        writer.finish().await.unwrap();
        let (requests, bytes) = recorder.take();
        assert_eq!(bytes, 10);
        assert_eq!(requests.first(), Some(&("put_multipart", "success")));
        assert_eq!(requests.last(), Some(&("complete_multipart", "success")));
        let parts = requests.iter().filter(|r| **r == ("put_part", "success")).count();
        assert_eq!(parts, 3, "{requests:?}");
    }
}
