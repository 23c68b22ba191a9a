//! The gateway client against a scripted fake gateway (axum on 127.0.0.1, port 0).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use llm_batch_operator::gateway::{
    ApiKey, BatchStatus, CreateBatch, GatewayClient, GatewayConfig, GatewayError, RetryPolicy, UploadSource,
};
use serde_json::{Value, json};

const KEY: &str = "sk-test-DO-NOT-LEAK-0123456789";

/// Serves `router` under `/v1` on a free port; returns the base URL.
async fn serve(router: Router) -> url::Url {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}/v1").parse().unwrap()
}

fn fast_policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(5),
    }
}

fn client(base: url::Url, max_attempts: u32) -> GatewayClient {
    let mut config = GatewayConfig::new(base);
    config.api_key = Some(ApiKey::new(KEY));
    config.retry = fast_policy(max_attempts);
    config.request_timeout = Duration::from_secs(10);
    GatewayClient::new(config).unwrap()
}

fn batch_json(id: &str, status: &str) -> Value {
    json!({
        "id": id, "object": "batch", "endpoint": "/v1/chat/completions", "input_file_id": "file-in",
        "completion_window": "24h", "status": status, "created_at": 1_700_000_000,
        "request_counts": {"total": 0, "completed": 0, "failed": 0}
    })
}

fn error_json(status: StatusCode, message: &str, code: &str) -> Response {
    let body = json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": code}});
    (status, axum::Json(body)).into_response()
}

fn assert_no_key(err: &GatewayError) {
    let shown = format!("{err} | {err:?}");
    assert!(!shown.contains(KEY), "key leaked: {shown}");
}

fn create_request() -> CreateBatch {
    CreateBatch {
        input_file_id: "file-in".into(),
        endpoint: "/v1/chat/completions".into(),
        completion_window: "24h".into(),
        metadata: BTreeMap::from([("attempt".into(), "tok-1".into())]),
    }
}

#[tokio::test]
async fn rate_limit_waits_for_retry_after_then_succeeds() {
    let seen = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let router = Router::new()
        .route(
            "/v1/batches/{id}",
            get(
                |State(seen): State<Arc<Mutex<Vec<Instant>>>>, Path(id): Path<String>| async move {
                    let n = {
                        let mut seen = seen.lock().unwrap();
                        seen.push(Instant::now());
                        seen.len()
                    };
                    if n == 1 {
                        let mut resp = error_json(
                            StatusCode::TOO_MANY_REQUESTS,
                            "Rate limit reached",
                            "rate_limit_exceeded",
                        );
                        resp.headers_mut().insert(header::RETRY_AFTER, "1".parse().unwrap());
                        return resp;
                    }
                    axum::Json(batch_json(&id, "in_progress")).into_response()
                },
            ),
        )
        .with_state(seen.clone());
    let client = client(serve(router).await, 4);

    let batch = client.get_batch("batch_abc").await.unwrap();

    assert_eq!(batch.id, "batch_abc");
    assert_eq!(batch.status, BatchStatus::InProgress);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert!(
        seen[1] - seen[0] >= Duration::from_millis(950),
        "retry-after not honoured"
    );
}

#[tokio::test]
async fn server_errors_are_retried_until_success() {
    let calls = Arc::new(AtomicUsize::new(0));
    let router = Router::new()
        .route(
            "/v1/batches",
            post(
                |State(calls): State<Arc<AtomicUsize>>, axum::Json(body): axum::Json<Value>| async move {
                    assert_eq!(body["input_file_id"], "file-in");
                    assert_eq!(body["metadata"]["attempt"], "tok-1");
                    if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                        return (StatusCode::SERVICE_UNAVAILABLE, "upstream busy").into_response();
                    }
                    axum::Json(batch_json("batch-new", "validating")).into_response()
                },
            ),
        )
        .with_state(calls.clone());
    let client = client(serve(router).await, 4);

    let batch = client.create_batch(&create_request()).await.unwrap();

    assert_eq!(batch.id, "batch-new");
    assert_eq!(batch.status, BatchStatus::Validating);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn persistent_server_errors_exhaust_the_policy() {
    let calls = Arc::new(AtomicUsize::new(0));
    let router = Router::new()
        .route(
            "/v1/batches/{id}",
            get(|State(calls): State<Arc<AtomicUsize>>| async move {
                calls.fetch_add(1, Ordering::SeqCst);
                error_json(StatusCode::BAD_GATEWAY, "bad gateway", "upstream")
            }),
        )
        .with_state(calls.clone());
    let client = client(serve(router).await, 3);

    let err = client.get_batch("b").await.unwrap_err();

    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(err.status(), Some(502));
    assert!(err.is_retryable());
    assert_eq!(err.metric_label(), "server_error");
}

#[tokio::test]
async fn unauthorized_is_terminal_and_carries_the_gateway_message() {
    let calls = Arc::new(AtomicUsize::new(0));
    let router = Router::new()
        .route(
            "/v1/batches",
            post(|State(calls): State<Arc<AtomicUsize>>, headers: HeaderMap| async move {
                calls.fetch_add(1, Ordering::SeqCst);
                // Like OpenAI, echo (part of) the presented key: the client must scrub it.
                let presented = headers[header::AUTHORIZATION].to_str().unwrap().to_owned();
                let message = format!("Incorrect API key provided: {presented}.");
                error_json(StatusCode::UNAUTHORIZED, &message, "invalid_api_key")
            }),
        )
        .with_state(calls.clone());
    let client = client(serve(router).await, 5);

    let err = client.create_batch(&create_request()).await.unwrap_err();

    assert_eq!(calls.load(Ordering::SeqCst), 1, "401 must not be retried");
    assert!(err.is_unauthorized() && !err.is_retryable());
    assert_eq!(err.code(), Some("invalid_api_key"));
    let text = err.to_string();
    assert!(text.contains("create batch"), "{text}");
    assert!(text.contains("Incorrect API key provided"), "{text}");
    assert_no_key(&err);
}

#[tokio::test]
async fn cancel_of_a_finished_batch_is_a_terminal_conflict() {
    let calls = Arc::new(AtomicUsize::new(0));
    let router = Router::new()
        .route(
            "/v1/batches/{id}/cancel",
            post(|State(calls): State<Arc<AtomicUsize>>| async move {
                calls.fetch_add(1, Ordering::SeqCst);
                error_json(
                    StatusCode::CONFLICT,
                    "Cannot cancel a batch with status 'completed'.",
                    "",
                )
            }),
        )
        .with_state(calls.clone());
    let client = client(serve(router).await, 5);

    let err = client.cancel_batch("batch_done").await.unwrap_err();

    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(err.status(), Some(409));
    assert!(
        err.to_string()
            .contains("Cannot cancel a batch with status 'completed'.")
    );
}

#[tokio::test]
async fn not_found_is_reported() {
    let router = Router::new().route(
        "/v1/files/{id}",
        get(|Path(id): Path<String>| async move {
            error_json(StatusCode::NOT_FOUND, &format!("No such File object: {id}"), "")
        }),
    );
    let client = client(serve(router).await, 5);

    let err = client.get_file("file-missing").await.unwrap_err();

    assert!(err.is_not_found());
    assert!(err.to_string().contains("No such File object: file-missing"));
}

#[tokio::test]
async fn sends_the_bearer_key_and_extra_headers() {
    let seen = Arc::new(Mutex::new(None::<HeaderMap>));
    let router = Router::new()
        .route(
            "/v1/files/{id}",
            get(
                |State(seen): State<Arc<Mutex<Option<HeaderMap>>>>,
                 Path(id): Path<String>,
                 headers: HeaderMap| async move {
                    *seen.lock().unwrap() = Some(headers);
                    axum::Json(json!({"id": id, "object": "file", "bytes": 3, "purpose": "batch"}))
                },
            ),
        )
        .with_state(seen.clone());
    let mut config = GatewayConfig::new(serve(router).await);
    config.api_key = Some(ApiKey::new(KEY));
    config.headers.insert("x-team".into(), "support".into());

    let file = GatewayClient::new(config).unwrap().get_file("file-1").await.unwrap();

    assert_eq!(file.bytes, Some(3));
    let headers = seen.lock().unwrap().take().unwrap();
    assert_eq!(headers[header::AUTHORIZATION], format!("Bearer {KEY}").as_str());
    assert_eq!(headers["x-team"], "support");
}

#[tokio::test]
async fn connection_errors_are_retryable_and_never_show_the_key() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = client(format!("http://{addr}/v1").parse().unwrap(), 2);

    let err = client.list_batches(None, 10).await.unwrap_err();

    assert!(matches!(err, GatewayError::Transport { .. }), "{err:?}");
    assert!(err.is_retryable());
    let text = err.to_string();
    assert!(text.starts_with("list batches failed: "), "{text}");
    assert!(text.to_lowercase().contains("connect"), "the cause is shown: {text}");
    assert_no_key(&err);
}

/// 1 MiB of deterministic, non-repeating-looking bytes per `mib`.
fn payload(mib: usize) -> Vec<u8> {
    (0..mib * 1024 * 1024)
        .map(|i| u8::try_from((i * 7919 + i / 251) % 256).unwrap())
        .collect()
}

#[tokio::test]
async fn download_restarts_after_a_connection_drop_mid_body() {
    // Ending with a newline, as a result file does (one would be added otherwise).
    let mut bytes = payload(1);
    *bytes.last_mut().unwrap() = b'\n';
    let content = Bytes::from(bytes);
    let calls = Arc::new(AtomicUsize::new(0));
    let state = (calls.clone(), content.clone());
    let router = Router::new()
        .route(
            "/v1/files/{id}/content",
            get(|State((calls, content)): State<(Arc<AtomicUsize>, Bytes)>| async move {
                let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
                let half = content.slice(..content.len() / 2);
                let body = if first {
                    let chunks: Vec<Result<Bytes, std::io::Error>> =
                        vec![Ok(half), Err(std::io::Error::other("connection dropped"))];
                    Body::from_stream(futures::stream::iter(chunks))
                } else {
                    Body::from(content.clone())
                };
                ([(header::CONTENT_LENGTH, content.len().to_string())], body).into_response()
            }),
        )
        .with_state(state);
    let client = client(serve(router).await, 3);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("output.jsonl");

    let written = client.download_file_to("file-out", &dest).await.unwrap();

    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(written, content.len() as u64);
    assert_eq!(std::fs::read(&dest).unwrap(), content);
    assert!(!dir.path().join("output.jsonl.partial").exists());
}

#[tokio::test]
async fn download_gives_up_on_a_missing_file_without_leaving_debris() {
    let router = Router::new().route(
        "/v1/files/{id}/content",
        get(|| async { error_json(StatusCode::NOT_FOUND, "No such File object", "") }),
    );
    let client = client(serve(router).await, 3);
    let dir = tempfile::tempdir().unwrap();

    let err = client
        .download_file_to("file-x", &dir.path().join("out"))
        .await
        .unwrap_err();

    assert!(err.is_not_found());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[derive(Default)]
struct Upload {
    purpose: Option<String>,
    filename: Option<String>,
    bytes: Vec<u8>,
    content_length: Option<u64>,
}

#[tokio::test]
async fn upload_streams_a_file_as_multipart_with_its_purpose() {
    let received = Arc::new(Mutex::new(Upload::default()));
    let router = Router::new()
        .route(
            "/v1/files",
            post(
                |State(received): State<Arc<Mutex<Upload>>>, headers: HeaderMap, mut form: Multipart| async move {
                    let mut upload = Upload {
                        content_length: headers
                            .get(header::CONTENT_LENGTH)
                            .map(|v| v.to_str().unwrap().parse().unwrap()),
                        ..Upload::default()
                    };
                    while let Some(field) = form.next_field().await.unwrap() {
                        match field.name().unwrap() {
                            "purpose" => upload.purpose = Some(field.text().await.unwrap()),
                            "file" => {
                                upload.filename = field.file_name().map(str::to_owned);
                                upload.bytes = field.bytes().await.unwrap().to_vec();
                            }
                            other => panic!("unexpected field {other}"),
                        }
                    }
                    let reply = json!({
                        "id": "file-up", "object": "file", "bytes": upload.bytes.len(), "created_at": 1,
                        "filename": upload.filename, "purpose": upload.purpose, "status": "processed"
                    });
                    *received.lock().unwrap() = upload;
                    axum::Json(reply)
                },
            ),
        )
        .layer(DefaultBodyLimit::disable())
        .with_state(received.clone());
    let client = client(serve(router).await, 3);
    let content = payload(5);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("input.jsonl");
    std::fs::write(&path, &content).unwrap();

    let file = client
        .upload_file("attempt-tok1.jsonl", "batch", UploadSource::Path(path))
        .await
        .unwrap();

    assert_eq!(file.id, "file-up");
    assert_eq!(file.bytes, Some(content.len() as u64));
    let upload = received.lock().unwrap();
    assert_eq!(upload.purpose.as_deref(), Some("batch"));
    assert_eq!(upload.filename.as_deref(), Some("attempt-tok1.jsonl"));
    assert!(upload.bytes == content, "uploaded bytes differ");
    assert!(
        upload.content_length.unwrap() > content.len() as u64,
        "multipart length must be known"
    );
}

#[tokio::test]
async fn upload_of_a_missing_path_is_a_local_error() {
    let client = client("http://127.0.0.1:9/v1".parse().unwrap(), 3);
    let err = client
        .upload_file("x.jsonl", "batch", UploadSource::Path("/nonexistent/x.jsonl".into()))
        .await
        .unwrap_err();
    assert!(matches!(err, GatewayError::Io { .. }), "{err:?}");
    assert!(!err.is_retryable());
}

#[derive(serde::Deserialize)]
struct ListQuery {
    after: Option<String>,
    limit: usize,
}

/// 250 batches, newest first: b-249 .. b-000, each with metadata attempt=tok-<n>, created an hour
/// apart (b-<n> at 1,700,000,000 + n hours).
async fn list_page(
    State(pages): State<Arc<Mutex<Vec<Option<String>>>>>,
    Query(q): Query<ListQuery>,
) -> axum::Json<Value> {
    pages.lock().unwrap().push(q.after.clone());
    let all: Vec<String> = (0..250).rev().map(|i| format!("b-{i:03}")).collect();
    let start = q.after.map_or(0, |a| all.iter().position(|id| *id == a).unwrap() + 1);
    let end = (start + q.limit).min(all.len());
    let data: Vec<Value> = all[start..end]
        .iter()
        .map(|id| {
            let mut b = batch_json(id, "completed");
            b["metadata"] = json!({"attempt": format!("tok-{}", &id[2..])});
            b["created_at"] = json!(1_700_000_000 + 3600 * id[2..].parse::<i64>().unwrap());
            b
        })
        .collect();
    axum::Json(json!({
        "object": "list", "data": data, "first_id": all.get(start), "last_id": all.get(end - 1),
        "has_more": end < all.len()
    }))
}

#[tokio::test]
async fn find_batch_walks_pages_newest_first() {
    let pages = Arc::new(Mutex::new(Vec::new()));
    let router = Router::new()
        .route("/v1/batches", get(list_page))
        .with_state(pages.clone());
    let client = client(serve(router).await, 3);
    let wanted = |b: &llm_batch_operator::gateway::Batch| {
        b.metadata.as_ref().and_then(|m| m.get("attempt")).map(String::as_str) == Some("tok-030")
    };

    let found = client
        .find_batch(wanted, Some(1_700_000_000 + 3600 * 30))
        .await
        .unwrap();

    assert_eq!(found.unwrap().id, "b-030");
    let cursors = std::mem::take(&mut *pages.lock().unwrap());
    assert_eq!(cursors, vec![None, Some("b-150".into()), Some("b-050".into())]);

    // A search for an attempt started after b-180 stops at the first page older than that.
    let since_b180 = Some(1_700_000_000 + 3600 * 180);
    assert!(client.find_batch(wanted, since_b180).await.unwrap().is_none());
    assert_eq!(
        std::mem::take(&mut *pages.lock().unwrap()).len(),
        1,
        "stops at the attempt's start"
    );
    assert!(client.find_batch(|b| b.id == "nope", None).await.unwrap().is_none());
    assert_eq!(pages.lock().unwrap().len(), 3, "stops at the last page");
}
