//! The time the schedule reconciler reads: the system's, or one a test sets (and moves).

use std::sync::Arc;

use futures::stream::{self, BoxStream, StreamExt};
use k8s_openapi::jiff::Timestamp;
use tokio::sync::watch;

/// The system clock, or a manual one.
#[derive(Clone, Default)]
pub struct Clock(Option<Arc<watch::Sender<Timestamp>>>);

impl Clock {
    /// The system's clock.
    pub fn system() -> Self {
        Clock(None)
    }

    /// A clock that reads `start` until [`Clock::set`] moves it.
    pub fn manual(start: Timestamp) -> Self {
        Clock(Some(Arc::new(watch::Sender::new(start))))
    }

    pub fn now(&self) -> Timestamp {
        match &self.0 {
            None => Timestamp::now(),
            Some(manual) => *manual.borrow(),
        }
    }

    /// Moves a manual clock (a system clock ignores it).
    pub fn set(&self, now: Timestamp) {
        if let Some(manual) = &self.0 {
            manual.send_replace(now);
        }
    }

    /// Yields each time a manual clock moves, so what waits for a time looks again at once;
    /// never for the system clock (requeues wait for real time).
    pub fn moves(&self) -> BoxStream<'static, ()> {
        let Some(manual) = &self.0 else {
            return stream::pending().boxed();
        };
        stream::unfold(manual.subscribe(), |mut changes| async move {
            changes.changed().await.ok()?;
            Some(((), changes))
        })
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_clock_reads_what_it_was_set_to_and_tells_its_moves() {
        let start: Timestamp = "2026-01-31T02:00:00Z".parse().unwrap();
        let clock = Clock::manual(start);
        let mut moves = clock.moves();
        assert_eq!(clock.now(), start);
        let later: Timestamp = "2026-01-31T02:01:00Z".parse().unwrap();
        clock.set(later);
        assert_eq!(clock.now(), later);
        assert_eq!(moves.next().await, Some(()));
    }
}
