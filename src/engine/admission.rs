//! Admission against a gateway's budget, for sweeps and standalone Batches alike: at most
//! `maxActiveBatches` admitted and unfinished at once, at most `tokensPerHour` estimated
//! tokens admitted in any rolling hour, and at most `budget.amount` spent in any rolling
//! `budget.window` (the cost of Batches that finished within it, the estimates of admitted
//! ones still running, and the candidate's estimate). Waiting Batches are admitted strictly in order of
//! creation (then name), so a large Batch at the head is never starved by smaller ones behind
//! it. Pure: the drivers gather the entries (the controller from the API, `run -f` from its own
//! runs) and perform the verdict.

use std::str::FromStr;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use rust_decimal::Decimal;

use crate::api::{BatchGatewaySpec, BatchStatus};
use crate::backoff::Backoff;

/// The window `tokensPerHour` counts over.
pub const WINDOW: Duration = Duration::from_secs(3600);

/// A gateway's admission limits; `None` is no limit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Budget {
    pub max_active_batches: Option<u32>,
    pub tokens_per_hour: Option<u64>,
    pub spend: Option<SpendLimit>,
}

/// At most `amount` spent in any rolling `window`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpendLimit {
    pub amount: Decimal,
    pub window: Duration,
    /// `24h`, as the spec says it.
    pub window_text: String,
    pub currency: String,
}

impl Budget {
    /// The limits of a gateway. A money budget that does not parse (the CRD schema refuses
    /// such values) admits nothing.
    pub fn of(spec: &BatchGatewaySpec) -> Self {
        let limits = &spec.limits;
        let spend = limits.budget.as_ref().map(|b| {
            let (amount, window) = limits.spend_budget().ok().flatten().unwrap_or((Decimal::ZERO, WINDOW));
            SpendLimit {
                amount,
                window,
                window_text: b.window.clone(),
                currency: spec.currency().to_string(),
            }
        });
        Budget {
            max_active_batches: limits.max_active_batches,
            tokens_per_hour: limits.tokens_per_hour,
            spend,
        }
    }

    pub fn is_unlimited(&self) -> bool {
        self.max_active_batches.is_none() && self.tokens_per_hour.is_none() && self.spend.is_none()
    }
}

/// One Batch of a gateway, as admission sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// `namespace/name`: unique, and the tie-break after `created`.
    pub key: String,
    pub created: Timestamp,
    pub tokens: u64,
    pub state: EntryState,
    /// When it was admitted (its tokens count for an hour from then).
    pub admitted: Option<Timestamp>,
    /// Not admitted before this time (a backoff after the gateway sent it back).
    pub not_before: Option<Timestamp>,
    /// What it costs: its actual cost once its results are counted, its estimate before.
    pub cost: Option<Decimal>,
    /// When it finished (its cost counts for a budget window from then); `None` for a Batch
    /// that ended before anything was sent (refused, cancelled or invalid before admission),
    /// which spent nothing.
    pub finished: Option<Timestamp>,
}

/// Where a Batch is in its life, for admission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryState {
    /// Validated and waiting to be admitted.
    Waiting,
    /// Admitted and not finished: holds one of the `maxActiveBatches`.
    Active,
    /// Not validated yet (and not stuck waiting for its input): Batches created after it wait,
    /// so admission follows creation order even when validations finish out of order.
    Validating,
    /// Finished, or held up before validation (its input missing): holds nothing (its admitted
    /// tokens still count).
    Idle,
}

impl Entry {
    /// The entry of a Batch with this status.
    pub fn of(key: String, created: Timestamp, status: &BatchStatus) -> Entry {
        let admission = status.admission.clone().unwrap_or_default();
        let admitted = admission.admitted_time.map(|t| t.0);
        let finished = status.phase.is_some_and(|p| p.is_terminal());
        let held_up = status
            .conditions
            .iter()
            .any(|c| c.type_ == crate::api::condition_types::ADMITTED && c.status == "False");
        let state = match (finished, admitted.is_some(), status.input.is_some()) {
            (true, _, _) => EntryState::Idle,
            (false, true, _) => EntryState::Active,
            (false, false, true) => EntryState::Waiting,
            (false, false, false) if held_up => EntryState::Idle,
            (false, false, false) => EntryState::Validating,
        };
        Entry {
            key,
            created,
            tokens: status.input.as_ref().and_then(|i| i.estimated_tokens).unwrap_or(0),
            state,
            admitted,
            not_before: admission.not_before.map(|t| t.0),
            cost: status.cost.as_ref().and_then(|c| match c.actual.is_empty() {
                false => Decimal::from_str(&c.actual).ok(),
                true => c.estimated.as_deref().and_then(|e| Decimal::from_str(e).ok()),
            }),
            finished: status
                .completion_time
                .as_ref()
                .map(|t| t.0)
                .filter(|_| may_have_spent(status)),
        }
    }
}

/// Whether a Batch got as far as the gateway (admitted, an attempt started, a batch there, or
/// results counted): one that ended before that spent nothing, whatever it was estimated at.
fn may_have_spent(status: &BatchStatus) -> bool {
    status.admission.as_ref().is_some_and(|a| a.admitted_time.is_some())
        || status.attempt.is_some()
        || status.gateway.as_ref().is_some_and(|g| g.batch_id.is_some())
        || status.cost.as_ref().is_some_and(|c| !c.actual.is_empty())
}

/// What admission says about one waiting Batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Admit,
    /// Not yet; the message says what it waits for.
    Wait(String),
    /// Not while the money budget's window holds what it holds (`BudgetExhausted`).
    OverBudget(OverBudget),
    /// It can never fit (more estimated tokens than `tokensPerHour`, or an estimate over the
    /// whole money budget).
    Never(String),
}

/// Why a Batch waits for the money budget, and what would make room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverBudget {
    pub message: String,
    /// Admitted Batches still running hold estimates: their end may make room.
    pub running: bool,
    /// When enough finished spend leaves the window (`None`: not before the running ones end).
    pub room_at: Option<Timestamp>,
}

/// A gateway's spend against its money budget.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Spend {
    /// Cost of the Batches that finished within the window.
    pub spent: Decimal,
    /// Estimates (or costs so far) of the admitted Batches still running.
    pub committed: Decimal,
    pub running: usize,
}

impl Spend {
    pub fn total(&self) -> Decimal {
        self.spent.saturating_add(self.committed)
    }
}

/// The spend counted against a `window` budget at `now`.
pub fn spend(entries: &[Entry], window: Duration, now: Timestamp) -> Spend {
    let mut spend = Spend::default();
    for entry in entries {
        let cost = entry.cost.unwrap_or_default();
        match (entry.finished, entry.state) {
            (Some(done), _) if within(done, window, now) => spend.spent = spend.spent.saturating_add(cost),
            (None, EntryState::Active) => {
                spend.committed = spend.committed.saturating_add(cost);
                spend.running += 1;
            }
            _ => {}
        }
    }
    spend
}

/// When `needed` more fits: the time enough of the finished spend has left the window
/// (`None` when the finished spend alone cannot make room).
fn room_at(entries: &[Entry], limit: &SpendLimit, needed: Decimal, now: Timestamp) -> Option<Timestamp> {
    let mut finished: Vec<(Timestamp, Decimal)> = entries
        .iter()
        .filter_map(|e| Some((e.finished?, e.cost?)))
        .filter(|(done, _)| within(*done, limit.window, now))
        .collect();
    finished.sort();
    let mut freed = Decimal::ZERO;
    for (done, cost) in finished {
        freed = freed.saturating_add(cost);
        if freed >= needed {
            return Some(done + limit.window);
        }
    }
    None
}

fn within(at: Timestamp, window: Duration, now: Timestamp) -> bool {
    now.duration_since(at).unsigned_abs() < window || at > now
}

/// Tokens admitted within the window before `now`.
pub fn window_tokens(entries: &[Entry], now: Timestamp) -> u64 {
    entries
        .iter()
        .filter(|e| e.admitted.is_some_and(|at| in_window(at, now)))
        .map(|e| e.tokens)
        .sum()
}

/// Admitted and unfinished Batches.
pub fn active(entries: &[Entry]) -> u32 {
    u32::try_from(entries.iter().filter(|e| e.state == EntryState::Active).count()).unwrap_or(u32::MAX)
}

/// Validated Batches waiting to be admitted.
pub fn waiting(entries: &[Entry]) -> u32 {
    u32::try_from(entries.iter().filter(|e| e.state == EntryState::Waiting).count()).unwrap_or(u32::MAX)
}

fn in_window(at: Timestamp, now: Timestamp) -> bool {
    within(at, WINDOW, now)
}

/// Why a Batch the gateway sent back must still wait out its backoff, whatever the budget.
pub fn held_back(status: &BatchStatus, now: Timestamp) -> Option<String> {
    let until = status.admission.as_ref()?.not_before.as_ref()?.0;
    (until > now).then(|| sent_back(until))
}

fn sent_back(until: Timestamp) -> String {
    format!("the gateway sent the batch back (enqueued token limit); queued again until {until}")
}

/// Whether the waiting Batch `key` may start now under `budget`, given every Batch of its
/// gateway (`entries`, including itself).
pub fn judge(key: &str, entries: &[Entry], budget: &Budget, now: Timestamp) -> Verdict {
    let Some(candidate) = entries.iter().find(|e| e.key == key) else {
        return Verdict::Wait("not known to the gateway's queue yet".into());
    };
    if let Some(limit) = budget.tokens_per_hour
        && candidate.tokens > limit
    {
        return Verdict::Never(format!(
            "the input is estimated at {} tokens, more than the gateway's tokensPerHour ({limit}): split it \
             (a BatchSweep with smaller chunks) or raise the limit",
            candidate.tokens
        ));
    }
    let mut queue: Vec<&Entry> = entries
        .iter()
        .filter(|e| matches!(e.state, EntryState::Waiting | EntryState::Validating))
        .filter(|e| budget.tokens_per_hour.is_none_or(|limit| e.tokens <= limit))
        .filter(|e| {
            let over = |limit: &SpendLimit| e.cost.is_some_and(|cost| cost > limit.amount);
            !budget.spend.as_ref().is_some_and(over)
        })
        .collect();
    queue.sort_by(|a, b| (a.created, &a.key).cmp(&(b.created, &b.key)));
    let mut slots = budget.max_active_batches.map(|max| max.saturating_sub(active(entries)));
    let mut tokens_left = budget
        .tokens_per_hour
        .map(|limit| limit.saturating_sub(window_tokens(entries, now)));
    if let Some(limit) = &budget.spend
        && let Some(never) = over_whole_budget(candidate, limit)
    {
        return Verdict::Never(never);
    }
    let spend_now = budget.spend.as_ref().map(|limit| spend(entries, limit.window, now));
    let mut money_left = budget
        .spend
        .as_ref()
        .zip(spend_now.as_ref())
        .map(|(limit, spend)| limit.amount - spend.total());
    for (ahead, entry) in queue.iter().enumerate() {
        if entry.state == EntryState::Validating {
            if entry.key == key {
                break;
            }
            return Verdict::Wait(format!(
                "{} earlier Batch(es) of this gateway are still being validated",
                ahead + 1
            ));
        }
        let held_back = entry.not_before.filter(|t| *t > now);
        let no_slot = slots == Some(0);
        let no_tokens = tokens_left.is_some_and(|left| entry.tokens > left);
        let cost = entry.cost.unwrap_or_default();
        let no_money = money_left.is_some_and(|left| cost > left);
        if held_back.is_none() && !no_slot && !no_tokens && !no_money {
            if entry.key == key {
                return Verdict::Admit;
            }
            slots = slots.map(|s| s - 1);
            tokens_left = tokens_left.map(|left| left - entry.tokens);
            money_left = money_left.map(|left| left - cost);
            continue;
        }
        if entry.key != key {
            return Verdict::Wait(format!(
                "{} earlier Batch(es) of this gateway wait first (admission is in order of creation)",
                ahead + 1
            ));
        }
        if let (true, None, false, 0, Some(limit), Some(spend)) =
            (no_money, held_back, no_slot, ahead, &budget.spend, &spend_now)
        {
            return Verdict::OverBudget(over_budget(entries, limit, spend, cost, now));
        }
        return Verdict::Wait(match (held_back, no_slot) {
            (Some(t), _) => sent_back(t),
            (None, _) if ahead > 0 => format!(
                "{ahead} earlier Batch(es) of this gateway take the room left first (admission is in order of creation)"
            ),
            (None, true) => format!(
                "{} of {} batches active on this gateway (maxActiveBatches)",
                active(entries),
                budget.max_active_batches.unwrap_or(0)
            ),
            (None, false) => format!(
                "{} estimated tokens admitted in the last hour; this one needs {} more than the {} left \
                 (tokensPerHour {})",
                window_tokens(entries, now),
                entry.tokens - tokens_left.unwrap_or(0),
                tokens_left.unwrap_or(0),
                budget.tokens_per_hour.unwrap_or(0)
            ),
        });
    }
    Verdict::Wait("not validated yet".into())
}

/// Why a Batch whose estimate alone is over the whole money budget can never start.
fn over_whole_budget(candidate: &Entry, limit: &SpendLimit) -> Option<String> {
    let cost = candidate.cost?;
    (cost > limit.amount).then(|| {
        format!(
            "the input is estimated at {cost} {currency}, more than the gateway's budget of {amount} {currency} per \
             {window}: split it (a BatchSweep with maxCost) or raise spec.limits.budget",
            currency = limit.currency,
            amount = limit.amount,
            window = limit.window_text
        )
    })
}

/// The wait of a Batch estimated at `cost` that the money budget has no room for.
fn over_budget(entries: &[Entry], limit: &SpendLimit, spend: &Spend, cost: Decimal, now: Timestamp) -> OverBudget {
    let needed = cost - (limit.amount - spend.total());
    let room_at = room_at(entries, limit, needed, now);
    let frees = match (room_at, spend.running) {
        (Some(at), _) => format!("room frees up at {at}, as earlier spend leaves the window"),
        (None, 0) => "nothing frees room before the window rolls".to_string(),
        (None, n) => format!("room frees up as the {n} running Batch(es) finish below their estimates"),
    };
    let message = format!(
        "budget exhausted: {spent} {c} spent in the last {window} and {committed} {c} estimated for {running} \
         running Batch(es), of {amount} {c}; this Batch is estimated at {cost} {c}; {frees}",
        spent = spend.spent.normalize(),
        committed = spend.committed.normalize(),
        running = spend.running,
        amount = limit.amount.normalize(),
        window = limit.window_text,
        c = limit.currency,
        cost = cost.normalize(),
    );
    OverBudget {
        message,
        running: spend.running > 0,
        room_at,
    }
}

/// How long a Batch sent back for the gateway's enqueued-token limit waits before it is
/// admitted again: 15 s, doubling per requeue, at most half an hour.
pub fn requeue_backoff(requeues: u32) -> Duration {
    Backoff::new(Duration::from_secs(15), Duration::from_secs(1800)).delay(requeues)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    fn waiting(key: &str, created: i64, tokens: u64) -> Entry {
        Entry {
            key: key.into(),
            created: at(created),
            tokens,
            state: EntryState::Waiting,
            admitted: None,
            not_before: None,
            cost: None,
            finished: None,
        }
    }

    fn active_since(key: &str, admitted: i64, tokens: u64) -> Entry {
        Entry {
            state: EntryState::Active,
            admitted: Some(at(admitted)),
            ..waiting(key, admitted - 1, tokens)
        }
    }

    #[test]
    fn no_limits_admit_everyone() {
        let entries = [waiting("a", 0, 10), waiting("b", 1, 10)];
        assert_eq!(judge("b", &entries, &Budget::default(), at(5)), Verdict::Admit);
    }

    #[test]
    fn max_active_batches_admits_in_order_of_creation() {
        let budget = Budget {
            max_active_batches: Some(2),
            tokens_per_hour: None,
            spend: None,
        };
        let entries = [active_since("x", 0, 1), waiting("b", 2, 1), waiting("a", 1, 1)];
        assert_eq!(judge("a", &entries, &budget, at(5)), Verdict::Admit);
        let Verdict::Wait(why) = judge("b", &entries, &budget, at(5)) else {
            panic!()
        };
        assert!(why.contains("1 earlier"), "{why}");
        let entries = [active_since("x", 0, 1), active_since("a", 3, 1), waiting("b", 2, 1)];
        let Verdict::Wait(why) = judge("b", &entries, &budget, at(5)) else {
            panic!()
        };
        assert!(why.contains("2 of 2 batches active"), "{why}");
    }

    #[test]
    fn tokens_per_hour_counts_a_rolling_hour_and_blocks_in_order() {
        let budget = Budget {
            max_active_batches: None,
            tokens_per_hour: Some(100),
            spend: None,
        };
        let mut done = active_since("old", 0, 70);
        done.state = EntryState::Idle;
        // Big waits for the old admission to leave the window; small behind it waits too.
        let entries = [done.clone(), waiting("big", 10, 50), waiting("small", 11, 10)];
        assert!(matches!(judge("big", &entries, &budget, at(60)), Verdict::Wait(m) if m.contains("tokensPerHour 100")));
        assert!(matches!(judge("small", &entries, &budget, at(60)), Verdict::Wait(m) if m.contains("earlier")));
        assert_eq!(judge("big", &entries, &budget, at(3600)), Verdict::Admit);
        assert_eq!(window_tokens(&entries, at(60)), 70);
        assert_eq!(window_tokens(&entries, at(3600)), 0);
    }

    #[test]
    fn an_earlier_batch_still_validating_goes_first_unless_its_input_is_missing() {
        let budget = Budget {
            max_active_batches: Some(5),
            tokens_per_hour: None,
            spend: None,
        };
        let mut earlier = waiting("earlier", 0, 0);
        earlier.state = EntryState::Validating;
        let entries = [earlier, waiting("later", 1, 10)];
        assert!(matches!(judge("later", &entries, &budget, at(5)), Verdict::Wait(m) if m.contains("validated")));
        let mut status = BatchStatus::default();
        assert_eq!(Entry::of("a".into(), at(0), &status).state, EntryState::Validating);
        status
            .conditions
            .push(k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
                type_: "Admitted".into(),
                status: "False".into(),
                reason: "InputNotFound".into(),
                message: String::new(),
                last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at(0)),
                observed_generation: None,
            });
        assert_eq!(
            Entry::of("a".into(), at(0), &status).state,
            EntryState::Idle,
            "a missing input blocks nobody"
        );
    }

    #[test]
    fn a_batch_larger_than_the_hourly_budget_never_fits_and_blocks_nobody() {
        let budget = Budget {
            max_active_batches: None,
            tokens_per_hour: Some(100),
            spend: None,
        };
        let entries = [waiting("huge", 0, 500), waiting("next", 1, 10)];
        assert!(matches!(judge("huge", &entries, &budget, at(1)), Verdict::Never(m) if m.contains("500")));
        assert_eq!(judge("next", &entries, &budget, at(1)), Verdict::Admit);
    }

    #[test]
    fn a_batch_sent_back_waits_out_its_backoff_and_holds_the_queue() {
        let budget = Budget {
            max_active_batches: Some(5),
            tokens_per_hour: None,
            spend: None,
        };
        let mut back = waiting("back", 0, 10);
        back.not_before = Some(at(120));
        let entries = [back, waiting("later", 1, 10)];
        assert!(
            matches!(judge("back", &entries, &budget, at(60)), Verdict::Wait(m) if m.contains("sent the batch back"))
        );
        assert!(matches!(judge("later", &entries, &budget, at(60)), Verdict::Wait(_)));
        assert_eq!(judge("back", &entries, &budget, at(121)), Verdict::Admit);
        assert_eq!(requeue_backoff(1), Duration::from_secs(15));
        assert_eq!(requeue_backoff(2), Duration::from_secs(30));
        assert_eq!(requeue_backoff(40), Duration::from_secs(1800));
    }

    fn money(amount: i64) -> Budget {
        Budget {
            spend: Some(SpendLimit {
                amount: Decimal::from(amount),
                window: Duration::from_secs(86_400),
                window_text: "24h".into(),
                currency: "USD".into(),
            }),
            ..Budget::default()
        }
    }

    fn costing(entry: Entry, cost: i64) -> Entry {
        Entry {
            cost: Some(Decimal::from(cost)),
            ..entry
        }
    }

    fn finished_at(key: &str, at_second: i64, cost: i64) -> Entry {
        Entry {
            state: EntryState::Idle,
            finished: Some(at(at_second)),
            ..costing(active_since(key, at_second - 10, 0), cost)
        }
    }

    #[test]
    fn a_money_budget_admits_while_spend_running_estimates_and_the_candidate_fit() {
        let budget = money(10);
        let entries = [
            finished_at("done", 100, 3),
            costing(active_since("running", 200, 0), 4),
            costing(waiting("fits", 300, 0), 3),
            costing(waiting("over", 301, 0), 1),
        ];
        assert_eq!(judge("fits", &entries, &budget, at(400)), Verdict::Admit);
        let Verdict::Wait(why) = judge("over", &entries, &budget, at(400)) else {
            panic!("the earlier Batch takes the room first")
        };
        assert!(why.contains("1 earlier Batch(es)"), "{why}");

        let entries = [
            entries[0].clone(),
            entries[1].clone(),
            costing(waiting("over", 301, 0), 4),
        ];
        let Verdict::OverBudget(over) = judge("over", &entries, &budget, at(400)) else {
            panic!("3 spent + 4 running + 4 is over 10")
        };
        assert!(over.running, "the running Batch may end below its estimate");
        assert_eq!(
            over.room_at,
            Some(at(100 + 86_400)),
            "the finished 3 leaves the window then"
        );
        assert!(
            over.message
                .contains("3 USD spent in the last 24h and 4 USD estimated for 1 running"),
            "{}",
            over.message
        );
        // A day after the first Batch finished, its cost has left the window.
        assert_eq!(judge("over", &entries, &budget, at(100 + 86_400)), Verdict::Admit);
    }

    #[test]
    fn a_batch_refused_before_anything_was_sent_spent_nothing_and_one_over_the_budget_blocks_nobody() {
        let budget = money(5);
        let mut refused = BatchStatus {
            phase: Some(crate::api::BatchPhase::Failed),
            completion_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at(10))),
            cost: Some(crate::api::Cost {
                estimated: Some("6".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let entry = Entry::of("refused".into(), at(0), &refused);
        assert_eq!((entry.state, entry.finished), (EntryState::Idle, None));
        let entries = [entry, costing(waiting("next", 1, 0), 4)];
        assert_eq!(spend(&entries, Duration::from_secs(86_400), at(20)), Spend::default());
        assert_eq!(judge("next", &entries, &budget, at(20)), Verdict::Admit);

        // Once admitted, what it was estimated at counts until its results say otherwise.
        refused.admission = Some(crate::api::AdmissionStatus {
            admitted_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at(5))),
            ..Default::default()
        });
        assert_eq!(Entry::of("ran".into(), at(0), &refused).finished, Some(at(10)));

        // Still waiting for its own verdict, an estimate over the whole budget holds up nobody.
        let entries = [costing(waiting("huge", 0, 0), 6), costing(waiting("next", 1, 0), 4)];
        assert_eq!(judge("next", &entries, &budget, at(20)), Verdict::Admit);
        assert!(matches!(judge("huge", &entries, &budget, at(20)), Verdict::Never(_)));
    }

    #[test]
    fn finished_spend_alone_waits_for_the_window_and_an_estimate_over_the_budget_never_fits() {
        let budget = money(5);
        let entries = [
            finished_at("a", 0, 2),
            finished_at("b", 50, 2),
            costing(waiting("c", 60, 0), 3),
        ];
        let Verdict::OverBudget(over) = judge("c", &entries, &budget, at(100)) else {
            panic!("4 spent + 3 is over 5")
        };
        assert!(!over.running);
        assert_eq!(over.room_at, Some(at(86_400)), "a's 2 leaving makes room for 3");

        let entries = [costing(waiting("huge", 0, 0), 6)];
        let Verdict::Never(why) = judge("huge", &entries, &budget, at(1)) else {
            panic!("an estimate over the whole budget can never start")
        };
        assert!(
            why.contains("estimated at 6 USD, more than the gateway's budget of 5 USD per 24h"),
            "{why}"
        );
    }
}
