//! Rewriting request lines on the fly (`spec.input.overrides`): `body.model` replaced,
//! `custom_id` prefixed. Every other key keeps its place and every other value its exact bytes.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// What to change in every line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rewrite {
    /// Replaces (or sets) `body.model`.
    pub model: Option<String>,
    /// Prefixed to `custom_id` when it is a string.
    pub custom_id_prefix: Option<String>,
}

impl Rewrite {
    /// Whether the rewrite changes nothing.
    pub fn is_noop(&self) -> bool {
        self.model.is_none() && self.custom_id_prefix.is_none()
    }

    /// How many bytes longer each request line is rewritten with `self` than with `base`, when
    /// both set the same fields (`None` otherwise). Only the model name and the prefix differ
    /// between two such rewrites of a line, and JSON escapes character by character, so this
    /// holds for every line both rewrite: a chunk measured under one rewrite gives its length
    /// under any other.
    pub fn growth_over(&self, base: &Rewrite) -> Option<i64> {
        let escaped = |s: &str| json_string(s).get().len() as i64;
        let delta = |new: &Option<String>, old: &Option<String>| match (new, old) {
            (Some(new), Some(old)) => Some(escaped(new) - escaped(old)),
            (None, None) => Some(0),
            _ => None,
        };
        Some(delta(&self.model, &base.model)? + delta(&self.custom_id_prefix, &base.custom_id_prefix)?)
    }

    /// The rewritten line, or `None` when it is left as it is: not a JSON object (the
    /// validator reports it), or nothing to change.
    pub fn apply(&self, line: &str) -> Option<String> {
        if self.is_noop() {
            return None;
        }
        let Pairs(mut pairs) = serde_json::from_str(line).ok()?;
        let mut body_rewritten = None;
        for (key, value) in &mut pairs {
            match key.as_str() {
                "custom_id" => {
                    if let (Some(prefix), Ok(id)) =
                        (&self.custom_id_prefix, serde_json::from_str::<String>(value.get()))
                    {
                        *value = json_string(&format!("{prefix}{id}"));
                    }
                }
                "body" => {
                    if let Some(model) = &self.model {
                        body_rewritten = Some(with_model(value.get(), model)?);
                    }
                }
                _ => {}
            }
        }
        let mut out = String::with_capacity(line.len() + 64);
        out.push('{');
        for (i, (key, value)) in pairs.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(json_string(key).get());
            out.push(':');
            match (key.as_str(), &body_rewritten) {
                ("body", Some(body)) => out.push_str(body),
                _ => out.push_str(value.get()),
            }
        }
        out.push('}');
        Some(out)
    }
}

/// `body` with `model` set; `None` when `body` is not an object (left for the validator).
fn with_model(body: &str, model: &str) -> Option<String> {
    let Pairs(mut pairs) = serde_json::from_str(body).ok()?;
    let model_value = json_string(model);
    match pairs.iter_mut().find(|(k, _)| k == "model") {
        Some((_, value)) => *value = model_value,
        None => pairs.push(("model".to_string(), model_value)),
    }
    let mut out = String::with_capacity(body.len() + model.len());
    out.push('{');
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(json_string(key).get());
        out.push(':');
        out.push_str(value.get());
    }
    out.push('}');
    Some(out)
}

fn json_string(text: &str) -> Box<RawValue> {
    let encoded = serde_json::to_string(text).expect("a string always serialises");
    RawValue::from_string(encoded).expect("an encoded string is valid JSON")
}

/// A JSON object's members in their order, values kept as raw JSON text.
struct Pairs(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for Pairs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PairsVisitor;
        impl<'de> Visitor<'de> for PairsVisitor {
            type Value = Pairs;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Pairs, A::Error> {
                let mut pairs = Vec::new();
                while let Some(entry) = map.next_entry::<String, Box<RawValue>>()? {
                    pairs.push(entry);
                }
                Ok(Pairs(pairs))
            }
        }
        deserializer.deserialize_map(PairsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both() -> Rewrite {
        Rewrite {
            model: Some("gpt-4o-mini".into()),
            custom_id_prefix: Some("m/".into()),
        }
    }

    #[test]
    fn keeps_key_order_and_other_values_byte_for_byte() {
        let line = r#"{"url":"/v1/chat/completions","custom_id":"a","body":{"messages":[{"role":"user", "content":"hi \u00e9"}],"model":"gpt-4o","temperature":0.50},"method":"POST","extra":{"z":1,"a":2}}"#;
        assert_eq!(
            both().apply(line).unwrap(),
            r#"{"url":"/v1/chat/completions","custom_id":"m/a","body":{"messages":[{"role":"user", "content":"hi \u00e9"}],"model":"gpt-4o-mini","temperature":0.50},"method":"POST","extra":{"z":1,"a":2}}"#
        );
    }

    #[test]
    fn growth_over_another_rewrite_is_exact_for_every_line() {
        let lines = [
            r#"{"custom_id":"a","body":{"model":"x","messages":[]},"url":"/v1/chat/completions"}"#,
            r#"{ "custom_id" : "\u00e9\n" , "body" : { "input" : "no model" } }"#,
            r#"{"\u0065xtra":"k","custom_id":"é","body":{"model":"a much longer model name"}}"#,
        ];
        let base = Rewrite {
            model: Some("gpt-4o".into()),
            custom_id_prefix: Some("gpt-4o/c0000/".into()),
        };
        let other = Rewrite {
            model: Some("Llama \"3\" é".into()),
            custom_id_prefix: Some("Llama \"3\" é/c0042/".into()),
        };
        let growth = other.growth_over(&base).unwrap();
        for line in lines {
            let (a, b) = (base.apply(line).unwrap(), other.apply(line).unwrap());
            assert_eq!(b.len() as i64 - a.len() as i64, growth, "{line}");
        }
        let prefix_only = Rewrite {
            model: None,
            custom_id_prefix: Some("c0001/".into()),
        };
        assert_eq!(prefix_only.growth_over(&base), None, "different fields set");
    }

    #[test]
    fn a_body_without_model_gets_one() {
        let rewrite = Rewrite {
            model: Some("m".into()),
            custom_id_prefix: None,
        };
        assert_eq!(
            rewrite.apply(r#"{"custom_id":"a","body":{"input":"x"}}"#).unwrap(),
            r#"{"custom_id":"a","body":{"input":"x","model":"m"}}"#
        );
    }

    #[test]
    fn escapes_are_kept_valid() {
        let rewrite = Rewrite {
            model: Some("a\"b".into()),
            custom_id_prefix: Some("p\\".into()),
        };
        let out = rewrite.apply(r#"{"custom_id":"x\"y","body":{"model":"old"}}"#).unwrap();
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(value["custom_id"], "p\\x\"y");
        assert_eq!(value["body"]["model"], "a\"b");
    }

    #[test]
    fn what_is_not_an_object_is_left_for_the_validator() {
        assert_eq!(both().apply("[1,2]"), None);
        assert_eq!(both().apply("{not json"), None);
        assert_eq!(both().apply(r#"{"custom_id":"a","body":"text"}"#), None);
        // A custom_id that is not a string stays as it is (the validator names it).
        assert_eq!(
            both().apply(r#"{"custom_id":7,"body":{}}"#).unwrap(),
            r#"{"custom_id":7,"body":{"model":"gpt-4o-mini"}}"#
        );
        assert_eq!(Rewrite::default().apply(r#"{"custom_id":"a"}"#), None);
    }
}
