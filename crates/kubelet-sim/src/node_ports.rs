//! What kube-proxy and a pod would do for the simulated nodes: every running node listens on
//! `<node IP>:<nodePort>` for each NodePort and LoadBalancer Service and answers with a line naming
//! itself (`node=<name> zone=<zone>`), and serves `healthCheckNodePort` `/healthz`, which answers
//! 200 only when an EndpointSlice endpoint of the Service is on the node (kube-proxy's rule for
//! `externalTrafficPolicy: Local`), 503 otherwise.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::ListParams;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A running node as the responders see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEndpoint {
    pub name: String,
    pub ip: Ipv4Addr,
    pub zone: String,
}

/// What one listener answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Responder {
    /// A node port: the node's name and zone.
    NodePort { node: String, zone: String },
    /// A health-check node port of Service `namespace/name`.
    Health {
        node: String,
        namespace: String,
        service: String,
    },
}

/// The listeners the nodes should have for these Services (pure).
pub fn desired(
    services: &[Service],
    nodes: &[NodeEndpoint],
) -> BTreeMap<(Ipv4Addr, u16), Responder> {
    let mut out = BTreeMap::new();
    for svc in services {
        let Some(spec) = &svc.spec else { continue };
        let ty = spec.type_.as_deref().unwrap_or("ClusterIP");
        if ty != "NodePort" && ty != "LoadBalancer" {
            continue;
        }
        let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
        let name = svc.metadata.name.as_deref().unwrap_or("");
        let ports: Vec<u16> = spec
            .ports
            .iter()
            .flatten()
            .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
            .filter_map(|p| p.node_port.and_then(|n| u16::try_from(n).ok()))
            .collect();
        let health = spec
            .health_check_node_port
            .and_then(|n| u16::try_from(n).ok());
        for n in nodes {
            for p in &ports {
                out.insert(
                    (n.ip, *p),
                    Responder::NodePort {
                        node: n.name.clone(),
                        zone: n.zone.clone(),
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

/// True when an EndpointSlice of the Service has an endpoint on `node`.
pub async fn has_local_endpoint(
    kube: &kube::Client,
    namespace: &str,
    service: &str,
    node: &str,
) -> bool {
    let slices: Api<EndpointSlice> = Api::namespaced(kube.clone(), namespace);
    let lp = ListParams::default().labels(&format!("kubernetes.io/service-name={service}"));
    let Ok(list) = slices.list(&lp).await else {
        return false;
    };
    list.items
        .iter()
        .flat_map(|s| &s.endpoints)
        .any(|e| e.node_name.as_deref() == Some(node))
}

/// The running listeners.
#[derive(Debug, Default)]
pub struct NodePorts {
    running: HashMap<(Ipv4Addr, u16), (Responder, JoinHandle<()>)>,
}

impl NodePorts {
    /// Makes the running listeners match `want`.
    pub fn sync(&mut self, kube: &kube::Client, want: BTreeMap<(Ipv4Addr, u16), Responder>) {
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
                    tracing::warn!(%addr, error = %e, "node port: cannot listen; will retry");
                    continue;
                }
            };
            tracing::debug!(%addr, ?r, "node port listening");
            let (kube, resp) = (kube.clone(), r.clone());
            let task = tokio::spawn(async move {
                loop {
                    let Ok((mut s, _)) = listener.accept().await else {
                        continue;
                    };
                    let (kube, resp) = (kube.clone(), resp.clone());
                    tokio::spawn(async move {
                        match resp {
                            Responder::NodePort { node, zone } => {
                                let _ = s
                                    .write_all(format!("node={node} zone={zone}\n").as_bytes())
                                    .await;
                            }
                            Responder::Health {
                                node,
                                namespace,
                                service,
                            } => {
                                let mut buf = [0u8; 1024];
                                let _ = tokio::time::timeout(
                                    std::time::Duration::from_secs(2),
                                    s.read(&mut buf),
                                )
                                .await;
                                let local =
                                    has_local_endpoint(&kube, &namespace, &service, &node).await;
                                let (code, body) = if local {
                                    ("200 OK", "{\"localEndpoints\": 1}")
                                } else {
                                    ("503 Service Unavailable", "{\"localEndpoints\": 0}")
                                };
                                let resp = format!(
                                    "HTTP/1.1 {code}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                                    body.len()
                                );
                                let _ = s.write_all(resp.as_bytes()).await;
                            }
                        }
                        let _ = s.shutdown().await;
                    });
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
    use serde_json::json;

    #[test]
    fn node_and_health_ports_per_running_node() {
        let services: Vec<Service> = vec![
            json!({"metadata": {"name": "web", "namespace": "shop"}, "spec": {"type": "LoadBalancer", "healthCheckNodePort": 32000,
                "ports": [{"port": 80, "nodePort": 30080}, {"port": 53, "protocol": "UDP", "nodePort": 30053}]}}),
            json!({"metadata": {"name": "internal"}, "spec": {"type": "ClusterIP", "ports": [{"port": 80}]}}),
        ]
        .into_iter()
        .map(|v| serde_json::from_value(v).unwrap())
        .collect();
        let nodes = vec![
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
        ];
        let d = desired(&services, &nodes);
        assert_eq!(d.len(), 4, "{d:?}");
        assert_eq!(
            d[&("127.1.2.2".parse().unwrap(), 30080)],
            Responder::NodePort {
                node: "n2".into(),
                zone: "zone-b".into()
            }
        );
        assert_eq!(
            d[&("127.1.1.2".parse().unwrap(), 32000)],
            Responder::Health {
                node: "n1".into(),
                namespace: "shop".into(),
                service: "web".into()
            }
        );
        assert!(
            !d.contains_key(&("127.1.1.2".parse().unwrap(), 30053)),
            "UDP node ports are not served"
        );
    }
}
