//! Issue 19 item 3, notifications: a webhook receiver in the test gets one signed CloudEvent per
//! finished Batch or BatchSweep, with the same id whatever restarts happen in between; a Batch
//! still succeeds while its receiver is down, and the event arrives once it is back; a redirect
//! is not followed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::hmac;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use llm_batch_operator::api::{
    Batch, BatchGateway, BatchPhase, BatchSweep, DeliveryState, NotificationStatus, SweepPhase,
};
use llm_batch_operator::simulator::SimulatorConfig;
use serde_json::{Value, json};

use crate::common::cluster::{RunningController, create_input, gateway_on_simulator};
use crate::common::{chat_lines, object, wait_until};

const KEY: &str = "sk-notify-test-key";
/// The receiver's signing key, as a Standard Webhooks secret.
const SIGNING_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Delivery {
    headers: HeaderMap,
    body: Bytes,
}

impl Delivery {
    fn event(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    /// The signature the Standard Webhooks rules give for this request with `secret`.
    fn expected_signature(&self, secret: &str) -> String {
        let key = STANDARD.decode(secret.trim_start_matches("whsec_")).unwrap();
        let key = hmac::Key::new(hmac::HMAC_SHA256, &key);
        let signed = [
            self.header("webhook-id").as_bytes(),
            b".",
            self.header("webhook-timestamp").as_bytes(),
            b".",
            &self.body,
        ]
        .concat();
        format!("v1,{}", STANDARD.encode(hmac::sign(&key, &signed).as_ref()))
    }
}

/// A webhook receiver on 127.0.0.1: records every request and answers `answer` (a 3xx with a
/// Location pointing at `redirect_to`).
struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Delivery>>>,
    answer: Arc<AtomicU16>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct ReceiverState {
    got: Arc<Mutex<Vec<Delivery>>>,
    answer: Arc<AtomicU16>,
    redirect_to: String,
}

impl Receiver {
    async fn start_on(addr: SocketAddr, redirect_to: &str) -> Self {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let state = ReceiverState {
            got: Arc::default(),
            answer: Arc::new(AtomicU16::new(200)),
            redirect_to: redirect_to.to_string(),
        };
        let (got, answer) = (state.got.clone(), state.answer.clone());
        let app = Router::new().fallback(receive).with_state(state);
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver {
            addr,
            got,
            answer,
            task,
        }
    }

    async fn start() -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap(), "http://127.0.0.1:9/").await
    }

    fn url(&self) -> String {
        format!("http://{}/hooks/llmbatch?token=t0p", self.addr)
    }

    fn deliveries(&self) -> Vec<Delivery> {
        self.got.lock().unwrap().clone()
    }

    fn of_type(&self, type_: &str) -> Vec<Delivery> {
        let deliveries = self.deliveries();
        deliveries.into_iter().filter(|d| d.event()["type"] == type_).collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(State(state): State<ReceiverState>, headers: HeaderMap, body: Bytes) -> impl IntoResponse {
    state.got.lock().unwrap().push(Delivery { headers, body });
    let status = StatusCode::from_u16(state.answer.load(Ordering::SeqCst)).unwrap();
    (status, [(header::LOCATION, state.redirect_to.clone())])
}

async fn batch(client: &Client, ns: &str, name: &str, notify: Value) {
    let batch: Batch = object(json!({"apiVersion": "llmbatch.io/v1alpha1", "kind": "Batch",
        "metadata": {"name": name},
        "spec": {"gatewayRef": {"name": "gw"}, "endpoint": "/v1/chat/completions",
                 "input": {"configMap": {"name": "input", "key": "batch.jsonl"}}, "notify": notify}}));
    Api::<Batch>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &batch)
        .await
        .unwrap();
}

async fn wait_batch(client: &Client, ns: &str, name: &str, what: &str, done: impl Fn(&Batch) -> bool) -> Batch {
    let api = Api::<Batch>::namespaced(client.clone(), ns);
    wait_until(&format!("{name}: {what}"), Duration::from_secs(60), async || {
        let batch = api.get(name).await.unwrap();
        match done(&batch) {
            true => Ok(batch),
            false => Err(batch.status),
        }
    })
    .await
}

fn phase(batch: &Batch) -> Option<BatchPhase> {
    batch.status.as_ref().and_then(|s| s.phase)
}

fn notifications(batch: &Batch) -> Vec<NotificationStatus> {
    batch.status.clone().unwrap_or_default().notifications
}

fn delivered(entries: &[NotificationStatus]) -> bool {
    !entries.is_empty() && entries.iter().all(|n| n.state == DeliveryState::Delivered)
}

fn local_controller(client: &Client, ns: &str) -> RunningController {
    RunningController::start(client, ns)
}

/// Exactly one signed event per finished Batch, across a controller restart while the batch
/// runs and another after the event was delivered; a cancelled Batch's event says cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_gets_one_signed_event_per_finished_batch_across_controller_restarts() {
    let sim = SimulatorConfig {
        finalizing_ms: 1500,
        ..SimulatorConfig::default()
    };
    let (client, ns, _sim) = gateway_on_simulator("notify", sim, KEY, json!({})).await;
    let receiver = Receiver::start().await;
    let secret: Secret = object(json!({"metadata": {"name": "hook-key"}, "stringData": {"key": SIGNING_SECRET}}));
    Api::<Secret>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    create_input(&client, &ns, "input", &chat_lines(3)).await;
    let notify = json!({"url": receiver.url(), "signingSecretRef": {"name": "hook-key", "key": "key"}});
    batch(&client, &ns, "nightly", notify.clone()).await;

    let controller = local_controller(&client, &ns);
    wait_batch(&client, &ns, "nightly", "finalizing", |b| {
        phase(b) == Some(BatchPhase::Finalizing)
    })
    .await;
    controller.stop().await;
    assert!(
        receiver.deliveries().is_empty(),
        "nothing is sent before the Batch ends"
    );
    let controller = local_controller(&client, &ns);
    let done = wait_batch(&client, &ns, "nightly", "event delivered", |b| {
        phase(b) == Some(BatchPhase::Succeeded) && delivered(&notifications(b))
    })
    .await;
    controller.stop().await;
    let controller = local_controller(&client, &ns);
    batch(&client, &ns, "stopped", notify).await;
    let api = Api::<Batch>::namespaced(client.clone(), &ns);
    let cancel = json!({"spec": {"cancel": true}});
    api.patch("stopped", &PatchParams::default(), &Patch::Merge(&cancel))
        .await
        .unwrap();
    wait_batch(&client, &ns, "stopped", "cancelled event delivered", |b| {
        phase(b) == Some(BatchPhase::Cancelled) && delivered(&notifications(b))
    })
    .await;
    // Another reconcile of both (the new controller's first) sends nothing again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    controller.stop().await;

    let succeeded = receiver.of_type("io.llmbatch.batch.succeeded");
    let cancelled = receiver.of_type("io.llmbatch.batch.cancelled");
    assert_eq!(
        (succeeded.len(), cancelled.len(), receiver.deliveries().len()),
        (1, 1, 2),
        "one event per finished Batch: {:?}",
        receiver.deliveries().iter().map(Delivery::event).collect::<Vec<_>>()
    );
    let uid = done.metadata.uid.clone().unwrap();
    let delivery = &succeeded[0];
    let event = delivery.event();
    assert_eq!(event["specversion"], "1.0");
    assert_eq!(event["id"], format!("{uid}.batch.succeeded"));
    assert_eq!(delivery.header("webhook-id"), event["id"]);
    assert_eq!(
        delivery.header("content-type"),
        "application/cloudevents+json; charset=utf-8"
    );
    assert_eq!(
        delivery.header("webhook-signature"),
        delivery.expected_signature(SIGNING_SECRET)
    );
    assert_eq!(
        event["source"],
        format!("/apis/llmbatch.io/v1alpha1/namespaces/{ns}/batches/nightly")
    );
    let status = done.status.clone().unwrap();
    assert_eq!(event["data"]["requestCounts"]["completed"], 3);
    assert_eq!(event["data"]["usage"], serde_json::to_value(&status.usage).unwrap());
    assert_eq!(event["data"]["batchId"], json!(status.gateway.unwrap().batch_id));
    let entry = &status.notifications[0];
    assert_eq!(
        (entry.type_.as_str(), entry.attempts),
        ("io.llmbatch.batch.succeeded", 1)
    );
    assert_eq!(cancelled[0].event()["data"]["phase"], "Cancelled");
}

/// The gateway's default webhook: a Batch and a BatchSweep finish while the receiver is down
/// (the Batch still succeeds, its status says why the event is not delivered yet), the events
/// arrive once it is back, and a sweep's children tell nothing of their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_wait_for_a_receiver_that_is_down_and_a_sweeps_children_send_none() {
    let (client, ns, _sim) = gateway_on_simulator("notify-down", SimulatorConfig::default(), KEY, json!({})).await;
    let port = crate::common::free_port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let gateway_notify = json!({"spec": {"notify": {"url": url}}});
    Api::<BatchGateway>::namespaced(client.clone(), &ns)
        .patch("gw", &PatchParams::default(), &Patch::Merge(&gateway_notify))
        .await
        .unwrap();
    create_input(&client, &ns, "input", &chat_lines(4)).await;
    batch(&client, &ns, "solo", Value::Null).await;
    let sweep: BatchSweep = object(json!({"apiVersion": "llmbatch.io/v1alpha1", "kind": "BatchSweep",
        "metadata": {"name": "fan"},
        "spec": {"input": {"configMap": {"name": "input", "key": "batch.jsonl"}}, "chunk": {"maxRequests": 2},
                 "template": {"gatewayRef": {"name": "gw"}, "endpoint": "/v1/chat/completions"}}}));
    let sweeps = Api::<BatchSweep>::namespaced(client.clone(), &ns);
    sweeps.create(&PostParams::default(), &sweep).await.unwrap();

    let controller = local_controller(&client, &ns);
    let solo = wait_batch(&client, &ns, "solo", "succeeded with a failed attempt", |b| {
        phase(b) == Some(BatchPhase::Succeeded) && notifications(b).first().is_some_and(|n| n.attempts >= 1)
    })
    .await;
    let entry = &notifications(&solo)[0];
    assert_eq!(entry.state, DeliveryState::Pending);
    let why = entry.last_error.clone().unwrap();
    assert!(
        why.contains("127.0.0.1") && !why.contains("/hook"),
        "names the host, not the URL: {why}"
    );

    let receiver = Receiver::start_on(format!("127.0.0.1:{port}").parse().unwrap(), "http://127.0.0.1:9/").await;
    wait_batch(&client, &ns, "solo", "event delivered once the receiver is back", |b| {
        delivered(&notifications(b))
    })
    .await;
    wait_until("the sweep's event", Duration::from_secs(60), async || {
        let sweep = sweeps.get("fan").await.unwrap();
        let status = sweep.status.clone().unwrap_or_default();
        match status.phase == Some(SweepPhase::Succeeded) && delivered(&status.notifications) {
            true => Ok(()),
            false => Err(status.notifications),
        }
    })
    .await;
    controller.stop().await;
    let types: Vec<String> = receiver
        .deliveries()
        .iter()
        .map(|d| d.event()["type"].as_str().unwrap().to_string())
        .collect();
    let mut sorted = types.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["io.llmbatch.batch.succeeded", "io.llmbatch.sweep.succeeded"],
        "the children send nothing: {types:?}"
    );
    let sweep_event = receiver.of_type("io.llmbatch.sweep.succeeded")[0].event();
    assert_eq!(sweep_event["data"]["batches"]["succeeded"], 2);
    assert_eq!(sweep_event["data"]["requestCounts"]["completed"], 4);
    assert!(
        receiver
            .deliveries()
            .iter()
            .all(|d| d.header("webhook-signature").is_empty())
    );
}

/// A receiver answering with a redirect: the event is not delivered, the redirect's target is
/// never contacted, and the status says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirecting_receiver_is_not_followed() {
    let (client, ns, _sim) = gateway_on_simulator("notify-redirect", SimulatorConfig::default(), KEY, json!({})).await;
    let elsewhere = Receiver::start().await;
    let receiver = Receiver::start_on("127.0.0.1:0".parse().unwrap(), &elsewhere.url()).await;
    receiver.answer.store(307, Ordering::SeqCst);
    create_input(&client, &ns, "input", &chat_lines(2)).await;
    batch(&client, &ns, "moved", json!({"url": receiver.url()})).await;
    let controller = local_controller(&client, &ns);
    let moved = wait_batch(&client, &ns, "moved", "a failed attempt", |b| {
        phase(b) == Some(BatchPhase::Succeeded) && notifications(b).first().is_some_and(|n| n.attempts >= 1)
    })
    .await;
    controller.stop().await;
    let why = notifications(&moved)[0].last_error.clone().unwrap();
    assert!(why.contains("HTTP 307") && why.contains("not followed"), "{why}");
    assert_eq!(receiver.deliveries().len(), 1);
    assert!(elsewhere.deliveries().is_empty(), "the redirect was followed");
}
