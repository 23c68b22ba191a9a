//! An OpenAI-compatible batch gateway simulator (Files + Batches API) for tests, demos and
//! the local `run -f` driver.
//!
//! Written from the OpenAI API's shapes alone (see `OPENAI_BATCH_API.md`); it shares no types
//! with the project's gateway client. Files live on disk and are streamed in and out; each
//! batch is moved through its states by a background task. Faults (429, 5xx, latency,
//! per-line failures, expiry) come from [`SimulatorConfig`] or per request from `x-sim-*`
//! headers, and `GET /__sim/journal` lists every `/v1` request received.
//!
//! Per-request headers (they override the matching [`SimulatorConfig`] knobs):
//! - any `/v1` request: `x-sim-rate-429`, `x-sim-rate-5xx` (fractions 0..1), `x-sim-latency-ms`;
//! - `POST /v1/batches`, for that batch: `x-sim-line-failure-rate` (0..1),
//!   `x-sim-expire: true`, `x-sim-lines-per-sec` (0 = unpaced).
//!
//! A malformed `x-sim-*` value is a 400 whose `param` names the header.
//!
//! Test-only routes (no auth, not journaled): `GET /__sim/journal` (JSON array of
//! `{method, path, status, client_request_id?, started_us, ended_us}`, in the order the answers
//! were ready) and `DELETE /__sim/journal`.
//!
//! Also served: synchronous `POST /v1/{chat/completions,completions,responses,embeddings,
//! moderations}` with the same deterministic answers as batch lines, so `--no-batch-api`
//! models a gateway that only answers requests one by one.
//!
//! Answers are made up but shaped like real ones, and seeded from a hash of the request, so
//! the same request always gets the same answer (`answers`): a few sentences from the prompt's
//! words (`prose`) cut at the request's output-token limit, JSON that validates against a
//! `json_schema` format (`schema_instance`, its enums picked by `labels`), unit-vector
//! embeddings (`embeddings`), usage counted with the model family's tokenizer (`tokens`).
//!
//! Where OPENAI_BATCH_API.md leaves behaviour open, the simulator chooses: lines left unrun
//! by a cancel become `batch_cancelled` error lines, and `request_counts.failed` counts every
//! error-file line (so completed + failed = total at the end of every run that got past
//! validation); an expired batch goes from in_progress straight to expired.

mod answers;
mod batches;
mod config;
mod direct;
mod embeddings;
mod error;
mod files;
mod gate;
mod input;
mod labels;
mod params;
mod processor;
mod prose;
mod reply;
mod results;
mod rng;
mod schema_instance;
mod server;
mod state;
mod tokens;
mod wire;

#[cfg(test)]
mod tests;

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post};

pub use config::SimulatorConfig;
pub use server::{RunningSimulator, serve_until_signal};
pub use state::{JournalEntry, SimState};

/// The simulator's HTTP routes over `state`; testable with `tower::ServiceExt::oneshot`.
pub fn app(state: SimState) -> Router {
    let v1 = Router::new()
        .route(
            "/files",
            post(files::upload).layer(DefaultBodyLimit::disable()).get(files::list),
        )
        .route("/files/{id}", get(files::get).delete(files::delete))
        .route("/files/{id}/content", get(files::content))
        .route("/batches", post(batches::create).get(batches::list))
        .route("/batches/{id}", get(batches::get))
        .route("/batches/{id}/cancel", post(batches::cancel))
        .route("/chat/completions", post(direct::answer))
        .route("/completions", post(direct::answer))
        .route("/responses", post(direct::answer))
        .route("/embeddings", post(direct::answer))
        .route("/moderations", post(direct::answer))
        .fallback(gate::unknown_route)
        .method_not_allowed_fallback(gate::unknown_route)
        .layer(from_fn_with_state(state.clone(), gate::gate));
    Router::new()
        .nest("/v1", v1)
        .route("/__sim/journal", get(journal).delete(clear_journal))
        .fallback(gate::unknown_route)
        .layer(from_fn(gate::request_id))
        .with_state(state)
}

/// `GET /__sim/journal`: every `/v1` request received, in order.
async fn journal(State(state): State<SimState>) -> Json<Vec<JournalEntry>> {
    Json(state.journal())
}

/// `DELETE /__sim/journal`: forgets the requests seen so far.
async fn clear_journal(State(state): State<SimState>) -> StatusCode {
    state.clear_journal();
    StatusCode::NO_CONTENT
}
