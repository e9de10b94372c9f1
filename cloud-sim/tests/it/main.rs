//! HTTP-level tests of cloud-sim: a real server on 127.0.0.1:0 with a fresh in-memory database per
//! test, driven through cloud-client or raw HTTP where headers and statuses are the point.

mod auth;
mod backend_groups;
mod catalog;
mod common;
mod conventions;
mod dataplane;
mod durability;
mod events;
mod faults;
mod instances;
mod load_balancers;
mod logs;
#[path = "../support/net.rs"]
mod net;
mod replicas;
mod routes;
mod supervision;
