//! The field reference (docs/reference.md), as `llm-batch-operator crd --reference` prints it:
//! every field of every CRD, read from the same schemas as crds/.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionVersion, JSONSchemaProps, JSONSchemaPropsOrArray,
    JSONSchemaPropsOrBool, ValidationRule,
};

use super::all_crds;

/// The command that regenerates docs/reference.md (a test fails when the file is stale).
const REFERENCE_COMMAND: &str = "cargo run -- crd --reference > docs/reference.md";

/// Deepest field written, in path segments below the kind (deeper ones are left to their
/// parent's type).
const MAX_DEPTH: usize = 12;

/// Fields every object has, described by Kubernetes rather than by this project.
const COMMON_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// The field reference of every CRD of the project, as Markdown (the content of docs/reference.md).
pub fn reference_markdown() -> String {
    render(&all_crds())
}

fn render(crds: &[CustomResourceDefinition]) -> String {
    let mut out = header(crds);
    for crd in crds {
        out.push_str(&kind_section(crd));
    }
    out
}

fn header(crds: &[CustomResourceDefinition]) -> String {
    let kinds: Vec<String> = crds
        .iter()
        .map(|crd| {
            format!(
                "- [{0}](#{1})\n",
                crd.spec.names.kind,
                crd.spec.names.kind.to_lowercase()
            )
        })
        .collect();
    format!(
        "# Field reference\n\n\
         Generated from the CustomResourceDefinitions' schemas (the doc comments in `src/api/`) by\n\
         `llm-batch-operator crd --reference`; do not edit it by hand. After changing `src/api/`:\n\n\
         ```sh\n{REFERENCE_COMMAND}\n```\n\n\
         How the resources behave: [The API](api.md). A field's Validation lists what the API server\n\
         checks: its enum, pattern, format and bounds, and its CEL rules (`x-kubernetes-validations`).\n\n\
         {}\n",
        kinds.concat()
    )
}

fn kind_section(crd: &CustomResourceDefinition) -> String {
    let mut out = format!("## {}\n\n", crd.spec.names.kind);
    for version in &crd.spec.versions {
        out.push_str(&summary(crd, version));
        out.push_str(&columns(version));
        out.push_str(&table(&fields(version)));
    }
    out
}

/// `apiVersion`, scope, names and subresources, in one paragraph.
fn summary(crd: &CustomResourceDefinition, version: &CustomResourceDefinitionVersion) -> String {
    let names = &crd.spec.names;
    let mut parts = vec![
        format!("`apiVersion: {}/{}`", crd.spec.group, version.name),
        format!("{} scope", crd.spec.scope),
        format!("plural `{}`", names.plural),
    ];
    if let Some(short) = names.short_names.as_ref().filter(|s| !s.is_empty()) {
        parts.push(format!("short names {}", list(short.iter().map(|s| code(s)))));
    }
    if version.subresources.as_ref().is_some_and(|s| s.status.is_some()) {
        parts.push("status subresource".to_string());
    }
    format!("{}.\n\n", parts.join(", "))
}

/// The printer columns of `kubectl get`, when there are any.
fn columns(version: &CustomResourceDefinitionVersion) -> String {
    let Some(columns) = version.additional_printer_columns.as_ref().filter(|c| !c.is_empty()) else {
        return String::new();
    };
    let shown = columns.iter().map(|c| {
        let wide = if c.priority.unwrap_or(0) > 0 { ", wide" } else { "" };
        format!("{} ({}{wide})", c.name, code(&c.json_path))
    });
    format!("`kubectl get` columns: {}.\n\n", list(shown))
}

/// One field of the table: where it is, whether its parent requires it (`None` for the items
/// of an array and the values of a map), and its schema.
struct Field<'a> {
    path: String,
    required: Option<bool>,
    schema: &'a JSONSchemaProps,
}

impl<'a> Field<'a> {
    fn new(path: String, required: Option<bool>, schema: &'a JSONSchemaProps) -> Self {
        Field { path, required, schema }
    }
}

/// Every field of the version's schema under the kind's own top-level fields (spec, status).
fn fields(version: &CustomResourceDefinitionVersion) -> Vec<Field<'_>> {
    let mut out = Vec::new();
    let Some(root) = version.schema.as_ref().and_then(|s| s.open_api_v3_schema.as_ref()) else {
        return out;
    };
    for (name, schema) in root.properties.iter().flatten() {
        if !COMMON_FIELDS.contains(&name.as_str()) {
            walk(name.clone(), Some(requires(root, name)), schema, 0, &mut out);
        }
    }
    out
}

fn requires(schema: &JSONSchemaProps, name: &str) -> bool {
    schema.required.iter().flatten().any(|r| r == name)
}

/// Adds the row of the field at `path`, then its children's.
fn walk<'a>(path: String, required: Option<bool>, schema: &'a JSONSchemaProps, depth: usize, out: &mut Vec<Field<'a>>) {
    out.push(Field::new(path.clone(), required, schema));
    if depth < MAX_DEPTH {
        children(schema, &path, depth + 1, out);
    }
}

/// The properties of `schema`, then its array items and map values when they say more than a type.
fn children<'a>(schema: &'a JSONSchemaProps, path: &str, depth: usize, out: &mut Vec<Field<'a>>) {
    for (name, child) in schema.properties.iter().flatten() {
        let required = requires(schema, name);
        walk(format!("{path}.{name}"), Some(required), child, depth, out);
    }
    if let Some(items) = items(schema).filter(|s| says_more_than_its_type(s)) {
        walk(format!("{path}[]"), None, items, depth, out);
    }
    if let Some(values) = values(schema).filter(|s| says_more_than_its_type(s)) {
        walk(format!("{path}.<key>"), None, values, depth, out);
    }
}

/// Whether items or values need a row of their own (`array of string` says all of `{type: string}`).
fn says_more_than_its_type(schema: &JSONSchemaProps) -> bool {
    let bare = JSONSchemaProps {
        type_: schema.type_.clone(),
        nullable: schema.nullable,
        ..Default::default()
    };
    *schema != bare
}

fn items(schema: &JSONSchemaProps) -> Option<&JSONSchemaProps> {
    match schema.items.as_ref()? {
        JSONSchemaPropsOrArray::Schema(items) => Some(items),
        JSONSchemaPropsOrArray::Schemas(_) => None,
    }
}

fn values(schema: &JSONSchemaProps) -> Option<&JSONSchemaProps> {
    match schema.additional_properties.as_ref()? {
        JSONSchemaPropsOrBool::Schema(values) => Some(values),
        JSONSchemaPropsOrBool::Bool(_) => None,
    }
}

fn table(fields: &[Field]) -> String {
    let mut out = String::from(
        "| Field | Type | Required | Default | Validation | Description |\n\
         |---|---|---|---|---|---|\n",
    );
    for field in fields {
        out.push_str(&row(field));
    }
    out.push('\n');
    out
}

fn row(field: &Field) -> String {
    let schema = field.schema;
    let required = match field.required {
        Some(true) => "yes",
        Some(false) => "no",
        None => "",
    };
    let default = schema
        .default
        .as_ref()
        .map(|d| code(&d.0.to_string()))
        .unwrap_or_default();
    let cells = [
        code(&field.path),
        type_name(schema),
        required.to_string(),
        default,
        validation(schema).join("<br>"),
        description(schema),
    ];
    let cells: Vec<String> = cells.iter().map(|c| cell(c)).collect();
    format!("| {} |\n", cells.join(" | "))
}

/// The type as a reader writes it: `array of string`, `map of integer`, `int-or-string`.
fn type_name(schema: &JSONSchemaProps) -> String {
    if schema.x_kubernetes_int_or_string == Some(true) {
        return "int-or-string".to_string();
    }
    match schema.type_.as_deref() {
        Some("array") => items(schema).map_or("array".to_string(), |i| format!("array of {}", type_name(i))),
        Some("object") => object_type(schema),
        Some(other) => other.to_string(),
        None => alternatives(schema).unwrap_or_else(|| "any".to_string()),
    }
}

fn object_type(schema: &JSONSchemaProps) -> String {
    if let Some(values) = values(schema) {
        return format!("map of {}", type_name(values));
    }
    let open = matches!(schema.additional_properties, Some(JSONSchemaPropsOrBool::Bool(true)))
        || (schema.x_kubernetes_preserve_unknown_fields == Some(true) && schema.properties.is_none());
    if open { "object (any fields)" } else { "object" }.to_string()
}

/// `integer or string` for a schema that is one of several (`anyOf`, `oneOf`).
fn alternatives(schema: &JSONSchemaProps) -> Option<String> {
    let choices = schema.any_of.as_ref().or(schema.one_of.as_ref())?;
    Some(choices.iter().map(type_name).collect::<Vec<_>>().join(" or "))
}

/// What the API server checks: enum, format, pattern, bounds, list type and CEL rules.
fn validation(schema: &JSONSchemaProps) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(values) = &schema.enum_ {
        out.push(format!("one of {}", list(values.iter().map(|v| code(&scalar(&v.0))))));
    }
    if let Some(format) = &schema.format {
        out.push(format!("format {}", code(format)));
    }
    if let Some(pattern) = &schema.pattern {
        out.push(format!("pattern {}", code(pattern)));
    }
    out.extend(bounds(schema));
    out.extend(list_type(schema));
    out.extend(schema.x_kubernetes_validations.iter().flatten().map(rule));
    out
}

fn bounds(schema: &JSONSchemaProps) -> Vec<String> {
    let exclusive = |e: Option<bool>| if e == Some(true) { " (exclusive)" } else { "" };
    let numbers = [
        ("minimum", schema.minimum, exclusive(schema.exclusive_minimum)),
        ("maximum", schema.maximum, exclusive(schema.exclusive_maximum)),
        ("multiple of", schema.multiple_of, ""),
    ];
    let counts = [
        ("min length", schema.min_length),
        ("max length", schema.max_length),
        ("min items", schema.min_items),
        ("max items", schema.max_items),
        ("min entries", schema.min_properties),
        ("max entries", schema.max_properties),
    ];
    let numbers = numbers
        .into_iter()
        .filter_map(|(what, n, e)| n.map(|n| format!("{what} {}{e}", number(n))));
    let counts = counts
        .into_iter()
        .filter_map(|(what, n)| n.map(|n| format!("{what} {n}")));
    let unique = (schema.unique_items == Some(true)).then(|| "unique items".to_string());
    numbers.chain(counts).chain(unique).collect()
}

fn list_type(schema: &JSONSchemaProps) -> Option<String> {
    let kind = schema.x_kubernetes_list_type.as_deref()?;
    Some(match schema.x_kubernetes_list_map_keys.as_ref() {
        Some(keys) if kind == "map" => format!("list type `map` keyed by {}", list(keys.iter().map(|k| code(k)))),
        _ => format!("list type {}", code(kind)),
    })
}

/// A CEL rule and what it reports: `` rule `self == oldSelf`: input is immutable ``.
fn rule(rule: &ValidationRule) -> String {
    let said = match (&rule.message, &rule.message_expression) {
        (Some(message), _) => format!(": {message}"),
        (None, Some(expression)) => format!(": message {}", code(expression)),
        (None, None) => String::new(),
    };
    let at = rule
        .field_path
        .as_ref()
        .map(|p| format!(" (on {})", code(p)))
        .unwrap_or_default();
    format!("rule {}{at}{said}", code(&rule.rule))
}

/// The first paragraph of the description.
fn description(schema: &JSONSchemaProps) -> String {
    let text = schema.description.as_deref().unwrap_or_default();
    text.split("\n\n").next().unwrap_or_default().to_string()
}

/// A table cell: one line, pipes escaped (in code spans too, as GitHub's tables need).
fn cell(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

/// `text` as a code span, fenced with more backticks than it holds.
fn code(text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    let pad = if longest > 0 { " " } else { "" };
    format!("{fence}{pad}{text}{pad}{fence}")
}

/// A string without its quotes; any other value as JSON.
fn scalar(value: &serde_json::Value) -> String {
    value.as_str().map_or_else(|| value.to_string(), str::to_string)
}

/// `0`, not `0.0`, for the whole numbers a schema's bounds are.
fn number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

fn list(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests;
