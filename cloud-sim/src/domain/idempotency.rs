//! Idempotency keys (`Idempotency-Key` on POST): what a request with a key already seen gets.
//! The store reads what is recorded under the key and writes what [`decide`] says; the rule lives
//! here, tested without a database.

/// How long a claimed key may stay without a response before another request may take it over
/// (the first one is assumed to have died with its server).
pub const CLAIM_TIMEOUT_MS: i64 = 60_000;
/// How long keys are kept.
pub const RETENTION_MS: i64 = 24 * 3600 * 1000;

/// Whether `key` is a well-formed `Idempotency-Key`: 1 to [`cloud_api::MAX_IDEMPOTENCY_KEY`]
/// visible ASCII characters (`!` to `~`), the rule [`cloud_api::IDEMPOTENCY_KEY_PATTERN`] states.
pub fn is_valid_key(key: &[u8]) -> bool {
    (1..=cloud_api::MAX_IDEMPOTENCY_KEY).contains(&key.len())
        && key.iter().all(|b| (b'!'..=b'~').contains(b))
}

/// The request a key was first used with, and its response once it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
    /// `(status, body)` of the first request's successful response; `None` while it runs.
    pub response: Option<(u16, Vec<u8>)>,
    /// When the key was claimed (ms).
    pub claimed_at: i64,
}

/// What the store must do, and what the request gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// First use: record the claim and run the request.
    Claim,
    /// The first request died without answering: claim it again (now) and run this one.
    TakeOver,
    /// Same request seen before and answered: send this response again.
    Replay { status: u16, body: Vec<u8> },
    /// The key was used with a different method, path or body.
    Mismatch,
    /// The first request with this key is still running.
    InFlight,
}

/// The rule for a request (`method`, `path`, `body`) arriving at `now` with a key under which
/// `recorded` is stored.
pub fn decide(
    recorded: Option<&Recorded>,
    method: &str,
    path: &str,
    body: &[u8],
    now: i64,
) -> Decision {
    let Some(r) = recorded else {
        return Decision::Claim;
    };
    if r.method != method || r.path != path || r.body != body {
        return Decision::Mismatch;
    }
    match &r.response {
        Some((status, body)) => Decision::Replay {
            status: *status,
            body: body.clone(),
        },
        None if now - r.claimed_at > CLAIM_TIMEOUT_MS => Decision::TakeOver,
        None => Decision::InFlight,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_1_to_255_visible_ascii_characters() {
        let long = "k".repeat(cloud_api::MAX_IDEMPOTENCY_KEY);
        for (key, valid) in [
            ("0f3c2a9b7d1e4c55", true),
            ("!~", true),
            (long.as_str(), true),
            (&format!("{long}k"), false),
            ("", false),
            ("a b", false),
            ("a\tb", false),
            ("caf\u{e9}", false),
            ("\u{7f}", false),
        ] {
            assert_eq!(is_valid_key(key.as_bytes()), valid, "{key:?}");
        }
        // The document's pattern states the same bound.
        assert_eq!(
            cloud_api::IDEMPOTENCY_KEY_PATTERN,
            format!("^[!-~]{{1,{}}}$", cloud_api::MAX_IDEMPOTENCY_KEY)
        );
    }

    fn rec(response: Option<(u16, &str)>, claimed_at: i64) -> Recorded {
        Recorded {
            method: "POST".into(),
            path: "/v1/instances".into(),
            body: b"{\"name\":\"a\"}".to_vec(),
            response: response.map(|(s, b)| (s, b.as_bytes().to_vec())),
            claimed_at,
        }
    }

    #[test]
    fn decisions() {
        let body = b"{\"name\":\"a\"}";
        let now = 100_000;
        let answered = rec(Some((201, "{}")), 0);
        let running = rec(None, now - 1_000);
        let abandoned = rec(None, now - CLAIM_TIMEOUT_MS - 1);
        let at_timeout = rec(None, now - CLAIM_TIMEOUT_MS);
        type Case<'a> = (
            &'a str,
            Option<&'a Recorded>,
            &'a str,
            &'a str,
            &'a [u8],
            Decision,
        );
        let table: [Case<'_>; 8] = [
            (
                "new key",
                None,
                "POST",
                "/v1/instances",
                body,
                Decision::Claim,
            ),
            (
                "answered: replay",
                Some(&answered),
                "POST",
                "/v1/instances",
                body,
                Decision::Replay {
                    status: 201,
                    body: b"{}".to_vec(),
                },
            ),
            (
                "running",
                Some(&running),
                "POST",
                "/v1/instances",
                body,
                Decision::InFlight,
            ),
            (
                "abandoned",
                Some(&abandoned),
                "POST",
                "/v1/instances",
                body,
                Decision::TakeOver,
            ),
            (
                "timeout is exclusive",
                Some(&at_timeout),
                "POST",
                "/v1/instances",
                body,
                Decision::InFlight,
            ),
            (
                "other body",
                Some(&answered),
                "POST",
                "/v1/instances",
                b"{}",
                Decision::Mismatch,
            ),
            (
                "other path",
                Some(&answered),
                "POST",
                "/v1/load-balancers",
                body,
                Decision::Mismatch,
            ),
            (
                "mismatch beats in-flight",
                Some(&running),
                "PATCH",
                "/v1/instances",
                body,
                Decision::Mismatch,
            ),
        ];
        for (what, recorded, method, path, b, want) in table {
            assert_eq!(decide(recorded, method, path, b, now), want, "{what}");
        }
    }
}
