//! A one-line summary of a Batch's status.

use super::BatchStatus;

impl BatchStatus {
    /// One line saying where the batch is: its phase plus the detail that matters in that
    /// phase (what `run -f` prints, and the note of the controller's Events).
    pub fn headline(&self) -> String {
        let status = self;
        use super::BatchPhase::*;
        let phase = status.phase.unwrap_or_default();
        let gateway = status.gateway.clone().unwrap_or_default();
        let detail = match phase {
            Pending => status
                .input
                .as_ref()
                .map(|i| format!("input valid: {} requests, {} bytes", i.requests, i.bytes)),
            Uploading => status.attempt.as_ref().map(|a| format!("attempt {a}")),
            Validating | Finalizing => gateway.batch_id.map(|id| format!("batch {id}")),
            InProgress if gateway.batch_id.is_none() => status.request_counts.as_ref().map(|c| {
                format!(
                    "direct: {} of {} done, {} failed",
                    c.completed + c.failed,
                    c.total,
                    c.failed
                )
            }),
            InProgress => gateway.batch_id.map(|id| match &status.request_counts {
                Some(c) if c.total > 0 => format!(
                    "batch {id}: {} of {} done, {} failed",
                    c.completed + c.failed,
                    c.total,
                    c.failed
                ),
                _ => format!("batch {id}"),
            }),
            Downloading => Some("fetching output and error files".to_string()),
            Succeeded | Failed | Expired | Cancelled => status
                .conditions
                .iter()
                .find(|c| c.type_ == if phase == Succeeded { "Complete" } else { "Failed" })
                .map(|c| c.message.clone()),
        };
        let ready = status
            .conditions
            .iter()
            .find(|c| c.type_ == "GatewayReady" && c.status == "False");
        match (detail, ready) {
            (_, Some(c)) => format!("{phase} ({}: {})", c.reason, c.message),
            (Some(d), None) => format!("{phase} ({d})"),
            (None, None) => phase.to_string(),
        }
    }
}
