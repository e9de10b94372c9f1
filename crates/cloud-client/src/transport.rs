//! One request on the wire: building the client, sending a call (auth, `If-Match`,
//! `Idempotency-Key`, timeouts), retrying it by the [`RetryPolicy`], and decoding answers.

use std::time::Duration;

use cloud_api::{ApiErrorBody, ErrorCode, IDEMPOTENCY_KEY_HEADER, Page, REQUEST_ID_HEADER};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::PageRequest;
use crate::error::{ApiFailure, Error, Result};
use crate::retry::RetryPolicy;

/// Builds a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    base_url: String,
    token: Option<String>,
    timeout: Duration,
    retry: RetryPolicy,
    user_agent: String,
}

impl ClientBuilder {
    /// Bearer token (when cloud-sim runs with a tokens file).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Bearer token, if any.
    pub fn token_opt(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    /// Per-attempt timeout (default 10 s); a long poll (`events` with a wait) gets its wait on top.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn user_agent(mut self, ua: impl Into<String>) -> Self {
        self.user_agent = ua.into();
        self
    }

    pub fn build(self) -> Result<Client> {
        let base = self.base_url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::BaseUrl { url: self.base_url });
        }
        let http = reqwest::Client::builder()
            .timeout(self.timeout)
            .user_agent(self.user_agent)
            .build()
            .map_err(Error::Build)?;
        Ok(Client {
            http,
            base,
            token: self.token,
            timeout: self.timeout,
            retry: self.retry,
        })
    }
}

/// A cloud API client. Cheap to clone; clones share connections.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    timeout: Duration,
    retry: RetryPolicy,
}

/// A request before it is sent: everything needed to send it again on retry.
pub(crate) struct Call<'a> {
    method: Method,
    path: String,
    /// The query string, encoded (empty for none).
    query: String,
    body: Option<Vec<u8>>,
    if_match: Option<&'a str>,
    idempotency_key: Option<String>,
    /// How long the server may hold the request before answering (a long poll): added to the
    /// client's timeout.
    held: Duration,
}

impl<'a> Call<'a> {
    pub(crate) fn new(method: Method, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            query: String::new(),
            body: None,
            if_match: None,
            idempotency_key: None,
            held: Duration::ZERO,
        }
    }

    /// A long poll the server may hold for up to `wait` before it answers.
    pub(crate) fn held_up_to(mut self, wait: Duration) -> Self {
        self.held = wait;
        self
    }

    pub(crate) fn json(mut self, body: &impl Serialize) -> Self {
        self.body = Some(serde_json::to_vec(body).expect("request types serialize"));
        self
    }

    /// The query parameters: one of cloud-api's list queries (absent fields are left out).
    pub(crate) fn query(mut self, q: &impl Serialize) -> Self {
        self.query = serde_urlencoded::to_string(q).expect("query types serialize");
        self
    }

    pub(crate) fn if_match(mut self, etag: Option<&'a str>) -> Self {
        self.if_match = etag;
        self
    }

    pub(crate) fn idempotent(mut self) -> Self {
        self.idempotency_key = Some(format!("{:032x}", rand::random::<u128>()));
        self
    }
}

/// Percent-encodes one path segment (IDs and names are safe already; this guards user input).
pub(crate) fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Client {
    /// A builder for a client of the API at `base_url` (e.g. `http://127.0.0.1:8080`).
    pub fn builder(base_url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            base_url: base_url.into(),
            token: None,
            timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            user_agent: concat!("simcloud-cloud-client/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }

    /// A client with default settings.
    pub fn new(base_url: impl Into<String>) -> Result<Self> {
        Self::builder(base_url).build()
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub(crate) async fn send_once(&self, call: &Call<'_>) -> Result<(StatusCode, Vec<u8>)> {
        let mut url = format!("{}{}", self.base, call.path);
        if !call.query.is_empty() {
            url = format!("{url}?{}", call.query);
        }
        let timeout = self.timeout + call.held;
        let mut req = self
            .http
            .request(call.method.clone(), &url)
            .timeout(timeout);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(e) = call.if_match {
            req = req.header(
                reqwest::header::IF_MATCH,
                format!("\"{}\"", e.trim_matches('"')),
            );
        }
        if let Some(k) = &call.idempotency_key {
            req = req.header(IDEMPOTENCY_KEY_HEADER, k);
        }
        if let Some(b) = &call.body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.clone());
        }
        let transport = |source: reqwest::Error| {
            if source.is_timeout() {
                Error::Timeout {
                    method: call.method.clone(),
                    path: call.path.clone(),
                    timeout,
                }
            } else {
                Error::Send {
                    method: call.method.clone(),
                    path: call.path.clone(),
                    source,
                }
            }
        };
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let request_id = resp
            .headers()
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let bytes = resp.bytes().await.map_err(transport)?.to_vec();
        if status.is_success() {
            return Ok((status, bytes));
        }
        let (code, message, request_id, field) =
            match serde_json::from_slice::<ApiErrorBody>(&bytes) {
                Ok(b) => (
                    b.error.code,
                    b.error.message,
                    b.error.request_id,
                    b.error.field,
                ),
                // Not our API's error body (a proxy, a wrong URL): a 404 there says nothing about
                // any resource, so it is never read as absence.
                Err(_) => (
                    match ErrorCode::from_http_status(status.as_u16()) {
                        ErrorCode::NotFound => ErrorCode::UnknownPath,
                        c => c,
                    },
                    String::from_utf8_lossy(&bytes).chars().take(200).collect(),
                    request_id,
                    None,
                ),
            };
        Err(Error::Api(Box::new(ApiFailure {
            method: call.method.clone(),
            path: call.path.clone(),
            status,
            code,
            message,
            request_id,
            field,
            retry_after,
        })))
    }

    pub(crate) async fn send(&self, call: Call<'_>) -> Result<(StatusCode, Vec<u8>)> {
        let mut attempt = 0;
        loop {
            match self.send_once(&call).await {
                Ok(r) => return Ok(r),
                Err(e) if e.is_retryable() && attempt < self.retry.max_retries => {
                    let wait = match e.retry_after() {
                        Some(after) if after > self.retry.max_retry_after => return Err(e),
                        Some(after) => after,
                        None => self.retry.backoff(attempt, rand::random::<f64>()),
                    };
                    tracing::debug!(method = %call.method, path = %call.path, attempt, ?wait, error = %e, "retrying cloud API call");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub(crate) async fn json<T: DeserializeOwned>(&self, call: Call<'_>) -> Result<T> {
        let method = call.method.clone();
        let path = call.path.clone();
        let (status, bytes) = self.send(call).await?;
        serde_json::from_slice(&bytes).map_err(|source| Error::Decode {
            method,
            path,
            status,
            source,
        })
    }

    /// `Ok(None)` on 404.
    pub(crate) async fn json_opt<T: DeserializeOwned>(&self, call: Call<'_>) -> Result<Option<T>> {
        match self.json(call).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.code() == Some(ErrorCode::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `Ok(false)` on 404.
    pub(crate) async fn delete(&self, call: Call<'_>) -> Result<bool> {
        match self.send(call).await {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some(ErrorCode::NotFound) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn all_pages<T, F, Fut>(&self, mut fetch: F) -> Result<Vec<T>>
    where
        F: FnMut(PageRequest) -> Fut,
        Fut: std::future::Future<Output = Result<Page<T>>>,
    {
        let mut out = Vec::new();
        let mut page = PageRequest {
            page_size: Some(cloud_api::MAX_PAGE_SIZE),
            page_token: None,
        };
        loop {
            let p = fetch(page.clone()).await?;
            out.extend(p.items);
            match p.next_page_token {
                Some(t) if !t.is_empty() => page.page_token = Some(t),
                _ => return Ok(out),
            }
        }
    }
}
