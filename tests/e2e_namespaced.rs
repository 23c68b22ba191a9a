//! tests/e2e/run.sh against a test API server of its own with `watchNamespaces`: the chart
//! grants nothing cluster-wide (a Role in the watched namespace), and that is still enough
//! for the controller watching that namespace to run the examples to Complete.

// A binary of its own (the API server is one per process): the script installs the chart and
// the examples, in namespace default, as tests/e2e.rs does on its own server.
#[path = "it/common/mod.rs"]
mod common;

#[test]
fn the_examples_complete_with_a_role_in_the_watched_namespace_only() {
    let simulator = common::e2e::run_script("--set watchNamespaces={default}");
    assert_eq!(simulator.count_ok("POST", "/v1/batches"), 3);
}
