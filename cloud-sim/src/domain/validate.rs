//! Field validation. Each check returns the offending field (a JSON path) and why, which the HTTP
//! layer turns into a 422 `VALIDATION_FAILED`.

use cloud_api::{
    HealthCheck, HealthCheckProtocol, Listener, MAX_LISTENERS, MAX_TAG_KEY, MAX_TAG_VALUE,
    MAX_TAGS, Tags,
};

/// A field that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Invalid {
    pub field: String,
    pub reason: String,
}

impl Invalid {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// At most `max` IDs, none twice; the error names the first repeat (`field[i]`).
pub fn distinct<T: Eq + std::hash::Hash + std::fmt::Display>(
    field: &str,
    ids: &[T],
    max: usize,
    noun: &str,
) -> Result<(), Invalid> {
    if ids.len() > max {
        return Err(Invalid::new(
            field,
            format!("at most {max} {noun}s are allowed, got {}", ids.len()),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    match ids.iter().enumerate().find(|(_, id)| !seen.insert(*id)) {
        Some((i, id)) => Err(Invalid::new(
            format!("{field}[{i}]"),
            format!("{noun} {id} is listed twice"),
        )),
        None => Ok(()),
    }
}

/// Every ID in `ids` is a key of `found` (what exists in the caller's project) with the value
/// `zone` when one is given; the error names the first that is not.
pub fn all_found_in_zone<T: AsRef<str>>(
    field: &str,
    ids: &[T],
    found: &std::collections::HashMap<String, String>,
    zone: Option<&str>,
    noun: &str,
) -> Result<(), Invalid> {
    for (i, id) in ids.iter().enumerate() {
        let id = id.as_ref();
        match (found.get(id), zone) {
            (None, _) => {
                return Err(Invalid::new(
                    format!("{field}[{i}]"),
                    format!("{noun} {id} does not exist in this project"),
                ));
            }
            (Some(z), Some(zone)) if z != zone => {
                return Err(Invalid::new(
                    format!("{field}[{i}]"),
                    format!("{noun} {id} is in {z}, not in the group's zone {zone}"),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// A DNS-1123 subdomain, the rule for Kubernetes node names: at most 253 characters, dot-separated
/// labels of lowercase alphanumerics and `-`, each label 1-63 characters starting and ending
/// alphanumeric.
pub fn dns1123_subdomain(field: &str, name: &str) -> Result<(), Invalid> {
    let fail = |why: &str| {
        Err(Invalid::new(
            field,
            format!("{name:?} is not a valid DNS-1123 hostname: {why}"),
        ))
    };
    if name.is_empty() {
        return fail("must not be empty");
    }
    if name.len() > 253 {
        return fail("must be at most 253 characters");
    }
    for label in name.split('.') {
        if let Err(why) = label_rule(label) {
            return fail(why);
        }
    }
    Ok(())
}

/// A DNS-1123 label: 1-63 lowercase alphanumerics or `-`, starting and ending alphanumeric.
pub fn dns1123_label(field: &str, name: &str) -> Result<(), Invalid> {
    label_rule(name)
        .map_err(|why| Invalid::new(field, format!("{name:?} is not a valid name: {why}")))
}

fn label_rule(label: &str) -> Result<(), &'static str> {
    let bytes = label.as_bytes();
    if bytes.is_empty() {
        return Err("labels must not be empty");
    }
    if bytes.len() > 63 {
        return Err("labels must be at most 63 characters");
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
    {
        return Err("only lowercase letters, digits, '-' and '.' are allowed");
    }
    if bytes[0] == b'-' || bytes[bytes.len() - 1] == b'-' {
        return Err("labels must start and end with a letter or digit");
    }
    Ok(())
}

pub fn tags(field: &str, tags: &Tags) -> Result<(), Invalid> {
    if tags.len() > MAX_TAGS {
        return Err(Invalid::new(
            field,
            format!("at most {MAX_TAGS} tags are allowed, got {}", tags.len()),
        ));
    }
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > MAX_TAG_KEY {
            return Err(Invalid::new(
                format!("{field}.{k}"),
                format!("tag keys must be 1-{MAX_TAG_KEY} characters"),
            ));
        }
        if k.chars().any(char::is_control) || v.chars().any(char::is_control) {
            return Err(Invalid::new(
                format!("{field}.{k}"),
                "tags must not contain control characters",
            ));
        }
        if v.chars().count() > MAX_TAG_VALUE {
            return Err(Invalid::new(
                format!("{field}.{k}"),
                format!("tag values must be at most {MAX_TAG_VALUE} characters"),
            ));
        }
    }
    Ok(())
}

/// An `ids` list filter: comma-separated, 1 to [`cloud_api::MAX_LIST_IDS`] IDs, none empty.
pub fn ids_filter(s: &str) -> Result<Vec<String>, Invalid> {
    let ids: Vec<String> = s.split(',').map(str::to_owned).collect();
    if ids.iter().any(String::is_empty) {
        return Err(Invalid::new("ids", format!("ids {s:?} has an empty ID")));
    }
    if ids.len() > cloud_api::MAX_LIST_IDS {
        return Err(Invalid::new(
            "ids",
            format!(
                "ids has {} IDs; a list takes at most {}",
                ids.len(),
                cloud_api::MAX_LIST_IDS
            ),
        ));
    }
    Ok(ids)
}

/// Parses a `key=value` tag filter.
pub fn tag_filter(s: &str) -> Result<(String, String), Invalid> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(Invalid::new(
            "tag",
            format!("{s:?} is not a key=value tag filter"),
        )),
    }
}

/// 1 to [`MAX_LISTENERS`] listeners with ports 1-65535, no protocol and port twice.
pub fn listeners(field: &str, listeners: &[Listener]) -> Result<(), Invalid> {
    if listeners.is_empty() {
        return Err(Invalid::new(field, "at least one listener is required"));
    }
    if listeners.len() > MAX_LISTENERS {
        return Err(Invalid::new(
            field,
            format!("at most {MAX_LISTENERS} listeners are allowed"),
        ));
    }
    for (i, l) in listeners.iter().enumerate() {
        if l.port == 0 {
            return Err(Invalid::new(
                format!("{field}[{i}].port"),
                "must be 1-65535",
            ));
        }
        if l.backend_port == 0 {
            return Err(Invalid::new(
                format!("{field}[{i}].backend_port"),
                "must be 1-65535",
            ));
        }
        if let Some(j) = listeners[..i]
            .iter()
            .position(|o| o.port == l.port && o.protocol == l.protocol)
        {
            return Err(Invalid::new(
                format!("{field}[{i}].port"),
                format!("duplicates listeners[{j}] ({:?} {})", l.protocol, l.port),
            ));
        }
    }
    Ok(())
}

/// A zone policy: the panic threshold is a percentage.
pub fn zone_policy(field: &str, p: &cloud_api::ZonePolicy) -> Result<(), Invalid> {
    if p.panic_threshold_percent > 100 {
        return Err(Invalid::new(
            format!("{field}.panic_threshold_percent"),
            format!(
                "{} is not a percentage (0 to 100)",
                p.panic_threshold_percent
            ),
        ));
    }
    Ok(())
}

pub fn health_check(field: &str, hc: &HealthCheck) -> Result<(), Invalid> {
    let f = |name: &str| format!("{field}.{name}");
    if hc.port == Some(0) {
        return Err(Invalid::new(f("port"), "must be 1-65535"));
    }
    if !(1..=300).contains(&hc.interval_seconds) {
        return Err(Invalid::new(f("interval_seconds"), "must be 1-300"));
    }
    if hc.timeout_seconds == 0 || hc.timeout_seconds > hc.interval_seconds {
        return Err(Invalid::new(
            f("timeout_seconds"),
            "must be at least 1 and at most interval_seconds",
        ));
    }
    for (name, v) in [
        ("healthy_threshold", hc.healthy_threshold),
        ("unhealthy_threshold", hc.unhealthy_threshold),
    ] {
        if !(1..=10).contains(&v) {
            return Err(Invalid::new(f(name), "must be 1-10"));
        }
    }
    match (hc.protocol, &hc.path) {
        (HealthCheckProtocol::Http, None) => Err(Invalid::new(
            f("path"),
            "is required for http health checks",
        )),
        (HealthCheckProtocol::Http, Some(p)) if !p.starts_with('/') => {
            Err(Invalid::new(f("path"), "must start with '/'"))
        }
        (HealthCheckProtocol::Tcp, Some(_)) => Err(Invalid::new(
            f("path"),
            "is only allowed for http health checks",
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloud_api::Protocol;

    #[test]
    fn id_lists() {
        let ids = ["i-1", "i-2", "i-1"];
        let e = distinct("members", &ids, 10, "instance").unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.reason.as_str()),
            ("members[2]", "instance i-1 is listed twice")
        );
        assert!(distinct("members", &ids[..2], 10, "instance").is_ok());
        let e = distinct("members", &ids[..2], 1, "instance").unwrap_err();
        assert_eq!(e.field, "members");
        let found: std::collections::HashMap<String, String> = [
            ("i-1".to_owned(), "zone-a".to_owned()),
            ("i-2".to_owned(), "zone-b".to_owned()),
        ]
        .into();
        assert!(all_found_in_zone("members", &["i-1"], &found, Some("zone-a"), "instance").is_ok());
        assert!(all_found_in_zone("backends", &["i-1", "i-2"], &found, None, "instance").is_ok());
        let e = all_found_in_zone(
            "members",
            &["i-1", "i-2"],
            &found,
            Some("zone-a"),
            "instance",
        )
        .unwrap_err();
        assert_eq!(e.field, "members[1]");
        assert!(e.reason.contains("is in zone-b"), "{}", e.reason);
        let e = all_found_in_zone("members", &["i-3"], &found, None, "instance").unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.reason.as_str()),
            ("members[0]", "instance i-3 does not exist in this project")
        );
    }

    #[test]
    fn hostnames() {
        for ok in [
            "a",
            "node-1",
            "kind-worker2",
            "ip-10-0-0-1.ec2.internal",
            &"a".repeat(63),
        ] {
            assert!(dns1123_subdomain("name", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Node",
            "-a",
            "a-",
            "a..b",
            "a_b",
            &"a".repeat(64),
            &format!("{}.b", "a".repeat(252)),
        ] {
            let e = dns1123_subdomain("name", bad).unwrap_err();
            assert_eq!(e.field, "name");
        }
        assert!(dns1123_label("name", "a.b").is_err());
    }

    #[test]
    fn tag_rules() {
        let mut t = Tags::new();
        t.insert("kubernetes.io/cluster/x".into(), "owned".into());
        assert!(tags("tags", &t).is_ok());
        t.insert(String::new(), "v".into());
        assert_eq!(tags("tags", &t).unwrap_err().field, "tags.");
        let many: Tags = (0..51).map(|i| (format!("k{i}"), String::new())).collect();
        assert!(tags("tags", &many).is_err());
        assert_eq!(tag_filter("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert!(tag_filter("novalue").is_err());
        assert!(tag_filter("=x").is_err());
    }

    #[test]
    fn listener_rules_name_the_field() {
        let l = |port, backend_port| Listener {
            protocol: Protocol::Tcp,
            port,
            backend_port,
        };
        assert!(listeners("listeners", &[l(80, 30080), l(443, 30443)]).is_ok());
        assert_eq!(
            listeners("listeners", &[l(0, 1)]).unwrap_err().field,
            "listeners[0].port"
        );
        assert_eq!(
            listeners("listeners", &[l(80, 0)]).unwrap_err().field,
            "listeners[0].backend_port"
        );
        assert_eq!(
            listeners("listeners", &[l(80, 1), l(80, 2)])
                .unwrap_err()
                .field,
            "listeners[1].port"
        );
        let udp = Listener {
            protocol: Protocol::Udp,
            port: 80,
            backend_port: 2,
        };
        assert!(listeners("listeners", &[l(80, 1), udp]).is_ok());
    }

    #[test]
    fn zone_policy_rules() {
        let mut p = cloud_api::ZonePolicy::default();
        assert!(zone_policy("zone_policy", &p).is_ok());
        p.panic_threshold_percent = 101;
        assert_eq!(
            zone_policy("zone_policy", &p).unwrap_err().field,
            "zone_policy.panic_threshold_percent"
        );
    }

    #[test]
    fn health_check_rules() {
        assert!(health_check("hc", &HealthCheck::default()).is_ok());
        let http = HealthCheck {
            protocol: HealthCheckProtocol::Http,
            path: Some("/healthz".into()),
            ..Default::default()
        };
        assert!(health_check("hc", &http).is_ok());
        let cases = [
            (
                HealthCheck {
                    protocol: HealthCheckProtocol::Http,
                    ..Default::default()
                },
                "hc.path",
            ),
            (
                HealthCheck {
                    path: Some("/x".into()),
                    ..Default::default()
                },
                "hc.path",
            ),
            (
                HealthCheck {
                    interval_seconds: 0,
                    ..Default::default()
                },
                "hc.interval_seconds",
            ),
            (
                HealthCheck {
                    timeout_seconds: 11,
                    ..Default::default()
                },
                "hc.timeout_seconds",
            ),
            (
                HealthCheck {
                    healthy_threshold: 0,
                    ..Default::default()
                },
                "hc.healthy_threshold",
            ),
            (
                HealthCheck {
                    unhealthy_threshold: 11,
                    ..Default::default()
                },
                "hc.unhealthy_threshold",
            ),
            (
                HealthCheck {
                    port: Some(0),
                    ..Default::default()
                },
                "hc.port",
            ),
        ];
        for (hc, field) in cases {
            assert_eq!(health_check("hc", &hc).unwrap_err().field, field);
        }
    }
}
