//! The gateway client against aimock, an independent OpenAI-compatible peer (npm
//! `@copilotkit/aimock`), so the client is not only checked against fakes written here.
//!
//! The `llmock` binary comes from `scripts/test-deps`; `LLMB_AIMOCK_BIN` overrides its path.
//! A missing binary fails the tests (it never skips them).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::common;

use futures::TryStreamExt;
use llm_batch_operator::gateway::{
    ApiKey, Batch, BatchStatus, CreateBatch, GatewayClient, GatewayConfig, RetryPolicy, UploadSource,
};

/// aimock advances a batch one step per retrieve; a handful of polls reach a terminal state.
const MAX_POLLS: usize = 20;

struct Aimock {
    peer: common::aimock::Aimock,
}

impl Aimock {
    async fn start() -> Self {
        let peer = tokio::task::spawn_blocking(common::aimock::Aimock::start)
            .await
            .unwrap();
        Self { peer }
    }

    fn client(&self, headers: &[(&str, &str)]) -> GatewayClient {
        let mut config = GatewayConfig::new(self.peer.base_url.parse().unwrap());
        config.api_key = Some(ApiKey::new("sk-aimock-test"));
        config.headers = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        config.retry = RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(200),
            max_retry_after: Duration::from_secs(5),
        };
        config.request_timeout = Duration::from_secs(10);
        GatewayClient::new(config).unwrap()
    }
}

fn input_jsonl() -> String {
    (1..=3)
        .map(|i| {
            format!(
                r#"{{"custom_id":"req-{i}","method":"POST","url":"/v1/chat/completions","body":{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"hello {i}"}}]}}}}"#
            ) + "\n"
        })
        .collect()
}

fn create_request(input_file_id: &str, token: &str) -> CreateBatch {
    CreateBatch {
        input_file_id: input_file_id.to_owned(),
        endpoint: "/v1/chat/completions".into(),
        completion_window: "24h".into(),
        metadata: BTreeMap::from([("attempt".into(), token.to_owned())]),
    }
}

/// Polls until the batch is terminal, at most `MAX_POLLS` times.
async fn poll_to_terminal(client: &GatewayClient, id: &str) -> Batch {
    for _ in 0..MAX_POLLS {
        let batch = client.get_batch(id).await.unwrap();
        if batch.status.is_terminal() {
            return batch;
        }
    }
    panic!("batch {id} not terminal after {MAX_POLLS} polls");
}

#[tokio::test]
async fn full_cycle_upload_create_poll_download() {
    let aimock = Aimock::start().await;
    let client = aimock.client(&[]);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.jsonl");
    std::fs::write(&input, input_jsonl()).unwrap();

    let file = client
        .upload_file("attempt-tok1.jsonl", "batch", UploadSource::Path(input))
        .await
        .unwrap();
    assert_eq!(file.bytes, Some(input_jsonl().len() as u64));
    assert_eq!(file.purpose.as_deref(), Some("batch"));
    let adopted = client
        .find_file("batch", |f| f.filename.as_deref() == Some("attempt-tok1.jsonl"), None)
        .await
        .unwrap();
    assert_eq!(adopted.map(|f| f.id), Some(file.id.clone()));

    let created = client.create_batch(&create_request(&file.id, "tok1")).await.unwrap();
    assert_eq!(created.status, BatchStatus::Validating);
    assert_eq!(created.input_file_id, file.id);
    let found = client
        .find_batch(
            |b| b.metadata.as_ref().and_then(|m| m.get("attempt")).map(String::as_str) == Some("tok1"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(found.map(|b| b.id), Some(created.id.clone()));

    let done = poll_to_terminal(&client, &created.id).await;
    assert_eq!(done.status, BatchStatus::Completed);
    let counts = done.request_counts.unwrap();
    assert_eq!((counts.total, counts.completed, counts.failed), (3, 3, 0));
    let output_id = done.output_file_id.expect("completed batch has an output file");

    let dest = dir.path().join("output.jsonl");
    let written = client.download_file_to(&output_id, &dest).await.unwrap();
    let output = std::fs::read(&dest).unwrap();
    assert_eq!(written, output.len() as u64);
    let custom_ids: BTreeSet<String> = String::from_utf8(output.clone())
        .unwrap()
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).unwrap()["custom_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        custom_ids,
        BTreeSet::from(["req-1".into(), "req-2".into(), "req-3".into()])
    );
    let streamed: Vec<u8> = client
        .file_content(&output_id)
        .await
        .unwrap()
        .map_ok(|chunk| chunk.to_vec())
        .try_concat()
        .await
        .unwrap();
    assert_eq!(streamed, output);

    client.delete_file(&file.id).await.unwrap();
    assert!(client.get_file(&file.id).await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn batch_forced_to_expire_reports_expired() {
    let aimock = Aimock::start().await;
    let client = aimock.client(&[]);
    let expiring = aimock.client(&[("X-AIMock-Batch-Outcome", "expired")]);
    let file = client
        .upload_file("expire.jsonl", "batch", UploadSource::Bytes(input_jsonl().into()))
        .await
        .unwrap();

    let created = expiring.create_batch(&create_request(&file.id, "tok2")).await.unwrap();
    let done = poll_to_terminal(&client, &created.id).await;

    assert_eq!(done.status, BatchStatus::Expired);
    assert!(done.expired_at.is_some());
    assert!(done.output_file_id.is_none());
}

#[tokio::test]
async fn cancel_and_unknown_batches() {
    let aimock = Aimock::start().await;
    let client = aimock.client(&[]);
    let file = client
        .upload_file("cancel.jsonl", "batch", UploadSource::Bytes(input_jsonl().into()))
        .await
        .unwrap();
    let created = client.create_batch(&create_request(&file.id, "tok3")).await.unwrap();

    let cancelling = client.cancel_batch(&created.id).await.unwrap();
    assert_eq!(cancelling.status, BatchStatus::Cancelling);
    assert_eq!(
        poll_to_terminal(&client, &created.id).await.status,
        BatchStatus::Cancelled
    );

    let err = client.get_batch("batch-does-not-exist").await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(err.to_string().contains("get batch"), "{err}");
    let bad = CreateBatch {
        completion_window: "48h".into(),
        ..create_request(&file.id, "tok4")
    };
    let err = client.create_batch(&bad).await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert!(err.to_string().contains("completion_window"), "{err}");
}
