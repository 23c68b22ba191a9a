//! Cursor pagination shared by `find_batch` and `find_file`.

use std::future::Future;

use super::error::GatewayError;
use super::types::Page;

/// Fetches pages (`fetch(after)`) until an item matches `pred`, the list ends, or `max_pages`
/// pages were read. The cursor is the last item's id, as the OpenAI SDK pages.
pub(super) async fn find_in_pages<T, F, Fut>(
    mut fetch: F,
    id_of: impl Fn(&T) -> &str,
    pred: impl Fn(&T) -> bool,
    max_pages: u32,
) -> Result<Option<T>, GatewayError>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<Page<T>, GatewayError>>,
{
    let mut after: Option<String> = None;
    for _ in 0..max_pages {
        let page = fetch(after.clone()).await?;
        let next = page.data.last().map(|item| id_of(item).to_owned()).or(page.last_id);
        if let Some(found) = page.data.into_iter().find(|item| pred(item)) {
            return Ok(Some(found));
        }
        // A gateway that repeats its cursor would otherwise be walked until max_pages.
        match next {
            Some(cursor) if page.has_more && after.as_ref() != Some(&cursor) => after = Some(cursor),
            _ => return Ok(None),
        }
    }
    Ok(None)
}
