//! Batches API: create, get, list, cancel, find.

use reqwest::Method;

use super::client::GatewayClient;
use super::error::GatewayError;
use super::pages::{FindError, MAX_EXAMINED};
use super::types::{Batch, CreateBatch, Page};

/// Page size used by [`GatewayClient::find_batch`] (the API's maximum).
const FIND_PAGE_SIZE: u32 = 100;

impl GatewayClient {
    /// `POST /batches`.
    pub async fn create_batch(&self, req: &CreateBatch) -> Result<Batch, GatewayError> {
        const OP: &str = "create batch";
        let url = self.url(&["batches"]);
        self.execute(OP, || self.attempt_json(OP, self.request(Method::POST, &url).json(req)))
            .await
    }

    /// `GET /batches/{id}`.
    pub async fn get_batch(&self, id: &str) -> Result<Batch, GatewayError> {
        const OP: &str = "get batch";
        let url = self.url(&["batches", id]);
        self.execute(OP, || self.attempt_json(OP, self.request(Method::GET, &url)))
            .await
    }

    /// `GET /batches?after=..&limit=..`, newest first.
    pub async fn list_batches(&self, after: Option<&str>, limit: u32) -> Result<Page<Batch>, GatewayError> {
        const OP: &str = "list batches";
        let url = self.url(&["batches"]);
        let limit = limit.to_string();
        let mut query = vec![("limit", limit.as_str())];
        query.extend(after.map(|a| ("after", a)));
        self.execute(OP, || {
            self.attempt_json(OP, self.request(Method::GET, &url).query(&query))
        })
        .await
    }

    /// `POST /batches/{id}/cancel`. The batch moves to `cancelling`; a finished batch answers 409.
    pub async fn cancel_batch(&self, id: &str) -> Result<Batch, GatewayError> {
        const OP: &str = "cancel batch";
        let url = self.url(&["batches", id, "cancel"]);
        self.execute(OP, || self.attempt_json(OP, self.request(Method::POST, &url)))
            .await
    }

    /// Walks `list_batches` pages (limit 100) newest-first and returns the first batch matching
    /// `pred`, looking back to `since` (unix seconds; the whole list without it). Used to adopt
    /// a batch created before a crash: `None` means it is not there; a walk that could not get
    /// that far is [`FindError::GaveUp`].
    pub async fn find_batch(
        &self,
        pred: impl Fn(&Batch) -> bool,
        since: Option<i64>,
    ) -> Result<Option<Batch>, FindError> {
        let fetch = |after: Option<String>| async move { self.list_batches(after.as_deref(), FIND_PAGE_SIZE).await };
        let created = |b: &Batch| b.created_at;
        super::pages::find_in_pages("list batches", fetch, batch_id, created, pred, since, MAX_EXAMINED).await
    }
}

fn batch_id(batch: &Batch) -> &str {
    &batch.id
}
