//! The Kubernetes side of a Batch's steps: reading the input and the gateway key, writing
//! the output Secret, the status and the batch-id annotation. Only objects in the Batch's own
//! namespace are ever read; Secrets only with `get`.

use std::collections::BTreeMap;

use bytes::Bytes;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde_json::json;

use sha2::{Digest, Sha256};

use super::{Context, Error, MANAGER};
use crate::api::{BATCH_ID_ANNOTATION, Batch, BatchGateway, BatchInput, BatchStatus, Endpoint, KeyRef};
use crate::engine::PollingPolicy;
use crate::gateway::{ApiKey, GatewayClient, GatewayConfig};

/// Largest output kept in a Secret (Kubernetes allows 1 MiB for the whole object).
pub const MAX_SECRET_BYTES: u64 = 1024 * 1024 - 16 * 1024;

/// Why the input could not be read: missing (wait for it), unusable, or the API call failed
/// (retry with backoff; never reported as a missing input).
pub enum InputError {
    NotFound(String),
    Invalid(String),
    Api(kube::Error),
}

/// The JSONL bytes of the Batch's input.
pub async fn read_input(client: &kube::Client, batch: &Batch) -> Result<Bytes, InputError> {
    let ns = batch.namespace().unwrap_or_default();
    read_source(client, &ns, &batch.spec.input, batch.spec.endpoint).await
}

/// The JSONL bytes of an input held in the cluster (ConfigMap, Secret, inline requests) in `ns`.
pub async fn read_source(
    client: &kube::Client,
    ns: &str,
    input: &BatchInput,
    endpoint: Endpoint,
) -> Result<Bytes, InputError> {
    let ns = ns.to_string();
    match (&input.config_map, &input.secret, input.requests_jsonl(endpoint)) {
        (None, None, Some(jsonl)) => Ok(Bytes::from(jsonl)),
        (Some(r), None, None) => {
            let cm = get::<ConfigMap>(client, &ns, &r.name, "ConfigMap").await?;
            let text = cm
                .data
                .as_ref()
                .and_then(|d| d.get(&r.key))
                .map(|s| Bytes::from(s.clone()));
            let binary = cm
                .binary_data
                .as_ref()
                .and_then(|d| d.get(&r.key))
                .map(|b| Bytes::from(b.0.clone()));
            text.or(binary).ok_or_else(|| missing_key("ConfigMap", &ns, r))
        }
        (None, Some(r), None) => {
            let secret = get::<Secret>(client, &ns, &r.name, "Secret").await?;
            secret_value(&secret, &r.key).ok_or_else(|| missing_key("Secret", &ns, r))
        }
        _ => Err(InputError::Invalid(
            "spec.input has no bytes to read here (fileId is already on the gateway)".into(),
        )),
    }
}

pub(super) async fn get<K>(client: &kube::Client, ns: &str, name: &str, kind: &str) -> Result<K, InputError>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    match Api::<K>::namespaced(client.clone(), ns).get_opt(name).await {
        Ok(Some(object)) => Ok(object),
        Ok(None) => Err(InputError::NotFound(format!("{kind} {ns}/{name} not found"))),
        Err(e) => Err(InputError::Api(e)),
    }
}

fn missing_key(kind: &str, ns: &str, r: &KeyRef) -> InputError {
    InputError::NotFound(format!("{kind} {ns}/{} has no key {:?}", r.name, r.key))
}

pub(super) fn secret_value(secret: &Secret, key: &str) -> Option<Bytes> {
    let data = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| Bytes::from(b.0.clone()));
    data.or_else(|| {
        secret
            .string_data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|s| Bytes::from(s.clone()))
    })
}

/// A Batch's BatchGateway, read once per reconcile, with a client for it and its polling bounds.
pub struct Gateway {
    pub object: BatchGateway,
    pub client: GatewayClient,
    pub polling: PollingPolicy,
}

/// Why a Batch has no usable gateway yet.
#[derive(Debug)]
pub enum Unusable {
    /// The BatchGateway or its Secret does not exist (yet).
    Missing(String),
    /// It exists but cannot be used as it is: a bad URL, an address the controller does not
    /// connect to, a Secret without the key.
    Misconfigured(String),
}

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing(why) | Self::Misconfigured(why) => f.write_str(why),
        }
    }
}

/// The Batch's gateway, from the cache; the inner error says why there is none yet (the Batch
/// is then woken when its BatchGateway changes), the outer one is a failed API call.
pub async fn gateway_client(ctx: &Context, batch: &Batch) -> Result<Result<Gateway, Unusable>, Error> {
    let ns = batch.namespace().unwrap_or_default();
    let name = &batch.spec.gateway_ref.name;
    let Some(object) = ctx.caches().gateway(&ns, name) else {
        return Ok(Err(Unusable::Missing(format!("BatchGateway {ns}/{name} not found"))));
    };
    let object = (*object).clone();
    Ok(client_for_gateway(ctx, &object, KeyRead::IfStale)
        .await?
        .map(|(client, polling)| Gateway {
            object,
            client,
            polling,
        }))
}

/// Whether the gateway's key is read from its Secret again.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum KeyRead {
    /// Only when it was not read in the last minute, or the gateway refused it since.
    IfStale,
    /// Now (the gateway's own reconcile: a rotated or deleted key shows in its Ready).
    Now,
}

/// A client for this gateway, with its key read from its Secret. Clients are reused while the
/// gateway's URL, headers and key stay the same (each holds a connection pool).
pub async fn client_for_gateway(
    ctx: &Context,
    gateway: &BatchGateway,
    read: KeyRead,
) -> Result<Result<(GatewayClient, PollingPolicy), Unusable>, Error> {
    if read == KeyRead::IfStale
        && let Some(known) = ctx.recent_gateway(&gateway_key(gateway), &spec_version(gateway))
    {
        return Ok(Ok(known));
    }
    match build_client(ctx, gateway).await {
        Ok(found) => Ok(Ok(found)),
        Err(InputError::Api(e)) => Err(Error::Kube(e)),
        Err(InputError::NotFound(why)) => Ok(Err(Unusable::Missing(why))),
        Err(InputError::Invalid(why)) => Ok(Err(Unusable::Misconfigured(why))),
    }
}

/// `namespace/name` of a gateway (the key of its client in the context).
pub fn gateway_key(gateway: &BatchGateway) -> String {
    format!("{}/{}", gateway.namespace().unwrap_or_default(), gateway.name_any())
}

/// Which object and spec a client was built from: a new object or a spec change builds anew.
fn spec_version(gateway: &BatchGateway) -> String {
    format!(
        "{}/{}",
        gateway.uid().unwrap_or_default(),
        gateway.meta().generation.unwrap_or_default()
    )
}

async fn build_client(ctx: &Context, gateway: &BatchGateway) -> Result<(GatewayClient, PollingPolicy), InputError> {
    let ns = gateway.namespace().unwrap_or_default();
    let name = gateway.name_any();
    let unusable = |m: String| InputError::Invalid(format!("BatchGateway {ns}/{name}: {m}"));
    let spec = &gateway.spec;
    let url = spec.url.parse().map_err(|e| unusable(format!("spec.url: {e}")))?;
    let mut config = GatewayConfig::new(url);
    config.headers = spec.headers.clone();
    config.observer = Some(ctx.gateway_observer());
    config.addresses = ctx.addresses.clone();
    config.limits = crate::steps::response_limits(&spec.limits).map_err(|e| unusable(e.to_string()))?;
    let mut fingerprint = Sha256::new();
    fingerprint.update(serde_json::to_vec(&(&spec.url, &spec.headers, &spec.limits)).unwrap_or_default());
    if let Some(auth) = &spec.auth {
        let r = &auth.secret_ref;
        let secret = match get::<Secret>(&ctx.client, &ns, &r.name, "Secret").await {
            Err(InputError::NotFound(m)) => {
                return Err(InputError::NotFound(format!(
                    "BatchGateway {ns}/{name}: spec.auth.secretRef: {m}"
                )));
            }
            other => other?,
        };
        let key = secret_value(&secret, &r.key)
            .ok_or_else(|| unusable(format!("Secret {} has no key {:?} (spec.auth)", r.name, r.key)))?;
        let key = String::from_utf8(key.to_vec())
            .map_err(|_| unusable(format!("Secret {} key {:?} is not text", r.name, r.key)))?;
        fingerprint.update(key.trim());
        config.api_key = Some(ApiKey::new(key.trim()));
    }
    let polling = PollingPolicy {
        initial: spec.polling.initial().map_err(|e| unusable(e.to_string()))?,
        max: spec.polling.max().map_err(|e| unusable(e.to_string()))?,
        stalled: crate::engine::StalledPolicy::from_spec(&spec.stalled_after).map_err(|e| unusable(e.to_string()))?,
    };
    let fingerprint = format!("{:x}", fingerprint.finalize());
    let client = ctx
        .gateway_client(
            &gateway_key(gateway),
            &spec_version(gateway),
            &fingerprint,
            polling,
            || GatewayClient::new(config),
        )
        .map_err(|e| unusable(e.to_string()))?;
    Ok((client, polling))
}

/// Writes the status through the status subresource (server-side apply, one field manager),
/// unless nothing changed.
pub async fn write_status(client: &kube::Client, batch: &Batch, status: &BatchStatus) -> Result<(), Error> {
    if batch.status.as_ref() == Some(status) {
        return Ok(());
    }
    let api = Api::<Batch>::namespaced(client.clone(), &batch.namespace().unwrap_or_default());
    let patch = json!({"apiVersion": "llmbatch.io/v1alpha1", "kind": "Batch", "status": status});
    api.patch_status(
        &batch.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

/// Mirrors the upstream batch id into an annotation, so a restored object re-attaches.
pub async fn annotate_batch_id(client: &kube::Client, batch: &Batch, batch_id: &str) -> Result<(), Error> {
    if batch.annotations().get(BATCH_ID_ANNOTATION).map(String::as_str) == Some(batch_id) {
        return Ok(());
    }
    let api = Api::<Batch>::namespaced(client.clone(), &batch.namespace().unwrap_or_default());
    let patch = json!({"metadata": {"annotations": {BATCH_ID_ANNOTATION: batch_id}}});
    api.patch(&batch.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// Keys of the output Secret this controller writes (a key of these it does not write this
/// time is removed, so a Secret never holds both `output.jsonl` and `output.jsonl.gz`).
const OUTPUT_KEYS: [&str; 4] = ["output.jsonl", "errors.jsonl", "output.jsonl.gz", "errors.jsonl.gz"];

/// Writes the output Secret, only if it is this Batch's: created now (owned by the Batch), or
/// created earlier for it (its controller ownerReference names this Batch's uid). Any other
/// Secret of that name is left byte for byte as it is, and the inner error says whose it is.
/// Creating is a create (never an apply onto what may exist), and updating carries the
/// resourceVersion of the Secret that was checked, so a Secret swapped in between is never
/// written either.
pub async fn write_output_secret(
    client: &kube::Client,
    batch: &Batch,
    name: &str,
    files: BTreeMap<String, Vec<u8>>,
) -> Result<Result<(), String>, Error> {
    let ns = batch.namespace().unwrap_or_default();
    let owner = batch
        .controller_owner_ref(&())
        .ok_or_else(|| Error::Invalid("the Batch has no uid yet".into()))?;
    let api = Api::<Secret>::namespaced(client.clone(), &ns);
    let labels = json!({"app.kubernetes.io/managed-by": MANAGER, "llmbatch.io/batch": batch.name_any()});
    // Created, in most cases; otherwise read (one request either way, never a read first).
    let data: BTreeMap<&String, ByteString> = files.iter().map(|(k, v)| (k, ByteString(v.clone()))).collect();
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": name, "ownerReferences": [owner], "labels": labels},
        "type": "Opaque",
        "data": data,
    }))
    .map_err(|e| Error::Invalid(format!("output Secret {name}: {e}")))?;
    let params = PostParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    let existing = match api.create(&params, &secret).await {
        Ok(_) => return Ok(Ok(())),
        Err(kube::Error::Api(e)) if e.code == 409 => api.get(name).await?,
        Err(e) => return Err(e.into()),
    };
    if let Some(why) = not_owned(&existing, &owner.uid) {
        return Ok(Err(why));
    }
    let mut data: BTreeMap<String, serde_json::Value> = OUTPUT_KEYS
        .iter()
        .filter(|key| existing.data.as_ref().is_some_and(|d| d.contains_key(**key)))
        .map(|key| (key.to_string(), serde_json::Value::Null))
        .collect();
    for (key, bytes) in files {
        data.insert(key, serde_json::to_value(ByteString(bytes)).unwrap_or_default());
    }
    let patch = json!({
        "metadata": {"resourceVersion": existing.resource_version(), "labels": labels},
        "data": data,
    });
    let params = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    api.patch(name, &params, &Patch::Merge(&patch)).await?;
    Ok(Ok(()))
}

/// Why `secret` is not the output Secret of the Batch with `uid` (`None`: it is, by its
/// controller ownerReference).
pub fn not_owned(secret: &Secret, uid: &str) -> Option<String> {
    let owners = secret.metadata.owner_references.as_deref().unwrap_or_default();
    let controller = owners.iter().find(|o| o.controller == Some(true));
    if controller.is_some_and(|o| o.uid == uid) {
        return None;
    }
    let name = secret.name_any();
    let whose = match controller {
        Some(o) => format!("belongs to {} {} (its controller)", o.kind, o.name),
        None => "was not created by this Batch".to_string(),
    };
    Some(format!(
        "Secret {name} already exists and {whose}: it was left untouched; set another spec.output.secret.name, \
         or delete that Secret"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(owners: serde_json::Value) -> Secret {
        serde_json::from_value(json!({"metadata": {"name": "victim", "ownerReferences": owners}})).unwrap()
    }

    fn owner(kind: &str, name: &str, uid: &str, controller: bool) -> serde_json::Value {
        json!({"apiVersion": "v1", "kind": kind, "name": name, "uid": uid, "controller": controller})
    }

    #[test]
    fn only_a_secret_controlled_by_this_batch_is_its_own() {
        assert_eq!(
            not_owned(&secret(json!([owner("Batch", "b", "u-1", true)])), "u-1"),
            None
        );
        let other = not_owned(&secret(json!([owner("ConfigMap", "keys", "u-2", true)])), "u-1").unwrap();
        assert!(other.contains("belongs to ConfigMap keys (its controller)"), "{other}");
        // A Batch of the same name that was deleted and created again is another Batch.
        let earlier = not_owned(&secret(json!([owner("Batch", "b", "u-0", true)])), "u-1").unwrap();
        assert!(earlier.contains("belongs to Batch b"), "{earlier}");
        for owners in [json!(null), json!([]), json!([owner("Batch", "b", "u-1", false)])] {
            let none = not_owned(&secret(owners), "u-1").unwrap();
            assert!(
                none.contains("Secret victim already exists and was not created by this Batch"),
                "{none}"
            );
        }
    }
}
