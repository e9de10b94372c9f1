//! The load-balancer data plane with real sockets: backends are TCP servers on the instances'
//! loopback addresses that answer with their name.

use std::net::SocketAddr;
use std::time::Duration;

use cloud_api::{
    Balancing, CreateLoadBalancerRequest, HealthCheck, Instance, Listener, Protocol,
    UpdateLoadBalancerRequest, ZoneAffinity, ZonePolicy,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::common::{TestCloud, spawn, wait_for};
use crate::net::{ask, backend, fast_checks, port, tcp_lb};

const T: Duration = Duration::from_secs(20);

struct Setup {
    c: TestCloud,
    nodes: Vec<Instance>,
    backends: Vec<JoinHandle<()>>,
    lb_id: String,
    frontend: std::collections::BTreeMap<String, std::net::Ipv4Addr>,
    port: u16,
    backend_port: u16,
}

async fn setup(policy: ZonePolicy) -> Setup {
    let c = spawn().await;
    let backend_port = port();
    let port = port();
    let mut nodes = Vec::new();
    let mut backends = Vec::new();
    for (name, zone) in [("a1", "zone-a"), ("b1", "zone-b"), ("c1", "zone-c")] {
        let i = c.instance(name, zone).await;
        backends.push(backend(i.private_ip, backend_port, name).await);
        nodes.push(i);
    }
    let req = CreateLoadBalancerRequest {
        zone_policy: policy,
        ..tcp_lb("web", port, backend_port, &nodes.iter().collect::<Vec<_>>())
    };
    let lb = c.client.create_load_balancer(&req).await.unwrap();
    let frontend = lb
        .frontends
        .iter()
        .map(|f| (f.zone.clone(), f.ip))
        .collect();
    let lb_id = lb.id.to_string();
    wait_report(&c.client, &lb_id, "backends healthy", |r| {
        r.backends.len() == 3 && r.backends.iter().all(|b| b.healthy)
    })
    .await;
    Setup {
        c,
        nodes,
        backends,
        lb_id,
        frontend,
        port,
        backend_port,
    }
}

async fn traffic(client: &cloud_client::Client, id: &str) -> cloud_api::TrafficReport {
    client
        .load_balancer_traffic(id)
        .await
        .unwrap()
        .expect("the load balancer exists")
}

/// Polls the load balancer's traffic report until `ok` holds for it.
async fn wait_report(
    client: &cloud_client::Client,
    id: &str,
    what: &str,
    ok: impl Fn(&cloud_api::TrafficReport) -> bool,
) {
    let ok = &ok;
    wait_for(what, T, move || async move {
        ok(&traffic(client, id).await).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_zone_off_keeps_every_connection_in_its_zone() {
    let s = setup(ZonePolicy::default()).await;
    for (zone, want) in [("zone-a", "a1"), ("zone-b", "b1"), ("zone-c", "c1")] {
        for _ in 0..5 {
            assert_eq!(
                ask(s.frontend[zone], s.port).await.as_deref(),
                Some(want),
                "{zone}"
            );
        }
    }
    // A connection's bytes are counted when the proxy has finished copying, which may be just
    // after the client read its answer: wait for the last ones.
    wait_report(
        &s.c.client,
        &s.lb_id,
        "15 connections counted with their bytes",
        |r| r.connections == 15 && r.rows.iter().map(|row| row.bytes_out).sum::<u64>() == 45,
    )
    .await;
    let r = traffic(&s.c.client, &s.lb_id).await;
    assert_eq!(r.in_zone_fraction, Some(1.0));
    assert!(
        r.rows
            .iter()
            .all(|row| row.frontend_zone == row.backend_zone
                && row.connections == 5
                && row.bytes_out == 15),
        "{:?}",
        r.rows
    );
    // The same counters are on /metrics.
    let text =
        s.c.http
            .get(s.c.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
    let line = format!(
        "cloudsim_lb_connections_total{{lb=\"{}\",port=\"{}\",frontend_zone=\"zone-b\",backend_zone=\"zone-b\"}} 5",
        s.lb_id, s.port
    );
    assert!(text.contains(&line), "missing {line}");
    let _ = &s.backends;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_backends_get_no_new_connections() {
    let s = setup(ZonePolicy::default()).await;
    // a1 dies: after its health check fails, zone-a's clients go to the other zones.
    s.backends[0].abort();
    wait_report(&s.c.client, &s.lb_id, "a1 unhealthy", |r| {
        r.backends.iter().any(|b| b.zone == "zone-a" && !b.healthy)
    })
    .await;
    for _ in 0..10 {
        let got = ask(s.frontend["zone-a"], s.port).await;
        assert!(matches!(got.as_deref(), Some("b1" | "c1")), "{got:?}");
    }
    // Same-zone-only with fail-closed refuses instead.
    s.c.client
        .update_load_balancer(
            &s.lb_id,
            &UpdateLoadBalancerRequest {
                zone_policy: Some(ZonePolicy {
                    cross_zone: false,
                    zone_affinity: ZoneAffinity::SameZoneOnly,
                    fail_open: false,
                    ..ZonePolicy::default()
                }),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    let (frontend, port) = (s.frontend["zone-a"], s.port);
    wait_for("zone-a refused", T, || async move {
        ask(frontend, port).await.is_none().then_some(())
    })
    .await;
    assert_eq!(
        ask(s.frontend["zone-b"], s.port).await.as_deref(),
        Some("b1")
    );
    assert!(traffic(&s.c.client, &s.lb_id).await.refused >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zone_outage_closes_its_frontend_and_moves_traffic() {
    let s = setup(ZonePolicy {
        cross_zone: false,
        zone_affinity: ZoneAffinity::PreferSameZone,
        fail_open: true,
        ..ZonePolicy::default()
    })
    .await;
    s.c.client
        .set_zone_state("zone-b", cloud_api::ZoneState::Outage)
        .await
        .unwrap();
    let (fb, port) = (s.frontend["zone-b"], s.port);
    wait_for("zone-b frontend closed", T, || async move {
        ask(fb, port).await.is_none().then_some(())
    })
    .await;
    wait_report(&s.c.client, &s.lb_id, "b1 marked unhealthy", |r| {
        r.backends.iter().any(|b| b.zone == "zone-b" && !b.healthy)
    })
    .await;
    // Nothing goes to the zone in outage; zone-a's clients stay on a1 (prefer-same-zone never
    // spills while the zone has a healthy backend).
    for _ in 0..10 {
        let got = ask(s.frontend["zone-a"], s.port).await;
        assert_eq!(got.as_deref(), Some("a1"));
    }
    s.c.client
        .set_zone_state("zone-b", cloud_api::ZoneState::Available)
        .await
        .unwrap();
    wait_for("zone-b back", T, || async move {
        (ask(fb, port).await.as_deref() == Some("b1")).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_follow_updates_and_deletes() {
    let s = setup(ZonePolicy::default()).await;
    let new_port = port();
    s.c.client
        .update_load_balancer(
            &s.lb_id,
            &UpdateLoadBalancerRequest {
                listeners: Some(vec![Listener {
                    protocol: Protocol::Tcp,
                    port: new_port,
                    backend_port: s.backend_port,
                }]),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    let f = s.frontend["zone-a"];
    wait_for("new port open", T, || async move {
        (ask(f, new_port).await.as_deref() == Some("a1")).then_some(())
    })
    .await;
    let old = s.port;
    wait_for("old port closed", T, || async move {
        ask(f, old).await.is_none().then_some(())
    })
    .await;
    s.c.client.delete_load_balancer(&s.lb_id).await.unwrap();
    wait_for("deleted: closed", T, || async move {
        ask(f, new_port).await.is_none().then_some(())
    })
    .await;
    let _ = &s.nodes;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_restores_listeners_from_the_database() {
    let (url, dir) = crate::common::persistent_database().await;
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = cloud_sim::Server::start(cloud_sim::Config::for_tests(), &url, addr)
        .await
        .unwrap();
    let client = cloud_client::Client::new(server.base_url()).unwrap();
    let i = client
        .create_instance(&crate::common::instance_req("r1", "zone-a"))
        .await
        .unwrap();
    let backend_port = port();
    let _b = backend(i.private_ip, backend_port, "r1").await;
    let lb_port = port();
    let req = CreateLoadBalancerRequest {
        zones: Some(vec!["zone-a".into()]),
        ..tcp_lb("kept", lb_port, backend_port, &[&i])
    };
    let lb = client.create_load_balancer(&req).await.unwrap();
    let f = lb.frontends[0].ip;
    wait_for("serving", T, || async move {
        (ask(f, lb_port).await.as_deref() == Some("r1")).then_some(())
    })
    .await;
    server.shutdown().await.unwrap();
    assert_eq!(ask(f, lb_port).await, None, "stopped with the server");
    let server = cloud_sim::Server::start(cloud_sim::Config::for_tests(), &url, addr)
        .await
        .unwrap();
    wait_for("serving again after restart", T, || async move {
        (ask(f, lb_port).await.as_deref() == Some("r1")).then_some(())
    })
    .await;
    server.shutdown().await.unwrap();
    if let Some(dir) = dir {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_on_instances_are_in_their_instance_zone() {
    let s = setup(ZonePolicy::default()).await;
    // A client on b1's address connects to zone-a's frontend: it is a zone-b client.
    let b1 = s.nodes[1].private_ip;
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::from((b1, 0))).unwrap();
    let mut stream = sock
        .connect(SocketAddr::from((s.frontend["zone-a"], s.port)))
        .await
        .unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    assert_eq!(out.trim(), "b1");
    let r = traffic(&s.c.client, &s.lb_id).await;
    assert!(
        r.rows
            .iter()
            .any(|row| row.frontend_zone == "zone-b" && row.backend_zone == "zone-b"),
        "{:?}",
        r.rows
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_zone_connections_pay_the_inter_zone_latency() {
    let mut config = cloud_sim::Config::for_tests();
    config.inter_zone_latency.insert(
        ("zone-a".into(), "zone-b".into()),
        Duration::from_millis(300),
    );
    let c = crate::common::spawn_with(config).await;
    let b = c.instance("only-b", "zone-b").await;
    let backend_port = port();
    let _srv = backend(b.private_ip, backend_port, "only-b").await;
    let lb_port = port();
    let req = CreateLoadBalancerRequest {
        zone_policy: ZonePolicy {
            cross_zone: true,
            ..ZonePolicy::default()
        },
        ..tcp_lb("far", lb_port, backend_port, &[&b])
    };
    let lb = c.client.create_load_balancer(&req).await.unwrap();
    let ip = |z: &str| lb.frontends.iter().find(|f| f.zone == z).unwrap().ip;
    let (fa, fb) = (ip("zone-a"), ip("zone-b"));
    wait_for("serving", T, || async move {
        (ask(fb, lb_port).await.as_deref() == Some("only-b")).then_some(())
    })
    .await;
    let t = std::time::Instant::now();
    assert_eq!(ask(fb, lb_port).await.as_deref(), Some("only-b"));
    let local = t.elapsed();
    let t = std::time::Instant::now();
    assert_eq!(ask(fa, lb_port).await.as_deref(), Some("only-b"));
    let cross = t.elapsed();
    assert!(
        cross >= Duration::from_millis(300),
        "cross-zone took {cross:?}"
    );
    assert!(
        local < Duration::from_millis(300),
        "same-zone took {local:?}"
    );
}

/// A load balancer over `nodes` with one frontend in zone-a, once every backend is healthy:
/// its ID and frontend address.
async fn zone_a_lb(
    c: &TestCloud,
    nodes: &[Instance],
    listener: Listener,
    health_check: HealthCheck,
    zone_policy: ZonePolicy,
) -> (String, SocketAddr) {
    let port = listener.port;
    let lb = c
        .client
        .create_load_balancer(&CreateLoadBalancerRequest {
            name: "zone-a".into(),
            scheme: Default::default(),
            ip_mode: Default::default(),
            listeners: vec![listener],
            backends: nodes.iter().map(|n| n.id.clone()).collect(),
            backend_groups: vec![],
            health_check,
            zone_policy,
            zones: Some(vec!["zone-a".into()]),
            requested_ips: vec![],
            tags: Default::default(),
        })
        .await
        .unwrap();
    let id = lb.id.to_string();
    wait_report(&c.client, &id, "backends healthy", |r| {
        r.backends.len() == nodes.len() && r.backends.iter().all(|b| b.healthy)
    })
    .await;
    (id, SocketAddr::from((lb.frontends[0].ip, port)))
}

/// Echoes every datagram back prefixed with `name:`.
async fn udp_backend(ip: std::net::Ipv4Addr, port: u16, name: &'static str) -> JoinHandle<()> {
    let s = tokio::net::UdpSocket::bind(SocketAddr::from((ip, port)))
        .await
        .unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = s.recv_from(&mut buf).await {
            let reply = format!("{name}:{}", String::from_utf8_lossy(&buf[..n]));
            let _ = s.send_to(reply.as_bytes(), from).await;
        }
    })
}

/// Sends `msg` from `sock` to the frontend and returns the reply, or None after a timeout.
async fn udp_ask(sock: &tokio::net::UdpSocket, to: SocketAddr, msg: &str) -> Option<String> {
    sock.send_to(msg.as_bytes(), to).await.ok()?;
    let mut buf = [0u8; 1500];
    let (n, from) = tokio::time::timeout(Duration::from_millis(500), sock.recv_from(&mut buf))
        .await
        .ok()?
        .ok()?;
    // Replies must come from the frontend address the client sent to.
    assert_eq!(
        from, to,
        "UDP reply came from {from}, not the frontend {to}"
    );
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_flows_stick_to_one_backend_and_are_counted() {
    let c = spawn().await;
    let (port, backend_port, health_port) = (port(), port(), port());
    let mut nodes = Vec::new();
    let mut keep = Vec::new();
    for name in ["a1", "a2"] {
        let i = c.instance(name, "zone-a").await;
        keep.push(udp_backend(i.private_ip, backend_port, name).await);
        // UDP cannot be probed, so the check is TCP on a separate port, as on real clouds.
        keep.push(backend(i.private_ip, health_port, name).await);
        nodes.push(i);
    }
    let listener = Listener {
        protocol: Protocol::Udp,
        port,
        backend_port,
    };
    let check = HealthCheck {
        port: Some(health_port),
        ..fast_checks()
    };
    let (id, frontend) = zone_a_lb(&c, &nodes, listener, check, ZonePolicy::default()).await;

    // Several client sockets, each sending several datagrams: every reply on one socket
    // comes from the same backend, and the sockets between them reach both backends.
    let mut seen = std::collections::BTreeSet::new();
    for k in 0..6 {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        // The first datagram may race the listener coming up; retry it until answered.
        let first = wait_for("UDP frontend answers", T, || {
            let sock = &sock;
            async move { udp_ask(sock, frontend, &format!("{k}-0")).await }
        })
        .await;
        let (who, echoed) = first.split_once(':').unwrap();
        assert_eq!(echoed, format!("{k}-0"));
        for j in 1..4 {
            let reply = udp_ask(&sock, frontend, &format!("{k}-{j}"))
                .await
                .expect("reply on an established flow");
            assert_eq!(reply, format!("{who}:{k}-{j}"), "flow {k} changed backend");
        }
        seen.insert(who.to_owned());
    }
    assert_eq!(
        seen.len(),
        2,
        "flows should spread over both backends: {seen:?}"
    );

    let r = traffic(&c.client, &id).await;
    let (flows, bytes_in) = r
        .rows
        .iter()
        .filter(|r| r.port == port)
        .fold((0, 0), |(f, b), r| (f + r.connections, b + r.bytes_in));
    assert!(flows >= 6, "one flow per client socket, got {flows}");
    assert!(
        bytes_in >= 6 * 4 * 3,
        "datagram bytes counted, got {bytes_in}"
    );
    drop(keep);
}

/// Answers `name\n` and keeps the connection open until the client closes it.
async fn holding_backend(ip: std::net::Ipv4Addr, port: u16, name: &'static str) -> JoinHandle<()> {
    let l = TcpListener::bind(SocketAddr::from((ip, port)))
        .await
        .unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let _ = s.write_all(format!("{name}\n").as_bytes()).await;
                let mut sink = Vec::new();
                let _ = s.read_to_end(&mut sink).await;
            });
        }
    })
}

/// Opens a connection through the frontend, returning the backend's name and the open stream.
async fn open_held(to: SocketAddr) -> (String, TcpStream) {
    let mut s = TcpStream::connect(to).await.unwrap();
    let mut name = Vec::new();
    let mut b = [0u8; 1];
    while tokio::time::timeout(T, s.read_exact(&mut b))
        .await
        .expect("backend answers")
        .is_ok()
        && b[0] != b'\n'
    {
        name.push(b[0]);
    }
    (String::from_utf8(name).unwrap(), s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_connections_sends_new_connections_to_the_idler_backend() {
    let c = spawn().await;
    let (port, backend_port) = (port(), port());
    let mut nodes = Vec::new();
    let mut keep = Vec::new();
    for name in ["a1", "a2"] {
        let i = c.instance(name, "zone-a").await;
        keep.push(holding_backend(i.private_ip, backend_port, name).await);
        nodes.push(i);
    }
    let listener = Listener {
        protocol: Protocol::Tcp,
        port,
        backend_port,
    };
    let policy = ZonePolicy {
        balancing: Balancing::LeastConnections,
        ..ZonePolicy::default()
    };
    let (id, frontend) = zone_a_lb(&c, &nodes, listener, fast_checks(), policy).await;
    wait_for("frontend listening", T, || async move {
        TcpStream::connect(frontend).await.ok().map(drop)
    })
    .await;

    // The readiness probe's connection must be gone before counting.
    wait_report(&c.client, &id, "no open connections", |r| {
        r.backends.iter().all(|b| b.active_connections == 0)
    })
    .await;
    // Four held connections spread two and two.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(open_held(frontend).await);
    }
    let on = |name: &str, held: &[(String, TcpStream)]| held.iter().filter(|h| h.0 == name).count();
    assert_eq!((on("a1", &held), on("a2", &held)), (2, 2));

    // Close a2's two; once the LB sees a2 idle, both new connections must go to a2 (round
    // robin would send one of them to a1).
    let a2 = nodes[1].id.to_string();
    held.retain(|h| h.0 != "a2");
    wait_report(&c.client, &id, "a2 idle, a1 holding two", |r| {
        r.backends
            .iter()
            .all(|b| b.active_connections == if b.instance_id == a2 { 0 } else { 2 })
    })
    .await;
    for _ in 0..2 {
        held.push(open_held(frontend).await);
    }
    assert_eq!(
        (on("a1", &held), on("a2", &held)),
        (2, 2),
        "{:?}",
        held.iter().map(|h| &h.0).collect::<Vec<_>>()
    );
    drop(keep);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frontend_address_held_elsewhere_is_taken_over_once_free() {
    let c = spawn().await;
    let (backend_port, port) = (port(), port());
    let a1 = c.instance("a1", "zone-a").await;
    let _backend = backend(a1.private_ip, backend_port, "a1").await;
    // Another process holds the address the load balancer asks for (in zone-a's pool).
    let pool = c.server.state().cloud.config().zones[0]
        .lb_pool
        .network()
        .octets();
    let ip = std::net::Ipv4Addr::new(pool[0], pool[1], pool[2], rand::random_range(100..250));
    let squatter = TcpListener::bind(SocketAddr::from((ip, port)))
        .await
        .unwrap();
    let req = CreateLoadBalancerRequest {
        zones: Some(vec!["zone-a".into()]),
        requested_ips: vec![ip],
        ..tcp_lb("web", port, backend_port, &[&a1])
    };
    let lb = c.client.create_load_balancer(&req).await.unwrap();
    assert_eq!(lb.frontends[0].ip, ip);
    wait_report(&c.client, lb.id.as_str(), "the backend healthy", |r| {
        r.backends.iter().all(|b| b.healthy)
    })
    .await;
    // Connections reach the holder, not the load balancer.
    let client = TcpStream::connect(SocketAddr::from((ip, port))).await;
    assert!(client.is_ok());
    let accepted = tokio::time::timeout(T, squatter.accept()).await;
    assert!(
        matches!(accepted, Ok(Ok(_))),
        "the holder took the connection"
    );
    drop((client, accepted, squatter));
    // Once the address is free, a reconcile pass binds it.
    wait_for(
        "the load balancer listening on the freed address",
        T,
        || async { (ask(ip, port).await.as_deref() == Some("a1")).then_some(()) },
    )
    .await;
}

/// A deleted load balancer takes its open connections with it: none outlives it on the backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_load_balancer_ends_its_open_connections() {
    let c = spawn().await;
    let (port, backend_port) = (port(), port());
    let node = c.instance("a1", "zone-a").await;
    let _backend = holding_backend(node.private_ip, backend_port, "a1").await;
    let req = CreateLoadBalancerRequest {
        zones: Some(vec!["zone-a".into()]),
        ..tcp_lb("held", port, backend_port, &[&node])
    };
    let lb = c.client.create_load_balancer(&req).await.unwrap();
    let id = lb.id.to_string();
    wait_report(&c.client, &id, "backend healthy", |r| {
        r.backends.iter().any(|b| b.healthy)
    })
    .await;
    let (name, mut held) = open_held(SocketAddr::from((lb.frontends[0].ip, port))).await;
    assert_eq!(name, "a1");
    c.client.delete_load_balancer(&id).await.unwrap();
    // The proxy closes its side: the client reads end-of-stream (or a reset), within the deadline.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(T, held.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the connection outlived its load balancer");
}

/// `--data-plane=false`: the API gives the load balancer its frontends and turns it active, but
/// nothing listens on them (the same load balancer with the data plane on answers: see above).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_data_plane_load_balancers_get_addresses_but_serve_nothing() {
    let c = crate::common::spawn_with(cloud_sim::Config {
        data_plane: false,
        ..cloud_sim::Config::for_tests_isolated()
    })
    .await;
    let backend_port = port();
    let i = c.instance("a1", "zone-a").await;
    let _b = backend(i.private_ip, backend_port, "a1").await;
    let port = port();
    let lb = c
        .client
        .create_load_balancer(&tcp_lb("web", port, backend_port, &[&i]))
        .await
        .unwrap();
    let id = lb.id.to_string();
    let active = wait_for("the load balancer active", T, || {
        let (client, id) = (c.client.clone(), id.clone());
        async move {
            let lb = client.get_load_balancer(&id).await.ok()??;
            (lb.state == cloud_api::LoadBalancerState::Active).then_some(lb)
        }
    })
    .await;
    assert_eq!(active.frontends.len(), 3, "a frontend in every zone");
    for f in &active.frontends {
        assert_eq!(ask(f.ip, port).await, None, "{} answered", f.ip);
    }
}
