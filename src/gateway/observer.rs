//! A hook that sees every HTTP request the client sends: which operation, how it ended and
//! how long it took. The caller supplies it (the controller records metrics with it); the
//! client knows nothing of what it does.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// How one HTTP request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOutcome {
    /// The gateway answered with this status code (success or not).
    Status(u16),
    /// No response: connection refused or reset, TLS failure, ...
    Transport,
    /// No response within the request timeout.
    Timeout,
}

impl RequestOutcome {
    /// A short, bounded label: the status code, `transport` or `timeout`.
    pub fn label(&self) -> String {
        match self {
            RequestOutcome::Status(code) => code.to_string(),
            RequestOutcome::Transport => "transport".into(),
            RequestOutcome::Timeout => "timeout".into(),
        }
    }
}

/// Told about every request attempt (retries count one each). Must be cheap: it runs inline.
pub trait RequestObserver: Send + Sync {
    /// `operation` is the client's fixed name for the call (e.g. `create batch`); `elapsed` runs
    /// from sending until the response headers (or the failure).
    fn observe(&self, operation: &'static str, outcome: RequestOutcome, elapsed: Duration);
}

/// A shared observer, as held by a [`GatewayConfig`](super::GatewayConfig).
#[derive(Clone)]
pub struct Observer(pub Arc<dyn RequestObserver>);

impl fmt::Debug for Observer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Observer")
    }
}
