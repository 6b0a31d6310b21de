//! Cursor pagination: `?limit=&after=`, answered with `{items, nextCursor}`.
//!
//! The cursor is opaque to clients; modules use the last item's sort key. Keyset pages stay
//! correct while rows are inserted and cost the same at any depth, unlike offsets.

use serde::Serialize;
use utoipa::ToSchema;

use crate::ApiError;

pub const DEFAULT_LIMIT: u64 = 20;
pub const MAX_LIMIT: u64 = 100;

/// One page of a list.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `after` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows: the extra row only tells that more follow.
    pub fn from_rows<R>(mut rows: Vec<R>, limit: u64, cursor: impl Fn(&R) -> String, item: impl Fn(R) -> T) -> Self {
        let more = rows.len() as u64 > limit;
        rows.truncate(limit as usize);
        let next_cursor = if more { rows.last().map(&cursor) } else { None };
        Self { items: rows.into_iter().map(item).collect(), next_cursor }
    }
}

/// The page size a client asked for: 1 to 100, 20 when absent.
pub fn page_limit(limit: Option<u64>) -> Result<u64, ApiError> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(n @ 1..=MAX_LIMIT) => Ok(n),
        Some(_) => Err(ApiError::invalid("limit", format!("must be between 1 and {MAX_LIMIT}"))),
    }
}

/// The `after` cursor of a list keyed by UUID ids.
pub fn after_cursor<T: From<uuid::Uuid>>(after: Option<&str>) -> Result<Option<T>, ApiError> {
    after
        .map(|c| uuid::Uuid::parse_str(c).map(T::from).map_err(|_| ApiError::invalid("after", "is not a cursor")))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_page_has_a_cursor_and_the_last_has_none() {
        let page = Page::from_rows(vec![1, 2, 3], 2, |n| n.to_string(), |n| n * 10);
        assert_eq!(page.items, vec![10, 20]);
        assert_eq!(page.next_cursor.as_deref(), Some("2"));
        let last = Page::from_rows(vec![1, 2], 2, |n| n.to_string(), |n| n);
        assert_eq!(last.next_cursor, None);
    }

    #[test]
    fn limits_outside_one_to_a_hundred_are_refused() {
        assert_eq!(page_limit(None).ok(), Some(20));
        assert_eq!(page_limit(Some(100)).ok(), Some(100));
        assert!(page_limit(Some(0)).is_err());
        assert!(page_limit(Some(101)).is_err());
    }
}
