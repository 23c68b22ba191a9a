//! Which mode a Batch runs in, and how a direct run's ending reads in the engine's terms: one
//! definition for the controller, its direct Job and `run -f`.

use crate::api::GatewayMode;
use crate::direct::{Conclusion, DirectError};
use crate::engine::{ErrorClass, Outcome, UpstreamState};
use crate::gateway::{GatewayClient, GatewayError};

/// `GET /v1/batches?limit=1`: true when it answers, false on 404 or 405 (no batch API). Any
/// other failure (401, 5xx, unreachable) is returned: it says nothing about the API.
pub async fn probe_batch_api(client: &GatewayClient) -> Result<bool, GatewayError> {
    match client.list_batches(None, 1).await {
        Ok(_) => Ok(true),
        Err(e) if matches!(e.status(), Some(404 | 405)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The engine's `ResolveMode` step: the gateway's `spec.mode`; for Auto, what an earlier probe
/// found (`probed`, e.g. the BatchGateway's status), or a probe now.
pub async fn resolve_mode(client: &GatewayClient, mode: GatewayMode, probed: Option<bool>) -> Outcome {
    let resolved = match mode.resolve(probed) {
        Some(resolved) => resolved,
        None => match probe_batch_api(client).await {
            Ok(batch_api) => mode.resolve(Some(batch_api)).expect("a probed Auto resolves"),
            Err(e) => return super::failure(e),
        },
    };
    Outcome::ModeResolved { mode: resolved }
}

/// How a direct run that concluded ends in the engine: as a batch in this state would.
pub fn concluded(conclusion: Conclusion) -> UpstreamState {
    match conclusion {
        Conclusion::Completed => UpstreamState::Completed,
        Conclusion::Expired => UpstreamState::Expired,
        Conclusion::Cancelled => UpstreamState::Cancelled,
    }
}

/// The class of a direct run's failure (`None`: interrupted, nothing failed).
pub fn direct_failure_class(e: &DirectError) -> Option<ErrorClass> {
    Some(match e {
        DirectError::Input { .. } => ErrorClass::Rejected,
        DirectError::Unauthorized(_) => ErrorClass::Unauthorized,
        DirectError::Unavailable(_) => ErrorClass::Transient,
        DirectError::Misconfigured(_) => ErrorClass::Misconfigured,
        DirectError::Checkpoint { .. } => ErrorClass::Output,
        DirectError::Interrupted => return None,
    })
}

/// A direct run's failure as a step outcome (`None`: interrupted, resumable).
pub fn direct_failure(e: DirectError) -> Option<Outcome> {
    let class = direct_failure_class(&e)?;
    Some(match e {
        DirectError::Input { .. } => Outcome::InputInvalid { message: e.to_string() },
        e => Outcome::GatewayError {
            class,
            message: e.to_string(),
        },
    })
}
