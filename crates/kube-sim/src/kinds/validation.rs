//! Validation of Nodes (immutable fields), Leases and EndpointSlices.

use serde_json::Value;

use super::*;

/// Node fields that may only go from empty to a value.
pub fn check_node_immutables(
    def: &ResourceDef,
    name: &str,
    old: &Value,
    new: &Value,
) -> Result<(), StatusError> {
    let old_pid = str_at(old, "/spec/providerID").unwrap_or("");
    let new_pid = str_at(new, "/spec/providerID").unwrap_or("");
    if !old_pid.is_empty() && old_pid != new_pid {
        return Err(StatusError::invalid(
            def,
            name,
            "spec.providerID",
            "Forbidden: node updates may not change providerID except from \"\" to valid",
        ));
    }
    let old_cidrs = old
        .pointer("/spec/podCIDRs")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty());
    if let Some(oc) = old_cidrs
        && new.pointer("/spec/podCIDRs").and_then(Value::as_array) != Some(oc)
    {
        return Err(StatusError::invalid(
            def,
            name,
            "spec.podCIDRs",
            "Forbidden: node updates may not change podCIDR except from \"\" to valid",
        ));
    }
    let old_cidr = str_at(old, "/spec/podCIDR").unwrap_or("");
    if !old_cidr.is_empty() && str_at(new, "/spec/podCIDR").unwrap_or("") != old_cidr {
        return Err(StatusError::invalid(
            def,
            name,
            "spec.podCIDR",
            "Forbidden: node updates may not change podCIDR except from \"\" to valid",
        ));
    }
    Ok(())
}

pub fn validate_lease(def: &ResourceDef, name: &str, obj: &Value) -> Result<(), StatusError> {
    if let Some(d) = obj
        .pointer("/spec/leaseDurationSeconds")
        .and_then(Value::as_i64)
        && d <= 0
    {
        return Err(StatusError::invalid(
            def,
            name,
            "spec.leaseDurationSeconds",
            "Invalid value: must be greater than 0",
        ));
    }
    if let Some(t) = obj
        .pointer("/spec/leaseTransitions")
        .and_then(Value::as_i64)
        && t < 0
    {
        return Err(StatusError::invalid(
            def,
            name,
            "spec.leaseTransitions",
            "Invalid value: must be greater than or equal to 0",
        ));
    }
    Ok(())
}

/// EndpointSlice address validation (`discovery/validation`): IPv4 addresses must not be
/// unspecified, loopback, link-local or multicast, as kube-apiserver refuses them.
pub fn validate_endpoint_slice(
    def: &ResourceDef,
    name: &str,
    obj: &Value,
) -> Result<(), StatusError> {
    if obj.get("addressType").and_then(Value::as_str) != Some("IPv4") {
        return Ok(());
    }
    let endpoints = obj.get("endpoints").and_then(Value::as_array);
    for (i, e) in endpoints.into_iter().flatten().enumerate() {
        let addrs = e.get("addresses").and_then(Value::as_array);
        for (j, a) in addrs.into_iter().flatten().enumerate() {
            let text = a.as_str().unwrap_or("");
            let field = format!("endpoints[{i}].addresses[{j}]");
            let why = match text.parse::<std::net::Ipv4Addr>() {
                Err(_) => Some("must be a valid IPv4 address"),
                Ok(ip) if ip.is_unspecified() => Some("may not be unspecified (0.0.0.0)"),
                Ok(ip) if ip.is_loopback() => {
                    Some("may not be in the loopback range (127.0.0.0/8, ::1/128)")
                }
                Ok(ip) if ip.is_link_local() => {
                    Some("may not be in the link-local range (169.254.0.0/16, fe80::/10)")
                }
                Ok(ip) if ip.is_multicast() => {
                    Some("may not be in the multicast range (224.0.0.0/4, ff00::/8)")
                }
                Ok(_) => None,
            };
            if let Some(why) = why {
                return Err(StatusError::invalid(
                    def,
                    name,
                    &field,
                    format!("Invalid value: {text:?}: {why}"),
                ));
            }
        }
    }
    Ok(())
}
