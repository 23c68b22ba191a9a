//! The checks the API server makes of our kinds beyond their types, made without one (`run -f`,
//! before anything is sent): the CRD schema's patterns and bounds, and its CEL rules
//! (`x-kubernetes-validations`, evaluated by kube's CEL interpreter). Both are read from the
//! CRD the types generate, so a rule is written once, on the type.

use kube::CustomResourceExt;
use regex::Regex;
use serde::Serialize;
use serde_json::Value;

/// Every rule the object breaks, as `field: message`, in the API server's words where the rule
/// carries a message. Transition rules (`oldSelf`) do not apply to a new object and are skipped.
pub fn broken_rules<K: CustomResourceExt + Serialize>(object: &K) -> Vec<String> {
    let crd = K::crd();
    let Some(schema) = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
    else {
        return Vec::new();
    };
    let (Ok(schema), Ok(value)) = (serde_json::to_value(schema), serde_json::to_value(object)) else {
        return Vec::new();
    };
    let mut broken = Vec::new();
    check_bounds(&schema, &value, "", &mut broken);
    if let Err(errors) = kube::core::cel::Validator::new().validate(&schema, &value, None) {
        broken.extend(errors.iter().map(ToString::to_string));
    }
    broken
}

/// The schema's `pattern`, `minimum`, `maximum` and length bounds, walked with the value.
fn check_bounds(schema: &Value, value: &Value, path: &str, broken: &mut Vec<String>) {
    let mut fail = |what: String| broken.push(format!("{}: {what}", display(path)));
    match value {
        Value::String(text) => {
            if let Some(pattern) = schema["pattern"].as_str()
                && !Regex::new(pattern).is_ok_and(|re| re.is_match(text))
            {
                fail(format!("{text:?} does not match {pattern:?}"));
            }
            let chars = text.chars().count() as u64;
            if let Some(max) = schema["maxLength"].as_u64().filter(|max| chars > *max) {
                fail(format!("may not be longer than {max} characters"));
            }
            if let Some(min) = schema["minLength"].as_u64().filter(|min| chars < *min) {
                fail(format!("must be at least {min} characters"));
            }
        }
        Value::Number(number) => {
            let n = number.as_f64().unwrap_or_default();
            if let Some(min) = schema["minimum"].as_f64().filter(|min| n < *min) {
                fail(format!("{number} must be greater than or equal to {min}"));
            }
            if let Some(max) = schema["maximum"].as_f64().filter(|max| n > *max) {
                fail(format!("{number} must be less than or equal to {max}"));
            }
        }
        Value::Array(items) => {
            if let Some(max) = schema["maxItems"].as_u64().filter(|max| items.len() as u64 > *max) {
                fail(format!("must have at most {max} items"));
            }
            if let Some(min) = schema["minItems"].as_u64().filter(|min| (items.len() as u64) < *min) {
                fail(format!("must have at least {min} items"));
            }
            if let Some(twice) = repeated_key(schema, items) {
                fail(format!("Duplicate value: {twice}"));
            }
            for (i, item) in items.iter().enumerate() {
                check_bounds(&schema["items"], item, &format!("{path}[{i}]"), broken);
            }
        }
        Value::Object(fields) => {
            if let Some(max) = schema["maxProperties"]
                .as_u64()
                .filter(|max| fields.len() as u64 > *max)
            {
                fail(format!("must have at most {max} entries"));
            }
            for (name, field) in fields {
                let field_schema = match &schema["properties"][name] {
                    Value::Null => &schema["additionalProperties"],
                    known => known,
                };
                check_bounds(field_schema, field, &join(path, name), broken);
            }
        }
        Value::Null | Value::Bool(_) => {}
    }
}

/// The first key that two items of a `map` (by its keys) or `set` list share.
fn repeated_key(schema: &Value, items: &[Value]) -> Option<String> {
    let key = |item: &Value| match schema["x-kubernetes-list-type"].as_str() {
        Some("map") => {
            let keys = schema["x-kubernetes-list-map-keys"].as_array()?;
            let fields: serde_json::Map<_, _> = keys
                .iter()
                .filter_map(Value::as_str)
                .map(|k| (k.to_string(), item[k].clone()))
                .collect();
            Some(Value::Object(fields).to_string())
        }
        Some("set") => Some(item.to_string()),
        _ => None,
    };
    let mut seen = std::collections::HashSet::new();
    items.iter().filter_map(key).find(|k| !seen.insert(k.clone()))
}

fn join(path: &str, name: &str) -> String {
    match path {
        "" => name.to_string(),
        _ => format!("{path}.{name}"),
    }
}

fn display(path: &str) -> &str {
    if path.is_empty() { "(object)" } else { path }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::api::{Batch, BatchGateway, BatchSweep};

    fn batch(spec: Value) -> Batch {
        serde_json::from_value(json!({"apiVersion": "llmbatch.io/v1alpha1", "kind": "Batch",
            "metadata": {"name": "b"}, "spec": spec}))
        .unwrap()
    }

    fn spec(input: Value) -> Value {
        json!({"gatewayRef": {"name": "gw"}, "endpoint": "/v1/chat/completions", "input": input})
    }

    #[test]
    fn a_valid_batch_breaks_nothing() {
        let ok = batch(spec(json!({"configMap": {"name": "c", "key": "k"}})));
        assert_eq!(broken_rules(&ok), Vec::<String>::new());
    }

    #[test]
    fn cel_rules_name_their_field_and_message() {
        let two = batch(spec(
            json!({"configMap": {"name": "c", "key": "k"}, "fileId": "file-1"}),
        ));
        let broken = broken_rules(&two);
        assert_eq!(broken.len(), 1, "{broken:?}");
        assert!(broken[0].starts_with("spec.input: "), "{broken:?}");
        assert!(broken[0].contains("exactly one source"), "{broken:?}");
    }

    #[test]
    fn patterns_and_bounds_name_their_field() {
        let mut two_days = spec(json!({"configMap": {"name": "c", "key": "k"}}));
        two_days["completionWindow"] = json!("2 days");
        let broken = broken_rules(&batch(two_days));
        assert_eq!(broken.len(), 1, "{broken:?}");
        assert!(
            broken[0].starts_with("spec.completionWindow: \"2 days\" does not match"),
            "{broken:?}"
        );

        let sweep: BatchSweep = serde_json::from_value(json!({"apiVersion": "llmbatch.io/v1alpha1",
            "kind": "BatchSweep", "metadata": {"name": "s"}, "spec": {
                "input": {"configMap": {"name": "c", "key": "k"}}, "parallelism": 0,
                "template": {"gatewayRef": {"name": "gw"}, "endpoint": "/v1/chat/completions"}}}))
        .unwrap();
        let broken = broken_rules(&sweep);
        assert!(
            broken
                .iter()
                .any(|b| b.starts_with("spec.parallelism: 0 must be greater than or equal to 1")),
            "{broken:?}"
        );
    }

    #[test]
    fn a_gateway_url_without_v1_is_refused() {
        let gateway: BatchGateway = serde_json::from_value(json!({"apiVersion": "llmbatch.io/v1alpha1",
            "kind": "BatchGateway", "metadata": {"name": "g"}, "spec": {"url": "https://api.openai.com"}}))
        .unwrap();
        let broken = broken_rules(&gateway);
        assert!(broken.iter().any(|b| b.starts_with("spec.url: ")), "{broken:?}");
    }
}
