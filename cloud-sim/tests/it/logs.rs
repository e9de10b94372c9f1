//! What cloud-sim logs, read from the real binary's JSON lines.

use std::time::Duration;

use crate::common::{instance_req, wait_for};
use crate::durability::{start, temp_dir};

/// Every line logged while serving a request carries its request ID (the request's span), so
/// one request's story can be pulled out of an interleaved log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_log_line_of_a_request_carries_its_id() {
    let dir = temp_dir();
    let mut p = start(&dir);
    let id = "req-logs-test-1";
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/instances", p.base_url))
        .header(cloud_api::REQUEST_ID_HEADER, id)
        .json(&instance_req("traced", "zone-a"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let logs = p.logs.clone();
    let created = wait_for("the create logged", Duration::from_secs(20), || {
        let logs = logs.clone();
        async move {
            logs.lock()
                .unwrap()
                .iter()
                .find(|l| l["message"] == "instance created")
                .cloned()
        }
    })
    .await;
    assert_eq!(created["span"]["request_id"], id, "{created}");
    assert_eq!(created["span"]["name"], "request", "{created}");
    p.child.kill().unwrap();
    let _ = p.child.wait();
    let _ = std::fs::remove_dir_all(dir);
}
