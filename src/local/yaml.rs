//! Reading YAML that anyone may have written (a pull request's manifests in CI): bounded in
//! depth and in time, and read strictly into the typed objects, so a document can neither
//! exhaust the reader nor slip a misspelt field past it.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::manifests::{ManifestError, Origin};

/// Deepest nesting of mappings and sequences a document may have. Real manifests stay under
/// a dozen levels (inline request bodies included); the bound keeps a hostile document from
/// costing more than its read.
pub const MAX_DEPTH: usize = 64;

/// Reads the document as `T`, refusing fields that `T` does not have, as `kubectl apply
/// --validate=strict` would: a typo (`spec.outptu`) is an error naming its path, not a field
/// silently dropped. Checked on the typed read itself (`serde_ignored` reports every key the
/// deserializer skips), so it holds for the core kinds as for ours, and the CRD schema the API
/// types generate stays as it is (`deny_unknown_fields` would add `additionalProperties: false`
/// to it, and could not name the path).
pub(super) fn parse<T: DeserializeOwned>(
    value: serde_yaml::Value,
    origin: &Origin,
    kind: &str,
) -> Result<T, ManifestError> {
    let mut unknown = Vec::new();
    let mut collect = |path: serde_ignored::Path<'_>| unknown.push(field_path(&path));
    let strict = serde_ignored::Deserializer::new(value, &mut collect);
    let object = serde_path_to_error::deserialize(strict).map_err(|e| {
        let path = e.path().to_string();
        ManifestError(format!("{origin}: {kind} field {path}: {}", e.into_inner()))
    })?;
    // apiVersion and kind were read already; the typed object may keep them elsewhere.
    unknown.retain(|path| path != "apiVersion" && path != "kind");
    match unknown.first() {
        None => Ok(object),
        Some(path) => Err(ManifestError(format!(
            "{origin}: {kind} field {path}: unknown field (a {kind} has no such field; \
             kubectl apply --validate=strict refuses it too)"
        ))),
    }
}

/// Reads one of our kinds as [`parse`] does, then checks it as the API server would: the CRD's
/// patterns, bounds and CEL rules (`kubectl apply` refuses what breaks one; so does `run -f`,
/// before anything is sent).
pub(super) fn parse_ours<K: DeserializeOwned + kube::CustomResourceExt + serde::Serialize>(
    value: serde_yaml::Value,
    origin: &Origin,
    kind: &str,
) -> Result<K, ManifestError> {
    let object: K = parse(value, origin, kind)?;
    match crate::api::broken_rules(&object).first() {
        None => Ok(object),
        Some(broken) => Err(ManifestError(format!(
            "{origin}: {kind} field {broken} (the API server refuses it too)"
        ))),
    }
}

/// `spec.input.requests[0].body` from what `serde_ignored` reports (bounded by [`MAX_DEPTH`]).
fn field_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", field_path(parent)),
        Path::Map { parent, key } => match field_path(parent) {
            parent if parent.is_empty() => key.clone(),
            parent => format!("{parent}.{key}"),
        },
        Path::Some { parent } | Path::NewtypeStruct { parent } | Path::NewtypeVariant { parent } => field_path(parent),
    }
}

/// True when `value` nests mappings and sequences more than `max` deep (walked without
/// recursion, so any depth is safe to measure).
fn depth_exceeds(value: &serde_yaml::Value, max: usize) -> bool {
    use serde_yaml::Value;
    let mut stack = vec![(value, 0usize)];
    while let Some((value, depth)) = stack.pop() {
        let inner = depth + 1;
        match value {
            Value::Sequence(items) if inner <= max => stack.extend(items.iter().map(|v| (v, inner))),
            Value::Mapping(map) if inner <= max => {
                stack.extend(map.iter().flat_map(|(k, v)| [(k, inner), (v, inner)]));
            }
            Value::Tagged(tagged) => stack.push((&tagged.value, depth)),
            Value::Sequence(_) | Value::Mapping(_) => return true,
            _ => {}
        }
    }
    false
}

/// How long reading a file's YAML may take: [`PARSE_DEADLINE`] plus a second per MiB.
fn parse_deadline(len: usize) -> Duration {
    PARSE_DEADLINE + Duration::from_secs((len >> 20) as u64)
}

/// The time reading a small file's YAML may take. The YAML parser's cost grows with the square
/// of a flow collection's nesting (`{a: {a: ...`), and it reads a whole document before any
/// depth can be checked: 100,000 levels take minutes. A deadline bounds every such case
/// (aliases included) without a second YAML scanner to keep in step with the parser's.
const PARSE_DEADLINE: Duration = Duration::from_secs(3);

/// The non-empty documents of a file, each checked for depth ([`MAX_DEPTH`]). The YAML is read
/// on a thread of its own, given [`parse_deadline`]: past it, the file is refused (and the
/// thread left to finish or die with the process, which `run -f` ends at once on an invalid
/// manifest).
pub(super) fn read_documents(file: &Path, text: &str) -> Result<Vec<(serde_yaml::Value, Origin)>, ManifestError> {
    let (sender, receiver) = std::sync::mpsc::channel();
    let (owned_file, owned_text) = (file.to_path_buf(), text.to_owned());
    let spawned = std::thread::Builder::new()
        .name("read-yaml".into())
        .spawn(move || drop(sender.send(parse_documents(&owned_file, &owned_text))));
    if let Err(e) = spawned {
        return Err(ManifestError(format!("{}: cannot read: {e}", file.display())));
    }
    let deadline = parse_deadline(text.len());
    match receiver.recv_timeout(deadline) {
        Ok(read) => read,
        Err(_) => Err(ManifestError(format!(
            "{}: reading it as YAML takes longer than {} s, which no manifest needs (it nests more than \
             {MAX_DEPTH} levels deep, or expands aliases without end); refused",
            file.display(),
            deadline.as_secs()
        ))),
    }
}

fn parse_documents(file: &Path, text: &str) -> Result<Vec<(serde_yaml::Value, Origin)>, ManifestError> {
    let mut documents = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let origin = Origin {
            file: file.to_path_buf(),
            document: index + 1,
        };
        let value = serde_yaml::Value::deserialize(document).map_err(|e| match is_too_deep(&e) {
            true => too_deep(&origin),
            false => ManifestError(format!("{origin}: not valid YAML: {e}")),
        })?;
        if value.is_null() {
            continue;
        }
        if depth_exceeds(&value, MAX_DEPTH) {
            return Err(too_deep(&origin));
        }
        documents.push((value, origin));
    }
    Ok(documents)
}

/// serde_yaml stops past its own recursion limit (128) before any value is built.
fn is_too_deep(e: &serde_yaml::Error) -> bool {
    e.to_string().contains("recursion limit exceeded")
}

fn too_deep(origin: &Origin) -> ManifestError {
    ManifestError(format!(
        "{origin}: nested more than {MAX_DEPTH} levels deep; no manifest needs that many, so it is refused"
    ))
}
