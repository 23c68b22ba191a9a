//! Byte sizes written as Kubernetes quantities ("200Mi", "1G", "52428800").

/// Parses a Kubernetes-style byte quantity: a plain integer, or an integer with a
/// binary (Ki, Mi, Gi, Ti) or decimal (k, K, M, G, T) suffix.
pub fn parse_bytes(text: &str) -> Result<u64, BadQuantity> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, suffix) = text.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| BadQuantity(format!("{text:?} is not a byte quantity (e.g. 200Mi, 100M, 1048576)")))?;
    let factor: u64 = match suffix {
        "" => 1,
        "k" | "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        other => {
            return Err(BadQuantity(format!(
                "{text:?} has an unknown unit {other:?} (use Ki, Mi, Gi, k, M or G)"
            )));
        }
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| BadQuantity(format!("{text:?} is too large")))
}

/// A text that is not a byte quantity, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadQuantity(String);

#[cfg(test)]
mod tests {
    use super::parse_bytes;

    #[test]
    fn parses_binary_decimal_and_plain_quantities() {
        assert_eq!(parse_bytes("200Mi"), Ok(200 * 1024 * 1024));
        assert_eq!(parse_bytes("100M"), Ok(100_000_000));
        assert_eq!(parse_bytes("1k"), Ok(1000));
        assert_eq!(parse_bytes("52428800"), Ok(52_428_800));
    }

    #[test]
    fn rejects_what_is_not_a_byte_quantity() {
        assert!(parse_bytes("").is_err());
        assert!(parse_bytes("Mi").is_err());
        assert!(parse_bytes("1.5Gi").is_err());
        assert!(parse_bytes("10mb").is_err());
    }
}
