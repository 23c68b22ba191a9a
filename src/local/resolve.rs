//! Turning manifests into runnable plans: each Batch with its input bytes and gateway,
//! resolved from the same files, with errors that say which object and field to fix.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::manifests::{Located, Manifests};
use crate::api::{Batch, BatchGatewaySpec, BatchInput, Endpoint, KeyRef, ObjectStoreRef, Polling, PvcSink};
use crate::engine;
use crate::io::ObjectInput;
use crate::io::object_storage::{self, ObjectLocation, OpenedStores};
use crate::job_protocol::API_KEY_ENV;
use crate::pricing::{PriceListLookup, Prices};

/// One Batch, ready to run.
pub struct Plan {
    pub namespace: String,
    pub name: String,
    pub batch: Located<Batch>,
    pub input: Bytes,
    pub input_digest: String,
    pub gateway: GatewayTarget,
    /// `spec.input.objectStore`, read as a stream when the batch runs (`input` is then empty).
    pub object_input: Option<ObjectInput>,
    /// `spec.output.objectStore`: the prefix the results are written under.
    pub object_output: Option<ObjectLocation>,
    /// `spec.output.pvc` mapped under `--pvc-root`.
    pub pvc_output: Option<PvcOutput>,
    /// `spec.notify`, else the BatchGateway's (a sweep's children get none: see `local::run`).
    pub webhook: Option<LocalWebhook>,
}

/// A webhook with its signing key read from the files.
#[derive(Clone)]
pub struct LocalWebhook {
    pub notify: crate::api::Notify,
    pub key: Option<Bytes>,
}

impl std::fmt::Debug for LocalWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalWebhook")
            .field("signed", &self.key.is_some())
            .finish()
    }
}

/// A claim's directory on this machine, and how status names it.
#[derive(Clone, Debug)]
pub struct PvcOutput {
    /// `<pvc-root>/<claimName>/<path>`
    pub dir: PathBuf,
    /// `pvc://<claimName>/<path>`
    pub location: String,
}

impl Plan {
    /// `namespace/name`.
    pub fn object(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Where a Batch goes.
#[derive(Clone, Debug)]
pub enum GatewayTarget {
    /// The built-in simulator, started in-process (with the prices of the BatchGateway it
    /// stands in for under `--simulator`).
    Builtin {
        polling: Polling,
        prices: Option<Arc<Prices>>,
    },
    /// A gateway from a BatchGateway manifest.
    Remote(Box<RemoteGateway>),
}

/// A BatchGateway resolved with its key.
#[derive(Clone)]
pub struct RemoteGateway {
    pub name: String,
    pub spec: BatchGatewaySpec,
    /// The API key; never printed (see the Debug impl).
    pub api_key: Option<String>,
    /// `spec.pricing`, with its PriceList from the files.
    pub prices: Option<Arc<Prices>>,
}

impl GatewayTarget {
    /// The prices its Batches are costed with, when the BatchGateway has `spec.pricing`.
    pub fn prices(&self) -> Option<Arc<Prices>> {
        match self {
            GatewayTarget::Builtin { prices, .. } => prices.clone(),
            GatewayTarget::Remote(gw) => gw.prices.clone(),
        }
    }
}

impl std::fmt::Debug for RemoteGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteGateway")
            .field("name", &self.name)
            .field("url", &self.spec.url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Resolves every Batch. `force_simulator` sends all of them to the built-in simulator.
pub fn plan_all(
    manifests: &Manifests,
    force_simulator: bool,
    pvc_root: Option<&Path>,
) -> Result<Vec<Plan>, Vec<String>> {
    let mut plans = Vec::new();
    let mut problems = Vec::new();
    let stores = OpenedStores::default();
    // In the order of the files and of the documents in each (a sweep's children, which share
    // their sweep's document, by name): the order admission takes them in, as `kubectl apply
    // -f` would create them.
    let place = |origin: &super::manifests::Origin| {
        let file = manifests.files.iter().position(|f| *f == origin.file);
        (file.unwrap_or(usize::MAX), origin.document)
    };
    let mut batches: Vec<_> = manifests.batches.iter().collect();
    batches.sort_by_key(|(_, batch)| place(&batch.origin));
    for ((namespace, name), batch) in batches {
        match plan_one(manifests, &stores, namespace, name, batch, force_simulator, pvc_root) {
            Ok(plan) => plans.push(plan),
            Err(mut p) => problems.append(&mut p),
        }
    }
    if problems.is_empty() { Ok(plans) } else { Err(problems) }
}

fn plan_one(
    manifests: &Manifests,
    stores: &OpenedStores,
    namespace: &str,
    name: &str,
    batch: &Located<Batch>,
    force_simulator: bool,
    pvc_root: Option<&Path>,
) -> Result<Plan, Vec<String>> {
    let at = format!("{} Batch {namespace}/{name}", batch.origin);
    let spec = &batch.object.spec;
    let mut problems: Vec<String> = engine::check_spec(spec, None)
        .into_iter()
        .map(|p| format!("{at}: {p}"))
        .collect();
    let input = input_bytes(manifests, namespace, &spec.input, spec.endpoint).map_err(|p| format!("{at}: {p}"));
    let gateway =
        gateway_target(manifests, namespace, &spec.gateway_ref.name, force_simulator).map_err(|p| format!("{at}: {p}"));
    let (input, gateway) = match (input, gateway) {
        (Ok(i), Ok(g)) if problems.is_empty() => (i, g),
        (i, g) => {
            problems.extend(i.err());
            problems.extend(g.err());
            return Err(problems);
        }
    };
    let object_input = match &spec.input.object_store {
        Some(reference) => match opened(manifests, stores, namespace, reference, "spec.input.objectStore") {
            Ok(location) => Some(ObjectInput {
                location,
                range: spec.input.byte_range.map(|r| r.start..r.end),
                rewrite: crate::steps::rewrite(&spec.input),
                endpoint: spec.endpoint.path().to_string(),
                limits: limits(&gateway),
                ends_at_a_line: crate::sweep::ValidatedInput::of(&batch.object).is_some(),
            }),
            Err(p) => return Err(vec![format!("{at}: {p}")]),
        },
        None => None,
    };
    let object_output = match spec.output.as_ref().and_then(|o| o.object_store.as_ref()) {
        Some(reference) => match opened(manifests, stores, namespace, reference, "spec.output.objectStore") {
            Ok(location) => Some(location),
            Err(p) => return Err(vec![format!("{at}: {p}")]),
        },
        None => None,
    };
    let pvc_output = match spec.output.as_ref().and_then(|o| o.pvc.as_ref()) {
        Some(pvc) => Some(pvc_output(pvc, pvc_root).map_err(|p| vec![format!("{at}: {p}")])?),
        None => None,
    };
    let gateway_notify = match &gateway {
        GatewayTarget::Remote(gw) => gw.spec.notify.as_ref(),
        GatewayTarget::Builtin { .. } => None,
    };
    let webhook = match spec.notify.as_ref().or(gateway_notify) {
        Some(notify) => Some(webhook(manifests, namespace, notify).map_err(|p| vec![format!("{at}: {p}")])?),
        None => None,
    };
    Ok(Plan {
        namespace: namespace.to_string(),
        name: name.to_string(),
        batch: batch.clone(),
        input_digest: input_digest(&spec.input, &input),
        input,
        gateway,
        object_input,
        object_output,
        pvc_output,
        webhook,
    })
}

/// `notify` with its signing key from the files, checked as a signing key.
fn webhook(manifests: &Manifests, namespace: &str, notify: &crate::api::Notify) -> Result<LocalWebhook, String> {
    let key = match &notify.signing_secret_ref {
        Some(r) => {
            let key = secret_key(manifests, namespace, r).map_err(|e| format!("spec.notify.signingSecretRef: {e}"))?;
            crate::notify::sign::SigningKey::from_secret(&key)
                .map_err(|e| format!("spec.notify.signingSecretRef: Secret {namespace}/{}: {e}", r.name))?;
            Some(key)
        }
        None => None,
    };
    Ok(LocalWebhook {
        notify: notify.clone(),
        key,
    })
}

/// Where a claim's results go in `run -f`: `<pvc-root>/<claimName>/<path>`.
fn pvc_output(pvc: &PvcSink, pvc_root: Option<&Path>) -> Result<PvcOutput, String> {
    let Some(root) = pvc_root else {
        return Err(format!(
            "spec.output.pvc: claim {} needs --pvc-root DIR in run -f (the claim is then DIR/{}/)",
            pvc.claim_name, pvc.claim_name
        ));
    };
    let relative = Path::new(&pvc.path);
    let escapes = relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
    let claim = Path::new(&pvc.claim_name);
    if escapes || claim.components().count() != 1 || !matches!(claim.components().next(), Some(Component::Normal(_))) {
        return Err(format!(
            "spec.output.pvc: claimName {:?} and path {:?} must stay inside the claim (no /, .. or absolute paths)",
            pvc.claim_name, pvc.path
        ));
    }
    Ok(PvcOutput {
        dir: root.join(&pvc.claim_name).join(relative),
        location: format!("pvc://{}/{}", pvc.claim_name, pvc.path.trim_start_matches("./")),
    })
}

/// What identifies the input, so an edited one is noticed on resume.
fn input_digest(spec: &BatchInput, bytes: &[u8]) -> String {
    let shaping = serde_json::to_vec(&(&spec.byte_range, &spec.overrides)).expect("serialises");
    match (&spec.file_id, &spec.object_store) {
        (Some(file_id), _) => format!("fileId:{file_id}"),
        (_, Some(reference)) => format!(
            "objectStore:{:x}",
            Sha256::digest(serde_json::to_vec(&(reference, shaping)).expect("serialises"))
        ),
        _ if spec.byte_range.is_none() && spec.overrides.is_none() => format!("{:x}", Sha256::digest(bytes)),
        _ => format!("{:x}+{:x}", Sha256::digest(bytes), Sha256::digest(shaping)),
    }
}

/// [`location`], through a store already opened for the same bucket and credentials (a
/// sweep's children all read one object).
fn opened(
    manifests: &Manifests,
    stores: &OpenedStores,
    namespace: &str,
    reference: &ObjectStoreRef,
    field: &str,
) -> Result<ObjectLocation, String> {
    let credentials = format!("{namespace} {:?}", reference.secret_ref.as_ref().map(|r| &r.name));
    stores.location(reference, &credentials, || {
        location(manifests, namespace, reference, field)
    })
}

/// An object-store location with its credentials: from the referenced Secret (which must be
/// among the files), or without `secretRef` from the environment (`AWS_ACCESS_KEY_ID`...).
pub fn location(
    manifests: &Manifests,
    namespace: &str,
    reference: &ObjectStoreRef,
    field: &str,
) -> Result<ObjectLocation, String> {
    let (credentials, from) = match &reference.secret_ref {
        Some(r) => {
            let secret = manifests
                .secrets
                .get(&(namespace.to_string(), r.name.clone()))
                .ok_or_else(|| {
                    format!(
                        "{field}.secretRef: Secret {namespace}/{} is not in the files given",
                        r.name
                    )
                })?;
            let mut values = BTreeMap::new();
            for (key, value) in secret.object.data.iter().flatten() {
                values.insert(key.clone(), String::from_utf8_lossy(&value.0).into_owned());
            }
            for (key, value) in secret.object.string_data.iter().flatten() {
                values.insert(key.clone(), value.clone());
            }
            (values, format!("Secret {namespace}/{}", r.name))
        }
        None => {
            let names = object_storage::S3_KEYS
                .iter()
                .chain(object_storage::GCS_KEYS)
                .chain(object_storage::AZURE_KEYS);
            let values = names
                .filter_map(|name| Some((name.to_string(), std::env::var(name).ok()?)))
                .collect();
            (values, "the environment".to_string())
        }
    };
    let addresses = std::sync::Arc::new(crate::net::AddressPolicy::local());
    object_storage::open(reference, &credentials, &from, &addresses).map_err(|e| format!("{field}: {e}"))
}

/// The bytes of an input held in the files (ConfigMap, Secret, inline requests); empty for one
/// already on the gateway or in object storage.
pub fn input_bytes(
    manifests: &Manifests,
    namespace: &str,
    input: &BatchInput,
    endpoint: Endpoint,
) -> Result<Bytes, String> {
    if input.file_id.is_some() || input.object_store.is_some() {
        // Already on the gateway, or streamed from object storage when the batch runs.
        return Ok(Bytes::new());
    }
    match (&input.config_map, &input.secret, input.requests_jsonl(endpoint)) {
        (None, None, Some(jsonl)) => Ok(Bytes::from(jsonl)),
        (Some(r), None, None) => config_map_key(manifests, namespace, r),
        (None, Some(r), None) => secret_key(manifests, namespace, r).map_err(|e| format!("spec.input.secret: {e}")),
        _ => Err("spec.input: needs exactly one source: configMap, secret, requests or fileId".to_string()),
    }
}

fn config_map_key(manifests: &Manifests, namespace: &str, r: &KeyRef) -> Result<Bytes, String> {
    let cm = manifests
        .config_maps
        .get(&(namespace.to_string(), r.name.clone()))
        .ok_or_else(|| {
            format!(
                "spec.input.configMap: ConfigMap {namespace}/{} is not in the files given",
                r.name
            )
        })?;
    let data = cm
        .object
        .data
        .as_ref()
        .and_then(|d| d.get(&r.key))
        .map(|s| Bytes::from(s.clone()));
    let binary = cm
        .object
        .binary_data
        .as_ref()
        .and_then(|d| d.get(&r.key))
        .map(|b| Bytes::from(b.0.clone()));
    data.or(binary).ok_or_else(|| {
        let keys = keys_of(
            cm.object
                .data
                .iter()
                .flat_map(|d| d.keys())
                .chain(cm.object.binary_data.iter().flat_map(|d| d.keys())),
        );
        format!(
            "spec.input.configMap.key: ConfigMap {namespace}/{} has no key {:?} (it has: {keys})",
            r.name, r.key
        )
    })
}

/// A Secret's key from `data` or `stringData`. Values never appear in errors.
fn secret_key(manifests: &Manifests, namespace: &str, r: &KeyRef) -> Result<Bytes, String> {
    let secret = manifests
        .secrets
        .get(&(namespace.to_string(), r.name.clone()))
        .ok_or_else(|| format!("Secret {namespace}/{} is not in the files given", r.name))?;
    let data = secret
        .object
        .data
        .as_ref()
        .and_then(|d| d.get(&r.key))
        .map(|b| Bytes::from(b.0.clone()));
    let string = secret
        .object
        .string_data
        .as_ref()
        .and_then(|d| d.get(&r.key))
        .map(|s| Bytes::from(s.clone()));
    data.or(string).ok_or_else(|| {
        let keys = keys_of(
            secret
                .object
                .data
                .iter()
                .flat_map(|d| d.keys())
                .chain(secret.object.string_data.iter().flat_map(|d| d.keys())),
        );
        format!("Secret {namespace}/{} has no key {:?} (it has: {keys})", r.name, r.key)
    })
}

fn keys_of<'a>(keys: impl Iterator<Item = &'a String>) -> String {
    let keys: Vec<&str> = keys.map(String::as_str).collect();
    if keys.is_empty() {
        "no keys".to_string()
    } else {
        keys.join(", ")
    }
}

fn gateway_target(
    manifests: &Manifests,
    namespace: &str,
    name: &str,
    force_simulator: bool,
) -> Result<GatewayTarget, String> {
    let Some(gateway) = manifests.gateways.get(&(namespace.to_string(), name.to_string())) else {
        return Ok(GatewayTarget::Builtin {
            polling: Polling::default(),
            prices: None,
        });
    };
    let spec = gateway.object.spec.clone();
    let at = format!("BatchGateway {namespace}/{name} ({})", gateway.origin);
    let prices = prices(manifests, spec.pricing.as_ref()).map_err(|p| format!("{at}: {p}"))?;
    if force_simulator {
        return Ok(GatewayTarget::Builtin {
            polling: spec.polling,
            prices,
        });
    }
    let problems = [
        spec.polling.initial().err(),
        spec.polling.max().err(),
        spec.limits.max_bytes().err(),
        spec.stalled_after.validating().err(),
        spec.stalled_after.in_progress().err(),
        spec.stalled_after.finalizing().err(),
    ];
    if let Some(problem) = problems.into_iter().flatten().next() {
        return Err(format!("{at}: {problem}"));
    }
    url::Url::parse(&spec.url).map_err(|e| format!("{at}: spec.url {:?}: {e}", spec.url))?;
    let api_key = match &spec.auth {
        None => None,
        Some(auth) => Some(
            api_key(manifests, namespace, &auth.secret_ref).map_err(|e| format!("{at}: spec.auth.secretRef: {e}"))?,
        ),
    };
    let gateway = RemoteGateway {
        name: name.to_string(),
        spec,
        api_key,
        prices,
    };
    Ok(GatewayTarget::Remote(Box::new(gateway)))
}

/// The prices of BatchGateway `namespace/name` in the files: `None` when it is not there or has
/// no `spec.pricing` (`llm-batch-operator report` costs each request with them).
pub fn gateway_prices(manifests: &Manifests, namespace: &str, name: &str) -> Result<Option<Arc<Prices>>, String> {
    match manifests.gateways.get(&(namespace.to_string(), name.to_string())) {
        Some(gateway) => prices(manifests, gateway.object.spec.pricing.as_ref()),
        None => Ok(None),
    }
}

/// A gateway's prices: `spec.pricing`, with the PriceList it references (which must be among
/// the files).
fn prices(manifests: &Manifests, pricing: Option<&crate::api::Pricing>) -> Result<Option<Arc<Prices>>, String> {
    let Some(pricing) = pricing else {
        return Ok(None);
    };
    let list = match &pricing.price_list_ref {
        None => PriceListLookup::NotReferenced,
        Some(r) => match manifests.price_lists.get(&r.name) {
            Some(list) => PriceListLookup::Found(&list.object.spec),
            None => {
                return Err(format!(
                    "spec.pricing.priceListRef: PriceList {} is not in the files given",
                    r.name
                ));
            }
        },
    };
    let prices = Prices::new(pricing, list).map_err(|e| e.to_string())?;
    Ok(Some(Arc::new(prices)))
}

fn api_key(manifests: &Manifests, namespace: &str, r: &KeyRef) -> Result<String, String> {
    let from_env = || std::env::var(API_KEY_ENV).ok().filter(|k| !k.is_empty());
    let bytes = match secret_key(manifests, namespace, r) {
        Ok(bytes) => bytes,
        Err(e) => return from_env().ok_or_else(|| format!("{e}; add the Secret to the files or set {API_KEY_ENV}")),
    };
    let key = String::from_utf8(bytes.to_vec())
        .map_err(|_| format!("Secret {namespace}/{} key {:?} is not UTF-8 text", r.name, r.key))?;
    Ok(key.trim().to_string())
}

/// Request limits for validation: the gateway's, or OpenAI's for the simulator; none for a
/// gateway in `mode: Direct` (lines are sent one by one, there is no batch to bound).
pub fn limits(target: &GatewayTarget) -> crate::jsonl::Limits {
    match target {
        GatewayTarget::Builtin { .. } => crate::jsonl::Limits::default(),
        // An Auto gateway is validated as a batch (the stricter), before any probe; a bad
        // quantity was reported when the gateway was read.
        GatewayTarget::Remote(gw) => {
            engine::input_limits(gw.spec.mode.resolve(None), &gw.spec.limits).unwrap_or_default()
        }
    }
}
