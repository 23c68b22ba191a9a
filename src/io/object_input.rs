//! An input object read from object storage as a stream of ranged reads: validated in one pass
//! (nothing is kept but the report), then prepared again while it uploads. Memory stays flat
//! whatever the object's size.

use std::ops::Range;
use std::sync::Arc;

use futures::StreamExt;
use tokio::io::AsyncBufRead;
use tokio_util::io::StreamReader;

use super::object_storage::{ObjectLocation, StorageError, StorageErrorKind};
use super::validated_upload::{Digest, Expected, ValidatedUpload, prepared_upload};
use crate::gateway::UploadSource;
use crate::jsonl::{Limits, Preparer, Report, Rewrite, read_start};

/// Bytes read past a slice's end in its first GET: a line that the end falls inside is
/// usually finished within them (a longer one costs a second GET).
const SLICE_SLACK: u64 = 64 * 1024;

/// How to turn the object into the batch input.
#[derive(Debug, Clone)]
pub struct ObjectInput {
    pub location: ObjectLocation,
    /// `spec.input.byteRange`.
    pub range: Option<Range<u64>>,
    /// `spec.input.overrides`.
    pub rewrite: Rewrite,
    pub endpoint: String,
    pub limits: Limits,
    /// The range ends where a line does (a sweep's chunk, cut by its scan): nothing past the
    /// end is read. Otherwise the first GET reads a little past it, for the line the end
    /// falls inside.
    pub ends_at_a_line: bool,
}

/// What validating the object found.
#[derive(Debug)]
pub enum Checked {
    /// The prepared input is valid: its report (requests, bytes as uploaded) and the digest
    /// of its prepared bytes (see [`Digest`]).
    Valid(Report, String),
    /// The input cannot be sent; the message names the object and what to do.
    Invalid(String),
}

impl ObjectInput {
    fn preparer(&self) -> Preparer {
        let preparer = Preparer::new(&self.endpoint, self.limits, self.rewrite.clone());
        match &self.range {
            Some(range) => preparer.sliced(range.clone()),
            None => preparer,
        }
    }

    /// Where a slice's read most likely ends: its end plus room for the line it ends inside.
    fn likely_end(&self) -> Option<u64> {
        let slack = if self.ends_at_a_line { 0 } else { SLICE_SLACK };
        self.range.as_ref().map(|r| r.end.saturating_add(slack))
    }

    fn read_offset(&self) -> u64 {
        self.range.as_ref().map_or(0, |r| read_start(r.start))
    }

    /// Reads the object (or its slice) once, preparing and validating it; sends nothing anywhere.
    pub async fn check(&self) -> Result<Checked, StorageError> {
        let size = self.location.size().await?;
        if let Some(too_large) = self.too_large(size) {
            return Ok(Checked::Invalid(too_large));
        }
        let mut source = self.location.read_from(self.read_offset(), self.likely_end(), size);
        let mut preparer = self.preparer();
        // The prepared bytes go straight into their digest: nothing else of them is kept.
        let mut digest = Digest::default();
        while !preparer.is_done() {
            match source.next().await {
                None => break,
                Some(Ok(chunk)) => preparer.feed(&chunk, &mut digest),
                Some(Err(e)) => return Err(storage_error(e)),
            }
        }
        let report = preparer.finish(&mut digest);
        Ok(match report.is_valid() {
            true => Checked::Valid(report, digest.value()),
            false => Checked::Invalid(format!(
                "invalid input in {}{}:\n{}",
                self.location.url,
                self.line_note(),
                report.render(20)
            )),
        })
    }

    /// Whether the object still reaches the slice's end (one HEAD, no bytes read).
    pub async fn holds_slice(&self) -> Result<bool, StorageError> {
        let size = self.location.size().await?;
        Ok(self.range.as_ref().is_none_or(|r| r.end <= size))
    }

    /// An upload that prepares the object again as it streams; `len` is the validated length.
    /// With the validation's `digest`, the bytes must match it (so custom_id uniqueness, proved
    /// then, is not tracked again: its memory grows with the lines).
    pub async fn upload(&self, len: u64, digest: Option<String>) -> Result<ValidatedUpload, StorageError> {
        let size = self.location.size().await?;
        let (location, offset, likely_end) = (self.location.clone(), self.read_offset(), self.likely_end());
        let this = self.clone();
        let trusting = digest.is_some();
        let prepare = move || match trusting {
            true => this.preparer().trusting_unique_ids(),
            false => this.preparer(),
        };
        Ok(prepared_upload(
            Arc::new(move || location.read_from(offset, likely_end, size)),
            Expected { len, digest },
            Arc::new(prepare),
        ))
    }

    /// The prepared bytes (sliced, rewritten, validated again as they stream; `len` is the
    /// validated length) as a reader: what direct mode sends line by line.
    pub async fn prepared_reader(&self, len: u64) -> Result<impl AsyncBufRead + Send + Unpin + 'static, StorageError> {
        let UploadSource::Stream(source) = self.upload(len, None).await?.source else {
            unreachable!("an object is always uploaded as a stream")
        };
        Ok(StreamReader::new((source.open)()))
    }

    /// Without a slice or a rewrite, an object over the byte limit is refused before any read.
    fn too_large(&self, size: u64) -> Option<String> {
        let whole = self.range.is_none() && self.rewrite.is_noop();
        (whole && size > self.limits.max_bytes).then(|| {
            format!(
                "object {} is {size} bytes, over the gateway's maxBytesPerBatch of {} bytes: \
                 split it with a BatchSweep (or spec.input.byteRange)",
                self.location.url, self.limits.max_bytes
            )
        })
    }

    /// How line numbers in its messages count, when the slice starts inside the object.
    pub fn line_note(&self) -> String {
        match &self.range {
            Some(r) if r.start > 0 => format!(" (line numbers count from byteRange.start {})", r.start),
            _ => String::new(),
        }
    }
}

/// Recovers the storage error a read stream carried, or names the read failure.
fn storage_error(e: std::io::Error) -> StorageError {
    match e.get_ref().and_then(|inner| inner.downcast_ref::<StorageError>()) {
        Some(storage) => storage.clone(),
        None => StorageError {
            kind: StorageErrorKind::Transient,
            message: e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::io::object_storage::in_memory;

    const ENDPOINT: &str = "/v1/chat/completions";

    /// A Batch validated by an earlier version keeps its SipHash (16 hex digits) in status
    /// across an upgrade: no digest to compare, so the upload pass tracks custom_ids itself.
    #[tokio::test]
    async fn an_old_form_digest_is_none_and_the_upload_pass_finds_duplicate_ids_itself() {
        let expected = Digest::expected(Some("9ae1c6e04f3a2b17"));
        assert_eq!(expected, None);
        let line = format!(r#"{{"custom_id":"a","method":"POST","url":"{ENDPOINT}","body":{{"model":"m"}}}}"#);
        let bytes = Bytes::from(format!("{line}\n{line}\n"));
        let input = ObjectInput {
            location: in_memory("s3://b/in.jsonl", bytes.clone()).await,
            range: None,
            rewrite: Rewrite::default(),
            endpoint: ENDPOINT.to_string(),
            limits: Limits::default(),
            ends_at_a_line: false,
        };
        let upload = input.upload(bytes.len() as u64, expected).await.unwrap();
        let UploadSource::Stream(source) = upload.source.clone() else {
            unreachable!()
        };
        let sent: Result<Vec<Bytes>, _> = (source.open)().collect::<Vec<_>>().await.into_iter().collect();
        assert!(sent.is_err(), "the upload was not aborted");
        let refusal = upload.refusal().expect("a refusal");
        assert!(
            refusal.contains("custom_id \"a\" is a duplicate of line 1"),
            "{refusal}"
        );
    }
}
