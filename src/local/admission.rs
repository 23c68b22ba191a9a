//! Admission in `run -f`: the Batches of one run share a board per gateway, so a gateway's
//! `maxActiveBatches`, `tokensPerHour` and money budget hold across them (engine::admission
//! decides; order of creation is the order of the files).

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::jiff::Timestamp;

use super::resolve::{GatewayTarget, Plan};
use crate::api::BatchStatus;
use crate::engine::Outcome;
use crate::engine::admission::{self, Budget, Entry, EntryState, Verdict};

/// Every Batch of the run, per gateway.
#[derive(Default)]
pub struct Board {
    gateways: Mutex<HashMap<String, Vec<Entry>>>,
}

impl Board {
    /// Records the status of the Batch planned `order`-th in the files.
    pub fn update(&self, plan: &Plan, order: usize, status: &BatchStatus) {
        let created = Timestamp::UNIX_EPOCH + std::time::Duration::from_secs(order as u64);
        let entry = Entry::of(plan.object(), created, status);
        let mut gateways = self.gateways.lock().expect("board lock");
        let entries = gateways.entry(gateway_key(plan)).or_default();
        match entries.iter_mut().find(|e| e.key == entry.key) {
            Some(existing) => *existing = entry,
            None => entries.push(entry),
        }
    }

    /// `plan`'s Batch stopped before its phase was final (held back by the money budget, or
    /// stopped for the gateway): this run waits for it no more, so it holds up nobody behind it
    /// in the queue, and once admitted (it may have reached the gateway) its estimate counts as
    /// spent from now rather than holding a slot.
    pub fn withdraw(&self, plan: &Plan) {
        let mut gateways = self.gateways.lock().expect("board lock");
        let key = plan.object();
        let entry = gateways
            .get_mut(&gateway_key(plan))
            .and_then(|entries| entries.iter_mut().find(|e| e.key == key));
        if let Some(entry) = entry {
            if entry.state == EntryState::Active {
                entry.finished.get_or_insert_with(Timestamp::now);
            }
            entry.state = EntryState::Idle;
        }
    }

    /// Whether `plan`'s Batch (with `status`) may start; on yes it counts as admitted at once.
    pub fn admit(&self, plan: &Plan, status: &BatchStatus) -> Outcome {
        let budget = match &plan.gateway {
            GatewayTarget::Remote(gw) => Budget::of(&gw.spec),
            GatewayTarget::Builtin { .. } => Budget::default(),
        };
        let now = Timestamp::now();
        if let Some(why) = admission::held_back(status, now) {
            return Outcome::AwaitingBudget { message: why };
        }
        if budget.is_unlimited() {
            return Outcome::Admitted;
        }
        let mut gateways = self.gateways.lock().expect("board lock");
        let entries = gateways.entry(gateway_key(plan)).or_default();
        let key = plan.object();
        match admission::judge(&key, entries, &budget, now) {
            Verdict::Admit => {
                if let Some(own) = entries.iter_mut().find(|e| e.key == key) {
                    (own.state, own.admitted) = (EntryState::Active, Some(now));
                }
                Outcome::Admitted
            }
            Verdict::Wait(why) => Outcome::AwaitingBudget {
                message: format!("waiting for room on the gateway: {why}"),
            },
            Verdict::OverBudget(over) => Outcome::OverBudget(over),
            Verdict::Never(why) => Outcome::SpecInvalid { message: why },
        }
    }
}

fn gateway_key(plan: &Plan) -> String {
    match &plan.gateway {
        GatewayTarget::Remote(gw) => format!("{}/{}", plan.namespace, gw.name),
        GatewayTarget::Builtin { .. } => "builtin".into(),
    }
}
