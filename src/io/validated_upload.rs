//! One pass over a JSONL file that validates it and uploads it at once, and never lets an
//! invalid file reach the gateway: each chunk is checked before it is sent, and the upload
//! body only completes after the whole file proved valid. An invalid file aborts the upload
//! mid-body, so the gateway stores nothing.

use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::gateway::{StreamSource, UploadSource};
use crate::jsonl::{Limits, Report, Validator};

/// Bytes read from disk and validated per step.
const CHUNK: usize = 1024 * 1024;
/// Validated chunks waiting to be sent (bounds memory to a few MiB).
const IN_FLIGHT: usize = 4;

/// An upload source that validates as it streams, and the report of its latest attempt.
pub struct ValidatedUpload {
    pub source: UploadSource,
    report: Arc<Mutex<Option<Report>>>,
}

impl ValidatedUpload {
    /// The validation report of the latest upload attempt, once it read the whole file.
    pub fn report(&self) -> Option<Report> {
        self.report.lock().expect("report lock").clone()
    }
}

/// Prepares `path` (of `len` bytes) to be validated against `endpoint` and `limits` while it uploads.
pub fn validated_file_upload(path: PathBuf, len: u64, endpoint: &str, limits: Limits) -> ValidatedUpload {
    let report = Arc::new(Mutex::new(None));
    let endpoint = endpoint.to_string();
    let shared = Arc::clone(&report);
    let open = move || {
        let (tx, rx) = mpsc::channel(IN_FLIGHT);
        let (path, endpoint, report) = (path.clone(), endpoint.clone(), Arc::clone(&shared));
        // Reading and validating are blocking CPU work: a thread of their own, so they overlap
        // with sending the previous chunks.
        tokio::task::spawn_blocking(move || validate_and_forward(&path, &endpoint, limits, &tx, &report));
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }).boxed()
    };
    ValidatedUpload {
        source: UploadSource::Stream(StreamSource {
            len,
            open: Arc::new(open),
        }),
        report,
    }
}

type Sender = mpsc::Sender<std::io::Result<Bytes>>;

fn validate_and_forward(
    path: &std::path::Path,
    endpoint: &str,
    limits: Limits,
    tx: &Sender,
    report: &Mutex<Option<Report>>,
) {
    let mut validator = Validator::new(endpoint, limits);
    let mut sending = true;
    let abort = |tx: &Sender, sending: &mut bool, why: String| {
        if std::mem::take(sending) {
            let _ = tx.blocking_send(Err(std::io::Error::other(why)));
        }
    };
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => return abort(tx, &mut sending, format!("{}: {e}", path.display())),
    };
    let mut buf = BytesMut::with_capacity(CHUNK);
    loop {
        buf.resize(CHUNK, 0);
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => return abort(tx, &mut sending, format!("{}: {e}", path.display())),
        };
        validator.feed(&buf[..n]);
        if validator.has_problems() {
            // Keep reading for the full report, but send nothing more.
            abort(tx, &mut sending, "the input is invalid".into());
        } else if sending && tx.blocking_send(Ok(buf.split_to(n).freeze())).is_err() {
            return; // The upload was dropped.
        }
    }
    let result = validator.finish();
    if !result.is_valid() {
        abort(tx, &mut sending, "the input is invalid".into());
    }
    *report.lock().expect("report lock") = Some(result);
}
