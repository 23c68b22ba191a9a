//! Delivering what a Batch or BatchSweep owes its webhook ([`crate::notify`]) from its
//! reconcile: one attempt per due event, each recorded in `status.notifications`. The object's
//! phase never waits for it; its TTL deletion does (an event is not lost to the deletion).

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};

use super::Context;
use super::cluster_io::{self, InputError};
use crate::api::{BatchGateway, DeliveryState, NotificationStatus, Notify};
use crate::notify::sign::SigningKey;
use crate::notify::{self, DeliveryError, Event, MAX_ATTEMPTS};

/// The delivery records after this reconcile's attempts, and when the next attempt is due.
pub struct Deliveries {
    pub entries: Vec<NotificationStatus>,
    pub wake: Option<Duration>,
}

/// The webhook an object reports to: its own, else its gateway's (unless `inherits` is false:
/// a sweep's children leave the telling to the sweep).
pub fn target<'a>(own: Option<&'a Notify>, gateway: Option<&'a BatchGateway>, inherits: bool) -> Option<&'a Notify> {
    own.or_else(|| gateway.filter(|_| inherits).and_then(|g| g.spec.notify.as_ref()))
}

/// Attempts every owed event that is due; `kind` labels the metric (`batch`, `batchsweep`).
/// Where this process attempted an event since the status it was given was read, it goes on
/// from its own record.
pub async fn deliver<K>(
    ctx: &Context,
    kind: &'static str,
    object: &K,
    target: &Notify,
    owed: Vec<Event>,
    entries: &[NotificationStatus],
) -> Deliveries
where
    K: Resource<DynamicType = ()>,
{
    let now = Timestamp::now();
    let mut entries = entries.to_vec();
    let mut wake: Option<Duration> = None;
    let mut soonest = |due: Timestamp| {
        let wait = now.duration_until(due).try_into().unwrap_or(Duration::ZERO);
        wake = Some(wake.map_or(wait, |w| w.min(wait)));
    };
    for event in owed {
        let at = latest_record(ctx, &mut entries, &event);
        let entry = at.map(|i| &entries[i]);
        let Some(due) = notify::next_attempt(entry, now) else {
            continue;
        };
        if due > now {
            soonest(due);
            continue;
        }
        let result = attempt(ctx, object, target, &event, now).await;
        let next = notify::attempted(entry, &event, &result, now);
        ctx.metrics.notification(kind, result_label(&next));
        match next.state {
            DeliveryState::Pending => soonest(notify::next_attempt(Some(&next), now).unwrap_or(now)),
            DeliveryState::Failed => give_up(ctx, object, &next).await,
            DeliveryState::Delivered => {}
        }
        ctx.remember_notification(&next);
        record(&mut entries, at, next);
    }
    Deliveries { entries, wake }
}

/// Where `event`'s record is in `entries`, once this process's own record has replaced the
/// status's where it is newer (a cache that does not show the last attempt yet).
fn latest_record(ctx: &Context, entries: &mut Vec<NotificationStatus>, event: &Event) -> Option<usize> {
    let at = entries.iter().position(|e| e.type_ == event.type_);
    match ctx.notification(&event.id) {
        Some(known) if at.is_none_or(|i| known.attempts > entries[i].attempts) => {
            record(entries, at, known);
            entries.iter().position(|e| e.type_ == event.type_)
        }
        _ => at,
    }
}

fn record(entries: &mut Vec<NotificationStatus>, at: Option<usize>, entry: NotificationStatus) {
    match at {
        Some(i) => entries[i] = entry,
        None => entries.push(entry),
    }
}

async fn attempt<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    object: &K,
    target: &Notify,
    event: &Event,
    now: Timestamp,
) -> Result<(), DeliveryError> {
    let key = match &target.signing_secret_ref {
        Some(r) => Some(signing_key(ctx, &object.namespace().unwrap_or_default(), r).await?),
        None => None,
    };
    ctx.webhook.send(&target.url, event, key.as_ref(), now).await
}

/// The signing key from its Secret (read at each attempt: a rotated key is used at once).
async fn signing_key(ctx: &Context, ns: &str, r: &crate::api::KeyRef) -> Result<SigningKey, DeliveryError> {
    let why = |e: String| DeliveryError::Key(format!("signingSecretRef: {e}"));
    let secret = match cluster_io::get::<Secret>(&ctx.client, ns, &r.name, "Secret").await {
        Ok(secret) => secret,
        Err(InputError::NotFound(e) | InputError::Invalid(e)) => return Err(why(e)),
        Err(InputError::Api(e)) => return Err(why(format!("reading Secret {ns}/{}: {e}", r.name))),
    };
    let value = cluster_io::secret_value(&secret, &r.key)
        .ok_or_else(|| why(format!("Secret {ns}/{} has no key {:?}", r.name, r.key)))?;
    SigningKey::from_secret(&value).map_err(|e| why(format!("Secret {ns}/{} key {:?}: {e}", r.name, r.key)))
}

async fn give_up<K: Resource<DynamicType = ()>>(ctx: &Context, object: &K, entry: &NotificationStatus) {
    let note = format!(
        "gave up delivering {} after {MAX_ATTEMPTS} attempts: {}",
        entry.type_,
        entry.last_error.as_deref().unwrap_or_default()
    );
    ctx.publish(object, EventType::Warning, "NotificationFailed", &note)
        .await;
}

fn result_label(entry: &NotificationStatus) -> &'static str {
    match entry.state {
        DeliveryState::Delivered => "delivered",
        DeliveryState::Pending => "failed",
        DeliveryState::Failed => "given_up",
    }
}
