//! The sandbox's data plane, what kube-proxy and the pods would do on the simulated nodes, with
//! real TCP on loopback:
//!
//! - every running Pod (not host-network) listens for its TCP ports and answers one line,
//!   `pod=<name> node=<node> zone=<zone>`. It listens at its pod IP moved onto a loopback block
//!   ([`on_loopback`]: the IP's host part within the block), because the API server refuses
//!   loopback addresses in EndpointSlices: Pods keep ordinary IPs (10.244.x.y) in the API, and
//!   the data plane reaches them at 127.B.x.y, as a CNI's routes would;
//! - every running node listens on `<node IP>:<nodePort>` for each NodePort and LoadBalancer
//!   Service: it writes `node=<name> zone=<zone>` (the hop a load balancer reached) and then, as
//!   kube-proxy would, connects to an endpoint chosen by `topology::proxy` for this node
//!   (`externalTrafficPolicy`, hints, ready / serving-terminating fallback) and relays its answer.
//!   With no endpoint the connection closes after the node's line (kube-proxy would reject it;
//!   the line keeps load-balancer-only experiments working without Pods);
//! - every running node listens on `<node IP>:`[`IN_CLUSTER_PORT`] as an HTTP `CONNECT` proxy:
//!   `CONNECT <clusterIP>:<port>` is a client on that node calling a Service's ClusterIP, routed
//!   with `internalTrafficPolicy` and the hints for this node's zone;
//! - `healthCheckNodePort` answers `/healthz` with 200 only while a ready endpoint of the Service
//!   is on the node (kube-proxy's rule for `externalTrafficPolicy: Local`), 503 otherwise.
//!
//! Among the chosen endpoints each node takes turns (round robin per node and Service port, as
//! kube-proxy's IPVS mode does by default).

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use topology::proxy::{Policies, ProxyEndpoint};

/// The port of each node's in-cluster proxy (`CONNECT <clusterIP>:<port>`): the port Envoy
/// sidecars capture outbound traffic on, for want of a kube-proxy equivalent.
pub const IN_CLUSTER_PORT: u16 = 15001;

/// A running node as the data plane sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEndpoint {
    pub name: String,
    pub ip: Ipv4Addr,
    pub zone: String,
}

/// A running Pod that answers on its ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodEndpoint {
    pub name: String,
    pub ip: Ipv4Addr,
    pub ports: Vec<u16>,
    pub node: String,
    pub zone: String,
}

/// What one listener does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Responder {
    /// A node port of Service `namespace/service`, port `port` (the Service's port).
    NodePort {
        node: String,
        zone: String,
        namespace: String,
        service: String,
        port: i32,
    },
    /// A health-check node port of Service `namespace/service`.
    Health {
        node: String,
        namespace: String,
        service: String,
    },
    /// The node's in-cluster proxy.
    InCluster { node: String, zone: String },
    /// A Pod.
    Pod {
        pod: String,
        node: String,
        zone: String,
    },
}

/// The listeners the nodes and Pods should have (pure).
pub fn desired(
    services: &[Service],
    nodes: &[NodeEndpoint],
    pods: &[PodEndpoint],
) -> BTreeMap<(Ipv4Addr, u16), Responder> {
    let mut out = BTreeMap::new();
    for n in nodes {
        out.insert(
            (n.ip, IN_CLUSTER_PORT),
            Responder::InCluster {
                node: n.name.clone(),
                zone: n.zone.clone(),
            },
        );
    }
    for p in pods {
        for port in &p.ports {
            out.insert(
                (p.ip, *port),
                Responder::Pod {
                    pod: p.name.clone(),
                    node: p.node.clone(),
                    zone: p.zone.clone(),
                },
            );
        }
    }
    for svc in services {
        let Some(spec) = &svc.spec else { continue };
        let ty = spec.type_.as_deref().unwrap_or("ClusterIP");
        if ty != "NodePort" && ty != "LoadBalancer" {
            continue;
        }
        let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
        let name = svc.metadata.name.as_deref().unwrap_or("");
        let ports: Vec<(u16, i32)> = spec
            .ports
            .iter()
            .flatten()
            .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
            .filter_map(|p| Some((u16::try_from(p.node_port?).ok()?, p.port)))
            .collect();
        let health = spec
            .health_check_node_port
            .and_then(|n| u16::try_from(n).ok());
        for n in nodes {
            for (node_port, port) in &ports {
                out.insert(
                    (n.ip, *node_port),
                    Responder::NodePort {
                        node: n.name.clone(),
                        zone: n.zone.clone(),
                        namespace: ns.to_owned(),
                        service: name.to_owned(),
                        port: *port,
                    },
                );
            }
            if let Some(h) = health {
                out.insert(
                    (n.ip, h),
                    Responder::Health {
                        node: n.name.clone(),
                        namespace: ns.to_owned(),
                        service: name.to_owned(),
                    },
                );
            }
        }
    }
    out
}

/// Which traffic a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traffic {
    /// Arrived on a node port (or through a load balancer): `externalTrafficPolicy`.
    External,
    /// From a client on the node to the ClusterIP: `internalTrafficPolicy`.
    Internal,
}

/// The endpoints (`ip:port`) kube-proxy on `node` in `zone` would send this Service port's
/// `traffic` to (pure).
pub fn endpoints_for(
    svc: &Service,
    port: &ServicePort,
    slices: &[EndpointSlice],
    node: &str,
    zone: &str,
    traffic: Traffic,
) -> Vec<SocketAddr> {
    let spec = svc.spec.clone().unwrap_or_default();
    let external_local = spec.external_traffic_policy.as_deref() == Some("Local")
        && matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer"));
    let internal_local = spec.internal_traffic_policy.as_deref() == Some("Local");
    let local = match traffic {
        Traffic::External => external_local,
        Traffic::Internal => internal_local,
    };
    let mut target: HashMap<String, u16> = HashMap::new();
    let mut eps: Vec<ProxyEndpoint> = Vec::new();
    let want = port.name.clone().unwrap_or_default();
    for s in slices {
        let Some(p) = s
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.clone().unwrap_or_default() == want)
            .and_then(|p| u16::try_from(p.port?).ok())
        else {
            continue;
        };
        for e in ProxyEndpoint::from_slices(std::slice::from_ref(s), node) {
            target.insert(e.id.clone(), p);
            eps.push(e);
        }
    }
    let c = topology::proxy::categorize(
        &eps,
        Policies {
            uses_cluster: !local,
            uses_local: local,
        },
        node,
        zone,
    );
    let chosen = if local { c.local } else { c.cluster };
    chosen
        .into_iter()
        .filter_map(|e| {
            let ip: Ipv4Addr = e.id.parse().ok()?;
            Some(SocketAddr::from((ip, *target.get(&e.id)?)))
        })
        .collect()
}

/// Ready endpoints of the Service on `node` (what a health-check node port reports).
pub fn local_ready_endpoints(slices: &[EndpointSlice], node: &str) -> usize {
    ProxyEndpoint::from_slices(slices, node)
        .iter()
        .filter(|e| e.local && e.ready)
        .count()
}

/// Where the data plane reaches pod IP `ip`: its host part within the loopback `block`
/// (10.244.3.7 in 127.134.0.0/16 is 127.134.3.7). Addresses already on loopback stay.
pub fn on_loopback(ip: Ipv4Addr, block: ipnet::Ipv4Net) -> Ipv4Addr {
    if ip.is_loopback() {
        return ip;
    }
    let host = u32::from(ip) & u32::from(block.hostmask());
    Ipv4Addr::from(u32::from(block.network()) | host)
}

/// Round-robin positions per (node, namespace/service, port).
type Turns = Arc<Mutex<HashMap<(String, String, i32), usize>>>;

/// What the listeners read: the cluster's Services and EndpointSlices as kube-proxy watches them.
#[derive(Clone)]
pub struct View {
    pub services: Store<Service>,
    pub slices: Store<EndpointSlice>,
    /// Where Pods listen (see [`on_loopback`]).
    pub loopback: ipnet::Ipv4Net,
    turns: Turns,
}

impl View {
    pub fn new(
        services: Store<Service>,
        slices: Store<EndpointSlice>,
        loopback: ipnet::Ipv4Net,
    ) -> Self {
        Self {
            services,
            slices,
            loopback,
            turns: Arc::default(),
        }
    }

    fn service(&self, ns: &str, name: &str) -> Option<Service> {
        self.services
            .state()
            .iter()
            .find(|s| {
                s.metadata.namespace.as_deref() == Some(ns)
                    && s.metadata.name.as_deref() == Some(name)
            })
            .map(|s| (**s).clone())
    }

    fn by_cluster_ip(&self, ip: Ipv4Addr, port: u16) -> Option<(Service, ServicePort)> {
        self.services.state().iter().find_map(|s| {
            let spec = s.spec.as_ref()?;
            let has_ip = spec
                .cluster_ips
                .iter()
                .flatten()
                .chain(spec.cluster_ip.iter())
                .any(|c| c.parse::<Ipv4Addr>().ok() == Some(ip));
            let p = spec.ports.iter().flatten().find(|p| {
                p.port == i32::from(port) && p.protocol.as_deref().unwrap_or("TCP") == "TCP"
            })?;
            has_ip.then(|| ((**s).clone(), p.clone()))
        })
    }

    fn slices_of(&self, ns: &str, name: &str) -> Vec<EndpointSlice> {
        self.slices
            .state()
            .iter()
            .filter(|s| {
                s.metadata.namespace.as_deref() == Some(ns)
                    && s.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get("kubernetes.io/service-name"))
                        .map(String::as_str)
                        == Some(name)
            })
            .map(|s| (**s).clone())
            .collect()
    }

    /// The next endpoint for a connection through `node`.
    fn pick(
        &self,
        svc: &Service,
        port: &ServicePort,
        node: &str,
        zone: &str,
        traffic: Traffic,
    ) -> Option<SocketAddr> {
        let ns = svc.metadata.namespace.clone().unwrap_or_default();
        let name = svc.metadata.name.clone().unwrap_or_default();
        let mut eps = endpoints_for(svc, port, &self.slices_of(&ns, &name), node, zone, traffic);
        if eps.is_empty() {
            return None;
        }
        eps.sort();
        let mut turns = self.turns.lock().expect("turns lock");
        let t = turns
            .entry((node.to_owned(), format!("{ns}/{name}"), port.port))
            .or_default();
        let e = eps[*t % eps.len()];
        *t = t.wrapping_add(1);
        let SocketAddr::V4(v4) = e else {
            return Some(e);
        };
        Some(SocketAddr::from((
            on_loopback(*v4.ip(), self.loopback),
            v4.port(),
        )))
    }
}

/// Relays an endpoint's answer (both ways) after `prefix` was written.
async fn relay(mut client: TcpStream, endpoint: Option<SocketAddr>) {
    let Some(addr) = endpoint else {
        let _ = client.shutdown().await;
        return;
    };
    match tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(addr)).await {
        Ok(Ok(mut upstream)) => {
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        }
        _ => tracing::debug!(%addr, "data plane: endpoint did not answer"),
    }
    let _ = client.shutdown().await;
}

async fn read_head(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
        match tokio::time::timeout(Duration::from_secs(2), s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

async fn http_reply(s: &mut TcpStream, code: &str, body: &str) {
    let resp = format!(
        "HTTP/1.1 {code}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(resp.as_bytes()).await;
    let _ = s.shutdown().await;
}

async fn serve(mut s: TcpStream, resp: Responder, view: View) {
    match resp {
        Responder::Pod { pod, node, zone } => {
            let _ = s
                .write_all(format!("pod={pod} node={node} zone={zone}\n").as_bytes())
                .await;
            let _ = s.shutdown().await;
        }
        Responder::NodePort {
            node,
            zone,
            namespace,
            service,
            port,
        } => {
            let _ = s
                .write_all(format!("node={node} zone={zone}\n").as_bytes())
                .await;
            let endpoint = view.service(&namespace, &service).and_then(|svc| {
                let sp = svc
                    .spec
                    .as_ref()?
                    .ports
                    .iter()
                    .flatten()
                    .find(|p| p.port == port)?
                    .clone();
                view.pick(&svc, &sp, &node, &zone, Traffic::External)
            });
            relay(s, endpoint).await;
        }
        Responder::InCluster { node, zone } => {
            let head = read_head(&mut s).await;
            let target = head
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("CONNECT "))
                .and_then(|l| l.split_whitespace().next())
                .and_then(|a| a.parse::<SocketAddr>().ok());
            let Some(SocketAddr::V4(target)) = target else {
                http_reply(
                    &mut s,
                    "400 Bad Request",
                    "{\"error\": \"expected CONNECT <clusterIP>:<port>\"}",
                )
                .await;
                return;
            };
            let Some((svc, sp)) = view.by_cluster_ip(*target.ip(), target.port()) else {
                http_reply(
                    &mut s,
                    "404 Not Found",
                    "{\"error\": \"no Service has this ClusterIP and port\"}",
                )
                .await;
                return;
            };
            let Some(endpoint) = view.pick(&svc, &sp, &node, &zone, Traffic::Internal) else {
                http_reply(
                    &mut s,
                    "503 Service Unavailable",
                    "{\"error\": \"the Service has no endpoints for this node\"}",
                )
                .await;
                return;
            };
            let _ = s
                .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .await;
            relay(s, Some(endpoint)).await;
        }
        Responder::Health {
            node,
            namespace,
            service,
        } => {
            let _ = read_head(&mut s).await;
            let n = local_ready_endpoints(&view.slices_of(&namespace, &service), &node);
            let body = format!(
                "{{\"service\": {{\"namespace\": \"{namespace}\", \"name\": \"{service}\"}}, \"localEndpoints\": {n}}}"
            );
            let code = if n > 0 {
                "200 OK"
            } else {
                "503 Service Unavailable"
            };
            http_reply(&mut s, code, &body).await;
        }
    }
}

/// The running listeners.
#[derive(Default)]
pub struct Listeners {
    running: HashMap<(Ipv4Addr, u16), (Responder, JoinHandle<()>)>,
}

impl Listeners {
    /// Makes the running listeners match `want`.
    pub fn sync(&mut self, view: &View, want: BTreeMap<(Ipv4Addr, u16), Responder>) {
        self.running.retain(|k, (r, h)| {
            let keep = want.get(k) == Some(r) && !h.is_finished();
            if !keep {
                h.abort();
            }
            keep
        });
        for (k, r) in want {
            if self.running.contains_key(&k) {
                continue;
            }
            let addr = SocketAddr::from(k);
            let listener = match std::net::TcpListener::bind(addr).and_then(|l| {
                l.set_nonblocking(true)?;
                TcpListener::from_std(l)
            }) {
                Ok(l) => l,
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "data plane: cannot listen; will retry");
                    continue;
                }
            };
            tracing::debug!(%addr, ?r, "data plane listening");
            let (view, resp) = (view.clone(), r.clone());
            let task = tokio::spawn(async move {
                loop {
                    match listener.accept().await {
                        Ok((s, _)) => {
                            tokio::spawn(serve(s, resp.clone(), view.clone()));
                        }
                        Err(e) => {
                            // Out of file descriptors, most likely: retrying at once would spin.
                            tracing::warn!(error = %e, "kubelet data plane: accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            });
            self.running.insert(k, (r, task));
        }
    }

    pub fn stop(&mut self) {
        for (_, (_, h)) in self.running.drain() {
            h.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn svc(extra: Value) -> Service {
        let mut v = json!({"metadata": {"name": "web", "namespace": "shop"},
            "spec": {"type": "LoadBalancer", "healthCheckNodePort": 32000, "clusterIP": "10.96.0.10",
                "ports": [{"name": "http", "port": 80, "nodePort": 30080}, {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053}]}});
        if let Value::Object(m) = extra {
            for (k, x) in m {
                v["spec"][k] = x;
            }
        }
        serde_json::from_value(v).unwrap()
    }

    fn nodes() -> Vec<NodeEndpoint> {
        vec![
            NodeEndpoint {
                name: "n1".into(),
                ip: "127.1.1.2".parse().unwrap(),
                zone: "zone-a".into(),
            },
            NodeEndpoint {
                name: "n2".into(),
                ip: "127.1.2.2".parse().unwrap(),
                zone: "zone-b".into(),
            },
        ]
    }

    fn slice(endpoints: Value) -> EndpointSlice {
        serde_json::from_value(json!({"metadata": {"name": "web-1", "namespace": "shop", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}], "endpoints": endpoints}))
        .unwrap()
    }

    fn ep(ip: &str, node: &str, zone: &str, ready: bool, hint: Option<&str>) -> Value {
        let mut e = json!({"addresses": [ip], "nodeName": node, "zone": zone,
            "conditions": {"ready": ready, "serving": ready, "terminating": false}});
        if let Some(h) = hint {
            e["hints"] = json!({"forZones": [{"name": h}]});
        }
        e
    }

    #[test]
    fn pod_ips_move_onto_the_loopback_block() {
        let block: ipnet::Ipv4Net = "127.134.0.0/16".parse().unwrap();
        assert_eq!(
            on_loopback("10.244.3.7".parse().unwrap(), block),
            "127.134.3.7".parse::<Ipv4Addr>().unwrap()
        );
        assert_eq!(
            on_loopback("127.9.9.9".parse().unwrap(), block),
            "127.9.9.9".parse::<Ipv4Addr>().unwrap()
        );
    }

    #[test]
    fn listeners_per_node_pod_and_service() {
        let pods = vec![PodEndpoint {
            name: "web-1".into(),
            ip: "127.128.0.2".parse().unwrap(),
            ports: vec![8080],
            node: "n1".into(),
            zone: "zone-a".into(),
        }];
        let d = desired(&[svc(json!({}))], &nodes(), &pods);
        // 2 in-cluster proxies, 1 pod port, 2 node ports, 2 health ports; UDP is not served.
        assert_eq!(d.len(), 7, "{d:?}");
        assert!(matches!(
            &d[&("127.1.2.2".parse().unwrap(), 30080)],
            Responder::NodePort { node, port: 80, .. } if node == "n2"
        ));
        assert!(matches!(
            &d[&("127.128.0.2".parse().unwrap(), 8080)],
            Responder::Pod { pod, .. } if pod == "web-1"
        ));
        assert!(d.contains_key(&("127.1.1.2".parse().unwrap(), IN_CLUSTER_PORT)));
        assert!(!d.contains_key(&("127.1.1.2".parse().unwrap(), 30053)));
    }

    #[test]
    fn endpoint_choice_follows_hints_and_policies() {
        let hinted = slice(json!([
            ep("127.128.0.2", "n1", "zone-a", true, Some("zone-a")),
            ep("127.128.1.2", "n2", "zone-b", true, Some("zone-b")),
            ep("127.128.1.3", "n2", "zone-b", false, None),
        ]));
        let port: ServicePort =
            serde_json::from_value(json!({"name": "http", "port": 80})).unwrap();
        let addrs = |s: &Service, node, zone, t| -> Vec<String> {
            endpoints_for(s, &port, std::slice::from_ref(&hinted), node, zone, t)
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        let cluster = svc(json!({}));
        assert_eq!(
            addrs(&cluster, "n1", "zone-a", Traffic::External),
            ["127.128.0.2:8080"]
        );
        assert_eq!(
            addrs(&cluster, "n2", "zone-b", Traffic::Internal),
            ["127.128.1.2:8080"]
        );
        // A node in a zone without hinted endpoints falls back to all ready ones.
        assert_eq!(addrs(&cluster, "n3", "zone-c", Traffic::Internal).len(), 2);
        // externalTrafficPolicy: Local: only this node's ready endpoints, hints ignored.
        let local = svc(json!({"externalTrafficPolicy": "Local"}));
        assert_eq!(
            addrs(&local, "n2", "zone-b", Traffic::External),
            ["127.128.1.2:8080"]
        );
        assert!(addrs(&local, "n3", "zone-c", Traffic::External).is_empty());
        // ... and internal traffic of that Service is still cluster-wide.
        assert_eq!(
            addrs(&local, "n1", "zone-a", Traffic::Internal),
            ["127.128.0.2:8080"]
        );
        assert_eq!(
            local_ready_endpoints(std::slice::from_ref(&hinted), "n2"),
            1
        );
        assert_eq!(
            local_ready_endpoints(std::slice::from_ref(&hinted), "n3"),
            0
        );
    }
}
