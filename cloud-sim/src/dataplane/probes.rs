//! Health probes of a load balancer's backends (TCP connect or HTTP GET), all at once, every
//! interval, feeding `health::Health`.

use super::*;

/// One health check: TCP connect, or an HTTP GET that must answer 2xx.
pub(super) async fn check(
    ip: Ipv4Addr,
    port: u16,
    protocol: HealthCheckProtocol,
    path: &str,
    timeout: Duration,
) -> bool {
    let attempt = async {
        let mut s = TcpStream::connect(SocketAddr::from((ip, port)))
            .await
            .ok()?;
        if protocol == HealthCheckProtocol::Tcp {
            return Some(true);
        }
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {ip}:{port}\r\nUser-Agent: cloud-sim-health-check\r\n\r\n").as_bytes()).await.ok()?;
        let mut buf = [0u8; 16];
        let mut n = 0;
        while n < 12 {
            let k = s.read(&mut buf[n..]).await.ok()?;
            if k == 0 {
                break;
            }
            n += k;
        }
        let line = String::from_utf8_lossy(&buf[..n]).to_string();
        Some(line.starts_with("HTTP/1.") && line.get(9..10) == Some("2"))
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

pub(super) async fn health_loop(rt: Arc<LbRt>) {
    loop {
        let (hc, default_port) = {
            let lb = rt.lb.lock().expect("lb lock");
            (
                lb.health_check.clone(),
                lb.listeners.first().map(|l| l.backend_port),
            )
        };
        let outage = rt.outage.lock().expect("outage lock").clone();
        let targets = rt.backends.lock().expect("backends lock").clone();
        let port = hc.port.or(default_port);
        let timeout = Duration::from_secs(u64::from(hc.timeout_seconds.max(1)));
        let path = hc.path.clone().unwrap_or_else(|| "/".into());
        // Every backend probed at once: one slow or silent backend costs its timeout once, not
        // once per backend after it.
        let results = futures_util::future::join_all(targets.iter().map(|b| {
            let (path, outage, hc) = (&path, &outage, &hc);
            async move {
                let ok = match port {
                    _ if outage.contains(&b.zone) || b.ip.is_unspecified() => None,
                    Some(p) => Some(check(b.ip, p, hc.protocol, path, timeout).await),
                    None => Some(false),
                };
                (b.instance_id.clone(), ok)
            }
        }))
        .await;
        let mut any_flipped = false;
        {
            let mut backends = rt.backends.lock().expect("backends lock");
            for (id, ok) in results {
                if let Some(b) = backends.iter_mut().find(|b| b.instance_id == id) {
                    let flipped = match ok {
                        None => b.health.force_down(),
                        Some(ok) => {
                            b.health
                                .observe(ok, hc.healthy_threshold, hc.unhealthy_threshold)
                        }
                    };
                    if flipped {
                        tracing::info!(lb = %rt.id, backend = %b.instance_id, zone = %b.zone, healthy = b.health.healthy, "backend health changed");
                        any_flipped = true;
                    }
                }
            }
        }
        if any_flipped {
            rt.replan();
        }
        tokio::time::sleep(Duration::from_secs(u64::from(hc.interval_seconds.max(1)))).await;
    }
}
