//! ccm tests: controllers with the fake provider against an in-process kube-sim; leader election;
//! and end to end with the real ccm binary, cloud-sim and kube-sim's kubelets.

mod client;
mod common;
mod e2e;
mod leader;
mod lifecycle;
mod node_init;
mod recorder;
mod routes;
mod services;
mod topology_hints;
