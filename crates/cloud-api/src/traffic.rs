//! Load-balancer traffic and backend health, as measured by the data plane.

use serde::{Deserialize, Serialize};

/// Traffic of one (listener port, frontend zone, backend) combination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TrafficRow {
    pub port: u16,
    /// Zone of the frontend the client connected to (the client's zone).
    pub frontend_zone: String,
    pub backend_zone: String,
    /// Instance ID of the backend.
    pub backend: String,
    /// Connections proxied; for UDP listeners, client flows opened.
    pub connections: u64,
    /// Bytes from clients to the backend.
    pub bytes_in: u64,
    /// Bytes from the backend to clients.
    pub bytes_out: u64,
    /// Connections that failed to reach the backend.
    pub errors: u64,
}

/// Health of one backend as the load balancer's checks see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BackendHealth {
    pub instance_id: String,
    pub zone: String,
    pub healthy: bool,
    /// Connections (UDP: flows) open to this backend now.
    #[serde(default)]
    pub active_connections: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TrafficReport {
    pub load_balancer_id: String,
    pub rows: Vec<TrafficRow>,
    pub backends: Vec<BackendHealth>,
    /// Connections proxied to a backend.
    pub connections: u64,
    /// Connections refused because no backend was eligible.
    pub refused: u64,
    /// Share of connections whose backend was in the client's zone (absent before any traffic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_zone_fraction: Option<f64>,
}
