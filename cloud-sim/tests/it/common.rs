use cloud_api::{CreateInstanceRequest, Instance, Tags};
use cloud_client::{Client, RetryPolicy};
use cloud_sim::{Config, Server};

pub struct TestCloud {
    pub server: Server,
    /// A client that never retries, so tests see every error.
    pub client: Client,
    pub http: reqwest::Client,
}

/// A cloud in its own loopback block ([`Config::for_tests_isolated`]): its frontends and
/// instances cannot meet another test's.
pub async fn spawn() -> TestCloud {
    spawn_with(Config::for_tests_isolated()).await
}

/// A cloud with the default test addresses (127.1.<zone>.0/24 instances, 127.64.<zone>.0/24
/// pools), for tests that check address allocation itself and carry no traffic.
pub async fn spawn_default() -> TestCloud {
    spawn_with(Config::for_tests()).await
}

pub async fn spawn_with(config: Config) -> TestCloud {
    let server = Server::start_in_memory(config)
        .await
        .expect("start cloud-sim");
    let client = Client::builder(server.base_url())
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    TestCloud {
        server,
        client,
        http: reqwest::Client::new(),
    }
}

impl TestCloud {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.server.base_url(), path)
    }

    pub async fn instance(&self, name: &str, zone: &str) -> Instance {
        self.client
            .create_instance(&instance_req(name, zone))
            .await
            .expect("create instance")
    }

    /// POSTs raw JSON and returns status, headers and body as JSON.
    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
        let resp = self
            .http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap();
        decode(resp).await
    }

    pub async fn get_json(
        &self,
        path: &str,
    ) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
        decode(self.http.get(self.url(path)).send().await.unwrap()).await
    }
}

pub async fn decode(
    resp: reqwest::Response,
) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.unwrap();
    let body = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    (status, headers, body)
}

pub fn instance_req(name: &str, zone: &str) -> CreateInstanceRequest {
    CreateInstanceRequest {
        name: name.into(),
        zone: zone.into(),
        instance_type: "sim.small".into(),
        tags: Tags::new(),
        private_ip: None,
    }
}

/// Asserts the standard error body: code, request ID matching the header, and field.
pub fn assert_error(
    status: u16,
    headers: &reqwest::header::HeaderMap,
    body: &serde_json::Value,
    want_status: u16,
    want_code: &str,
) {
    assert_eq!(status, want_status, "body: {body}");
    assert_eq!(body["error"]["code"], want_code, "body: {body}");
    let rid = headers
        .get("x-request-id")
        .expect("x-request-id header")
        .to_str()
        .unwrap();
    assert_eq!(body["error"]["request_id"], rid);
    assert!(!body["error"]["message"].as_str().unwrap().is_empty());
}

pub use sim_common::wait_for;
