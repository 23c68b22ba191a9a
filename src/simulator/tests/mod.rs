//! Handler tests, in-process through `tower::ServiceExt::oneshot`.

mod batches;
mod faults;
mod files;
mod lifecycle;

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{SimState, SimulatorConfig, app};

const BOUNDARY: &str = "simtestboundary";
pub const CHAT: &str = "/v1/chat/completions";

/// Quick phases so lifecycle tests finish fast.
pub fn fast_config() -> SimulatorConfig {
    SimulatorConfig {
        validating_ms: 10,
        finalizing_ms: 10,
        cancelling_ms: 10,
        seed: Some(7),
        ..SimulatorConfig::default()
    }
}

/// A response as the tests look at it.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub bytes: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.bytes)))
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.bytes.clone()).unwrap()
    }
}

/// The router plus its state, with request helpers.
pub struct Harness {
    pub app: Router,
    pub state: SimState,
    pub key: Option<String>,
}

impl Harness {
    pub fn new(config: SimulatorConfig) -> Self {
        let key = config.api_key.clone();
        let state = SimState::new(config).unwrap();
        Harness {
            app: app(state.clone()),
            state,
            key,
        }
    }

    pub fn fast() -> Self {
        Self::new(fast_config())
    }

    fn builder(&self, method: &str, uri: &str) -> axum::http::request::Builder {
        let builder = Request::builder().method(method).uri(uri);
        match &self.key {
            Some(key) => builder.header("authorization", format!("Bearer {key}")),
            None => builder,
        }
    }

    pub async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        Reply {
            status,
            headers,
            bytes: bytes.to_vec(),
        }
    }

    /// A request with optional JSON body and extra headers.
    pub async fn call(&self, method: &str, uri: &str, body: Option<Value>, headers: &[(&str, &str)]) -> Reply {
        let mut builder = self.builder(method, uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let body = match body {
            Some(value) => {
                builder = builder.header("content-type", "application/json");
                Body::from(value.to_string())
            }
            None => Body::empty(),
        };
        self.send(builder.body(body).unwrap()).await
    }

    pub async fn get(&self, uri: &str) -> Reply {
        self.call("GET", uri, None, &[]).await
    }

    pub async fn post(&self, uri: &str, body: Value) -> Reply {
        self.call("POST", uri, Some(body), &[]).await
    }

    /// Multipart upload with the given form fields; `file` is sent last.
    pub async fn upload_form(&self, fields: &[(&str, &str)], file: Option<&str>) -> Reply {
        let mut body = String::new();
        for (name, value) in fields {
            body.push_str(&format!(
                "--{BOUNDARY}\r\ncontent-disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            ));
        }
        if let Some(content) = file {
            body.push_str(&format!(
                "--{BOUNDARY}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"input.jsonl\"\r\n\
                 content-type: application/octet-stream\r\n\r\n{content}\r\n"
            ));
        }
        body.push_str(&format!("--{BOUNDARY}--\r\n"));
        let request = self
            .builder("POST", "/v1/files")
            .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"))
            .body(Body::from(body))
            .unwrap();
        self.send(request).await
    }

    /// Uploads a batch input file and returns its id.
    pub async fn upload(&self, content: &str) -> String {
        let reply = self.upload_form(&[("purpose", "batch")], Some(content)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        reply.json()["id"].as_str().unwrap().to_owned()
    }

    /// Creates a batch over `content` with extra headers; returns the batch.
    pub async fn create_batch(&self, content: &str, headers: &[(&str, &str)]) -> Value {
        let file_id = self.upload(content).await;
        let body = json!({"input_file_id": file_id, "endpoint": CHAT, "completion_window": "24h"});
        let reply = self.call("POST", "/v1/batches", Some(body), headers).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        reply.json()
    }

    /// Polls a batch until `done` holds for it (bounded).
    pub async fn wait_for(&self, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let batch = self.get(&format!("/v1/batches/{id}")).await.json();
            if done(&batch) {
                return batch;
            }
            assert!(Instant::now() < deadline, "batch never reached the condition: {batch}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Polls a batch until its status is `status`.
    pub async fn wait_status(&self, id: &str, status: &str) -> Value {
        self.wait_for(id, |b| b["status"] == status).await
    }

    /// The content of a file, as JSON lines.
    pub async fn lines(&self, file_id: &str) -> Vec<Value> {
        let reply = self.get(&format!("/v1/files/{file_id}/content")).await;
        assert_eq!(reply.status, StatusCode::OK);
        reply.text().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

/// One valid chat line.
pub fn chat_line(custom_id: &str) -> String {
    json!({"custom_id": custom_id, "method": "POST", "url": CHAT,
        "body": {"model": "sim-model", "messages": [{"role": "user", "content": format!("question {custom_id}")}]}})
    .to_string()
}

/// `n` valid chat lines, newline-terminated.
pub fn chat_lines(n: usize) -> String {
    (0..n).map(|i| chat_line(&format!("req-{i}")) + "\n").collect()
}

/// Asserts an OpenAI error body with all four keys; returns `error`.
pub fn assert_error_shape(reply: &Reply, status: StatusCode) -> Value {
    assert_eq!(reply.status, status, "{}", reply.text());
    let error = reply.json()["error"].clone();
    for key in ["message", "type", "param", "code"] {
        assert!(error.get(key).is_some(), "missing {key} in {error}");
    }
    error
}
