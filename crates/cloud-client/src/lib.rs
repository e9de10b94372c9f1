//! Async client for the simcloud cloud API.
//!
//! Layout: [`Client`] has one method per API call; [`Error`] carries the API's error code so
//! callers match on codes, never on messages. Behaviour callers can rely on:
//!
//! - gets return `Ok(None)` for 404, and deletes return `Ok(false)` when there was nothing to
//!   delete, because absence is a value, not a failure;
//! - creates send an `Idempotency-Key` (the same one on every retry of one call), so retrying a
//!   create never makes two resources;
//! - 429, 5xx, timeouts and connection failures are retried a bounded number of times with
//!   jittered exponential backoff, waiting exactly `Retry-After` when the server sends it;
//! - `list_all_*` walk every page.

use std::time::Duration;

use cloud_api::{
    ApiErrorBody, CreateFaultRequest, CreateInstanceRequest, CreateLoadBalancerRequest,
    CreateRouteRequest, ErrorCode, EventPage, FaultRule, IDEMPOTENCY_KEY_HEADER, Instance,
    InstanceState, InstanceType, LoadBalancer, Page, REQUEST_ID_HEADER, Region, Route, RouteTable,
    SetZoneStateRequest, Tags, TrafficReport, UpdateInstanceRequest, UpdateLoadBalancerRequest,
    Zone, ZoneState,
};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A failed API call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("invalid base URL {url:?}")]
    BaseUrl { url: String },
    #[error("cannot build HTTP client")]
    Build(#[source] reqwest::Error),
    #[error("{method} {path}: request failed")]
    Send {
        method: Method,
        path: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{method} {path}: no response within {timeout:?}")]
    Timeout {
        method: Method,
        path: String,
        timeout: Duration,
    },
    #[error("{method} {path}: cannot decode response ({status})")]
    Decode {
        method: Method,
        path: String,
        status: StatusCode,
        #[source]
        source: serde_json::Error,
    },
    /// The server answered with an error.
    #[error(transparent)]
    Api(Box<ApiFailure>),
}

/// An error the API answered with: its status, code and message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{method} {path}: {status} {code}: {message} (request {request_id})")]
pub struct ApiFailure {
    pub method: Method,
    pub path: String,
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    pub request_id: String,
    pub field: Option<String>,
    pub retry_after: Option<Duration>,
}

impl Error {
    /// The API error code, for errors the server answered.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Api(f) => Some(f.code),
            _ => None,
        }
    }

    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Error::Api(f) => Some(f.status),
            Error::Decode { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// For validation errors: the offending field.
    pub fn field(&self) -> Option<&str> {
        match self {
            Error::Api(f) => f.field.as_deref(),
            _ => None,
        }
    }

    /// What the server asked the client to wait before retrying.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Api(f) => f.retry_after,
            _ => None,
        }
    }

    /// True for failures that may go away on their own: throttling, 5xx, timeouts, transport.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Api(f) => {
                f.status == StatusCode::TOO_MANY_REQUESTS || f.status.is_server_error()
            }
            Error::Timeout { .. } | Error::Send { .. } => true,
            _ => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Retry behaviour: `max_retries` more attempts after the first, with backoff doubling from
/// `base_backoff` up to `max_backoff` (full jitter). `Retry-After` overrides the backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Longest `Retry-After` honoured; a longer one fails the call with the server's error.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 4,
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// No retries at all: every failure is returned at once.
    pub fn none() -> Self {
        Self {
            max_retries: 0,
            ..Self::default()
        }
    }

    /// How long to wait before retry number `attempt` (0-based), given a jitter in [0, 1).
    pub fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        let exp = self
            .base_backoff
            .saturating_mul(2u32.saturating_pow(attempt.min(16)));
        exp.min(self.max_backoff).mul_f64(jitter.clamp(0.0, 1.0))
    }
}

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

    /// Per-attempt timeout (default 10 s).
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

/// Filters for listing instances.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceFilter {
    pub zone: Option<String>,
    pub state: Option<InstanceState>,
    pub name: Option<String>,
    /// `(key, value)`.
    pub tag: Option<(String, String)>,
}

impl InstanceFilter {
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if let Some(z) = &self.zone {
            q.push(("zone", z.clone()));
        }
        if let Some(s) = self.state {
            q.push(("state", s.as_str().to_owned()));
        }
        if let Some(n) = &self.name {
            q.push(("name", n.clone()));
        }
        if let Some((k, v)) = &self.tag {
            q.push(("tag", format!("{k}={v}")));
        }
        q
    }
}

/// Filters for listing load balancers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadBalancerFilter {
    pub name: Option<String>,
    pub tag: Option<(String, String)>,
}

impl LoadBalancerFilter {
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if let Some(n) = &self.name {
            q.push(("name", n.clone()));
        }
        if let Some((k, v)) = &self.tag {
            q.push(("tag", format!("{k}={v}")));
        }
        q
    }
}

/// One page request: size and the token from the previous page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    pub page_size: Option<u32>,
    pub page_token: Option<String>,
}

impl PageRequest {
    fn extend(&self, q: &mut Vec<(&'static str, String)>) {
        if let Some(s) = self.page_size {
            q.push(("page_size", s.to_string()));
        }
        if let Some(t) = &self.page_token {
            q.push(("page_token", t.clone()));
        }
    }
}

/// The route table every project has.
pub const DEFAULT_ROUTE_TABLE: &str = cloud_api::route::DEFAULT_ROUTE_TABLE;

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
struct Call<'a> {
    method: Method,
    path: String,
    query: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
    if_match: Option<&'a str>,
    idempotency_key: Option<String>,
}

impl<'a> Call<'a> {
    fn new(method: Method, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            query: Vec::new(),
            body: None,
            if_match: None,
            idempotency_key: None,
        }
    }

    fn json(mut self, body: &impl Serialize) -> Self {
        self.body = Some(serde_json::to_vec(body).expect("request types serialize"));
        self
    }

    fn query(mut self, q: Vec<(&'static str, String)>) -> Self {
        self.query = q;
        self
    }

    fn if_match(mut self, etag: Option<&'a str>) -> Self {
        self.if_match = etag;
        self
    }

    fn idempotent(mut self) -> Self {
        self.idempotency_key = Some(format!("{:032x}", rand::random::<u128>()));
        self
    }
}

/// Percent-encodes one path segment (IDs and names are safe already; this guards user input).
fn segment(s: &str) -> String {
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

    async fn send_once(&self, call: &Call<'_>) -> Result<(StatusCode, Vec<u8>)> {
        let url = format!("{}{}", self.base, call.path);
        let mut req = self.http.request(call.method.clone(), &url);
        if !call.query.is_empty() {
            req = req.query(&call.query);
        }
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
                    timeout: self.timeout,
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

    async fn send(&self, call: Call<'_>) -> Result<(StatusCode, Vec<u8>)> {
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

    async fn json<T: DeserializeOwned>(&self, call: Call<'_>) -> Result<T> {
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
    async fn json_opt<T: DeserializeOwned>(&self, call: Call<'_>) -> Result<Option<T>> {
        match self.json(call).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.code() == Some(ErrorCode::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `Ok(false)` on 404.
    async fn delete(&self, call: Call<'_>) -> Result<bool> {
        match self.send(call).await {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some(ErrorCode::NotFound) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn all_pages<T, F, Fut>(&self, mut fetch: F) -> Result<Vec<T>>
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

    // -- catalog ------------------------------------------------------------------------------

    pub async fn region(&self) -> Result<Region> {
        let p: Page<Region> = self.json(Call::new(Method::GET, "/v1/regions")).await?;
        p.items.into_iter().next().ok_or_else(|| {
            Error::Api(Box::new(ApiFailure {
                method: Method::GET,
                path: "/v1/regions".into(),
                status: StatusCode::NOT_FOUND,
                code: ErrorCode::NotFound,
                message: "the cloud reports no region".into(),
                request_id: String::new(),
                field: None,
                retry_after: None,
            }))
        })
    }

    pub async fn zones(&self) -> Result<Vec<Zone>> {
        let p: Page<Zone> = self.json(Call::new(Method::GET, "/v1/zones")).await?;
        Ok(p.items)
    }

    pub async fn get_zone(&self, name: &str) -> Result<Option<Zone>> {
        self.json_opt(Call::new(
            Method::GET,
            format!("/v1/zones/{}", segment(name)),
        ))
        .await
    }

    pub async fn set_zone_state(&self, name: &str, state: ZoneState) -> Result<Zone> {
        self.json(
            Call::new(Method::PUT, format!("/v1/admin/zones/{}", segment(name)))
                .json(&SetZoneStateRequest { state }),
        )
        .await
    }

    pub async fn instance_types(&self) -> Result<Vec<InstanceType>> {
        let p: Page<InstanceType> = self
            .json(Call::new(Method::GET, "/v1/instance-types"))
            .await?;
        Ok(p.items)
    }

    // -- instances ----------------------------------------------------------------------------

    pub async fn create_instance(&self, req: &CreateInstanceRequest) -> Result<Instance> {
        self.json(
            Call::new(Method::POST, "/v1/instances")
                .json(req)
                .idempotent(),
        )
        .await
    }

    pub async fn get_instance(&self, id: &str) -> Result<Option<Instance>> {
        self.json_opt(Call::new(
            Method::GET,
            format!("/v1/instances/{}", segment(id)),
        ))
        .await
    }

    pub async fn list_instances(
        &self,
        filter: &InstanceFilter,
        page: &PageRequest,
    ) -> Result<Page<Instance>> {
        let mut q = filter.query();
        page.extend(&mut q);
        self.json(Call::new(Method::GET, "/v1/instances").query(q))
            .await
    }

    /// Every instance matching `filter`, walking all pages.
    pub async fn list_all_instances(&self, filter: &InstanceFilter) -> Result<Vec<Instance>> {
        self.all_pages(|p| async move { self.list_instances(filter, &p).await })
            .await
    }

    /// Replaces the instance's tags; `if_match` is an etag precondition.
    pub async fn update_instance_tags(
        &self,
        id: &str,
        tags: Tags,
        if_match: Option<&str>,
    ) -> Result<Instance> {
        let call = Call::new(Method::PATCH, format!("/v1/instances/{}", segment(id)))
            .json(&UpdateInstanceRequest { tags })
            .if_match(if_match);
        self.json(call).await
    }

    pub async fn start_instance(&self, id: &str) -> Result<Instance> {
        self.json(Call::new(
            Method::POST,
            format!("/v1/instances/{}/start", segment(id)),
        ))
        .await
    }

    pub async fn stop_instance(&self, id: &str) -> Result<Instance> {
        self.json(Call::new(
            Method::POST,
            format!("/v1/instances/{}/stop", segment(id)),
        ))
        .await
    }

    pub async fn terminate_instance(&self, id: &str) -> Result<Instance> {
        self.json(Call::new(
            Method::POST,
            format!("/v1/instances/{}/terminate", segment(id)),
        ))
        .await
    }

    /// Deletes the instance record (terminating it first); `Ok(false)` if it did not exist.
    pub async fn delete_instance(&self, id: &str) -> Result<bool> {
        self.delete(Call::new(
            Method::DELETE,
            format!("/v1/instances/{}", segment(id)),
        ))
        .await
    }

    // -- load balancers -----------------------------------------------------------------------

    pub async fn create_load_balancer(
        &self,
        req: &CreateLoadBalancerRequest,
    ) -> Result<LoadBalancer> {
        self.json(
            Call::new(Method::POST, "/v1/load-balancers")
                .json(req)
                .idempotent(),
        )
        .await
    }

    pub async fn get_load_balancer(&self, id: &str) -> Result<Option<LoadBalancer>> {
        self.json_opt(Call::new(
            Method::GET,
            format!("/v1/load-balancers/{}", segment(id)),
        ))
        .await
    }

    /// The load balancer with this name, if any.
    pub async fn find_load_balancer(&self, name: &str) -> Result<Option<LoadBalancer>> {
        let filter = LoadBalancerFilter {
            name: Some(name.to_owned()),
            tag: None,
        };
        Ok(self
            .list_load_balancers(&filter, &PageRequest::default())
            .await?
            .items
            .into_iter()
            .next())
    }

    pub async fn list_load_balancers(
        &self,
        filter: &LoadBalancerFilter,
        page: &PageRequest,
    ) -> Result<Page<LoadBalancer>> {
        let mut q = filter.query();
        page.extend(&mut q);
        self.json(Call::new(Method::GET, "/v1/load-balancers").query(q))
            .await
    }

    pub async fn list_all_load_balancers(
        &self,
        filter: &LoadBalancerFilter,
    ) -> Result<Vec<LoadBalancer>> {
        self.all_pages(|p| async move { self.list_load_balancers(filter, &p).await })
            .await
    }

    pub async fn update_load_balancer(
        &self,
        id: &str,
        req: &UpdateLoadBalancerRequest,
        if_match: Option<&str>,
    ) -> Result<LoadBalancer> {
        self.json(
            Call::new(Method::PATCH, format!("/v1/load-balancers/{}", segment(id)))
                .json(req)
                .if_match(if_match),
        )
        .await
    }

    /// What the data plane measured for a load balancer: backend health and traffic counters.
    /// `Ok(None)` if the load balancer does not exist.
    pub async fn load_balancer_traffic(&self, id: &str) -> Result<Option<TrafficReport>> {
        self.json_opt(Call::new(
            Method::GET,
            format!("/v1/load-balancers/{}/traffic", segment(id)),
        ))
        .await
    }

    /// `Ok(false)` if it did not exist.
    pub async fn delete_load_balancer(&self, id: &str) -> Result<bool> {
        self.delete(Call::new(
            Method::DELETE,
            format!("/v1/load-balancers/{}", segment(id)),
        ))
        .await
    }

    // -- routes -------------------------------------------------------------------------------

    pub async fn route_table(&self, table: &str) -> Result<RouteTable> {
        self.json(Call::new(
            Method::GET,
            format!("/v1/route-tables/{}", segment(table)),
        ))
        .await
    }

    pub async fn create_route(&self, table: &str, req: &CreateRouteRequest) -> Result<Route> {
        self.json(
            Call::new(
                Method::POST,
                format!("/v1/route-tables/{}/routes", segment(table)),
            )
            .json(req)
            .idempotent(),
        )
        .await
    }

    pub async fn get_route(&self, table: &str, id: &str) -> Result<Option<Route>> {
        self.json_opt(Call::new(
            Method::GET,
            format!("/v1/route-tables/{}/routes/{}", segment(table), segment(id)),
        ))
        .await
    }

    pub async fn list_routes(&self, table: &str, page: &PageRequest) -> Result<Page<Route>> {
        let mut q = Vec::new();
        page.extend(&mut q);
        self.json(
            Call::new(
                Method::GET,
                format!("/v1/route-tables/{}/routes", segment(table)),
            )
            .query(q),
        )
        .await
    }

    pub async fn list_all_routes(&self, table: &str) -> Result<Vec<Route>> {
        self.all_pages(|p| async move { self.list_routes(table, &p).await })
            .await
    }

    /// `Ok(false)` if it did not exist.
    pub async fn delete_route(&self, table: &str, id: &str) -> Result<bool> {
        self.delete(Call::new(
            Method::DELETE,
            format!("/v1/route-tables/{}/routes/{}", segment(table), segment(id)),
        ))
        .await
    }

    // -- events -------------------------------------------------------------------------------

    /// Events after `after`, waiting up to `wait` (whole seconds, at most 60) for one to arrive.
    pub async fn events(&self, after: i64, limit: u32, wait: Duration) -> Result<EventPage> {
        let q = vec![
            ("after", after.to_string()),
            ("limit", limit.to_string()),
            ("wait_seconds", wait.as_secs().to_string()),
        ];
        self.json(Call::new(Method::GET, "/v1/events").query(q))
            .await
    }

    /// The sequence number of the newest event: where to start following the log from now on.
    pub async fn event_head(&self) -> Result<i64> {
        Ok(self.events(i64::MAX, 1, Duration::ZERO).await?.last_seq)
    }

    // -- admin --------------------------------------------------------------------------------

    pub async fn add_fault(&self, req: &CreateFaultRequest) -> Result<FaultRule> {
        self.json(Call::new(Method::POST, "/v1/admin/faults").json(req))
            .await
    }

    pub async fn list_faults(&self) -> Result<Vec<FaultRule>> {
        let p: Page<FaultRule> = self
            .json(Call::new(Method::GET, "/v1/admin/faults"))
            .await?;
        Ok(p.items)
    }

    pub async fn delete_fault(&self, id: &str) -> Result<bool> {
        self.delete(Call::new(
            Method::DELETE,
            format!("/v1/admin/faults/{}", segment(id)),
        ))
        .await
    }

    pub async fn clear_faults(&self) -> Result<()> {
        self.send(Call::new(Method::DELETE, "/v1/admin/faults"))
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff(0, 1.0), Duration::from_millis(100));
        assert_eq!(p.backoff(1, 1.0), Duration::from_millis(200));
        assert_eq!(p.backoff(3, 1.0), Duration::from_millis(800));
        assert_eq!(p.backoff(10, 1.0), Duration::from_secs(5));
        assert_eq!(p.backoff(40, 1.0), Duration::from_secs(5));
        assert_eq!(p.backoff(3, 0.5), Duration::from_millis(400));
        assert_eq!(p.backoff(3, 0.0), Duration::ZERO);
    }

    #[test]
    fn filters_become_query_parameters() {
        let f = InstanceFilter {
            zone: Some("zone-a".into()),
            state: Some(InstanceState::Running),
            name: None,
            tag: Some(("team".into(), "x=y".into())),
        };
        let mut q = f.query();
        PageRequest {
            page_size: Some(10),
            page_token: Some("ab".into()),
        }
        .extend(&mut q);
        assert_eq!(
            q,
            vec![
                ("zone", "zone-a".to_owned()),
                ("state", "running".to_owned()),
                ("tag", "team=x=y".to_owned()),
                ("page_size", "10".to_owned()),
                ("page_token", "ab".to_owned()),
            ]
        );
    }

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(segment("i-0123456789abcdef"), "i-0123456789abcdef");
        assert_eq!(segment("../x y"), "..%2Fx%20y");
    }

    #[test]
    fn base_url_must_be_http() {
        assert!(matches!(
            Client::new("127.0.0.1:8080"),
            Err(Error::BaseUrl { .. })
        ));
        assert_eq!(
            Client::new("http://127.0.0.1:8080/").unwrap().base_url(),
            "http://127.0.0.1:8080"
        );
    }

    #[test]
    fn retryable_errors() {
        let api = |status: u16| {
            Error::Api(Box::new(ApiFailure {
                method: Method::GET,
                path: "/".into(),
                status: StatusCode::from_u16(status).unwrap(),
                code: ErrorCode::from_http_status(status),
                message: String::new(),
                request_id: String::new(),
                field: None,
                retry_after: None,
            }))
        };
        for s in [429, 500, 502, 503] {
            assert!(api(s).is_retryable(), "{s}");
        }
        for s in [400, 404, 409, 412, 422] {
            assert!(!api(s).is_retryable(), "{s}");
        }
    }
}
