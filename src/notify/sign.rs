//! The Standard Webhooks signature: `webhook-signature: v1,<base64 HMAC-SHA256>` over
//! `<webhook-id>.<webhook-timestamp>.<body>`, so receivers can use any Standard Webhooks
//! library (OpenAI's batch webhooks are signed the same way).

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The prefix of a Standard Webhooks secret; the rest is the key in base64.
const SECRET_PREFIX: &str = "whsec_";

/// A signing key, from a Secret's value: `whsec_<base64>` is decoded, anything else is used
/// as it is. An empty key signs nothing and is refused.
pub struct SigningKey(hmac::Key);

impl SigningKey {
    pub fn from_secret(value: &[u8]) -> Result<Self, &'static str> {
        let value = trim_newline(value);
        let bytes = match value.strip_prefix(SECRET_PREFIX.as_bytes()) {
            Some(encoded) => STANDARD
                .decode(encoded)
                .map_err(|_| "the signing key starts with whsec_ but the rest is not base64")?,
            None => value.to_vec(),
        };
        if bytes.is_empty() {
            return Err("the signing key is empty");
        }
        Ok(Self(hmac::Key::new(hmac::HMAC_SHA256, &bytes)))
    }

    /// The `webhook-signature` header's value for this message.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut context = hmac::Context::with_key(&self.0);
        context.update(id.as_bytes());
        context.update(format!(".{timestamp}.").as_bytes());
        context.update(body);
        format!("v1,{}", STANDARD.encode(context.sign().as_ref()))
    }
}

/// A key written with `echo` into a Secret ends in a newline nobody meant.
fn trim_newline(value: &[u8]) -> &[u8] {
    value.strip_suffix(b"\n").unwrap_or(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification (its reference libraries' test).
    #[test]
    fn signs_the_specifications_example() {
        let key = SigningKey::from_secret(b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            key.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn a_raw_key_is_used_as_it_is_and_a_bad_one_is_refused() {
        let raw = SigningKey::from_secret(b"secret\n").unwrap();
        let same = SigningKey::from_secret(b"secret").unwrap();
        assert_eq!(raw.sign("id", 1, b"{}"), same.sign("id", 1, b"{}"));
        assert!(SigningKey::from_secret(b"whsec_not base64!").is_err());
        assert!(SigningKey::from_secret(b"").is_err());
    }
}
