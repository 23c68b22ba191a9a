//! Does the gateway have a batch API? One cheap call answers it for both drivers.

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
