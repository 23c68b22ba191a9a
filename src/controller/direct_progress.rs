//! The counts of a direct-mode Job while it runs. Its pod has no API credentials (by design), so
//! it serves them on `GET /progress` at its own IP and the controller's `--direct-progress-port`,
//! and the controller reads them there at the gateway's polling rhythm. A pod that cannot be
//! reached (not started yet, a NetworkPolicy in the way) costs only the live counts: they still
//! arrive with the Job's end, from its termination message.

use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::{Context, Error, jobs};
use crate::api::BatchStatus;
use crate::direct::progress::{PROGRESS_PATH, Progress};
use crate::engine::{Outcome, PollingPolicy};

/// The port the direct Jobs' pods serve their counts on (`--direct-progress-port`'s default).
pub const DEFAULT_PROGRESS_PORT: u16 = 8686;
/// How long one read may take.
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// Reads the counts a direct Job's pod serves on the port it was told.
pub struct ProgressReader {
    port: u16,
    http: OnceLock<Option<reqwest::Client>>,
}

impl ProgressReader {
    pub fn new(port: u16) -> Self {
        Self {
            port,
            http: OnceLock::new(),
        }
    }

    /// The port given to the Jobs (`--progress-listen $(POD_IP):<port>`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Plain HTTP to a pod IP: never through a proxy, never redirected elsewhere, no idle
    /// connections kept (reads are seconds apart and pods come and go). Built on first use.
    fn http(&self) -> Option<&reqwest::Client> {
        let built = self.http.get_or_init(|| {
            reqwest::Client::builder()
                .timeout(READ_TIMEOUT)
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .pool_max_idle_per_host(0)
                .build()
                .inspect_err(|e| tracing::warn!(error = %e, "cannot read direct Jobs' counts while they run"))
                .ok()
        });
        built.as_ref()
    }

    /// The counts the pod at `ip` serves; `None` (logged at debug) when they cannot be read.
    async fn read(&self, ip: IpAddr) -> Option<Progress> {
        let url = format!("http://{}{PROGRESS_PATH}", SocketAddr::new(ip, self.port));
        let response = self.http()?.get(&url).send().await.and_then(|r| r.error_for_status());
        let read = match response {
            Ok(response) => response.json::<Progress>().await,
            Err(e) => Err(e),
        };
        read.inspect_err(|e| tracing::debug!(%url, error = %e, "direct Job's counts not readable (yet)"))
            .ok()
    }
}

/// When a read is due (at most once per polling interval, so the status writes that re-trigger
/// a reconcile never read early): the counts of `job`'s running pod, as progress when they moved
/// forward from the status.
pub async fn poll(
    key: &str,
    status: &BatchStatus,
    job: &Job,
    polling: PollingPolicy,
    ctx: &Context,
) -> Result<Option<Outcome>, Error> {
    if !ctx.poll_wait(key, interval(status, polling)).is_zero() {
        return Ok(None);
    }
    ctx.polled(key);
    let Some(ip) = running_pod_ip(jobs::pods(&ctx.client, job).await?) else {
        tracing::debug!(job = %job.name_any(), "no running pod of the direct Job to read counts from yet");
        return Ok(None);
    };
    let Some(read) = ctx.direct_progress.read(ip).await else {
        return Ok(None);
    };
    let total = status.input.as_ref().map_or(0, |i| i.requests);
    Ok(
        advanced(status, total, read).map(|(completed, failed)| Outcome::DirectProgress {
            total,
            completed,
            failed,
        }),
    )
}

/// How soon a Batch whose direct Job runs should look again: when its next read is due.
pub fn next_read(key: &str, status: &BatchStatus, polling: PollingPolicy, ctx: &Context) -> Duration {
    let interval = interval(status, polling);
    match ctx.poll_wait(key, interval) {
        wait if wait.is_zero() => interval,
        wait => wait,
    }
}

/// The gateway's polling rhythm, counted from the run's start: soon at first, backing off to
/// `polling.max` as the run ages.
fn interval(status: &BatchStatus, polling: PollingPolicy) -> Duration {
    let since = status.start_time.as_ref().map_or(Duration::ZERO, |started| {
        started
            .0
            .duration_until(Timestamp::now())
            .try_into()
            .unwrap_or_default()
    });
    polling.delay(since)
}

/// The IP of the newest running pod.
fn running_pod_ip(pods: Vec<Pod>) -> Option<IpAddr> {
    jobs::newest_in_phase(pods, "Running")?.status?.pod_ip?.parse().ok()
}

/// `(completed, failed)` when the read moved them forward. Counts never go back (a pod that
/// just started serves zeros until it has read its checkpoint), and a read claiming more lines
/// than the Batch has is not this run's.
fn advanced(status: &BatchStatus, total: u64, read: Progress) -> Option<(u64, u64)> {
    if read.completed.saturating_add(read.failed) > total {
        tracing::debug!(?read, total, "direct Job's counts exceed the Batch's lines; ignored");
        return None;
    }
    let known = status.request_counts.clone().unwrap_or_default();
    let next = (read.completed.max(known.completed), read.failed.max(known.failed));
    (next != (known.completed, known.failed)).then_some(next)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::api::RequestCounts;

    fn status(completed: u64, failed: u64) -> BatchStatus {
        BatchStatus {
            request_counts: Some(RequestCounts {
                total: 10,
                completed,
                failed,
                not_run: None,
            }),
            ..Default::default()
        }
    }

    fn read(completed: u64, failed: u64) -> Progress {
        Progress {
            total: 10,
            completed,
            failed,
        }
    }

    #[test]
    fn counts_only_move_forward_and_stay_within_the_batch() {
        assert_eq!(advanced(&BatchStatus::default(), 10, read(3, 1)), Some((3, 1)));
        assert_eq!(advanced(&status(3, 1), 10, read(3, 1)), None, "unchanged");
        assert_eq!(advanced(&status(3, 1), 10, read(5, 1)), Some((5, 1)));
        assert_eq!(
            advanced(&status(3, 1), 10, read(0, 0)),
            None,
            "a new pod before its checkpoint"
        );
        assert_eq!(
            advanced(&status(3, 1), 10, read(2, 2)),
            Some((3, 2)),
            "each count keeps its highest"
        );
        assert_eq!(
            advanced(&status(3, 1), 10, read(10, 1)),
            None,
            "more lines than the Batch has"
        );
    }

    #[test]
    fn the_newest_running_pod_is_read() {
        let pod = |name: &str, created: i64, phase: &str, ip: Option<&str>| -> Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "creationTimestamp": Timestamp::from_second(created).unwrap()},
                "status": {"phase": phase, "podIP": ip}
            }))
            .unwrap()
        };
        let pods = vec![
            pod("old", 1, "Running", Some("10.0.0.1")),
            pod("new", 2, "Running", Some("fd00::2")),
            pod("failed", 3, "Failed", Some("10.0.0.3")),
            pod("pending", 4, "Pending", None),
        ];
        assert_eq!(running_pod_ip(pods).unwrap().to_string(), "fd00::2");
        assert_eq!(running_pod_ip(vec![pod("p", 1, "Running", None)]), None);
    }

    #[test]
    fn reads_follow_the_polling_rhythm_from_the_runs_start() {
        let polling = PollingPolicy {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(300),
            stalled: crate::engine::StalledPolicy::DEFAULT,
        };
        let started = |ago: i64| BatchStatus {
            start_time: Some(Time(
                Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(ago),
            )),
            ..Default::default()
        };
        assert_eq!(interval(&BatchStatus::default(), polling), Duration::from_secs(10));
        assert_eq!(interval(&started(60), polling), Duration::from_secs(10));
        let later = interval(&started(1200), polling);
        assert!(
            later >= Duration::from_secs(119) && later <= Duration::from_secs(121),
            "{later:?}"
        );
        assert_eq!(interval(&started(100_000), polling), Duration::from_secs(300));
    }
}
