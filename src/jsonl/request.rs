//! Borrowed, allocation-light parsing of one request line.
//!
//! Only the fields the rules look at are kept (`custom_id`, `method`, `url`, `body.model`,
//! `body.stream`); everything else, including the bulk of `body`, is skipped with
//! [`IgnoredAny`], which checks the JSON syntax without building values.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A JSON value reduced to what the rules need: strings are kept, other kinds only named.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar<'a> {
    Str(Cow<'a, str>),
    Bool(bool),
    Other(&'static str),
}

impl Scalar<'_> {
    /// The JSON kind, as used in messages ("string", "number"…).
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Scalar::Str(_) => "string",
            Scalar::Bool(_) => "boolean",
            Scalar::Other(kind) => kind,
        }
    }
}

/// Either an object read by `T`, or the kind of the non-object value found instead.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ObjectOr<T> {
    Object(T),
    Other(&'static str),
}

/// A top-level request line.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Request<'a> {
    pub custom_id: Option<Scalar<'a>>,
    pub method: Option<Scalar<'a>>,
    pub url: Option<Scalar<'a>>,
    pub body: Option<ObjectOr<Body<'a>>>,
}

/// The fields of `body` the rules look at.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Body<'a> {
    pub model: Option<Scalar<'a>>,
    pub stream: Option<Scalar<'a>>,
    /// The largest output the request may ask for (`max_completion_tokens`, `max_tokens` or
    /// `max_output_tokens`), for the token estimate.
    pub max_output: Option<u64>,
}

/// A token ceiling field: its value when it is a non-negative integer, whatever else it is
/// otherwise (the gateway judges the value; the estimate only counts what it can read).
struct Ceiling(Option<u64>);

impl<'de> Deserialize<'de> for Ceiling {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> de::Visitor<'de> for Visitor {
            type Value = Ceiling;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Ceiling, E> {
                Ok(Ceiling(Some(v)))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Ceiling, E> {
                Ok(Ceiling(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Ceiling, E> {
                Ok(Ceiling(None))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Ceiling, E> {
                Ok(Ceiling(None))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Ceiling, E> {
                Ok(Ceiling(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Ceiling, E> {
                Ok(Ceiling(None))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Ceiling, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Ceiling(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ceiling, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Ceiling(None))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// Parses one line. Errors are JSON syntax errors; a wrong shape is not an error here.
pub(crate) fn parse(line: &str) -> serde_json::Result<ObjectOr<Request<'_>>> {
    serde_json::from_str(line)
}

/// Reads the fields of an object from a map.
trait FromMap<'de>: Sized {
    fn from_map<A: MapAccess<'de>>(map: A) -> Result<Self, A::Error>;
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum RequestKey {
    CustomId,
    Method,
    Url,
    Body,
    #[serde(other)]
    Other,
}

impl<'de> FromMap<'de> for Request<'de> {
    fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut request = Request::default();
        while let Some(key) = map.next_key::<RequestKey>()? {
            match key {
                RequestKey::CustomId => request.custom_id = Some(map.next_value()?),
                RequestKey::Method => request.method = Some(map.next_value()?),
                RequestKey::Url => request.url = Some(map.next_value()?),
                RequestKey::Body => request.body = Some(map.next_value()?),
                RequestKey::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(request)
    }
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum BodyKey {
    Model,
    Stream,
    MaxCompletionTokens,
    MaxTokens,
    MaxOutputTokens,
    #[serde(other)]
    Other,
}

impl<'de> FromMap<'de> for Body<'de> {
    fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut body = Body::default();
        while let Some(key) = map.next_key::<BodyKey>()? {
            match key {
                BodyKey::Model => body.model = Some(map.next_value()?),
                BodyKey::Stream => body.stream = Some(map.next_value()?),
                BodyKey::MaxCompletionTokens | BodyKey::MaxTokens | BodyKey::MaxOutputTokens => {
                    let Ceiling(value) = map.next_value()?;
                    body.max_output = body.max_output.max(value);
                }
                BodyKey::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(body)
    }
}

/// Implements the `visit_*` methods for every non-string, non-object JSON kind as
/// `Ok($make(kind))`, skipping the contents of arrays.
macro_rules! visit_other_kinds {
    ($make:expr) => {
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($make("number"))
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($make("number"))
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($make("number"))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($make("null"))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            IgnoredAny.visit_seq(seq)?;
            Ok($make("array"))
        }
    };
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v)))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Bool(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        IgnoredAny.visit_map(map)?;
        Ok(Scalar::Other("object"))
    }
    visit_other_kinds!(Scalar::Other);
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ObjectOrVisitor<T>(std::marker::PhantomData<T>);

impl<'de, T: FromMap<'de>> Visitor<'de> for ObjectOrVisitor<T> {
    type Value = ObjectOr<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(ObjectOr::Other("string"))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(ObjectOr::Other("boolean"))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        T::from_map(map).map(ObjectOr::Object)
    }
    visit_other_kinds!(ObjectOr::Other);
}

impl<'de, T: FromMap<'de>> Deserialize<'de> for ObjectOr<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ObjectOrVisitor(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(line: &str) -> Request<'_> {
        match parse(line).unwrap() {
            ObjectOr::Object(r) => r,
            ObjectOr::Other(kind) => panic!("not an object: {kind}"),
        }
    }

    #[test]
    fn reads_the_checked_fields_and_skips_the_rest() {
        let r = request(
            r#"{"custom_id":"a","x":[1,{"y":null}],"method":"POST","url":"/v1/chat/completions",
               "body":{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":false}}"#,
        );
        assert_eq!(r.custom_id, Some(Scalar::Str("a".into())));
        assert_eq!(r.method, Some(Scalar::Str("POST".into())));
        assert_eq!(r.url, Some(Scalar::Str("/v1/chat/completions".into())));
        let Some(ObjectOr::Object(body)) = r.body else {
            panic!("body not read")
        };
        assert_eq!(body.model, Some(Scalar::Str("m".into())));
        assert_eq!(body.stream, Some(Scalar::Bool(false)));
    }

    #[test]
    fn escaped_keys_and_values_are_decoded() {
        let r = request(r#"{"custom\u005fid":"a\"b\u00e9"}"#);
        assert_eq!(r.custom_id, Some(Scalar::Str("a\"bé".into())));
    }

    #[test]
    fn kinds_of_non_strings() {
        let r = request(r#"{"custom_id":1.5,"method":null,"url":[1],"body":"x"}"#);
        assert_eq!(r.custom_id.unwrap().kind(), "number");
        assert_eq!(r.method.unwrap().kind(), "null");
        assert_eq!(r.url.unwrap().kind(), "array");
        assert_eq!(r.body, Some(ObjectOr::Other("string")));
        let r = request(r#"{"custom_id":{"a":1},"method":true}"#);
        assert_eq!(r.custom_id.unwrap().kind(), "object");
        assert_eq!(r.method.unwrap().kind(), "boolean");
    }

    #[test]
    fn non_object_lines_and_syntax_errors() {
        assert_eq!(parse("[1,2]").unwrap(), ObjectOr::Other("array"));
        assert_eq!(parse(" 7 ").unwrap(), ObjectOr::Other("number"));
        assert!(parse("{\"a\":}").is_err());
        assert!(parse("{} {}").is_err());
        assert!(parse("{\"a\":[1,]}").is_err());
    }
}
