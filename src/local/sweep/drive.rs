//! Driving a sweep's children in `run -f` as the controller does: observe the attempts,
//! let `sweep::decide` say which to create (parallelism, failure budget, retries first,
//! suspend), start those, wait for one to end, and again, until it creates nothing and nothing
//! runs. Attempts that exist from an earlier run go on first, as the cluster's Batches would.

use std::collections::BTreeMap;

use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use k8s_openapi::jiff::Timestamp;

use super::SweepRun;
use super::attempts::{self, Attempt};
use super::follow_up::{self, FollowUp};
use crate::api::{BatchMode, BatchStatus, BatchSweepStatus, MAX_ATTEMPTS, SweepPhase, condition_types};
use crate::local::progress::Reporter;
use crate::local::runner::{BatchRun, Ending};
use crate::local::state::StateDir;
use crate::steps::retry::{RetryError, RetryInput};
use crate::sweep::{self, ChainState, ChildPlan, ObservedChild, Summary, attempt_name};

/// How a sweep's run went.
pub struct Driven {
    /// For each first attempt: its place in the run's plans, how its child ended (its latest
    /// attempt), and its own status.
    pub children: Vec<(usize, (Ending, BatchStatus))>,
    /// The status `sweep::decide` gave last.
    pub status: BatchSweepStatus,
    pub summary: Summary,
}

/// What ended while the children ran.
enum Event {
    /// An attempt's run.
    Ran {
        name: String,
        ending: Ending,
        status: Box<BatchStatus>,
    },
    /// Making the input of the follow-up `child` on the gateway.
    Input {
        child: ChildPlan,
        made: Result<Option<RetryInput>, RetryError>,
    },
}

/// A child's first attempt, as the run gave it.
struct First<'a> {
    /// Its place in the run's plans.
    order: usize,
    /// Its run, until it starts.
    run: Option<BatchRun<'a>>,
    /// What its follow-ups share with it.
    follow: FollowUp<'a>,
}

type Running<'a> = FuturesUnordered<BoxFuture<'a, Event>>;

struct Driver<'a> {
    sweep: &'a SweepRun,
    state_dir: &'a StateDir,
    reporter: &'a Reporter,
    cancel: tokio_util::sync::CancellationToken,
    /// Each child's first attempt, by name.
    firsts: BTreeMap<String, First<'a>>,
    /// Every attempt that exists, by name.
    attempts: BTreeMap<String, Attempt>,
    /// Follow-ups whose input could not be made in this run, and why.
    stalled: BTreeMap<String, String>,
}

impl SweepRun {
    /// Runs the children (`firsts`: the runs of their first attempts, each with its place in
    /// the run's plans) to the end `sweep::decide` sees.
    pub async fn drive<'a>(
        &'a self,
        firsts: Vec<(usize, BatchRun<'a>)>,
        state_dir: &'a StateDir,
        reporter: &'a Reporter,
        cancel: tokio_util::sync::CancellationToken,
    ) -> Driven {
        let mut driver = Driver {
            sweep: self,
            state_dir,
            reporter,
            cancel,
            firsts: BTreeMap::new(),
            attempts: BTreeMap::new(),
            stalled: BTreeMap::new(),
        };
        let mut runs: BTreeMap<String, (usize, BatchRun<'a>)> = firsts
            .into_iter()
            .map(|(order, run)| (run.plan.name.clone(), (order, run)))
            .collect();
        // The children share the sweep's gateway, and so its prices.
        let prices = runs.values().find_map(|(_, run)| run.plan.gateway.prices());
        let mut running = Running::new();
        for first in &self.children {
            if let Some((order, run)) = runs.remove(&first.name) {
                running.extend(driver.adopt(first, order, run));
            }
        }
        let mut status = self.sweep.status.clone().unwrap_or_default();
        status.plan = None; // the plan is kept in the state directory; the summary names the chunks
        loop {
            let decision = sweep::decide(
                &self.sweep.spec,
                None,
                &status,
                &self.children,
                &driver.observed(),
                prices.as_deref().map(|prices| sweep::Spending {
                    plan: &self.plan,
                    prices,
                    mode: BatchMode::Batch,
                }),
                Timestamp::now(),
            );
            status = decision.status;
            if !driver.cancel.is_cancelled() {
                running.extend(decision.create.into_iter().filter_map(|child| driver.create(child)));
            }
            let Some(event) = running.next().await else {
                break;
            };
            running.extend(driver.record(event));
        }
        driver.finish(status)
    }
}

impl<'a> Driver<'a> {
    /// Takes in the run of `first`'s first attempt; returns the runs of its attempts that exist
    /// (resumed; those that finished end at once).
    fn adopt(&mut self, first: &'a ChildPlan, order: usize, run: BatchRun<'a>) -> Vec<BoxFuture<'a, Event>> {
        let ns = &self.sweep.namespace;
        let existing = attempts::existing(self.state_dir, ns, &first.name, &run.state.status);
        let follow = FollowUp::of(&run);
        let run = Some(run);
        self.firsts.insert(first.name.clone(), First { order, run, follow });
        let mut started = Vec::new();
        for (n, (name, attempt)) in (1..).zip(existing) {
            let input = attempt.input.clone();
            self.attempts.insert(name.clone(), attempt);
            started.extend(match input {
                None => self.start_first(&name),
                Some(input) => Some(self.start_follow_up(first.follow_up(n), input)),
            });
        }
        started
    }

    /// What exists, as the controller observes it from its cache.
    fn observed(&self) -> BTreeMap<String, ObservedChild> {
        self.attempts
            .iter()
            .map(|(name, attempt)| (name.clone(), attempt.observed()))
            .collect()
    }

    /// Creates `child` as `sweep::decide` asked: a first attempt starts; a follow-up's input is
    /// made first. The attempt exists from now on.
    fn create(&mut self, child: ChildPlan) -> Option<BoxFuture<'a, Event>> {
        let Some(previous) = &child.retry_of else {
            return self.start_first(&child.name);
        };
        if self.stalled.contains_key(&child.name) {
            return None;
        }
        let client = self.follow_up_of(&child).client.clone();
        let made = follow_up::make_input(client, self.attempts[previous].status.clone());
        self.attempts.insert(child.name.clone(), Attempt::default());
        Some(
            async move {
                Event::Input {
                    child,
                    made: made.await,
                }
            }
            .boxed(),
        )
    }

    fn start_first(&mut self, name: &str) -> Option<BoxFuture<'a, Event>> {
        let run = self.firsts.get_mut(name)?.run.take()?;
        let attempt = self.attempts.entry(name.to_string()).or_default();
        attempt.status = run.state.status.clone();
        let name = name.to_string();
        Some(
            async move {
                let (ending, status) = run.run().await;
                let status = Box::new(status);
                Event::Ran { name, ending, status }
            }
            .boxed(),
        )
    }

    fn start_follow_up(&self, child: ChildPlan, input: RetryInput) -> BoxFuture<'a, Event> {
        let (sweep, reporter) = (self.sweep, self.reporter);
        let follow = self.follow_up_of(&child).clone();
        async move {
            let (ending, status) = sweep.run_follow_up(follow, &child, &input, reporter).await;
            Event::Ran {
                name: child.name,
                ending,
                status: Box::new(status),
            }
        }
        .boxed()
    }

    /// Takes in what ended; returns the follow-up to run when its input was made.
    fn record(&mut self, event: Event) -> Option<BoxFuture<'a, Event>> {
        match event {
            Event::Ran { name, ending, status } => {
                let attempt = self.attempts.entry(name).or_default();
                attempt.status = *status;
                attempt.ending = Some(ending);
                None
            }
            Event::Input { child, made } => self.record_input(child, made),
        }
    }

    /// As the controller does with a follow-up's input: none to make or a lasting error leaves
    /// the attempt it retries with no retryable line; a passing error is tried again on a rerun.
    fn record_input(
        &mut self,
        child: ChildPlan,
        made: Result<Option<RetryInput>, RetryError>,
    ) -> Option<BoxFuture<'a, Event>> {
        let previous = child.retry_of.clone().expect("a follow-up retries an attempt");
        self.attempts.remove(&child.name);
        let made = match made {
            Ok(made) => made,
            Err(e) if e.transient => {
                self.stall(&child, &previous, &e.message);
                return None;
            }
            Err(e) => {
                let ns = &self.sweep.namespace;
                self.reporter
                    .say(format!("{ns}/{previous}: its failed lines are not retried: {e}"));
                None
            }
        };
        let ns = &self.sweep.namespace;
        if let Err(e) = attempts::keep_retry(self.state_dir, ns, &child.name, &previous, made.as_ref()) {
            self.stall(&child, &previous, &format!("cannot save state: {e}"));
            return None;
        }
        if let Some(attempt) = self.attempts.get_mut(&previous) {
            attempt.retryable = Some(made.as_ref().map_or(0, |m| m.lines));
        }
        let input = made?;
        self.reporter.say(format!(
            "{ns}/{previous}: {} lines failed retryably; retrying them as {} (attempt {} of {})",
            input.lines,
            child.name,
            child.attempt,
            self.sweep.sweep.spec.max_attempts()
        ));
        let cancelled = self.cancel.is_cancelled();
        let attempt = Attempt {
            input: Some(input.clone()),
            ending: cancelled.then_some(Ending::Interrupted),
            ..Attempt::default()
        };
        self.attempts.insert(child.name.clone(), attempt);
        (!cancelled).then(|| self.start_follow_up(child, input))
    }

    /// Gives up on `child` for this run: `sweep::decide` keeps asking for it, so its chain
    /// keeps its slot, as a child that stopped does.
    fn stall(&mut self, child: &ChildPlan, previous: &str, why: &str) {
        self.stalled
            .insert(child.name.clone(), format!("retrying {previous}: {why}"));
    }

    /// What the follow-up `child` shares with its child's first attempt.
    fn follow_up_of(&self, child: &ChildPlan) -> &FollowUp<'a> {
        let first = self
            .sweep
            .children
            .iter()
            .find(|c| c.chunk == child.chunk && c.model == child.model);
        &self.firsts[&first.expect("every follow-up is of a planned child").name].follow
    }

    /// How the run went, with the status `sweep::decide` gave last.
    fn finish(mut self, status: BatchSweepStatus) -> Driven {
        let observed = self.observed();
        let max_attempts = self.sweep.sweep.spec.max_attempts();
        let idle = self.why_idle(&status);
        for chain in sweep::chains(&self.sweep.children, &observed, max_attempts) {
            let stalled = chain.next().is_some_and(|next| self.stalled.contains_key(&next.name));
            if let (ChainState::RetryDue, false, Some(why), Some((latest, _))) =
                (chain.state, stalled, &idle, chain.attempts.last())
            {
                let ns = &self.sweep.namespace;
                self.reporter.say(format!("{ns}/{latest}: not retried: {why}"));
            }
        }
        let mut children = Vec::new();
        for first in &self.sweep.children {
            let Some(First { order, run, .. }) = self.firsts.remove(&first.name) else {
                continue;
            };
            let own = match run {
                Some(never_started) => {
                    never_started.progress.finish();
                    never_started.state.status
                }
                None => self.attempts[&first.name].status.clone(),
            };
            children.push((order, (self.ending(first, idle.as_deref()), own)));
        }
        let summary = sweep::summarise(&self.sweep.children, &observed, max_attempts);
        Driven {
            children,
            status,
            summary,
        }
    }

    /// Why the sweep, per its final status, started nothing more; `None` when it was interrupted.
    fn why_idle(&self, status: &BatchSweepStatus) -> Option<String> {
        match status.phase {
            Some(SweepPhase::Failed) => Some(format!(
                "more than maxFailedBatches {} children failed",
                self.sweep.sweep.spec.max_failed_batches
            )),
            Some(SweepPhase::Suspended) if self.sweep.sweep.spec.suspend => Some("the sweep is suspended".into()),
            Some(SweepPhase::Suspended) => {
                let complete = status.conditions.iter().find(|c| c.type_ == condition_types::COMPLETE);
                Some(complete.map_or_else(|| "the sweep rests".to_string(), |c| c.message.clone()))
            }
            _ if self.cancel.is_cancelled() => None,
            // Children that stopped are unfinished: they keep their parallelism slots.
            _ => Some("children that stopped hold the sweep's parallelism; rerun to resume".into()),
        }
    }

    /// How the child `first` ended: as its latest attempt that ran, or why none did.
    fn ending(&self, first: &ChildPlan, idle: Option<&str>) -> Ending {
        let mut ending = None;
        for n in 1..=MAX_ATTEMPTS {
            let name = attempt_name(&first.name, n);
            if let Some(why) = self.stalled.get(&name) {
                return Ending::Stopped(why.clone());
            }
            match self.attempts.get(&name) {
                Some(attempt) => ending = attempt.ending.clone().or(ending),
                None => break,
            }
        }
        ending.unwrap_or_else(|| match idle {
            Some(why) => Ending::Stopped(format!("not started: {why}")),
            None => Ending::Interrupted,
        })
    }
}
