//! Bounded waits: poll a check until it holds, or panic saying what never happened and what
//! was seen last. Shared with benches/ (by path), like apiserver.rs and s3.rs that use it.
#![allow(dead_code)]

use std::fmt::Debug;
use std::time::{Duration, Instant};

/// How often [`wait_until`] looks again.
const POLL: Duration = Duration::from_millis(50);

/// Waits (bounded by `within`) until `check` gives `Ok`, and returns what it holds. `what` is
/// the failure ("the finalizer was never released"), shown with `check`'s last `Err` (what it saw).
pub async fn wait_until<T, E: Debug>(what: &str, within: Duration, mut check: impl AsyncFnMut() -> Result<T, E>) -> T {
    let deadline = Instant::now() + within;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(seen) if Instant::now() > deadline => panic!("{what} within {within:?}; last seen: {seen:?}"),
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// [`wait_until`] for plain `#[test]`s and helpers that do not await.
pub fn wait_until_blocking<T, E: Debug>(what: &str, within: Duration, mut check: impl FnMut() -> Result<T, E>) -> T {
    let deadline = Instant::now() + within;
    loop {
        match check() {
            Ok(value) => return value,
            Err(seen) if Instant::now() > deadline => panic!("{what} within {within:?}; last seen: {seen:?}"),
            Err(_) => std::thread::sleep(POLL),
        }
    }
}
