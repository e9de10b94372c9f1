//! The list envelope.

use serde::{Deserialize, Serialize};

/// One page of a list. An absent `next_page_token` means the end; a page may be short (even
/// empty) and still carry a token, so clients loop until it is absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Page<T> {
    pub items: Vec<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}
