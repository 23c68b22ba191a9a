//! What can go wrong while reconciling, with a bounded label for metrics and Events.

/// A reconcile error. Gateway errors become status conditions, not errors: these are the
/// failures of the Kubernetes side, worth a retry with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(String),
    #[error("{0}")]
    Invalid(String),
    /// A gateway call that must succeed before the step can finish (cleanup on delete).
    #[error("gateway: {0}")]
    Gateway(String),
}

impl Error {
    /// A short, bounded label (metrics, Event reasons).
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Finalizer(_) => "finalizer",
            Error::Invalid(_) => "invalid",
            Error::Gateway(_) => "gateway",
        }
    }
}
