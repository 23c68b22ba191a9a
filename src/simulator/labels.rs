//! Picking one of a schema's `enum` values for a prompt, as a classifier would: the value the
//! prompt's words name (the value itself, or a cue word of a few common labels: billing, bug,
//! account, feature, high, low, positive, negative...), else one chosen by the request's hash.
//! Different prompts get different values; the same prompt always the same one.

use serde_json::Value;

use super::rng::Rng;

/// Values of one enum compared with the prompt (the rest can still be picked by the hash).
const MAX_SCANNED: usize = 256;

/// Words that point at a common label.
const CUES: &[(&str, &[&str])] = &[
    (
        "billing",
        &[
            "invoice",
            "charge",
            "charged",
            "refund",
            "payment",
            "paid",
            "price",
            "pricing",
            "discount",
            "plan",
            "subscription",
            "receipt",
            "tax",
            "usd",
            "eur",
            "annual",
            "monthly",
            "billed",
        ],
    ),
    (
        "bug",
        &[
            "crash",
            "crashes",
            "error",
            "broken",
            "fail",
            "fails",
            "stuck",
            "corrupted",
            "rejected",
            "stopped",
            "slow",
            "nothing",
            "loop",
            "loops",
            "seconds",
        ],
    ),
    (
        "account",
        &[
            "login",
            "log",
            "password",
            "sso",
            "sign-in",
            "admin",
            "two-factor",
            "2fa",
            "delete",
            "gdpr",
            "profile",
            "workspace",
            "access",
            "personal",
        ],
    ),
    (
        "feature",
        &[
            "request",
            "add",
            "dark",
            "mode",
            "wish",
            "increase",
            "integration",
            "support",
            "new",
        ],
    ),
    ("other", &["thank", "thanks", "hello", "action"]),
    (
        "high",
        &[
            "urgent",
            "asap",
            "crash",
            "crashes",
            "twice",
            "can't",
            "cannot",
            "security",
            "down",
            "loops",
            "stuck",
            "rejected",
            "corrupted",
            "stopped",
            "gdpr",
        ],
    ),
    (
        "low",
        &[
            "thank", "thanks", "how", "where", "question", "discount", "dark", "wish",
        ],
    ),
    (
        "positive",
        &[
            "thank",
            "thanks",
            "great",
            "love",
            "good",
            "saved",
            "happy",
            "excellent",
        ],
    ),
    (
        "negative",
        &[
            "bad",
            "hate",
            "terrible",
            "broken",
            "angry",
            "wrong",
            "crash",
            "disappointed",
            "slow",
        ],
    ),
];

/// One of `values` for a prompt of `words` (lowercase keywords); `None` when there are none.
pub fn pick<'a>(values: &'a [Value], words: &[String], rng: &mut Rng) -> Option<&'a Value> {
    let stems: Vec<&str> = words.iter().map(|w| stem(w)).collect();
    let scores: Vec<usize> = values.iter().take(MAX_SCANNED).map(|v| score(v, &stems)).collect();
    let best = scores.iter().copied().max().unwrap_or(0);
    let chosen = match best {
        0 => rng.below(values.len()),
        best => {
            let ties: Vec<usize> = (0..scores.len()).filter(|&i| scores[i] == best).collect();
            ties[rng.below(ties.len())]
        }
    };
    values.get(chosen)
}

/// How many of the prompt's words point at `value` (a string enum value; others score 0).
fn score(value: &Value, stems: &[&str]) -> usize {
    let Some(label) = value.as_str() else {
        return 0;
    };
    let label = label.to_lowercase();
    let mut cues: Vec<&str> = Vec::new();
    for part in label.split(|c: char| !c.is_alphanumeric()).filter(|p| !p.is_empty()) {
        cues.push(stem(part));
        let listed = CUES.iter().filter(|(name, _)| stem(name) == stem(part));
        cues.extend(listed.flat_map(|(_, words)| words.iter().map(|w| stem(w))));
    }
    stems.iter().filter(|s| cues.contains(s)).count()
}

/// A word without its plural or verb ending, so "billed", "billing" and "bills" match.
fn stem(word: &str) -> &str {
    for suffix in ["ing", "ed", "s"] {
        if let Some(stem) = word.strip_suffix(suffix)
            && stem.chars().count() >= 3
            && !(suffix == "s" && stem.ends_with('s'))
        {
            return stem;
        }
    }
    word
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::prose::keywords;
    use super::*;

    fn category(prompt: &str) -> Value {
        let values = json!(["billing", "bug", "feature", "account", "other"]);
        pick(values.as_array().unwrap(), &keywords(prompt), &mut Rng::new(3))
            .unwrap()
            .clone()
    }

    #[test]
    fn the_value_a_prompt_points_at_is_picked() {
        assert_eq!(category("I was charged twice, please refund me"), "billing");
        assert_eq!(category("The app crashes when I open settings"), "bug");
        assert_eq!(category("I can't log in, the password reset never arrives"), "account");
        assert_eq!(category("Feature request: dark mode"), "feature");
        assert_eq!(category("Billing period question"), "billing");
    }

    #[test]
    fn without_a_cue_the_hash_picks_and_any_value_can_come_out() {
        let values = json!(["red", "green", "blue"]);
        let picked: std::collections::BTreeSet<String> = (0..64u64)
            .map(|seed| pick(values.as_array().unwrap(), &[], &mut Rng::new(seed)).unwrap())
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(picked.len(), 3);
        assert_eq!(pick(&[], &[], &mut Rng::new(1)), None);
        assert_eq!(pick(&[json!(7)], &["seven".into()], &mut Rng::new(1)), Some(&json!(7)));
    }

    #[test]
    fn stems_match_plurals_and_verb_forms() {
        assert_eq!(stem("billing"), "bill");
        assert_eq!(stem("billed"), "bill");
        assert_eq!(stem("invoices"), "invoice");
        assert_eq!(stem("access"), "access");
        assert_eq!(stem("bus"), "bus");
    }
}
