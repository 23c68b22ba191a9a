//! Reconciling a BatchGateway: Ready from a cheap authenticated call (listing one batch), which
//! also says whether the gateway has a batch API (capabilities, the BatchApi condition and the
//! mode Auto resolves to), and its admission figures: Batches admitted and unfinished, Batches
//! waiting, estimated tokens admitted in the last hour.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action as Requeue;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::{Context, Error, MANAGER, cluster_io};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::gateway_condition_types::{BATCH_API, READY};
use crate::api::gateway_reasons::{self, BATCH_API_FOUND, BATCH_API_NOT_FOUND};
use crate::api::{BatchGateway, BatchGatewayStatus, Conditions, GatewayCapabilities, GatewaySpend};
use crate::engine::admission;
use crate::steps;

/// How often a gateway is probed again.
const PROBE_EVERY: Duration = Duration::from_secs(300);
/// How often a gateway that is not ready, or has Batches active or waiting, is looked at again
/// (its admission figures stay current).
const REFRESH_EVERY: Duration = Duration::from_secs(30);

/// Entry point of the BatchGateway controller.
pub async fn reconcile(gateway: Arc<BatchGateway>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    ctx.caches().ready().await;
    let (ready, reason, message, batch_api) = probe(&gateway, &ctx).await?;
    let mut status = gateway.status.clone().unwrap_or_default();
    status.observed_generation = gateway.meta().generation;
    if let Some(batch_api) = batch_api {
        record_capabilities(&mut status, batch_api, gateway.meta().generation);
    }
    let known = status.capabilities.as_ref().map(|c| c.batch_api);
    status.mode = gateway.spec.mode.resolve(known);
    let entries = super::admission::gateway_entries(&ctx.caches(), &gateway);
    status.active_batches = Some(admission::active(&entries));
    status.waiting_batches = Some(admission::waiting(&entries));
    status.admitted_tokens = Some(admission::window_tokens(&entries, Timestamp::now()));
    let before = status.spend.take();
    status.spend = spend(&gateway, &entries);
    gauge_spend(&gateway, before.as_ref(), status.spend.as_ref(), &ctx);
    status.conditions.set_condition(
        READY,
        ready,
        reason,
        message,
        gateway.meta().generation,
        Timestamp::now(),
    );
    write_status(&gateway, &status, &ctx).await?;
    let busy = status.active_batches.unwrap_or(0) + status.waiting_batches.unwrap_or(0) > 0;
    Ok(Requeue::requeue(if ready && !busy {
        PROBE_EVERY
    } else {
        REFRESH_EVERY
    }))
}

/// Spend in the window of the gateway's money budget, when it has one.
fn spend(gateway: &BatchGateway, entries: &[admission::Entry]) -> Option<GatewaySpend> {
    let limit = admission::Budget::of(&gateway.spec).spend?;
    let spend = admission::spend(entries, limit.window, Timestamp::now());
    Some(GatewaySpend {
        window: limit.window_text,
        spent: spend.spent.normalize().to_string(),
        committed: spend.committed.normalize().to_string(),
        budget: limit.amount.normalize().to_string(),
        currency: limit.currency,
    })
}

/// Shows the spend (finished and committed) and the budget in the budget gauges; drops them
/// when the budget is gone.
fn gauge_spend(gateway: &BatchGateway, before: Option<&GatewaySpend>, now: Option<&GatewaySpend>, ctx: &Context) {
    let (ns, name) = (gateway.namespace().unwrap_or_default(), gateway.name_any());
    let number = |text: &str| text.parse::<f64>().unwrap_or(0.0);
    if let Some(old) = before
        && now.is_none_or(|n| n.currency != old.currency)
    {
        ctx.metrics.forget_budget(&ns, &name, &old.currency);
    }
    if let Some(spend) = now {
        let spent = number(&spend.spent) + number(&spend.committed);
        ctx.metrics
            .budget(&ns, &name, &spend.currency, spent, number(&spend.budget));
    }
}

/// Requeues with per-object exponential backoff.
pub fn error_policy(gateway: Arc<BatchGateway>, error: &Error, ctx: Arc<Context>) -> Requeue {
    let key = format!(
        "gateway/{}/{}",
        gateway.namespace().unwrap_or_default(),
        gateway.name_any()
    );
    tracing::warn!(gateway = %key, error = %error, "reconcile failed");
    Requeue::requeue(ctx.backoff(&key))
}

/// Ready (status, reason, message) and, when the call told, whether `/v1/batches` exists.
async fn probe(gateway: &BatchGateway, ctx: &Context) -> Result<(bool, &'static str, String, Option<bool>), Error> {
    let client = match cluster_io::client_for_gateway(ctx, gateway, cluster_io::KeyRead::Now).await? {
        Ok((client, _)) => client,
        Err(why) => return Ok((false, gateway_reasons::MISCONFIGURED, why.to_string(), None)),
    };
    Ok(match steps::probe_batch_api(&client).await {
        Ok(batch_api) => {
            let message = match batch_api {
                true => "the gateway answers and accepts the key",
                false => "the gateway answers; /v1/batches answered 404 or 405 (no batch API)",
            };
            (true, gateway_reasons::REACHABLE, message.into(), Some(batch_api))
        }
        Err(e) if e.is_unauthorized() => (false, gateway_reasons::UNAUTHORIZED, e.to_string(), None),
        Err(e) if e.is_misconfiguration() => (false, gateway_reasons::MISCONFIGURED, e.to_string(), None),
        Err(e) => (false, gateway_reasons::UNAVAILABLE, e.to_string(), None),
    })
}

/// Keeps what the probe found, with its time only when it changed (no needless status writes).
fn record_capabilities(status: &mut BatchGatewayStatus, batch_api: bool, generation: Option<i64>) {
    let now = Timestamp::now();
    if status.capabilities.as_ref().is_none_or(|c| c.batch_api != batch_api) {
        status.capabilities = Some(GatewayCapabilities {
            batch_api,
            probed_at: Some(Time(now)),
        });
    }
    let (reason, message) = match batch_api {
        true => (
            BATCH_API_FOUND,
            "/v1/batches answers: Auto runs Batches through the batch API",
        ),
        false => (
            BATCH_API_NOT_FOUND,
            "/v1/batches answered 404 or 405: Auto sends each request directly",
        ),
    };
    status
        .conditions
        .set_condition(BATCH_API, batch_api, reason, message, generation, now);
}

async fn write_status(gateway: &BatchGateway, status: &BatchGatewayStatus, ctx: &Context) -> Result<(), Error> {
    if gateway.status.as_ref() == Some(status) {
        return Ok(());
    }
    let api = Api::<BatchGateway>::namespaced(ctx.client.clone(), &gateway.namespace().unwrap_or_default());
    let patch = json!({"apiVersion": "llmbatch.io/v1alpha1", "kind": "BatchGateway", "status": status});
    api.patch_status(
        &gateway.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}
