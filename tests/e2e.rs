//! tests/e2e/run.sh against the test API server with the chart's default values (one
//! ClusterRole): the examples run to Complete with the chart's RBAC, so it is enough
//! (tests/it/chart.rs proves it is no more).

// A binary of its own, not a module of tests/it (the API server is one per process): the
// script runs a controller watching every namespace, which would reconcile the other tests'
// Batches, and installs the chart and the examples, as tests/e2e_namespaced.rs does.
#[path = "it/common/mod.rs"]
mod common;

#[test]
fn the_examples_complete_with_the_charts_rbac() {
    let simulator = common::e2e::run_script("");
    // One batch per example Batch, however often the controller reconciled.
    assert_eq!(simulator.count_ok("POST", "/v1/batches"), 3);
}
