//! What the real API server enforces on our CRDs: structural schemas, CEL rules on create
//! and update, the status subresource, printer columns, and that every example applies.

use crate::common;
use common::wait_until;

use common::object;

use common::apiserver::{MANAGER, admin_client, fresh_namespace, startup_time};
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::Discovery;
use llm_batch_operator::api::{Batch, BatchGateway, BatchPhase, BatchStatus};
use serde_json::{Value, json};

fn batch(name: &str, spec: Value) -> Batch {
    serde_json::from_value(json!({
        "apiVersion": "llmbatch.io/v1alpha1", "kind": "Batch",
        "metadata": {"name": name}, "spec": spec,
    }))
    .unwrap()
}

fn spec(input: Value) -> Value {
    json!({"gatewayRef": {"name": "gw"}, "endpoint": "/v1/chat/completions", "input": input})
}

fn config_map_input() -> Value {
    json!({"configMap": {"name": "tickets", "key": "batch.jsonl"}})
}

/// The server's message for a rejected object, or "" when it was accepted.
fn rejection<T>(result: Result<T, kube::Error>) -> String {
    match result {
        Ok(_) => String::new(),
        Err(kube::Error::Api(status)) => status.message,
        Err(other) => panic!("not an API rejection: {other}"),
    }
}

#[tokio::test]
async fn the_crds_are_accepted_and_served() {
    let client = admin_client().await;
    eprintln!("etcd + kube-apiserver ready in {:?}", startup_time());
    let discovery = Discovery::new(client).run().await.unwrap();
    let group = discovery.get("llmbatch.io").expect("llmbatch.io is served");
    let kinds: Vec<String> = group.recommended_resources().into_iter().map(|(r, _)| r.kind).collect();
    assert!(
        kinds.contains(&"Batch".to_string()) && kinds.contains(&"BatchGateway".to_string()),
        "{kinds:?}"
    );
}

#[tokio::test]
async fn input_needs_exactly_one_source() {
    let client = admin_client().await;
    let ns = fresh_namespace(&client, "cel").await;
    let api = Api::<Batch>::namespaced(client, &ns);
    let pp = PostParams::default();
    assert_eq!(
        rejection(api.create(&pp, &batch("one", spec(config_map_input()))).await),
        ""
    );
    let none = rejection(api.create(&pp, &batch("none", spec(json!({})))).await);
    assert!(none.contains("input needs exactly one source"), "{none}");
    let both = json!({"configMap": {"name": "a", "key": "k"}, "secret": {"name": "b", "key": "k"}});
    let two = rejection(api.create(&pp, &batch("two", spec(both))).await);
    assert!(two.contains("input needs exactly one source"), "{two}");
}

#[tokio::test]
async fn input_and_endpoint_are_immutable_but_cancel_is_not() {
    let client = admin_client().await;
    let ns = fresh_namespace(&client, "immutable").await;
    let api = Api::<Batch>::namespaced(client, &ns);
    api.create(&PostParams::default(), &batch("b", spec(config_map_input())))
        .await
        .unwrap();
    let merge = |patch: Value| Patch::Merge(patch);
    let pp = PatchParams::default();

    let moved = api
        .patch(
            "b",
            &pp,
            &merge(json!({"spec": {"input": {"configMap": {"name": "other"}}}})),
        )
        .await;
    assert!(rejection(moved).contains("input is immutable"));
    let retargeted = api
        .patch("b", &pp, &merge(json!({"spec": {"endpoint": "/v1/embeddings"}})))
        .await;
    assert!(rejection(retargeted).contains("endpoint is immutable"));
    let rerouted = api
        .patch("b", &pp, &merge(json!({"spec": {"gatewayRef": {"name": "other"}}})))
        .await;
    assert!(rejection(rerouted).contains("gatewayRef is immutable"));
    let cancelled = api
        .patch("b", &pp, &merge(json!({"spec": {"cancel": true}})))
        .await
        .unwrap();
    assert!(cancelled.spec.cancel);
}

#[tokio::test]
async fn bad_values_are_rejected_with_their_message() {
    let client = admin_client().await;
    let ns = fresh_namespace(&client, "values").await;
    let batches = Api::<Batch>::namespaced(client.clone(), &ns);
    let pp = PostParams::default();

    let mut long = spec(config_map_input());
    long["metadata"] = json!({"team": "x".repeat(513)});
    let message = rejection(batches.create(&pp, &batch("long", long)).await);
    assert!(message.contains("at most 512"), "{message}");

    let mut crowded = spec(config_map_input());
    crowded["metadata"] = (0..14)
        .map(|i| (format!("k{i}"), json!("v")))
        .collect::<serde_json::Map<_, _>>()
        .into();
    let message = rejection(batches.create(&pp, &batch("crowded", crowded)).await);
    assert!(message.contains("spec.metadata"), "{message}");

    // The typed Batch cannot even hold an unknown endpoint: send it untyped.
    let mut unknown = spec(config_map_input());
    unknown["endpoint"] = json!("/v1/images/generations");
    let untyped = Api::<DynamicObject>::namespaced_with(client.clone(), &ns, &ApiResource::erase::<Batch>(&()));
    let object: DynamicObject = serde_json::from_value(json!({"apiVersion": "llmbatch.io/v1alpha1", "kind": "Batch",
        "metadata": {"name": "unknown"}, "spec": unknown}))
    .unwrap();
    let message = rejection(untyped.create(&pp, &object).await);
    assert!(
        message.contains("spec.endpoint") && message.contains("supported values"),
        "{message}"
    );

    let gateways = Api::<BatchGateway>::namespaced(client, &ns);
    let gateway = |name: &str, url: &str| -> BatchGateway {
        serde_json::from_value(json!({"apiVersion": "llmbatch.io/v1alpha1", "kind": "BatchGateway",
            "metadata": {"name": name}, "spec": {"url": url}}))
        .unwrap()
    };
    assert_eq!(
        rejection(gateways.create(&pp, &gateway("ok", "https://api.openai.com/v1")).await),
        ""
    );
    let message = rejection(gateways.create(&pp, &gateway("bad", "https://api.openai.com")).await);
    assert!(message.contains("ending in /v1"), "{message}");

    // Prices: decimal strings, a percentage, one entry per model, and something to price with.
    let priced = |name: &str, pricing: Value| -> BatchGateway {
        serde_json::from_value(json!({"apiVersion": "llmbatch.io/v1alpha1", "kind": "BatchGateway",
            "metadata": {"name": name}, "spec": {"url": "https://api.openai.com/v1", "pricing": pricing}}))
        .unwrap()
    };
    let entry =
        |model: &str, input: &str| json!({"model": model, "inputPerMillion": input, "outputPerMillion": "0.60"});
    let good = json!({"batchDiscount": "12.5%", "models": [entry("gpt-4o-mini", "0.15"), entry("gpt-4o*", "2.50")]});
    assert_eq!(rejection(gateways.create(&pp, &priced("priced", good)).await), "");
    for (name, pricing, says) in [
        ("comma", json!({"models": [entry("m", "0,15")]}), "inputPerMillion"),
        ("float", json!({"models": [entry("m", "1e-7")]}), "inputPerMillion"),
        ("negative", json!({"models": [entry("m", "-1")]}), "inputPerMillion"),
        ("glob", json!({"models": [entry("gpt-*-mini", "1")]}), "model"),
        (
            "twice",
            json!({"models": [entry("m", "1"), entry("m", "2")]}),
            "Duplicate value",
        ),
        (
            "discount",
            json!({"batchDiscount": "150%", "models": [entry("m", "1")]}),
            "batchDiscount",
        ),
        (
            "currency",
            json!({"currency": "usd", "models": [entry("m", "1")]}),
            "currency",
        ),
        ("empty", json!({}), "pricing needs models, a priceListRef, or both"),
    ] {
        let message = rejection(gateways.create(&pp, &priced(name, pricing)).await);
        assert!(message.contains(says), "{name}: {message}");
    }
}

#[tokio::test]
async fn status_and_spec_are_written_apart() {
    let client = admin_client().await;
    let ns = fresh_namespace(&client, "status").await;
    let api = Api::<Batch>::namespaced(client, &ns);
    api.create(&PostParams::default(), &batch("b", spec(config_map_input())))
        .await
        .unwrap();

    // The main resource ignores status.
    let ignored = api
        .patch(
            "b",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Succeeded"}})),
        )
        .await
        .unwrap();
    assert_eq!(ignored.status, None);

    // The status subresource writes status and ignores spec; generation moves only with spec.
    let status = BatchStatus {
        phase: Some(BatchPhase::InProgress),
        ..Default::default()
    };
    let patch =
        json!({"apiVersion": "llmbatch.io/v1alpha1", "kind": "Batch", "status": status, "spec": {"cancel": true}});
    let written = api
        .patch_status("b", &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch))
        .await
        .unwrap();
    assert_eq!(written.status.unwrap().phase, Some(BatchPhase::InProgress));
    assert!(!written.spec.cancel, "the status subresource changed spec");
    assert_eq!(written.metadata.generation, Some(1));
    let bumped = api
        .patch(
            "b",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"cancel": true}})),
        )
        .await
        .unwrap();
    assert_eq!(bumped.metadata.generation, Some(2));
}

/// `kubectl get <plural>` as the API server renders it (a Table), in namespace `ns`.
async fn server_side_table(client: &kube::Client, ns: &str, plural: &str) -> Value {
    let request = http::Request::get(format!("/apis/llmbatch.io/v1alpha1/namespaces/{ns}/{plural}"))
        .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
        .body(Vec::new())
        .unwrap();
    serde_json::from_str(&client.request_text(request).await.unwrap()).unwrap()
}

fn column_names(table: &Value) -> Vec<&str> {
    table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn printer_columns_come_back_in_a_server_side_table() {
    let client = admin_client().await;
    let ns = fresh_namespace(&client, "table").await;
    let api = Api::<Batch>::namespaced(client.clone(), &ns);
    api.create(&PostParams::default(), &batch("b", spec(config_map_input())))
        .await
        .unwrap();
    let table = server_side_table(&client, &ns, "batches").await;
    assert_eq!(
        column_names(&table),
        [
            "Name",
            "Phase",
            "Completed",
            "Failed",
            "Total",
            "Batch ID",
            "Cost",
            "Age"
        ]
    );
    assert_eq!(table["rows"][0]["cells"][0], "b");
}

/// `kubectl get bgw` says whether each gateway is ready, and why not.
#[tokio::test]
async fn a_gateways_table_shows_ready_and_its_reason() {
    let client = admin_client().await;
    let ns = fresh_namespace(&client, "gw-table").await;
    let api = Api::<BatchGateway>::namespaced(client.clone(), &ns);
    let gateway: BatchGateway = object(json!({
        "apiVersion": "llmbatch.io/v1alpha1", "kind": "BatchGateway",
        "metadata": {"name": "gw"}, "spec": {"url": "http://127.0.0.1:9/v1"},
    }));
    api.create(&PostParams::default(), &gateway).await.unwrap();
    let status = json!({"status": {"mode": "Batch", "conditions": [{
        "type": "Ready", "status": "False", "reason": "Unauthorized", "message": "401",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }]}});
    api.patch_status("gw", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    let table = server_side_table(&client, &ns, "batchgateways").await;
    assert_eq!(column_names(&table), ["Name", "Ready", "Reason", "Mode", "URL", "Age"]);
    let cells = &table["rows"][0]["cells"];
    assert_eq!(
        (&cells[1], &cells[2], &cells[3]),
        (&json!("False"), &json!("Unauthorized"), &json!("Batch"))
    );
}

#[tokio::test]
async fn every_example_manifest_applies() {
    let client = admin_client().await;
    let ns = fresh_namespace(&client, "examples").await;
    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let root = common::repo_path("examples");
    let mut applied = 0;
    for dir in std::fs::read_dir(root).unwrap() {
        for file in std::fs::read_dir(dir.unwrap().path()).unwrap() {
            let path = file.unwrap().path();
            if path.extension().is_none_or(|e| e != "yaml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for doc in serde_yaml::Deserializer::from_str(&text) {
                let mut object: DynamicObject = serde::Deserialize::deserialize(doc).unwrap();
                let types = object.types.clone().expect("apiVersion and kind");
                let gvk = GroupVersionKind::try_from(&types).unwrap();
                let (resource, capabilities) = discovery
                    .resolve_gvk(&gvk)
                    .unwrap_or_else(|| panic!("{gvk:?} is not served"));
                let name = object.metadata.name.clone().unwrap();
                let kind = ApiResource::from_gvk_with_plural(&gvk, &resource.plural);
                // A PriceList is cluster-scoped: applied as it is (its name is the example's).
                let api = match capabilities.scope {
                    kube::discovery::Scope::Cluster => Api::<DynamicObject>::all_with(client.clone(), &kind),
                    kube::discovery::Scope::Namespaced => {
                        object.metadata.namespace = Some(ns.clone());
                        Api::<DynamicObject>::namespaced_with(client.clone(), &ns, &kind)
                    }
                };
                api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&object))
                    .await
                    .unwrap_or_else(|e| panic!("{} ({}/{name}) was refused: {e}", path.display(), gvk.kind));
                applied += 1;
            }
        }
    }
    assert!(applied >= 3, "only {applied} manifests found");
}

#[tokio::test]
async fn rbac_is_enforced_for_service_account_tokens() {
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};

    let admin = admin_client().await;
    let ns = fresh_namespace(&admin, "rbac").await;
    let pp = PostParams::default();
    let reader = common::apiserver::service_account_client(&admin, &ns, "reader").await;
    let batches = Api::<Batch>::namespaced(reader, &ns);
    let denied = rejection(batches.list(&Default::default()).await);
    assert!(denied.contains("forbidden"), "{denied}");

    let role: Role = object(json!({"metadata": {"name": "read-batches"},
        "rules": [{"apiGroups": ["llmbatch.io"], "resources": ["batches"], "verbs": ["get", "list"]}]}));
    Api::<Role>::namespaced(admin.clone(), &ns)
        .create(&pp, &role)
        .await
        .unwrap();
    let binding: RoleBinding = object(json!({"metadata": {"name": "reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-batches"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}]}));
    Api::<RoleBinding>::namespaced(admin, &ns)
        .create(&pp, &binding)
        .await
        .unwrap();
    // RBAC caches refresh quickly but not instantly.
    let refused = "still refused after the RoleBinding";
    wait_until(refused, std::time::Duration::from_secs(10), async || {
        batches.list(&Default::default()).await
    })
    .await;
}

/// Every manifest of the shared list is refused, its message naming the field or rule (`run -f`
/// is held to the same list in `local_run`).
#[tokio::test]
async fn the_api_server_refuses_every_rejected_manifest() {
    let client = admin_client().await;
    let ns = fresh_namespace(&client, "rejected").await;
    let pp = PostParams::default();
    for case in common::rejected::manifests() {
        let kind = case.object["kind"].as_str().unwrap();
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("llmbatch.io", "v1alpha1", kind));
        let api = Api::<DynamicObject>::namespaced_with(client.clone(), &ns, &resource);
        let object: DynamicObject = serde_json::from_value(case.object.clone()).unwrap();
        let message = rejection(api.create(&pp, &object).await);
        assert!(message.contains(case.says), "{}: {message:?}", case.name);
    }
}
