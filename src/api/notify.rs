//! `spec.notify`: a webhook told, once, when a Batch or BatchSweep finishes (and when a Batch
//! is held by its gateway's budget), and `status.notifications`: how each event's delivery went.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::KeyRef;

/// A webhook receiving one CloudEvents 1.0 JSON event per finished Batch or BatchSweep.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Notify {
    /// The http(s) URL each event is POSTed to. Redirects are not followed and the same
    /// addresses are refused as for gateway URLs (link-local and metadata always; loopback and
    /// private ranges in a cluster unless the controller allows them).
    #[x_kube(validation = Rule::new("self.startsWith('https://') || self.startsWith('http://')")
        .message("url must start with https:// or http://"))]
    pub url: String,
    /// The Secret key holding the HMAC-SHA256 signing key (`whsec_<base64>` or the raw bytes).
    /// Each request then carries `webhook-id`, `webhook-timestamp` and `webhook-signature`
    /// headers, as the Standard Webhooks specification lays them out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_secret_ref: Option<KeyRef>,
}

impl Notify {
    /// The receiver's host, as status, Events and messages name it (the URL may carry a token).
    pub fn host(&self) -> String {
        url::Url::parse(&self.url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_else(|| "<invalid url>".into())
    }
}

/// How far one event's delivery got.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeliveryState {
    /// Not delivered yet; another attempt follows.
    #[default]
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Every attempt failed; no more are made.
    Failed,
}

/// One event owed to the webhook and how its delivery went.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationStatus {
    /// The CloudEvents type, e.g. `io.llmbatch.batch.succeeded`.
    #[serde(rename = "type")]
    pub type_: String,
    /// The event id: the same on every attempt, so a receiver drops a repeat.
    pub id: String,
    /// Pending, Delivered or Failed.
    pub state: DeliveryState,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the last attempt was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt_time: Option<Time>,
    /// Why the last attempt failed (the receiver's host, never its URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}
