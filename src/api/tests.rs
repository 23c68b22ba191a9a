//! The CEL rules of the CRDs, evaluated offline (kube's `cel` feature), on create and update.

use kube::core::cel::{validate_cel, validate_cel_update};
use serde_json::json;

use super::{Batch, BatchGateway};

fn batch(spec: serde_json::Value) -> Batch {
    serde_json::from_value(json!({
        "apiVersion": "llmbatch.io/v1alpha1", "kind": "Batch",
        "metadata": {"name": "b", "namespace": "default"},
        "spec": spec,
    }))
    .unwrap()
}

fn spec_with_input(input: serde_json::Value) -> serde_json::Value {
    json!({"gatewayRef": {"name": "gw"}, "endpoint": "/v1/chat/completions", "input": input})
}

fn errors(result: Result<(), kube::core::cel::ValidationErrors>) -> String {
    result.err().map(|e| e.to_string()).unwrap_or_default()
}

#[test]
fn input_needs_exactly_one_source() {
    let one = batch(spec_with_input(json!({"configMap": {"name": "c", "key": "k"}})));
    assert!(validate_cel(&one).is_ok());
    let none = batch(spec_with_input(json!({})));
    assert!(errors(validate_cel(&none)).contains("exactly one source"));
    let two = batch(spec_with_input(
        json!({"configMap": {"name": "c", "key": "k"}, "secret": {"name": "s", "key": "k"}}),
    ));
    assert!(errors(validate_cel(&two)).contains("exactly one source"));
}

#[test]
fn input_and_endpoint_are_immutable_but_cancel_is_not() {
    let old = batch(spec_with_input(json!({"configMap": {"name": "c", "key": "k"}})));
    let mut cancelled = old.clone();
    cancelled.spec.cancel = true;
    assert!(validate_cel_update(&cancelled, &old).is_ok());

    let moved = batch(spec_with_input(json!({"configMap": {"name": "other", "key": "k"}})));
    assert!(errors(validate_cel_update(&moved, &old)).contains("input is immutable"));

    let mut retargeted = old.clone();
    retargeted.spec.endpoint = super::Endpoint::Embeddings;
    assert!(errors(validate_cel_update(&retargeted, &old)).contains("endpoint is immutable"));
}

#[test]
fn metadata_values_are_bounded() {
    let mut spec = spec_with_input(json!({"secret": {"name": "s", "key": "k"}}));
    spec["metadata"] = json!({"team": "x".repeat(513)});
    assert!(errors(validate_cel(&batch(spec))).contains("at most 512"));
}

#[test]
fn pricing_needs_models_or_a_price_list() {
    let gateway = |pricing: serde_json::Value| -> BatchGateway {
        serde_json::from_value(json!({
            "apiVersion": "llmbatch.io/v1alpha1", "kind": "BatchGateway",
            "metadata": {"name": "gw"}, "spec": {"url": "https://api.openai.com/v1", "pricing": pricing},
        }))
        .unwrap()
    };
    assert!(validate_cel(&gateway(json!({"priceListRef": {"name": "openai"}}))).is_ok());
    let inline = json!({"models": [{"model": "m", "inputPerMillion": "1", "outputPerMillion": "2"}]});
    assert!(validate_cel(&gateway(inline)).is_ok());
    let nothing = errors(validate_cel(&gateway(json!({"currency": "EUR"}))));
    assert!(
        nothing.contains("pricing needs models, a priceListRef, or both"),
        "{nothing}"
    );
}

#[test]
fn gateway_url_must_end_in_v1() {
    let gateway = |url: &str| -> BatchGateway {
        serde_json::from_value(json!({
            "apiVersion": "llmbatch.io/v1alpha1", "kind": "BatchGateway",
            "metadata": {"name": "gw"}, "spec": {"url": url},
        }))
        .unwrap()
    };
    for good in [
        "https://api.openai.com/v1",
        "http://127.0.0.1:8080/v1/",
        "https://gw.example.com/openai/v1",
    ] {
        assert!(validate_cel(&gateway(good)).is_ok(), "{good}");
    }
    for bad in [
        "https://api.openai.com",
        "api.openai.com/v1",
        "https://api.openai.com/v1/chat",
    ] {
        assert!(errors(validate_cel(&gateway(bad))).contains("ending in /v1"), "{bad}");
    }
}

#[test]
fn object_store_is_an_input_source_and_an_output_sink() {
    let store = json!({"url": "s3://bucket/in.jsonl", "secretRef": {"name": "s3"}});
    let mut spec = spec_with_input(json!({"objectStore": store}));
    spec["output"] = json!({"objectStore": {"url": "s3://bucket/results/"}});
    assert!(
        validate_cel(&batch(spec.clone())).is_ok(),
        "{}",
        errors(validate_cel(&batch(spec.clone())))
    );
    spec["input"]["configMap"] = json!({"name": "c", "key": "k"});
    assert!(errors(validate_cel(&batch(spec.clone()))).contains("exactly one source"));
    spec["input"] = json!({"objectStore": store});
    spec["output"]["pvc"] = json!({"claimName": "results"});
    assert!(errors(validate_cel(&batch(spec))).contains("exactly one sink"));
}

#[test]
fn byte_range_must_be_ordered_and_needs_an_input_read_here() {
    let sliced = |range: serde_json::Value| {
        batch(spec_with_input(
            json!({"configMap": {"name": "c", "key": "k"}, "byteRange": range}),
        ))
    };
    assert!(validate_cel(&sliced(json!({"start": 10, "end": 20}))).is_ok());
    assert!(errors(validate_cel(&sliced(json!({"start": 20, "end": 10})))).contains("must not be after"));
    let on_gateway = batch(spec_with_input(
        json!({"fileId": "file-1", "overrides": {"model": "m"}}),
    ));
    assert!(errors(validate_cel(&on_gateway)).contains("not fileId"));
}
