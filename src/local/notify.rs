//! `run -f`'s side of `spec.notify`: once a Batch is finished its event is sent, a few attempts
//! close together (the run is waiting for it), each recorded in the status; a rerun tries
//! again where a run could not deliver it, up to the controller's limit of attempts.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use super::resolve::LocalWebhook;
use crate::api::{Batch, BatchStatus, DeliveryState};
use crate::net::AddressPolicy;
use crate::notify::sign::SigningKey;
use crate::notify::{self, MAX_ATTEMPTS, Webhook};

/// Attempts one run makes per event, and the pause before the second (doubled before the third).
const ATTEMPTS_PER_RUN: u32 = 3;
const FIRST_PAUSE: Duration = Duration::from_secs(1);

/// Delivers the events the finished `batch` owes (its end; `run -f` never holds a Batch for
/// budget) and records each attempt in `status`; returns what to tell the user.
pub async fn deliver(
    webhook: &LocalWebhook,
    batch: &Batch,
    status: &mut BatchStatus,
    cancel: &CancellationToken,
) -> Vec<String> {
    let sender = Webhook::new(Arc::new(AddressPolicy::local()));
    let key = webhook.key.as_deref().and_then(|k| SigningKey::from_secret(k).ok());
    let host = webhook.notify.host();
    let mut said = Vec::new();
    let owed = notify::batch_events(batch, status);
    for event in owed.into_iter().filter(|e| !e.type_.ends_with(".budget.held")) {
        for attempt in 0..ATTEMPTS_PER_RUN {
            let at = status.notifications.iter().position(|n| n.type_ == event.type_);
            let entry = at.map(|i| &status.notifications[i]);
            if notify::next_attempt(entry, Timestamp::now()).is_none() {
                break;
            }
            let now = Timestamp::now();
            let result = sender.send(&webhook.notify.url, &event, key.as_ref(), now).await;
            let next = notify::attempted(entry, &event, &result, now);
            let state = next.state;
            match at {
                Some(i) => status.notifications[i] = next,
                None => status.notifications.push(next),
            }
            match (state, result) {
                (DeliveryState::Delivered, _) => said.push(format!("notified {host} ({})", event.type_)),
                (DeliveryState::Failed, Err(e)) => {
                    said.push(format!("gave up notifying {host} after {MAX_ATTEMPTS} attempts: {e}"))
                }
                (_, Err(e)) if attempt + 1 == ATTEMPTS_PER_RUN => {
                    said.push(format!("could not notify {host}: {e}; a rerun tries again"))
                }
                _ => {
                    let pause = FIRST_PAUSE * 2u32.pow(attempt);
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    }
    said
}
