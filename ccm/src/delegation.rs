//! Who may read the serving port, decided by the API server as upstream's ccm does it
//! (delegated authentication and authorization):
//!
//! 1. A request with `Authorization: Bearer <token>` is authenticated by a TokenReview; a token
//!    the API server does not accept is 401 on every path. A request without one is
//!    `system:anonymous` (group `system:unauthenticated`).
//! 2. Paths in `--authorization-always-allow-paths` (default `/healthz`, `/readyz`, `/livez`; a
//!    trailing `*` makes a prefix) and the group `system:masters` are allowed; anything else is
//!    asked of the API server by a SubjectAccessReview on the non-resource path with the
//!    lower-cased method as verb, so `/metrics` needs a rule like
//!    `nonResourceURLs: ["/metrics"], verbs: ["get"]`. Denied is 403.
//!
//! Answers are cached for 10 s (upstream's default TTLs), allowed and denied alike. Client
//! certificates and front-proxy headers (`--client-ca-file`, `--requestheader-*`) are not
//! read: such a request is anonymous unless it carries a token.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::Api;
use kube::api::PostParams;

/// The user of a request without credentials.
pub const ANONYMOUS: &str = "system:anonymous";
/// The group of a request without credentials.
pub const UNAUTHENTICATED: &str = "system:unauthenticated";
/// Always allowed, without asking (upstream's `alwaysAllowGroups`).
pub const PRIVILEGED_GROUP: &str = "system:masters";
/// `--authorization-always-allow-paths` when the flag is not given.
pub const DEFAULT_ALWAYS_ALLOW_PATHS: [&str; 3] = ["/healthz", "/readyz", "/livez"];
/// How long a review's answer is reused (upstream's token cache TTL and authorized and
/// unauthorized TTLs are all 10 s).
pub const CACHE_TTL: Duration = Duration::from_secs(10);

/// An authenticated user as a TokenReview reports it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    pub fn anonymous() -> Self {
        Self {
            name: ANONYMOUS.to_owned(),
            groups: vec![UNAUTHENTICATED.to_owned()],
            ..Self::default()
        }
    }
}

/// The API server's answer to a SubjectAccessReview.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Why, when the authorizer says (appended to the 403 message, as upstream does).
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{review} failed: {source}")]
pub struct ReviewError {
    review: &'static str,
    source: kube::Error,
}

/// Asks someone who knows: the API server in production, a table in tests.
#[async_trait::async_trait]
pub trait Reviewer: Send + Sync {
    /// The token's user, or `None` when the token is not valid.
    async fn authenticate(&self, token: &str) -> Result<Option<UserInfo>, ReviewError>;
    async fn authorize(
        &self,
        user: &UserInfo,
        verb: &str,
        path: &str,
    ) -> Result<Decision, ReviewError>;
}

/// TokenReview and SubjectAccessReview through the API server (`--authentication-kubeconfig`
/// and `--authorization-kubeconfig`, else the ccm's own connection, which is upstream's
/// in-cluster fallback when the ccm runs in a Pod).
pub struct KubeReviewer {
    pub authn: kube::Client,
    pub authz: kube::Client,
}

/// Creates a review object and returns the API server's answer in it.
async fn create<K>(client: &kube::Client, review: &'static str, obj: &K) -> Result<K, ReviewError>
where
    K: kube::Resource<Scope = k8s_openapi::ClusterResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::Serialize
        + serde::de::DeserializeOwned,
{
    Api::<K>::all(client.clone())
        .create(&PostParams::default(), obj)
        .await
        .map_err(|source| ReviewError { review, source })
}

#[async_trait::async_trait]
impl Reviewer for KubeReviewer {
    async fn authenticate(&self, token: &str) -> Result<Option<UserInfo>, ReviewError> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_owned()),
                audiences: None,
            },
            ..TokenReview::default()
        };
        let answer = create(&self.authn, "TokenReview", &review).await?;
        let Some(status) = answer.status.filter(|s| s.authenticated == Some(true)) else {
            return Ok(None);
        };
        let user = status.user.unwrap_or_default();
        Ok(Some(UserInfo {
            name: user.username.unwrap_or_default(),
            uid: user.uid.unwrap_or_default(),
            groups: user.groups.unwrap_or_default(),
            extra: user.extra.unwrap_or_default(),
        }))
    }

    async fn authorize(
        &self,
        user: &UserInfo,
        verb: &str,
        path: &str,
    ) -> Result<Decision, ReviewError> {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.name.clone()),
                uid: (!user.uid.is_empty()).then(|| user.uid.clone()),
                groups: Some(user.groups.clone()),
                extra: (!user.extra.is_empty()).then(|| user.extra.clone()),
                non_resource_attributes: Some(NonResourceAttributes {
                    path: Some(path.to_owned()),
                    verb: Some(verb.to_owned()),
                }),
                resource_attributes: None,
            },
            ..SubjectAccessReview::default()
        };
        let answer = create(&self.authz, "SubjectAccessReview", &review).await?;
        let status = answer.status.unwrap_or_default();
        Ok(Decision {
            allowed: status.allowed && status.denied != Some(true),
            reason: status.reason.unwrap_or_default(),
        })
    }
}

/// Answers kept for [`CACHE_TTL`].
struct TtlCache<K, V> {
    ttl: Duration,
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Eq + Hash, V: Clone> TtlCache<K, V> {
    /// Expired entries are dropped when the cache grows past this.
    const PRUNE_AT: usize = 4096;

    fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, k: &K) -> Option<V> {
        let entries = self.entries.lock().expect("cache lock");
        entries
            .get(k)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, v)| v.clone())
    }

    fn insert(&self, k: K, v: V) {
        let mut entries = self.entries.lock().expect("cache lock");
        if entries.len() >= Self::PRUNE_AT {
            entries.retain(|_, (at, _)| at.elapsed() < self.ttl);
        }
        entries.insert(k, (Instant::now(), v));
    }
}

/// The serving port's gatekeeper: [`filter`] is its middleware.
pub struct Delegation {
    reviewer: Arc<dyn Reviewer>,
    always_allow_paths: Vec<String>,
    tokens: TtlCache<String, Option<UserInfo>>,
    decisions: TtlCache<(UserInfo, String, String), Decision>,
}

/// Whether `path` is one of `--authorization-always-allow-paths` (exact, or a prefix when the
/// entry ends in `*`).
pub fn always_allowed(allow: &[String], path: &str) -> bool {
    allow.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => p == path,
    })
}

/// The bearer token of a request, if it carries one (`Bearer` in any case, as upstream).
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

impl Delegation {
    /// `always_allow_paths` empty means upstream's default list.
    pub fn new(reviewer: Arc<dyn Reviewer>, always_allow_paths: &[String]) -> Self {
        let always_allow_paths = if always_allow_paths.is_empty() {
            DEFAULT_ALWAYS_ALLOW_PATHS.map(str::to_owned).to_vec()
        } else {
            always_allow_paths.to_vec()
        };
        Self {
            reviewer,
            always_allow_paths,
            tokens: TtlCache::new(CACHE_TTL),
            decisions: TtlCache::new(CACHE_TTL),
        }
    }

    async fn authenticate(&self, token: &str) -> Result<Option<UserInfo>, ReviewError> {
        if let Some(known) = self.tokens.get(&token.to_owned()) {
            return Ok(known);
        }
        let user = self.reviewer.authenticate(token).await?;
        self.tokens.insert(token.to_owned(), user.clone());
        Ok(user)
    }

    async fn authorize(
        &self,
        user: &UserInfo,
        verb: &str,
        path: &str,
    ) -> Result<Decision, ReviewError> {
        if always_allowed(&self.always_allow_paths, path)
            || user.groups.iter().any(|g| g == PRIVILEGED_GROUP)
        {
            return Ok(Decision {
                allowed: true,
                reason: String::new(),
            });
        }
        let key = (user.clone(), verb.to_owned(), path.to_owned());
        if let Some(known) = self.decisions.get(&key) {
            return Ok(known);
        }
        let decision = self.reviewer.authorize(user, verb, path).await?;
        self.decisions.insert(key, decision.clone());
        Ok(decision)
    }
}

/// A `metav1.Status` failure body, as upstream's filters write.
fn status(code: StatusCode, reason: &str, message: &str) -> Response {
    let body = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": {},
        "code": code.as_u16(),
    });
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The middleware: authenticate, authorize, then serve.
pub async fn filter(State(d): State<Arc<Delegation>>, req: Request, next: Next) -> Response {
    let user = match bearer_token(req.headers()) {
        None => UserInfo::anonymous(),
        Some(token) => match d.authenticate(token).await {
            Ok(Some(user)) => user,
            Ok(None) => return status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized"),
            Err(e) => {
                tracing::warn!(error = %e, "cannot authenticate a request to the serving port");
                return status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
            }
        },
    };
    let verb = req.method().as_str().to_ascii_lowercase();
    let path = req.uri().path().to_owned();
    match d.authorize(&user, &verb, &path).await {
        Ok(Decision { allowed: true, .. }) => next.run(req).await,
        Ok(Decision { reason, .. }) => {
            let mut message = format!(
                "forbidden: User {:?} cannot {verb} path {path:?}",
                user.name
            );
            if !reason.is_empty() {
                message = format!("{message}: {reason}");
            }
            tracing::debug!(user = %user.name, %path, "serving port: forbidden");
            status(StatusCode::FORBIDDEN, "Forbidden", &message)
        }
        Err(e) => {
            tracing::warn!(error = %e, %path, "cannot authorize a request to the serving port");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("Internal Server Error: {path:?}: {e}"),
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt as _;

    use super::*;

    /// Tokens `good` (user alice, may read /metrics), `dull` (user bob, may not), `master`
    /// (group system:masters); anything else is invalid. Counts the reviews asked.
    #[derive(Default)]
    struct Table {
        authn: AtomicUsize,
        authz: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Reviewer for Table {
        async fn authenticate(&self, token: &str) -> Result<Option<UserInfo>, ReviewError> {
            self.authn.fetch_add(1, Ordering::SeqCst);
            let user = |name: &str, group: &str| UserInfo {
                name: name.into(),
                groups: vec![group.into(), "system:authenticated".into()],
                ..UserInfo::default()
            };
            Ok(match token {
                "good" => Some(user("alice", "readers")),
                "dull" => Some(user("bob", "others")),
                "master" => Some(user("root", PRIVILEGED_GROUP)),
                _ => None,
            })
        }
        async fn authorize(
            &self,
            user: &UserInfo,
            verb: &str,
            path: &str,
        ) -> Result<Decision, ReviewError> {
            self.authz.fetch_add(1, Ordering::SeqCst);
            let allowed =
                user.groups.iter().any(|g| g == "readers") && verb == "get" && path == "/metrics";
            Ok(Decision {
                allowed,
                reason: if allowed {
                    String::new()
                } else {
                    "no RBAC rule".into()
                },
            })
        }
    }

    fn app(table: Arc<Table>, allow: &[&str]) -> axum::Router {
        let allow: Vec<String> = allow.iter().map(|s| (*s).to_owned()).collect();
        let d = Arc::new(Delegation::new(table, &allow));
        axum::Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route(
                "/metrics",
                get(|| async { "metrics" }).post(|| async { "posted" }),
            )
            .route("/debug/x", get(|| async { "debug" }))
            .layer(axum::middleware::from_fn_with_state(d, filter))
    }

    async fn call(
        app: &axum::Router,
        method: &str,
        path: &str,
        auth: Option<&str>,
    ) -> (u16, String) {
        let mut req = axum::http::Request::builder().method(method).uri(path);
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        let resp = app
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let code = resp.status().as_u16();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (code, String::from_utf8_lossy(&body).into_owned())
    }

    /// (method, path, Authorization, always-allow paths, status, body contains)
    type Case = (
        &'static str,
        &'static str,
        Option<&'static str>,
        &'static [&'static str],
        u16,
        &'static str,
    );

    #[tokio::test]
    async fn who_sees_what() {
        let cases: &[Case] = &[
            ("GET", "/healthz", None, &[], 200, "ok"),
            (
                "GET",
                "/metrics",
                None,
                &[],
                403,
                r#"forbidden: User \"system:anonymous\" cannot get path \"/metrics\": no RBAC rule"#,
            ),
            ("GET", "/metrics", Some("Bearer good"), &[], 200, "metrics"),
            ("GET", "/metrics", Some("bearer good"), &[], 200, "metrics"),
            (
                "POST",
                "/metrics",
                Some("Bearer good"),
                &[],
                403,
                r#"cannot post path \"/metrics\""#,
            ),
            (
                "GET",
                "/metrics",
                Some("Bearer dull"),
                &[],
                403,
                r#"User \"bob\" cannot get path"#,
            ),
            (
                "GET",
                "/metrics",
                Some("Bearer master"),
                &[],
                200,
                "metrics",
            ),
            (
                "GET",
                "/metrics",
                Some("Bearer nonsense"),
                &[],
                401,
                r#""reason":"Unauthorized""#,
            ),
            // A bad token is refused even where anonymous would pass.
            (
                "GET",
                "/healthz",
                Some("Bearer nonsense"),
                &[],
                401,
                "Unauthorized",
            ),
            // Basic auth is no bearer token: anonymous.
            ("GET", "/healthz", Some("Basic YTpi"), &[], 200, "ok"),
            // The flag replaces the default list; a trailing * is a prefix.
            (
                "GET",
                "/metrics",
                None,
                &["/healthz", "/metrics"],
                200,
                "metrics",
            ),
            (
                "GET",
                "/healthz",
                None,
                &["/metrics"],
                403,
                "cannot get path",
            ),
            ("GET", "/debug/x", None, &["/debug/*"], 200, "debug"),
            ("GET", "/debug/x", None, &["/debug"], 403, "cannot get path"),
        ];
        for (method, path, auth, allow, want_code, want_body) in cases {
            let a = app(Arc::new(Table::default()), allow);
            let (code, body) = call(&a, method, path, *auth).await;
            assert_eq!(
                (code, body.contains(want_body)),
                (*want_code, true),
                "{method} {path} {auth:?} allow={allow:?}: {code} {body}"
            );
        }
    }

    #[tokio::test]
    async fn answers_are_cached() {
        let table = Arc::new(Table::default());
        let a = app(table.clone(), &[]);
        for _ in 0..3 {
            assert_eq!(
                call(&a, "GET", "/metrics", Some("Bearer good")).await.0,
                200
            );
            assert_eq!(
                call(&a, "GET", "/metrics", Some("Bearer dull")).await.0,
                403
            );
            assert_eq!(
                call(&a, "GET", "/metrics", Some("Bearer nonsense")).await.0,
                401
            );
        }
        assert_eq!(
            table.authn.load(Ordering::SeqCst),
            3,
            "one TokenReview per token"
        );
        assert_eq!(
            table.authz.load(Ordering::SeqCst),
            2,
            "one SubjectAccessReview per user"
        );
    }

    #[test]
    fn bearer_tokens() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::AUTHORIZATION, v.parse().unwrap());
            m
        };
        assert_eq!(bearer_token(&h("Bearer abc")), Some("abc"));
        assert_eq!(bearer_token(&h("BEARER  abc ")), Some("abc"));
        assert_eq!(bearer_token(&h("Bearer ")), None);
        assert_eq!(bearer_token(&h("Basic abc")), None);
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }
}
