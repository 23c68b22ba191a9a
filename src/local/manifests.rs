//! Reading Batch, BatchSweep, BatchGateway, PriceList, ConfigMap and Secret documents from YAML files, the way
//! `kubectl apply -f` would, with errors that name the file, the document and the field.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use serde::Deserialize;

use super::{paths, yaml};
use crate::api::{Batch, BatchGateway, BatchSchedule, BatchSweep, PriceList};

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
    /// 1-based position of the document in its file (0: read from the API server).
    pub document: usize,
}

impl Origin {
    /// An object read from the API server (`kubectl llmbatch report`), not from a file.
    pub fn api_server() -> Self {
        Origin {
            file: PathBuf::from("the API server:"),
            document: 0,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.document {
            0 => write!(f, "{}", self.file.display()),
            n => write!(f, "{} (document {n})", self.file.display()),
        }
    }
}

/// Everything `run -f` read.
#[derive(Debug, Default)]
pub struct Manifests {
    pub batches: Objects<Batch>,
    pub sweeps: Objects<BatchSweep>,
    /// Each runs once (see `local::schedule`), as a Batch or sweep added to the above.
    pub schedules: Objects<BatchSchedule>,
    pub gateways: Objects<BatchGateway>,
    /// Cluster-scoped: keyed by name alone.
    pub price_lists: BTreeMap<String, Located<PriceList>>,
    pub config_maps: Objects<ConfigMap>,
    pub secrets: Objects<Secret>,
    /// Documents of other kinds, skipped: `Kind name in origin`.
    pub skipped: Vec<String>,
    /// The files read, in the order given: the order of "creation" admission follows.
    pub files: Vec<PathBuf>,
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
            manifests.files.push(file);
        }
        if manifests.batches.is_empty() && manifests.sweeps.is_empty() && manifests.schedules.is_empty() {
            return Err(ManifestError(format!(
                "no Batch, BatchSweep or BatchSchedule (apiVersion llmbatch.io/v1alpha1) found in {}",
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
        for (value, origin) in yaml::read_documents(file, text)? {
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
        if (meta.api_version.as_str(), meta.kind.as_str()) == ("llmbatch.io/v1alpha1", "PriceList") {
            return self.add_price_list(value, origin, name);
        }
        let namespace = meta.metadata.namespace.unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
        if USED_KINDS.contains(&(meta.api_version.as_str(), meta.kind.as_str())) {
            check_names(&origin, &meta.kind, &namespace, &name)?;
        }
        let key = (namespace, name);
        match (meta.api_version.as_str(), meta.kind.as_str()) {
            ("llmbatch.io/v1alpha1", "Batch") => insert(
                &mut self.batches,
                "Batch",
                key,
                yaml::parse_ours(value, &origin, "Batch")?,
                origin,
            ),
            ("llmbatch.io/v1alpha1", "BatchSweep") => insert(
                &mut self.sweeps,
                "BatchSweep",
                key,
                yaml::parse_ours(value, &origin, "BatchSweep")?,
                origin,
            ),
            ("llmbatch.io/v1alpha1", "BatchSchedule") => insert(
                &mut self.schedules,
                "BatchSchedule",
                key,
                yaml::parse_ours(value, &origin, "BatchSchedule")?,
                origin,
            ),
            ("llmbatch.io/v1alpha1", "BatchGateway") => insert(
                &mut self.gateways,
                "BatchGateway",
                key,
                yaml::parse_ours(value, &origin, "BatchGateway")?,
                origin,
            ),
            ("v1", "ConfigMap") => insert(
                &mut self.config_maps,
                "ConfigMap",
                key,
                yaml::parse(value, &origin, "ConfigMap")?,
                origin,
            ),
            ("v1", "Secret") => insert(
                &mut self.secrets,
                "Secret",
                key,
                yaml::parse(value, &origin, "Secret")?,
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

impl Manifests {
    /// A PriceList: cluster-scoped, so its name alone identifies it (a namespace is ignored, as
    /// the API server ignores it).
    fn add_price_list(&mut self, value: serde_yaml::Value, origin: Origin, name: String) -> Result<(), ManifestError> {
        if let Some(problem) = paths::subdomain_problem(&name) {
            return Err(ManifestError(format!(
                "{origin}: PriceList field metadata.name {problem}, as the API server requires"
            )));
        }
        let list: PriceList = yaml::parse_ours(value, &origin, "PriceList")?;
        if let Some(first) = self.price_lists.get(&name) {
            return Err(ManifestError(format!(
                "{origin}: PriceList {name} is defined twice (first in {})",
                first.origin
            )));
        }
        self.price_lists.insert(name, Located { object: list, origin });
        Ok(())
    }
}

/// The kinds `run -f` reads; their names become paths under `--out` and `--state-dir`.
const USED_KINDS: &[(&str, &str)] = &[
    ("llmbatch.io/v1alpha1", "Batch"),
    ("llmbatch.io/v1alpha1", "BatchSweep"),
    ("llmbatch.io/v1alpha1", "BatchSchedule"),
    ("llmbatch.io/v1alpha1", "BatchGateway"),
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
];

/// `metadata.name` must be a DNS subdomain and `metadata.namespace` a DNS label, as the API
/// server requires: both become directory names under `--out` and `--state-dir`.
fn check_names(origin: &Origin, kind: &str, namespace: &str, name: &str) -> Result<(), ManifestError> {
    let problem = match (paths::label_problem(namespace), paths::subdomain_problem(name)) {
        (Some(problem), _) => format!("metadata.namespace {problem}"),
        (None, Some(problem)) => format!("metadata.name {problem}"),
        (None, None) => return Ok(()),
    };
    Err(ManifestError(format!(
        "{origin}: {kind} field {problem}, as the API server requires"
    )))
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

    fn batch(name: &str, namespace: &str, extra_spec: &str) -> String {
        format!(
            "apiVersion: llmbatch.io/v1alpha1\nkind: Batch\nmetadata: {{name: {name:?}, namespace: {namespace:?}}}\n\
             spec:\n  gatewayRef: {{name: gw}}\n  endpoint: /v1/embeddings\n  input: {{configMap: {{name: in, key: k}}}}\n{extra_spec}"
        )
    }

    #[test]
    fn names_and_namespaces_must_be_what_the_api_server_accepts() {
        for name in ["../x", "/abs", "UPPER", "a_b", "..", "", "a/b", &"a".repeat(254)] {
            let err = load_str(&batch(name, "default", "")).unwrap_err().to_string();
            assert!(
                err.starts_with("x.yaml (document 1): Batch field metadata.name") && err.contains("subdomain"),
                "{name}: {err}"
            );
        }
        for namespace in ["../x", "/abs", "UPPER", "a_b", "a.b", &"a".repeat(64)] {
            let err = load_str(&batch("b", namespace, "")).unwrap_err().to_string();
            assert!(
                err.starts_with("x.yaml (document 1): Batch field metadata.namespace") && err.contains("label"),
                "{namespace}: {err}"
            );
        }
        let err = load_str("apiVersion: v1\nkind: Secret\nmetadata: {name: ../../key}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("Secret field metadata.name"), "{err}");
        // Kinds run -f skips are not checked: they are never written anywhere.
        load_str("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: Not_Used}\n").unwrap();
        load_str(&batch("a.b-c", "team-1", "")).unwrap();
    }

    #[test]
    fn unknown_fields_are_errors_naming_their_path() {
        let cases = [
            (
                batch("b", "default", "  outptu: {secret: {name: r}}\n"),
                "Batch field spec.outptu:",
            ),
            (
                batch("b", "default", "  output: {secret: {name: r, compress: true}}\n"),
                "Batch field spec.output.secret.compress:",
            ),
            (
                batch("b", "default", "").replace("metadata: {", "metadata: {lables: {a: b}, "),
                "Batch field metadata.lables:",
            ),
            (
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndatta: {k: v}\n".to_string(),
                "ConfigMap field datta:",
            ),
            (
                "apiVersion: llmbatch.io/v1alpha1\nkind: BatchSweep\nmetadata: {name: s}\n\
                 spec: {input: {configMap: {name: in, key: k}}, template: {gatewayRef: {name: gw}, \
                 endpoint: /v1/embeddings}, matrix: {models: [a], modles: [b]}}\n"
                    .to_string(),
                "BatchSweep field spec.matrix.modles:",
            ),
        ];
        for (doc, expected) in cases {
            let err = load_str(&doc).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("x.yaml (document 1): {expected} unknown field")),
                "{err}"
            );
        }
        // What the API server accepts in metadata, and free-form request bodies, stay accepted.
        let accepted = batch("b", "default", "")
            .replace(
                "metadata: {",
                "metadata: {labels: {a: b}, annotations: {c: d}, ownerReferences: [], uid: u, ",
            )
            .replace(
                "input: {configMap: {name: in, key: k}}",
                "input: {requests: [{customId: a, body: {input: x, anything: {goes: [1]}}}]}",
            );
        load_str(&accepted).unwrap();
    }

    #[test]
    fn deep_nesting_is_refused_quickly() {
        let started = std::time::Instant::now();
        let deep_sequence = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        // (100,000 levels of mapping take minutes of the parser's time, on a thread left behind
        // by the deadline: tests/local_run.rs runs that one in a process of its own.)
        let deep_mapping = format!("{}1{}", "{a: ".repeat(2_000), "}".repeat(2_000));
        let just_past = batch(
            "b",
            "default",
            &format!("  metadata: {{x: {}1{}}}\n", "[".repeat(64), "]".repeat(64)),
        );
        for doc in [deep_sequence, deep_mapping, just_past] {
            let err = load_str(&doc).unwrap_err().to_string();
            assert!(
                err.starts_with("x.yaml (document 1): nested more than 64 levels deep"),
                "{}",
                &err[..err.len().min(300)]
            );
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        // 64 levels in all is fine.
        let deepest = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c, annotations: {{}}}}\nx: {}1{}\n",
            "[".repeat(63),
            "]".repeat(63)
        );
        let err = load_str(&deepest).unwrap_err().to_string();
        assert!(err.contains("ConfigMap field x: unknown field"), "{err}");
    }

    #[test]
    fn duplicates_are_rejected_with_both_places() {
        let doc = "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n";
        let err = load_str(&format!("{doc}---\n{doc}")).unwrap_err().to_string();
        assert!(err.contains("defined twice (first in x.yaml (document 1))"), "{err}");
    }
}
