//! Instances checked by a small validator of the keywords the generator supports (the crate
//! has no JSON Schema validator), and the bounds a hostile schema meets.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::*;

/// Checks `instance` against `schema`: `type`, `enum`, `const`, `properties`, `required`,
/// `additionalProperties: false`, `items`, `prefixItems`, `minItems`/`maxItems`,
/// `uniqueItems`, `minimum`/`maximum` and their exclusive forms, `multipleOf`,
/// `minLength`/`maxLength`, `format` (date, date-time, email, uuid), `anyOf`, `oneOf`, `allOf`
/// and local `$ref`s.
pub fn check(instance: &Value, schema: &Value) -> Result<(), String> {
    Checker { root: schema }.check(instance, schema, "$")
}

struct Checker<'a> {
    root: &'a Value,
}

impl Checker<'_> {
    fn check(&self, v: &Value, schema: &Value, at: &str) -> Result<(), String> {
        let Some(s) = schema.as_object() else {
            return match schema {
                Value::Bool(false) => Err(format!("{at}: false schema")),
                _ => Ok(()),
            };
        };
        let fail = |what: &str| Err(format!("{at}: {what} ({v})"));
        if let Some(r) = s.get("$ref").and_then(Value::as_str) {
            let target = match &r[1..] {
                "" => Some(self.root),
                pointer => self.root.pointer(pointer),
            };
            self.check(v, target.ok_or(format!("{at}: unresolved {r}"))?, at)?;
        }
        if let Some(kinds) = s.get("type") {
            let kinds: Vec<&str> = match kinds {
                Value::String(k) => vec![k],
                other => other.as_array().unwrap().iter().filter_map(Value::as_str).collect(),
            };
            if !kinds.iter().any(|k| is_type(v, k)) {
                return fail(&format!("not of type {kinds:?}"));
            }
        }
        if s.get("enum").and_then(Value::as_array).is_some_and(|e| !e.contains(v)) {
            return fail("not in enum");
        }
        if s.get("const").is_some_and(|c| c != v) {
            return fail("not the const");
        }
        for member in s.get("allOf").and_then(Value::as_array).into_iter().flatten() {
            self.check(v, member, at)?;
        }
        if let Some(branches) = s.get("anyOf").and_then(Value::as_array)
            && !branches.iter().any(|b| self.check(v, b, at).is_ok())
        {
            return fail("matches no anyOf branch");
        }
        if let Some(branches) = s.get("oneOf").and_then(Value::as_array)
            && branches.iter().filter(|b| self.check(v, b, at).is_ok()).count() != 1
        {
            return fail("matches not exactly one oneOf branch");
        }
        match v {
            Value::Object(o) => self.object(o, s, at),
            Value::Array(a) => self.array(a, s, at),
            Value::String(text) => string(text, s).map_err(|e| format!("{at}: {e} ({v})")),
            Value::Number(n) => number(n.as_f64().unwrap(), s).map_err(|e| format!("{at}: {e} ({v})")),
            _ => Ok(()),
        }
    }

    fn object(&self, o: &Map<String, Value>, s: &Map<String, Value>, at: &str) -> Result<(), String> {
        let properties = s.get("properties").and_then(Value::as_object);
        for name in s.get("required").and_then(Value::as_array).into_iter().flatten() {
            if !o.contains_key(name.as_str().unwrap()) {
                return Err(format!("{at}: {name} missing"));
            }
        }
        for (key, value) in o {
            match properties.and_then(|p| p.get(key)) {
                Some(sub) => self.check(value, sub, &format!("{at}.{key}"))?,
                None if s.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    return Err(format!("{at}: {key} is not allowed"));
                }
                None => {}
            }
        }
        Ok(())
    }

    fn array(&self, a: &[Value], s: &Map<String, Value>, at: &str) -> Result<(), String> {
        let n = a.len() as u64;
        if s.get("minItems").and_then(Value::as_u64).is_some_and(|m| n < m) {
            return Err(format!("{at}: fewer than minItems"));
        }
        if s.get("maxItems").and_then(Value::as_u64).is_some_and(|m| n > m) {
            return Err(format!("{at}: more than maxItems"));
        }
        if s.get("uniqueItems") == Some(&Value::Bool(true)) && (1..a.len()).any(|i| a[..i].contains(&a[i])) {
            return Err(format!("{at}: items repeat"));
        }
        let prefix = s.get("prefixItems").and_then(Value::as_array);
        for (i, item) in a.iter().enumerate() {
            let sub = prefix.and_then(|p| p.get(i)).or_else(|| s.get("items"));
            if let Some(sub) = sub {
                self.check(item, sub, &format!("{at}[{i}]"))?;
            }
        }
        Ok(())
    }
}

fn is_type(v: &Value, kind: &str) -> bool {
    match kind {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        _ => false,
    }
}

fn string(text: &str, s: &Map<String, Value>) -> Result<(), String> {
    let n = text.chars().count() as u64;
    if s.get("minLength").and_then(Value::as_u64).is_some_and(|m| n < m) {
        return Err("shorter than minLength".into());
    }
    if s.get("maxLength").and_then(Value::as_u64).is_some_and(|m| n > m) {
        return Err("longer than maxLength".into());
    }
    let digits = |t: &str, shape: &str| {
        t.len() == shape.len()
            && t.chars().zip(shape.chars()).all(|(c, f)| match f {
                'd' => c.is_ascii_digit(),
                'h' => c.is_ascii_hexdigit(),
                f => c == f,
            })
    };
    let ok = match s.get("format").and_then(Value::as_str) {
        Some("date") => digits(text, "dddd-dd-dd"),
        Some("date-time") => digits(text, "dddd-dd-ddTdd:dd:ddZ"),
        Some("email") => text
            .split_once('@')
            .is_some_and(|(a, b)| !a.is_empty() && b.contains('.')),
        Some("uuid") => digits(text, "hhhhhhhh-hhhh-4hhh-hhhh-hhhhhhhhhhhh"),
        _ => true,
    };
    if !ok {
        return Err("not in its format".into());
    }
    Ok(())
}

fn number(x: f64, s: &Map<String, Value>) -> Result<(), String> {
    let bound = |k: &str| s.get(k).and_then(Value::as_f64);
    let checks = [
        bound("minimum").is_none_or(|m| x >= m),
        bound("maximum").is_none_or(|m| x <= m),
        bound("exclusiveMinimum").is_none_or(|m| x > m),
        bound("exclusiveMaximum").is_none_or(|m| x < m),
        bound("multipleOf").is_none_or(|m| ((x / m) - (x / m).round()).abs() < 1e-9),
    ];
    match checks.iter().all(|ok| *ok) {
        true => Ok(()),
        false => Err("out of its bounds".into()),
    }
}

fn make(schema: &Value, prompt: &str, seed: u64) -> Value {
    instance(schema, prompt, &mut Rng::new(seed))
}

/// Every keyword the generator supports, nested.
fn rich_schema() -> Value {
    json!({
        "type": "object",
        "$defs": {
            "person": {"type": "object", "properties": {
                "name": {"type": "string", "minLength": 3, "maxLength": 40},
                "email": {"type": "string", "format": "email"},
                "id": {"type": "string", "format": "uuid"},
            }, "required": ["name", "email", "id"], "additionalProperties": false},
        },
        "definitions": {"score": {"type": "integer", "minimum": 1, "maximum": 5}},
        "properties": {
            "sentiment": {"enum": ["positive", "negative", "neutral"]},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "rating": {"$ref": "#/definitions/score"},
            "odd": {"type": "integer", "exclusiveMinimum": 10, "exclusiveMaximum": 20, "multipleOf": 3},
            "price": {"type": "number", "exclusiveMinimum": 0, "multipleOf": 0.25},
            "urgent": {"type": "boolean"},
            "when": {"type": "string", "format": "date-time"},
            "day": {"type": "string", "format": "date"},
            "author": {"$ref": "#/$defs/person"},
            "reviewers": {"type": "array", "items": {"$ref": "#/$defs/person"}, "minItems": 2, "maxItems": 4},
            "tags": {"type": "array", "items": {"enum": ["a", "b", "c", "d", "e", "f"]}, "uniqueItems": true, "maxItems": 3},
            "pair": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}], "minItems": 2, "maxItems": 2},
            "maybe": {"anyOf": [{"type": "string", "maxLength": 5}, {"type": "null"}]},
            "either": {"type": ["integer", "null"], "minimum": -3, "maximum": -1},
            "kind": {"const": "review"},
            "merged": {"allOf": [
                {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]},
                {"properties": {"y": {"type": "string"}}, "required": ["y"]},
            ]},
            "nested": {"type": "object", "properties": {"deeper": {"type": "object", "properties": {
                "deepest": {"type": "array", "items": {"type": "number", "maximum": -100}}}}}},
            "summary": {"type": "string"},
            "optional_note": {"type": "string", "maxLength": 8},
        },
        "required": ["sentiment", "author", "rating", "summary", "undeclared"],
    })
}

#[test]
fn instances_validate_and_hold_every_property() {
    let schema = rich_schema();
    for seed in 0..200 {
        let value = make(&schema, "The new release is great, thanks for the quick fix!", seed);
        check(&value, &schema).unwrap_or_else(|e| panic!("seed {seed}: {e}\n{value:#}"));
        let properties = schema["properties"].as_object().unwrap();
        let object = value.as_object().unwrap();
        assert!(properties.keys().all(|k| object.contains_key(k)), "{value:#}");
        assert!(object.contains_key("undeclared"));
        assert_eq!(object["merged"].as_object().unwrap().len(), 2);
        assert!(object["nested"]["deeper"]["deepest"].is_array());
    }
    let value = make(&schema, "The new release is great, thanks for the quick fix!", 1);
    assert_eq!(value["sentiment"], "positive", "the prompt's cue picks the label");
    assert_eq!(value["summary"], "The new release is great, thanks for the quick fix");
}

#[test]
fn the_same_request_gets_the_same_instance() {
    let schema = rich_schema();
    assert_eq!(make(&schema, "a prompt", 9), make(&schema, "a prompt", 9));
    let seeds: std::collections::BTreeSet<String> = (0..10).map(|s| make(&schema, "p", s).to_string()).collect();
    assert!(seeds.len() > 5, "seeds vary the answer");
}

#[test]
fn recursive_schemas_end_and_still_validate() {
    let tree = json!({
        "$ref": "#/$defs/node",
        "$defs": {"node": {"type": "object", "properties": {
            "label": {"type": "string"},
            "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
            "next": {"anyOf": [{"$ref": "#/$defs/node"}, {"type": "null"}]},
            "parent": {"type": ["object", "null"], "properties": {"up": {"$ref": "#"}}},
        }, "required": ["label", "children", "next", "parent"], "additionalProperties": false}},
    });
    for seed in 0..50 {
        let value = make(&tree, "family tree", seed);
        check(&value, &tree).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert!(value.to_string().len() < 1 << 20);
    }
}

/// Counts the values of an instance and its depth.
fn size(value: &Value) -> (usize, usize) {
    match value {
        Value::Array(items) => items
            .iter()
            .map(size)
            .fold((1, 1), |(n, d), (n2, d2)| (n + n2, d.max(d2 + 1))),
        Value::Object(fields) => fields
            .values()
            .map(size)
            .fold((1, 1), |(n, d), (n2, d2)| (n + n2, d.max(d2 + 1))),
        _ => (1, 1),
    }
}

fn nested(depth: usize) -> Value {
    (0..depth).fold(
        json!({"type": "string"}),
        |inner, _| json!({"type": "object", "properties": {"a": inner}, "required": ["a"]}),
    )
}

#[test]
fn hostile_schemas_are_answered_in_bounded_time_and_size() {
    let huge_enum = json!({"enum": (0..1_000_000).map(|i| format!("v{i}")).collect::<Vec<_>>()});
    let fan_out: serde_json::Map<String, Value> = (0..2000)
        .map(|i| (format!("p{i}"), json!({"$ref": "#/$defs/d"})))
        .collect();
    let names: Vec<String> = fan_out.keys().cloned().collect();
    let long_key = "k".repeat(100_000);
    let hostile = [
        ("deep nesting", nested(100)),
        ("self reference", json!({"$ref": "#"})),
        (
            "reference loop",
            json!({"$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}}),
        ),
        (
            "required recursion",
            json!({"$defs": {"d": {"type": "object", "properties": {"a": {"$ref": "#/$defs/d"}, "b": {"$ref": "#/$defs/d"}}, "required": ["a", "b"]}}, "$ref": "#/$defs/d"}),
        ),
        (
            "fan-out",
            json!({"$defs": {"d": {"type": "object", "properties": fan_out, "required": names}}, "$ref": "#/$defs/d"}),
        ),
        ("huge enum", huge_enum),
        (
            "huge arrays",
            json!({"type": "array", "minItems": 1_000_000_000u64, "items": {"type": "array", "minItems": 1_000_000, "items": {"type": "string", "minLength": 1_000_000_000u64}}}),
        ),
        (
            "long keys",
            json!({"$defs": {"d": {"type": "object", "properties": {long_key.clone(): {"$ref": "#/$defs/d"}, "b": {"$ref": "#/$defs/d"}}, "required": [long_key]}}, "$ref": "#/$defs/d"}),
        ),
        (
            "huge const",
            json!({"$defs": {"d": {"type": "object", "properties": {"c": {"const": "x".repeat(1 << 20)}, "d": {"$ref": "#/$defs/d"}}, "required": ["c", "d"]}}, "$ref": "#/$defs/d"}),
        ),
        (
            "allOf loop",
            json!({"allOf": [{"$ref": "#"}, {"$ref": "#"}], "type": "object", "properties": {"a": {"$ref": "#"}}}),
        ),
    ];
    for (what, schema) in hostile {
        let started = Instant::now();
        let value = make(&schema, "anything", 1);
        let elapsed = started.elapsed();
        let (values, depth) = size(&value);
        let bytes = value.to_string().len();
        assert!(elapsed < Duration::from_secs(2), "{what}: {elapsed:?}");
        assert!(values <= MAX_NODES + MAX_PROPERTIES + 1, "{what}: {values} values");
        assert!(depth <= MAX_DEPTH + 2, "{what}: depth {depth}");
        assert!(
            bytes <= 4 * MAX_CHARS + 8 * MAX_NODES + (1 << 20) + 200_000,
            "{what}: {bytes} bytes"
        );
    }
}
