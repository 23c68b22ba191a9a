//! `run -f`: the same engine as the controller, without a cluster. Reads Batch,
//! BatchGateway, ConfigMap and Secret documents from files, keeps durable state in a
//! directory (a rerun resumes and never submits twice), writes results under an output
//! directory, and starts the built-in simulator for Batches whose gateway is not given.

mod admission;
mod direct;
mod manifests;
mod notify;
mod paths;
mod progress;
mod resolve;
mod runner;
mod schedule;
mod state;
mod sweep;
mod yaml;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use futures::future::join_all;
use tokio_util::sync::CancellationToken;

pub use manifests::{Located, ManifestError, Manifests, Origin};
pub use resolve::{GatewayTarget, Plan, gateway_prices, input_bytes, location as object_location};
pub use state::{BatchState, StateDir};

use crate::api::{BatchPhase, BatchStatus};
use crate::engine::PollingPolicy;
use crate::gateway::{ApiKey, GatewayClient, GatewayConfig};
use crate::simulator::{RunningSimulator, SimulatorConfig};
use progress::Reporter;
use runner::{BatchRun, Ending};

/// The built-in simulator's polling: it finishes in seconds, so poll often.
const BUILTIN_POLLING: PollingPolicy = PollingPolicy {
    initial: Duration::from_millis(250),
    max: Duration::from_secs(2),
    stalled: crate::engine::StalledPolicy::DEFAULT,
};

/// Options of `run -f`.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub paths: Vec<PathBuf>,
    pub out_dir: PathBuf,
    pub state_dir: PathBuf,
    /// `--pvc-root`: claim C of `spec.output.pvc` is this directory's `C/`.
    pub pvc_root: Option<PathBuf>,
    /// Send every Batch to the built-in simulator.
    pub simulator: bool,
    /// Draw progress bars on a terminal.
    pub progress: bool,
    /// `--at`: the time each BatchSchedule runs for (its latest scheduled time at or before
    /// it); now when `None`.
    pub at: Option<String>,
}

/// Exit codes of `run -f`.
pub mod exit {
    /// Every Batch Succeeded.
    pub const SUCCEEDED: u8 = 0;
    /// A Batch ended Failed, Expired or Cancelled, or the run stopped early.
    pub const NOT_SUCCEEDED: u8 = 1;
    /// Invalid manifests or input; nothing was sent upstream.
    pub const INVALID: u8 = 2;
    /// Interrupted (Ctrl-C); a rerun resumes.
    pub const INTERRUPTED: u8 = 130;
}

/// Runs every Batch in the files to a final phase. Errors that are the user's to fix are
/// printed and mapped to exit code 2 before anything is sent upstream.
pub async fn run(options: RunOptions) -> anyhow::Result<ExitCode> {
    let reporter = Reporter::new(options.progress);
    let mut manifests = match Manifests::load(&options.paths) {
        Ok(m) => m,
        Err(e) => return Ok(invalid(&[e.to_string()])),
    };
    match schedule::expand(&mut manifests, options.at.as_deref(), jiff::Timestamp::now()) {
        Ok(said) => said.into_iter().for_each(|line| reporter.say(line)),
        Err(problems) => return Ok(invalid(&problems)),
    }
    let state_dir = StateDir::open(&options.state_dir)?;
    let sweeps = match sweep::expand(&mut manifests, &state_dir, resolve::input_bytes).await {
        Ok(sweeps) => sweeps,
        Err(problems) => return Ok(invalid(&problems)),
    };
    for skipped in &manifests.skipped {
        reporter.say(format!(
            "ignoring {skipped} (run -f uses Batch, BatchSweep, BatchSchedule, BatchGateway, PriceList, ConfigMap and Secret)"
        ));
    }
    if let Some(note) = notify_not_sent(&manifests) {
        reporter.say(note);
    }
    let mut plans = match resolve::plan_all(&manifests, options.simulator, options.pvc_root.as_deref()) {
        Ok(plans) => plans,
        Err(problems) => return Ok(invalid(&problems)),
    };
    let validated = match validate_inputs(&mut plans) {
        Ok(v) => v,
        Err(problems) => return Ok(invalid(&problems)),
    };
    let states = match load_states(&state_dir, &plans, &reporter) {
        Ok(states) => states,
        Err(problems) => return Ok(invalid(&problems)),
    };

    let builtin = |p: &Plan| matches!(p.gateway, GatewayTarget::Builtin { .. });
    let simulator = match plans.iter().any(builtin) {
        true => Some(RunningSimulator::start(SimulatorConfig::default(), "127.0.0.1:0".parse()?).await?),
        false => None,
    };
    if let Some(sim) = &simulator
        && plans
            .iter()
            .zip(&states)
            .any(|(p, s)| builtin(p) && !s.status.phase.unwrap_or_default().is_terminal())
    {
        let reason = simulator_reason(&options, &plans);
        reporter.say(format!("using the built-in simulator at {} ({reason})", sim.base_url()));
    }

    let cancel = CancellationToken::new();
    let ctrl_c = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                cancel.cancel();
            }
        })
    };
    let board = admission::Board::default();
    for (order, (plan, state)) in plans.iter().zip(&states).enumerate() {
        board.update(plan, order, &state.status);
    }
    let mut batches = Vec::new();
    let mut swept: Vec<Vec<(usize, BatchRun)>> = sweeps.iter().map(|_| Vec::new()).collect();
    // One client per gateway (each holds its TLS roots and connection pool), not per Batch.
    let mut clients: HashMap<String, (GatewayClient, PollingPolicy)> = HashMap::new();
    for (order, ((plan, state), validated)) in plans.iter().zip(states).zip(validated).enumerate() {
        let gateway = match &plan.gateway {
            GatewayTarget::Builtin { .. } => String::new(),
            GatewayTarget::Remote(gw) => format!("{}/{}", plan.namespace, gw.name),
        };
        let (client, polling) = match clients.get(&gateway) {
            Some(known) => known.clone(),
            None => {
                let made = client_for(plan, simulator.as_ref())?;
                clients.insert(gateway, made.clone());
                made
            }
        };
        let run = BatchRun {
            plan,
            state,
            client,
            polling,
            validated,
            out_dir: paths::under(&options.out_dir, &[&plan.namespace, &plan.name])?,
            state_dir: &state_dir,
            progress: reporter.batch(&plan.object()),
            cancel: cancel.clone(),
            board: &board,
            order,
            fresh_attempts: Default::default(),
            // A sweep's children leave the telling to the sweep.
            webhook: plan
                .webhook
                .as_ref()
                .filter(|_| !sweeps.iter().any(|s| s.owns(&plan.namespace, &plan.name))),
        };
        match sweeps.iter().position(|s| s.owns(&plan.namespace, &plan.name)) {
            Some(i) => swept[i].push((order, run)),
            None => batches.push(async move { (order, run.run().await) }),
        }
    }
    let drives = sweeps
        .iter()
        .zip(swept)
        .map(|(sweep, children)| sweep.drive(children, &state_dir, &reporter, cancel.clone()));
    let (mut ended, mut driven) = futures::join!(join_all(batches), join_all(drives));
    ctrl_c.abort();
    if let Some(sim) = simulator {
        sim.shutdown().await;
    }
    ended.extend(driven.iter_mut().flat_map(|d| std::mem::take(&mut d.children)));
    ended.sort_by_key(|(order, _)| *order);
    let endings: Vec<_> = ended.into_iter().map(|(_, ending)| ending).collect();
    let code = summarise(&plans, &endings, &options, &reporter);
    let swept = summarise_sweeps(&sweeps, &driven, &options, &reporter)?;
    Ok(if swept || code != ExitCode::from(exit::SUCCEEDED) {
        code
    } else {
        ExitCode::from(exit::NOT_SUCCEEDED)
    })
}

/// Writes each sweep's summary and status and says how it went; false when one did not succeed.
fn summarise_sweeps(
    sweeps: &[sweep::SweepRun],
    driven: &[sweep::Driven],
    options: &RunOptions,
    reporter: &Reporter,
) -> anyhow::Result<bool> {
    let mut all_succeeded = true;
    for (sweep, driven) in sweeps.iter().zip(driven) {
        let dir = sweep.write(driven, &options.out_dir)?;
        let status = &driven.status;
        let phase = status.phase.unwrap_or_default();
        all_succeeded &= phase == crate::api::SweepPhase::Succeeded;
        let counts = status.request_counts.clone().unwrap_or_default();
        reporter.say(format!(
            "{}: {phase} ({}, {} lines completed, {} failed); summary in {}",
            sweep.object(),
            status.progress.clone().unwrap_or_default(),
            counts.completed,
            counts.failed,
            dir.join("summary.json").display()
        ));
        if let Some(cost) = &status.cost {
            reporter.say(format!("{}: {}", sweep.object(), cost_line(cost)));
        }
    }
    Ok(all_succeeded)
}

/// `cost 0.0123 USD (exact 0.01234, gpt-4o-mini 0.01234); no price for x`.
fn cost_line(cost: &crate::api::Cost) -> String {
    let models: Vec<String> = cost
        .by_model
        .iter()
        .map(|m| format!("{} {}", m.model, m.actual))
        .collect();
    let mut line = match (cost.actual.is_empty(), &cost.estimated) {
        // Nothing counted (refused, held back, failed before results): only the estimate.
        (true, Some(estimated)) => format!("cost {} (estimated {estimated}, no results counted", cost.display),
        _ => format!("cost {} (exact {}", cost.display, cost.actual),
    };
    if !models.is_empty() {
        line.push_str(&format!("; {}", models.join(", ")));
    }
    line.push(')');
    if !cost.unpriced.is_empty() {
        line.push_str(&format!("; no price for {}", cost.unpriced.join(", ")));
    }
    line
}

fn invalid(problems: &[String]) -> ExitCode {
    for problem in problems {
        eprintln!("error: {problem}");
    }
    eprintln!("nothing was sent to any gateway");
    ExitCode::from(exit::INVALID)
}

/// Validates every input in memory in full before anything is sent, keeping the prepared
/// (sliced, rewritten) bytes to upload; returns (requests, bytes) per plan. Inputs in object
/// storage are streamed and validated when their batch runs.
fn validate_inputs(plans: &mut [Plan]) -> Result<Vec<crate::jsonl::Summary>, Vec<String>> {
    let mut problems = Vec::new();
    let mut validated = Vec::new();
    for plan in plans {
        let input = &plan.batch.object.spec.input;
        if input.file_id.is_some() || input.object_store.is_some() {
            validated.push(Default::default()); // checked by the gateway, or while streaming
            continue;
        }
        let endpoint = plan.batch.object.spec.endpoint.path();
        let range = input.byte_range.map(|r| r.start..r.end);
        let limits = resolve::limits(&plan.gateway);
        let (prepared, report) =
            crate::jsonl::prepare_bytes(&plan.input, range, crate::steps::rewrite(input), endpoint, limits);
        if report.is_valid() {
            validated.push(report.summary);
            plan.input = prepared.into();
        } else {
            let input = &plan.batch.object.spec.input;
            let source = match (&input.config_map, &input.secret) {
                (Some(r), _) => format!("ConfigMap {}/{} key {}", plan.namespace, r.name, r.key),
                (_, Some(r)) => format!("Secret {}/{} key {}", plan.namespace, r.name, r.key),
                _ => "spec.input.requests (line N is request N)".to_string(),
            };
            problems.push(format!(
                "{} Batch {}: invalid input in {source}:\n{}",
                plan.batch.origin,
                plan.object(),
                indent(&report.render(20))
            ));
        }
    }
    if problems.is_empty() {
        Ok(validated)
    } else {
        Err(problems)
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
}

/// Loads or creates each plan's state, refusing to resume a batch whose input or gateway changed.
fn load_states(state_dir: &StateDir, plans: &[Plan], reporter: &Reporter) -> Result<Vec<BatchState>, Vec<String>> {
    let mut problems = Vec::new();
    let mut states = Vec::new();
    for plan in plans {
        let gateway = gateway_label(plan);
        let fresh = BatchState {
            uid: uuid::Uuid::new_v4().to_string(),
            gateway: gateway.clone(),
            input_digest: plan.input_digest.clone(),
            status: Default::default(),
        };
        let saved = match state_dir.load(&plan.namespace, &plan.name) {
            Ok(saved) => saved,
            Err(e) => {
                problems.push(e.to_string());
                continue;
            }
        };
        let where_ = state_dir.object_dir(&plan.namespace, &plan.name).unwrap_or_default();
        let state = match saved {
            None => fresh,
            Some(saved) if saved.status.phase.unwrap_or_default().is_terminal() => {
                reporter.say(format!(
                    "{}: already {} in an earlier run (delete {} to run it again)",
                    plan.object(),
                    saved.status.phase.unwrap_or_default(),
                    where_.display()
                ));
                saved
            }
            Some(saved) if saved.input_digest != plan.input_digest => {
                problems.push(format!(
                    "{}: its input changed since the run kept in {} started; delete that directory to start it over",
                    plan.object(),
                    where_.display()
                ));
                continue;
            }
            Some(saved) if saved.gateway == "builtin" && gateway == "builtin" && saved.status.attempt.is_some() => {
                reporter.say(format!(
                    "{}: the built-in simulator of the earlier run is gone with that run; starting over",
                    plan.object()
                ));
                fresh
            }
            Some(saved) if saved.gateway != gateway => {
                problems.push(format!(
                    "{}: the run kept in {} used gateway {}, the files now say {gateway}; delete that directory to start it over",
                    plan.object(),
                    where_.display(),
                    saved.gateway
                ));
                continue;
            }
            Some(saved) => {
                reporter.say(format!("{}: resuming from {}", plan.object(), where_.display()));
                saved
            }
        };
        states.push(state);
    }
    if problems.is_empty() { Ok(states) } else { Err(problems) }
}

fn gateway_label(plan: &Plan) -> String {
    match &plan.gateway {
        GatewayTarget::Builtin { .. } => "builtin".to_string(),
        GatewayTarget::Remote(gw) => gw.spec.url.clone(),
    }
}

/// A sweep's webhook is the controller's to call: say so rather than ignore it in silence.
fn notify_not_sent(manifests: &manifests::Manifests) -> Option<String> {
    let gateway_notifies = |ns: &String, name: &str| {
        (manifests.gateways.get(&(ns.clone(), name.to_string()))).is_some_and(|g| g.object.spec.notify.is_some())
    };
    let sweeps: Vec<String> = (manifests.sweeps.iter())
        .filter(|((ns, _), s)| {
            s.object.spec.notify.is_some() || gateway_notifies(ns, &s.object.spec.template.gateway_ref.name)
        })
        .map(|((ns, name), _)| format!("{ns}/{name}"))
        .collect();
    (!sweeps.is_empty()).then(|| {
        format!(
            "not sending the webhook events of BatchSweep {}: a sweep's events are the controller's to send (run -f sends a Batch's)",
            sweeps.join(", ")
        )
    })
}

fn simulator_reason(options: &RunOptions, plans: &[Plan]) -> String {
    if options.simulator {
        return "--simulator".to_string();
    }
    let missing: Vec<String> = plans
        .iter()
        .filter(|p| matches!(p.gateway, GatewayTarget::Builtin { .. }))
        .map(|p| format!("{}/{}", p.namespace, p.batch.object.spec.gateway_ref.name))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    format!("no BatchGateway {} in the files", missing.join(", "))
}

fn client_for(plan: &Plan, simulator: Option<&RunningSimulator>) -> anyhow::Result<(GatewayClient, PollingPolicy)> {
    match &plan.gateway {
        GatewayTarget::Builtin { .. } => {
            let url = simulator.expect("started whenever a plan uses it").base_url();
            let client = GatewayClient::new(GatewayConfig::new(url.parse()?))?;
            Ok((client, BUILTIN_POLLING))
        }
        GatewayTarget::Remote(gw) => {
            let mut config = GatewayConfig::new(gw.spec.url.parse()?);
            config.api_key = gw.api_key.clone().map(ApiKey::new);
            config.headers = gw.spec.headers.clone();
            config.limits = crate::steps::response_limits(&gw.spec.limits).map_err(anyhow::Error::msg)?;
            let polling = PollingPolicy {
                initial: gw.spec.polling.initial().map_err(anyhow::Error::msg)?,
                max: gw.spec.polling.max().map_err(anyhow::Error::msg)?,
                stalled: crate::engine::StalledPolicy::from_spec(&gw.spec.stalled_after).map_err(anyhow::Error::msg)?,
            };
            Ok((GatewayClient::new(config)?, polling))
        }
    }
}

/// Prints one line per batch and picks the exit code.
fn summarise(plans: &[Plan], endings: &[(Ending, BatchStatus)], options: &RunOptions, reporter: &Reporter) -> ExitCode {
    let mut code = exit::SUCCEEDED;
    for (plan, (ending, status)) in plans.iter().zip(endings) {
        let out = paths::under(&options.out_dir, &[&plan.namespace, &plan.name]).unwrap_or_default();
        if !out.as_os_str().is_empty() {
            let _ = runner::write_status_yaml(&out, status);
        }
        match ending {
            Ending::Finished(BatchPhase::Succeeded) => {
                reporter.say(format!("{}: Succeeded; results in {}", plan.object(), out.display()));
            }
            Ending::Finished(phase) => {
                code = code.max(exit::NOT_SUCCEEDED);
                reporter.say(format!(
                    "{}: {phase}; see {}",
                    plan.object(),
                    out.join("status.yaml").display()
                ));
            }
            Ending::Stopped(why) => {
                code = code.max(exit::NOT_SUCCEEDED);
                reporter.say(format!("{}: stopped: {why}", plan.object()));
            }
            Ending::Interrupted => code = exit::INTERRUPTED,
        }
        if let Some(cost) = &status.cost {
            reporter.say(format!("{}: {}", plan.object(), cost_line(cost)));
        }
    }
    if code == exit::INTERRUPTED {
        reporter.say(format!(
            "interrupted; state is kept in {}: run the same command again to resume",
            options.state_dir.display()
        ));
    }
    ExitCode::from(code)
}
