//! TCP: accept on a frontend, proxy each connection to the backend chosen for its client zone.

use super::*;

pub(super) async fn accept_loop(
    dp: Arc<DataPlane>,
    rt: Arc<LbRt>,
    listener: TcpListener,
    zone: String,
    port: u16,
) {
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(lb = %rt.id, error = %e, "data plane: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let client_zone = dp.client_zone(peer, &zone);
        let (dp, rt) = (dp.clone(), rt.clone());
        tokio::spawn(async move {
            let gone = rt.connections.clone();
            tokio::select! {
                () = proxy(dp, rt, client, client_zone, port) => {}
                () = gone.cancelled() => {}
            }
        });
    }
}

pub(super) async fn proxy(
    dp: Arc<DataPlane>,
    rt: Arc<LbRt>,
    mut client: TcpStream,
    client_zone: String,
    port: u16,
) {
    let Some((backend, _open)) = rt.choose(&client_zone, &dp.metrics) else {
        rt.refused.fetch_add(1, Ordering::Relaxed);
        dp.metrics
            .lb_refused
            .get_or_create(&crate::metrics::LbRefusedLabels {
                lb: rt.id.clone(),
                frontend_zone: client_zone,
            })
            .inc();
        return;
    };
    let Some(backend_port) = rt.backend_port(port, Protocol::Tcp) else {
        return;
    };
    let stats = rt.row(
        RowKey {
            port,
            frontend_zone: client_zone.clone(),
            backend_zone: backend.zone.clone(),
            backend: backend.instance_id.clone(),
        },
        &dp.metrics,
    );
    if !dp.latency.is_empty()
        && let Some(delay) = dp.latency.get(&(client_zone.clone(), backend.zone.clone()))
    {
        tokio::time::sleep(*delay).await;
    }
    let upstream = tokio::time::timeout(
        CONNECT_TIMEOUT,
        TcpStream::connect(SocketAddr::from((backend.ip, backend_port))),
    )
    .await;
    let mut upstream = match upstream {
        Ok(Ok(s)) => s,
        _ => {
            stats.error();
            return;
        }
    };
    stats.connections.fetch_add(1, Ordering::Relaxed);
    if let Some(m) = &stats.metrics {
        m.connections.inc();
    }
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        Ok((to_backend, to_client)) => {
            stats.bytes_in.fetch_add(to_backend, Ordering::Relaxed);
            stats.bytes_out.fetch_add(to_client, Ordering::Relaxed);
            if let Some(m) = &stats.metrics {
                m.bytes_in.inc_by(to_backend);
                m.bytes_out.inc_by(to_client);
            }
        }
        Err(_) => stats.error(),
    }
}
