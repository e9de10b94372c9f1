//! Real sockets for data-plane tests, shared by the `it` and `console` test binaries: backends
//! are TCP servers on instances' loopback addresses that answer with their name.

use std::net::SocketAddr;
use std::time::Duration;

use cloud_api::{CreateLoadBalancerRequest, HealthCheck, Instance, Listener, Protocol, ZonePolicy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A port unlikely to be used by another test running at the same time.
pub fn port() -> u16 {
    rand::random_range(20_000..60_000)
}

/// Answers every connection with `name\n`.
pub async fn backend(ip: std::net::Ipv4Addr, port: u16, name: &'static str) -> JoinHandle<()> {
    let l = TcpListener::bind(SocketAddr::from((ip, port)))
        .await
        .unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let _ = s.write_all(format!("{name}\n").as_bytes()).await;
            });
        }
    })
}

/// Connects to a frontend and returns the backend's answer, or None if refused.
pub async fn ask(ip: std::net::Ipv4Addr, port: u16) -> Option<String> {
    let mut s = tokio::time::timeout(
        Duration::from_secs(3),
        TcpStream::connect(SocketAddr::from((ip, port))),
    )
    .await
    .ok()?
    .ok()?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(3), s.read_to_string(&mut out))
        .await
        .ok()?
        .ok()?;
    (!out.is_empty()).then(|| out.trim().to_owned())
}

pub fn fast_checks() -> HealthCheck {
    HealthCheck {
        interval_seconds: 1,
        timeout_seconds: 1,
        healthy_threshold: 1,
        unhealthy_threshold: 1,
        ..HealthCheck::default()
    }
}

/// A TCP load balancer on `port` over `backends`, with fast checks, the default zone policy
/// and a frontend in every zone; tests adjust the rest with struct update syntax.
pub fn tcp_lb(
    name: &str,
    port: u16,
    backend_port: u16,
    backends: &[&Instance],
) -> CreateLoadBalancerRequest {
    CreateLoadBalancerRequest {
        name: name.into(),
        scheme: Default::default(),
        ip_mode: Default::default(),
        listeners: vec![Listener {
            protocol: Protocol::Tcp,
            port,
            backend_port,
        }],
        backends: backends.iter().map(|n| n.id.clone()).collect(),
        backend_groups: vec![],
        health_check: fast_checks(),
        zone_policy: ZonePolicy::default(),
        zones: None,
        requested_ips: vec![],
        tags: Default::default(),
    }
}
