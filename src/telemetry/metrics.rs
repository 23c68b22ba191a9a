//! The controller's Prometheus metrics, all prefixed `llmbatch_`. Labels are bounded sets
//! (controller kind, error kind, gateway or object-store operation, HTTP status, phase, outcome,
//! direction); only the spend metrics ([`super::spend`]) name a namespace, a BatchGateway and a
//! model. Never a Batch's name, a URL or a secret. docs/operations.md documents each one (a test checks
//! it).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry, Unit};

use crate::gateway::{RequestObserver, RequestOutcome};
use crate::io::observed_store::{Direction, StoreObserver};

use super::spend::{ModelTokens, Spend};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReconcileLabels {
    controller: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReconcileErrorLabels {
    controller: &'static str,
    error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabels {
    controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GatewayLabels {
    operation: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    operation: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreBytesLabels {
    operation: &'static str,
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreOperationLabels {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NotificationLabels {
    kind: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ObjectLabels {
    object: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

/// Counts of Batches per phase, read at every scrape (from the controller's caches).
pub type PhaseCounts = Arc<dyn Fn() -> Vec<(String, i64)> + Send + Sync>;

fn histogram() -> Histogram {
    // 5 ms .. ~82 s
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

/// Every metric the controller exports, in one registry.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ReconcileLabels, Counter>,
    reconcile_errors: Family<ReconcileErrorLabels, Counter>,
    reconcile_duration: Family<ControllerLabels, Histogram, fn() -> Histogram>,
    in_flight: Family<ControllerLabels, Gauge>,
    gateway_requests: Family<GatewayLabels, Counter>,
    gateway_duration: Family<OperationLabels, Histogram, fn() -> Histogram>,
    store_requests: Family<StoreLabels, Counter>,
    store_bytes: Family<StoreBytesLabels, Counter>,
    store_duration: Family<StoreOperationLabels, Histogram, fn() -> Histogram>,
    request_lines: Family<OutcomeLabels, Counter>,
    spend: Spend,
    duplicates_prevented: Family<ObjectLabels, Counter>,
    notifications: Family<NotificationLabels, Counter>,
    leader: Gauge,
    phases: Arc<PhaseCollector>,
    stalled: Arc<StalledCollector>,
    catalogue: Vec<(String, &'static str)>,
}

const PREFIX: &str = "llmbatch";

/// Registers metrics and notes each one's exposed name and type.
pub(super) struct Catalogued<'a>(&'a mut Registry, &'a mut Vec<(String, &'static str)>);

impl Catalogued<'_> {
    pub(super) fn add(&mut self, name: &str, help: &str, unit: Option<Unit>, metric: impl Metric) {
        let kind = match metric.metric_type() {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            _ => "unknown",
        };
        let mut exposed = format!("{PREFIX}_{name}");
        if let Some(unit) = &unit {
            exposed = format!("{exposed}_{}", unit.as_str());
        }
        if kind == "counter" {
            exposed.push_str("_total");
        }
        self.1.push((exposed, kind));
        match unit {
            Some(unit) => self.0.register_with_unit(name, help, unit, metric),
            None => self.0.register(name, help, metric),
        }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered (and none observed yet).
    pub fn new() -> Self {
        let mut metrics = Self {
            reconciles: Family::default(),
            reconcile_errors: Family::default(),
            reconcile_duration: Family::new_with_constructor(histogram),
            in_flight: Family::default(),
            gateway_requests: Family::default(),
            gateway_duration: Family::new_with_constructor(histogram),
            store_requests: Family::default(),
            store_bytes: Family::default(),
            store_duration: Family::new_with_constructor(histogram),
            request_lines: Family::default(),
            spend: Spend::default(),
            duplicates_prevented: Family::default(),
            notifications: Family::default(),
            leader: Gauge::default(),
            phases: Arc::default(),
            stalled: Arc::default(),
            registry: Registry::with_prefix(PREFIX),
            catalogue: Vec::new(),
        };
        let r = &mut Catalogued(&mut metrics.registry, &mut metrics.catalogue);
        r.add(
            "reconcile",
            "Reconciles by controller (batch, batchsweep, batchgateway, batchschedule) and result (success, error)",
            None,
            metrics.reconciles.clone(),
        );
        r.add(
            "reconcile_errors",
            "Failed reconciles by controller and error kind (kube, finalizer, invalid, gateway)",
            None,
            metrics.reconcile_errors.clone(),
        );
        r.add(
            "reconcile_duration",
            "Time one reconcile took, by controller",
            Some(Unit::Seconds),
            metrics.reconcile_duration.clone(),
        );
        r.add(
            "reconciles_in_flight",
            "Reconciles running now, by controller (the Batch controller runs at most 32 at once per watched namespace)",
            None,
            metrics.in_flight.clone(),
        );
        r.add(
            "gateway_requests",
            "HTTP requests to gateways (each retry counts) by operation and code (HTTP status, transport, timeout)",
            None,
            metrics.gateway_requests.clone(),
        );
        r.add(
            "gateway_request_duration",
            "Time from sending a gateway request to its response headers, by operation",
            Some(Unit::Seconds),
            metrics.gateway_duration.clone(),
        );
        r.add(
            "objectstore_requests",
            "Object-store calls by operation (get, get_range, head, put, put_part, list, delete, ...) and outcome (success, not_found, unauthorized, error)",
            None,
            metrics.store_requests.clone(),
        );
        r.add(
            "objectstore",
            "Bytes of object-store calls' bodies by operation and direction (read, write)",
            Some(Unit::Bytes),
            metrics.store_bytes.clone(),
        );
        r.add(
            "objectstore_request_duration",
            "Time an object-store call took (a GET until its response headers, a listing until its first page), by operation",
            Some(Unit::Seconds),
            metrics.store_duration.clone(),
        );
        r.add(
            "request_lines",
            "Request lines of finished Batches by outcome (completed, failed)",
            None,
            metrics.request_lines.clone(),
        );
        metrics.spend.register(r);
        r.add(
            "duplicate_submissions_prevented",
            "Uploads and batch creations skipped because an earlier attempt's file or batch was adopted, by object (file, batch)",
            None,
            metrics.duplicates_prevented.clone(),
        );
        r.add(
            "notifications",
            "Webhook delivery attempts by kind (batch, batchsweep) and result (delivered, failed, given_up: the last attempt failed)",
            None,
            metrics.notifications.clone(),
        );
        r.add(
            "leader",
            "1 while this replica holds the leader Lease (or runs without leader election), else 0",
            None,
            metrics.leader.clone(),
        );
        r.0.register_collector(Box::new(metrics.phases.clone()));
        r.1.push(("llmbatch_batches".into(), "gauge"));
        r.0.register_collector(Box::new(metrics.stalled.clone()));
        r.1.push(("llmbatch_batches_stalled".into(), "gauge"));
        metrics
    }

    /// Every metric as exposed (`llmbatch_reconcile_total`) with its type (`counter`), whether
    /// observed yet or not: what docs/operations.md must document.
    pub fn catalogue(&self) -> &[(String, &'static str)] {
        &self.catalogue
    }

    /// The OpenMetrics text exposition of every metric.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }

    /// One reconcile of `controller` finished; `error` is the error's bounded kind, if it failed.
    pub fn reconciled(&self, controller: &'static str, error: Option<&'static str>, took: Duration) {
        let result = if error.is_some() { "error" } else { "success" };
        self.reconciles
            .get_or_create(&ReconcileLabels { controller, result })
            .inc();
        if let Some(error) = error {
            self.reconcile_errors
                .get_or_create(&ReconcileErrorLabels { controller, error })
                .inc();
        }
        self.reconcile_duration
            .get_or_create(&ControllerLabels { controller })
            .observe(took.as_secs_f64());
    }

    /// A reconcile of `controller` started: it counts as in flight until the guard is dropped.
    pub fn reconcile_started(&self, controller: &'static str) -> InFlight {
        let gauge = self.in_flight.get_or_create(&ControllerLabels { controller }).clone();
        gauge.inc();
        InFlight(gauge)
    }

    /// A Batch finished with these request counts.
    pub fn batch_finished(&self, completed: u64, failed: u64) {
        let lines = |outcome| self.request_lines.get_or_create(&OutcomeLabels { outcome });
        lines("completed").inc_by(completed);
        lines("failed").inc_by(failed);
    }

    /// A finished Batch of gateway `namespace/gateway` used these tokens of one model.
    pub fn tokens_used(&self, namespace: &str, gateway: &str, used: &ModelTokens) {
        self.spend.tokens(namespace, gateway, used);
    }

    /// A finished Batch of gateway `namespace/gateway` cost `amount` for one priced model.
    pub fn cost_incurred(&self, namespace: &str, gateway: &str, model: &str, currency: &str, amount: f64) {
        self.spend.cost(namespace, gateway, model, currency, amount);
    }

    /// The spend in gateway `namespace/gateway`'s current budget window, and its budget.
    pub fn budget(&self, namespace: &str, gateway: &str, currency: &str, spent: f64, limit: f64) {
        self.spend.budget(namespace, gateway, currency, spent, limit);
    }

    /// Drops a gateway's budget gauges (its budget was removed, or the gateway deleted).
    pub fn forget_budget(&self, namespace: &str, gateway: &str, currency: &str) {
        self.spend.forget_budget(namespace, gateway, currency);
    }

    /// An upload (`file`) or batch creation (`batch`) was skipped: an earlier attempt's was adopted.
    pub fn duplicate_prevented(&self, object: &'static str) {
        self.duplicates_prevented.get_or_create(&ObjectLabels { object }).inc();
    }

    /// One attempt to deliver an event of a `kind` object ended in `result`.
    pub fn notification(&self, kind: &'static str, result: &'static str) {
        self.notifications
            .get_or_create(&NotificationLabels { kind, result })
            .inc();
    }

    /// Whether this replica leads now.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Where Batch counts per phase come from (`None`: nowhere, e.g. while standing by).
    pub fn set_phase_counts(&self, source: Option<PhaseCounts>) {
        *self.phases.source.write().expect("phase source lock") = source;
    }

    /// Where counts of stalled Batches per upstream state come from (`None`: nowhere).
    pub fn set_stalled_counts(&self, source: Option<PhaseCounts>) {
        *self.stalled.source.write().expect("stalled source lock") = source;
    }

    /// The observer to wrap object-store locations with, so their calls are counted here.
    pub fn store_observer(self: &Arc<Self>) -> Arc<dyn StoreObserver> {
        Arc::new(StoreMetrics(self.clone()))
    }

    /// The observer to give gateway clients, so their requests are counted here.
    pub fn gateway_observer(self: &Arc<Self>) -> GatewayMetrics {
        GatewayMetrics(self.clone())
    }
}

/// One reconcile in flight, counted in `llmbatch_reconciles_in_flight` until dropped (also when
/// the reconcile is cancelled).
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Records object-store calls into [`Metrics`].
pub struct StoreMetrics(Arc<Metrics>);

impl StoreObserver for StoreMetrics {
    fn request(&self, operation: &'static str, outcome: &'static str, elapsed: Duration) {
        self.0
            .store_requests
            .get_or_create(&StoreLabels { operation, outcome })
            .inc();
        self.0
            .store_duration
            .get_or_create(&StoreOperationLabels { operation })
            .observe(elapsed.as_secs_f64());
    }

    fn bytes(&self, operation: &'static str, direction: Direction, bytes: u64) {
        let direction = direction.label();
        self.0
            .store_bytes
            .get_or_create(&StoreBytesLabels { operation, direction })
            .inc_by(bytes);
    }
}

/// Records gateway requests into [`Metrics`].
pub struct GatewayMetrics(Arc<Metrics>);

impl RequestObserver for GatewayMetrics {
    fn observe(&self, operation: &'static str, outcome: RequestOutcome, elapsed: Duration) {
        // The client's fixed operation names (`create batch`) as label values (`create_batch`).
        let operation = operation.replace(' ', "_");
        let code = outcome.label();
        self.0
            .gateway_requests
            .get_or_create(&GatewayLabels {
                operation: operation.clone(),
                code,
            })
            .inc();
        self.0
            .gateway_duration
            .get_or_create(&OperationLabels { operation })
            .observe(elapsed.as_secs_f64());
    }
}

/// `llmbatch_batches{phase}`, computed at scrape time.
#[derive(Default)]
struct PhaseCollector {
    source: RwLock<Option<PhaseCounts>>,
}

impl std::fmt::Debug for PhaseCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PhaseCollector")
    }
}

impl Collector for PhaseCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let family = Family::<PhaseLabels, Gauge>::default();
        if let Some(source) = self.source.read().expect("phase source lock").as_ref() {
            for (phase, count) in source() {
                family.get_or_create(&PhaseLabels { phase }).set(count);
            }
        }
        let metric = encoder.encode_descriptor(
            "batches",
            "Batches known to this replica's caches, by phase (empty while standing by)",
            None,
            family.metric_type(),
        )?;
        family.encode(metric)
    }
}

/// `llmbatch_batches_stalled{state}`, computed at scrape time.
#[derive(Default)]
struct StalledCollector {
    source: RwLock<Option<PhaseCounts>>,
}

impl std::fmt::Debug for StalledCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StalledCollector")
    }
}

impl Collector for StalledCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let family = Family::<StateLabels, Gauge>::default();
        if let Some(source) = self.source.read().expect("stalled source lock").as_ref() {
            for (state, count) in source() {
                family.get_or_create(&StateLabels { state }).set(count);
            }
        }
        let metric = encoder.encode_descriptor(
            "batches_stalled",
            "Batches in this replica's caches whose Progressing condition is False (Stalled), by the upstream batch's state (validating, in_progress, finalizing)",
            None,
            family.metric_type(),
        )?;
        family.encode(metric)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconciles_and_gateway_requests_are_counted_with_bounded_labels() {
        let metrics = Arc::new(Metrics::new());
        metrics.reconciled("batch", None, Duration::from_millis(12));
        metrics.reconciled("batch", Some("kube"), Duration::from_millis(3));
        let running = metrics.reconcile_started("batchgateway");
        let done = metrics.reconcile_started("batch");
        drop(done);
        let observer = metrics.gateway_observer();
        observer.observe("create batch", RequestOutcome::Status(200), Duration::from_millis(5));
        observer.observe("create batch", RequestOutcome::Status(429), Duration::from_millis(5));
        observer.observe("get batch", RequestOutcome::Timeout, Duration::from_secs(60));
        metrics.set_phase_counts(Some(Arc::new(|| vec![("Succeeded".into(), 3)])));
        metrics.set_stalled_counts(Some(Arc::new(|| vec![("finalizing".into(), 2)])));
        let store = metrics.store_observer();
        store.request("get_range", "success", Duration::from_millis(7));
        store.bytes("get_range", Direction::Read, 1000);
        store.bytes("get_range", Direction::Read, 24);
        store.request("head", "not_found", Duration::from_millis(2));
        let text = metrics.encode().unwrap();
        for line in [
            r#"llmbatch_reconcile_total{controller="batch",result="success"} 1"#,
            r#"llmbatch_reconcile_total{controller="batch",result="error"} 1"#,
            r#"llmbatch_reconcile_errors_total{controller="batch",error="kube"} 1"#,
            r#"llmbatch_reconcile_duration_seconds_count{controller="batch"} 2"#,
            r#"llmbatch_reconciles_in_flight{controller="batchgateway"} 1"#,
            r#"llmbatch_reconciles_in_flight{controller="batch"} 0"#,
            r#"llmbatch_gateway_requests_total{operation="create_batch",code="429"} 1"#,
            r#"llmbatch_gateway_requests_total{operation="get_batch",code="timeout"} 1"#,
            r#"llmbatch_gateway_request_duration_seconds_count{operation="create_batch"} 2"#,
            r#"llmbatch_batches{phase="Succeeded"} 3"#,
            r#"llmbatch_batches_stalled{state="finalizing"} 2"#,
            r#"llmbatch_objectstore_requests_total{operation="get_range",outcome="success"} 1"#,
            r#"llmbatch_objectstore_requests_total{operation="head",outcome="not_found"} 1"#,
            r#"llmbatch_objectstore_bytes_total{operation="get_range",direction="read"} 1024"#,
            r#"llmbatch_objectstore_request_duration_seconds_count{operation="get_range"} 1"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        drop(running);
        let text = metrics.encode().unwrap();
        assert!(text.contains(r#"llmbatch_reconciles_in_flight{controller="batchgateway"} 0"#));
    }

    #[test]
    fn finished_batches_add_lines() {
        let metrics = Metrics::new();
        metrics.batch_finished(18, 2);
        metrics.batch_finished(1, 0);
        metrics.duplicate_prevented("batch");
        let text = metrics.encode().unwrap();
        for line in [
            r#"llmbatch_request_lines_total{outcome="completed"} 19"#,
            r#"llmbatch_request_lines_total{outcome="failed"} 2"#,
            r#"llmbatch_duplicate_submissions_prevented_total{object="batch"} 1"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }

    #[test]
    fn the_catalogue_names_what_the_registry_exposes() {
        let metrics = Arc::new(Metrics::new());
        metrics.reconciled("batch", Some("kube"), Duration::from_millis(1));
        drop(metrics.reconcile_started("batch"));
        metrics
            .gateway_observer()
            .observe("get batch", RequestOutcome::Status(200), Duration::ZERO);
        metrics.batch_finished(1, 1);
        let used = ModelTokens {
            model: "m",
            ..Default::default()
        };
        metrics.tokens_used("ns", "gw", &used);
        metrics.cost_incurred("ns", "gw", "m", "USD", 0.5);
        metrics.budget("ns", "gw", "USD", 1.0, 2.0);
        metrics.duplicate_prevented("file");
        metrics.notification("batch", "delivered");
        let store = metrics.store_observer();
        store.request("put", "success", Duration::ZERO);
        store.bytes("put", Direction::Write, 1);
        let text = metrics.encode().unwrap();
        let exposed: Vec<(String, &str)> = text
            .lines()
            .filter_map(|line| line.strip_prefix("# TYPE "))
            .map(|rest| {
                let (name, kind) = rest.split_once(' ').unwrap();
                let name = if kind == "counter" {
                    format!("{name}_total")
                } else {
                    name.to_string()
                };
                (name, kind)
            })
            .collect();
        let catalogue: Vec<(String, &str)> = metrics.catalogue().iter().map(|(n, k)| (n.clone(), *k)).collect();
        assert_eq!(exposed.len(), catalogue.len(), "{text}");
        for entry in &exposed {
            assert!(catalogue.contains(entry), "{entry:?} not in {catalogue:?}");
        }
    }
}
