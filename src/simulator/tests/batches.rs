use axum::http::StatusCode;

use super::*;

async fn create_raw(h: &Harness, body: Value) -> Reply {
    h.post("/v1/batches", body).await
}

#[tokio::test]
async fn create_validates_endpoint_window_and_metadata() {
    let h = Harness::fast();
    let file = h.upload(&chat_lines(1)).await;
    let base = json!({"input_file_id": file, "endpoint": CHAT, "completion_window": "24h"});
    let with = |key: &str, value: Value| {
        let mut body = base.clone();
        body[key] = value;
        body
    };

    let error = assert_error_shape(
        &create_raw(&h, with("endpoint", json!("/v1/nope"))).await,
        StatusCode::BAD_REQUEST,
    );
    assert_eq!(
        (error["param"].as_str(), error["code"].as_str()),
        (Some("endpoint"), Some("invalid_value"))
    );
    assert_eq!(error["type"], "invalid_request_error");

    let error = assert_error_shape(
        &create_raw(&h, with("completion_window", json!("1h"))).await,
        StatusCode::BAD_REQUEST,
    );
    assert_eq!(error["param"], "completion_window");

    let too_many: serde_json::Map<String, Value> = (0..17).map(|i| (format!("k{i}"), json!("v"))).collect();
    let error = assert_error_shape(
        &create_raw(&h, with("metadata", Value::Object(too_many))).await,
        StatusCode::BAD_REQUEST,
    );
    assert_eq!(error["param"], "metadata");

    let long_key = json!({"k".repeat(65): "v"});
    let error = assert_error_shape(
        &create_raw(&h, with("metadata", long_key)).await,
        StatusCode::BAD_REQUEST,
    );
    assert_eq!(error["param"], "metadata");

    let long_value = json!({"k": "v".repeat(513)});
    let error = assert_error_shape(
        &create_raw(&h, with("metadata", long_value)).await,
        StatusCode::BAD_REQUEST,
    );
    assert_eq!(error["param"], "metadata.k");

    let error = assert_error_shape(
        &create_raw(&h, with("metadata", json!({"n": 1}))).await,
        StatusCode::BAD_REQUEST,
    );
    assert_eq!(
        (error["param"].as_str(), error["code"].as_str()),
        (Some("metadata.n"), Some("invalid_type"))
    );

    let mut missing = base.clone();
    missing.as_object_mut().unwrap().remove("input_file_id");
    let error = assert_error_shape(&create_raw(&h, missing).await, StatusCode::BAD_REQUEST);
    assert_eq!(error["param"], "input_file_id");

    let not_json = h
        .send(
            axum::http::Request::post("/v1/batches")
                .header("content-type", "application/json")
                .body(axum::body::Body::from("{oops"))
                .unwrap(),
        )
        .await;
    assert_error_shape(&not_json, StatusCode::BAD_REQUEST);

    let fine = with("metadata", json!({"owner": "team-a", "k".repeat(64): "v".repeat(512)}));
    let batch = create_raw(&h, fine).await.json();
    assert_eq!(batch["status"], "validating");
    assert_eq!(batch["metadata"]["owner"], "team-a");
    assert_eq!(batch["expires_at"], batch["created_at"].as_i64().unwrap() + 86_400);
    assert_eq!(
        batch["request_counts"],
        json!({"total": 0, "completed": 0, "failed": 0})
    );
}

#[tokio::test]
async fn unknown_batch_is_404_everywhere() {
    let h = Harness::fast();
    for (method, uri) in [
        ("GET", "/v1/batches/batch_nope"),
        ("POST", "/v1/batches/batch_nope/cancel"),
    ] {
        let reply = h.call(method, uri, None, &[]).await;
        let error = assert_error_shape(&reply, StatusCode::NOT_FOUND);
        assert_eq!(error["message"], "No such Batch object: batch_nope");
    }
    let reply = h.get("/v1/nothing/here").await;
    assert_eq!(
        assert_error_shape(&reply, StatusCode::NOT_FOUND)["message"],
        "Invalid URL (GET /v1/nothing/here)"
    );
}

#[tokio::test]
async fn list_batches_pages_newest_first() {
    let h = Harness::new(SimulatorConfig {
        validating_ms: 60_000,
        ..fast_config()
    });
    let file = h.upload(&chat_lines(1)).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let body = json!({"input_file_id": file, "endpoint": CHAT, "completion_window": "24h"});
        ids.push(create_raw(&h, body).await.json()["id"].as_str().unwrap().to_owned());
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..10 {
        let uri = match &after {
            Some(cursor) => format!("/v1/batches?limit=2&after={cursor}"),
            None => "/v1/batches?limit=2".to_owned(),
        };
        let page = h.get(&uri).await.json();
        let data = page["data"].as_array().unwrap();
        assert!(data.len() <= 2);
        seen.extend(data.iter().map(|b| b["id"].as_str().unwrap().to_owned()));
        assert_eq!(page["last_id"], data.last().unwrap()["id"]);
        if page["has_more"] != true {
            break;
        }
        after = page["last_id"].as_str().map(str::to_owned);
    }
    ids.reverse();
    assert_eq!(seen, ids);
    assert_eq!(h.get("/v1/batches").await.json()["data"].as_array().unwrap().len(), 5);
    let bad = h.get("/v1/batches?limit=101").await;
    assert_eq!(assert_error_shape(&bad, StatusCode::BAD_REQUEST)["param"], "limit");
}

#[tokio::test]
async fn input_file_of_wrong_purpose_is_rejected() {
    let h = Harness::fast();
    let file = h.upload_form(&[("purpose", "user_data")], Some("x")).await.json();
    let body = json!({"input_file_id": file["id"], "endpoint": CHAT, "completion_window": "24h"});
    let error = assert_error_shape(&create_raw(&h, body).await, StatusCode::BAD_REQUEST);
    assert_eq!(error["param"], "input_file_id");
}

#[tokio::test]
async fn wrong_method_is_an_openai_404() {
    let h = Harness::fast();
    let reply = h.call("PUT", "/v1/batches", None, &[]).await;
    let error = assert_error_shape(&reply, StatusCode::NOT_FOUND);
    assert_eq!(error["message"], "Invalid URL (PUT /v1/batches)");
}
