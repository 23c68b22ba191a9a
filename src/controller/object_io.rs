//! Object storage for a Batch in the cluster: credentials from the Secret named by
//! `secretRef` in the Batch's own namespace, the input object with its mode's limits, and the
//! output prefix. Secret values only ever reach the object-store client.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

use super::Context;
use super::cluster_io::{InputError, get};
use crate::api::{Batch, ObjectStoreRef};
use crate::io::ObjectInput;
use crate::io::object_storage::{self, ObjectLocation};
use crate::jsonl::Limits;
use crate::sweep::ValidatedInput;

/// The Batch's input object, prepared with its byteRange, overrides and the ceilings of its mode.
pub async fn input(ctx: &Context, batch: &Batch, limits: Limits) -> Result<Option<ObjectInput>, InputError> {
    let Some(reference) = &batch.spec.input.object_store else {
        return Ok(None);
    };
    let location = location(
        ctx,
        &batch.namespace().unwrap_or_default(),
        reference,
        "spec.input.objectStore",
    )
    .await?;
    Ok(Some(ObjectInput {
        location,
        range: batch.spec.input.byte_range.map(|r| r.start..r.end),
        rewrite: crate::steps::rewrite(&batch.spec.input),
        endpoint: batch.spec.endpoint.path().to_string(),
        limits,
        ends_at_a_line: ValidatedInput::of(batch).is_some(),
    }))
}

/// The Batch's output prefix, when it writes to object storage.
pub async fn output(ctx: &Context, batch: &Batch) -> Result<Option<ObjectLocation>, InputError> {
    match batch.spec.output.as_ref().and_then(|o| o.object_store.as_ref()) {
        Some(reference) => Ok(Some(
            location(
                ctx,
                &batch.namespace().unwrap_or_default(),
                reference,
                "spec.output.objectStore",
            )
            .await?,
        )),
        None => Ok(None),
    }
}

/// An object-store location with its credentials from the Secret `secretRef` in `ns`.
pub async fn location(
    ctx: &Context,
    ns: &str,
    reference: &ObjectStoreRef,
    field: &str,
) -> Result<ObjectLocation, InputError> {
    let ns = ns.to_string();
    let (credentials, from, version) = match &reference.secret_ref {
        Some(r) => {
            let secret: Secret = match get(&ctx.client, &ns, &r.name, "Secret").await {
                Err(InputError::NotFound(m)) => return Err(InputError::NotFound(format!("{field}.secretRef: {m}"))),
                other => other?,
            };
            let from = format!("Secret {ns}/{}", r.name);
            let version = format!("{from} {}", secret.resource_version().unwrap_or_default());
            (text_values(&secret), from, version)
        }
        None => (
            BTreeMap::new(),
            "no Secret (anonymous access)".to_string(),
            String::new(),
        ),
    };
    // A client per bucket and version of its Secret, not per read.
    ctx.object_stores.location(reference, &version, || {
        object_storage::open(reference, &credentials, &from, &ctx.addresses)
            .map(|location| location.observed_by(ctx.metrics.store_observer()))
            .map_err(|e| InputError::Invalid(format!("{field}: {e}")))
    })
}

fn text_values(secret: &Secret) -> BTreeMap<String, String> {
    let mut values = BTreeMap::new();
    for (key, value) in secret.data.iter().flatten() {
        values.insert(key.clone(), String::from_utf8_lossy(&value.0).into_owned());
    }
    for (key, value) in secret.string_data.iter().flatten() {
        values.insert(key.clone(), value.clone());
    }
    values
}
