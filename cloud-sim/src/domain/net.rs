//! Address rules: CIDR parsing, overlap, and allocation from subnets and pools.

use std::net::Ipv4Addr;

use ipnet::{IpNet, Ipv4Net};

/// Parses a network in CIDR form and insists the host bits are zero (`10.0.0.1/24` is rejected,
/// as real clouds reject it, rather than silently truncated).
pub fn parse_network(s: &str) -> Result<IpNet, String> {
    let net: IpNet = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a CIDR block (expected a form like 10.244.1.0/24)"))?;
    if net.trunc() != net {
        return Err(format!(
            "{s:?} has host bits set; did you mean {}?",
            net.trunc()
        ));
    }
    Ok(net)
}

/// Parses an IPv4 network in CIDR form with zero host bits.
pub fn parse_ipv4_network(s: &str) -> Result<Ipv4Net, String> {
    match parse_network(s)? {
        IpNet::V4(net) => Ok(net),
        IpNet::V6(_) => Err(format!("{s:?} is not an IPv4 network")),
    }
}

/// True when the two networks share at least one address. Networks of different families never overlap.
pub fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Addresses a subnet hands out: all but the network address, the first host (the gateway, as
/// clouds reserve it) and the broadcast address. Subnets smaller than /29 are refused at start-up.
pub fn usable_range(subnet: Ipv4Net) -> (u32, u32) {
    let first = u32::from(subnet.network()) + 2;
    let last = u32::from(subnet.broadcast()) - 1;
    (first, last)
}

/// The lowest usable address in `subnet` that is not in `used` (which must be sorted ascending;
/// addresses outside the subnet are ignored). `None` when the subnet is full.
pub fn first_free(subnet: Ipv4Net, used_sorted: &[u32]) -> Option<Ipv4Addr> {
    let (first, last) = usable_range(subnet);
    let mut candidate = first;
    for &ip in used_sorted {
        if ip < candidate {
            continue;
        }
        if ip > candidate {
            break;
        }
        candidate += 1;
    }
    (candidate <= last).then(|| Ipv4Addr::from(candidate))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn parse_network_rejects_host_bits_and_garbage() {
        assert_eq!(
            parse_network("10.244.1.0/24").unwrap(),
            net("10.244.1.0/24")
        );
        assert_eq!(parse_network("fd00::/64").unwrap(), net("fd00::/64"));
        let err = parse_network("10.244.1.7/24").unwrap_err();
        assert!(err.contains("did you mean 10.244.1.0/24"), "{err}");
        assert!(parse_network("10.244.1.0").is_err());
        assert!(parse_network("nope").is_err());
        assert!(parse_ipv4_network("fd00::/64").is_err());
    }

    #[test]
    fn overlap_table() {
        let table = [
            ("10.0.0.0/8", "10.1.0.0/16", true),
            ("10.1.0.0/16", "10.0.0.0/8", true),
            ("10.244.1.0/24", "10.244.1.0/24", true),
            ("10.244.1.0/24", "10.244.2.0/24", false),
            ("10.244.1.0/25", "10.244.1.128/25", false),
            ("0.0.0.0/0", "192.168.0.0/16", true),
            ("10.0.0.0/8", "fd00::/8", false),
            ("fd00::/8", "fd12::/16", true),
        ];
        for (a, b, want) in table {
            assert_eq!(overlaps(&net(a), &net(b)), want, "{a} vs {b}");
        }
    }

    #[test]
    fn allocation_skips_reserved_and_used() {
        let subnet: Ipv4Net = "127.1.1.0/29".parse().unwrap();
        let ip = |s: &str| u32::from(s.parse::<Ipv4Addr>().unwrap());
        // .0 network, .1 gateway, .7 broadcast are never handed out.
        assert_eq!(first_free(subnet, &[]), Some("127.1.1.2".parse().unwrap()));
        assert_eq!(
            first_free(subnet, &[ip("127.1.1.2"), ip("127.1.1.3"), ip("127.1.1.5")]),
            Some("127.1.1.4".parse().unwrap())
        );
        // Addresses outside the subnet are ignored.
        assert_eq!(
            first_free(subnet, &[ip("10.0.0.1"), ip("127.1.1.2"), ip("200.0.0.1")]),
            Some("127.1.1.3".parse().unwrap())
        );
        let full: Vec<u32> = (2..=6).map(|h| ip(&format!("127.1.1.{h}"))).collect();
        assert_eq!(first_free(subnet, &full), None);
    }

    #[test]
    fn allocation_never_hands_out_an_address_twice() {
        let subnet: Ipv4Net = "10.0.0.0/24".parse().unwrap();
        let mut used = Vec::new();
        while let Some(next) = first_free(subnet, &used) {
            let n = u32::from(next);
            assert!(!used.contains(&n));
            used.push(n);
            used.sort_unstable();
        }
        assert_eq!(used.len(), 253);
    }
}
