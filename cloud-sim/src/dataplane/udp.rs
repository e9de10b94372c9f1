//! UDP: one flow per client address, stuck to its backend until idle.

use super::*;

/// How long a UDP flow (client address to backend) lives without traffic.
pub const UDP_FLOW_IDLE: Duration = Duration::from_secs(60);

/// One UDP client flow: its backend socket and when it last carried a datagram.
pub(super) struct UdpFlow {
    pub(super) upstream: Arc<tokio::net::UdpSocket>,
    pub(super) stats: Arc<RowStats>,
    pub(super) last: Arc<Mutex<Instant>>,
    /// Counts the flow as open on its backend while it lives.
    pub(super) _open: ActiveConn,
    /// Relays the backend's replies to the client; stopped when the flow is dropped.
    pub(super) replies: JoinHandle<()>,
}

impl Drop for UdpFlow {
    fn drop(&mut self) {
        self.replies.abort();
    }
}

impl UdpFlow {
    pub(super) fn touch(&self) {
        *self.last.lock().expect("flow lock") = Instant::now();
    }

    pub(super) fn idle(&self) -> bool {
        self.last.lock().expect("flow lock").elapsed() >= UDP_FLOW_IDLE
    }
}

/// UDP: each client address is a flow pinned to the backend chosen for its first datagram
/// (per-client-flow stickiness); replies go back from the frontend address.
pub(super) async fn udp_loop(
    dp: Arc<DataPlane>,
    rt: Arc<LbRt>,
    socket: Arc<tokio::net::UdpSocket>,
    zone: String,
    port: u16,
) {
    let mut flows: HashMap<SocketAddr, UdpFlow> = HashMap::new();
    let mut buf = vec![0u8; 65_536];
    let mut sweep = tokio::time::interval(Duration::from_secs(5));
    loop {
        let (n, client) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(_) => continue,
            },
            _ = sweep.tick() => {
                flows.retain(|_, f| !f.idle());
                continue;
            }
        };
        let flow = match flows.entry(client) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                match open_udp_flow(&dp, &rt, &socket, &zone, port, client).await {
                    Some(flow) => e.insert(flow),
                    None => continue,
                }
            }
        };
        flow.touch();
        if flow.upstream.send(&buf[..n]).await.is_ok() {
            flow.stats.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
            if let Some(m) = &flow.stats.metrics {
                m.bytes_in.inc_by(n as u64);
            }
        } else {
            flow.stats.error();
        }
    }
}

/// Picks a backend for a new UDP client (same zone first, like TCP) and opens its flow.
/// `None` when there is no healthy backend or the backend socket cannot be opened; the
/// datagram is then dropped and counted.
pub(super) async fn open_udp_flow(
    dp: &DataPlane,
    rt: &LbRt,
    socket: &Arc<tokio::net::UdpSocket>,
    frontend_zone: &str,
    port: u16,
    client: SocketAddr,
) -> Option<UdpFlow> {
    let client_zone = dp.client_zone(client, frontend_zone);
    let Some((backend, open)) = rt.choose(&client_zone, &dp.metrics) else {
        rt.refused.fetch_add(1, Ordering::Relaxed);
        return None;
    };
    let backend_port = rt.backend_port(port, Protocol::Udp)?;
    let stats = rt.row(
        RowKey {
            port,
            frontend_zone: client_zone,
            backend_zone: backend.zone.clone(),
            backend: backend.instance_id.clone(),
        },
        &dp.metrics,
    );
    let upstream = async {
        let s = tokio::net::UdpSocket::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
        s.connect(SocketAddr::from((backend.ip, backend_port)))
            .await?;
        std::io::Result::Ok(Arc::new(s))
    }
    .await;
    let Ok(upstream) = upstream else {
        stats.error();
        return None;
    };
    stats.connections.fetch_add(1, Ordering::Relaxed);
    if let Some(m) = &stats.metrics {
        m.connections.inc();
    }
    let last = Arc::new(Mutex::new(Instant::now()));
    let replies = {
        let (upstream, socket, stats, last) = (
            upstream.clone(),
            socket.clone(),
            stats.clone(),
            last.clone(),
        );
        tokio::spawn(async move {
            let mut rbuf = vec![0u8; 65_536];
            while let Ok(k) = upstream.recv(&mut rbuf).await {
                *last.lock().expect("flow lock") = Instant::now();
                if socket.send_to(&rbuf[..k], client).await.is_ok() {
                    stats.bytes_out.fetch_add(k as u64, Ordering::Relaxed);
                    if let Some(m) = &stats.metrics {
                        m.bytes_out.inc_by(k as u64);
                    }
                }
            }
        })
    };
    Some(UdpFlow {
        upstream,
        stats,
        last,
        _open: open,
        replies,
    })
}
