//! Names from the files, checked as the API server would check them, and the one way `run -f`
//! turns names into paths. Every directory and file it writes under `--out` and `--state-dir`
//! is built by [`under`] from components that must each be a DNS subdomain (object and
//! namespace names, the names derived from them, and fixed file names like `state.json` all
//! are), so no component can be absolute, `..`, empty or hold a separator, whatever a manifest,
//! a gateway or a damaged state file says.

use std::path::{Path, PathBuf};

/// Longest DNS-1123 subdomain: the names of Batches, ConfigMaps, Secrets, ...
pub const MAX_SUBDOMAIN: usize = 253;
/// Longest DNS-1123 label: namespace names.
pub const MAX_LABEL: usize = 63;

/// Why `name` is not a DNS-1123 subdomain (what the API server requires of object names), or
/// `None` when it is one: at most 253 characters of lowercase letters, digits, `-` and `.`,
/// every dot-separated part starting and ending with a letter or a digit.
pub fn subdomain_problem(name: &str) -> Option<String> {
    let rule = "a lowercase RFC 1123 subdomain: at most 253 characters of a-z, 0-9, '-' and '.', \
                starting and ending with a letter or a digit";
    if name.is_empty() || name.len() > MAX_SUBDOMAIN || !name.split('.').all(is_label_text) {
        return Some(format!("{name:?} is not {rule}"));
    }
    None
}

/// Why `name` is not a DNS-1123 label (what the API server requires of namespace names), or
/// `None` when it is one: at most 63 characters of lowercase letters, digits and `-`, starting
/// and ending with a letter or a digit.
pub fn label_problem(name: &str) -> Option<String> {
    let rule = "a lowercase RFC 1123 label: at most 63 characters of a-z, 0-9 and '-', \
                starting and ending with a letter or a digit";
    if name.len() > MAX_LABEL || !is_label_text(name) {
        return Some(format!("{name:?} is not {rule}"));
    }
    None
}

/// Lowercase alphanumerics and `-`, not empty, not starting or ending with `-`.
fn is_label_text(part: &str) -> bool {
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let bytes = part.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) => alnum(first) && alnum(last) && bytes.iter().all(|&c| alnum(c) || c == b'-'),
        _ => false,
    }
}

/// A path that `run -f` refuses to build: one of its parts is not a DNS subdomain.
#[derive(Debug, thiserror::Error)]
#[error("refusing to write under {}: {problem}", root.display())]
pub struct UnsafePath {
    root: PathBuf,
    problem: String,
}

/// `root/parts[0]/parts[1]/...`, when every part is a DNS subdomain (so the path stays inside
/// `root`); an error naming the part otherwise.
pub fn under(root: &Path, parts: &[&str]) -> Result<PathBuf, UnsafePath> {
    let mut path = root.to_path_buf();
    for part in parts {
        if let Some(problem) = subdomain_problem(part) {
            return Err(UnsafePath {
                root: root.to_path_buf(),
                problem,
            });
        }
        path.push(part);
    }
    Ok(path)
}

/// `name` beside `path` (in its parent directory), when `name` is a DNS subdomain.
pub fn beside(path: &Path, name: &str) -> Result<PathBuf, UnsafePath> {
    under(path.parent().unwrap_or(path), &[name])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdomains_and_labels_follow_the_api_server() {
        for good in ["a", "ticket-triage", "gpt-4o.eval", "0", "a.b.c", &"a".repeat(253)] {
            assert_eq!(subdomain_problem(good), None, "{good}");
        }
        let long = "a".repeat(254);
        for bad in [
            "", "..", ".", "../x", "/abs", "UPPER", "a_b", "-a", "a-", "a..b", ".a", "a/b", "a\0b", &long,
        ] {
            assert!(subdomain_problem(bad).is_some(), "{bad:?}");
        }
        assert_eq!(label_problem("team-a"), None);
        for bad in ["a.b", "", "A", &"a".repeat(64)] {
            assert!(label_problem(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn paths_are_built_only_from_safe_parts() {
        let root = Path::new("/out");
        assert_eq!(
            under(root, &["default", "b", "status.yaml"]).unwrap(),
            Path::new("/out/default/b/status.yaml")
        );
        for bad in ["..", "../../x", "/etc", "a/b", "", "."] {
            let err = under(root, &["default", bad]).unwrap_err().to_string();
            assert!(err.contains("refusing to write under /out"), "{err}");
        }
    }
}
