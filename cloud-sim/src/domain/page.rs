//! Opaque page tokens.
//!
//! A token records the sort key of the last item returned and a fingerprint of the list's filters,
//! so a token cannot be replayed against a different query (AIP-158). It is hex so it is URL-safe
//! without escaping; it is opaque to clients, not secret.

const VERSION: &str = "p1";

/// Where the next page starts, and which query it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageToken {
    pub after: i64,
    pub fingerprint: u64,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("page_token is not a token this server issued")]
    Malformed,
    #[error("page_token was issued for a list with different filters")]
    FilterMismatch,
}

impl PageToken {
    pub fn encode(&self) -> String {
        let plain = format!("{VERSION}:{}:{:x}", self.after, self.fingerprint);
        sim_common::hex_encode(plain.as_bytes())
    }

    /// Decodes `token` and checks it belongs to the query with `fingerprint`.
    pub fn decode(token: &str, fingerprint: u64) -> Result<Self, TokenError> {
        if token.len() > 128 {
            return Err(TokenError::Malformed);
        }
        let bytes = sim_common::hex_decode(token).ok_or(TokenError::Malformed)?;
        let plain = String::from_utf8(bytes).map_err(|_| TokenError::Malformed)?;
        let mut parts = plain.split(':');
        let (Some(VERSION), Some(after), Some(fp), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let after = after.parse().map_err(|_| TokenError::Malformed)?;
        let fp = u64::from_str_radix(fp, 16).map_err(|_| TokenError::Malformed)?;
        if fp != fingerprint {
            return Err(TokenError::FilterMismatch);
        }
        Ok(Self { after, fingerprint })
    }
}

/// A stable 64-bit FNV-1a hash of a list's filter values (`None` and `Some("")` differ).
pub fn fingerprint(filters: &[Option<&str>]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: u8| {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    };
    for f in filters {
        match f {
            None => eat(0),
            Some(s) => {
                eat(1);
                s.bytes().for_each(&mut eat);
                eat(0xff);
            }
        }
    }
    h
}

/// Clamps a requested page size: 0 or absent means the default, larger values are coerced down.
pub fn page_size(requested: Option<u32>) -> u32 {
    match requested {
        None | Some(0) => cloud_api::DEFAULT_PAGE_SIZE,
        Some(n) => n.min(cloud_api::MAX_PAGE_SIZE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        let fp = fingerprint(&[Some("zone-a"), None]);
        for after in [0, 1, 4999, i64::MAX] {
            let t = PageToken {
                after,
                fingerprint: fp,
            };
            let s = t.encode();
            assert!(s.bytes().all(|b| b.is_ascii_hexdigit()));
            assert_eq!(PageToken::decode(&s, fp), Ok(t));
        }
    }

    /// Whatever a client sends, decoding answers; it never panics (schemathesis once sent
    /// `xænqv`, whose two-byte slices fell inside the `æ`).
    #[test]
    fn foreign_tokens_are_malformed_never_a_panic() {
        let fp = fingerprint(&[]);
        let good = PageToken {
            after: 1,
            fingerprint: fp,
        }
        .encode();
        let odd = format!("{good}0");
        let long = "00".repeat(65);
        for bad in [
            "",
            "xænqv",
            "æ",
            "zz",
            "0",
            odd.as_str(),
            long.as_str(),
            "[Filtered]",
            "7031",
        ] {
            assert_eq!(
                PageToken::decode(bad, fp),
                Err(TokenError::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn tokens_are_bound_to_their_filters() {
        let a = fingerprint(&[Some("zone-a"), None]);
        let b = fingerprint(&[Some("zone-b"), None]);
        let c = fingerprint(&[None, Some("zone-a")]);
        let d = fingerprint(&[Some(""), None]);
        let e = fingerprint(&[None, None]);
        let all = [a, b, c, d, e];
        for (i, x) in all.iter().enumerate() {
            for y in &all[i + 1..] {
                assert_ne!(x, y);
            }
        }
        let t = PageToken {
            after: 7,
            fingerprint: a,
        }
        .encode();
        assert_eq!(PageToken::decode(&t, b), Err(TokenError::FilterMismatch));
    }

    #[test]
    fn garbage_tokens_are_malformed() {
        for bad in ["", "zz", "abc", "7031", &"00".repeat(100)] {
            assert_eq!(
                PageToken::decode(bad, 0),
                Err(TokenError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn page_size_defaults_and_caps() {
        assert_eq!(page_size(None), 50);
        assert_eq!(page_size(Some(0)), 50);
        assert_eq!(page_size(Some(7)), 7);
        assert_eq!(page_size(Some(500)), 500);
        assert_eq!(page_size(Some(100_000)), 500);
    }
}
