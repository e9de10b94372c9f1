//! What a sandbox of N nodes needs, decided before anything starts: the pod network (a
//! `/mask` per node), the loopback block pods listen on, the route quota (a route per node) and
//! each zone's instance subnet. What the flags leave open is sized to fit; what they fix is
//! checked, and a sandbox that cannot fit is refused at once, naming the flag to change. Pure.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// The pod network's default base, as kind's (`10.244.0.0/16`); larger networks widen it.
pub const CLUSTER_BASE: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 0);
/// The smallest pod network chosen (the kind default).
pub const MIN_CLUSTER_PREFIX: u8 = 16;
/// Where pods listen: the loopback block's default base (`127.244.0.0/16`).
pub const POD_LOOPBACK_BASE: Ipv4Addr = Ipv4Addr::new(127, 244, 0, 0);
/// The pod loopback block may not grow past 127.128.0.0/9: larger would cover the instance
/// subnets (127.1.x) and load-balancer pools (127.64.x).
pub const MAX_POD_LOOPBACK_PREFIX: u8 = 9;
/// The route quota when nodes need fewer routes (cloud-sim's default).
pub const MIN_ROUTE_QUOTA: u32 = 50;
/// Addresses of a subnet that instances never get (network, gateway, broadcast).
const RESERVED: u64 = 3;
/// Instance subnets are laid out from 127.1.0.0, zone i at block i + 1, below the pools.
const SUBNETS_BASE: u32 = u32::from_be_bytes([127, 1, 0, 0]);
const SUBNETS_END: u32 = u32::from_be_bytes([127, 64, 0, 0]);

/// What the flags fix (`None`: size it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Given {
    pub cluster_cidr: Option<Ipv4Net>,
    pub node_cidr_mask_size: u8,
    pub pod_loopback_cidr: Option<Ipv4Net>,
    pub route_quota: Option<u32>,
    /// Subnets given per zone (`--instance-subnets`).
    pub instance_subnets: Vec<(String, Ipv4Net)>,
}

/// The sandbox's addressing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sizing {
    pub cluster_cidr: Ipv4Net,
    pub node_cidr_mask_size: u8,
    pub pod_loopback_cidr: Ipv4Net,
    pub route_quota: u32,
    /// Every zone's instance subnet, given or sized.
    pub instance_subnets: Vec<(String, Ipv4Net)>,
    /// What the flags chose that will show (a route quota below the nodes: some go without a
    /// route, as on a cloud at its quota; useful to test exactly that).
    pub warnings: Vec<String>,
}

/// Why N nodes do not fit, and what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizingError {
    #[error("--node-cidr-mask-size {0} is not between 8 and 30")]
    BadMask(u8),
    #[error(
        "the cluster CIDR {cidr} has room for {fits} node /{mask}s, not {nodes}: pass a larger \
         --cluster-cidr (a /{needed} at least) or a larger --node-cidr-mask-size"
    )]
    ClusterCidr {
        cidr: Ipv4Net,
        mask: u8,
        fits: u64,
        nodes: usize,
        needed: u8,
    },
    #[error(
        "{nodes} nodes need more than {max} pod networks of /{mask}: pass a larger \
         --node-cidr-mask-size (fewer addresses per node)",
        max = 1u64 << (mask - MAX_POD_LOOPBACK_PREFIX)
    )]
    TooManyNodes { nodes: usize, mask: u8 },
    #[error(
        "--pod-loopback-cidr {block} is smaller than the cluster CIDR {cidr}: pods listen at their \
         address's host part within it, so it must be at least a /{}", cidr.prefix_len()
    )]
    PodLoopback { block: Ipv4Net, cidr: Ipv4Net },
    #[error("--pod-loopback-cidr {0} is not a loopback block (127.0.0.0/8)")]
    NotLoopback(Ipv4Net),
    #[error(
        "--route-quota {quota} is below --nodes {nodes}: every node needs a route for its pod CIDR"
    )]
    RouteQuota { quota: u32, nodes: usize },
    #[error(
        "the instance subnet {subnet} of {zone} has {fits} addresses for instances, not {nodes}: \
         pass a larger one in --instance-subnets"
    )]
    Subnet {
        zone: String,
        subnet: Ipv4Net,
        fits: u64,
        nodes: usize,
    },
    #[error(
        "{nodes} nodes in {zone} (a /{prefix} per zone) do not fit below the load-balancer pools at 127.64.0.0: spread them over more zones or give --instance-subnets"
    )]
    SubnetsFull {
        zone: String,
        nodes: usize,
        prefix: u8,
    },
}

/// Smallest k with 2^k >= n (n >= 1).
fn bits_for(n: u64) -> u8 {
    (64 - n.saturating_sub(1).leading_zeros()) as u8
}

fn net(addr: Ipv4Addr, prefix: u8) -> Ipv4Net {
    Ipv4Net::new(addr, prefix).expect("prefix <= 32").trunc()
}

/// The addressing for `per_zone` nodes (zone, count), in zone order.
pub fn plan(per_zone: &[(String, usize)], given: &Given) -> Result<Sizing, SizingError> {
    let nodes: usize = per_zone.iter().map(|(_, n)| n).sum();
    let mask = given.node_cidr_mask_size;
    if !(8..=30).contains(&mask) {
        return Err(SizingError::BadMask(mask));
    }
    let n = nodes.max(1) as u64;
    let cluster_cidr = match given.cluster_cidr {
        Some(cidr) => {
            let fits = if cidr.prefix_len() > mask {
                0
            } else {
                1u64 << (mask - cidr.prefix_len())
            };
            if fits < n {
                let needed = mask.saturating_sub(bits_for(n));
                return Err(SizingError::ClusterCidr {
                    cidr,
                    mask,
                    fits,
                    nodes,
                    needed,
                });
            }
            cidr
        }
        None => {
            let prefix = mask.saturating_sub(bits_for(n)).min(MIN_CLUSTER_PREFIX);
            if prefix < MAX_POD_LOOPBACK_PREFIX {
                return Err(SizingError::TooManyNodes { nodes, mask });
            }
            net(CLUSTER_BASE, prefix)
        }
    };
    let pod_loopback_cidr = match given.pod_loopback_cidr {
        Some(block) => {
            if !block.network().is_loopback() {
                return Err(SizingError::NotLoopback(block));
            }
            if block.prefix_len() > cluster_cidr.prefix_len() {
                return Err(SizingError::PodLoopback {
                    block,
                    cidr: cluster_cidr,
                });
            }
            block
        }
        None => {
            let prefix = cluster_cidr.prefix_len();
            if prefix < MAX_POD_LOOPBACK_PREFIX {
                return Err(SizingError::TooManyNodes { nodes, mask });
            }
            net(POD_LOOPBACK_BASE, prefix)
        }
    };
    let mut warnings = Vec::new();
    let route_quota = match given.route_quota {
        Some(q) => {
            if (q as usize) < nodes {
                warnings.push(format!(
                    "--route-quota {q} is below --nodes {nodes}: {} nodes will get no route for \
                     their pod CIDR (NetworkUnavailable, FailedToCreateRoute), as on a cloud at its quota",
                    nodes - q as usize
                ));
            }
            q
        }
        None => MIN_ROUTE_QUOTA.max(u32::try_from(nodes).unwrap_or(u32::MAX)),
    };
    let mut instance_subnets = Vec::with_capacity(per_zone.len());
    for (i, (zone, count)) in per_zone.iter().enumerate() {
        let subnet = match given.instance_subnets.iter().find(|(z, _)| z == zone) {
            Some((_, subnet)) => {
                let fits = (1u64 << (32 - subnet.prefix_len())).saturating_sub(RESERVED);
                if fits < *count as u64 {
                    return Err(SizingError::Subnet {
                        zone: zone.clone(),
                        subnet: *subnet,
                        fits,
                        nodes: *count,
                    });
                }
                *subnet
            }
            None => {
                let prefix = (32 - bits_for(*count as u64 + RESERVED)).min(24);
                let size = 1u64 << (32 - prefix);
                let start = u64::from(SUBNETS_BASE) + (i as u64 + 1) * size;
                if start + size > u64::from(SUBNETS_END) {
                    return Err(SizingError::SubnetsFull {
                        zone: zone.clone(),
                        nodes: *count,
                        prefix,
                    });
                }
                net(Ipv4Addr::from(start as u32), prefix)
            }
        };
        instance_subnets.push((zone.clone(), subnet));
    }
    Ok(Sizing {
        cluster_cidr,
        node_cidr_mask_size: mask,
        pod_loopback_cidr,
        route_quota,
        instance_subnets,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zones(counts: &[usize]) -> Vec<(String, usize)> {
        counts
            .iter()
            .enumerate()
            .map(|(i, n)| (format!("zone-{}", (b'a' + i as u8) as char), *n))
            .collect()
    }

    fn given() -> Given {
        Given {
            node_cidr_mask_size: 24,
            ..Given::default()
        }
    }

    fn cidr(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn defaults_stay_as_they_were_for_small_sandboxes() {
        let s = plan(&zones(&[2, 2, 2]), &given()).unwrap();
        assert_eq!(s.cluster_cidr, cidr("10.244.0.0/16"));
        assert_eq!(s.pod_loopback_cidr, cidr("127.244.0.0/16"));
        assert_eq!(s.route_quota, 50);
        let subnets: Vec<String> = s
            .instance_subnets
            .iter()
            .map(|(_, n)| n.to_string())
            .collect();
        assert_eq!(subnets, ["127.1.1.0/24", "127.1.2.0/24", "127.1.3.0/24"]);
    }

    #[test]
    fn large_sandboxes_are_sized_to_fit() {
        // (per-zone counts, cluster CIDR, pod loopback, route quota, zone-a's subnet)
        let table: [(&[usize], &str, &str, u32, &str); 4] = [
            (
                &[86, 85, 85],
                "10.244.0.0/16",
                "127.244.0.0/16",
                256,
                "127.1.1.0/24",
            ),
            (
                &[334, 333, 333],
                "10.244.0.0/14",
                "127.244.0.0/14",
                1000,
                "127.1.2.0/23",
            ),
            (
                &[1667, 1667, 1666],
                "10.224.0.0/11",
                "127.224.0.0/11",
                5000,
                "127.1.8.0/21",
            ),
            (
                &[3334, 3333, 3333],
                "10.192.0.0/10",
                "127.192.0.0/10",
                10_000,
                "127.1.16.0/20",
            ),
        ];
        for (counts, cluster, loopback, quota, subnet_a) in table {
            let s = plan(&zones(counts), &given()).unwrap();
            let total: usize = counts.iter().sum();
            assert_eq!(s.cluster_cidr, cidr(cluster), "{total}");
            assert!(1u64 << (24 - s.cluster_cidr.prefix_len()) >= total as u64);
            assert_eq!(s.pod_loopback_cidr, cidr(loopback), "{total}");
            assert_eq!(s.route_quota, quota, "{total}");
            assert_eq!(s.instance_subnets[0].1, cidr(subnet_a), "{total}");
            // Each zone's subnet holds its nodes, and no two overlap or reach the pools.
            for (i, (_, n)) in s.instance_subnets.iter().enumerate() {
                assert!((1u64 << (32 - n.prefix_len())) - 3 >= counts[i] as u64);
                assert!(u32::from(n.broadcast()) < u32::from_be_bytes([127, 64, 0, 0]));
                for (_, m) in &s.instance_subnets[..i] {
                    assert!(!n.contains(&m.network()) && !m.contains(&n.network()));
                }
            }
        }
    }

    #[test]
    fn what_the_flags_fix_is_checked_and_refused_or_warned_about() {
        let mut g = given();
        g.cluster_cidr = Some(cidr("10.244.0.0/16"));
        let e = plan(&zones(&[100, 100, 100]), &g).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the cluster CIDR 10.244.0.0/16 has room for 256 node /24s, not 300: pass a larger \
             --cluster-cidr (a /15 at least) or a larger --node-cidr-mask-size"
        );
        // A quota below the nodes is allowed (it simulates a cloud at its quota) and said.
        let mut g = given();
        g.route_quota = Some(50);
        let s = plan(&zones(&[20, 20, 20]), &g).unwrap();
        assert_eq!(s.route_quota, 50);
        assert!(
            s.warnings[0].contains("--route-quota 50 is below --nodes 60: 10 nodes"),
            "{:?}",
            s.warnings
        );
        assert!(
            plan(&zones(&[2, 2, 2]), &given())
                .unwrap()
                .warnings
                .is_empty()
        );
        let mut g = given();
        g.pod_loopback_cidr = Some(cidr("127.244.0.0/16"));
        let e = plan(&zones(&[100, 100, 100]), &g).unwrap_err();
        assert!(e.to_string().contains("must be at least a /15"), "{e}");
        let mut g = given();
        g.pod_loopback_cidr = Some(cidr("10.0.0.0/8"));
        assert_eq!(
            plan(&zones(&[1]), &g).unwrap_err(),
            SizingError::NotLoopback(cidr("10.0.0.0/8"))
        );
        let mut g = given();
        g.instance_subnets = vec![("zone-a".into(), cidr("127.9.0.0/28"))];
        let e = plan(&zones(&[20, 1]), &g).unwrap_err();
        assert!(
            e.to_string()
                .contains("has 13 addresses for instances, not 20"),
            "{e}"
        );
        let mut g = given();
        g.node_cidr_mask_size = 31;
        assert_eq!(
            plan(&zones(&[1]), &g).unwrap_err(),
            SizingError::BadMask(31)
        );
        // 40,000 nodes of /24 would need 127.0.0.0/8 for pods.
        let e = plan(&zones(&[40_000]), &given()).unwrap_err();
        assert!(e.to_string().contains("--node-cidr-mask-size"), "{e}");
        // A smaller pod network per node fits them (a /10 of /26s), in 127.2.0.0/16.
        let mut g = given();
        g.node_cidr_mask_size = 26;
        let s = plan(&zones(&[40_000]), &g).unwrap();
        assert_eq!(s.cluster_cidr, cidr("10.192.0.0/10"));
        assert_eq!(s.instance_subnets[0].1, cidr("127.2.0.0/16"));
        // A million do not fit at all.
        let e = plan(&zones(&[1_000_000]), &g).unwrap_err();
        assert!(
            matches!(
                e,
                SizingError::TooManyNodes { .. } | SizingError::SubnetsFull { .. }
            ),
            "{e}"
        );
    }
}
