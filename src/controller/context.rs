//! What every reconcile shares: the client, the Event reporter, metrics, per-object backoff and the
//! time of each Batch's last poll (so status writes that re-trigger a reconcile never poll
//! early). Losing these on restart costs at most one early poll.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use kube::Client;
use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use super::MANAGER;
use super::caches::{Caches, Waiters};
use super::direct_progress::{DEFAULT_PROGRESS_PORT, ProgressReader};
use crate::api::{Batch, BatchSweep};
use crate::engine::PollingPolicy;
use crate::gateway::{GatewayClient, GatewayError, Observer};
use crate::net::AddressPolicy;
use crate::telemetry::{Health, Metrics};

/// Shared by all reconciles.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    /// The image of the Jobs for PVC output and direct mode (`--job-image`); without it such
    /// Batches are refused with a message saying so.
    pub job_image: Option<String>,
    /// Reads a running direct-mode Job's counts from its pod (`--direct-progress-port`).
    pub direct_progress: ProgressReader,
    /// Where gateways and object stores may be (`--deny-cidr`, `--allow-cidr`); the Jobs get
    /// the same policy.
    pub addresses: Arc<AddressPolicy>,
    /// Sends `spec.notify` events, to addresses `addresses` allows.
    pub webhook: crate::notify::Webhook,
    /// Batches waiting for a gateway, an input or room (woken by the watches).
    pub batch_waiters: Waiters<Batch>,
    /// Sweeps waiting for a gateway or an input.
    pub sweep_waiters: Waiters<BatchSweep>,
    /// Attempts this process started: what they cannot have created yet is not searched for.
    pub fresh_attempts: crate::steps::FreshAttempts,
    /// Object-store clients, one per bucket and version of the Secret holding its keys.
    pub object_stores: crate::io::object_storage::OpenedStores,
    /// The time schedules are reconciled at (a test sets it).
    pub clock: super::Clock,
    /// The latest scheduled time each schedule created a run for in this process (the cache
    /// may not show the run yet).
    scheduled: Mutex<HashMap<String, k8s_openapi::jiff::Timestamp>>,
    caches: RwLock<Arc<Caches>>,
    sweep_writes: Mutex<HashMap<String, super::sweep::Written>>,
    /// When each sweep's figures were last written (only those written within the interval).
    figures_written: LastTimes,
    backoff: Backoff,
    gateways: Mutex<HashMap<String, KnownGateway>>,
    ledgers: Mutex<HashMap<String, Arc<tokio::sync::Mutex<super::admission::Ledger>>>>,
    polled: LastTimes,
    /// Batches whose finish was counted in the metrics (a stale cache can replay the last step).
    finished: Mutex<HashSet<String>>,
    /// Events published per Batch (reason and note), so a replayed step does not repeat one.
    said: Mutex<HashMap<String, HashSet<(String, String)>>>,
    /// The latest delivery record of each webhook event this process attempted, by event id: a
    /// reconcile on a cache that does not show the attempt yet goes on from it instead of
    /// sending again at once.
    notifications: Mutex<HashMap<String, crate::api::NotificationStatus>>,
    reconciles: AtomicU64,
}

/// Events remembered per object by [`Context::first_said`].
const MAX_SAID: usize = 32;
/// Webhook delivery records remembered by [`Context::remember_notification`].
const MAX_NOTIFICATIONS: usize = 4096;

/// How long a gateway's key, once read from its Secret, is used without reading it again
/// (a key the gateway refuses is read again at once).
const KEY_FRESH_FOR: Duration = Duration::from_secs(60);

/// A gateway client built from one generation of its BatchGateway and the key read at `read`
/// (`None`: to be read again).
struct KnownGateway {
    spec: String,
    fingerprint: String,
    read: Option<Instant>,
    client: GatewayClient,
    polling: PollingPolicy,
}

const BACKOFF_BASE: Duration = Duration::from_secs(2);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

impl Context {
    pub fn new(client: Client) -> Self {
        Self::with_telemetry(client, Arc::default(), Arc::default())
    }

    /// A context reporting to these metrics and health (the ones the HTTP endpoints serve).
    pub fn with_telemetry(client: Client, metrics: Arc<Metrics>, health: Arc<Health>) -> Self {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            health,
            job_image: None,
            direct_progress: ProgressReader::new(DEFAULT_PROGRESS_PORT),
            addresses: Arc::new(AddressPolicy::cluster()),
            webhook: crate::notify::Webhook::new(Arc::new(AddressPolicy::cluster())),
            batch_waiters: Waiters::default(),
            sweep_waiters: Waiters::default(),
            fresh_attempts: Default::default(),
            object_stores: Default::default(),
            clock: super::Clock::system(),
            scheduled: Mutex::default(),
            caches: RwLock::default(),
            sweep_writes: Mutex::default(),
            figures_written: LastTimes::default(),
            backoff: Backoff::default(),
            gateways: Mutex::default(),
            ledgers: Mutex::default(),
            polled: LastTimes::default(),
            finished: Mutex::default(),
            said: Mutex::default(),
            notifications: Mutex::default(),
            reconciles: AtomicU64::new(0),
        }
    }

    /// This context, starting Jobs with `image`.
    pub fn with_job_image(mut self, image: Option<String>) -> Self {
        self.job_image = image.filter(|i| !i.is_empty());
        self
    }

    /// This context, connecting only where `addresses` allows.
    pub fn with_addresses(mut self, addresses: AddressPolicy) -> Self {
        self.addresses = Arc::new(addresses);
        self.webhook = crate::notify::Webhook::new(self.addresses.clone());
        self
    }

    /// This context, telling direct-mode Jobs to serve their counts on `port` (and reading them there).
    pub fn with_direct_progress_port(mut self, port: u16) -> Self {
        self.direct_progress = ProgressReader::new(port);
        self
    }

    /// This context, reading the time from `clock` for schedules.
    pub fn with_clock(mut self, clock: super::Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Remembers that schedule `key` created the run of `time`.
    pub fn scheduled(&self, key: &str, time: k8s_openapi::jiff::Timestamp) {
        let mut scheduled = self.scheduled.lock().expect("scheduled lock");
        let latest = scheduled.entry(key.to_string()).or_insert(time);
        *latest = (*latest).max(time);
    }

    /// The latest scheduled time schedule `key` created a run for in this process.
    pub fn last_scheduled(&self, key: &str) -> Option<k8s_openapi::jiff::Timestamp> {
        self.scheduled.lock().expect("scheduled lock").get(key).copied()
    }

    /// Counts a reconcile (any kind).
    pub fn reconciled(&self) {
        self.reconciles.fetch_add(1, Ordering::Relaxed);
    }

    /// Reconciles so far.
    pub fn reconciles(&self) -> u64 {
        self.reconciles.load(Ordering::Relaxed)
    }

    /// The observer every gateway client gets, so each request is counted.
    pub fn gateway_observer(&self) -> Observer {
        Observer(Arc::new(self.metrics.gateway_observer()))
    }

    /// The next retry delay for an object that failed again.
    pub fn backoff(&self, key: &str) -> Duration {
        self.backoff.next(key)
    }

    /// Forgets an object's failures after a successful reconcile.
    pub fn reset_backoff(&self, key: &str) {
        self.backoff.reset(key);
    }

    /// The client of gateway `name` built for its spec `spec` (uid and generation) when its key
    /// was read recently enough, so most reconciles need no read of the Secret.
    pub fn recent_gateway(&self, name: &str, spec: &str) -> Option<(GatewayClient, PollingPolicy)> {
        let gateways = self.gateways.lock().expect("gateway lock");
        let known = gateways.get(name)?;
        (known.spec == spec && known.read.is_some_and(|at| at.elapsed() < KEY_FRESH_FOR))
            .then(|| (known.client.clone(), known.polling))
    }

    /// The client of gateway `name` for a key just read: the one already built while the URL,
    /// headers and key (`fingerprint`) hold (each client holds a connection pool), else `build`.
    pub fn gateway_client(
        &self,
        name: &str,
        spec: &str,
        fingerprint: &str,
        polling: PollingPolicy,
        build: impl FnOnce() -> Result<GatewayClient, GatewayError>,
    ) -> Result<GatewayClient, GatewayError> {
        let mut gateways = self.gateways.lock().expect("gateway lock");
        let client = match gateways.get(name) {
            Some(known) if known.fingerprint == fingerprint => known.client.clone(),
            _ => build()?,
        };
        let known = KnownGateway {
            spec: spec.to_string(),
            fingerprint: fingerprint.to_string(),
            read: Some(Instant::now()),
            client: client.clone(),
            polling,
        };
        gateways.insert(name.to_string(), known);
        Ok(client)
    }

    /// The key of gateway `name` is read again before its next use (the gateway refused it).
    pub fn reread_gateway_key(&self, name: &str) {
        if let Some(known) = self.gateways.lock().expect("gateway lock").get_mut(name) {
            known.read = None;
        }
    }

    /// The stores of the current leadership term.
    pub fn caches(&self) -> Arc<Caches> {
        self.caches.read().expect("caches lock").clone()
    }

    /// The stores a new leadership term reads.
    pub fn set_caches(&self, caches: Caches) {
        *self.caches.write().expect("caches lock") = Arc::new(caches);
    }

    /// The admission ledger of gateway `key` (`namespace/name`); holding its lock serialises
    /// admissions on that gateway.
    pub fn admission_ledger(&self, key: &str) -> Arc<tokio::sync::Mutex<super::admission::Ledger>> {
        self.ledgers
            .lock()
            .expect("ledger lock")
            .entry(key.to_string())
            .or_default()
            .clone()
    }

    /// What this process wrote about the children of sweep `key` that the cache may not show.
    /// An entry that becomes empty is dropped, so settled sweeps leave nothing behind.
    pub fn sweep_writes<T>(&self, key: &str, f: impl FnOnce(&mut super::sweep::Written) -> T) -> T {
        let mut all = self.sweep_writes.lock().expect("sweep lock");
        let written = all.entry(key.to_string()).or_default();
        let out = f(written);
        if written.is_empty() {
            all.remove(key);
        }
        out
    }

    /// How long until sweep `key`'s figures may be written again, at most every `interval`
    /// (zero: now).
    pub fn figures_wait(&self, key: &str, interval: Duration) -> Duration {
        self.figures_written.wait(key, interval)
    }

    /// Records a write of sweep `key`'s status; writes older than `interval` are forgotten,
    /// so only sweeps written within it are kept.
    pub fn figures_written(&self, key: &str, interval: Duration) {
        self.figures_written.forget_older_than(interval);
        self.figures_written.record(key);
    }

    /// How long until a poll of this object is due (zero when due now).
    pub fn poll_wait(&self, key: &str, interval: Duration) -> Duration {
        self.polled.wait(key, interval)
    }

    /// Records a poll of this object.
    pub fn polled(&self, key: &str) {
        self.polled.record(key);
    }

    /// True the first time this object's finish is reported (so metrics count it once).
    pub fn first_finish(&self, key: &str) -> bool {
        self.finished.lock().expect("finished lock").insert(key.to_string())
    }

    /// True the first time this Event (reason and note), or annotation (key and value), is told
    /// about `key` in this process: a step replayed on a stale cache, or retried after its
    /// status write failed, says nothing new. At most [`MAX_SAID`] per object are remembered.
    pub fn first_said(&self, key: &str, reason: &str, note: &str) -> bool {
        let mut said = self.said.lock().expect("said lock");
        let said = said.entry(key.to_string()).or_default();
        if said.len() >= MAX_SAID {
            said.clear();
        }
        said.insert((reason.to_string(), note.to_string()))
    }

    /// Remembers the record of an attempt this process made (at most [`MAX_NOTIFICATIONS`]
    /// are kept: an event forgotten is at worst sent again, with the same id).
    pub fn remember_notification(&self, entry: &crate::api::NotificationStatus) {
        let mut known = self.notifications.lock().expect("notifications lock");
        if known.len() >= MAX_NOTIFICATIONS {
            known.clear();
        }
        known.insert(entry.id.clone(), entry.clone());
    }

    /// The latest record of event `id` this process wrote, if any.
    pub fn notification(&self, id: &str) -> Option<crate::api::NotificationStatus> {
        self.notifications.lock().expect("notifications lock").get(id).cloned()
    }

    /// Whether [`Context::first_said`] was told this about `key` already.
    pub fn said(&self, key: &str, reason: &str, note: &str) -> bool {
        let said = self.said.lock().expect("said lock");
        said.get(key)
            .is_some_and(|said| said.contains(&(reason.to_string(), note.to_string())))
    }

    /// Drops what is kept for a deleted object.
    pub fn forget(&self, key: &str) {
        self.scheduled.lock().expect("scheduled lock").remove(key);
        self.said.lock().expect("said lock").remove(key);
        self.reset_backoff(key);
        self.polled.forget(key);
        self.finished.lock().expect("finished lock").remove(key);
    }

    /// Publishes an Event about `object` (note cut to 1,024 characters); a failure to publish is
    /// logged, never a reconcile error.
    pub async fn publish<K: Resource<DynamicType = ()>>(&self, object: &K, type_: EventType, reason: &str, note: &str) {
        let event = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note.chars().take(1024).collect()),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &object.object_ref(&())).await {
            tracing::warn!(error = %e, "cannot publish an Event");
        }
    }
}

/// Per-object exponential backoff (kube-runtime has none built in): 2 s, 4 s, ... up to 5 min,
/// reset on success.
/// When something last happened to each object (a poll, a status write), to space the next.
#[derive(Default)]
struct LastTimes(Mutex<HashMap<String, Instant>>);

impl LastTimes {
    /// How long until `interval` has passed since `key`'s last time (zero: now, or never).
    fn wait(&self, key: &str, interval: Duration) -> Duration {
        let times = self.0.lock().expect("times lock");
        times
            .get(key)
            .map_or(Duration::ZERO, |at| interval.saturating_sub(at.elapsed()))
    }

    fn record(&self, key: &str) {
        self.0
            .lock()
            .expect("times lock")
            .insert(key.to_string(), Instant::now());
    }

    fn forget(&self, key: &str) {
        self.0.lock().expect("times lock").remove(key);
    }

    fn forget_older_than(&self, age: Duration) {
        self.0.lock().expect("times lock").retain(|_, at| at.elapsed() < age);
    }
}

#[derive(Default)]
struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    fn next(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().expect("backoff lock");
        let n = failures.entry(key.to_string()).or_insert(0);
        *n = (*n + 1).min(16);
        crate::backoff::Backoff::new(BACKOFF_BASE, BACKOFF_MAX).delay(*n)
    }

    fn reset(&self, key: &str) {
        self.failures.lock().expect("backoff lock").remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_per_object_caps_and_resets() {
        let backoff = Backoff::default();
        let delays: Vec<u64> = (0..10).map(|_| backoff.next("a").as_secs()).collect();
        assert_eq!(delays, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(backoff.next("b").as_secs(), 2, "objects back off independently");
        backoff.reset("a");
        assert_eq!(backoff.next("a").as_secs(), 2);
    }

    #[tokio::test]
    async fn an_event_is_said_once_per_object_until_it_is_forgotten() {
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let ctx = Context::new(Client::try_from(config).unwrap());
        assert!(ctx.first_said("ns/a", "Succeeded", "20 of 20"));
        assert!(
            !ctx.first_said("ns/a", "Succeeded", "20 of 20"),
            "a replayed step repeats nothing"
        );
        assert!(
            ctx.first_said("ns/a", "GatewayUnavailable", "503"),
            "another Event is new"
        );
        assert!(ctx.first_said("ns/b", "Succeeded", "20 of 20"), "per object");
        ctx.forget("ns/a");
        assert!(ctx.first_said("ns/a", "Succeeded", "20 of 20"));
    }
}
