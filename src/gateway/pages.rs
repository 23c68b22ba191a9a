//! Cursor pagination shared by `find_batch` and `find_file`: the walk that finds what an
//! attempt created before a crash, so it is adopted instead of created twice.
//!
//! The lists are newest first, so everything the attempt created lies between the head of
//! the list and the attempt's start. The walk goes that far, however many pages that takes
//! on a busy key, and no further. It never answers "not there" without having looked there:
//! a gateway that repeats its cursor, or a list longer than [`MAX_EXAMINED`] objects without
//! reaching the start, is an error (creating a second batch would bill twice).

use std::collections::HashSet;
use std::future::Future;

use super::error::GatewayError;
use super::types::Page;

/// Most objects one search examines before it gives up with [`FindError::GaveUp`].
pub const MAX_EXAMINED: usize = 100_000;

/// Allowance for the gateway's clock running behind ours: objects stamped up to this many
/// seconds before the attempt's start are still examined.
pub const CLOCK_SKEW_SECS: i64 = 600;

/// Why a search for an attempt's file or batch has no answer.
#[derive(Debug, thiserror::Error)]
pub enum FindError {
    /// A page could not be read.
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    /// The walk stopped before it reached the attempt's start, so the object may exist.
    #[error(
        "{operation}: gave up after {examined} objects: {why}; not creating another one, \
         since one may exist further down the list"
    )]
    GaveUp {
        /// e.g. "list batches".
        operation: &'static str,
        /// Objects examined.
        examined: usize,
        /// What stopped the walk.
        why: String,
    },
}

/// Fetches pages (`fetch(after)`, newest first) until an item matches `pred` (returned), the
/// list ends, or a page reaches past `since` (unix seconds: items created before it, less
/// [`CLOCK_SKEW_SECS`], cannot be the one looked for). Without `since` the whole list is
/// walked. The cursor is the last item's id, as the OpenAI SDK pages. Items without a
/// `created_at` never end the walk.
pub(super) async fn find_in_pages<T, F, Fut>(
    operation: &'static str,
    mut fetch: F,
    id_of: impl Fn(&T) -> &str,
    created_at: impl Fn(&T) -> Option<i64>,
    pred: impl Fn(&T) -> bool,
    since: Option<i64>,
    max_examined: usize,
) -> Result<Option<T>, FindError>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<Page<T>, GatewayError>>,
{
    let cutoff = since.map(|s| s.saturating_sub(CLOCK_SKEW_SECS));
    let gave_up = |examined, why: String| FindError::GaveUp {
        operation,
        examined,
        why,
    };
    let mut after: Option<String> = None;
    let mut cursors = HashSet::new();
    let mut examined = 0usize;
    loop {
        let page = fetch(after.clone()).await?;
        let next = page.data.last().map(|item| id_of(item).to_owned()).or(page.last_id);
        let mut passed_start = false;
        for item in page.data {
            if pred(&item) {
                return Ok(Some(item));
            }
            examined += 1;
            passed_start |= cutoff.is_some_and(|cutoff| created_at(&item).is_some_and(|at| at < cutoff));
        }
        if passed_start || !page.has_more {
            return Ok(None);
        }
        let Some(cursor) = next else {
            return Err(gave_up(
                examined,
                "the gateway said more follow but gave no cursor".into(),
            ));
        };
        if !cursors.insert(cursor.clone()) {
            return Err(gave_up(
                examined,
                format!("the gateway answered cursor {cursor} a second time"),
            ));
        }
        if examined >= max_examined {
            let why = match since {
                Some(since) => format!("the list reaches no further back than the attempt's start ({since})"),
                None => "the attempt records no start time to stop at".to_string(),
            };
            return Err(gave_up(examined, why));
        }
        after = Some(cursor);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// `(id, created_at)` items, newest first, served `per_page` at a time; records the cursors.
    struct Fake {
        items: Vec<(String, i64)>,
        per_page: usize,
        cursors: Mutex<Vec<Option<String>>>,
        /// Serve the first page whatever the cursor (a gateway ignoring `after`).
        ignore_after: bool,
    }

    impl Fake {
        fn new(count: usize, newest: i64) -> Self {
            let items = (0..count).map(|i| (format!("o-{i:05}"), newest - i as i64)).collect();
            Fake {
                items,
                per_page: 100,
                cursors: Mutex::default(),
                ignore_after: false,
            }
        }

        fn page(&self, after: Option<String>) -> Page<(String, i64)> {
            self.cursors.lock().unwrap().push(after.clone());
            let start = match after.filter(|_| !self.ignore_after) {
                Some(after) => self.items.iter().position(|(id, _)| *id == after).unwrap() + 1,
                None => 0,
            };
            let end = (start + self.per_page).min(self.items.len());
            Page {
                data: self.items[start..end].to_vec(),
                has_more: end < self.items.len(),
                first_id: None,
                last_id: None,
            }
        }

        async fn find(&self, wanted: &str, since: Option<i64>, cap: usize) -> Result<Option<String>, FindError> {
            let found = find_in_pages(
                "list things",
                |after| std::future::ready(Ok(self.page(after))),
                |item: &(String, i64)| item.0.as_str(),
                |item| Some(item.1),
                |item| item.0 == wanted,
                since,
                cap,
            )
            .await?;
            Ok(found.map(|(id, _)| id))
        }

        fn pages_read(&self) -> usize {
            std::mem::take(&mut *self.cursors.lock().unwrap()).len()
        }
    }

    #[tokio::test]
    async fn walks_past_any_number_of_newer_objects_to_the_attempts_own() {
        // 2,000 objects, one a second; the attempt's object is the 1,500th newest.
        let fake = Fake::new(2_000, 1_000_000);
        let found = fake
            .find("o-01500", Some(1_000_000 - 1_500), MAX_EXAMINED)
            .await
            .unwrap();
        assert_eq!(found.as_deref(), Some("o-01500"));
        assert_eq!(fake.pages_read(), 16);
    }

    #[tokio::test]
    async fn stops_at_the_first_page_past_the_start_less_the_clock_skew() {
        let fake = Fake::new(5_000, 1_000_000);
        // Nothing matches: the walk ends once a page holds an object older than start - skew.
        let start = 1_000_000 - 1_000;
        let found = fake.find("missing", Some(start), MAX_EXAMINED).await.unwrap();
        assert_eq!(found, None);
        let past = (1_000 + CLOCK_SKEW_SECS as usize) / 100 + 1;
        assert_eq!(fake.pages_read(), past);
        // Without a start time, the whole list.
        assert_eq!(fake.find("missing", None, MAX_EXAMINED).await.unwrap(), None);
        assert_eq!(fake.pages_read(), 50);
    }

    #[tokio::test]
    async fn a_walk_that_cannot_reach_the_start_is_an_error_not_a_miss() {
        let fake = Fake::new(1_000, 1_000_000);
        let err = fake.find("missing", Some(0), 300).await.unwrap_err().to_string();
        assert!(err.contains("list things: gave up after 300 objects"), "{err}");
        assert!(err.contains("not creating another one"), "{err}");
        assert_eq!(fake.pages_read(), 3);

        let mut repeating = Fake::new(1_000, 1_000_000);
        repeating.ignore_after = true;
        let err = repeating
            .find("missing", Some(0), MAX_EXAMINED)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("answered cursor o-00099 a second time"), "{err}");
        assert_eq!(repeating.pages_read(), 2);
    }
}
