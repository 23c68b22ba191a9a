//! Before reconciling, check that the controller's identity holds every permission in
//! `deploy/rbac.yaml` (with SelfSubjectAccessReviews), so a missing rule is reported at once
//! and by name instead of as endless watch errors.

use k8s_openapi::api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec};
use k8s_openapi::api::rbac::v1::PolicyRule;
use kube::api::{Api, PostParams};

/// The controller's rules, as shipped: a ClusterRole, and the leader-election Role of the
/// Lease's namespace.
const RBAC_YAML: &str = include_str!("../../deploy/rbac.yaml");

/// The rules the controller needs: those of every role in `deploy/rbac.yaml`.
pub fn required_rules() -> Vec<PolicyRule> {
    #[derive(serde::Deserialize)]
    struct Role {
        #[serde(default)]
        rules: Vec<PolicyRule>,
    }
    serde_yaml::Deserializer::from_str(RBAC_YAML)
        .flat_map(|doc| {
            let role: Role = serde::Deserialize::deserialize(doc).expect("deploy/rbac.yaml holds valid roles");
            role.rules
        })
        .collect()
}

/// The leader-election Lease rule: needed only with `--leader-elect`, in the Lease's namespace.
fn is_lease((group, _): (&str, &str)) -> bool {
    group == "coordination.k8s.io"
}

/// The rules for Jobs (PVC output, direct mode): needed only with `--job-image`.
fn is_job((group, resource): (&str, &str)) -> bool {
    (group, resource) == ("batch", "jobs") || (group, resource) == ("", "pods")
}

/// Cluster-scoped kinds: checked without a namespace (a Role cannot grant them).
fn is_cluster_scoped((group, resource): (&str, &str)) -> bool {
    (group, resource) == ("llmbatch.io", "pricelists")
}

/// The rules checked in each watched namespace: all but Leases, Jobs and cluster-scoped kinds.
fn is_namespaced_core(rule: (&str, &str)) -> bool {
    !is_lease(rule) && !is_job(rule) && !is_cluster_scoped(rule)
}

/// Every permission of `deploy/rbac.yaml` (but the Lease, Job and cluster-scoped rules) the
/// client's identity lacks in `namespace` (all namespaces when `None`), as `verb group/resource`.
pub async fn missing_permissions(client: &kube::Client, namespace: Option<&str>) -> Result<Vec<String>, kube::Error> {
    missing_in(client, namespace, is_namespaced_core).await
}

/// The permissions on cluster-scoped kinds (PriceLists) the client's identity lacks: without
/// them the controller still runs, and prices from a `priceListRef` are unavailable.
pub async fn missing_cluster_permissions(client: &kube::Client) -> Result<Vec<String>, kube::Error> {
    missing_in(client, None, is_cluster_scoped).await
}

/// The Lease permissions of `deploy/rbac.yaml` the client's identity lacks in `namespace`.
pub async fn missing_lease_permissions(client: &kube::Client, namespace: &str) -> Result<Vec<String>, kube::Error> {
    missing_in(client, Some(namespace), is_lease).await
}

/// The Job permissions of `deploy/rbac.yaml` the client's identity lacks in `namespace`.
pub async fn missing_job_permissions(
    client: &kube::Client,
    namespace: Option<&str>,
) -> Result<Vec<String>, kube::Error> {
    missing_in(client, namespace, is_job).await
}

async fn missing_in(
    client: &kube::Client,
    namespace: Option<&str>,
    wanted: impl Fn((&str, &str)) -> bool,
) -> Result<Vec<String>, kube::Error> {
    let reviews: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let mut missing = Vec::new();
    for rule in required_rules() {
        for group in rule.api_groups.clone().unwrap_or_default() {
            for resource in rule.resources.clone().unwrap_or_default() {
                if !wanted((&group, &resource)) {
                    continue;
                }
                for verb in &rule.verbs {
                    let (resource, subresource) = match resource.split_once('/') {
                        Some((r, s)) => (r.to_string(), Some(s.to_string())),
                        None => (resource.clone(), None),
                    };
                    let review = SelfSubjectAccessReview {
                        spec: SelfSubjectAccessReviewSpec {
                            resource_attributes: Some(ResourceAttributes {
                                group: Some(group.clone()),
                                resource: Some(resource.clone()),
                                subresource: subresource.clone(),
                                verb: Some(verb.clone()),
                                namespace: namespace.map(str::to_string),
                                ..Default::default()
                            }),
                            ..Default::default()
                        },
                        ..Default::default()
                    };
                    let answer = reviews.create(&PostParams::default(), &review).await?;
                    if !answer.status.is_some_and(|s| s.allowed) {
                        let full = subresource.map_or(resource.clone(), |s| format!("{resource}/{s}"));
                        let group = if group.is_empty() {
                            "core".to_string()
                        } else {
                            group.clone()
                        };
                        missing.push(format!("{verb} {group}/{full}"));
                    }
                }
            }
        }
    }
    Ok(missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_are_only_in_the_leader_election_role() {
        let text = RBAC_YAML;
        let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(text)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect();
        let lease_in = |doc: &serde_yaml::Value| {
            doc["rules"]
                .as_sequence()
                .unwrap()
                .iter()
                .any(|r| r["apiGroups"][0] == "coordination.k8s.io")
        };
        let kinds: Vec<(&str, bool)> = docs
            .iter()
            .map(|d| (d["kind"].as_str().unwrap(), lease_in(d)))
            .collect();
        assert_eq!(kinds, [("ClusterRole", false), ("Role", true)]);
        assert!(
            required_rules()
                .iter()
                .any(|r| is_lease((r.api_groups.as_ref().unwrap()[0].as_str(), "")))
        );
    }
}
