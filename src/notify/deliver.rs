//! Sending one event: a POST of the CloudEvent to the webhook, signed when there is a key,
//! within a time bound, to an address the policy allows, never following a redirect. The
//! receiver's answer is not read: its status says everything.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use reqwest::header::CONTENT_TYPE;
use url::Url;

use super::Event;
use super::sign::SigningKey;
use crate::gateway::cause_chain;
use crate::net::{AddressPolicy, AddressRefused, GuardedResolver, refusal_in};

/// The most one attempt may take, connecting included.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The content type of a CloudEvent in structured mode.
const CLOUDEVENTS_JSON: &str = "application/cloudevents+json; charset=utf-8";

/// Why an attempt failed. Names the receiver's host, never its URL (a webhook URL often
/// carries a token in its path).
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("the notify url is not an http(s) URL without a user or password")]
    BadUrl,
    #[error(transparent)]
    Refused(#[from] AddressRefused),
    #[error(
        "{host} answered HTTP {status}, a redirect, which is not followed: set the notify url to the address that answers"
    )]
    Redirect { host: String, status: u16 },
    #[error("{host} answered HTTP {status}")]
    Status { host: String, status: u16 },
    #[error("{host} did not answer within {}s", ATTEMPT_TIMEOUT.as_secs())]
    Timeout { host: String },
    #[error("could not reach {host}: {why}")]
    Transport { host: String, why: String },
    #[error("{0}")]
    Key(String),
}

/// The HTTP client of webhooks, shared by every delivery of a process.
#[derive(Clone)]
pub struct Webhook {
    http: reqwest::Client,
    addresses: Arc<AddressPolicy>,
}

impl Webhook {
    pub fn new(addresses: Arc<AddressPolicy>) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(GuardedResolver(addresses.clone()))
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(ATTEMPT_TIMEOUT)
            .user_agent(concat!("llm-batch-operator/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the webhook client's settings are valid");
        Self { http, addresses }
    }

    /// One attempt to deliver `event` to `url`, signed with `key` (at `now`) when given.
    pub async fn send(
        &self,
        url: &str,
        event: &Event,
        key: Option<&SigningKey>,
        now: Timestamp,
    ) -> Result<(), DeliveryError> {
        let url = self.admit(url)?;
        let host = url.host_str().unwrap_or_default().to_string();
        let timestamp = now.as_second();
        let mut request = self
            .http
            .post(url)
            .header(CONTENT_TYPE, CLOUDEVENTS_JSON)
            .header("webhook-id", &event.id)
            .header("webhook-timestamp", timestamp.to_string());
        if let Some(key) = key {
            request = request.header("webhook-signature", key.sign(&event.id, timestamp, &event.body));
        }
        let response = request
            .body(event.body.clone())
            .send()
            .await
            .map_err(|e| transport(&host, e))?;
        let status = response.status();
        match status.as_u16() {
            200..=299 => Ok(()),
            300..=399 => Err(DeliveryError::Redirect {
                host,
                status: status.as_u16(),
            }),
            code => Err(DeliveryError::Status { host, status: code }),
        }
    }
}

impl Webhook {
    /// The URL, when it may be sent to: http(s), no credentials, not an IP literal the policy
    /// refuses (a name is checked when it is resolved).
    fn admit(&self, url: &str) -> Result<Url, DeliveryError> {
        let url = Url::parse(url).map_err(|_| DeliveryError::BadUrl)?;
        let usable = matches!(url.scheme(), "http" | "https")
            && url.host_str().is_some()
            && url.username().is_empty()
            && url.password().is_none();
        if !usable {
            return Err(DeliveryError::BadUrl);
        }
        self.addresses.check_url(&url)?;
        Ok(url)
    }
}

fn transport(host: &str, error: reqwest::Error) -> DeliveryError {
    if let Some(refused) = refusal_in(&error) {
        return DeliveryError::Refused(refused.clone());
    }
    if error.is_timeout() {
        return DeliveryError::Timeout { host: host.into() };
    }
    DeliveryError::Transport {
        host: host.into(),
        why: cause_chain(&error.without_url()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        Event {
            type_: "io.llmbatch.batch.failed".into(),
            id: "u.batch.failed".into(),
            body: b"{}".to_vec(),
        }
    }

    /// `admit` connects nowhere, so these addresses cannot be reached even if it were wrong.
    #[tokio::test]
    async fn urls_with_credentials_other_schemes_and_refused_addresses_are_not_admitted() {
        let local = Webhook::new(Arc::new(AddressPolicy::local()));
        for url in ["ftp://hooks.example/x", "https://user:pw@hooks.example/x", "not a url"] {
            let err = local.admit(url).unwrap_err();
            assert!(matches!(err, DeliveryError::BadUrl), "{url}: {err}");
        }
        let cluster = Webhook::new(Arc::new(AddressPolicy::cluster()));
        for url in [
            "http://169.254.169.254/latest/meta-data",
            "http://[fe80::1]/",
            "http://10.0.0.1/hook",
        ] {
            let err = cluster.admit(url).unwrap_err();
            assert!(matches!(err, DeliveryError::Refused(_)), "{url}: {err}");
        }
        assert!(
            local.admit("http://127.0.0.1:8080/hook").is_ok(),
            "run -f may notify its own machine"
        );
    }

    /// A name resolving to loopback only (harmless to reach) is refused at resolution.
    #[tokio::test]
    async fn a_name_resolving_to_a_refused_address_is_refused_at_connect() {
        let cluster = Webhook::new(Arc::new(AddressPolicy::cluster()));
        let err = cluster
            .send("http://localhost:1/hook", &event(), None, Timestamp::now())
            .await
            .unwrap_err();
        assert!(
            matches!(err, DeliveryError::Refused(_)),
            "a name resolving to loopback: {err}"
        );
    }
}
