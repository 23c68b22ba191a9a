//! A hostile OpenAI-compatible gateway: its own code (not the simulator), answering the Files
//! and Batches API correctly except where its [`Mode`] misbehaves, on a free 127.0.0.1 port.
//! Every misbehaviour happens `times` times, then the gateway answers properly: a run must
//! ride it out, bounded in memory, and end as if nothing happened (or stop, for a redirect).
//! A second listener ([`Hostile::elsewhere_hits`]) stands for "another host": a redirect target
//! that must never receive a request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Multipart, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::{StreamExt, stream};
use serde_json::{Value, json};

/// How the gateway misbehaves.
#[derive(Clone, Debug, PartialEq)]
pub enum Mode {
    /// Answers properly throughout.
    Honest,
    /// `GET /files/{id}/content` answers 302 to the other host's metadata path.
    RedirectDownload,
    /// `POST /batches` answers 307 to the other host.
    RedirectCreate,
    /// `POST /files` answers 500 with a body that never ends.
    EndlessError,
    /// `GET /files` (the adoption list) answers 200 with JSON that never ends.
    EndlessList,
    /// `GET /batches/{id}` answers 200 with JSON that never ends.
    EndlessPoll,
    /// The output file is one line that never ends.
    EndlessLine,
    /// The output file is lines that never end.
    EndlessFile,
    /// The output file trickles a byte every 200 ms.
    Trickle,
    /// A poll answers an HTML page (a proxy's error page) with status 200.
    HtmlPoll,
    /// A poll answers a negative request count.
    NegativeCount,
    /// The key, echoed in a 500's message, in a wrongly typed poll field, and in
    /// `errors[].message` of the batch (which then fails).
    EchoKey(String),
    /// Direct mode: every chat completion answers with a body that never ends.
    EndlessAnswer,
    /// The output file repeats its first line at its end (21 lines for 20 requests).
    DuplicateIds,
    /// The output file's first line carries `../../etc/passwd` instead of the input's id (as
    /// many lines as requests, one foreign, one missing).
    ForeignIds,
    /// `request_counts` says 999 completed, whatever the input held.
    InflatedCounts,
    /// The batch ends `completed` with neither an output nor an error file.
    NoResultFiles,
}

struct Gateway {
    mode: Mode,
    /// Misbehaviours left.
    left: AtomicUsize,
    elsewhere: String,
    files: Mutex<HashMap<String, Bytes>>,
    batches: Mutex<HashMap<String, Value>>,
    polls: Mutex<HashMap<String, u32>>,
    next: AtomicU64,
}

impl Gateway {
    /// True while this mode should still misbehave (and counts the misbehaviour).
    fn hostile(&self, mode: &Mode) -> bool {
        &self.mode == mode
            && self
                .left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
    }

    fn id(&self, prefix: &str) -> String {
        format!("{prefix}-{}", self.next.fetch_add(1, Ordering::SeqCst))
    }
}

/// The running gateway.
pub struct Hostile {
    pub base_url: String,
    elsewhere_hits: Arc<AtomicUsize>,
    _runtime: tokio::runtime::Runtime,
}

impl Hostile {
    /// Starts a gateway misbehaving `times` times in `mode`.
    pub fn start(mode: Mode, times: usize) -> Hostile {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let elsewhere_hits = Arc::new(AtomicUsize::new(0));
        let (base_url, _) = runtime.block_on(async {
            let hits = elsewhere_hits.clone();
            let other = Router::new().fallback(move || {
                hits.fetch_add(1, Ordering::SeqCst);
                async { "secret metadata" }
            });
            let other_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let elsewhere = format!("http://{}", other_listener.local_addr().unwrap());
            tokio::spawn(async move { axum::serve(other_listener, other).await });
            let state = Arc::new(Gateway {
                mode,
                left: AtomicUsize::new(times),
                elsewhere,
                files: Mutex::default(),
                batches: Mutex::default(),
                polls: Mutex::default(),
                next: AtomicU64::new(1),
            });
            let app = Router::new()
                .route("/v1/files", post(upload).get(list_files))
                .route("/v1/files/{id}/content", get(content))
                .route("/v1/batches", post(create).get(list_batches))
                .route("/v1/batches/{id}", get(poll))
                .route("/v1/batches/{id}/cancel", post(poll))
                .route("/v1/chat/completions", post(answer))
                .with_state(state);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
            tokio::spawn(async move { axum::serve(listener, app).await });
            (base_url, ())
        });
        Hostile {
            base_url,
            elsewhere_hits,
            _runtime: runtime,
        }
    }

    /// Requests the "other host" received.
    pub fn elsewhere_hits(&self) -> usize {
        self.elsewhere_hits.load(Ordering::SeqCst)
    }
}

type Shared = State<Arc<Gateway>>;

/// A 200 body that repeats `chunk` after `start` for ever.
fn endless(status: StatusCode, start: &'static str, chunk: &'static [u8]) -> Response {
    let first = stream::once(async move { Ok::<_, std::io::Error>(Bytes::from_static(start.as_bytes())) });
    let rest = stream::repeat_with(move || Ok(Bytes::from_static(chunk)));
    (status, Body::from_stream(first.chain(rest))).into_response()
}

const FILLER: &[u8] = &[b'a'; 64 * 1024];

async fn upload(State(gw): Shared, mut form: Multipart) -> Response {
    if gw.hostile(&Mode::EndlessError) {
        return endless(StatusCode::INTERNAL_SERVER_ERROR, "{\"error\":{\"message\":\"", FILLER);
    }
    let mut content = Bytes::new();
    let mut filename = String::new();
    while let Ok(Some(field)) = form.next_field().await {
        if field.name() == Some("file") {
            filename = field.file_name().unwrap_or_default().to_string();
            content = field.bytes().await.unwrap_or_default();
        }
    }
    let id = gw.id("file");
    let bytes = content.len();
    gw.files.lock().unwrap().insert(id.clone(), content);
    axum::Json(json!({"id": id, "object": "file", "bytes": bytes, "created_at": now(), "filename": filename, "purpose": "batch", "status": "processed"})).into_response()
}

async fn list_files(State(gw): Shared) -> Response {
    if gw.hostile(&Mode::EndlessList) {
        return endless(StatusCode::OK, "{\"object\":\"list\",\"data\":[{\"id\":\"", FILLER);
    }
    axum::Json(json!({"object": "list", "data": [], "has_more": false})).into_response()
}

async fn list_batches() -> Response {
    axum::Json(json!({"object": "list", "data": [], "has_more": false})).into_response()
}

async fn create(State(gw): Shared, body: Bytes) -> Response {
    if gw.hostile(&Mode::RedirectCreate) {
        let location = format!("{}/v1/batches", gw.elsewhere);
        return (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, location)]).into_response();
    }
    let request: Value = serde_json::from_slice(&body).unwrap_or_default();
    let input = request["input_file_id"].as_str().unwrap_or_default().to_string();
    let Some(content) = gw.files.lock().unwrap().get(&input).cloned() else {
        return (StatusCode::NOT_FOUND, axum::Json(json!({"error": {"message": "no such file", "type": "invalid_request_error", "param": "input_file_id", "code": null}}))).into_response();
    };
    let mut output = answers(&content);
    match gw.mode {
        Mode::DuplicateIds => {
            let first = output
                .split_inclusive(|b| *b == b'\n')
                .next()
                .unwrap_or_default()
                .to_vec();
            output = [output.to_vec(), first].concat().into();
        }
        Mode::ForeignIds => {
            let mut lines: Vec<Value> = output
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| serde_json::from_slice(l).unwrap())
                .collect();
            lines[0]["custom_id"] = json!("../../etc/passwd");
            output = lines.iter().map(|l| format!("{l}\n")).collect::<String>().into();
        }
        _ => {}
    }
    let output_id = gw.id("file");
    gw.files.lock().unwrap().insert(output_id.clone(), output);
    let id = gw.id("batch");
    let total = content.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count();
    let batch = json!({
        "id": id, "object": "batch", "endpoint": request["endpoint"], "input_file_id": input,
        "completion_window": "24h", "status": "validating", "created_at": now(),
        "metadata": request["metadata"], "output_file_id": output_id,
        "request_counts": {"total": total, "completed": total, "failed": 0},
    });
    gw.batches.lock().unwrap().insert(id, batch.clone());
    axum::Json(batch).into_response()
}

async fn poll(State(gw): Shared, Path(id): Path<String>) -> Response {
    let Some(mut batch) = gw.batches.lock().unwrap().get(&id).cloned() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if gw.hostile(&Mode::EndlessPoll) {
        return endless(
            StatusCode::OK,
            "{\"id\":\"b\",\"status\":\"in_progress\",\"model\":\"",
            FILLER,
        );
    }
    if gw.hostile(&Mode::HtmlPoll) {
        return (StatusCode::OK, "<html><body>502 Bad Gateway</body></html>").into_response();
    }
    if gw.hostile(&Mode::NegativeCount) {
        batch["request_counts"] = json!({"total": -1, "completed": -5, "failed": 0});
        return axum::Json(batch).into_response();
    }
    if let Mode::EchoKey(key) = &gw.mode {
        let n = {
            let mut polls = gw.polls.lock().unwrap();
            let n = polls.entry(id.clone()).or_default();
            *n += 1;
            *n
        };
        match n {
            1 => {
                let message = format!("upstream said: Incorrect API key provided: {key}");
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    axum::Json(
                        json!({"error": {"message": message, "type": "server_error", "param": null, "code": null}}),
                    ),
                )
                    .into_response();
            }
            2 => {
                batch["request_counts"] = json!(key);
                return axum::Json(batch).into_response();
            }
            _ => {
                batch["status"] = json!("failed");
                batch["output_file_id"] = Value::Null;
                batch["errors"] = json!({"object": "list", "data": [{"code": "invalid_request", "message": format!("key {key} is not allowed"), "param": key, "line": 1}]});
                return axum::Json(batch).into_response();
            }
        }
    }
    batch["status"] = json!("completed");
    match gw.mode {
        Mode::InflatedCounts => batch["request_counts"]["completed"] = json!(999),
        Mode::NoResultFiles => batch["output_file_id"] = Value::Null,
        _ => {}
    }
    axum::Json(batch).into_response()
}

async fn content(State(gw): Shared, Path(id): Path<String>) -> Response {
    if gw.hostile(&Mode::RedirectDownload) {
        let location = format!(
            "{}/computeMetadata/v1/instance/service-accounts/default/token",
            gw.elsewhere
        );
        return (StatusCode::FOUND, [(header::LOCATION, location)]).into_response();
    }
    if gw.hostile(&Mode::EndlessLine) {
        return endless(StatusCode::OK, "{\"custom_id\":\"", FILLER);
    }
    if gw.hostile(&Mode::EndlessFile) {
        return endless(StatusCode::OK, "", b"{\"custom_id\":\"x\"}\n");
    }
    if gw.hostile(&Mode::Trickle) {
        let bytes = stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            Some((Ok::<_, std::io::Error>(Bytes::from_static(b"{")), ()))
        });
        return (StatusCode::OK, Body::from_stream(bytes)).into_response();
    }
    match gw.files.lock().unwrap().get(&id) {
        Some(bytes) => (StatusCode::OK, bytes.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn answer(State(gw): Shared, body: Bytes) -> Response {
    if gw.mode == Mode::EndlessAnswer {
        return endless(StatusCode::OK, "{\"choices\":[{\"message\":{\"content\":\"", FILLER);
    }
    let request: Value = serde_json::from_slice(&body).unwrap_or_default();
    axum::Json(completion(&request)).into_response()
}

/// One output line per input line, answered.
fn answers(input: &[u8]) -> Bytes {
    let mut out = Vec::new();
    for (i, line) in input.split(|b| *b == b'\n').filter(|l| !l.is_empty()).enumerate() {
        let request: Value = serde_json::from_slice(line).unwrap_or_default();
        let line = json!({"id": format!("req-{i}"), "custom_id": request["custom_id"], "response": {"status_code": 200, "request_id": format!("r{i}"), "body": completion(&request["body"])}, "error": null});
        out.extend(serde_json::to_vec(&line).unwrap());
        out.push(b'\n');
    }
    Bytes::from(out)
}

fn completion(request: &Value) -> Value {
    json!({"object": "chat.completion", "model": request["model"], "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}})
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
