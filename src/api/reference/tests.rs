//! The field reference, rendered from small hand-made schemas and from the project's own CRDs.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{CustomResourceDefinition, JSONSchemaProps};
use serde_json::{Value, json};

use super::{MAX_DEPTH, code, render, type_name};

fn schema(value: Value) -> JSONSchemaProps {
    serde_json::from_value(value).unwrap()
}

/// A namespaced `Widget` (short name `wd`) whose v1 schema has `spec` as given.
fn widget(spec: Value) -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.io"},
        "spec": {
            "group": "example.io", "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets", "shortNames": ["wd"]},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}],
                "schema": {"openAPIV3Schema": {
                    "type": "object", "required": ["spec"],
                    "properties": {
                        "apiVersion": {"type": "string"}, "kind": {"type": "string"},
                        "metadata": {"type": "object", "properties": {"name": {"type": "string"}}},
                        "spec": spec,
                    },
                }},
            }],
        },
    }))
    .unwrap()
}

/// The table row of `path` in the reference of `spec`.
fn row_of(spec: Value, path: &str) -> String {
    let text = render(&[widget(spec)]);
    let start = format!("| `{path}` |");
    let found = text.lines().find(|l| l.starts_with(&start));
    found.unwrap_or_else(|| panic!("no row {path} in\n{text}")).to_string()
}

#[test]
fn types_read_as_a_reader_writes_them() {
    let cases = [
        (json!({"type": "string"}), "string"),
        (json!({"type": "array", "items": {"type": "string"}}), "array of string"),
        (
            json!({"type": "array", "items": {"type": "array", "items": {"type": "integer"}}}),
            "array of array of integer",
        ),
        (
            json!({"type": "object", "additionalProperties": {"type": "string"}}),
            "map of string",
        ),
        (
            json!({"type": "object", "additionalProperties": {"type": "array", "items": {"type": "object"}}}),
            "map of array of object",
        ),
        (
            json!({"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]}),
            "int-or-string",
        ),
        (
            json!({"anyOf": [{"type": "integer"}, {"type": "string"}]}),
            "integer or string",
        ),
        (
            json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
            "object (any fields)",
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "string"}}}),
            "object",
        ),
        (json!({}), "any"),
    ];
    for (given, expected) in cases {
        assert_eq!(type_name(&schema(given.clone())), expected, "{given}");
    }
}

#[test]
fn a_row_has_type_required_default_validation_and_description() {
    let spec = json!({
        "type": "object", "required": ["mode"],
        "properties": {
            "mode": {"type": "string", "enum": ["Auto", "Batch"], "default": "Auto",
                     "description": "How it runs:\nprobed or not.\n\nThe second paragraph is left out."},
            "size": {"type": "integer", "format": "int64", "minimum": 0.0, "maximum": 10.0, "nullable": true},
        },
    });
    assert_eq!(
        row_of(spec.clone(), "spec.mode"),
        "| `spec.mode` | string | yes | `\"Auto\"` | one of `Auto`, `Batch` | How it runs: probed or not. |"
    );
    assert_eq!(
        row_of(spec, "spec.size"),
        "| `spec.size` | integer | no |  | format `int64`<br>minimum 0<br>maximum 10 |  |"
    );
}

#[test]
fn cel_rules_sit_on_their_field_with_pipes_escaped() {
    let spec = json!({
        "type": "object",
        "description": "Either a | b.",
        "properties": {"url": {"type": "string", "pattern": "^(s3|gs)://"}},
        "x-kubernetes-validations": [
            {"rule": "has(self.url) || has(self.file)", "message": "needs url or file"},
            {"rule": "self == oldSelf", "messageExpression": "'immutable'"},
        ],
    });
    assert_eq!(
        row_of(spec.clone(), "spec"),
        "| `spec` | object | yes |  | rule `has(self.url) \\|\\| has(self.file)`: needs url or file<br>\
         rule `self == oldSelf`: message `'immutable'` | Either a \\| b. |"
    );
    assert!(row_of(spec, "spec.url").contains("pattern `^(s3\\|gs)://`"));
}

#[test]
fn array_items_and_map_values_get_rows_when_they_say_more_than_a_type() {
    let spec = json!({
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"type": "string"}},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "rules": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                      "items": {"type": "object", "required": ["name"], "description": "One rule.",
                                "properties": {"name": {"type": "string"}}}},
            "limits": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 1.0}},
        },
    });
    let text = render(&[widget(spec.clone())]);
    assert!(
        !text.contains("`spec.tags[]`") && !text.contains("`spec.labels.<key>`"),
        "{text}"
    );
    assert!(
        row_of(spec.clone(), "spec.rules").contains("| array of object | no |  | list type `map` keyed by `name` |")
    );
    assert_eq!(
        row_of(spec.clone(), "spec.rules[]"),
        "| `spec.rules[]` | object |  |  |  | One rule. |"
    );
    assert!(row_of(spec.clone(), "spec.rules[].name").contains("| string | yes |"));
    assert!(row_of(spec, "spec.limits.<key>").contains("| integer |  |  | minimum 1 |"));
}

#[test]
fn the_kind_is_summarised_and_metadata_left_to_kubernetes() {
    let text = render(&[widget(json!({"type": "object"}))]);
    assert!(text.contains("- [Widget](#widget)\n"), "{text}");
    assert!(text.contains("## Widget\n"), "{text}");
    assert!(
        text.contains(
            "`apiVersion: example.io/v1`, Namespaced scope, plural `widgets`, short names `wd`, status subresource."
        ),
        "{text}"
    );
    assert!(text.contains("`kubectl get` columns: Size (`.spec.size`)."), "{text}");
    assert!(!text.contains("`metadata") && !text.contains("`kind`"), "{text}");
}

#[test]
fn depth_is_bounded() {
    let mut spec = json!({"type": "string"});
    for _ in 0..2 * MAX_DEPTH {
        spec = json!({"type": "object", "properties": {"a": spec}});
    }
    let text = render(&[widget(spec)]);
    let deepest = text
        .lines()
        .filter_map(|l| l.strip_prefix("| `spec"))
        .map(|l| l.matches(".a").count())
        .max();
    assert_eq!(deepest, Some(MAX_DEPTH));
}

#[test]
fn code_spans_hold_backticks() {
    assert_eq!(code("a.b"), "`a.b`");
    assert_eq!(code("a`b"), "`` a`b ``");
}

#[test]
fn the_projects_reference_names_every_kind_and_nested_field() {
    let text = super::reference_markdown();
    for kind in ["Batch", "BatchGateway", "BatchSweep", "PriceList"] {
        assert!(text.contains(&format!("\n## {kind}\n")), "no section {kind}");
    }
    assert!(
        text.contains("| `spec.input.objectStore.url` | string | yes |"),
        "{text}"
    );
    assert!(text.contains(": input is immutable"));
    assert!(text.contains("| `status.conditions[].type` |"));
}
