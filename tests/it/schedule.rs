//! The BatchSchedule controller in-process against a real kube-apiserver and the simulator, with
//! a manual clock: the tests move time, the controller creates, replaces and prunes runs.

use crate::common;
use common::wait_until;

use common::cluster::{gateway_on_simulator, simulator_json};

use std::sync::Arc;
use std::time::Duration;

use common::cluster::RunningController;
use common::object;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use llm_batch_operator::api::{Batch, BatchPhase, BatchSchedule, BatchSweep, SweepPhase};
use llm_batch_operator::controller::{Clock, Context};
use llm_batch_operator::net::AddressPolicy;
use llm_batch_operator::simulator::{RunningSimulator, SimulatorConfig};
use serde_json::{Value, json};

const KEY: &str = "sk-schedule-test-key";
const WITHIN: Duration = Duration::from_secs(60);

struct Setup {
    client: Client,
    ns: String,
    sim: RunningSimulator,
    clock: Clock,
}

async fn setup(prefix: &str, sim: SimulatorConfig) -> Setup {
    let (client, ns, sim) = gateway_on_simulator(prefix, sim, KEY, json!({})).await;
    // Any start: nothing is due before the schedule exists, and each test moves it past that.
    let clock = Clock::manual(Timestamp::now());
    Setup { client, ns, sim, clock }
}

impl Setup {
    fn controller(&self) -> RunningController {
        let context = Context::new(self.client.clone())
            .with_addresses(AddressPolicy::local())
            .with_clock(self.clock.clone());
        RunningController::start_with(Arc::new(context), &self.ns)
    }

    /// The input ConfigMaps `tickets-<date>` of the runs at `times`, `lines` chat requests each.
    async fn inputs(&self, times: &[Timestamp], lines: usize) {
        let dates: std::collections::BTreeSet<String> = times.iter().map(|t| date(*t)).collect();
        for date in dates {
            let cm: ConfigMap = object(json!({"metadata": {"name": format!("tickets-{date}")},
                "data": {"batch.jsonl": common::chat_lines(lines)}}));
            Api::<ConfigMap>::namespaced(self.client.clone(), &self.ns)
                .create(&PostParams::default(), &cm)
                .await
                .unwrap();
        }
    }

    /// Creates schedule `name` (a Batch of ConfigMap `tickets-${date}`, `extra` merged into its
    /// spec) and returns its creation time.
    async fn schedule(&self, name: &str, extra: Value) -> Timestamp {
        let mut spec = json!({"schedule": "* * * * *",
            "batchTemplate": {"gatewayRef": {"name": "gw"}, "endpoint": "/v1/chat/completions",
                "input": {"configMap": {"name": "tickets-${date}", "key": "batch.jsonl"}},
                "output": {"secret": {"name": "results-${date}-${time}"}}}});
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        let schedule: BatchSchedule = object(json!({"apiVersion": "llmbatch.io/v1alpha1", "kind": "BatchSchedule",
            "metadata": {"name": name}, "spec": spec}));
        let created = self
            .schedules()
            .create(&PostParams::default(), &schedule)
            .await
            .unwrap();
        created.creation_timestamp().unwrap().0
    }

    fn schedules(&self) -> Api<BatchSchedule> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    fn batches(&self) -> Api<Batch> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    async fn runs(&self, schedule: &str) -> Vec<Batch> {
        let selector = format!("llmbatch.io/schedule={schedule}");
        let mut runs = self
            .batches()
            .list(&ListParams::default().labels(&selector))
            .await
            .unwrap()
            .items;
        runs.sort_by_key(|b| b.name_any());
        runs
    }

    /// Waits until the schedule's runs are exactly `names`, every one in `phase` when given.
    async fn wait_runs(&self, schedule: &str, names: &[&str], phase: Option<BatchPhase>) -> Vec<Batch> {
        wait_until(&format!("{schedule} never had exactly {names:?}"), WITHIN, async || {
            let runs = self.runs(schedule).await;
            let seen: Vec<(String, Option<BatchPhase>)> = runs
                .iter()
                .map(|b| (b.name_any(), b.status.as_ref().and_then(|s| s.phase)))
                .collect();
            let same = seen.iter().map(|(n, _)| n.as_str()).eq(names.iter().copied());
            let in_phase = phase.is_none() || seen.iter().all(|(_, p)| *p == phase);
            if same && in_phase { Ok(runs) } else { Err(seen) }
        })
        .await
    }

    /// Moves the clock to `t` and waits until the schedule has looked at that time (its next
    /// scheduled time is the one after `t`), or is suspended.
    async fn at(&self, schedule: &str, t: Timestamp, next: Option<Timestamp>) -> BatchSchedule {
        self.clock.set(t);
        wait_until(&format!("{schedule} never reconciled at {t}"), WITHIN, async || {
            let s = self.schedules().get(schedule).await.unwrap();
            let status = s.status.clone().unwrap_or_default();
            if status.next_schedule_time.as_ref().map(|n| n.0) == next {
                Ok(s)
            } else {
                Err(status)
            }
        })
        .await
    }

    async fn batches_created(&self) -> usize {
        let url = format!("{}/__sim/journal", self.sim.base_url().trim_end_matches("/v1"));
        let entries: Vec<Value> = reqwest::get(url).await.unwrap().json().await.unwrap();
        entries
            .iter()
            .filter(|e| e["method"] == "POST" && e["path"] == "/v1/batches" && e["status"].as_u64() < Some(300))
            .count()
    }
}

/// The first whole minute after `t`.
fn next_minute(t: Timestamp) -> Timestamp {
    Timestamp::from_second((t.as_second().div_euclid(60) + 1) * 60).unwrap()
}

fn plus(t: Timestamp, seconds: i64) -> Timestamp {
    t + SignedDuration::from_secs(seconds)
}

fn run_name(schedule: &str, t: Timestamp) -> String {
    llm_batch_operator::schedule::run_name(schedule, t)
}

fn date(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d").to_string()
}

#[tokio::test]
async fn a_minutely_schedule_runs_once_a_minute_across_a_restart_and_prunes_its_history() {
    let s = setup("sched-minute", SimulatorConfig::default()).await;
    let created = s.schedule("tickets", json!({"successfulRunsHistoryLimit": 1})).await;
    let t0 = next_minute(created);
    let t1 = plus(t0, 60);
    s.inputs(&[t0, t1], 3).await;
    let controller = s.controller();
    s.at("tickets", plus(t0, 10), Some(t1)).await;
    let first = run_name("tickets", t0);
    let runs = s
        .wait_runs("tickets", &[first.as_str()], Some(BatchPhase::Succeeded))
        .await;
    let input = runs[0].spec.input.config_map.clone().unwrap();
    assert_eq!(
        input.name,
        format!("tickets-{}", date(t0)),
        "${{date}} is the scheduled date"
    );
    let output = runs[0].spec.output.clone().unwrap().secret.unwrap();
    assert_eq!(output.name, format!("results-{}-{}", date(t0), t0.strftime("%H%M")));
    assert_eq!(runs[0].owner_references()[0].name, "tickets");
    controller.stop().await;

    // A new controller in the same minute, with the schedule's status lost (a restore, a
    // write that never landed): it finds the run it owns and creates nothing again.
    let lost = json!({"status": null});
    s.schedules()
        .patch_status("tickets", &PatchParams::default(), &Patch::Merge(&lost))
        .await
        .unwrap();
    let controller = s.controller();
    s.at("tickets", plus(t0, 40), Some(t1)).await;
    s.wait_runs("tickets", &[first.as_str()], Some(BatchPhase::Succeeded))
        .await;
    assert_eq!(s.batches_created().await, 1, "one upstream batch for the minute");
    let upstream_input = runs[0].status.clone().unwrap().gateway.unwrap().input_file_id.unwrap();

    // The next minute runs once; with a history of one success, the first run is deleted and
    // its uploaded input with it (the Batch's deletion policy).
    let schedule = s.at("tickets", plus(t1, 5), Some(plus(t1, 60))).await;
    assert_eq!(schedule.status.unwrap().last_schedule_time.unwrap().0, t1);
    let second = run_name("tickets", t1);
    s.wait_runs("tickets", &[second.as_str()], Some(BatchPhase::Succeeded))
        .await;
    assert_eq!(s.batches_created().await, 2);
    let file = reqwest::Client::new()
        .get(format!("{}/files/{upstream_input}", s.sim.base_url()))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(file.status(), 404, "the pruned run's input file was deleted upstream");
    let schedule = wait_until("the status never showed the second run", WITHIN, async || {
        let status = s.schedules().get("tickets").await.unwrap().status.unwrap_or_default();
        match status.runs.as_slice() {
            [only] if only.name == second && status.last_result.as_deref() == Some("Succeeded") => Ok(status),
            _ => Err(status),
        }
    })
    .await;
    assert_eq!(schedule.active_runs, 0);
    assert!(schedule.last_successful_time.is_some());
    assert!(schedule.runs[0].usage.as_ref().is_some_and(|u| u.total_tokens > 0));
    controller.stop().await;
}

#[tokio::test]
async fn forbid_holds_the_next_run_while_one_is_active_and_suspend_starts_none() {
    let s = setup("sched-forbid", SimulatorConfig::default()).await;
    // No input ConfigMap: each run waits for it (Pending), which is active.
    let created = s.schedule("nightly", json!({"concurrencyPolicy": "Forbid"})).await;
    let t0 = next_minute(created);
    let controller = s.controller();
    s.at("nightly", plus(t0, 5), Some(plus(t0, 60))).await;
    let first = run_name("nightly", t0);
    let runs = s
        .wait_runs("nightly", &[first.as_str()], Some(BatchPhase::Pending))
        .await;
    let admitted = runs[0].status.clone().unwrap().conditions;
    assert!(
        admitted
            .iter()
            .any(|c| c.type_ == "Admitted" && c.reason == "InputNotFound"),
        "a missing input is the run's wait, not the schedule's failure: {admitted:?}"
    );

    let schedule = s.at("nightly", plus(t0, 65), Some(plus(t0, 120))).await;
    let status = schedule.status.unwrap();
    assert_eq!(status.active, [first.as_str()]);
    assert_eq!(status.last_schedule_time.unwrap().0, t0, "the held time is not taken");
    assert_eq!(
        s.runs("nightly").await.len(),
        1,
        "Forbid: nothing beside the active run"
    );

    let suspend = json!({"spec": {"suspend": true}});
    s.schedules()
        .patch("nightly", &PatchParams::default(), &Patch::Merge(&suspend))
        .await
        .unwrap();
    let schedule = s.at("nightly", plus(t0, 185), None).await;
    let suspended = schedule.status.unwrap().conditions;
    assert!(suspended.iter().any(|c| c.type_ == "Suspended" && c.status == "True"));
    assert_eq!(s.runs("nightly").await.len(), 1, "suspended: no new run");
    controller.stop().await;
}

#[tokio::test]
async fn replace_cancels_the_active_run_upstream_and_starts_the_new_one() {
    // Slow enough that the first run is still in progress upstream a minute later.
    let sim = SimulatorConfig {
        lines_per_sec: 1,
        ..Default::default()
    };
    let s = setup("sched-replace", sim).await;
    let created = s.schedule("queue", json!({"concurrencyPolicy": "Replace"})).await;
    let t0 = next_minute(created);
    let t1 = plus(t0, 60);
    s.inputs(&[t0, t1], 50).await;
    let controller = s.controller();
    s.at("queue", plus(t0, 5), Some(t1)).await;
    let first = run_name("queue", t0);
    let batch_id = wait_until("the first run never reached the gateway", WITHIN, async || {
        let runs = s.runs("queue").await;
        let status = runs.first().and_then(|b| b.status.clone());
        let id = status.as_ref().and_then(|st| st.gateway.as_ref()?.batch_id.clone());
        match (status.and_then(|st| st.phase), id) {
            (Some(BatchPhase::InProgress), Some(id)) => Ok(id),
            other => Err(other),
        }
    })
    .await;

    s.at("queue", plus(t1, 5), Some(plus(t1, 60))).await;
    s.wait_runs("queue", &[run_name("queue", t1).as_str()], None).await;
    let upstream = simulator_json(&s.sim.base_url(), &format!("/batches/{batch_id}"), KEY).await;
    assert!(
        matches!(upstream["status"].as_str(), Some("cancelling" | "cancelled")),
        "the replaced run {first} was cancelled upstream: {upstream}"
    );
    assert_eq!(s.batches_created().await, 2);
    controller.stop().await;
}

#[tokio::test]
async fn after_three_hours_down_exactly_one_catch_up_run_starts() {
    let s = setup("sched-downtime", SimulatorConfig::default()).await;
    let created = s
        .schedule(
            "hourly",
            json!({"schedule": "0 * * * *", "startingDeadlineSeconds": 7200}),
        )
        .await;
    let h0 = Timestamp::from_second((created.as_second().div_euclid(3600) + 1) * 3600).unwrap();
    let h3 = plus(h0, 3 * 3600);
    s.inputs(&[h0, h3], 2).await;
    let controller = s.controller();
    s.at("hourly", plus(h0, 30), Some(plus(h0, 3600))).await;
    s.wait_runs("hourly", &[&run_name("hourly", h0)], Some(BatchPhase::Succeeded))
        .await;
    controller.stop().await;

    // Down from just after h0 until 30 minutes past h0 + 3h: h0+1h, +2h and +3h were missed;
    // only the most recent (within the two-hour deadline) runs.
    s.clock.set(plus(h3, 1800));
    let controller = s.controller();
    s.at("hourly", plus(h3, 1800), Some(plus(h3, 3600))).await;
    let names = [run_name("hourly", h0), run_name("hourly", h3)];
    s.wait_runs(
        "hourly",
        &[names[0].as_str(), names[1].as_str()],
        Some(BatchPhase::Succeeded),
    )
    .await;
    assert_eq!(s.batches_created().await, 2, "one catch-up run, no burst");
    controller.stop().await;
}

/// A schedule of a sweep: its run is a BatchSweep named for the scheduled time, owned by the
/// schedule, reading that date's input, whose chunks run as Batches; the schedule records it.
#[tokio::test]
async fn a_sweep_template_runs_one_batchsweep_per_scheduled_time() {
    let s = setup("sched-sweep", SimulatorConfig::default()).await;
    let template = json!({"input": {"configMap": {"name": "tickets-${date}", "key": "batch.jsonl"}},
        "chunk": {"maxRequests": 2},
        "template": {"gatewayRef": {"name": "gw"}, "endpoint": "/v1/chat/completions",
                     "output": {"secret": {"name": "results-${date}"}}}});
    let created = s
        .schedule("sweeps", json!({"batchTemplate": null, "sweepTemplate": template}))
        .await;
    let t1 = next_minute(created);
    s.inputs(&[t1], 4).await;
    let controller = s.controller();
    s.at("sweeps", plus(t1, 5), Some(plus(t1, 60))).await;

    let sweeps: Api<BatchSweep> = Api::namespaced(s.client.clone(), &s.ns);
    let name = run_name("sweeps", t1);
    let run = wait_until(&format!("{name} never succeeded"), WITHIN, async || {
        let run = sweeps.get_opt(&name).await.unwrap();
        match run.as_ref().and_then(|r| r.status.as_ref()).and_then(|st| st.phase) {
            Some(SweepPhase::Succeeded) => Ok(run.unwrap()),
            phase => Err(phase),
        }
    })
    .await;
    let owner = &run.owner_references()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("BatchSchedule", "sweeps"));
    assert_eq!(
        run.spec.input.config_map.as_ref().unwrap().name,
        format!("tickets-{}", date(t1))
    );
    assert_eq!(s.batches_created().await, 2, "4 lines in chunks of 2");
    wait_until("the schedule never recorded the sweep's success", WITHIN, async || {
        let status = s.schedules().get("sweeps").await.unwrap().status.unwrap_or_default();
        // The success is the sweep's completion time, on the real clock (only schedules run on
        // the test's clock): that it is there is what counts.
        let scheduled = status.last_schedule_time.as_ref().map(|t| t.0);
        match (scheduled, &status.last_successful_time) {
            (Some(scheduled), Some(_)) if scheduled == t1 => Ok(()),
            _ => Err(status),
        }
    })
    .await;
    controller.stop().await;
}

/// `run -f --at`: the schedule's run for that time, once, on the built-in simulator; its
/// placeholders are the scheduled time in the schedule's zone (here already the next day).
#[test]
fn run_f_at_runs_the_templated_batch_once_for_that_time() {
    let ws = common::Workspace::new();
    let lines: String = common::chat_lines(4).lines().map(|l| format!("    {l}\n")).collect();
    ws.write(
        "nightly.yaml",
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: tickets-2026-02-01\ndata:\n  batch.jsonl: |\n{lines}---\n\
             apiVersion: llmbatch.io/v1alpha1\nkind: BatchSchedule\nmetadata:\n  name: nightly\nspec:\n  \
             schedule: \"30 8 * * *\"\n  timeZone: Asia/Tokyo\n  batchTemplate:\n    gatewayRef:\n      name: gw\n    \
             endpoint: /v1/chat/completions\n    input:\n      configMap:\n        name: tickets-${{date}}\n        key: batch.jsonl\n"
        ),
    );
    // 23:40 UTC on 31 January is 08:40 on 1 February in Tokyo: the 08:30 run of that day.
    let scheduled: Timestamp = "2026-01-31T23:30:00Z".parse().unwrap();
    let run = run_name("nightly", scheduled);
    let once = |at: &str| ws.run_command(&["nightly.yaml"]).args(["--at", at]).output().unwrap();
    let output = once("2026-01-31T23:40:00Z");
    assert!(output.status.success(), "{}", common::text(&output));
    assert!(
        common::text(&output).contains(&format!("running {run}, scheduled for 2026-01-31T23:30:00Z")),
        "{}",
        common::text(&output)
    );
    assert_eq!(ws.status_yaml(&run)["phase"], "Succeeded");
    assert_eq!(ws.lines(&run, "output.jsonl").len(), 4);

    // The same time in the zone's own words is the same run: resumed, not run again.
    let again = once("2026-02-01T08:59");
    assert!(again.status.success(), "{}", common::text(&again));
    assert!(
        !common::text(&again).contains("using the built-in simulator"),
        "nothing left to send: {}",
        common::text(&again)
    );
    assert_eq!(ws.status_yaml(&run)["phase"], "Succeeded");

    let bad = once("yesterday");
    assert_eq!(bad.status.code(), Some(2), "{}", common::text(&bad));
    assert!(
        common::text(&bad).contains("--at \"yesterday\""),
        "{}",
        common::text(&bad)
    );
}
