//! What can go wrong while reconciling, with a bounded label for metrics and Events.

/// A reconcile error. Gateway errors become status conditions, not errors: these are the
/// failures of the Kubernetes side, worth a retry with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Adding or removing the cleanup finalizer failed.
    #[error("finalizer: {0}")]
    Finalizer(#[source] kube::Error),
    #[error("{0}")]
    Invalid(String),
    /// A gateway call that must succeed before the step can finish (cleanup on delete, a
    /// sweep's retry): what was being done, and the gateway's error.
    #[error("gateway: {doing}: {source}")]
    Gateway {
        doing: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// A gateway call that failed while `doing` something that must succeed.
    pub fn gateway(doing: impl Into<String>, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Error::Gateway {
            doing: doing.into(),
            source: source.into(),
        }
    }

    /// A short, bounded label (metrics, Event reasons).
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Finalizer(_) => "finalizer",
            Error::Invalid(_) => "invalid",
            Error::Gateway { .. } => "gateway",
        }
    }
}
