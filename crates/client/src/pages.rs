//! Paged List calls, read to the end.

use std::future::Future;

/// Page size asked of every List call.
pub(crate) const PAGE_SIZE: i32 = 100;

/// Every item of a paged List call. `page(token)` fetches the page at
/// `token` (empty for the first) and returns its items and the next token,
/// which is empty after the last page.
pub(crate) async fn all_pages<T, Fut>(mut page: impl FnMut(String) -> Fut) -> anyhow::Result<Vec<T>>
where
    Fut: Future<Output = anyhow::Result<(Vec<T>, String)>>,
{
    let mut items = Vec::new();
    let mut token = String::new();
    loop {
        let (batch, next) = page(token).await?;
        items.extend(batch);
        if next.is_empty() {
            return Ok(items);
        }
        token = next;
    }
}
