//! The `llmbatch.io/batch-id` annotation: a Batch whose status was lost (a restored object)
//! re-attaches to the upstream batch it names, but only once that batch's metadata proves it
//! was created for this very object (the `llmbatch.io/uid` the operator writes at create
//! time). An annotation copied from another Batch is ignored with a Warning Event: the Batch
//! starts afresh, and never downloads or cancels the batch it names.

use kube::ResourceExt;
use kube::runtime::events::EventType;

use super::{Context, Error};
use crate::api::{BATCH_ID_ANNOTATION, Batch, BatchPhase, BatchStatus};
use crate::engine::UID_KEY;
use crate::gateway::{GatewayClient, GatewayError};

/// Event reason when the annotation names a batch that is not this Batch's.
pub const FOREIGN_BATCH_ID: &str = "ForeignBatchId";

/// The batch id the annotation names, when it is to be considered: only for a status lost
/// entirely (a Batch sent back to the admission queue keeps its phase, and must not re-attach
/// to the batch the gateway refused).
pub fn annotated(batch: &Batch) -> Option<&str> {
    let status_lost = batch.status.as_ref().is_none_or(|s| s.phase.is_none());
    batch
        .annotations()
        .get(BATCH_ID_ANNOTATION)
        .map(String::as_str)
        .filter(|_| status_lost)
}

/// Whether an upstream batch with this metadata was created for the object with `uid`.
pub fn proves_owner(metadata: Option<&std::collections::BTreeMap<String, String>>, uid: &str) -> bool {
    !uid.is_empty() && metadata.and_then(|m| m.get(UID_KEY)).map(String::as_str) == Some(uid)
}

/// The Batch's status, re-attached to the annotated batch when its metadata proves it is this
/// Batch's; otherwise as it is, Pending (a Warning Event says why the annotation was ignored,
/// once: the phase written with the next step settles it). A gateway that cannot answer now
/// is an error: retried, never taken as proof either way.
pub async fn status(batch: &Batch, gateway: &GatewayClient, ctx: &Context) -> Result<BatchStatus, Error> {
    let mut status = batch.status.clone().unwrap_or_default();
    let Some(id) = annotated(batch) else {
        return Ok(status);
    };
    match is_ours(batch, id, gateway, ctx).await {
        Ok(true) => {
            let gateway = status.gateway.get_or_insert_with(Default::default);
            gateway.batch_id = Some(id.to_string());
            status.phase = Some(BatchPhase::InProgress);
        }
        Ok(false) => status.phase = Some(BatchPhase::Pending),
        Err(e) => {
            return Err(Error::gateway(
                format!("checking batch {id} of the {BATCH_ID_ANNOTATION} annotation"),
                e,
            ));
        }
    }
    Ok(status)
}

/// True when upstream batch `id` carries this Batch's uid in its metadata. A batch the gateway
/// does not have, or that is not this Batch's, is refused with a Warning Event; any other
/// failure to read it is the caller's to handle.
pub async fn is_ours(batch: &Batch, id: &str, gateway: &GatewayClient, ctx: &Context) -> Result<bool, GatewayError> {
    let uid = batch.uid().unwrap_or_default();
    let why = match gateway.get_batch(id).await {
        Ok(upstream) if proves_owner(upstream.metadata.as_ref(), &uid) => return Ok(true),
        Ok(_) => format!("its metadata does not carry this Batch's uid ({UID_KEY}={uid})"),
        Err(e) if e.is_not_found() => "the gateway does not have it".to_string(),
        Err(e) => return Err(e),
    };
    let note = format!(
        "ignored annotation {BATCH_ID_ANNOTATION}={id}: {why}, so it is not this Batch's; the Batch runs its own \
         batch and never reads or cancels that one"
    );
    tracing::warn!(batch = %super::batch::key(batch), %note);
    ctx.publish(batch, EventType::Warning, FOREIGN_BATCH_ID, &note).await;
    Ok(false)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn only_metadata_naming_the_uid_proves_ownership() {
        let meta = |uid: &str| BTreeMap::from([(UID_KEY.to_string(), uid.to_string())]);
        assert!(proves_owner(Some(&meta("u-1")), "u-1"));
        assert!(!proves_owner(Some(&meta("u-2")), "u-1"));
        assert!(!proves_owner(Some(&BTreeMap::new()), "u-1"));
        assert!(!proves_owner(None, "u-1"));
        assert!(
            !proves_owner(Some(&meta("")), ""),
            "an object without a uid proves nothing"
        );
    }

    #[test]
    fn the_annotation_counts_only_when_the_status_is_lost() {
        let mut batch: Batch = serde_json::from_value(serde_json::json!({
            "apiVersion": "llmbatch.io/v1alpha1", "kind": "Batch",
            "metadata": {"name": "b", "annotations": {BATCH_ID_ANNOTATION: "batch-1"}},
            "spec": {"gatewayRef": {"name": "gw"}, "endpoint": "/v1/chat/completions",
                     "input": {"fileId": "file-1"}}
        }))
        .unwrap();
        assert_eq!(annotated(&batch), Some("batch-1"));
        batch.status = Some(BatchStatus::default());
        assert_eq!(annotated(&batch), Some("batch-1"));
        batch.status.as_mut().unwrap().phase = Some(BatchPhase::Pending);
        assert_eq!(
            annotated(&batch),
            None,
            "a Batch sent back to admission keeps its phase"
        );
    }
}
