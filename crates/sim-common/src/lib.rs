//! Helpers every simcloud binary needs the same way: Go-style duration flags, logging set-up,
//! SIGINT/SIGTERM handling, error chains, supervised tasks, and a deadline-bounded wait for tests.

use std::time::Duration;

pub mod supervised;
pub use supervised::Supervised;

/// Parses durations as Go's `time.ParseDuration` does (the syntax of Kubernetes flags and
/// manifests): `0`, or a sequence of decimal numbers, each with an optional fraction and a unit
/// (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`): `300ms`, `1.5s`, `1m30s`, `2h45m`. Negative durations
/// and anything over Go's limit (2^63 - 1 ns, about 292 years) are refused, never wrapped.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    const NANOS_PER_SEC: u128 = 1_000_000_000;
    // Go's limit: a Duration is an int64 of nanoseconds.
    const MAX_NANOS: u128 = i64::MAX as u128;
    let bad =
        |why: &str| format!("{s:?} is not a duration: {why} (e.g. 0, 500ms, 1.5s, 1m30s, 2h)");
    let mut rest = s.trim();
    if let Some(r) = rest.strip_prefix('+') {
        rest = r;
    }
    if rest.starts_with('-') {
        return Err(bad("it is negative"));
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(bad("it is empty"));
    }
    let digits = |r: &str| r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
    let too_large = || bad("it is longer than about 292 years");
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let (whole, r) = rest.split_at(digits(rest));
        let (fraction, r) = match r.strip_prefix('.') {
            Some(r) => r.split_at(digits(r)),
            None => ("", r),
        };
        if whole.is_empty() && fraction.is_empty() {
            return Err(bad("a number is missing"));
        }
        let unit_len = r
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(r.len());
        let (unit, r) = r.split_at(unit_len);
        let per: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => NANOS_PER_SEC,
            "m" => 60 * NANOS_PER_SEC,
            "h" => 3_600 * NANOS_PER_SEC,
            "" => return Err(bad("a unit is missing")),
            other => return Err(bad(&format!("{other:?} is not a unit"))),
        };
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| too_large())?
        };
        let mut nanos = whole.checked_mul(per).ok_or_else(too_large)?;
        // Digits past the 20th cannot change a result counted in nanoseconds of at most an hour.
        let fraction = &fraction[..fraction.len().min(20)];
        if !fraction.is_empty() {
            let f: u128 = fraction.parse().expect("ASCII digits");
            nanos += f * per / 10u128.pow(fraction.len() as u32);
        }
        total = total.checked_add(nanos).ok_or_else(too_large)?;
        if total > MAX_NANOS {
            return Err(too_large());
        }
        rest = r;
    }
    let secs = u64::try_from(total / NANOS_PER_SEC).map_err(|_| too_large())?;
    Ok(Duration::new(secs, (total % NANOS_PER_SEC) as u32))
}

/// Lowercase hex of `bytes` (opaque, URL-safe tokens: page and continue tokens).
pub fn hex_encode(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

/// The bytes of a hex string, or `None` for anything else (odd length, a non-hex character,
/// a multi-byte one included: clients send tokens, so nothing here may panic).
pub fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    s.as_bytes()
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

/// Log output format of every binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines for a terminal.
    Plain,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Installs the global logger (to stderr): `filter` in `tracing` syntax.
pub fn init_logging(filter: &str, format: LogFormat) -> Result<(), String> {
    let f = tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|e| format!("invalid log filter {filter:?}: {e}"))?;
    // Colours only on a terminal: a log file or collector gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(f)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Plain => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| format!("cannot install logger: {e}"))
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// A benchmark's positional numbers (`cargo bench -- 5000 32`), skipping the flags cargo passes
/// (`--bench`) and anything else that is not a number.
pub fn numeric_args<T: std::str::FromStr>() -> Vec<T> {
    std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect()
}

/// The error and all its sources, `: `-separated.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        s.push_str(": ");
        s.push_str(&src.to_string());
        cur = src.source();
    }
    s
}

/// Polls `check` every 20 ms until it returns `Some`, panicking after `timeout` (for tests).
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends `signal` (a `kill` name such as `TERM` or `INT`) to `child` and asserts that it exits
/// successfully within 30 s (for tests of the binaries' shutdown).
pub async fn signal_and_expect_clean_exit(child: &mut tokio::process::Child, signal: &str) {
    let pid = child.id().expect("child still running").to_string();
    let sent = tokio::process::Command::new("kill")
        .args([format!("-{signal}"), pid])
        .status()
        .await
        .expect("run kill");
    assert!(sent.success(), "kill -{signal} failed: {sent:?}");
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap_or_else(|_| panic!("no exit within 30 s of SIG{signal}"))
        .expect("wait for child");
    assert!(status.success(), "exit after SIG{signal}: {status:?}");
}

/// A token bucket: `rate` tokens a second, at most `burst` saved up (cloud-sim's throttle faults,
/// the ccm's `--kube-api-qps`/`--kube-api-burst`). Pure: the caller passes the clock.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: std::time::Instant,
}

impl TokenBucket {
    /// A full bucket. A rate of zero or less never refills.
    pub fn new(rate: f64, burst: u32, now: std::time::Instant) -> Self {
        Self {
            rate: rate.max(f64::MIN_POSITIVE),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last: now,
        }
    }

    /// Takes a token, or says how long until one is available.
    pub fn try_take(&mut self, now: std::time::Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_what_is_not_hex() {
        for bytes in [&b""[..], b"p1:42:ff", &[0, 255, 16]] {
            assert_eq!(hex_decode(&hex_encode(bytes)).as_deref(), Some(bytes));
        }
        for bad in ["0", "zz", "xænqv", "æa", "0g"] {
            assert_eq!(hex_decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn durations_parse_as_go_parses_them() {
        let nanos = |n: u64| Duration::from_nanos(n);
        let table = [
            ("0", nanos(0)),
            ("+0", nanos(0)),
            ("0s", nanos(0)),
            ("250ms", Duration::from_millis(250)),
            ("2s", Duration::from_secs(2)),
            ("5m", Duration::from_secs(300)),
            ("1h", Duration::from_secs(3_600)),
            ("1m30s", Duration::from_secs(90)),
            ("2h45m", Duration::from_secs(9_900)),
            // Fractions, as upstream manifests and Go write them.
            ("1.5s", Duration::from_millis(1_500)),
            (".5s", Duration::from_millis(500)),
            ("1.s", Duration::from_secs(1)),
            ("0.25h", Duration::from_secs(900)),
            ("1.000000001s", nanos(1_000_000_001)),
            ("1.0000000019s", nanos(1_000_000_001)),
            ("100ns", nanos(100)),
            ("3us", nanos(3_000)),
            ("3µs", nanos(3_000)),
            ("1h1m1s1ms1us1ns", nanos(3_661_001_001_001)),
            // Go's largest.
            ("9223372036854775807ns", nanos(i64::MAX as u64)),
            ("2562047h47m16.854775807s", nanos(i64::MAX as u64)),
        ];
        for (s, want) in table {
            assert_eq!(parse_duration(s), Ok(want), "{s}");
        }
    }

    #[test]
    fn bad_durations_say_why_and_never_wrap() {
        let table = [
            ("", "empty"),
            ("5", "unit is missing"),
            ("1.5", "unit is missing"),
            ("s", "number is missing"),
            (".s", "number is missing"),
            ("1d", "\"d\" is not a unit"),
            ("5s3", "unit is missing"),
            ("-1s", "negative"),
            ("9223372036854775808ns", "292 years"),
            ("2562048h", "292 years"),
            ("18446744073709551616s", "292 years"),
            ("99999999999999999999999999999999999999999h", "292 years"),
            ("9000000000000000000h9000000000000000000h", "292 years"),
        ];
        for (s, why) in table {
            let e = parse_duration(s).unwrap_err();
            assert!(e.contains(why), "{s}: {e}");
        }
    }

    #[test]
    fn chains_list_every_cause() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("reading config")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Outer(std::io::Error::other("disk on fire"));
        assert_eq!(error_chain(&e), "reading config: disk on fire");
    }

    #[test]
    fn buckets_refill_at_their_rate_up_to_the_burst() {
        let t0 = std::time::Instant::now();
        let mut b = TokenBucket::new(10.0, 2, t0);
        assert!(b.try_take(t0).is_ok());
        assert!(b.try_take(t0).is_ok());
        assert_eq!(b.try_take(t0), Err(Duration::from_millis(100)));
        assert!(b.try_take(t0 + Duration::from_millis(100)).is_ok());
        // Part of a token: the wait is for the rest.
        let wait = b.try_take(t0 + Duration::from_millis(150)).unwrap_err();
        assert!((wait.as_secs_f64() - 0.05).abs() < 1e-9, "{wait:?}");
        // Never more than the burst, however long it rests.
        let later = t0 + Duration::from_secs(60);
        assert!(b.try_take(later).is_ok());
        assert!(b.try_take(later).is_ok());
        assert!(b.try_take(later).is_err());
    }
}

/// A reflector store following every object `api` and `config` select, fed by a task that
/// rings `changed` (when given) after every watch event; the task ends when aborted.
#[cfg(feature = "kube")]
pub fn reflect<K>(
    api: kube::Api<K>,
    config: kube::runtime::watcher::Config,
    changed: Option<std::sync::Arc<tokio::sync::Notify>>,
) -> (
    kube::runtime::reflector::Store<K>,
    tokio::task::JoinHandle<()>,
)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    reflect_trimmed(api, config, changed, |_| {})
}

/// [`reflect`], keeping only what `trim` leaves of each object: a store of thousands of Nodes
/// that only needs their names and specs need not hold their status and managed fields.
#[cfg(feature = "kube")]
pub fn reflect_trimmed<K>(
    api: kube::Api<K>,
    config: kube::runtime::watcher::Config,
    changed: Option<std::sync::Arc<tokio::sync::Notify>>,
    trim: impl FnMut(&mut K) + Send + 'static,
) -> (
    kube::runtime::reflector::Store<K>,
    tokio::task::JoinHandle<()>,
)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    use futures_util::StreamExt as _;
    use kube::runtime::WatchStreamExt as _;
    let (store, writer) = kube::runtime::reflector::store();
    let task = tokio::spawn(async move {
        let mut s = kube::runtime::watcher(api, config)
            .default_backoff()
            .modify(trim)
            .reflect(writer)
            .boxed();
        while let Some(ev) = s.next().await {
            if let Err(e) = ev {
                tracing::debug!(error = %e, "watch interrupted; it resumes");
            }
            if let Some(c) = &changed {
                c.notify_one();
            }
        }
    });
    (store, task)
}

/// Splits `n` over `weights` in proportion, whole numbers summing to `n`: each gets the floor
/// of its exact share, and the largest remainders (first listed on a tie) get one more. Zero
/// weights get nothing; all-zero weights give an empty split.
pub fn split_by_weight<K: Clone>(n: u32, weights: &[(K, u32)]) -> Vec<(K, u32)> {
    let total: u64 = weights.iter().map(|(_, w)| u64::from(*w)).sum();
    if total == 0 {
        return Vec::new();
    }
    let mut out: Vec<(K, u32, u64)> = weights
        .iter()
        .map(|(k, w)| {
            let exact = u64::from(n) * u64::from(*w);
            let share = u32::try_from(exact / total).unwrap_or(u32::MAX);
            (k.clone(), share, exact % total)
        })
        .collect();
    let mut left = n - out.iter().map(|(_, c, _)| c).sum::<u32>();
    let mut order: Vec<usize> = (0..out.len()).collect();
    order.sort_by(|a, b| out[*b].2.cmp(&out[*a].2));
    for i in order {
        if left == 0 {
            break;
        }
        out[i].1 += 1;
        left -= 1;
    }
    out.into_iter().map(|(k, c, _)| (k, c)).collect()
}

#[cfg(test)]
mod split_tests {
    use super::split_by_weight;

    #[test]
    fn splits_sum_to_n_with_largest_remainders() {
        let cases: &[(u32, &[u32], &[u32])] = &[
            (10, &[1, 1, 1], &[4, 3, 3]),
            (10, &[70, 15, 15], &[7, 2, 1]),
            (9, &[20, 16, 14], &[4, 3, 2]),
            (0, &[1, 2], &[0, 0]),
            (5, &[0, 1], &[0, 5]),
        ];
        for (n, w, want) in cases {
            let weights: Vec<(usize, u32)> = w.iter().copied().enumerate().collect();
            let got: Vec<u32> = split_by_weight(*n, &weights)
                .into_iter()
                .map(|(_, c)| c)
                .collect();
            assert_eq!(&got, want, "n={n} weights={w:?}");
        }
        assert!(split_by_weight::<u8>(3, &[(0, 0)]).is_empty());
    }
}
