//! The Argo CD health checks in resource_customizations/llmbatch.io/<Kind>/health.lua, run
//! the way Argo CD runs them (the object as the global `obj`, Lua 5.1 like gopher-lua) against
//! every case of each health_test.yaml; and resource_customizations/argocd-cm.yaml, the
//! argocd-cm patch users apply, checked to hold exactly those scripts.

use crate::common;

use std::path::{Path, PathBuf};

use common::repo_path;
use mlua::{Lua, Table, Value as LuaValue};
use serde::Deserialize;
use serde_json::Value;

const KINDS: [&str; 4] = ["Batch", "BatchGateway", "BatchSweep", "BatchSchedule"];

#[derive(Deserialize)]
struct HealthTests {
    tests: Vec<HealthTest>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HealthTest {
    health_status: HealthStatus,
    input_path: String,
}

#[derive(Deserialize, Debug, PartialEq)]
struct HealthStatus {
    status: String,
    #[serde(default)]
    message: String,
}

fn kind_dir(kind: &str) -> PathBuf {
    PathBuf::from(repo_path("resource_customizations/llmbatch.io")).join(kind)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// JSON to Lua as Argo CD hands objects to its scripts: null fields are absent (nil).
fn to_lua(lua: &Lua, value: &Value) -> mlua::Result<LuaValue> {
    Ok(match value {
        Value::Null => LuaValue::Nil,
        Value::Bool(b) => LuaValue::Boolean(*b),
        Value::Number(n) => LuaValue::Number(n.as_f64().unwrap()),
        Value::String(s) => LuaValue::String(lua.create_string(s)?),
        Value::Array(items) => {
            let table = lua.create_table()?;
            for item in items {
                table.raw_push(to_lua(lua, item)?)?;
            }
            LuaValue::Table(table)
        }
        Value::Object(fields) => {
            let table = lua.create_table()?;
            for (key, field) in fields {
                table.raw_set(key.as_str(), to_lua(lua, field)?)?;
            }
            LuaValue::Table(table)
        }
    })
}

/// Runs `script` on `object` and returns the health it reports.
fn health(script: &str, object: &Value) -> HealthStatus {
    let lua = Lua::new();
    lua.globals().set("obj", to_lua(&lua, object).unwrap()).unwrap();
    let hs: Table = lua
        .load(script)
        .eval()
        .unwrap_or_else(|e| panic!("the script failed: {e}"));
    HealthStatus {
        status: hs.get("status").unwrap(),
        message: hs.get::<Option<String>>("message").unwrap().unwrap_or_default(),
    }
}

#[test]
fn every_health_test_case_passes() {
    let mut cases = 0;
    for kind in KINDS {
        let dir = kind_dir(kind);
        let script = read(&dir.join("health.lua"));
        let tests: HealthTests = serde_yaml::from_str(&read(&dir.join("health_test.yaml"))).unwrap();
        for test in tests.tests {
            let object: Value = serde_yaml::from_str(&read(&dir.join(&test.input_path))).unwrap();
            assert_eq!(object["kind"], kind, "{kind}/{}", test.input_path);
            let got = health(&script, &object);
            assert_eq!(got, test.health_status, "{kind}/{}", test.input_path);
            cases += 1;
        }
    }
    assert!(cases >= 20, "only {cases} cases");
}

#[test]
fn every_status_argo_cd_knows_is_reached() {
    let mut seen = std::collections::BTreeSet::new();
    for kind in KINDS {
        let tests: HealthTests = serde_yaml::from_str(&read(&kind_dir(kind).join("health_test.yaml"))).unwrap();
        seen.extend(tests.tests.into_iter().map(|t| t.health_status.status));
    }
    let want: std::collections::BTreeSet<String> = ["Healthy", "Progressing", "Degraded", "Suspended"]
        .map(String::from)
        .into();
    assert_eq!(seen, want);
}

/// A Batch from the controller's own types: the scripts read the field paths the CRD has.
#[test]
fn the_batch_script_reads_the_status_the_controller_writes() {
    use llm_batch_operator::api::{Batch, BatchPhase, BatchStatus, RequestCounts};
    let mut batch: Batch = serde_json::from_value(serde_json::json!({
        "apiVersion": "llmbatch.io/v1alpha1", "kind": "Batch",
        "metadata": {"name": "b", "namespace": "default", "generation": 3},
        "spec": {"gatewayRef": {"name": "gw"}, "endpoint": "/v1/chat/completions",
                 "input": {"configMap": {"name": "in", "key": "batch.jsonl"}},
                 "output": {"secret": {"name": "out"}}}
    }))
    .unwrap();
    batch.status = Some(BatchStatus {
        phase: Some(BatchPhase::InProgress),
        observed_generation: Some(3),
        request_counts: Some(RequestCounts {
            total: 10,
            completed: 4,
            failed: 1,
            not_run: None,
        }),
        ..Default::default()
    });
    let script = read(&kind_dir("Batch").join("health.lua"));
    let got = health(&script, &serde_json::to_value(&batch).unwrap());
    assert_eq!(got.status, "Progressing");
    assert_eq!(got.message, "InProgress: 5 of 10 requests done, 1 failed");

    batch.status.as_mut().unwrap().observed_generation = Some(2);
    let got = health(&script, &serde_json::to_value(&batch).unwrap());
    assert_eq!(got.message, "Waiting for the operator to observe generation 3");
}

/// A BatchSchedule whose status the controller's own decision wrote: Healthy after a run that
/// succeeded, Degraded after one that failed, Suspended once suspended.
#[test]
fn the_schedule_script_reads_the_status_the_controller_writes() {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use llm_batch_operator::api::{BatchSchedule, ScheduledRun};
    use llm_batch_operator::schedule::{Inputs, ObservedRun, RunOutcome, decide};
    let mut schedule: BatchSchedule = serde_json::from_value(serde_json::json!({
        "apiVersion": "llmbatch.io/v1alpha1", "kind": "BatchSchedule",
        "metadata": {"name": "nightly", "namespace": "default", "generation": 1},
        "spec": {"schedule": "@daily", "batchTemplate": {"gatewayRef": {"name": "gw"},
                 "endpoint": "/v1/chat/completions",
                 "input": {"configMap": {"name": "in-${date}", "key": "batch.jsonl"}}}}
    }))
    .unwrap();
    let script = read(&kind_dir("BatchSchedule").join("health.lua"));
    let day: k8s_openapi::jiff::Timestamp = "2026-01-31T00:00:00Z".parse().unwrap();
    let mut health_after = |outcome: RunOutcome, phase: &str, suspend: bool| {
        schedule.spec.suspend = suspend;
        let run = ObservedRun {
            summary: ScheduledRun {
                name: "nightly-29496960".into(),
                scheduled_time: Time(day),
                phase: Some(phase.into()),
                completion_time: Some(Time(day)),
                request_counts: None,
                usage: None,
                cost: None,
            },
            scheduled: day,
            outcome,
            deleting: false,
        };
        let decision = decide(&Inputs {
            spec: &schedule.spec,
            generation: Some(1),
            status: &Default::default(),
            created: day,
            remembered: None,
            runs: &[run],
            now: day,
        });
        schedule.status = Some(decision.status);
        health(&script, &serde_json::to_value(&schedule).unwrap())
    };
    assert_eq!(
        health_after(RunOutcome::Succeeded, "Succeeded", false).status,
        "Healthy"
    );
    let failed = health_after(RunOutcome::Failed, "Expired", false);
    assert_eq!(
        (failed.status.as_str(), failed.message.as_str()),
        ("Degraded", "The last run ended Expired")
    );
    assert_eq!(health_after(RunOutcome::Failed, "Failed", true).status, "Suspended");
}

/// The argocd-cm patch holding every script, as resource_customizations/argocd-cm.yaml has it.
fn argocd_cm_patch() -> String {
    let mut out = String::from(
        "# Argo CD health checks for llmbatch.io resources, as an argocd-cm patch:\n\
         #   kubectl -n argocd patch configmap argocd-cm --patch-file resource_customizations/argocd-cm.yaml\n\
         # Generated from resource_customizations/llmbatch.io/*/health.lua by\n\
         #   LLMB_REGENERATE=1 cargo test --test it argocd_health::\n\
         data:\n",
    );
    for kind in KINDS {
        out.push_str(&format!("  resource.customizations.health.llmbatch.io_{kind}: |\n"));
        for line in read(&kind_dir(kind).join("health.lua")).lines() {
            if line.is_empty() {
                out.push('\n');
            } else {
                out.push_str(&format!("    {line}\n"));
            }
        }
    }
    out
}

#[test]
fn the_argocd_cm_patch_holds_the_scripts() {
    let path = PathBuf::from(repo_path("resource_customizations/argocd-cm.yaml"));
    let generated = argocd_cm_patch();
    if std::env::var_os("LLMB_REGENERATE").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "resource_customizations/argocd-cm.yaml is stale: regenerate it with\n  \
         LLMB_REGENERATE=1 cargo test --test it argocd_health::"
    );
    let parsed: serde_yaml::Value = serde_yaml::from_str(&committed).unwrap();
    for kind in KINDS {
        let key = format!("resource.customizations.health.llmbatch.io_{kind}");
        assert_eq!(
            parsed["data"][key.as_str()].as_str().unwrap(),
            read(&kind_dir(kind).join("health.lua"))
        );
    }
}
