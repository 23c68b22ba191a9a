//! Reading Batch, BatchSweep, BatchGateway, ConfigMap and Secret documents from YAML files, the way
//! `kubectl apply -f` would, with errors that name the file, the document and the field.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::api::{Batch, BatchGateway, BatchSweep};

/// Objects keyed by `(namespace, name)`.
pub type Objects<T> = BTreeMap<(String, String), Located<T>>;

/// An object and where it was read from.
#[derive(Clone, Debug)]
pub struct Located<T> {
    pub object: T,
    pub origin: Origin,
}

/// A document in a file: `examples/quickstart/batch.yaml (document 2)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    /// 1-based position of the document in its file.
    pub document: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (document {})", self.file.display(), self.document)
    }
}

/// Everything `run -f` read.
#[derive(Debug, Default)]
pub struct Manifests {
    pub batches: Objects<Batch>,
    pub sweeps: Objects<BatchSweep>,
    pub gateways: Objects<BatchGateway>,
    pub config_maps: Objects<ConfigMap>,
    pub secrets: Objects<Secret>,
    /// Documents of other kinds, skipped: `Kind name in origin`.
    pub skipped: Vec<String>,
}

/// A manifest that cannot be used; the message says where and what.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ManifestError(pub String);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypeMeta {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    metadata: NameMeta,
}

#[derive(Deserialize, Default)]
struct NameMeta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
}

/// The namespace of documents that name none.
pub const DEFAULT_NAMESPACE: &str = "default";

impl Manifests {
    /// Reads every `.yaml`/`.yml` file named, or found directly inside a named directory.
    pub fn load(paths: &[PathBuf]) -> Result<Self, ManifestError> {
        let mut manifests = Manifests::default();
        for file in yaml_files(paths)? {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| ManifestError(format!("{}: cannot read: {e}", file.display())))?;
            manifests.add_file(&file, &text)?;
        }
        if manifests.batches.is_empty() && manifests.sweeps.is_empty() {
            return Err(ManifestError(format!(
                "no Batch or BatchSweep (apiVersion llmbatch.io/v1alpha1) found in {}",
                paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(manifests)
    }

    fn add_file(&mut self, file: &Path, text: &str) -> Result<(), ManifestError> {
        for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let origin = Origin {
                file: file.to_path_buf(),
                document: index + 1,
            };
            let value = serde_yaml::Value::deserialize(document)
                .map_err(|e| ManifestError(format!("{origin}: not valid YAML: {e}")))?;
            if value.is_null() {
                continue;
            }
            self.add_document(value, origin)?;
        }
        Ok(())
    }

    fn add_document(&mut self, value: serde_yaml::Value, origin: Origin) -> Result<(), ManifestError> {
        let meta: TypeMeta = serde_yaml::from_value(value.clone())
            .map_err(|e| ManifestError(format!("{origin}: not a Kubernetes object: {e}")))?;
        let name = meta
            .metadata
            .name
            .ok_or_else(|| ManifestError(format!("{origin}: {} has no metadata.name", meta.kind)))?;
        let namespace = meta.metadata.namespace.unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
        let key = (namespace, name);
        match (meta.api_version.as_str(), meta.kind.as_str()) {
            ("llmbatch.io/v1alpha1", "Batch") => {
                insert(&mut self.batches, "Batch", key, parse(value, &origin, "Batch")?, origin)
            }
            ("llmbatch.io/v1alpha1", "BatchSweep") => insert(
                &mut self.sweeps,
                "BatchSweep",
                key,
                parse(value, &origin, "BatchSweep")?,
                origin,
            ),
            ("llmbatch.io/v1alpha1", "BatchGateway") => insert(
                &mut self.gateways,
                "BatchGateway",
                key,
                parse(value, &origin, "BatchGateway")?,
                origin,
            ),
            ("v1", "ConfigMap") => insert(
                &mut self.config_maps,
                "ConfigMap",
                key,
                parse(value, &origin, "ConfigMap")?,
                origin,
            ),
            ("v1", "Secret") => insert(
                &mut self.secrets,
                "Secret",
                key,
                parse(value, &origin, "Secret")?,
                origin,
            ),
            ("llmbatch.io/v1alpha1", kind) => Err(ManifestError(format!(
                "{origin}: {kind} {}/{} is not supported by run -f yet",
                key.0, key.1
            ))),
            (_, kind) => {
                self.skipped.push(format!("{kind} {}/{} in {origin}", key.0, key.1));
                Ok(())
            }
        }
    }
}

fn parse<T: DeserializeOwned>(value: serde_yaml::Value, origin: &Origin, kind: &str) -> Result<T, ManifestError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        ManifestError(format!("{origin}: {kind} field {path}: {}", e.into_inner()))
    })
}

fn insert<T>(
    into: &mut Objects<T>,
    kind: &str,
    key: (String, String),
    object: T,
    origin: Origin,
) -> Result<(), ManifestError> {
    if let Some(first) = into.get(&key) {
        return Err(ManifestError(format!(
            "{origin}: {kind} {}/{} is defined twice (first in {})",
            key.0, key.1, first.origin
        )));
    }
    into.insert(key, Located { object, origin });
    Ok(())
}

fn yaml_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ManifestError> {
    let mut files = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|e| ManifestError(format!("{}: {e}", path.display())))?;
        if meta.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| ManifestError(format!("{}: {e}", path.display())))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(text: &str) -> Result<Manifests, ManifestError> {
        let mut m = Manifests::default();
        m.add_file(Path::new("x.yaml"), text)?;
        Ok(m)
    }

    #[test]
    fn reads_every_kind_and_skips_others() {
        let m = load_str(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: in}\ndata: {batch.jsonl: x}\n---\n\
             apiVersion: llmbatch.io/v1alpha1\nkind: Batch\nmetadata: {name: b, namespace: team}\n\
             spec: {gatewayRef: {name: gw}, endpoint: /v1/embeddings, input: {configMap: {name: in, key: batch.jsonl}}}\n---\n\
             apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n---\n\
             apiVersion: llmbatch.io/v1alpha1\nkind: BatchSweep\nmetadata: {name: s}\n\
             spec: {input: {configMap: {name: in, key: batch.jsonl}}, matrix: {models: [a, b]},\n\
             template: {gatewayRef: {name: gw}, endpoint: /v1/chat/completions}}\n",
        )
        .unwrap();
        let sweep = &m.sweeps[&("default".into(), "s".into())];
        assert_eq!(sweep.object.spec.parallelism, 3);
        assert_eq!(sweep.object.spec.matrix.as_ref().unwrap().models, ["a", "b"]);
        assert!(m.config_maps.contains_key(&("default".into(), "in".into())));
        let batch = &m.batches[&("team".into(), "b".into())];
        assert_eq!(batch.origin.document, 2);
        assert_eq!(batch.object.spec.completion_window, "24h");
        assert_eq!(m.skipped, vec!["Deployment default/d in x.yaml (document 3)"]);
    }

    #[test]
    fn errors_name_file_document_and_field() {
        let err = load_str(
            "---\napiVersion: llmbatch.io/v1alpha1\nkind: Batch\nmetadata: {name: b}\n\
             spec: {gatewayRef: {name: gw}, endpoint: /v1/images, input: {}}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("x.yaml (document 1): Batch field spec.endpoint"),
            "{err}"
        );
        assert!(err.contains("/v1/images"), "{err}");
    }

    #[test]
    fn duplicates_are_rejected_with_both_places() {
        let doc = "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n";
        let err = load_str(&format!("{doc}---\n{doc}")).unwrap_err().to_string();
        assert!(err.contains("defined twice (first in x.yaml (document 1))"), "{err}");
    }
}
