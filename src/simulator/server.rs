//! Serving the simulator on a real listener: in the background, or until a signal.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context as _;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::config::SimulatorConfig;
use super::state::SimState;

/// How long a graceful shutdown waits for open connections before dropping them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A simulator serving on a bound listener in the background (used in-process by `run -f` and by tests).
#[derive(Debug)]
pub struct RunningSimulator {
    addr: SocketAddr,
    state: SimState,
    stop: CancellationToken,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

impl RunningSimulator {
    /// Binds `addr` (port 0 picks a free port) and serves in a background task.
    pub async fn start(config: SimulatorConfig, addr: SocketAddr) -> anyhow::Result<RunningSimulator> {
        let state = SimState::new(config)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the simulator to {addr}"))?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let router = super::app(state.clone());
        let server = tokio::spawn(
            axum::serve(listener, router)
                .with_graceful_shutdown(stop.clone().cancelled_owned())
                .into_future(),
        );
        Ok(RunningSimulator {
            addr,
            state,
            stop,
            server: Some(server),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/v1` (an unspecified bind address is reached through loopback).
    pub fn base_url(&self) -> String {
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(Ipv4Addr::LOCALHOST.into());
        }
        format!("http://{addr}/v1")
    }

    /// Stops accepting requests, lets open ones finish (bounded), and stops the batch tasks.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(mut server) = self.server.take() {
            match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
                Ok(Ok(Err(err))) => tracing::warn!("simulator server ended with an error: {err}"),
                Ok(_) => {}
                Err(_) => server.abort(),
            }
        }
        self.state.shutdown().await;
    }
}

impl Drop for RunningSimulator {
    fn drop(&mut self) {
        self.stop.cancel();
        self.state.shutdown_token().cancel();
    }
}

/// `llm-batch-operator simulator`: serves until Ctrl-C or SIGTERM.
pub async fn serve_until_signal(config: SimulatorConfig, addr: SocketAddr) -> anyhow::Result<()> {
    let simulator = RunningSimulator::start(config, addr).await?;
    println!("simulator listening on http://{}/v1", simulator.addr());
    wait_for_signal().await?;
    simulator.shutdown().await;
    Ok(())
}

#[cfg(unix)]
async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("waiting for Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
}

#[cfg(not(unix))]
async fn wait_for_signal() -> anyhow::Result<()> {
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")
}
