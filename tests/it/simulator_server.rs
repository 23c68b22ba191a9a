//! The simulator on a real listener (port 0), driven over HTTP with reqwest.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use llm_batch_operator::simulator::{RunningSimulator, SimulatorConfig};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

const KEY: &str = "sk-sim-server-test";

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn config() -> SimulatorConfig {
    SimulatorConfig {
        api_key: Some(KEY.into()),
        validating_ms: 20,
        finalizing_ms: 20,
        cancelling_ms: 20,
        ..SimulatorConfig::default()
    }
}

fn chat_lines(n: usize, prefix: &str) -> String {
    (0..n)
        .map(|i| {
            let line = json!({"custom_id": format!("{prefix}-{i}"), "method": "POST", "url": "/v1/chat/completions",
                "body": {"model": "sim-model", "messages": [{"role": "user", "content": format!("question {i}")}]}});
            format!("{line}\n")
        })
        .collect()
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn new(sim: &RunningSimulator) -> Self {
        Client {
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            base: sim.base_url(),
        }
    }

    async fn json(&self, request: reqwest::RequestBuilder) -> Value {
        let response = request.bearer_auth(KEY).send().await.unwrap();
        let status = response.status();
        let body = response.text().await.unwrap();
        assert!(status.is_success(), "{status}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    async fn upload(&self, content: String) -> Value {
        let form = Form::new()
            .text("purpose", "batch")
            .part("file", Part::bytes(content.into_bytes()).file_name("input.jsonl"));
        self.json(self.http.post(format!("{}/files", self.base)).multipart(form))
            .await
    }

    async fn create(&self, file_id: &str) -> Value {
        let body = json!({"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"});
        self.json(self.http.post(format!("{}/batches", self.base)).json(&body))
            .await
    }

    async fn batch(&self, id: &str) -> Value {
        self.json(self.http.get(format!("{}/batches/{id}", self.base))).await
    }

    async fn content(&self, file_id: &str) -> String {
        let url = format!("{}/files/{file_id}/content", self.base);
        let response = self.http.get(url).bearer_auth(KEY).send().await.unwrap();
        assert!(response.status().is_success());
        response.text().await.unwrap()
    }

    /// Polls until the batch is terminal, checking progress never goes backwards.
    async fn poll_to_end(&self, id: &str) -> Value {
        let order = ["validating", "in_progress", "finalizing", "completed"];
        let deadline = Instant::now() + Duration::from_secs(30);
        let (mut last_rank, mut last_done) = (0, 0);
        loop {
            let batch = self.batch(id).await;
            let status = batch["status"].as_str().unwrap();
            let rank = order.iter().position(|s| *s == status).expect(status);
            let done = batch["request_counts"]["completed"].as_u64().unwrap();
            assert!(rank >= last_rank && done >= last_done, "went backwards: {batch}");
            (last_rank, last_done) = (rank, done);
            if status == "completed" {
                return batch;
            }
            assert!(Instant::now() < deadline, "batch never completed: {batch}");
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    }
}

#[tokio::test]
async fn full_cycle_over_http() {
    let sim = RunningSimulator::start(config(), loopback()).await.unwrap();
    assert!(sim.base_url().starts_with("http://127.0.0.1:"));
    assert!(sim.base_url().ends_with("/v1"));
    assert_ne!(sim.addr().port(), 0);
    let client = Client::new(&sim);

    let unauthorized = client
        .http
        .get(format!("{}/batches", client.base))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
    assert!(unauthorized.headers().contains_key("x-request-id"));

    let content = chat_lines(300, "cycle");
    let file = client.upload(content.clone()).await;
    assert_eq!(file["bytes"], content.len());
    assert_eq!(client.content(file["id"].as_str().unwrap()).await, content);

    let batch = client.create(file["id"].as_str().unwrap()).await;
    let done = client.poll_to_end(batch["id"].as_str().unwrap()).await;
    assert_eq!(
        done["request_counts"],
        json!({"total": 300, "completed": 300, "failed": 0})
    );
    let output = client.content(done["output_file_id"].as_str().unwrap()).await;
    let ids: std::collections::HashSet<String> = output
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["custom_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 300);

    let journal: Value = client
        .http
        .get(format!("http://{}/__sim/journal", sim.addr()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (&journal[0]["method"], &journal[0]["path"], &journal[0]["status"]),
        (&json!("GET"), &json!("/v1/batches"), &json!(401))
    );
    assert_eq!(journal[1]["path"], "/v1/files");
    sim.shutdown().await;
}

#[tokio::test]
async fn concurrent_polling_of_concurrent_batches() {
    let sim = RunningSimulator::start(config(), loopback()).await.unwrap();
    let base = Client::new(&sim);
    let mut tasks = Vec::new();
    for b in 0..4 {
        let file = base.upload(chat_lines(400, &format!("b{b}"))).await;
        let batch = base.create(file["id"].as_str().unwrap()).await;
        let id = batch["id"].as_str().unwrap().to_owned();
        // Several pollers per batch, all hammering at once.
        for _ in 0..3 {
            let client = Client::new(&sim);
            let id = id.clone();
            tasks.push(tokio::spawn(async move { client.poll_to_end(&id).await }));
        }
    }
    for task in tasks {
        let done = task.await.unwrap();
        assert_eq!(done["request_counts"]["completed"], 400);
    }
    let list = base
        .json(base.http.get(format!("{}/batches?limit=100", base.base)))
        .await;
    assert_eq!(list["data"].as_array().unwrap().len(), 4);
    sim.shutdown().await;
}

#[tokio::test]
async fn large_upload_streams_through() {
    let sim = RunningSimulator::start(config(), loopback()).await.unwrap();
    let client = Client::new(&sim);
    // ~8 MB: exercises chunked multipart streaming to disk and back.
    let content = chat_lines(40_000, "big");
    let file = client.upload(content.clone()).await;
    assert_eq!(file["bytes"], content.len());
    let back = client.content(file["id"].as_str().unwrap()).await;
    assert_eq!(back.len(), content.len());
    sim.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_serving_and_cleans_up() {
    let sim = RunningSimulator::start(config(), loopback()).await.unwrap();
    let addr = sim.addr();
    let client = Client::new(&sim);
    let file = client.upload(chat_lines(5, "s")).await;
    let body = json!({"input_file_id": file["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"});
    let slow = client
        .http
        .post(format!("{}/batches", client.base))
        .bearer_auth(KEY)
        .header("x-sim-lines-per-sec", "1")
        .json(&body);
    client.json(slow).await;
    tokio::time::timeout(Duration::from_secs(10), sim.shutdown())
        .await
        .expect("shutdown must not wait for running batches");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
