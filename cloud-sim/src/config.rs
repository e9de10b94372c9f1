//! Command line (`cloud-sim serve ...`), every flag with a `CLOUD_SIM_*` environment twin, and the
//! validated [`Config`] the library runs on.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use ipnet::{IpNet, Ipv4Net};

use crate::domain::net::overlaps;

/// A simulated cloud: regions, zones, instances, load balancers and route tables over REST.
#[derive(Debug, Parser)]
#[command(name = "cloud-sim", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the cloud API, the load-balancer data plane and the web console (`/ui/`).
    Serve(ServeArgs),
    /// Run only the load balancers' data plane, apart from the API replicas (which then run with
    /// `--data-plane=false`), on a PostgreSQL database they share: it serves the frontends in
    /// `--frontends` (this host's addresses) and publishes their traffic for the API. `--listen`
    /// serves `/healthz` and `/metrics`; the API's own flags (tokens, throttling) do not apply.
    DataPlane(DataPlaneArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct DataPlaneArgs {
    /// Frontend networks this data plane serves, comma-separated CIDRs (default: every
    /// frontend of every load balancer).
    #[arg(long, env = "CLOUD_SIM_FRONTENDS", value_delimiter = ',',
        value_parser = crate::domain::net::parse_ipv4_network)]
    pub frontends: Vec<Ipv4Net>,

    /// Name this data plane publishes its traffic reports under; unique among the data planes
    /// (default: `data-plane@<listen address>`).
    #[arg(long, env = "CLOUD_SIM_DATA_PLANE_NAME")]
    pub name: Option<String>,

    #[command(flatten)]
    pub serve: ServeArgs,
}

pub use sim_common::LogFormat;

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to serve the API on (`data-plane`: its `/healthz` and `/metrics`); port 0 picks a
    /// free port, which is logged.
    #[arg(long, env = "CLOUD_SIM_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Directory for the default SQLite database file.
    #[arg(long, env = "CLOUD_SIM_DATA_DIR", default_value = "cloud-sim-data")]
    pub data_dir: PathBuf,

    /// Database URL; default `sqlite://<data-dir>/cloud-sim.db`. `sqlite::memory:` keeps state in
    /// memory only (lost on exit); `postgres://user:password@host/db` uses PostgreSQL (the
    /// schema is created on first start; the password is never logged).
    #[arg(long, env = "CLOUD_SIM_DATABASE_URL")]
    pub database_url: Option<String>,

    /// Name of the simulated region.
    #[arg(long, env = "CLOUD_SIM_REGION", default_value = "sim-1")]
    pub region: String,

    /// Zones of the region, comma-separated.
    #[arg(
        long,
        env = "CLOUD_SIM_ZONES",
        value_delimiter = ',',
        default_value = "zone-a,zone-b,zone-c"
    )]
    pub zones: Vec<String>,

    /// The region's network: caller-chosen instance IPs, zone subnets and LB pools must lie in it.
    #[arg(long, env = "CLOUD_SIM_NETWORK_CIDR", default_value = "127.0.0.0/8")]
    pub network_cidr: Ipv4Net,

    /// Per-zone instance subnets as `zone=cidr`, comma-separated; zones not listed get
    /// 127.1.<n>.0/24 for the n-th zone (1-based).
    #[arg(long, env = "CLOUD_SIM_INSTANCE_SUBNETS", value_delimiter = ',', value_parser = parse_zone_cidr)]
    pub instance_subnets: Vec<(String, Ipv4Net)>,

    /// Per-zone load-balancer frontend pools as `zone=cidr`, comma-separated; zones not listed get
    /// 127.64.<n>.0/24 for the n-th zone (1-based).
    #[arg(long, env = "CLOUD_SIM_LB_POOLS", value_delimiter = ',', value_parser = parse_zone_cidr)]
    pub lb_pools: Vec<(String, Ipv4Net)>,

    /// How long instances stay `pending` before `running` (e.g. `2s`, `500ms`, `0`).
    #[arg(long, env = "CLOUD_SIM_INSTANCE_BOOT_DELAY", default_value = "2s", value_parser = sim_common::parse_duration)]
    pub instance_boot_delay: Duration,

    /// Run the load balancers' data plane (listeners, health checks, traffic counters) in this
    /// process; `false` serves only the API (for scale runs, or a replica beside a data plane
    /// that runs elsewhere).
    #[arg(long, env = "CLOUD_SIM_DATA_PLANE", default_value_t = true, action = clap::ArgAction::Set,
        num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub data_plane: bool,

    /// How long instances stay `stopping` before `stopped`.
    #[arg(long, env = "CLOUD_SIM_INSTANCE_STOP_DELAY", default_value = "1s", value_parser = sim_common::parse_duration)]
    pub instance_stop_delay: Duration,

    /// How long load balancers stay `provisioning` before `active`.
    #[arg(long, env = "CLOUD_SIM_LB_PROVISION_DELAY", default_value = "3s", value_parser = sim_common::parse_duration)]
    pub lb_provision_delay: Duration,

    /// How long terminated instances stay visible before they are purged (as on EC2).
    #[arg(long, env = "CLOUD_SIM_TERMINATED_RETENTION", default_value = "1h", value_parser = sim_common::parse_duration)]
    pub terminated_retention: Duration,

    /// Most routes one route table may hold.
    #[arg(long, env = "CLOUD_SIM_ROUTE_QUOTA", default_value_t = 50)]
    pub route_quota: u32,

    /// File of bearer tokens, one `<token> <project> [admin]` per line (`#` starts a comment).
    /// Without it the API is open and everything belongs to project `default`.
    #[arg(long, env = "CLOUD_SIM_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,

    /// Throttle every project to this many requests per second (token bucket); off when unset.
    #[arg(long, env = "CLOUD_SIM_THROTTLE_RATE")]
    pub throttle_rate: Option<f64>,

    /// Bucket size for `--throttle-rate`.
    #[arg(long, env = "CLOUD_SIM_THROTTLE_BURST", default_value_t = 20)]
    pub throttle_burst: u32,

    /// Delay added to load-balancer connections that cross zones, as `from:to=duration` pairs,
    /// comma-separated (e.g. `zone-a:zone-b=2ms,zone-b:zone-a=2ms`).
    #[arg(long, env = "CLOUD_SIM_INTER_ZONE_LATENCY", value_delimiter = ',', value_parser = parse_latency)]
    pub inter_zone_latency: Vec<(String, String, std::time::Duration)>,

    /// Log filter in `tracing` syntax (e.g. `info`, `cloud_sim=debug`).
    #[arg(long, env = "CLOUD_SIM_LOG", default_value = "info")]
    pub log_filter: String,

    /// Log format.
    #[arg(
        long,
        env = "CLOUD_SIM_LOG_FORMAT",
        value_enum,
        default_value = "plain"
    )]
    pub log_format: LogFormat,
}

/// Parses `zone=cidr` (the `--instance-subnets` and `--lb-pools` syntax).
pub fn parse_zone_cidr(s: &str) -> Result<(String, Ipv4Net), String> {
    let (zone, cidr) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not zone=cidr"))?;
    let net = crate::domain::net::parse_ipv4_network(cidr)?;
    Ok((zone.trim().to_owned(), net))
}

/// Parses `from:to=duration`.
fn parse_latency(s: &str) -> Result<(String, String, Duration), String> {
    let (pair, d) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not from:to=duration"))?;
    let (from, to) = pair
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not from:to=duration"))?;
    Ok((
        from.trim().to_owned(),
        to.trim().to_owned(),
        sim_common::parse_duration(d)?,
    ))
}

/// One zone's addressing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneConfig {
    pub name: String,
    pub instance_subnet: Ipv4Net,
    pub lb_pool: Ipv4Net,
}

/// A bearer token's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub project: String,
    pub admin: bool,
}

/// Validated configuration of a cloud-sim server.
#[derive(Debug, Clone)]
pub struct Config {
    pub region: String,
    pub network_cidr: Ipv4Net,
    pub zones: Vec<ZoneConfig>,
    pub instance_boot_delay: Duration,
    pub instance_stop_delay: Duration,
    pub lb_provision_delay: Duration,
    pub terminated_retention: Duration,
    pub route_quota: u32,
    /// `None`: open API, one `default` project with admin rights.
    pub tokens: Option<HashMap<String, Principal>>,
    /// `(rate per second, burst)` applied to every project.
    pub throttle: Option<(f64, u32)>,
    /// Delay added to data-plane connections from one zone's frontend to another zone's backend.
    pub inter_zone_latency: crate::dataplane::LatencyMatrix,
    /// Serve the load balancers' traffic (`false`: the API only; load balancers get their
    /// addresses and states, but nothing listens on them).
    pub data_plane: bool,
    /// The data plane serves only frontends inside these networks (`None`: every frontend).
    pub frontends: Option<Vec<Ipv4Net>>,
    /// `Some(name)`: this process is a data plane running apart (`cloud-sim data-plane`): no
    /// API and no worker; it publishes its traffic reports under `name`.
    pub data_plane_only: Option<String>,
}

/// Why a configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error("cannot read tokens file {path}")]
    TokensFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Config {
    /// The defaults of `cloud-sim serve`, with every delay zero: what unit and HTTP tests want.
    pub fn for_tests() -> Self {
        let zones = ["zone-a", "zone-b", "zone-c"].map(String::from).to_vec();
        Self::build("sim-1", "127.0.0.0/8".parse().unwrap(), &zones, &[], &[])
            .expect("default test config is valid")
    }

    /// [`Config::for_tests`] in an address block no other process on this machine holds:
    /// instance subnets `127.B.<zone>.0/24` and load-balancer pools `127.B.<64 + zone>.0/24` for
    /// a `B` in [`TEST_BLOCKS`]. Tests whose clouds carry traffic use it, so two tests running at
    /// once can never answer each other's connections. The block is held (by a listening socket
    /// on `127.B.255.254`) until the process exits.
    pub fn for_tests_isolated() -> Self {
        let b = claim_test_block();
        let zones = ["zone-a", "zone-b", "zone-c"].map(String::from).to_vec();
        let net = |third: u8| Ipv4Net::new([127, b, third, 0].into(), 24).expect("valid /24");
        let subnets: Vec<_> = (1..=3)
            .map(|n| (zones[n - 1].clone(), net(n as u8)))
            .collect();
        let pools: Vec<_> = (1..=3)
            .map(|n| (zones[n - 1].clone(), net(64 + n as u8)))
            .collect();
        Self::build(
            "sim-1",
            "127.0.0.0/8".parse().unwrap(),
            &zones,
            &subnets,
            &pools,
        )
        .expect("isolated test config is valid")
    }

    /// Assembles and validates zone addressing: default subnets and pools for unlisted zones, all
    /// inside the network, none overlapping.
    pub fn build(
        region: &str,
        network_cidr: Ipv4Net,
        zones: &[String],
        subnets: &[(String, Ipv4Net)],
        pools: &[(String, Ipv4Net)],
    ) -> Result<Self, ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if zones.is_empty() {
            return invalid("at least one zone is required".into());
        }
        crate::domain::validate::dns1123_label("region", region)
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        for (i, z) in zones.iter().enumerate() {
            crate::domain::validate::dns1123_label("zones", z)
                .map_err(|e| ConfigError::Invalid(e.to_string()))?;
            if zones[..i].contains(z) {
                return invalid(format!("zone {z:?} is listed twice"));
            }
        }
        let lookup = |list: &[(String, Ipv4Net)],
                      what: &str|
         -> Result<BTreeMap<String, Ipv4Net>, ConfigError> {
            let mut m = BTreeMap::new();
            for (z, n) in list {
                if !zones.contains(z) {
                    return Err(ConfigError::Invalid(format!(
                        "{what} names zone {z:?}, which is not in --zones"
                    )));
                }
                m.insert(z.clone(), *n);
            }
            Ok(m)
        };
        let subnets = lookup(subnets, "--instance-subnets")?;
        let pools = lookup(pools, "--lb-pools")?;
        let mut out = Vec::new();
        for (i, name) in zones.iter().enumerate() {
            let n = u8::try_from(i + 1)
                .map_err(|_| ConfigError::Invalid("at most 255 zones".into()))?;
            let default_net =
                |second: u8| Ipv4Net::new([127, second, n, 0].into(), 24).expect("valid /24");
            out.push(ZoneConfig {
                name: name.clone(),
                instance_subnet: subnets.get(name).copied().unwrap_or_else(|| default_net(1)),
                lb_pool: pools.get(name).copied().unwrap_or_else(|| default_net(64)),
            });
        }
        let mut nets: Vec<(String, Ipv4Net)> = Vec::new();
        for z in &out {
            nets.push((format!("instance subnet of {}", z.name), z.instance_subnet));
            nets.push((format!("LB pool of {}", z.name), z.lb_pool));
        }
        for (i, (what, net)) in nets.iter().enumerate() {
            if net.prefix_len() > 29 {
                return invalid(format!("{what} ({net}) is smaller than /29"));
            }
            if !network_cidr.contains(net) {
                return invalid(format!(
                    "{what} ({net}) is outside the network {network_cidr}"
                ));
            }
            for (other, onet) in &nets[..i] {
                if overlaps(&IpNet::V4(*net), &IpNet::V4(*onet)) {
                    return invalid(format!("{what} ({net}) overlaps {other} ({onet})"));
                }
            }
        }
        Ok(Self {
            region: region.to_owned(),
            network_cidr,
            zones: out,
            instance_boot_delay: Duration::ZERO,
            instance_stop_delay: Duration::ZERO,
            lb_provision_delay: Duration::ZERO,
            terminated_retention: Duration::from_secs(3600),
            route_quota: 50,
            tokens: None,
            throttle: None,
            inter_zone_latency: Default::default(),
            data_plane: true,
            frontends: None,
            data_plane_only: None,
        })
    }

    /// Validates `serve` flags into a config (reads the tokens file).
    pub fn from_args(args: &ServeArgs) -> Result<Self, ConfigError> {
        let mut c = Self::build(
            &args.region,
            args.network_cidr,
            &args.zones,
            &args.instance_subnets,
            &args.lb_pools,
        )?;
        c.instance_boot_delay = args.instance_boot_delay;
        c.data_plane = args.data_plane;
        c.instance_stop_delay = args.instance_stop_delay;
        c.lb_provision_delay = args.lb_provision_delay;
        c.terminated_retention = args.terminated_retention;
        if args.route_quota == 0 {
            return Err(ConfigError::Invalid(
                "--route-quota must be at least 1".into(),
            ));
        }
        c.route_quota = args.route_quota;
        for (from, to, d) in &args.inter_zone_latency {
            for z in [from, to] {
                if c.zone(z).is_none() {
                    return Err(ConfigError::Invalid(format!(
                        "--inter-zone-latency names zone {z:?}, which is not in --zones"
                    )));
                }
            }
            c.inter_zone_latency.insert((from.clone(), to.clone()), *d);
        }
        if let Some(path) = &args.tokens_file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::TokensFile {
                path: path.clone(),
                source,
            })?;
            c.tokens = Some(
                parse_tokens(&text)
                    .map_err(|e| ConfigError::Invalid(format!("{}: {e}", path.display())))?,
            );
        }
        if let Some(rate) = args.throttle_rate {
            if !(rate.is_finite() && rate > 0.0) || args.throttle_burst == 0 {
                return Err(ConfigError::Invalid(
                    "--throttle-rate must be > 0 and --throttle-burst >= 1".into(),
                ));
            }
            c.throttle = Some((rate, args.throttle_burst));
        }
        Ok(c)
    }

    pub fn zone(&self, name: &str) -> Option<&ZoneConfig> {
        self.zones.iter().find(|z| z.name == name)
    }

    /// The database URL `serve` uses.
    pub fn database_url(args: &ServeArgs) -> String {
        args.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", args.data_dir.join("cloud-sim.db").display()))
    }
}

/// Parses a tokens file: `<token> <project> [admin]` per line.
pub fn parse_tokens(text: &str) -> Result<HashMap<String, Principal>, String> {
    let mut out = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (token, project, admin) = match fields.as_slice() {
            [t, p] => (*t, *p, false),
            [t, p, "admin"] => (*t, *p, true),
            _ => {
                return Err(format!(
                    "line {}: expected `<token> <project> [admin]`",
                    n + 1
                ));
            }
        };
        crate::domain::validate::dns1123_label("project", project)
            .map_err(|e| format!("line {}: {e}", n + 1))?;
        if out
            .insert(
                token.to_owned(),
                Principal {
                    project: project.to_owned(),
                    admin,
                },
            )
            .is_some()
        {
            return Err(format!("line {}: token listed twice", n + 1));
        }
    }
    if out.is_empty() {
        return Err("no tokens defined".into());
    }
    Ok(out)
}

/// Second octets of the loopback blocks [`Config::for_tests_isolated`] hands out (other tests
/// pin their own blocks below 200, and the defaults are 127.1 and 127.64).
pub const TEST_BLOCKS: std::ops::Range<u8> = 200..240;

/// The port of the socket that holds a claimed test block.
const CLAIM_PORT: u16 = 47_999;

/// Claims a free block of [`TEST_BLOCKS`] for this process: binding `127.B.255.254:47999`
/// succeeds for one process at a time (no SO_REUSEADDR), and the socket lives as long as the
/// process. Panics when every block is taken.
fn claim_test_block() -> u8 {
    static HELD: std::sync::Mutex<Vec<std::net::TcpListener>> = std::sync::Mutex::new(Vec::new());
    let span = TEST_BLOCKS.end - TEST_BLOCKS.start;
    let start = (std::process::id() % u32::from(span)) as u8;
    for i in 0..span {
        let b = TEST_BLOCKS.start + (start + i) % span;
        if let Ok(l) = std::net::TcpListener::bind(std::net::SocketAddr::from((
            [127, b, 255, 254],
            CLAIM_PORT,
        ))) {
            HELD.lock().expect("held blocks").push(l);
            return b;
        }
    }
    panic!("every loopback test block 127.{TEST_BLOCKS:?}.0.0/16 is held by another process")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_zone_addressing() {
        let c = Config::for_tests();
        let z: Vec<_> = c
            .zones
            .iter()
            .map(|z| {
                (
                    z.name.as_str(),
                    z.instance_subnet.to_string(),
                    z.lb_pool.to_string(),
                )
            })
            .collect();
        assert_eq!(
            z,
            [
                ("zone-a", "127.1.1.0/24".into(), "127.64.1.0/24".into()),
                ("zone-b", "127.1.2.0/24".into(), "127.64.2.0/24".into()),
                ("zone-c", "127.1.3.0/24".into(), "127.64.3.0/24".into()),
            ]
        );
    }

    #[test]
    fn addressing_errors_are_explained() {
        let zones = vec!["a".to_string(), "b".to_string()];
        let net: Ipv4Net = "127.0.0.0/8".parse().unwrap();
        type Nets = Vec<(String, Ipv4Net)>;
        let cases: Vec<(Nets, Nets, &str)> = vec![
            (
                vec![("a".into(), "127.1.2.0/24".parse().unwrap())],
                vec![],
                "overlaps",
            ),
            (
                vec![("a".into(), "10.0.0.0/24".parse().unwrap())],
                vec![],
                "outside",
            ),
            (
                vec![("c".into(), "127.9.0.0/24".parse().unwrap())],
                vec![],
                "not in --zones",
            ),
            (
                vec![],
                vec![("a".into(), "127.64.1.0/30".parse().unwrap())],
                "smaller than /29",
            ),
        ];
        for (subnets, pools, want) in cases {
            let err = Config::build("r", net, &zones, &subnets, &pools)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{err} should mention {want}");
        }
        assert!(Config::build("r", net, &["a".into(), "a".into()], &[], &[]).is_err());
        assert!(Config::build("r", net, &[], &[], &[]).is_err());
    }

    #[test]
    fn tokens_file() {
        let t = parse_tokens("# comment\nsecret-a team-a\nsecret-b team-b admin\n\n").unwrap();
        assert_eq!(
            t["secret-a"],
            Principal {
                project: "team-a".into(),
                admin: false
            }
        );
        assert!(t["secret-b"].admin);
        assert!(parse_tokens("one").is_err());
        assert!(parse_tokens("t p x").is_err());
        assert!(parse_tokens("t p\nt q").is_err());
        assert!(parse_tokens("t Bad_Project").is_err());
        assert!(parse_tokens("# nothing").is_err());
    }
}
