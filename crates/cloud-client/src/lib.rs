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
//!
//! Modules: [`error`] (what a failed call says), [`retry`] (the policy), `transport` (one request
//! on the wire, with retries), `api` (one method per call, and the list filters, which become
//! cloud-api's list queries).

mod api;
pub mod error;
pub mod retry;
mod transport;

pub use api::{DEFAULT_ROUTE_TABLE, InstanceFilter, LoadBalancerFilter, PageRequest};
pub use error::{ApiFailure, Error, Result};
pub use retry::RetryPolicy;
pub use transport::{Client, ClientBuilder};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::segment;
    use cloud_api::ErrorCode;
    use cloud_api::InstanceState;
    use reqwest::{Method, StatusCode};
    use std::time::Duration;

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
    fn filters_become_cloud_api_list_queries() {
        let f = InstanceFilter {
            zone: Some("zone-a".into()),
            state: Some(InstanceState::Running),
            name: None,
            tag: Some(("team".into(), "x=y".into())),
            ids: vec!["i-1".into(), "i-2".into()],
        };
        let page = PageRequest {
            page_size: Some(10),
            page_token: Some("ab".into()),
        };
        let q = f.to_query(&page);
        assert_eq!(
            serde_urlencoded::to_string(&q).unwrap(),
            "zone=zone-a&state=running&tag=team%3Dx%3Dy&ids=i-1%2Ci-2&page_size=10&page_token=ab"
        );
        // What the server deserialises is what was meant.
        let back: cloud_api::ListInstancesQuery = serde_urlencoded::from_str(
            "zone=zone-a&state=running&tag=team%3Dx%3Dy&ids=i-1%2Ci-2&page_size=10&page_token=ab",
        )
        .unwrap();
        assert_eq!(back, q);
        let none = InstanceFilter::default().to_query(&PageRequest::default());
        assert_eq!(serde_urlencoded::to_string(&none).unwrap(), "");
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
