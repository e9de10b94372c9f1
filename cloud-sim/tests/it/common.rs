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
    let url = match postgres_server() {
        Some(server) => fresh_postgres_database(&server).await,
        None => "sqlite::memory:".to_owned(),
    };
    let server = Server::start(
        config,
        &url,
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
    )
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

/// The PostgreSQL server these tests run on instead of SQLite: `SIMCLOUD_TEST_POSTGRES`, a URL
/// such as `postgres://postgres@127.0.0.1:55432/postgres` (`.ci/run` runs this binary a second
/// time with it set, against `tests/postgres/server.sh`).
pub fn postgres_server() -> Option<String> {
    std::env::var("SIMCLOUD_TEST_POSTGRES")
        .ok()
        .filter(|s| !s.is_empty())
}

/// Creates an empty database on `server` and returns its URL.
pub async fn fresh_postgres_database(server: &str) -> String {
    use sqlx::{Connection, Executor};
    let name = format!("cloudsim_test_{:016x}", rand::random::<u64>());
    let mut conn = sqlx::PgConnection::connect(server)
        .await
        .unwrap_or_else(|e| panic!("connect to SIMCLOUD_TEST_POSTGRES={server}: {e}"));
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .expect("create a test database");
    let base = server.rsplit_once('/').map_or(server, |(base, _)| base);
    format!("{base}/{name}")
}

/// A database that outlives its server, for restart tests: a fresh PostgreSQL database, or a
/// SQLite file in a new temporary directory (returned, for the test to remove).
pub async fn persistent_database() -> (String, Option<std::path::PathBuf>) {
    if let Some(server) = postgres_server() {
        return (fresh_postgres_database(&server).await, None);
    }
    let dir = std::env::temp_dir().join(format!("cloud-sim-db-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    (
        format!("sqlite://{}", dir.join("db.sqlite").display()),
        Some(dir),
    )
}
