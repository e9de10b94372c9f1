//! Cross-cutting API conventions: request IDs, error bodies, idempotency keys, pagination tokens,
//! content types, metrics and the OpenAPI document.

use crate::common::{assert_error, decode, spawn};

#[tokio::test]
async fn every_response_has_a_request_id_and_errors_carry_it() {
    let c = spawn().await;
    let resp = c.http.get(c.url("/healthz")).send().await.unwrap();
    assert!(
        resp.headers()
            .get("x-request-id")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("req-")
    );
    // A client-supplied ID is kept, so logs on both sides correlate.
    let resp = c
        .http
        .get(c.url("/v1/zones"))
        .header("x-request-id", "trace-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "trace-123");

    // An unknown path has its own code: a 404 that is not a resource's absence.
    let (status, headers, body) = c.get_json("/v1/nothing-here").await;
    assert_error(status, &headers, &body, 404, "UNKNOWN_PATH");
    let resp = c
        .http
        .put(c.url("/v1/instances"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    let (status, headers, body) = decode(resp).await;
    assert_error(status, &headers, &body, 405, "METHOD_NOT_ALLOWED");
}

#[tokio::test]
async fn idempotency_keys_replay_or_conflict() {
    let c = spawn().await;
    let body = serde_json::json!({"name": "idem", "zone": "zone-a", "instance_type": "sim.small"});
    let send = |key: &'static str, body: serde_json::Value| {
        let req = c
            .http
            .post(c.url("/v1/instances"))
            .header("idempotency-key", key)
            .json(&body);
        async move { decode(req.send().await.unwrap()).await }
    };
    let (s1, h1, b1) = send("key-1", body.clone()).await;
    assert_eq!(s1, 201, "{b1}");
    assert!(h1.get("idempotent-replayed").is_none());
    let (s2, h2, b2) = send("key-1", body.clone()).await;
    assert_eq!(s2, 201);
    assert_eq!(h2["idempotent-replayed"], "true");
    assert_eq!(
        b1["id"], b2["id"],
        "the replay returns the original instance"
    );
    let all = c
        .client
        .list_all_instances(&Default::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 1, "no second instance was made");

    let other =
        serde_json::json!({"name": "idem2", "zone": "zone-a", "instance_type": "sim.small"});
    let (s3, h3, b3) = send("key-1", other.clone()).await;
    assert_error(s3, &h3, &b3, 409, "IDEMPOTENCY_KEY_REUSED");

    // A failed request is not remembered: fixing the body and retrying with the key works.
    let bad = serde_json::json!({"name": "idem3", "zone": "zone-q", "instance_type": "sim.small"});
    let (s4, _, _) = send("key-2", bad).await;
    assert_eq!(s4, 422);
    let (s5, _, b5) = send(
        "key-2",
        serde_json::json!({"name": "idem3", "zone": "zone-a", "instance_type": "sim.small"}),
    )
    .await;
    assert_eq!(s5, 201, "{b5}");
    // Keys are per project and per path: the same key on another path is a mismatch.
    let (s6, h6, b6) = decode(
        c.http
            .post(c.url("/v1/load-balancers"))
            .header("idempotency-key", "key-1")
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(s6, &h6, &b6, 409, "IDEMPOTENCY_KEY_REUSED");
    // A key with a space in it is not a key (the document's pattern says so too): 400, and no
    // instance is made.
    let (s7, h7, b7) = send("key 3", body.clone()).await;
    assert_error(s7, &h7, &b7, 400, "INVALID_ARGUMENT");
    let all = c
        .client
        .list_all_instances(&Default::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 2, "{all:?}");
}

/// A request under a key claims it, changes what it changes and records its response in one
/// transaction: requests racing with the same key find nothing or the answer, never a
/// half-done request, so all of them get the one instance.
#[tokio::test]
async fn concurrent_requests_with_one_key_make_one_instance_and_share_its_answer() {
    let c = spawn().await;
    let body = serde_json::json!({"name": "raced", "zone": "zone-b", "instance_type": "sim.small"});
    let sends = (0..8).map(|_| {
        let req = c
            .http
            .post(c.url("/v1/instances"))
            .header("idempotency-key", "race-1")
            .json(&body);
        async move { decode(req.send().await.unwrap()).await }
    });
    let answers = futures_util::future::join_all(sends).await;
    let ids: std::collections::BTreeSet<String> = answers
        .iter()
        .map(|(status, _, body)| {
            assert_eq!(
                *status, 201,
                "every request gets the created instance: {body}"
            );
            body["id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1, "one instance for one key: {ids:?}");
    let replayed = answers
        .iter()
        .filter(|(_, headers, _)| headers.get("idempotent-replayed").is_some())
        .count();
    assert_eq!(replayed, 7, "all but the first are replays");
    let all = c
        .client
        .list_all_instances(&Default::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
}

/// A request that claimed its key and then failed (the name is taken) leaves nothing under
/// the key: once the cause is gone, the same request with the same key runs.
#[tokio::test]
async fn a_request_that_fails_after_claiming_its_key_can_be_retried_with_it() {
    let c = spawn().await;
    let holder = c.instance("taken", "zone-a").await;
    let body = serde_json::json!({"name": "taken", "zone": "zone-a", "instance_type": "sim.small"});
    let send = || {
        let req = c
            .http
            .post(c.url("/v1/instances"))
            .header("idempotency-key", "retry-1")
            .json(&body);
        async move { decode(req.send().await.unwrap()).await }
    };
    let (status, headers, b) = send().await;
    assert_error(status, &headers, &b, 409, "ALREADY_EXISTS");
    c.client
        .terminate_instance(holder.id.as_str())
        .await
        .unwrap();
    let (status, headers, b) = send().await;
    assert_eq!(status, 201, "{b}");
    assert!(headers.get("idempotent-replayed").is_none());
    let (status, headers, again) = send().await;
    assert_eq!(status, 201);
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(again["id"], b["id"]);
}

#[tokio::test]
async fn page_tokens_are_opaque_and_bound_to_their_query() {
    let c = spawn().await;
    for n in 0..3 {
        c.instance(&format!("n{n}"), "zone-a").await;
    }
    let (_, _, page) = c.get_json("/v1/instances?page_size=1&zone=zone-a").await;
    let token = page["next_page_token"].as_str().unwrap().to_owned();
    let (status, _, next) = c
        .get_json(&format!(
            "/v1/instances?page_size=1&zone=zone-a&page_token={token}"
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(next["items"][0]["name"], "n1");
    // The same token with different filters is refused.
    let (status, headers, body) = c
        .get_json(&format!(
            "/v1/instances?page_size=1&zone=zone-b&page_token={token}"
        ))
        .await;
    assert_error(status, &headers, &body, 400, "INVALID_ARGUMENT");
    let (status, headers, body) = c.get_json("/v1/instances?page_token=garbage").await;
    assert_error(status, &headers, &body, 400, "INVALID_ARGUMENT");
    // Sizes: too large is coerced, negative or non-numeric is a 400 naming the parameter.
    let (status, _, body) = c.get_json("/v1/instances?page_size=100000").await;
    assert_eq!(status, 200);
    assert_eq!(body["items"].as_array().unwrap().len(), 3);
    let (status, headers, body) = c.get_json("/v1/instances?page_size=-1").await;
    assert_error(status, &headers, &body, 400, "INVALID_ARGUMENT");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("page_size"),
        "{body}"
    );
    let (status, headers, body) = c.get_json("/v1/instances?state=exploded").await;
    assert_error(status, &headers, &body, 400, "INVALID_ARGUMENT");
    let (status, headers, body) = c.get_json("/v1/instances?colour=red").await;
    assert_error(status, &headers, &body, 400, "INVALID_ARGUMENT");
}

#[tokio::test]
async fn bodies_must_be_json() {
    let c = spawn().await;
    let resp = c
        .http
        .post(c.url("/v1/instances"))
        .header("content-type", "text/plain")
        .body("name=x")
        .send()
        .await
        .unwrap();
    let (status, headers, body) = decode(resp).await;
    assert_error(status, &headers, &body, 415, "UNSUPPORTED_MEDIA_TYPE");
    // An array is not an object, though serde could read a struct from one.
    let i = c.instance("n1", "zone-a").await;
    for (method, path) in [
        (reqwest::Method::PATCH, format!("/v1/instances/{}", i.id)),
        (reqwest::Method::POST, "/v1/load-balancers".to_owned()),
    ] {
        let resp = c
            .http
            .request(method, c.url(&path))
            .header("content-type", "application/json")
            .body("[null, null]")
            .send()
            .await
            .unwrap();
        let (status, headers, body) = decode(resp).await;
        assert_error(status, &headers, &body, 422, "VALIDATION_FAILED");
        assert_eq!(body["error"]["field"], "body", "{body}");
    }
    let huge = "x".repeat(3 << 20);
    let resp = c
        .http
        .post(c.url("/v1/instances"))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);
}

#[tokio::test]
async fn metrics_count_requests_by_route() {
    let c = spawn().await;
    c.instance("m", "zone-a").await;
    c.client.get_instance("i-0000000000000001").await.unwrap();
    let text = c
        .http
        .get(c.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(
            r#"cloudsim_http_requests_total{route="/v1/instances",method="POST",status="201"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains(r#"cloudsim_http_requests_total{route="/v1/instances/{id}",method="GET",status="404"} 1"#), "{text}");
    assert!(
        text.contains("cloudsim_http_request_duration_seconds_bucket"),
        "{text}"
    );
}

#[tokio::test]
async fn openapi_document_lists_every_route() {
    let c = spawn().await;
    let (status, _, doc) = c.get_json("/openapi.json").await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/v1/instances",
        "/v1/instances/{id}",
        "/v1/instances/{id}/stop",
        "/v1/load-balancers/{id}",
        "/v1/route-tables/{table}/routes",
        "/v1/events",
        "/v1/admin/faults",
        "/v1/admin/zones/{zone}",
        "/v1/zones",
        "/v1/instance-types",
    ] {
        assert!(paths.contains_key(p), "missing {p}");
    }
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for s in [
        "Instance",
        "LoadBalancer",
        "Route",
        "ApiErrorBody",
        "ErrorCode",
        "ZonePolicy",
    ] {
        assert!(schemas.contains_key(s), "missing schema {s}");
    }
    // The served document knows this region: its zones and instance types, and IDs' forms.
    let zone = &schemas["CreateInstanceRequest"]["properties"]["zone"];
    assert_eq!(
        zone["enum"],
        serde_json::json!(["zone-a", "zone-b", "zone-c"]),
        "{zone}"
    );
    let types = schemas["CreateInstanceRequest"]["properties"]["instance_type"]["enum"]
        .as_array()
        .unwrap();
    assert!(types.contains(&"sim.small".into()), "{types:?}");
    let id = &paths["/v1/instances/{id}"]["get"]["parameters"][0];
    assert_eq!(id["schema"]["pattern"], "^i-[0-9a-f]{16}$", "{id}");
    // The rules a schema can state are stated: an Idempotency-Key's form, tags' bounds.
    let key = &paths["/v1/instances"]["post"]["parameters"][0];
    assert_eq!(key["name"], "Idempotency-Key");
    assert_eq!(
        key["schema"]["pattern"],
        cloud_api::IDEMPOTENCY_KEY_PATTERN,
        "{key}"
    );
    assert_eq!(
        schemas["CreateInstanceRequest"]["properties"]["tags"]["$ref"],
        "#/components/schemas/Tags"
    );
    assert_eq!(schemas["Tags"]["maxProperties"], cloud_api::MAX_TAGS);
    assert_eq!(
        schemas["Tags"]["propertyNames"]["maxLength"],
        cloud_api::MAX_TAG_KEY
    );
    // Creates link to what follows, with OpenAPI's own key names.
    let links = &paths["/v1/instances"]["post"]["responses"]["201"]["links"];
    assert_eq!(
        links["instances_read"]["operationId"], "instances_read",
        "{links}"
    );
    assert_eq!(
        links["instances_read"]["parameters"]["id"],
        "$response.body#/id"
    );
}

#[tokio::test]
async fn the_console_is_served_with_its_types_and_a_strict_policy() {
    let c = crate::common::spawn().await;
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_redirect.get(c.url("/ui")).send().await.unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(r.headers()["location"], "/ui/");
    for (path, ty) in [
        ("/ui/", "text/html; charset=utf-8"),
        ("/ui/console.js", "text/javascript; charset=utf-8"),
        ("/ui/console.css", "text/css; charset=utf-8"),
    ] {
        let r = c.http.get(c.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["content-type"], ty, "{path}");
        let csp = r.headers()["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe"),
            "{csp}"
        );
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
        assert!(!r.text().await.unwrap().is_empty(), "{path}");
    }
    let r = c.http.get(c.url("/ui/nope.js")).send().await.unwrap();
    assert_eq!(r.status(), 404);
}
