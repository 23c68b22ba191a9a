//! Operating the controller: logs (text or JSON), Prometheus metrics, and the HTTP endpoints
//! `/metrics`, `/healthz` and `/readyz`. Knows nothing of reconcilers: they report to it.

mod health;
mod logging;
mod metrics;
mod server;
mod spend;

pub use health::Health;
pub use logging::{LogFormat, init_logging};
pub use metrics::{GatewayMetrics, InFlight, Metrics, PhaseCounts};
pub use server::{app, serve};
pub use spend::ModelTokens;
