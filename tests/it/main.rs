//! Every integration test, in one binary (one link of kube, object_store, axum and mlua instead
//! of one per file): one module per area, `cargo test --test it <module>::` runs one area.

mod common;

mod admission;
mod alerts;
mod apiserver;
mod argocd_health;
mod budget;
mod chart;
mod cli;
mod controller;
mod cost;
mod crds;
mod direct_command;
mod direct_mode;
mod gateway_aimock;
mod gateway_client;
mod hostile_gateway;
mod image;
mod jobs;
mod jsonl_stream;
mod kubectl_plugin;
mod kustomize;
mod leader_election;
mod least_privilege;
mod local_run;
mod local_sweep;
mod metrics;
mod notify;
mod object_store;
mod operations;
mod report;
mod schedule;
mod simulator_openai_sdk;
mod simulator_server;
mod sweep;
