use axum::http::StatusCode;

use super::*;

#[tokio::test]
async fn upload_get_list_content_delete() {
    let h = Harness::fast();
    let content = chat_lines(3);
    let reply = h.upload_form(&[("purpose", "batch")], Some(&content)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let file = reply.json();
    let id = file["id"].as_str().unwrap();
    assert!(id.starts_with("file-"));
    assert_eq!(file["object"], "file");
    assert_eq!(file["bytes"], content.len());
    assert_eq!(file["filename"], "input.jsonl");
    assert_eq!(file["purpose"], "batch");
    assert_eq!(file["status"], "processed");
    assert_eq!(file["expires_at"], file["created_at"].as_i64().unwrap() + 2_592_000);

    assert_eq!(h.get(&format!("/v1/files/{id}")).await.json(), file);
    let content_reply = h.get(&format!("/v1/files/{id}/content")).await;
    assert_eq!(content_reply.text(), content);

    let list = h.get("/v1/files").await.json();
    assert_eq!(list["object"], "list");
    assert_eq!(list["data"][0]["id"], id);
    assert_eq!(
        (list["first_id"].as_str(), list["has_more"].as_bool()),
        (Some(id), Some(false))
    );

    let deleted = h.call("DELETE", &format!("/v1/files/{id}"), None, &[]).await;
    assert_eq!(deleted.json(), json!({"id": id, "object": "file", "deleted": true}));
    assert!(!h.state.file_path(id).exists());
    let gone = h.get(&format!("/v1/files/{id}")).await;
    let error = assert_error_shape(&gone, StatusCode::NOT_FOUND);
    assert_eq!(error["message"], format!("No such File object: {id}"));
    assert_eq!(error["param"], "id");
}

#[tokio::test]
async fn list_files_orders_filters_and_pages() {
    let h = Harness::fast();
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(h.upload(&chat_line(&format!("x{i}"))).await);
    }
    let other = h.upload_form(&[("purpose", "user_data")], Some("hello")).await.json();

    let desc = h.get("/v1/files?purpose=batch&limit=2").await.json();
    let got: Vec<&str> = desc["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, [ids[2].as_str(), ids[1].as_str()]);
    assert_eq!(desc["has_more"], true);
    let next = h
        .get(&format!("/v1/files?purpose=batch&limit=2&after={}", ids[1]))
        .await
        .json();
    assert_eq!(next["data"][0]["id"], ids[0]);
    assert_eq!(next["has_more"], false);

    let asc = h.get("/v1/files?order=asc").await.json();
    assert_eq!(asc["data"][0]["id"], ids[0]);
    assert_eq!(asc["last_id"], other["id"]);

    let bad = h.get("/v1/files?limit=0").await;
    assert_eq!(assert_error_shape(&bad, StatusCode::BAD_REQUEST)["param"], "limit");
    let bad = h.get("/v1/files?order=sideways").await;
    assert_eq!(assert_error_shape(&bad, StatusCode::BAD_REQUEST)["param"], "order");
}

#[tokio::test]
async fn upload_rejects_bad_forms() {
    let h = Harness::fast();
    let no_purpose = h.upload_form(&[], Some("x")).await;
    let error = assert_error_shape(&no_purpose, StatusCode::BAD_REQUEST);
    assert_eq!(
        (error["param"].as_str(), error["code"].as_str()),
        (Some("purpose"), Some("missing_required_parameter"))
    );
    let bad_purpose = h.upload_form(&[("purpose", "nope")], Some("x")).await;
    assert_eq!(
        assert_error_shape(&bad_purpose, StatusCode::BAD_REQUEST)["param"],
        "purpose"
    );
    let no_file = h.upload_form(&[("purpose", "batch")], None).await;
    assert_eq!(assert_error_shape(&no_file, StatusCode::BAD_REQUEST)["param"], "file");
    let expiry = h
        .upload_form(
            &[
                ("purpose", "batch"),
                ("expires_after[anchor]", "created_at"),
                ("expires_after[seconds]", "10"),
            ],
            Some("x"),
        )
        .await;
    assert_eq!(
        assert_error_shape(&expiry, StatusCode::BAD_REQUEST)["param"],
        "expires_after.seconds"
    );
    let ok = h
        .upload_form(
            &[
                ("purpose", "batch"),
                ("expires_after[anchor]", "created_at"),
                ("expires_after[seconds]", "3600"),
            ],
            Some("x"),
        )
        .await
        .json();
    assert_eq!(ok["expires_after"], Value::Null);
    assert_eq!(ok["expires_at"], ok["created_at"].as_i64().unwrap() + 3600);
    assert!(h.get("/v1/files").await.json()["data"].as_array().unwrap().len() == 1);
    let leftovers = std::fs::read_dir(h.state.data_dir()).unwrap().count();
    assert_eq!(leftovers, 1, "rejected uploads must not leave files behind");
}

#[tokio::test]
async fn upload_over_the_size_limit_is_a_400() {
    let h = Harness::new(SimulatorConfig {
        max_file_bytes: 10,
        ..fast_config()
    });
    let reply = h
        .upload_form(&[("purpose", "batch")], Some("this is more than ten bytes"))
        .await;
    let error = assert_error_shape(&reply, StatusCode::BAD_REQUEST);
    assert_eq!(error["code"], "file_too_large");
    assert_eq!(std::fs::read_dir(h.state.data_dir()).unwrap().count(), 0);
}

#[tokio::test]
async fn unknown_file_content_and_delete_are_404() {
    let h = Harness::fast();
    for (method, uri) in [
        ("GET", "/v1/files/file-nope/content"),
        ("DELETE", "/v1/files/file-nope"),
    ] {
        let reply = h.call(method, uri, None, &[]).await;
        assert_eq!(
            assert_error_shape(&reply, StatusCode::NOT_FOUND)["message"],
            "No such File object: file-nope"
        );
    }
}

#[tokio::test]
async fn temp_data_dir_is_removed_on_drop() {
    let h = Harness::fast();
    let dir = h.state.data_dir().to_path_buf();
    h.upload("x").await;
    assert!(dir.exists());
    drop(h);
    assert!(!dir.exists());
}
