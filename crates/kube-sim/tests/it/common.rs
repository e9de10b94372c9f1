use std::time::Duration;

use kube_sim::{Server, ServerConfig};
use serde_json::Value;

pub struct Sim {
    pub server: Server,
    pub http: reqwest::Client,
}

pub async fn start() -> Sim {
    start_with(ServerConfig::default()).await
}

pub async fn start_with(config: ServerConfig) -> Sim {
    let server = Server::start(config).await.expect("start kube-sim");
    Sim {
        server,
        http: reqwest::Client::new(),
    }
}

pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Sim {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.server.url(), path)
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: &str,
        body: Option<Value>,
    ) -> Resp {
        let mut req = self.http.request(method, self.url(path));
        if let Some(b) = body {
            req = req
                .header("content-type", content_type)
                .body(serde_json::to_vec(&b).unwrap());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(reqwest::Method::GET, path, "", None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.send(reqwest::Method::POST, path, "application/json", Some(body))
            .await
    }

    pub async fn put(&self, path: &str, body: Value) -> Resp {
        self.send(reqwest::Method::PUT, path, "application/json", Some(body))
            .await
    }

    pub async fn patch(&self, path: &str, ty: &str, body: Value) -> Resp {
        let ct = match ty {
            "merge" => "application/merge-patch+json",
            "json" => "application/json-patch+json",
            "strategic" => "application/strategic-merge-patch+json",
            other => other,
        };
        self.send(reqwest::Method::PATCH, path, ct, Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, body: Value) -> Resp {
        self.send(
            reqwest::Method::DELETE,
            path,
            "application/json",
            Some(body),
        )
        .await
    }

    /// Opens a watch and returns a reader of its events.
    pub async fn watch(&self, path_and_query: &str) -> WatchReader {
        let resp = self
            .http
            .get(self.url(path_and_query))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "watch {path_and_query}");
        WatchReader {
            resp,
            buf: Vec::new(),
        }
    }
}

pub struct WatchReader {
    resp: reqwest::Response,
    buf: Vec<u8>,
}

impl WatchReader {
    /// The next event, or None when the stream ends; fails the test after `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return Some(
                    serde_json::from_slice(&line[..line.len() - 1])
                        .expect("one JSON event per line"),
                );
            }
            match tokio::time::timeout_at(deadline, self.resp.chunk()).await {
                Err(_) => panic!("no watch event within {timeout:?}"),
                Ok(Ok(Some(chunk))) => self.buf.extend_from_slice(&chunk),
                Ok(Ok(None)) => return None,
                Ok(Err(e)) => panic!("watch stream failed: {e}"),
            }
        }
    }

    /// Asserts nothing arrives within `d`.
    pub async fn quiet_for(&mut self, d: Duration) {
        if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
            panic!(
                "unexpected event: {}",
                String::from_utf8_lossy(&self.buf[..i])
            );
        }
        if let Ok(Ok(Some(chunk))) = tokio::time::timeout(d, self.resp.chunk()).await {
            panic!("unexpected event: {}", String::from_utf8_lossy(&chunk));
        }
    }
}

pub fn rv(v: &Value) -> u64 {
    v["metadata"]["resourceVersion"]
        .as_str()
        .expect("resourceVersion")
        .parse()
        .expect("numeric resourceVersion")
}

pub use sim_common::wait_for;
