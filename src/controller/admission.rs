//! Admission in a cluster: whether a validated Batch may start under its gateway's
//! `maxActiveBatches` and `tokensPerHour` (engine::admission decides). The Batches of the
//! gateway are read from the cache, and a per-gateway lock with a ledger of this process's
//! recent admissions covers the moment between an admission and the cache showing its status
//! write, so two reconciles never both take the last slot.

use std::collections::HashMap;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::caches::Caches;
use super::{Context, Error};
use crate::api::{Batch, BatchGateway, BatchStatus};
use crate::engine::Outcome;
use crate::engine::admission::{self, Budget, Entry, EntryState, Verdict};

/// Admissions this process made, per gateway (`namespace/name`): batch key -> (tokens, when).
#[derive(Default)]
pub struct Ledger {
    admitted: HashMap<String, (u64, Timestamp)>,
}

/// The verdict for `batch` (whose current status is `status`) on `gateway`.
pub async fn admit(
    batch: &Batch,
    status: &BatchStatus,
    gateway: &BatchGateway,
    ctx: &Context,
) -> Result<Outcome, Error> {
    let ns = batch.namespace().unwrap_or_default();
    let budget = Budget::of(&gateway.spec);
    if let Some(why) = admission::held_back(status, Timestamp::now()) {
        return Ok(Outcome::AwaitingBudget { message: why });
    }
    if budget.is_unlimited() {
        return Ok(Outcome::Admitted);
    }
    let key = key(batch);
    let lock = ctx.admission_ledger(&format!("{ns}/{}", gateway.name_any()));
    let mut ledger = lock.lock().await;
    let now = Timestamp::now();
    let mut entries = gateway_entries(&ctx.caches(), gateway);
    if let Some(own) = entries.iter_mut().find(|e| e.key == key) {
        *own = Entry::of(key.clone(), own.created, status);
    }
    ledger.merge_into(&mut entries, now);
    Ok(match admission::judge(&key, &entries, &budget, now) {
        Verdict::Admit => {
            let tokens = entries.iter().find(|e| e.key == key).map_or(0, |e| e.tokens);
            ledger.admitted.insert(key, (tokens, now));
            Outcome::Admitted
        }
        Verdict::Wait(why) => Outcome::AwaitingBudget {
            message: format!("waiting for room on BatchGateway {}: {why}", gateway.name_any()),
        },
        Verdict::OverBudget(over) => Outcome::OverBudget(over),
        Verdict::Never(why) => Outcome::SpecInvalid { message: why },
    })
}

impl Ledger {
    /// Admissions the cache may not show yet count as admitted; old ones are dropped.
    fn merge_into(&mut self, entries: &mut [Entry], now: Timestamp) {
        self.admitted
            .retain(|_, (_, at)| now.duration_since(*at).unsigned_abs() < admission::WINDOW);
        for entry in entries.iter_mut() {
            if let Some((_, at)) = self.admitted.get(&entry.key)
                && entry.admitted.is_none()
            {
                entry.admitted = Some(*at);
                if entry.state == EntryState::Waiting {
                    entry.state = EntryState::Active;
                }
            }
        }
    }
}

/// Every Batch of `gateway` (in its namespace), as admission sees it.
pub fn gateway_entries(caches: &Caches, gateway: &BatchGateway) -> Vec<Entry> {
    let ns = gateway.namespace().unwrap_or_default();
    let name = gateway.name_any();
    caches
        .batches_where(&ns, |b| b.spec.gateway_ref.name == name)
        .iter()
        .map(|b| {
            let created = b.creation_timestamp().map_or(Timestamp::UNIX_EPOCH, |t| t.0);
            Entry::of(key(b), created, &b.status.clone().unwrap_or_default())
        })
        .collect()
}

fn key(batch: &Batch) -> String {
    format!("{}/{}", batch.namespace().unwrap_or_default(), batch.name_any())
}
