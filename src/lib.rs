#![forbid(unsafe_code)]
//! llm-batch-operator: run LLM batch work declaratively.

pub mod api;
pub mod backoff;
pub mod bpe;
pub mod cli;
pub mod controller;
pub mod direct;
pub mod engine;
pub mod gateway;
pub mod io;
pub mod job_protocol;
pub mod jsonl;
pub mod local;
pub mod net;
pub mod notify;
pub mod pricing;
pub mod report;
pub mod schedule;
pub mod simulator;
pub mod steps;
pub mod sweep;
pub mod telemetry;
