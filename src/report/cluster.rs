//! Reports fed from the API server (`kubectl llmbatch report`): the Batch or BatchSweep and what
//! it names (its input ConfigMap or Secret, its BatchGateway and PriceList, its object-store
//! Secret) are read into [`Manifests`] as if they were files, so the target and the join are the
//! ones `report -f` uses; [`Cluster`] is the [`Source`](super::Source) of the statuses (the
//! objects' own) and the results: each Batch's output Secret, written to a scratch file while its
//! rows are made, or its object-store prefix. A PVC cannot be read from outside the cluster.

use std::io::{Read, Write};
use std::path::Path;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;
use kube::{Client, Resource, ResourceExt};

use super::ReportError;
use super::source::{BatchFiles, ERRORS_FILE, OUTPUT_FILE, block_on, fetch, scratch};
use super::target::Attempt;
use crate::api::{Batch, BatchGateway, BatchSweep, BatchSweepStatus, Conditions, PriceList, condition_types};
use crate::local::{Located, Manifests, Origin};

/// Where the statuses and results of a report in a cluster are read.
#[derive(Clone)]
pub struct Cluster {
    client: Client,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cluster")
    }
}

/// The object a cluster report is about, as the API server returned it.
pub enum Subject {
    Batch(Box<Batch>),
    Sweep(Box<BatchSweep>),
}

fn api_error(what: String) -> impl FnOnce(kube::Error) -> ReportError {
    move |e| ReportError::Fetch(format!("reading {what}: {e}"))
}

impl Cluster {
    pub fn new(client: Client) -> Self {
        Cluster { client }
    }

    fn get<K>(&self, namespace: &str, name: &str, what: &str) -> Result<Option<K>, ReportError>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let api = Api::<K>::namespaced(self.client.clone(), namespace);
        block_on(api.get_opt(name)).map_err(api_error(format!("{what} {namespace}/{name}")))
    }

    pub(super) fn has_batch(&self, namespace: &str, name: &str) -> Result<bool, ReportError> {
        Ok(self.get::<Batch>(namespace, name, "Batch")?.is_some())
    }

    pub(super) fn sweep_status(&self, namespace: &str, name: &str) -> Result<Option<BatchSweepStatus>, ReportError> {
        Ok(self
            .get::<BatchSweep>(namespace, name, "BatchSweep")?
            .and_then(|s| s.status))
    }

    /// The results of `attempt`: `None` when the Batch does not exist (a child not created yet).
    pub(super) fn batch(&self, namespace: &str, attempt: &Attempt) -> Result<Option<BatchFiles>, ReportError> {
        let Some(batch) = self.get::<Batch>(namespace, &attempt.name, "Batch")? else {
            return Ok(None);
        };
        let mut files = BatchFiles {
            name: attempt.name.clone(),
            status: batch.status.clone(),
            ..Default::default()
        };
        if let Some(prefix) = &attempt.objects {
            fetch(prefix, &mut files)?;
            return Ok(Some(files));
        }
        let output = batch.spec.output.clone().unwrap_or_default();
        let at = format!("Batch {namespace}/{}", attempt.name);
        if let Some(pvc) = &output.pvc {
            return Err(ReportError::Input(format!(
                "{at} wrote its results to PersistentVolumeClaim {} (path {:?}), which cannot be read from outside \
                 the cluster: copy output.jsonl and errors.jsonl off the volume (from a pod mounting the claim) and \
                 run `llm-batch-operator report -f <the Batch's YAML> --out <the copy>`",
                pvc.claim_name,
                match pvc.path.as_str() {
                    "" => "/",
                    path => path,
                }
            )));
        }
        match &output.secret {
            Some(secret) => self.secret_files(namespace, &batch, &secret.name, &mut files)?,
            None if finished(&batch) => {
                let gateway = batch
                    .status
                    .as_ref()
                    .and_then(|s| s.gateway.clone())
                    .unwrap_or_default();
                return Err(ReportError::Input(format!(
                    "{at} has no spec.output: its results stayed on the gateway (output file {}, error file {}); \
                     download them and run `llm-batch-operator report` on the copy",
                    gateway.output_file_id.as_deref().unwrap_or("none"),
                    gateway.error_file_id.as_deref().unwrap_or("none")
                )));
            }
            None => {}
        }
        Ok(Some(files))
    }

    /// `output.jsonl` and `errors.jsonl` of Secret `name` (`.gz` keys decompressed) in a scratch
    /// directory. No Secret yet: no files, unless the Batch finished (then why not).
    fn secret_files(
        &self,
        namespace: &str,
        batch: &Batch,
        name: &str,
        files: &mut BatchFiles,
    ) -> Result<(), ReportError> {
        let Some(secret) = self.get::<Secret>(namespace, name, "Secret")? else {
            if !finished(batch) {
                return Ok(());
            }
            let why = batch
                .status
                .as_ref()
                .and_then(|s| s.conditions.condition(condition_types::OUTPUT_STORED))
                .filter(|c| c.status == "False")
                .map(|c| format!(": {}", c.message))
                .unwrap_or_default();
            return Err(ReportError::Fetch(format!(
                "Batch {namespace}/{} finished and its output Secret {name} does not exist{why}",
                batch.name_any()
            )));
        };
        let data = secret.data.unwrap_or_default();
        let (dir, fetched) = scratch()?;
        for (file, slot) in [(OUTPUT_FILE, &mut files.output), (ERRORS_FILE, &mut files.errors)] {
            let path = dir.join(file);
            if let Some(bytes) = data.get(file) {
                std::fs::write(&path, &bytes.0).map_err(|e| ReportError::io(&path, e))?;
                *slot = Some(path);
            } else if let Some(bytes) = data.get(&format!("{file}.gz")) {
                gunzip(&bytes.0, &path)?;
                *slot = Some(path);
            }
        }
        files.fetched = Some(fetched);
        Ok(())
    }
}

fn finished(batch: &Batch) -> bool {
    batch
        .status
        .as_ref()
        .and_then(|s| s.phase)
        .is_some_and(|p| p.is_terminal())
}

/// Decompresses `gz` into `path`, streaming, at most a result file's limit.
fn gunzip(gz: &[u8], path: &Path) -> Result<(), ReportError> {
    let limit = crate::gateway::ResponseLimits::default().file_bytes;
    let mut file = std::fs::File::create(path).map_err(|e| ReportError::io(path, e))?;
    let mut decoder = flate2::read::GzDecoder::new(gz).take(limit + 1);
    let written = std::io::copy(&mut decoder, &mut file).map_err(|e| ReportError::io(path, e))?;
    if written > limit {
        return Err(ReportError::Fetch(format!(
            "{}: more than a result file may hold ({limit} bytes) once decompressed",
            path.display()
        )));
    }
    file.flush().map_err(|e| ReportError::io(path, e))
}

/// What a report of `subject` reads besides its results, as manifests: the object, its input's
/// ConfigMap or Secret (unless `with_input` is false: a local copy replaces it), its gateway
/// (when it exists: its prices) and PriceList, and the Secret of its output's object store.
pub async fn manifests(client: &Client, subject: Subject, with_input: bool) -> Result<Manifests, ReportError> {
    let mut manifests = Manifests::default();
    let (namespace, at, input, gateway, output) = match &subject {
        Subject::Batch(b) => (
            b.namespace().unwrap_or_default(),
            format!("Batch {}/{}", b.namespace().unwrap_or_default(), b.name_any()),
            b.spec.input.clone(),
            b.spec.gateway_ref.name.clone(),
            b.spec.output.clone(),
        ),
        Subject::Sweep(s) => (
            s.namespace().unwrap_or_default(),
            format!("BatchSweep {}/{}", s.namespace().unwrap_or_default(), s.name_any()),
            s.spec.input.clone(),
            s.spec.template.gateway_ref.name.clone(),
            s.spec.template.output.clone(),
        ),
    };
    let ns = namespace.as_str();
    if with_input {
        if let Some(r) = &input.config_map {
            let map = required::<ConfigMap>(client, ns, &r.name, &format!("{at} spec.input.configMap")).await?;
            manifests.config_maps.insert(key(ns, &r.name), located(map));
        }
        if let Some(r) = &input.secret {
            let secret = required::<Secret>(client, ns, &r.name, &format!("{at} spec.input.secret")).await?;
            manifests.secrets.insert(key(ns, &r.name), located(secret));
        }
    }
    let store = output.as_ref().and_then(|o| o.object_store.as_ref());
    if let Some(r) = store.and_then(|s| s.secret_ref.as_ref()) {
        let secret = required::<Secret>(client, ns, &r.name, &format!("{at} output objectStore.secretRef")).await?;
        manifests.secrets.insert(key(ns, &r.name), located(secret));
    }
    add_gateway(client, ns, &gateway, &mut manifests).await?;
    match subject {
        Subject::Batch(b) => {
            manifests.batches.insert(key(ns, &b.name_any()), located(*b));
        }
        Subject::Sweep(s) => {
            manifests.sweeps.insert(key(ns, &s.name_any()), located(*s));
        }
    }
    Ok(manifests)
}

/// BatchGateway `namespace/gateway` and the PriceList it references, when it exists (a report
/// without the gateway has no prices).
async fn add_gateway(client: &Client, ns: &str, gateway: &str, manifests: &mut Manifests) -> Result<(), ReportError> {
    let gateways = Api::<BatchGateway>::namespaced(client.clone(), ns);
    let found = gateways
        .get_opt(gateway)
        .await
        .map_err(api_error(format!("BatchGateway {ns}/{gateway}")))?;
    if let Some(found) = found {
        let list = found.spec.pricing.as_ref().and_then(|p| p.price_list_ref.clone());
        if let Some(r) = list {
            let what = format!(
                "PriceList {} (spec.pricing.priceListRef of BatchGateway {ns}/{gateway})",
                r.name
            );
            let list = Api::<PriceList>::all(client.clone())
                .get_opt(&r.name)
                .await
                .map_err(api_error(what.clone()))?
                .ok_or_else(|| ReportError::Input(format!("{what} does not exist")))?;
            manifests.price_lists.insert(r.name.clone(), located(list));
        }
        manifests.gateways.insert(key(ns, gateway), located(found));
    }
    Ok(())
}

async fn required<K>(client: &Client, namespace: &str, name: &str, what: &str) -> Result<K, ReportError>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    let kind = K::kind(&K::DynamicType::default()).to_string();
    Api::<K>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(api_error(format!("{kind} {namespace}/{name}")))?
        .ok_or_else(|| ReportError::Input(format!("{what}: {kind} {namespace}/{name} does not exist")))
}

fn key(namespace: &str, name: &str) -> (String, String) {
    (namespace.to_string(), name.to_string())
}

fn located<T>(object: T) -> Located<T> {
    Located {
        object,
        origin: Origin::api_server(),
    }
}
