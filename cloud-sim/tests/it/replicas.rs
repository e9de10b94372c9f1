//! Two cloud-sim API servers on one PostgreSQL database, as a team shares one simulated cloud.
//! Needs `SIMCLOUD_TEST_POSTGRES` (the nextest profiles leave these tests out of the default run;
//! `.ci/run`'s PostgreSQL pass runs them with `--ignore-default-filter`).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloud_api::{CreateLoadBalancerRequest, ErrorCode, EventKind, InstanceState};
use cloud_client::{Client, RetryPolicy};
use cloud_sim::{Config, Server};
use futures_util::StreamExt;

use crate::common::{fresh_postgres_database, instance_req, postgres_server, wait_for};
use crate::net::{ask, backend, port, tcp_lb};

const T: Duration = Duration::from_secs(20);

struct Replicas {
    a: Server,
    b: Server,
    ca: Client,
    cb: Client,
}

/// Replica `a` runs the data plane; `b` serves only the API (two data planes would contend for
/// the same frontend addresses).
async fn replicas(config: Config) -> Replicas {
    let server = postgres_server().expect(
        "this test needs SIMCLOUD_TEST_POSTGRES=postgres://... (.ci/run sets it for its \
         PostgreSQL pass; tests/postgres/server.sh starts a server)",
    );
    let url = fresh_postgres_database(&server).await;
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let a = Server::start(config.clone(), &url, any).await.unwrap();
    let b = Server::start(
        Config {
            data_plane: false,
            ..config
        },
        &url,
        any,
    )
    .await
    .unwrap();
    let client = |s: &Server| {
        Client::builder(s.base_url())
            .retry(RetryPolicy::none())
            .build()
            .unwrap()
    };
    let (ca, cb) = (client(&a), client(&b));
    Replicas { a, b, ca, cb }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replicas_allocate_unique_names_and_addresses_under_concurrent_creates() {
    let r = replicas(Config::for_tests_isolated()).await;
    const N: usize = 500;
    let zones = ["zone-a", "zone-b", "zone-c"];
    let created: Vec<_> = futures_util::stream::iter(0..N)
        .map(|n| {
            let client = if n % 2 == 0 { &r.ca } else { &r.cb };
            async move {
                client
                    .create_instance(&instance_req(&format!("n-{n:03}"), zones[n % 3]))
                    .await
                    .unwrap_or_else(|e| panic!("create n-{n:03}: {e}"))
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let ips: HashSet<_> = created.iter().map(|i| i.private_ip).collect();
    assert_eq!(ips.len(), N, "every instance has its own address");
    // Every acknowledged create is readable from both replicas.
    for i in &created {
        for c in [&r.ca, &r.cb] {
            let got = c.get_instance(i.id.as_str()).await.unwrap();
            assert_eq!(got.map(|g| g.private_ip), Some(i.private_ip), "{}", i.id);
        }
    }
    // The same name sent to both at once: exactly one wins.
    let (in_a, in_b) = (
        instance_req("contested", "zone-a"),
        instance_req("contested", "zone-b"),
    );
    let (x, y) = tokio::join!(r.ca.create_instance(&in_a), r.cb.create_instance(&in_b));
    let wins = [&x, &y].iter().filter(|o| o.is_ok()).count();
    assert_eq!(wins, 1, "{x:?} / {y:?}");
    let loser = x.err().or(y.err()).unwrap();
    assert_eq!(loser.code(), Some(ErrorCode::AlreadyExists), "{loser}");
    r.a.shutdown().await.unwrap();
    r.b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replicas_share_idempotency_keys_events_and_settle_once() {
    let config = Config {
        instance_boot_delay: Duration::from_millis(300),
        ..Config::for_tests_isolated()
    };
    let r = replicas(config).await;
    // An Idempotency-Key used on one replica replays on the other.
    let http = reqwest::Client::new();
    let body = serde_json::json!({"name": "once", "zone": "zone-a", "instance_type": "sim.small"});
    let post = |base: String| {
        http.post(format!("{base}/v1/instances"))
            .header("idempotency-key", "shared-key-1")
            .json(&body)
            .send()
    };
    let first = post(r.a.base_url()).await.unwrap();
    assert_eq!(first.status(), 201);
    let first: serde_json::Value = first.json().await.unwrap();
    let again = post(r.b.base_url()).await.unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(
        again
            .headers()
            .get("idempotent-replayed")
            .map(|v| v.to_str().unwrap()),
        Some("true")
    );
    let again: serde_json::Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);

    // A long poll on b wakes for a change committed through a.
    let head =
        r.cb.events(i64::MAX, 1, Duration::ZERO)
            .await
            .unwrap()
            .last_seq;
    let waiting = tokio::spawn({
        let cb = r.cb.clone();
        async move {
            let started = Instant::now();
            let page = cb.events(head, 100, Duration::from_secs(20)).await.unwrap();
            (page, started.elapsed())
        }
    });
    // Give the poll a moment to park, then write through the other replica.
    wait_for("the long poll to park on b", T, || async {
        let metrics = reqwest::get(format!("{}/metrics", r.b.base_url()))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        metrics
            .lines()
            .any(|l| l.starts_with("cloudsim_event_polls_waiting") && !l.ends_with(" 0"))
            .then_some(())
    })
    .await;
    let woken =
        r.ca.create_instance(&instance_req("woken", "zone-b"))
            .await
            .unwrap();
    let (page, waited) = waiting.await.unwrap();
    assert!(
        page.events
            .iter()
            .any(|e| e.resource_id == woken.id.as_str()),
        "b's long poll returned {page:?}"
    );
    assert!(
        waited < Duration::from_secs(15),
        "woken by the commit, not the timeout: {waited:?}"
    );

    // Both replicas run the worker; each boot settles exactly once.
    wait_for("woken running", T, || async {
        let i = r.cb.get_instance(woken.id.as_str()).await.unwrap()?;
        (i.state == InstanceState::Running).then_some(())
    })
    .await;
    let all = r.ca.events(0, 1000, Duration::ZERO).await.unwrap();
    let settled = all
        .events
        .iter()
        .filter(|e| e.resource_id == woken.id.as_str() && e.kind == EventKind::StateChanged)
        .count();
    assert_eq!(settled, 1, "{:?}", all.events);
    r.a.shutdown().await.unwrap();
    r.b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_traffic_flows_through_a_load_balancer_created_on_the_other_replica() {
    let r = replicas(Config::for_tests_isolated()).await;
    let (lb_port, backend_port) = (port(), port());
    let i =
        r.cb.create_instance(&instance_req("web-1", "zone-a"))
            .await
            .unwrap();
    let _server = backend(i.private_ip, backend_port, "web-1").await;
    let lb =
        r.cb.create_load_balancer(&CreateLoadBalancerRequest {
            zones: Some(vec!["zone-a".into()]),
            ..tcp_lb("web", lb_port, backend_port, &[&i])
        })
        .await
        .unwrap();
    let f = lb.frontends[0].ip;
    // Replica a's data plane learns of it from the database and serves it.
    wait_for("a to serve b's load balancer", T, || async move {
        (ask(f, lb_port).await.as_deref() == Some("web-1")).then_some(())
    })
    .await;
    r.a.shutdown().await.unwrap();
    r.b.shutdown().await.unwrap();
}

/// One replica is the real binary, killed with SIGKILL while both take creates (possibly inside a
/// transaction, holding the write lock): the other carries on, and every create either
/// acknowledged is in the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_replica_killed_mid_storm_loses_nothing_acknowledged() {
    let server = postgres_server().expect("this test needs SIMCLOUD_TEST_POSTGRES");
    let url = fresh_postgres_database(&server).await;
    let mut killed = crate::durability::start_with(&[
        "--database-url".as_ref(),
        url.as_ref(),
        "--data-plane=false".as_ref(),
    ]);
    let survivor = Server::start(
        Config {
            data_plane: false,
            ..Config::for_tests()
        },
        &url,
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .unwrap();
    let client = |base: &str| {
        Client::builder(base)
            .retry(RetryPolicy::none())
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap()
    };
    let (ck, cs) = (client(&killed.base_url), client(&survivor.base_url()));
    let acked: Arc<Mutex<Vec<(String, bool)>>> = Arc::default();
    let stop = tokio_util::sync::CancellationToken::new();
    let mut workers = Vec::new();
    for w in 0..8 {
        let on_killed = w % 2 == 0;
        let c = if on_killed { ck.clone() } else { cs.clone() };
        let (acked, stop) = (acked.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            for n in 0.. {
                if stop.is_cancelled() {
                    return;
                }
                let zone = ["zone-a", "zone-b", "zone-c"][(w + n) % 3];
                match c
                    .create_instance(&instance_req(&format!("w{w}-n{n}"), zone))
                    .await
                {
                    Ok(i) => acked.lock().unwrap().push((i.id.to_string(), on_killed)),
                    // The killed replica's clients stop at their first failure.
                    Err(_) if on_killed => return,
                    Err(e) => panic!("the surviving replica failed a create: {e}"),
                }
            }
        }));
    }
    let count = |killed_side: Option<bool>| {
        acked
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, k)| killed_side.is_none_or(|want| *k == want))
            .count()
    };
    wait_for(
        "100 creates acknowledged by the replica to kill",
        T,
        || async { (count(Some(true)) >= 100).then_some(()) },
    )
    .await;
    killed.child.kill().expect("kill -9");
    killed.child.wait().unwrap();
    let before = count(Some(false));
    wait_for("the survivor to go on after the kill", T, || async {
        (count(Some(false)) >= before + 100).then_some(())
    })
    .await;
    stop.cancel();
    for w in workers {
        w.await.unwrap();
    }
    let all = cs.list_all_instances(&Default::default()).await.unwrap();
    let stored: HashSet<String> = all.iter().map(|i| i.id.to_string()).collect();
    let acked = acked.lock().unwrap().clone();
    let missing: Vec<_> = acked
        .iter()
        .filter(|(id, _)| !stored.contains(id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged creates lost: {missing:?}",
        missing.len(),
        acked.len()
    );
    let ips: HashSet<_> = all.iter().map(|i| i.private_ip).collect();
    assert_eq!(ips.len(), all.len(), "an address was handed out twice");
    survivor.shutdown().await.unwrap();
}

/// `cloud-sim data-plane` as two processes, one per zone's frontend pool (as on two hosts), with
/// an API replica that has none: each serves its own frontends, and the API answers traffic
/// reports from what both publish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_data_planes_apart_serve_their_frontends_and_publish_traffic() {
    let server = postgres_server().expect("this test needs SIMCLOUD_TEST_POSTGRES");
    let url = fresh_postgres_database(&server).await;
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let config = Config::for_tests_isolated();
    let pool = |zone: usize| config.zones[zone].lb_pool;
    let api = Server::start(
        Config {
            data_plane: false,
            ..config.clone()
        },
        &url,
        any,
    )
    .await
    .unwrap();
    let data_plane = |name: &str, zone: usize| Config {
        frontends: Some(vec![pool(zone)]),
        data_plane_only: Some(name.to_owned()),
        ..config.clone()
    };
    let dp_a = Server::start(data_plane("dp-a", 0), &url, any)
        .await
        .unwrap();
    let dp_b = Server::start(data_plane("dp-b", 1), &url, any)
        .await
        .unwrap();
    // A data plane serves no API.
    let status = reqwest::get(format!("{}/v1/instances", dp_a.base_url()))
        .await
        .unwrap()
        .status();
    assert_eq!(status, 404);

    let c = Client::builder(api.base_url())
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    let (lb_port, backend_port) = (port(), port());
    let mut nodes = Vec::new();
    let mut servers = Vec::new();
    for (name, zone) in [("a1", "zone-a"), ("b1", "zone-b")] {
        let i = c.create_instance(&instance_req(name, zone)).await.unwrap();
        servers.push(backend(i.private_ip, backend_port, name).await);
        nodes.push(i);
    }
    let lb = c
        .create_load_balancer(&CreateLoadBalancerRequest {
            zones: Some(vec!["zone-a".into(), "zone-b".into(), "zone-c".into()]),
            ..tcp_lb(
                "web",
                lb_port,
                backend_port,
                &nodes.iter().collect::<Vec<_>>(),
            )
        })
        .await
        .unwrap();
    let ip = |zone: &str| lb.frontends.iter().find(|f| f.zone == zone).unwrap().ip;
    let (fa, fb, fc) = (ip("zone-a"), ip("zone-b"), ip("zone-c"));
    wait_for("zone-a's frontend served by dp-a", T, || async move {
        (ask(fa, lb_port).await.as_deref() == Some("a1")).then_some(())
    })
    .await;
    wait_for("zone-b's frontend served by dp-b", T, || async move {
        (ask(fb, lb_port).await.as_deref() == Some("b1")).then_some(())
    })
    .await;
    assert_eq!(
        ask(fc, lb_port).await,
        None,
        "no data plane serves zone-c's pool"
    );
    let id = lb.id.to_string();
    let report = wait_for("the API to report both data planes' traffic", T, || async {
        let r = c.load_balancer_traffic(&id).await.unwrap()?;
        let from = |zone: &str| {
            r.rows
                .iter()
                .filter(|row| row.frontend_zone == zone)
                .map(|row| row.connections)
                .sum::<u64>()
        };
        (from("zone-a") >= 1 && from("zone-b") >= 1).then_some(r)
    })
    .await;
    assert!(report.backends.iter().all(|b| b.healthy), "{report:?}");
    assert_eq!(report.in_zone_fraction, Some(1.0), "{report:?}");
    for s in [dp_a, dp_b, api] {
        s.shutdown().await.unwrap();
    }
    drop(servers);
}
