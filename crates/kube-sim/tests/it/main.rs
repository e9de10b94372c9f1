//! kube-sim tests. `conformance` is plain HTTP and written so that it could run unchanged against a
//! real kube-apiserver; `kube_rs` drives kube-sim with the kube client and kube-runtime; `kubectl`
//! with the installed kubectl; `kubelet` with an in-process cloud-sim.

mod binary;
mod common;
mod conformance;
mod differential;
mod kube_rs;
mod kubectl;
mod watches;
