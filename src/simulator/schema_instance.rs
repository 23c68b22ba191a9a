//! A JSON value that validates against a request's JSON Schema (`response_format`
//! `json_schema`), made up from the prompt: objects with every property (required or not),
//! `enum` values picked the way a classifier would ([`super::labels`]), strings from the
//! prompt's words (or in their `format`), numbers within `minimum`/`maximum`, arrays within
//! `minItems`/`maxItems`; `const`, `anyOf`/`oneOf` (the first branch), `allOf` (merged),
//! `type` lists and local `$ref`s (`#`, `#/$defs/...`, `#/definitions/...`) are followed.
//!
//! Not honoured: `pattern`, `minProperties`, `not`, `if`/`then`, `dependentRequired`; a
//! `$ref` to another document is answered with `null`.
//!
//! The work is bounded whatever the schema: below [`SOFT_DEPTH`] only what the schema
//! requires is generated (required properties, `minItems` items, the `null` branch of a
//! union), so recursive schemas end; below [`MAX_DEPTH`], past [`MAX_NODES`] values or
//! [`MAX_CHARS`] characters of strings every further value is `null` (such an answer may not
//! validate, but it is made in bounded time and memory).

use std::collections::HashSet;

use serde_json::{Map, Number, Value};

use super::labels;
use super::prose::{self, capitalize};
use super::rng::Rng;

/// Below this depth only what the schema requires is generated.
pub const SOFT_DEPTH: usize = 6;
/// Below this depth (nesting and `$ref`s followed) every value is `null`.
pub const MAX_DEPTH: usize = 32;
/// Most values in one answer.
pub const MAX_NODES: usize = 4096;
/// Most characters of strings in one answer.
pub const MAX_CHARS: usize = 64 * 1024;
/// Most items of one array, whatever `minItems` asks.
const MAX_ITEMS: u64 = 256;
/// Most properties (and most required names) of one object looked at.
const MAX_PROPERTIES: usize = 512;
/// Most schemas merged into one (through `allOf` and `$ref`).
const MAX_PARTS: usize = 32;
/// Most branches of an `anyOf`/`oneOf` looked at for a `null` one.
const MAX_BRANCHES: usize = 64;
/// Words of a free-text string such as a `summary`.
const SUMMARY_WORDS: usize = 12;
/// The schema `true`: anything validates.
static ANY: Value = Value::Bool(true);
/// Property names whose strings are a sentence rather than a few words.
const LONG_TEXT: &[&str] = &[
    "summary",
    "description",
    "reason",
    "explanation",
    "rationale",
    "justification",
    "comment",
    "message",
    "answer",
    "text",
    "note",
    "content",
    "detail",
    "response",
];

/// An instance of `schema` for a prompt (`prompt` its text, `rng` seeded from the request).
pub fn instance(schema: &Value, prompt: &str, rng: &mut Rng) -> Value {
    let mut generator = Generator {
        root: schema,
        prompt,
        words: prose::keywords(prompt),
        rng,
        nodes: 0,
        chars: 0,
    };
    generator.value(schema, 0, "")
}

struct Generator<'a, 'r> {
    root: &'a Value,
    prompt: &'a str,
    words: Vec<String>,
    rng: &'r mut Rng,
    nodes: usize,
    chars: usize,
}

/// A schema with its `allOf` members and `$ref` targets merged in: a keyword is read from the
/// first part that has it; `properties` and `required` are the union of all parts'.
#[derive(Default)]
struct View<'a> {
    parts: Vec<&'a Map<String, Value>>,
    /// A `false` schema or a `$ref` that leads nowhere was met: nothing validates.
    impossible: bool,
}

impl<'a> View<'a> {
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.parts.iter().find_map(|part| part.get(key))
    }

    fn number(&self, key: &str) -> Option<f64> {
        self.get(key).and_then(Value::as_f64)
    }

    fn count(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(Value::as_u64)
    }

    /// The required names (at most [`MAX_PROPERTIES`]).
    fn required(&self) -> HashSet<&'a str> {
        let lists = self
            .parts
            .iter()
            .filter_map(|p| p.get("required").and_then(Value::as_array));
        lists.flatten().filter_map(Value::as_str).take(MAX_PROPERTIES).collect()
    }

    /// The property schemas (at most [`MAX_PROPERTIES`]), the first part's winning for a name
    /// given twice.
    fn properties(&self) -> Vec<(&'a String, &'a Value)> {
        let mut seen = HashSet::new();
        let maps = self
            .parts
            .iter()
            .filter_map(|p| p.get("properties").and_then(Value::as_object));
        let mut scanned = 0;
        let first_seen = maps.flatten().take_while(|_| {
            scanned += 1;
            scanned <= MAX_PROPERTIES
        });
        first_seen.filter(|(name, _)| seen.insert(name.as_str())).collect()
    }
}

impl<'a> Generator<'a, '_> {
    fn value(&mut self, schema: &'a Value, depth: usize, name: &str) -> Value {
        self.nodes += 1;
        if depth > MAX_DEPTH || self.spent() {
            return Value::Null;
        }
        let view = self.view(schema);
        if view.impossible {
            return Value::Null;
        }
        if let Some(constant) = view.get("const") {
            return self.copied(constant);
        }
        if let Some(Value::Array(values)) = view.get("enum") {
            return match labels::pick(values, &self.words, self.rng) {
                Some(picked) => self.copied(picked),
                None => Value::Null,
            };
        }
        if let Some(Value::Array(branches)) = view.get("anyOf").or_else(|| view.get("oneOf")) {
            return match self.branch(branches, depth) {
                Some(branch) => self.value(branch, depth + 1, name),
                None => Value::Null,
            };
        }
        match self.kind(&view, depth) {
            "object" => self.object(&view, depth),
            "array" => self.array(&view, depth, name),
            "string" => self.string(&view, name),
            "integer" => self.number(&view, true),
            "number" => self.number(&view, false),
            "boolean" => Value::Bool(self.rng.below(2) == 1),
            _ => Value::Null,
        }
    }

    /// Whether the budget of values or characters is spent.
    fn spent(&self) -> bool {
        self.nodes > MAX_NODES || self.chars > MAX_CHARS
    }

    /// A copy of a `const` or `enum` value, charged to the budget (`null` when it does not fit).
    fn copied(&mut self, value: &Value) -> Value {
        let weight = weight(value, MAX_CHARS.saturating_sub(self.chars) + 1);
        self.chars += weight;
        match self.spent() {
            true => Value::Null,
            false => value.clone(),
        }
    }

    /// `schema` with its `$ref` targets and `allOf` members, at most [`MAX_PARTS`] of them.
    fn view(&self, schema: &'a Value) -> View<'a> {
        let mut view = View::default();
        let mut pending = vec![schema];
        let mut visited = 0;
        while let Some(schema) = pending.pop() {
            visited += 1;
            if visited > MAX_PARTS {
                break;
            }
            let map = match schema {
                Value::Object(map) => map,
                Value::Bool(false) => {
                    view.impossible = true;
                    continue;
                }
                _ => continue,
            };
            if let Some(reference) = map.get("$ref").and_then(Value::as_str) {
                match self.resolve(reference) {
                    Some(target) => pending.push(target),
                    None => view.impossible = true,
                }
            }
            if let Some(Value::Array(members)) = map.get("allOf") {
                pending.extend(members.iter().take(MAX_PARTS).rev());
            }
            view.parts.push(map);
        }
        view
    }

    /// A local `$ref`: `#` or a JSON pointer into the schema.
    fn resolve(&self, reference: &str) -> Option<&'a Value> {
        match reference.strip_prefix('#')? {
            "" => Some(self.root),
            pointer => self.root.pointer(pointer),
        }
    }

    /// The branch of a union to follow: the first that is not `null`, or past [`SOFT_DEPTH`]
    /// a `null` one if there is one (so recursion ends).
    fn branch(&self, branches: &'a [Value], depth: usize) -> Option<&'a Value> {
        let is_null = |b: &&Value| b.get("type").and_then(Value::as_str) == Some("null");
        let scanned = || branches.iter().take(MAX_BRANCHES);
        let preferred = match depth >= SOFT_DEPTH {
            true => scanned().find(is_null),
            false => scanned().find(|b| !is_null(b)),
        };
        preferred.or(branches.first())
    }

    /// The `type` to generate: the one given (of a list, the first that is not `null`, or past
    /// [`SOFT_DEPTH`] `null` if allowed), else the one the keywords imply.
    fn kind(&self, view: &View<'a>, depth: usize) -> &'a str {
        match view.get("type") {
            Some(Value::String(kind)) => kind,
            Some(Value::Array(kinds)) => {
                let kinds: Vec<&str> = kinds.iter().filter_map(Value::as_str).collect();
                let null_allowed = kinds.contains(&"null");
                match kinds.iter().find(|k| **k != "null") {
                    Some(kind) if !(null_allowed && depth >= SOFT_DEPTH) => kind,
                    _ => "null",
                }
            }
            _ if ["properties", "required", "additionalProperties"]
                .iter()
                .any(|k| view.get(k).is_some()) =>
            {
                "object"
            }
            _ if ["items", "prefixItems", "minItems", "maxItems"]
                .iter()
                .any(|k| view.get(k).is_some()) =>
            {
                "array"
            }
            _ if [
                "minimum",
                "maximum",
                "exclusiveMinimum",
                "exclusiveMaximum",
                "multipleOf",
            ]
            .iter()
            .any(|k| view.get(k).is_some()) =>
            {
                "number"
            }
            _ => "string",
        }
    }

    /// Every property (past [`SOFT_DEPTH`], the required ones); nothing more once the budget
    /// is spent.
    fn object(&mut self, view: &View<'a>, depth: usize) -> Value {
        let required = view.required();
        let mut object = Map::new();
        let properties = view
            .properties()
            .into_iter()
            .map(|(name, schema)| (name.as_str(), schema));
        let unlisted = required.iter().map(|name| (*name, &ANY));
        for (name, schema) in properties.chain(unlisted) {
            if self.spent() {
                break;
            }
            let wanted = required.contains(name) || depth < SOFT_DEPTH;
            if wanted && !object.contains_key(name) {
                self.chars += name.len();
                let value = self.value(schema, depth + 1, name);
                object.insert(name.to_owned(), value);
            }
        }
        Value::Object(object)
    }

    /// Between `minItems` and `maxItems` items (one to three when free; past [`SOFT_DEPTH`]
    /// `minItems`), at most [`MAX_ITEMS`]; distinct ones when `uniqueItems` asks (fewer when
    /// repeated draws give no new one).
    fn array(&mut self, view: &View<'a>, depth: usize, name: &str) -> Value {
        let min = view.count("minItems").unwrap_or(0);
        let max = view.count("maxItems").unwrap_or(u64::MAX).max(min);
        let free = if depth >= SOFT_DEPTH { 0 } else { self.rng.between(1, 3) };
        let wanted = free.clamp(min, max).min(MAX_ITEMS) as usize;
        let unique = view.get("uniqueItems") == Some(&Value::Bool(true));
        let prefix = view.get("prefixItems").and_then(Value::as_array);
        let items = view
            .get("items")
            .filter(|items| items.is_object() || items.is_boolean());
        let mut out: Vec<Value> = Vec::with_capacity(wanted);
        for _ in 0..wanted * 2 + 4 {
            if out.len() == wanted || self.spent() {
                break;
            }
            let position = prefix.and_then(|p| p.get(out.len()));
            let schema = position.or(items).unwrap_or(&ANY);
            let item = self.value(schema, depth + 1, name);
            if !(unique && out.contains(&item)) {
                out.push(item);
            }
        }
        Value::Array(out)
    }

    /// A string in the schema's `format`, else words of the prompt (a sentence for a summary or
    /// description), within `minLength`/`maxLength`.
    fn string(&mut self, view: &View<'a>, name: &str) -> Value {
        let text = match view
            .get("format")
            .and_then(Value::as_str)
            .and_then(|f| self.formatted(f))
        {
            Some(text) => text,
            None => self.words_for(name),
        };
        let room = MAX_CHARS.saturating_sub(self.chars) as u64;
        let min = view.count("minLength").map_or(0, |m| m.min(room) as usize);
        let max = view.count("maxLength").map_or(usize::MAX, |m| m as usize);
        let text = self.fit(text, min, max);
        self.chars += text.chars().count();
        Value::String(text)
    }

    fn words_for(&mut self, name: &str) -> String {
        let name = name.to_lowercase();
        if LONG_TEXT.iter().any(|long| name.contains(long)) {
            return prose::excerpt(self.prompt, SUMMARY_WORDS);
        }
        let count = self.rng.between(1, 3);
        let words: Vec<String> = (0..count).map(|_| prose::word(&self.words, self.rng)).collect();
        capitalize(&words.join(" "))
    }

    /// `text` padded with words to `min` characters, then cut to `max`.
    fn fit(&mut self, mut text: String, min: usize, max: usize) -> String {
        let mut length = text.chars().count();
        while length < min {
            let word = prose::word(&self.words, self.rng);
            let word = if text.is_empty() { word } else { format!(" {word}") };
            length += word.chars().count();
            text.push_str(&word);
        }
        match length > max {
            true => text.chars().take(max).collect(),
            false => text,
        }
    }

    /// A value in one of the common string formats, `None` for others.
    fn formatted(&mut self, format: &str) -> Option<String> {
        let rng = &mut *self.rng;
        let (month, day, hour, minute) = (
            rng.between(1, 12),
            rng.between(1, 28),
            rng.between(0, 23),
            rng.between(0, 59),
        );
        let word: String = prose::word(&self.words, rng)
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect();
        let word = if word.is_empty() {
            "user".to_owned()
        } else {
            word.to_lowercase()
        };
        Some(match format {
            "date-time" => format!("2024-{month:02}-{day:02}T{hour:02}:{minute:02}:00Z"),
            "date" => format!("2024-{month:02}-{day:02}"),
            "time" => format!("{hour:02}:{minute:02}:00Z"),
            "duration" => format!("P{day}D"),
            "email" | "idn-email" => format!("{word}@example.com"),
            "hostname" | "idn-hostname" => format!("{word}.example.com"),
            "uri" | "url" | "iri" | "uri-reference" | "iri-reference" => format!("https://example.com/{word}"),
            "ipv4" => format!("192.0.2.{}", rng.between(1, 254)),
            "ipv6" => format!("2001:db8::{:x}", rng.between(1, 0xfffe)),
            "uuid" => uuid(rng.next_u64(), rng.next_u64()),
            _ => return None,
        })
    }

    /// A number within `minimum`/`maximum` (strictly inside exclusive bounds), a multiple of
    /// `multipleOf` when one fits; between 0 and 100 when unbounded.
    fn number(&mut self, view: &View<'a>, integer: bool) -> Value {
        let (low, high, open_low, open_high) = bounds(view);
        let step = view.number("multipleOf").filter(|m| *m > 0.0);
        let value = match (integer, step) {
            (true, step) => self.integer(low, high, open_low, open_high, step.unwrap_or(1.0)),
            (false, Some(step)) => self.integer(low, high, open_low, open_high, step),
            (false, None) => self.decimal(low, high),
        };
        match integer && value.abs() < 9.0e15 {
            true => Value::Number((value as i64).into()),
            false => Number::from_f64(value).map_or(Value::Null, Value::Number),
        }
    }

    /// A multiple of `step` in the range (the low end when none fits).
    fn integer(&mut self, low: f64, high: f64, open_low: bool, open_high: bool, step: f64) -> f64 {
        let mut first = (low / step).ceil();
        let mut last = (high / step).floor();
        if open_low && first * step <= low {
            first += 1.0;
        }
        if open_high && last * step >= high {
            last -= 1.0;
        }
        if !(first.is_finite() && last.is_finite()) || first > last {
            return if first.is_finite() { first * step } else { low };
        }
        let span = (last - first).min(1.0e15) as u64;
        (first + self.rng.between(0, span) as f64) * step
    }

    /// A number strictly inside the range (its low end when it is a single point), with two
    /// decimals when that keeps it inside.
    fn decimal(&mut self, low: f64, high: f64) -> f64 {
        if high <= low {
            return low;
        }
        let value = low + (high - low) * (0.1 + 0.8 * self.rng.unit());
        let rounded = (value * 100.0).round() / 100.0;
        match rounded > low && rounded < high {
            true => rounded,
            false => value,
        }
    }
}

/// The range of a number schema: (low, high, low exclusive, high exclusive); 100 wide when one
/// side is open, 0..100 when both are.
fn bounds(view: &View<'_>) -> (f64, f64, bool, bool) {
    let (low, open_low) = match (view.number("exclusiveMinimum"), view.number("minimum")) {
        (Some(e), _) => (Some(e), true),
        (None, m) => (m, view.get("exclusiveMinimum") == Some(&Value::Bool(true))),
    };
    let (high, open_high) = match (view.number("exclusiveMaximum"), view.number("maximum")) {
        (Some(e), _) => (Some(e), true),
        (None, m) => (m, view.get("exclusiveMaximum") == Some(&Value::Bool(true))),
    };
    let (low, high) = match (low, high) {
        (Some(l), Some(h)) => (l, h),
        (Some(l), None) => (l, l + 100.0),
        (None, Some(h)) => (h - 100.0, h),
        (None, None) => (0.0, 100.0),
    };
    (low, high, open_low, open_high)
}

/// Values and characters in `value`, counted up to `limit`.
fn weight(value: &Value, limit: usize) -> usize {
    let mut weight = 0;
    let mut pending = vec![value];
    while let Some(value) = pending.pop() {
        if weight > limit {
            break;
        }
        weight += 1;
        match value {
            Value::String(s) => weight += s.len(),
            Value::Array(items) => pending.extend(items),
            Value::Object(fields) => {
                for (key, value) in fields {
                    weight += key.len();
                    pending.push(value);
                }
            }
            _ => {}
        }
    }
    weight
}

/// A version 4 UUID from two random words.
fn uuid(high: u64, low: u64) -> String {
    let high = (high & !0xf000) | 0x4000;
    let low = (low & !(0xc << 60)) | (0x8 << 60);
    let hex = format!("{high:016x}{low:016x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
#[path = "schema_instance_tests.rs"]
pub mod tests;
