//! Attempts this process started, and which of their creating calls it has made.
//!
//! Before it uploads or creates, a step looks for what an earlier run of the same attempt
//! made (a list walk back to the attempt's start, one page per hundred objects the key
//! holds), so a crash never bills twice. That walk is needed only when such an object can
//! exist: an attempt this process started, whose upload (or create) it has not called yet,
//! has nothing upstream to find. Any call made, answered or not, and any restart (which
//! forgets everything here) bring the search back.

use std::collections::HashMap;
use std::sync::Mutex;

/// Attempts remembered at most; past it they are all forgotten (and searched for again).
const MAX_REMEMBERED: usize = 100_000;

/// A creating call of an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    Upload,
    Create,
}

/// Whether the object a call creates may already exist upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Earlier {
    /// Look for it first (and adopt it when found).
    MayExist,
    /// This process started the attempt and has not made this call for it before.
    CannotExist,
}

#[derive(Default)]
pub struct FreshAttempts {
    calls_made: Mutex<HashMap<String, Vec<Call>>>,
}

impl FreshAttempts {
    /// Remembers an attempt this process has just started.
    pub fn started(&self, token: &str) {
        let mut attempts = self.lock();
        if attempts.len() >= MAX_REMEMBERED {
            attempts.clear();
        }
        attempts.insert(token.to_string(), Vec::new());
    }

    /// Whether `call` of attempt `token` may have made something already; records the call as
    /// made (the caller is about to make it).
    pub fn before(&self, token: &str, call: Call) -> Earlier {
        let mut attempts = self.lock();
        match attempts.get_mut(token) {
            Some(made) if !made.contains(&call) => {
                made.push(call);
                Earlier::CannotExist
            }
            _ => Earlier::MayExist,
        }
    }

    /// Forgets an attempt whose batch exists (nothing more is created for it).
    pub fn submitted(&self, token: &str) {
        self.lock().remove(token);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Call>>> {
        self.calls_made.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_call_of_an_attempt_this_process_started_skips_the_search() {
        let fresh = FreshAttempts::default();
        assert_eq!(fresh.before("t1", Call::Upload), Earlier::MayExist, "not started here");
        fresh.started("t2");
        assert_eq!(fresh.before("t2", Call::Upload), Earlier::CannotExist);
        assert_eq!(fresh.before("t2", Call::Upload), Earlier::MayExist, "a retried upload");
        assert_eq!(fresh.before("t2", Call::Create), Earlier::CannotExist);
        assert_eq!(fresh.before("t2", Call::Create), Earlier::MayExist, "a retried create");
        fresh.started("t3");
        fresh.submitted("t3");
        assert_eq!(fresh.before("t3", Call::Create), Earlier::MayExist);
    }
}
