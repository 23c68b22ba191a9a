//! The live counts of a run on `GET /progress`, as JSON: what the controller reads from a
//! direct-mode Job's pod while it runs (the pod has no API credentials to write the status
//! itself). It serves the counts and nothing else: no content, no configuration.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Counts;

/// The path the counts are served on.
pub const PROGRESS_PATH: &str = "/progress";
/// How long a stopping server waits for a request in flight.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// The body of `GET /progress`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// The run's request lines.
    pub total: u64,
    pub completed: u64,
    pub failed: u64,
}

#[derive(Clone)]
struct Shared {
    total: u64,
    counts: watch::Receiver<Counts>,
}

/// The one route, for a server of the caller's (tests call it in-process).
pub fn app(total: u64, counts: watch::Receiver<Counts>) -> Router {
    Router::new()
        .route(PROGRESS_PATH, get(progress))
        .with_state(Shared { total, counts })
}

async fn progress(State(shared): State<Shared>) -> axum::Json<Progress> {
    let counts = *shared.counts.borrow();
    axum::Json(Progress {
        total: shared.total,
        completed: counts.completed,
        failed: counts.failed,
    })
}

/// [`app`] served in the background until [`ProgressServer::stop`].
pub struct ProgressServer {
    addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl ProgressServer {
    /// Binds `addr` (an error when it cannot) and serves the counts `counts` publishes.
    pub async fn start(addr: SocketAddr, total: u64, counts: watch::Receiver<Counts>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let task = tokio::spawn(
            axum::serve(listener, app(total, counts))
                .with_graceful_shutdown(stop.clone().cancelled_owned())
                .into_future(),
        );
        Ok(Self { addr, stop, task })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops listening; a request in flight gets [`STOP_GRACE`] to finish.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if tokio::time::timeout(STOP_GRACE, &mut self.task).await.is_err() {
            self.task.abort();
        }
    }
}

/// `IP:PORT`; also a bare IPv6 address followed by `:PORT` (`fd00::5:8686`), which is what
/// `$(POD_IP):PORT` becomes in an IPv6 cluster.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse() {
        return Ok(addr);
    }
    let bad = || format!("{s:?} is not IP:PORT (e.g. 10.0.0.5:8686 or [fd00::5]:8686)");
    let (ip, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let ip: IpAddr = ip.parse().map_err(|_| bad())?;
    Ok(SocketAddr::new(ip, port.parse().map_err(|_| bad())?))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    use super::*;

    async fn get(app: Router, path: &str) -> (StatusCode, Vec<u8>) {
        let response = app
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        (status, body.to_vec())
    }

    #[tokio::test]
    async fn serves_the_latest_counts_and_nothing_else() {
        let (sender, counts) = watch::channel(Counts::default());
        let app = app(7, counts);
        sender.send_replace(Counts {
            completed: 3,
            failed: 1,
        });
        let (status, body) = get(app.clone(), "/progress").await;
        assert_eq!(status, StatusCode::OK);
        let progress: Progress = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            progress,
            Progress {
                total: 7,
                completed: 3,
                failed: 1
            }
        );
        assert_eq!(get(app.clone(), "/").await.0, StatusCode::NOT_FOUND);
        assert_eq!(get(app, "/progress/x").await.0, StatusCode::NOT_FOUND);
    }

    #[test]
    fn listen_addresses_take_ipv4_and_ipv6_with_or_without_brackets() {
        assert_eq!(parse_listen("10.0.0.5:8686").unwrap().to_string(), "10.0.0.5:8686");
        assert_eq!(parse_listen("[fd00::5]:8686").unwrap().to_string(), "[fd00::5]:8686");
        assert_eq!(parse_listen("fd00::5:8686").unwrap().to_string(), "[fd00::5]:8686");
        for bad in [
            "",
            "8686",
            "10.0.0.5",
            "host:8686",
            "10.0.0.5:port",
            "10.0.0.5:70000",
            "$(POD_IP):8686",
        ] {
            assert!(parse_listen(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_server_binds_serves_and_stops() {
        let (_sender, counts) = watch::channel(Counts::default());
        let server = ProgressServer::start("127.0.0.1:0".parse().unwrap(), 2, counts)
            .await
            .unwrap();
        let addr = server.local_addr();
        let taken = ProgressServer::start(addr, 2, watch::channel(Counts::default()).1).await;
        assert!(taken.is_err(), "the port is taken");
        server.stop().await;
        assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "stopped listening");
    }
}
