//! What the controller knows without asking the API server, and who waits for what.
//!
//! Each of our kinds is watched once per watched namespace, into one reflector store that
//! every reconciler reads: a Batch's gateway, admission's view of a gateway's Batches, a
//! sweep's children. Nothing on the reconcile path LISTs or GETs our own kinds.
//!
//! A Batch or sweep that cannot go on until something else appears (its BatchGateway, its input
//! ConfigMap, room on its gateway) registers as a waiter; the watch that sees that object change
//! wakes it at once, instead of the waiter polling for it.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use futures::channel::mpsc::UnboundedSender;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::api::{Batch, BatchGateway, BatchPhase, BatchSweep};

/// The stores of one leadership term: one per kind and watched namespace.
#[derive(Clone)]
pub struct Caches {
    batches: Vec<Store<Batch>>,
    gateways: Vec<Store<BatchGateway>>,
    sweeps: Vec<Store<BatchSweep>>,
    synced: tokio::sync::watch::Sender<bool>,
}

impl Default for Caches {
    fn default() -> Self {
        Self {
            batches: Vec::new(),
            gateways: Vec::new(),
            sweeps: Vec::new(),
            synced: tokio::sync::watch::Sender::new(false),
        }
    }
}

impl Caches {
    pub fn add(&mut self, batches: Store<Batch>, gateways: Store<BatchGateway>, sweeps: Store<BatchSweep>) {
        self.batches.push(batches);
        self.gateways.push(gateways);
        self.sweeps.push(sweeps);
    }

    /// Waits until every store has listed its objects, then lets [`Caches::ready`] through.
    /// The only waiter on the stores themselves: a store's readiness wakes one waiter at a
    /// time, so reconciles wait on this instead.
    pub async fn sync(&self) {
        for store in &self.batches {
            let _ = store.wait_until_ready().await;
        }
        for store in &self.gateways {
            let _ = store.wait_until_ready().await;
        }
        for store in &self.sweeps {
            let _ = store.wait_until_ready().await;
        }
        self.synced.send_replace(true);
    }

    /// Resolves once [`Caches::sync`] has (a reconcile before that would take an object not
    /// listed yet for one that does not exist).
    pub async fn ready(&self) {
        let _ = self.synced.subscribe().wait_for(|synced| *synced).await;
    }

    pub fn batch_stores(&self) -> &[Store<Batch>] {
        &self.batches
    }

    pub fn gateway(&self, ns: &str, name: &str) -> Option<std::sync::Arc<BatchGateway>> {
        let key = ObjectRef::new(name).within(ns);
        self.gateways.iter().find_map(|store| store.get(&key))
    }

    /// The BatchSweeps of namespace `ns` that `keep` selects.
    pub fn sweeps_where(&self, ns: &str, keep: impl Fn(&BatchSweep) -> bool) -> Vec<std::sync::Arc<BatchSweep>> {
        self.sweeps
            .iter()
            .flat_map(|store| store.state())
            .filter(|s| s.namespace().as_deref() == Some(ns) && keep(s))
            .collect()
    }

    /// The Batches of namespace `ns` that `keep` selects.
    pub fn batches_where(&self, ns: &str, keep: impl Fn(&Batch) -> bool) -> Vec<std::sync::Arc<Batch>> {
        self.batches
            .iter()
            .flat_map(|store| store.state())
            .filter(|b| b.namespace().as_deref() == Some(ns) && keep(b))
            .collect()
    }
}

/// What a waiter waits for (all in the waiter's namespace).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Awaited {
    /// A BatchGateway to exist or change.
    Gateway { ns: String, name: String },
    /// An input ConfigMap to exist or change.
    ConfigMap { ns: String, name: String },
    /// A Batch of this gateway to finish (room under its limits).
    Room { ns: String, gateway: String },
}

impl Awaited {
    pub fn gateway_of(gateway: &BatchGateway) -> Self {
        Awaited::Gateway {
            ns: gateway.namespace().unwrap_or_default(),
            name: gateway.name_any(),
        }
    }

    /// Room on the gateway of `batch`, when `batch` has just finished.
    pub fn room_freed_by(batch: &Batch) -> Option<Self> {
        let finished = batch
            .status
            .as_ref()
            .and_then(|s| s.phase)
            .is_some_and(BatchPhase::is_terminal);
        finished.then(|| Awaited::Room {
            ns: batch.namespace().unwrap_or_default(),
            gateway: batch.spec.gateway_ref.name.clone(),
        })
    }
}

/// Objects of kind `K` waiting, by what they wait for.
pub struct Waiters<K: kube::Resource<DynamicType = ()>> {
    waiting: Mutex<HashMap<Awaited, HashSet<ObjectRef<K>>>>,
}

impl<K: kube::Resource<DynamicType = ()>> Default for Waiters<K> {
    fn default() -> Self {
        Self {
            waiting: Mutex::default(),
        }
    }
}

impl<K: kube::Resource<DynamicType = ()>> Waiters<K> {
    /// `object` waits for `what`, until the next change of it.
    pub fn wait(&self, what: Awaited, object: &K) {
        let waiter = ObjectRef::from_obj(object);
        self.waiting
            .lock()
            .expect("waiters lock")
            .entry(what)
            .or_default()
            .insert(waiter);
    }

    /// Wakes everything waiting for `what` (each waits again if it still has to).
    pub fn wake(&self, what: &Awaited, wake: &UnboundedSender<ObjectRef<K>>) {
        let woken = self.waiting.lock().expect("waiters lock").remove(what);
        for waiter in woken.into_iter().flatten() {
            let _ = wake.unbounded_send(waiter);
        }
    }

    /// Forgets a deleted object.
    pub fn forget(&self, object: &K) {
        let waiter = ObjectRef::from_obj(object);
        self.waiting.lock().expect("waiters lock").retain(|_, waiters| {
            waiters.remove(&waiter);
            !waiters.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn batch(name: &str) -> Batch {
        let mut batch: Batch = serde_json::from_value(serde_json::json!({
            "apiVersion": "llmbatch.io/v1alpha1", "kind": "Batch",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"gatewayRef": {"name": "gw"}, "endpoint": "/v1/chat/completions",
                     "input": {"requests": []}}
        }))
        .unwrap();
        batch.metadata.namespace = Some("ns".into());
        batch
    }

    #[tokio::test]
    async fn a_change_wakes_its_waiters_once() {
        let waiters = Waiters::<Batch>::default();
        let gateway = Awaited::Gateway {
            ns: "ns".into(),
            name: "gw".into(),
        };
        let (a, b) = (batch("a"), batch("b"));
        waiters.wait(gateway.clone(), &a);
        waiters.wait(gateway.clone(), &a);
        waiters.wait(gateway.clone(), &b);
        waiters.forget(&b);
        let (tx, rx) = futures::channel::mpsc::unbounded();
        waiters.wake(&gateway, &tx);
        waiters.wake(&gateway, &tx);
        drop(tx);
        let woken: Vec<String> = rx.map(|r| r.name).collect().await;
        assert_eq!(woken, ["a"]);
    }

    #[test]
    fn only_a_finished_batch_frees_room() {
        let mut b = batch("a");
        assert_eq!(Awaited::room_freed_by(&b), None);
        b.status = Some(crate::api::BatchStatus {
            phase: Some(BatchPhase::Succeeded),
            ..Default::default()
        });
        assert_eq!(
            Awaited::room_freed_by(&b),
            Some(Awaited::Room {
                ns: "ns".into(),
                gateway: "gw".into()
            })
        );
    }
}
