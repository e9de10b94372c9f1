//! `If-Match` preconditions against a resource's etag (its version).

/// Whether `if_match` (an `If-Match` header value, if any) lets a change through to a resource
/// whose etag is `current`: absent, `*`, or a list naming it (quoted or not, weak or strong).
pub fn matches(if_match: Option<&str>, current: &str) -> bool {
    let Some(given) = if_match else {
        return true;
    };
    given.split(',').map(str::trim).any(|tag| {
        let tag = tag.trim_start_matches("W/").trim_matches('"');
        tag == "*" || tag == current
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_table() {
        let table = [
            (None, true),
            (Some("\"3\""), true),
            (Some("3"), true),
            (Some("W/\"3\""), true),
            (Some("\"1\", \"3\""), true),
            (Some("*"), true),
            (Some("\"2\""), false),
            (Some(""), false),
            (Some("\"33\""), false),
        ];
        for (given, want) in table {
            assert_eq!(matches(given, "3"), want, "{given:?}");
        }
    }
}
