//! The CustomResourceDefinitions, as `llm-batch-operator crd` prints them.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use super::{Batch, BatchGateway, BatchSchedule, BatchSweep, PriceList};

/// Every CRD of the project, in a stable order.
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    vec![
        BatchGateway::crd(),
        Batch::crd(),
        BatchSweep::crd(),
        PriceList::crd(),
        BatchSchedule::crd(),
    ]
}

/// All CRDs as one multi-document YAML stream (the content of `crds/`).
pub fn crds_yaml() -> String {
    let mut out = String::new();
    for crd in all_crds() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd).expect("a CRD always serialises"));
    }
    out
}
