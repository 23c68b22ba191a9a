//! One pass over a JSONL source that prepares it (slice, rewrite), validates it and uploads it
//! at once, and never lets an invalid file reach the gateway: each chunk is checked before it
//! is sent, and the upload body only completes after the whole input proved valid (the last
//! byte is held back until then). An invalid input aborts the upload mid-body, so the gateway
//! stores nothing. Any byte stream works: a local file, an object in object storage.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::mpsc;
use tokio_util::io::ReaderStream;

use crate::gateway::{StreamSource, UploadSource};
use crate::jsonl::{Limits, Prepared, Preparer, Report, Rewrite};

/// Prepared bytes sent per step.
const CHUNK: usize = 1024 * 1024;
/// A chunk's buffer: a chunk and most of the line that runs past it.
const OUT_CAPACITY: usize = CHUNK + 64 * 1024;
/// Validated chunks waiting to be sent (bounds memory to a few MiB).
const IN_FLIGHT: usize = 4;

/// A BLAKE3 digest of prepared bytes (streaming: chunk boundaries do not matter), so a second
/// pass can tell it read exactly what the first validated. A cryptographic hash, as whoever
/// controls the object could otherwise make other bytes of the same length and digest (a 64-bit
/// hash falls to a birthday search) with duplicate custom_ids, which the second pass trusts.
/// Prepared bytes come a line at a time; BLAKE3 hashes many chunks at once only when it is
/// given them at once, so they are gathered first (per line it runs at a third of the pace).
pub struct Digest {
    hasher: blake3::Hasher,
    pending: Vec<u8>,
}

/// How `status.input.digest` starts: the algorithm, so a later change of it is told apart.
const STATUS_PREFIX: &str = "blake3:";
/// Bytes gathered before they are hashed.
const DIGEST_BATCH: usize = 64 * 1024;

impl Default for Digest {
    fn default() -> Self {
        Digest {
            hasher: blake3::Hasher::new(),
            pending: Vec::with_capacity(DIGEST_BATCH),
        }
    }
}

impl Digest {
    pub fn add(&mut self, bytes: &[u8]) {
        if self.pending.len() + bytes.len() > DIGEST_BATCH {
            self.hasher.update(&self.pending);
            self.pending.clear();
        }
        if bytes.len() >= DIGEST_BATCH {
            self.hasher.update(bytes);
        } else {
            self.pending.extend_from_slice(bytes);
        }
    }

    /// `blake3:` and 64 lowercase hex digits: the form `status.input.digest` keeps.
    pub fn value(&self) -> String {
        let mut hasher = self.hasher.clone();
        hasher.update(&self.pending);
        format!("{STATUS_PREFIX}{}", hasher.finalize().to_hex())
    }

    /// The digest a second pass compares its bytes with: one this version wrote. Any other
    /// text (the 16 hex digits of the SipHash an earlier version kept, for a Batch in flight
    /// across an upgrade) is none, so that pass checks custom_ids itself.
    pub fn expected(status: Option<&str>) -> Option<String> {
        status
            .filter(|digest| digest.starts_with(STATUS_PREFIX))
            .map(str::to_owned)
    }
}

impl Prepared for Digest {
    fn put(&mut self, bytes: &[u8]) {
        self.add(bytes);
    }
}

/// What validation found the prepared input to be: its length and, when known, its digest.
#[derive(Clone, Debug)]
pub struct Expected {
    pub len: u64,
    pub digest: Option<String>,
}

/// Opens the source's bytes for one upload attempt.
pub type OpenSource = dyn Fn() -> BoxStream<'static, std::io::Result<Bytes>> + Send + Sync;
/// Makes the preparer for one upload attempt.
pub type MakePreparer = dyn Fn() -> Preparer + Send + Sync;

/// An upload source that validates as it streams, and the report of its latest attempt.
pub struct ValidatedUpload {
    pub source: UploadSource,
    report: Arc<Mutex<Option<Report>>>,
    refusal: Arc<Mutex<Option<String>>>,
}

impl ValidatedUpload {
    /// The validation report of the latest upload attempt, once it read the whole input.
    pub fn report(&self) -> Option<Report> {
        self.report.lock().expect("report lock").clone()
    }

    /// Why an attempt stopped the upload because of the input itself (invalid lines, or not
    /// what was validated): retrying cannot help. Known before the upload fails.
    pub fn refusal(&self) -> Option<String> {
        self.refusal.lock().expect("refusal lock").clone()
    }
}

/// Prepares `path` (of `len` bytes) to be validated against `endpoint` and `limits` while it uploads.
pub fn validated_file_upload(path: PathBuf, len: u64, endpoint: &str, limits: Limits) -> ValidatedUpload {
    let endpoint = endpoint.to_string();
    let open = move || {
        let path = path.clone();
        futures::stream::once(async move { tokio::fs::File::open(&path).await })
            .map(|file| match file {
                Ok(file) => ReaderStream::with_capacity(file, CHUNK).boxed(),
                Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
            })
            .flatten()
            .boxed()
    };
    let prepare = move || Preparer::new(&endpoint, limits, Rewrite::default());
    prepared_upload(Arc::new(open), Expected { len, digest: None }, Arc::new(prepare))
}

/// Uploads what `prepare` makes of the stream `open` yields; `expected` is what validation
/// found. A different length or digest (the source changed since) aborts the upload.
pub fn prepared_upload(open: Arc<OpenSource>, expected: Expected, prepare: Arc<MakePreparer>) -> ValidatedUpload {
    let len = expected.len;
    let report = Arc::new(Mutex::new(None));
    let refusal = Arc::new(Mutex::new(None));
    let (shared, refused) = (Arc::clone(&report), Arc::clone(&refusal));
    let open_attempt = move || {
        let (tx, rx) = mpsc::channel(IN_FLIGHT);
        let forward = Forward {
            tx,
            sending: true,
            sent: 0,
            len,
            expected_digest: expected.digest.clone(),
            digest: Digest::default(),
            refusal: Arc::clone(&refused),
        };
        tokio::spawn(forward.run(open(), prepare(), Arc::clone(&shared)));
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }).boxed()
    };
    ValidatedUpload {
        source: UploadSource::Stream(StreamSource {
            len,
            open: Arc::new(open_attempt),
        }),
        report,
        refusal,
    }
}

struct Forward {
    tx: mpsc::Sender<std::io::Result<Bytes>>,
    sending: bool,
    sent: u64,
    len: u64,
    expected_digest: Option<String>,
    digest: Digest,
    refusal: Arc<Mutex<Option<String>>>,
}

impl Forward {
    async fn run(
        mut self,
        mut source: BoxStream<'static, std::io::Result<Bytes>>,
        mut preparer: Preparer,
        report: Arc<Mutex<Option<Report>>>,
    ) {
        let mut out = Vec::with_capacity(OUT_CAPACITY);
        while !preparer.is_done() {
            let chunk = match source.next().await {
                None => break,
                Some(Ok(chunk)) => chunk,
                Some(Err(e)) => return self.abort(e.to_string()).await,
            };
            preparer.feed(&chunk, &mut out);
            if preparer.has_problems() {
                // The first problems are enough to refuse; the validation pass reports them all.
                let result = preparer.finish(&mut out);
                self.refuse(format!("invalid input:\n{}", result.render(20))).await;
                *report.lock().expect("report lock") = Some(result);
                return;
            } else if out.len() >= CHUNK && !self.send_all_but_last_byte(&mut out).await {
                return; // The upload was dropped.
            }
        }
        let result = preparer.finish(&mut out);
        self.add_to_digest(&out);
        if !result.is_valid() {
            self.refuse(format!("invalid input:\n{}", result.render(20))).await;
        } else if self.expected_digest.as_ref().is_some_and(|d| *d != self.digest.value()) {
            self.refuse("the input's bytes differ from what was validated: it changed since".into())
                .await;
        } else if self.sent + out.len() as u64 != self.len {
            let found = self.sent + out.len() as u64;
            let why = format!(
                "the input is {found} bytes, not {} as validated: it changed since",
                self.len
            );
            self.refuse(why).await;
        } else if self.sending {
            let _ = self.tx.send(Ok(Bytes::from(out))).await;
        }
        *report.lock().expect("report lock") = Some(result);
    }

    /// Sends `out` but its last byte, so the body cannot complete before the end is validated.
    async fn send_all_but_last_byte(&mut self, out: &mut Vec<u8>) -> bool {
        if !self.sending {
            return true;
        }
        // The Vec becomes the chunk without a copy; the byte held back starts the next one.
        let last = out.pop().expect("a chunk is not empty");
        let ready = Bytes::from(std::mem::replace(out, Vec::with_capacity(OUT_CAPACITY)));
        out.push(last);
        self.add_to_digest(&ready);
        self.sent += ready.len() as u64;
        if self.sent >= self.len {
            let why = format!(
                "the input is more than {} bytes as validated: it changed since",
                self.len
            );
            self.refuse(why).await;
            return true;
        }
        self.tx.send(Ok(ready)).await.is_ok()
    }

    /// Digests what is sent, when there is a digest to compare it with (a second pass).
    fn add_to_digest(&mut self, bytes: &[u8]) {
        if self.expected_digest.is_some() {
            self.digest.add(bytes);
        }
    }

    /// Stops the upload because of the input itself, saying why.
    async fn refuse(&mut self, why: String) {
        self.refusal
            .lock()
            .expect("refusal lock")
            .get_or_insert_with(|| why.clone());
        self.abort(why).await;
    }

    async fn abort(&mut self, why: String) {
        if std::mem::take(&mut self.sending) {
            let _ = self.tx.send(Err(std::io::Error::other(why))).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENDPOINT: &str = "/v1/chat/completions";

    fn lines(ids: [&str; 2]) -> Bytes {
        let line = |id: &str| {
            format!(r#"{{"custom_id":"{id}","method":"POST","url":"{ENDPOINT}","body":{{"model":"m"}}}}"#) + "\n"
        };
        Bytes::from(line(ids[0]) + &line(ids[1]))
    }

    /// Uploads `bytes` as a second pass expecting `expected`; the body, or why it was aborted.
    async fn second_pass(bytes: Bytes, expected: Expected) -> Result<Vec<u8>, String> {
        let open = move || futures::stream::once(futures::future::ready(Ok(bytes.clone()))).boxed();
        let prepare = || Preparer::new(ENDPOINT, Limits::default(), Rewrite::default()).trusting_unique_ids();
        let upload = prepared_upload(Arc::new(open), expected, Arc::new(prepare));
        let UploadSource::Stream(source) = upload.source else {
            unreachable!()
        };
        let mut body = Vec::new();
        let mut stream = (source.open)();
        while let Some(chunk) = stream.next().await {
            body.extend_from_slice(&chunk.map_err(|e| e.to_string())?);
        }
        Ok(body)
    }

    #[tokio::test]
    async fn a_second_pass_sends_only_the_bytes_the_first_validated() {
        let validated = lines(["a", "b"]);
        let mut digest = Digest::default();
        digest.add(&validated[..7]);
        digest.add(&validated[7..]);
        let expected = Expected {
            len: validated.len() as u64,
            digest: Some(digest.value()),
        };
        assert_eq!(
            second_pass(validated.clone(), expected.clone()).await.unwrap(),
            validated.to_vec()
        );
        // Same length, a duplicate custom_id: not tracked in this pass, caught by the digest.
        let changed = lines(["a", "a"]);
        assert_eq!(changed.len(), validated.len());
        let error = second_pass(changed, expected.clone()).await.unwrap_err();
        assert!(error.contains("differ from what was validated"), "{error}");
    }

    #[test]
    fn the_digest_is_blake3_whatever_the_pieces_in_the_status_form_and_only_that_form_is_expected() {
        let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let whole = format!("blake3:{}", blake3::hash(&bytes).to_hex());
        // Lines, a piece larger than the batch, and pieces that straddle it.
        for sizes in [&[88][..], &[1000, 3], &[70_000, 10], &[65_535, 1, 2]] {
            let mut digest = Digest::default();
            let mut rest = &bytes[..];
            for &size in sizes.iter().cycle() {
                let (piece, after) = rest.split_at(size.min(rest.len()));
                digest.add(piece);
                rest = after;
                if rest.is_empty() {
                    break;
                }
            }
            assert_eq!(digest.value(), whole, "pieces of {sizes:?}");
        }
        assert_eq!(Digest::expected(Some(&whole)), Some(whole.clone()));
        for other in [Some("9ae1c6e04f3a2b17"), Some(&whole[7..]), None] {
            assert_eq!(Digest::expected(other), None, "{other:?}");
        }
    }
}
