//! Where a load balancer's zonal frontends go: which zones, which requested addresses are
//! acceptable, and the address each frontend gets. Pure; the store only says which addresses
//! are taken.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::net::usable_range;
use super::validate::Invalid;

/// The zones (with their load-balancer pools) to put frontends in: those `wanted` (each known,
/// none twice), or every zone of the region.
pub fn zones(
    wanted: Option<&[String]>,
    region: &[(String, Ipv4Net)],
) -> Result<Vec<(String, Ipv4Net)>, Invalid> {
    let Some(wanted) = wanted else {
        return Ok(region.to_vec());
    };
    if wanted.is_empty() {
        return Err(Invalid::new("zones", "must name at least one zone"));
    }
    let mut out = Vec::with_capacity(wanted.len());
    for (i, z) in wanted.iter().enumerate() {
        let Some(found) = region.iter().find(|(name, _)| name == z) else {
            return Err(Invalid::new(
                format!("zones[{i}]"),
                format!("{z:?} is not a zone of this region"),
            ));
        };
        if wanted[..i].contains(z) {
            return Err(Invalid::new(
                format!("zones[{i}]"),
                format!("{z:?} is listed twice"),
            ));
        }
        out.push(found.clone());
    }
    Ok(out)
}

/// The requested addresses by zone: each inside the pool of one of `pools`, not one of the
/// pool's reserved addresses, at most one per zone.
pub fn requested(
    ips: &[Ipv4Addr],
    pools: &[(String, Ipv4Net)],
) -> Result<Vec<(String, Ipv4Addr)>, Invalid> {
    let mut out: Vec<(String, Ipv4Addr)> = Vec::new();
    for (i, ip) in ips.iter().enumerate() {
        let field = format!("requested_ips[{i}]");
        let Some((zone, pool)) = pools.iter().find(|(_, p)| p.contains(ip)) else {
            let zones: Vec<&str> = pools.iter().map(|(z, _)| z.as_str()).collect();
            return Err(Invalid::new(
                field,
                format!("{ip} is not in the load-balancer pool of any of the zones {zones:?}"),
            ));
        };
        let (lo, hi) = usable_range(*pool);
        if !(lo..=hi).contains(&u32::from(*ip)) {
            return Err(Invalid::new(
                field,
                format!("{ip} is a reserved address of pool {pool}"),
            ));
        }
        if out.iter().any(|(z, _)| z == zone) {
            return Err(Invalid::new(
                field,
                format!("more than one address requested in {zone}"),
            ));
        }
        out.push((zone.clone(), *ip));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region() -> Vec<(String, Ipv4Net)> {
        [("zone-a", "127.64.1.0/24"), ("zone-b", "127.64.2.0/24")]
            .map(|(z, p)| (z.to_owned(), p.parse().unwrap()))
            .to_vec()
    }

    fn names(v: &[(String, Ipv4Net)]) -> Vec<&str> {
        v.iter().map(|(z, _)| z.as_str()).collect()
    }

    #[test]
    fn zone_choices() {
        let r = region();
        assert_eq!(names(&zones(None, &r).unwrap()), ["zone-a", "zone-b"]);
        let b = ["zone-b".to_owned()];
        assert_eq!(names(&zones(Some(&b), &r).unwrap()), ["zone-b"]);
        let table: [(&[&str], &str); 3] = [
            (&[], "zones"),
            (&["zone-x"], "zones[0]"),
            (&["zone-a", "zone-a"], "zones[1]"),
        ];
        for (wanted, field) in table {
            let wanted: Vec<String> = wanted.iter().map(|s| (*s).to_owned()).collect();
            let e = zones(Some(&wanted), &r).unwrap_err();
            assert_eq!(e.field, field, "{wanted:?}");
        }
    }

    #[test]
    fn requested_addresses() {
        let r = region();
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert_eq!(
            requested(&[ip("127.64.2.9"), ip("127.64.1.7")], &r).unwrap(),
            [
                ("zone-b".to_owned(), ip("127.64.2.9")),
                ("zone-a".to_owned(), ip("127.64.1.7"))
            ]
        );
        let table: [(&[&str], &str, &str); 4] = [
            (
                &["10.0.0.1"],
                "requested_ips[0]",
                "not in the load-balancer pool",
            ),
            (&["127.64.1.0"], "requested_ips[0]", "reserved"),
            (&["127.64.1.255"], "requested_ips[0]", "reserved"),
            (
                &["127.64.1.2", "127.64.1.3"],
                "requested_ips[1]",
                "more than one",
            ),
        ];
        for (ips, field, why) in table {
            let ips: Vec<Ipv4Addr> = ips.iter().map(|s| ip(s)).collect();
            let e = requested(&ips, &r).unwrap_err();
            assert_eq!(e.field, field, "{ips:?}");
            assert!(e.reason.contains(why), "{ips:?}: {}", e.reason);
        }
    }
}
