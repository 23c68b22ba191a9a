use axum::http::StatusCode;

use super::*;

fn keyed() -> Harness {
    Harness::new(SimulatorConfig {
        api_key: Some("sk-test-key".into()),
        ..fast_config()
    })
}

#[tokio::test]
async fn api_key_is_enforced_and_never_echoed() {
    let h = keyed();
    assert_eq!(h.get("/v1/files").await.status, StatusCode::OK);
    let anonymous = Harness {
        key: None,
        app: h.app.clone(),
        state: h.state.clone(),
    };
    let missing = anonymous.get("/v1/batches").await;
    assert_eq!(
        assert_error_shape(&missing, StatusCode::UNAUTHORIZED)["code"],
        "invalid_api_key"
    );
    let wrong = Harness {
        key: Some("sk-wrong-key".into()),
        app: h.app.clone(),
        state: h.state.clone(),
    };
    let reply = wrong.get("/v1/files").await;
    assert_eq!(
        assert_error_shape(&reply, StatusCode::UNAUTHORIZED)["code"],
        "invalid_api_key"
    );
    assert!(!reply.text().contains("sk-"));

    let journal = anonymous.get("/__sim/journal").await;
    assert_eq!(journal.status, StatusCode::OK, "the journal needs no key");
    let statuses: Vec<u64> = journal
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [200, 401, 401]);
}

#[tokio::test]
async fn injected_429_carries_retry_after_and_is_journaled() {
    let h = Harness::new(SimulatorConfig {
        retry_after: 3,
        ..fast_config()
    });
    let reply = h.call("GET", "/v1/batches", None, &[("x-sim-rate-429", "1")]).await;
    let error = assert_error_shape(&reply, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(error["code"], "rate_limit_exceeded");
    assert_eq!(reply.headers["retry-after"], "3");
    assert!(reply.headers.contains_key("x-request-id"));
    let journal = h.get("/__sim/journal").await.json();
    let entry = &journal[0];
    assert_eq!(journal.as_array().unwrap().len(), 1);
    assert_eq!(
        (&entry["method"], &entry["path"], &entry["status"]),
        (&json!("GET"), &json!("/v1/batches"), &json!(429))
    );
    assert!(entry["started_us"].as_u64().unwrap() <= entry["ended_us"].as_u64().unwrap());
}

#[tokio::test]
async fn injected_5xx_from_config_and_header() {
    let h = Harness::new(SimulatorConfig {
        rate_5xx: 1.0,
        ..fast_config()
    });
    for _ in 0..5 {
        let reply = h.get("/v1/files").await;
        assert!([500, 502, 503].contains(&reply.status.as_u16()), "{}", reply.status);
        assert_eq!(reply.json()["error"]["type"], "server_error");
    }
    let reply = h.call("GET", "/v1/files", None, &[("x-sim-rate-5xx", "0")]).await;
    assert_eq!(reply.status, StatusCode::OK, "the header overrides the flag");
    let bad = h.call("GET", "/v1/files", None, &[("x-sim-rate-5xx", "lots")]).await;
    assert_eq!(
        assert_error_shape(&bad, StatusCode::BAD_REQUEST)["param"],
        "x-sim-rate-5xx"
    );
}

#[tokio::test]
async fn seeded_fault_draws_repeat() {
    let run = || async {
        let h = Harness::new(SimulatorConfig {
            rate_429: 0.5,
            seed: Some(42),
            ..fast_config()
        });
        let mut statuses = Vec::new();
        for _ in 0..20 {
            statuses.push(h.get("/v1/files").await.status.as_u16());
        }
        statuses
    };
    let first = run().await;
    assert!(first.contains(&429) && first.contains(&200), "{first:?}");
    assert_eq!(first, run().await);
}

#[tokio::test]
async fn no_batch_api_hides_files_and_batches() {
    let h = Harness::new(SimulatorConfig {
        no_batch_api: true,
        ..fast_config()
    });
    for uri in ["/v1/files", "/v1/batches", "/v1/batches/batch_x"] {
        let reply = h.get(uri).await;
        assert_error_shape(&reply, StatusCode::NOT_FOUND);
    }
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    let reply = h.post("/v1/chat/completions", body).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["object"], "chat.completion");
}

#[tokio::test]
async fn every_response_has_a_request_id() {
    let h = Harness::fast();
    for uri in ["/v1/files", "/v1/batches/batch_nope", "/__sim/journal", "/elsewhere"] {
        let reply = h.get(uri).await;
        assert!(reply.headers.contains_key("x-request-id"), "{uri}");
    }
    let journal = h.get("/__sim/journal").await.json();
    let paths: Vec<&str> = journal
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["/v1/files", "/v1/batches/batch_nope"], "only /v1 is journaled");
}

#[tokio::test]
async fn latency_header_delays_the_answer() {
    let h = Harness::fast();
    let started = std::time::Instant::now();
    let reply = h.call("GET", "/v1/files", None, &[("x-sim-latency-ms", "50")]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(started.elapsed() >= std::time::Duration::from_millis(50));
}
