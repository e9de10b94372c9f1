//! Client behaviour against scripted fake servers: what it sends on retries, and how it reads
//! answers that are not the API's error body. (Behaviour against the real cloud-sim is tested in
//! `cloud-sim/tests/it`.)

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use cloud_api::{CreateInstanceRequest, ErrorCode, Tags};
use cloud_client::{Client, RetryPolicy};

/// Serves `router` on 127.0.0.1:0 and returns its base URL.
async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

/// A client of `router` served on a loopback port, retrying by `retry`.
async fn client_for(router: Router, retry: RetryPolicy) -> Client {
    Client::builder(serve(router).await)
        .retry(retry)
        .build()
        .unwrap()
}

fn req() -> CreateInstanceRequest {
    CreateInstanceRequest {
        name: "n".into(),
        zone: "zone-a".into(),
        instance_type: "sim.small".into(),
        tags: Tags::new(),
        private_ip: None,
    }
}

const INSTANCE: &str = r#"{"id":"i-0000000000000001","name":"n","zone":"zone-a","region":"sim-1","instance_type":"sim.small",
"state":"running","private_ip":"127.1.1.2","provider_id":"simcloud://zone-a/i-0000000000000001","tags":{},
"created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z","etag":"1"}"#;

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_retries: 3,
        base_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        ..RetryPolicy::default()
    }
}

#[tokio::test]
async fn retries_of_a_create_reuse_its_idempotency_key() {
    let keys: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = keys.clone();
    let router = Router::new().route(
        "/v1/instances",
        post(move |headers: HeaderMap| {
            let seen = seen.clone();
            async move {
                let mut k = seen.lock().unwrap();
                k.push(headers["idempotency-key"].to_str().unwrap().to_owned());
                if k.len() < 3 {
                    (StatusCode::SERVICE_UNAVAILABLE, "upstream busy").into_response()
                } else {
                    (
                        StatusCode::CREATED,
                        [("content-type", "application/json")],
                        INSTANCE,
                    )
                        .into_response()
                }
            }
        }),
    );
    let client = client_for(router, fast_retries()).await;
    let i = client.create_instance(&req()).await.unwrap();
    assert_eq!(i.id.as_str(), "i-0000000000000001");
    let keys = keys.lock().unwrap().clone();
    assert_eq!(keys.len(), 3);
    assert!(keys.iter().all(|k| *k == keys[0]), "{keys:?}");
    assert_eq!(keys[0].len(), 32);

    // A second create is a different call with a different key.
    let again = client.create_instance(&req()).await.unwrap();
    assert_eq!(again.name, "n");
}

#[tokio::test]
async fn errors_without_the_api_body_still_have_a_code_and_message() {
    let router = Router::new().route(
        "/v1/instances",
        post(|| async { (StatusCode::BAD_GATEWAY, "<html>bad gateway</html>") }),
    );
    let client = client_for(router, RetryPolicy::none()).await;
    let e = client.create_instance(&req()).await.unwrap_err();
    assert_eq!(e.status().unwrap(), StatusCode::BAD_GATEWAY);
    assert_eq!(e.code(), Some(ErrorCode::Internal));
    assert!(e.to_string().contains("bad gateway"), "{e}");
    assert!(e.is_retryable());
}

/// On tokio's paused clock: a client that slept out the hour would show it on this clock.
#[tokio::test(start_paused = true)]
async fn a_retry_after_longer_than_allowed_fails_at_once() {
    let router = Router::new().route(
        "/v1/instances",
        post(|| async {
            (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "3600")],
                "slow down",
            )
                .into_response()
        }),
    );
    let client = client_for(router, fast_retries()).await;
    let started = tokio::time::Instant::now();
    let e = client.create_instance(&req()).await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::ZERO, "it waited");
    assert_eq!(e.retry_after(), Some(Duration::from_secs(3600)));
    assert_eq!(e.code(), Some(ErrorCode::Throttled));
}

#[tokio::test]
async fn undecodable_success_bodies_are_decode_errors() {
    let router = Router::new().route(
        "/v1/instances",
        post(|| async { (StatusCode::CREATED, "{}") }),
    );
    let client = client_for(router, RetryPolicy::none()).await;
    let e = client.create_instance(&req()).await.unwrap_err();
    assert!(matches!(e, cloud_client::Error::Decode { .. }), "{e:?}");
}

#[tokio::test]
async fn connection_refused_is_a_transport_error() {
    // Bind and drop to find a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = Client::builder(format!("http://127.0.0.1:{port}"))
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    let e = client.zones().await.unwrap_err();
    assert!(matches!(e, cloud_client::Error::Send { .. }), "{e:?}");
    assert!(e.is_retryable());
}

/// Only the API's own NOT_FOUND means "absent": a 404 from something else in the way (a proxy,
/// a wrong base URL: no API error body) or from a path the API does not serve (UNKNOWN_PATH) is
/// an error, so the ccm never deletes a Node on it.
#[tokio::test]
async fn a_404_that_is_not_the_apis_not_found_is_an_error_not_absence() {
    let proxy = Router::new().fallback(|| async { (StatusCode::NOT_FOUND, "404 page not found") });
    let c = client_for(proxy, RetryPolicy::none()).await;
    let e = c.get_instance("i-0000000000000001").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::UnknownPath), "{e}");
    assert!(c.delete_instance("i-0000000000000001").await.is_err());

    let unknown_path = Router::new().fallback(|| async {
        (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({"error": {"code": "UNKNOWN_PATH", "message": "no API endpoint", "request_id": "r"}})),
        )
    });
    let c = client_for(unknown_path, RetryPolicy::none()).await;
    let e = c.get_instance("i-0000000000000001").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::UnknownPath), "{e}");

    let absent = Router::new().fallback(|| async {
        (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({"error": {"code": "NOT_FOUND", "message": "instance i-1 not found", "request_id": "r"}})),
        )
    });
    let c = client_for(absent, RetryPolicy::none()).await;
    assert!(
        c.get_instance("i-0000000000000001")
            .await
            .unwrap()
            .is_none()
    );
}
