//! Deterministic, DNS-safe child names: `<sweep>-<model>-c<chunk>`.

use sha2::{Digest, Sha256};

/// Longest child name: a DNS label, so the name also fits label values and derived names.
const MAX_NAME: usize = 63;

/// The name of the child running `chunk` (with `model`, in matrix sweeps) of `sweep`.
///
/// The same inputs always give the same name, so a restarted controller finds the children it
/// created instead of creating them twice. A model name that is not DNS-safe is lowercased and
/// its other characters become `-`, with a short hash of the original so that two models that
/// clean up alike (`GPT-4o`, `gpt-4o`) still get different names; a name that would pass 63
/// characters is cut and ends in a hash of the whole.
pub fn child_name(sweep: &str, model: Option<&str>, chunk: u32) -> String {
    let mut name = sweep.to_string();
    if let Some(model) = model {
        name.push('-');
        let clean = dns_safe(model);
        name.push_str(&clean);
        if clean != model {
            name.push('-');
            name.push_str(&short_hash(model, 4));
        }
    }
    name.push_str(&format!("-c{chunk:04}"));
    fit_dns_label(name)
}

/// The name of attempt `attempt` (1-based) of the child `first`: `first` itself, then
/// `<first>-r1`, `<first>-r2`, ... for the follow-ups that retry its failed lines; cut with a
/// hash like [`child_name`] past 63 characters, so it is as deterministic.
pub fn attempt_name(first: &str, attempt: u32) -> String {
    if attempt <= 1 {
        return first.to_string();
    }
    fit_dns_label(format!("{first}-r{}", attempt - 1))
}

/// `name` when it fits a DNS label (63 characters); otherwise cut, ending in a hash of the
/// whole, so distinct long names stay distinct.
pub fn fit_dns_label(name: String) -> String {
    if name.len() <= MAX_NAME {
        return name;
    }
    let hash = short_hash(&name, 8);
    let keep = MAX_NAME - hash.len() - 1;
    // Cut before a '-' or '.' so the name stays a DNS subdomain (`a.-hash` is not one).
    let cut = name[..keep].trim_end_matches(['-', '.']);
    format!("{cut}-{hash}")
}

fn dns_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars().map(|c| c.to_ascii_lowercase()) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed = out.trim_matches('-');
    if trimmed.is_empty() {
        "model".to_string()
    } else {
        trimmed.to_string()
    }
}

fn short_hash(text: &str, hex_digits: usize) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect::<String>()[..hex_digits].to_string()
}
