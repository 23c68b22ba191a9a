//! Leader election on a `coordination.k8s.io/v1` Lease, with client-go's rules and timings:
//! a candidate takes a Lease that is free or whose record has not changed for a whole lease
//! duration by its own clock (no trust in other nodes' clocks); the leader renews every retry
//! period and steps down when no renewal succeeded within the renew deadline, so it stops
//! before anyone else may take over. Every write carries the resourceVersion it read, so two
//! candidates can never both win. A leader that shuts down releases the Lease at once.
//!
//! (kube-lease-manager supports kube 5 but has no renew deadline: a leader cut off from the API
//! server would go on believing it leads.)

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};

use crate::telemetry::Health;

/// Who competes for which Lease.
#[derive(Clone, Debug)]
pub struct LeaderElection {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (the pod name), written as the holder.
    pub identity: String,
    pub timings: LeaseTimings,
}

/// How long a Lease is valid, how long a leader keeps trying to renew it, how often it tries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseTimings {
    pub duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl Default for LeaseTimings {
    /// controller-runtime's defaults: 15 s / 10 s / 2 s.
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// One attempt's result.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    /// We hold the Lease now.
    Held,
    /// Another replica holds a valid Lease.
    HeldBy(String),
    /// Another write won the race; look again.
    Conflict,
}

/// This replica's view of the Lease.
pub struct LeaseLock {
    api: Api<Lease>,
    config: LeaderElection,
    /// The last record seen (its resourceVersion) and when, by our clock.
    observed: Option<(String, Instant, Duration)>,
}

impl LeaseLock {
    pub fn new(client: kube::Client, config: LeaderElection) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: None,
        }
    }

    /// Returns once this replica holds the Lease, trying every retry period (with jitter).
    /// Ready as a standby once it has seen the Lease.
    pub async fn acquire(&mut self, health: &Health) {
        let timings = self.config.timings;
        loop {
            match tokio::time::timeout(timings.renew_deadline, self.try_acquire_or_renew()).await {
                Ok(Ok(Attempt::Held)) => return,
                Ok(Ok(Attempt::HeldBy(holder))) => {
                    health.set_ready();
                    tracing::debug!(lease = %self.config.name, %holder, "standing by: another replica leads");
                }
                Ok(Ok(Attempt::Conflict)) => health.set_ready(),
                Ok(Err(e)) => {
                    health.set_not_ready("cannot read the leader-election Lease");
                    tracing::warn!(lease = %self.config.name, error = %e, "cannot read or take the Lease");
                }
                Err(_) => health.set_not_ready("cannot read the leader-election Lease"),
            }
            tokio::time::sleep(timings.retry_period.mul_f64(1.0 + 0.2 * rand::random::<f64>())).await;
        }
    }

    /// Renews the Lease every retry period; returns when it is lost: another replica took it,
    /// or no renewal succeeded within the renew deadline.
    pub async fn hold(&mut self) {
        let timings = self.config.timings;
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(timings.retry_period).await;
            let left = timings.renew_deadline.saturating_sub(renewed.elapsed());
            match tokio::time::timeout(left, self.try_acquire_or_renew()).await {
                Ok(Ok(Attempt::Held)) => renewed = Instant::now(),
                Ok(Ok(Attempt::HeldBy(holder))) => {
                    tracing::warn!(lease = %self.config.name, %holder, "another replica took the Lease");
                    return;
                }
                Ok(Ok(Attempt::Conflict)) => {}
                Ok(Err(e)) => tracing::warn!(lease = %self.config.name, error = %e, "cannot renew the Lease"),
                Err(_) => {}
            }
            if renewed.elapsed() >= timings.renew_deadline {
                tracing::warn!(lease = %self.config.name, "no renewal within the renew deadline");
                return;
            }
        }
    }

    /// Gives the Lease up (when this replica holds it), so a standby takes over at once.
    pub async fn release(&mut self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        self.api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await?;
        Ok(())
    }

    async fn try_acquire_or_renew(&mut self) -> Result<Attempt, kube::Error> {
        let Some(current) = self.api.get_opt(&self.config.name).await? else {
            return self.create().await;
        };
        self.observe(&current);
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        if let Some(other) = holder.as_ref().filter(|h| **h != self.config.identity)
            && !self.expired()
        {
            return Ok(Attempt::HeldBy(other.clone()));
        }
        let now = MicroTime(Timestamp::now());
        let mut next = spec.clone();
        if holder.as_deref() != Some(self.config.identity.as_str()) {
            next.acquire_time = Some(now.clone());
            next.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        next.holder_identity = Some(self.config.identity.clone());
        next.lease_duration_seconds = Some(self.duration_seconds());
        next.renew_time = Some(now);
        let lease = Lease {
            metadata: current.metadata.clone(),
            spec: Some(next),
        };
        // resourceVersion from the read: the API server refuses the write if anyone wrote since.
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(written) => {
                self.observe(&written);
                Ok(Attempt::Held)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Conflict),
            Err(e) => Err(e),
        }
    }

    async fn create(&mut self) -> Result<Attempt, kube::Error> {
        let now = MicroTime(Timestamp::now());
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.config.name.clone()),
                namespace: Some(self.config.namespace.clone()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.config.identity.clone()),
                lease_duration_seconds: Some(self.duration_seconds()),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        match self.api.create(&PostParams::default(), &lease).await {
            Ok(written) => {
                self.observe(&written);
                Ok(Attempt::Held)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Conflict),
            Err(e) => Err(e),
        }
    }

    /// Remembers when the Lease's record last changed, by our clock.
    fn observe(&mut self, lease: &Lease) {
        let version = lease.metadata.resource_version.clone().unwrap_or_default();
        let duration = lease
            .spec
            .as_ref()
            .and_then(|s| s.lease_duration_seconds)
            .and_then(|s| u64::try_from(s).ok())
            .map_or(self.config.timings.duration, Duration::from_secs);
        if self.observed.as_ref().is_none_or(|(seen, ..)| *seen != version) {
            self.observed = Some((version, Instant::now(), duration));
        }
    }

    /// The holder has not renewed for a whole lease duration, as far as we have watched.
    fn expired(&self) -> bool {
        self.observed
            .as_ref()
            .is_some_and(|(_, at, duration)| at.elapsed() > *duration)
    }

    fn duration_seconds(&self) -> i32 {
        i32::try_from(self.config.timings.duration.as_secs()).unwrap_or(i32::MAX)
    }
}
