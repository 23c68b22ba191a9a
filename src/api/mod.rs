//! The `llmbatch.io/v1alpha1` API: custom resource types, their status and conditions.
//!
//! Field paths here are a contract (tools outside the project read them): rename nothing
//! without a new API version.

mod batch;
mod conditions;
mod crds;
mod gateway;
mod headline;
mod invalid;
mod mode;
mod notify;
mod pricing;
mod quantity;
mod reference;
mod rules;
mod schedule;
mod storage;
mod sweep;

pub use batch::*;
pub use conditions::{Conditions, condition_types, gateway_condition_types, gateway_reasons, reasons};
pub use crds::{all_crds, crds_yaml};
pub use gateway::*;
pub use invalid::InvalidField;
pub use mode::*;
pub use notify::{DeliveryState, NotificationStatus, Notify};
pub use pricing::*;
pub use quantity::{BadQuantity, parse_bytes};
pub use reference::reference_markdown;
pub use rules::broken_rules;
pub use schedule::*;
pub use storage::{ByteRange, InputOverrides, ObjectStoreRef, PvcSink};
pub use sweep::*;

/// The API group of every resource in this project.
pub const GROUP: &str = "llmbatch.io";
/// Annotation mirroring the upstream batch id, so a restored object re-attaches.
pub const BATCH_ID_ANNOTATION: &str = "llmbatch.io/batch-id";

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A reference to an object by name in the referring object's own namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct LocalObjectRef {
    /// Name of the object, in the same namespace.
    pub name: String,
}

/// A key of a ConfigMap or Secret in the referring object's own namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct KeyRef {
    /// Name of the ConfigMap or Secret, in the same namespace.
    pub name: String,
    /// Key inside `data` (or `binaryData`).
    pub key: String,
}

#[cfg(test)]
mod tests;
