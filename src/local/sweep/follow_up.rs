//! A follow-up (`<child>-r<n>`) in `run -f`: its input is made on the gateway from the attempt
//! it retries (the controller's function), then it runs as a Batch reading that file, with the
//! gateway, client and output of its child's first attempt.

use std::path::PathBuf;

use bytes::Bytes;

use super::SweepRun;
use super::attempts::input_digest;
use crate::api::{Batch, BatchStatus};
use crate::engine::PollingPolicy;
use crate::gateway::GatewayClient;
use crate::local::admission::Board;
use crate::local::manifests::Located;
use crate::local::paths;
use crate::local::progress::Reporter;
use crate::local::resolve::{Plan, PvcOutput};
use crate::local::runner::{BatchRun, Ending, write_status_yaml};
use crate::local::state::{BatchState, StateDir};
use crate::steps::retry::{RetryError, RetryInput, follow_up_input};
use crate::sweep::ChildPlan;

/// What a child's follow-ups share with its first attempt.
#[derive(Clone)]
pub struct FollowUp<'a> {
    parent: &'a Plan,
    state_gateway: String,
    pub client: GatewayClient,
    polling: PollingPolicy,
    out_dir: PathBuf,
    state_dir: &'a StateDir,
    cancel: tokio_util::sync::CancellationToken,
    /// The run's admission board; a follow-up queues in its first attempt's place.
    board: &'a Board,
    order: usize,
}

impl<'a> FollowUp<'a> {
    /// What the follow-ups of `first` (the run of a child's first attempt) share with it.
    pub fn of(first: &BatchRun<'a>) -> Self {
        FollowUp {
            parent: first.plan,
            state_gateway: first.state.gateway.clone(),
            client: first.client.clone(),
            polling: first.polling,
            out_dir: first.out_dir.clone(),
            state_dir: first.state_dir,
            cancel: first.cancel.clone(),
            board: first.board,
            order: first.order,
        }
    }
}

/// The input of a follow-up of the finished attempt `previous` (its status): made on the
/// gateway, or adopted there when an earlier run uploaded it. `None` when none of its lines
/// failed retryably.
pub async fn make_input(client: GatewayClient, previous: BatchStatus) -> Result<Option<RetryInput>, RetryError> {
    let made = follow_up_input(&client, &previous).await;
    crate::steps::crash_if_asked("upload-retry-input");
    made
}

impl SweepRun {
    /// Runs the follow-up `child` (reading `input`) to its end, resuming its kept state, and
    /// writes its `status.yaml`.
    pub async fn run_follow_up(
        &self,
        follow: FollowUp<'_>,
        child: &ChildPlan,
        input: &RetryInput,
        reporter: &Reporter,
    ) -> (Ending, BatchStatus) {
        let (ending, status) = self.run_attempt(&follow, child, input, reporter).await;
        if let Ok(dir) = paths::beside(&follow.out_dir, &child.name) {
            let _ = write_status_yaml(&dir, &status);
        }
        (ending, status)
    }

    async fn run_attempt(
        &self,
        follow: &FollowUp<'_>,
        child: &ChildPlan,
        input: &RetryInput,
        reporter: &Reporter,
    ) -> (Ending, BatchStatus) {
        let out_dir = paths::beside(&follow.out_dir, &child.name);
        let plan = self.follow_up_plan(follow.parent, child, input);
        let (out_dir, plan) = match (out_dir, plan) {
            (Ok(out), Ok(plan)) => (out, plan),
            (Err(e), _) | (_, Err(e)) => return (Ending::Stopped(e.to_string()), BatchStatus::default()),
        };
        let state = match follow.state_dir.load(&plan.namespace, &plan.name) {
            Ok(Some(saved)) if saved.input_digest == plan.input_digest => saved,
            Ok(_) => BatchState {
                uid: uuid::Uuid::new_v4().to_string(),
                gateway: follow.state_gateway.clone(),
                input_digest: plan.input_digest.clone(),
                status: Default::default(),
            },
            Err(e) => return (Ending::Stopped(e.to_string()), BatchStatus::default()),
        };
        BatchRun {
            plan: &plan,
            state,
            client: follow.client.clone(),
            polling: follow.polling,
            validated: Default::default(),
            out_dir,
            state_dir: follow.state_dir,
            progress: reporter.batch(&plan.object()),
            cancel: follow.cancel.clone(),
            board: follow.board,
            order: follow.order,
            fresh_attempts: Default::default(),
            webhook: None,
        }
        .run()
        .await
    }

    /// The Batch of follow-up `child`: its first attempt's, reading `input` on the gateway,
    /// with outputs of its own beside the first attempt's.
    fn follow_up_plan(&self, parent: &Plan, child: &ChildPlan, input: &RetryInput) -> Result<Plan, paths::UnsafePath> {
        let mut batch = Batch::new(
            &child.name,
            child.follow_up_spec(&self.name, &self.sweep.spec, &input.file_id),
        );
        batch.metadata.namespace = Some(self.namespace.clone());
        let suffix = child
            .name
            .strip_prefix(&self.name)
            .and_then(|rest| rest.strip_prefix('-'))
            .unwrap_or(&child.name)
            .to_string();
        let pvc_output = match &parent.pvc_output {
            Some(p) => Some(PvcOutput {
                dir: paths::beside(&p.dir, &suffix)?,
                location: format!(
                    "{}/{}/",
                    p.location
                        .trim_end_matches('/')
                        .rsplit_once('/')
                        .map_or("", |(base, _)| base),
                    suffix
                ),
            }),
            None => None,
        };
        Ok(Plan {
            namespace: self.namespace.clone(),
            name: child.name.clone(),
            batch: Located {
                object: batch,
                origin: parent.batch.origin.clone(),
            },
            input: Bytes::new(),
            input_digest: input_digest(input),
            gateway: parent.gateway.clone(),
            object_input: None,
            object_output: self.output_base.as_ref().map(|base| base.child(&suffix)),
            pvc_output,
            webhook: None,
        })
    }
}
