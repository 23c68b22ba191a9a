//! Manifests the API server refuses, each with the words its refusal must contain (the field,
//! or the rule's message): `apiserver::the_api_server_refuses_every_rejected_manifest` sends
//! them to the real API server, `local_run::run_f_refuses_what_the_api_server_refuses` to
//! `run -f`, so both are held to the same list.

use serde_json::{Value, json};

pub struct Rejected {
    pub name: &'static str,
    pub object: Value,
    pub says: &'static str,
}

fn batch(name: &str, spec: Value) -> Value {
    let mut full = json!({"gatewayRef": {"name": "gw"}, "endpoint": "/v1/chat/completions",
        "input": {"configMap": {"name": "c", "key": "k"}}});
    full.as_object_mut().unwrap().extend(spec.as_object().unwrap().clone());
    json!({"apiVersion": "llmbatch.io/v1alpha1", "kind": "Batch", "metadata": {"name": name}, "spec": full})
}

fn gateway(name: &str, spec: Value) -> Value {
    let mut full = json!({"url": "https://api.openai.com/v1"});
    full.as_object_mut().unwrap().extend(spec.as_object().unwrap().clone());
    json!({"apiVersion": "llmbatch.io/v1alpha1", "kind": "BatchGateway", "metadata": {"name": name}, "spec": full})
}

fn sweep(name: &str, spec: Value) -> Value {
    let mut full = json!({"input": {"configMap": {"name": "c", "key": "k"}},
        "template": {"gatewayRef": {"name": "gw"}, "endpoint": "/v1/chat/completions"}});
    full.as_object_mut().unwrap().extend(spec.as_object().unwrap().clone());
    json!({"apiVersion": "llmbatch.io/v1alpha1", "kind": "BatchSweep", "metadata": {"name": name}, "spec": full})
}

fn schedule(name: &str, spec: Value) -> Value {
    let mut full = json!({"schedule": "@daily",
        "batchTemplate": {"gatewayRef": {"name": "gw"}, "endpoint": "/v1/chat/completions",
                          "input": {"configMap": {"name": "c", "key": "k"}}}});
    full.as_object_mut().unwrap().extend(spec.as_object().unwrap().clone());
    json!({"apiVersion": "llmbatch.io/v1alpha1", "kind": "BatchSchedule", "metadata": {"name": name}, "spec": full})
}

fn price(model: &str, input: &str) -> Value {
    json!({"model": model, "inputPerMillion": input, "outputPerMillion": "0.60"})
}

pub fn manifests() -> Vec<Rejected> {
    let case = |name, object, says| Rejected { name, object, says };
    vec![
        case(
            "no-source",
            batch("no-source", json!({"input": {}})),
            "exactly one source",
        ),
        case(
            "two-sources",
            batch(
                "two-sources",
                json!({"input": {"configMap": {"name": "c", "key": "k"}, "fileId": "file-1"}}),
            ),
            "exactly one source",
        ),
        case(
            "file-and-range",
            batch(
                "file-and-range",
                json!({"input": {"fileId": "file-1", "byteRange": {"start": 0, "end": 10}}}),
            ),
            "need an input the operator reads",
        ),
        case(
            "two-days",
            batch("two-days", json!({"completionWindow": "2 days"})),
            "spec.completionWindow",
        ),
        case(
            "long-metadata",
            batch("long-metadata", json!({"metadata": {"team": "x".repeat(513)}})),
            "at most 512",
        ),
        case(
            "two-sinks",
            batch(
                "two-sinks",
                json!({"output": {"secret": {"name": "s"}, "pvc": {"claimName": "p", "path": "out"}}}),
            ),
            "exactly one sink",
        ),
        case(
            "no-v1",
            gateway("no-v1", json!({"url": "https://api.openai.com"})),
            "ending in /v1",
        ),
        case(
            "budget-unpriced",
            gateway(
                "budget-unpriced",
                json!({"limits": {"budget": {"amount": "10", "window": "24h"}}}),
            ),
            "needs spec.pricing",
        ),
        case(
            "comma-price",
            gateway("comma-price", json!({"pricing": {"models": [price("m", "0,15")]}})),
            "inputPerMillion",
        ),
        case(
            "lower-currency",
            gateway(
                "lower-currency",
                json!({"pricing": {"currency": "usd", "models": [price("m", "1")]}}),
            ),
            "currency",
        ),
        case(
            "priced-twice",
            gateway(
                "priced-twice",
                json!({"pricing": {"models": [price("m", "1"), price("m", "2")]}}),
            ),
            "Duplicate value",
        ),
        case(
            "nothing-to-price",
            gateway("nothing-to-price", json!({"pricing": {}})),
            "pricing needs models, a priceListRef, or both",
        ),
        case(
            "no-parallelism",
            sweep("no-parallelism", json!({"parallelism": 0})),
            "spec.parallelism",
        ),
        case(
            "sweep-of-a-file",
            sweep("sweep-of-a-file", json!({"input": {"fileId": "file-1"}})),
            "already on the gateway",
        ),
        case(
            "schedule-with-seconds",
            schedule("schedule-with-seconds", json!({"schedule": "0 0 2 * * *"})),
            "five cron fields",
        ),
        case(
            "schedule-of-nothing",
            {
                let mut nothing = schedule("schedule-of-nothing", json!({}));
                nothing["spec"].as_object_mut().unwrap().remove("batchTemplate");
                nothing
            },
            "exactly one of batchTemplate or sweepTemplate",
        ),
        case(
            "schedule-of-both",
            schedule(
                "schedule-of-both",
                json!({"sweepTemplate": {"input": {"configMap": {"name": "c", "key": "k"}},
                    "template": {"gatewayRef": {"name": "gw"}, "endpoint": "/v1/chat/completions"}}}),
            ),
            "exactly one of batchTemplate or sweepTemplate",
        ),
        case(
            "a-schedule-whose-name-leaves-no-room-for-its-runs-minutes",
            schedule("a-schedule-whose-name-leaves-no-room-for-its-runs-minutes", json!({})),
            "at most 52 characters",
        ),
    ]
}
