//! Flags (upstream names and defaults where they apply; each with a `CCM_*` environment twin) and
//! the `--cloud-config` file.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser};

use crate::controllers::{ControllerName, parse_controllers};
use crate::names;

/// Kubernetes cloud-controller-manager for simcloud: initialises nodes (zones, addresses,
/// provider IDs), deletes nodes whose instances are gone, and taints shut-down ones.
#[derive(Debug, Clone, Parser)]
#[command(name = "ccm", version, about, long_about = None)]
pub struct Args {
    /// Cloud provider name; must be `simcloud`.
    #[arg(long, env = "CCM_CLOUD_PROVIDER", default_value = "")]
    pub cloud_provider: String,

    /// Path to the cloud configuration file (YAML: endpoint, project, tokenFile, region). Without
    /// it the same settings come from SIMCLOUD_ENDPOINT, SIMCLOUD_PROJECT, SIMCLOUD_TOKEN_FILE and
    /// SIMCLOUD_REGION.
    #[arg(long, env = "CCM_CLOUD_CONFIG")]
    pub cloud_config: Option<PathBuf>,

    /// Controllers to run: `*` for all, `name` to enable, `-name` to disable
    /// (cloud-node, cloud-node-lifecycle, route, service, or upstream's aliases).
    #[arg(
        long,
        env = "CCM_CONTROLLERS",
        value_delimiter = ',',
        default_value = "*"
    )]
    pub controllers: Vec<String>,

    /// Path to a kubeconfig; empty means in-cluster configuration.
    #[arg(long, env = "CCM_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// API server URL, overriding the kubeconfig's.
    #[arg(long, env = "CCM_MASTER")]
    pub master: Option<String>,

    /// Name of the cluster: tags and names of cloud resources the ccm creates carry it.
    #[arg(long, env = "CCM_CLUSTER_NAME", default_value = "kubernetes")]
    pub cluster_name: String,

    /// Pod network of the cluster, comma-separated (used by the route controller).
    #[arg(long, env = "CCM_CLUSTER_CIDR", default_value = "")]
    pub cluster_cidr: String,

    /// Whether to manage pod-CIDR routes in the cloud.
    #[arg(long, env = "CCM_CONFIGURE_CLOUD_ROUTES", default_value_t = true, action = ArgAction::Set,
        num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub configure_cloud_routes: bool,

    /// Period of the route controller's reconciliation.
    #[arg(long, env = "CCM_ROUTE_RECONCILIATION_PERIOD", default_value = "10s", value_parser = parse_go_duration)]
    pub route_reconciliation_period: Duration,

    /// Period of the node-lifecycle controller's pass over NotReady nodes.
    #[arg(long, env = "CCM_NODE_MONITOR_PERIOD", default_value = "5s", value_parser = parse_go_duration)]
    pub node_monitor_period: Duration,

    /// Period of the node controller's address refresh.
    #[arg(long, env = "CCM_NODE_STATUS_UPDATE_FREQUENCY", default_value = "5m", value_parser = parse_go_duration)]
    pub node_status_update_frequency: Duration,

    /// Nodes initialised in parallel (must be at least 1; upstream silently accepts 0).
    #[arg(long, env = "CCM_CONCURRENT_NODE_SYNCS", default_value_t = 1)]
    pub concurrent_node_syncs: u16,

    /// Nodes whose addresses are refreshed in parallel; 0 means `--concurrent-node-syncs`.
    #[arg(long, env = "CCM_CONCURRENT_NODE_STATUS_UPDATES", default_value_t = 0)]
    pub concurrent_node_status_updates: u16,

    /// Services synced in parallel.
    #[arg(long, env = "CCM_CONCURRENT_SERVICE_SYNCS", default_value_t = 1)]
    pub concurrent_service_syncs: u16,

    /// Handle LoadBalancer Services of this `loadBalancerClass` (by default only Services without
    /// a class are handled, as upstream).
    #[arg(long, env = "CCM_LOAD_BALANCER_CLASS")]
    pub load_balancer_class: Option<String>,

    /// Client-side rate limit towards the API server (requests per second).
    #[arg(long, env = "CCM_KUBE_API_QPS", default_value_t = 20.0)]
    pub kube_api_qps: f32,

    /// Burst for `--kube-api-qps`.
    #[arg(long, env = "CCM_KUBE_API_BURST", default_value_t = 30)]
    pub kube_api_burst: u32,

    /// Elect a leader with a Lease before running controllers.
    #[arg(long, env = "CCM_LEADER_ELECT", default_value_t = true, action = ArgAction::Set,
        num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub leader_elect: bool,

    #[arg(long, env = "CCM_LEADER_ELECT_LEASE_DURATION", default_value = "15s", value_parser = parse_go_duration)]
    pub leader_elect_lease_duration: Duration,

    #[arg(long, env = "CCM_LEADER_ELECT_RENEW_DEADLINE", default_value = "10s", value_parser = parse_go_duration)]
    pub leader_elect_renew_deadline: Duration,

    #[arg(long, env = "CCM_LEADER_ELECT_RETRY_PERIOD", default_value = "2s", value_parser = parse_go_duration)]
    pub leader_elect_retry_period: Duration,

    /// Only `leases` is supported.
    #[arg(long, env = "CCM_LEADER_ELECT_RESOURCE_LOCK", default_value = "leases")]
    pub leader_elect_resource_lock: String,

    #[arg(long, env = "CCM_LEADER_ELECT_RESOURCE_NAME", default_value = names::LEASE_NAME)]
    pub leader_elect_resource_name: String,

    #[arg(long, env = "CCM_LEADER_ELECT_RESOURCE_NAMESPACE", default_value = names::LEASE_NAMESPACE)]
    pub leader_elect_resource_namespace: String,

    /// Identity in the Lease; default `<hostname>_<random>`.
    #[arg(long, env = "CCM_LEADER_ELECT_IDENTITY")]
    pub leader_elect_identity: Option<String>,

    /// Address of the HTTPS serving port (/healthz, /readyz, /livez, /metrics).
    #[arg(long, env = "CCM_BIND_ADDRESS", default_value = "0.0.0.0")]
    pub bind_address: IpAddr,

    /// HTTPS port for /healthz, /readyz, /livez and /metrics (see `--cert-dir` and
    /// `--authorization-always-allow-paths`); 0 disables serving.
    #[arg(long, env = "CCM_SECURE_PORT", default_value_t = names::DEFAULT_PORT)]
    pub secure_port: u16,

    /// Log filter in `tracing` syntax [default: from `-v`, else info].
    #[arg(long, env = "CCM_LOG")]
    pub log_filter: Option<String>,

    /// Log format [default: from `--logging-format`, else plain].
    #[arg(long, env = "CCM_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,

    #[command(flatten)]
    pub upstream: crate::upstream_flags::UpstreamFlags,
}

pub use sim_common::LogFormat;

pub use sim_common::parse_duration as parse_go_duration;

/// The validated settings.
#[derive(Debug, Clone)]
pub struct Validated {
    pub controllers: BTreeSet<ControllerName>,
    /// Parsed `--cluster-cidr` (empty when the route controller does not run).
    pub cluster_cidrs: Vec<ipnet::IpNet>,
    pub cloud: CloudConfig,
    pub identity: String,
    /// HTTPS serving; `None` with `--secure-port=0`.
    pub serving: Option<crate::serving::ServingOptions>,
}

impl Args {
    /// `--log-filter`, else what `-v` asks for, else `info`.
    pub fn effective_log_filter(&self) -> String {
        self.log_filter
            .clone()
            .or_else(|| self.upstream.log_filter().map(str::to_owned))
            .unwrap_or_else(|| "info".to_owned())
    }

    /// `--log-format`, else `--logging-format`, else plain.
    pub fn effective_log_format(&self) -> LogFormat {
        self.log_format
            .unwrap_or(match self.upstream.logging_format.as_deref() {
                Some("json") => LogFormat::Json,
                _ => LogFormat::Plain,
            })
    }

    /// Checks everything that can be checked before connecting anywhere.
    pub fn validate(&self) -> Result<Validated, String> {
        match self.cloud_provider.as_str() {
            "" => {
                return Err(
                    "--cloud-provider cannot be empty (use --cloud-provider=simcloud)".into(),
                );
            }
            names::PROVIDER_NAME => {}
            other => {
                return Err(format!(
                    "unknown cloud provider {other:?}: this ccm only implements {:?}",
                    names::PROVIDER_NAME
                ));
            }
        }
        let controllers = parse_controllers(&self.controllers)?;
        if self.concurrent_node_syncs == 0 {
            return Err("--concurrent-node-syncs must be at least 1 (0 would leave every node uninitialized)".into());
        }
        if self.concurrent_service_syncs == 0 {
            return Err("--concurrent-service-syncs must be at least 1".into());
        }
        if self.kube_api_qps.is_nan() || self.kube_api_qps <= 0.0 || self.kube_api_burst == 0 {
            return Err("--kube-api-qps must be > 0 and --kube-api-burst at least 1".into());
        }
        for (flag, d) in [
            ("--node-monitor-period", self.node_monitor_period),
            (
                "--node-status-update-frequency",
                self.node_status_update_frequency,
            ),
            (
                "--route-reconciliation-period",
                self.route_reconciliation_period,
            ),
        ] {
            if d.is_zero() {
                return Err(format!("{flag} must be greater than 0"));
            }
        }
        if self.leader_elect {
            if self.leader_elect_lease_duration < Duration::from_secs(1) {
                return Err("--leader-elect-lease-duration must be at least 1s (Leases count whole seconds)".into());
            }
            if self.leader_elect_resource_lock != "leases" {
                return Err(format!(
                    "--leader-elect-resource-lock={:?} is not supported; use leases",
                    self.leader_elect_resource_lock
                ));
            }
            if !(self.leader_elect_retry_period < self.leader_elect_renew_deadline
                && self.leader_elect_renew_deadline < self.leader_elect_lease_duration)
            {
                return Err(
                    "leader election needs retry period < renew deadline < lease duration".into(),
                );
            }
        }
        let cloud = match &self.cloud_config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read --cloud-config {}: {e}", path.display()))?;
                CloudConfig::parse(&text)
                    .map_err(|e| format!("--cloud-config {}: {e}", path.display()))?
            }
            None => CloudConfig::from_env(|k| std::env::var(k).ok()).map_err(|e| {
                format!("no --cloud-config, and the environment does not configure the cloud: {e}")
            })?,
        };
        let routes = controllers.contains(&ControllerName::Route) && self.configure_cloud_routes;
        let cluster_cidrs = if routes || !self.cluster_cidr.trim().is_empty() {
            crate::route_controller::parse_cluster_cidrs(&self.cluster_cidr)?
        } else {
            Vec::new()
        };
        let identity = self
            .leader_elect_identity
            .clone()
            .unwrap_or_else(default_identity);
        Ok(Validated {
            controllers,
            cluster_cidrs,
            cloud,
            identity,
            serving: self.serving_options().map_err(|e| e.to_string())?,
        })
    }

    /// The serving port's TLS settings from `--bind-address`, `--secure-port` and upstream's
    /// TLS flags; `None` when `--secure-port=0` disables serving.
    pub fn serving_options(
        &self,
    ) -> Result<Option<crate::serving::ServingOptions>, crate::serving::ServingError> {
        use crate::serving::{CertSource, MinVersion, ServingOptions};
        if self.secure_port == 0 {
            return Ok(None);
        }
        let u = &self.upstream;
        Ok(Some(ServingOptions {
            addr: std::net::SocketAddr::new(self.bind_address, self.secure_port),
            cert: CertSource::from_flags(
                u.tls_cert_file.as_deref(),
                u.tls_private_key_file.as_deref(),
                u.cert_dir.as_deref(),
            )?,
            min_version: MinVersion::parse(u.tls_min_version.as_deref())?,
            cipher_suites: u.tls_cipher_suites.clone(),
        }))
    }
}

fn default_identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "ccm".into());
    format!("{host}_{:016x}", rand::random::<u64>())
}

/// The `--cloud-config` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudConfig {
    /// cloud-sim URL, e.g. `http://cloud-sim.kube-system:8080`.
    pub endpoint: String,
    /// Project the token belongs to (informational: logged and shown in errors).
    pub project: Option<String>,
    /// File holding the bearer token (when cloud-sim runs with a tokens file).
    pub token_file: Option<PathBuf>,
    /// Expected region; start-up fails if the cloud reports another.
    pub region: Option<String>,
}

impl CloudConfig {
    /// The same settings from environment variables (`get` reads one), for manifests without a
    /// cloud-config file.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let endpoint =
            get(names::ENV_ENDPOINT).ok_or(format!("{} is not set", names::ENV_ENDPOINT))?;
        let c = CloudConfig {
            endpoint,
            project: get(names::ENV_PROJECT),
            token_file: get(names::ENV_TOKEN_FILE).map(PathBuf::from),
            region: get(names::ENV_REGION),
        };
        c.check_endpoint()?;
        Ok(c)
    }

    fn check_endpoint(&self) -> Result<(), String> {
        if !(self.endpoint.starts_with("http://") || self.endpoint.starts_with("https://")) {
            return Err(format!(
                "endpoint {:?} must be an http:// or https:// URL",
                self.endpoint
            ));
        }
        Ok(())
    }

    /// Parses the flat YAML form: `key: value` lines, `#` comments, optional quotes.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut endpoint = None;
        let mut c = CloudConfig {
            endpoint: String::new(),
            project: None,
            token_file: None,
            region: None,
        };
        for (n, raw) in text.lines().enumerate() {
            let line = strip_comment(raw).trim_end();
            if line.trim().is_empty() || line.trim() == "---" {
                continue;
            }
            let (key, value) = line
                .split_once(':')
                .ok_or_else(|| format!("line {}: expected `key: value`", n + 1))?;
            if key.starts_with(char::is_whitespace) {
                return Err(format!("line {}: nested values are not supported", n + 1));
            }
            let value = unquote(value.trim());
            let value = (!value.is_empty()).then(|| value.to_owned());
            match key.trim() {
                "endpoint" => endpoint = value,
                "project" => c.project = value,
                "tokenFile" => c.token_file = value.map(PathBuf::from),
                "region" => c.region = value,
                other => {
                    return Err(format!(
                        "line {}: unknown key {other:?} (known: endpoint, project, tokenFile, region)",
                        n + 1
                    ));
                }
            }
        }
        c.endpoint = endpoint.ok_or("endpoint is required")?;
        c.check_endpoint()?;
        Ok(c)
    }
}

fn strip_comment(line: &str) -> &str {
    // A '#' starts a comment unless it is inside quotes.
    let mut quote = None;
    for (i, ch) in line.char_indices() {
        match (ch, quote) {
            ('"' | '\'', None) => quote = Some(ch),
            (c, Some(q)) if c == q => quote = None,
            ('#', None) => return &line[..i],
            _ => {}
        }
    }
    line
}

fn unquote(v: &str) -> &str {
    for q in ['"', '\''] {
        if let Some(inner) = v.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return inner;
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_config_file() {
        let c = CloudConfig::parse("# simcloud\nendpoint: \"http://cloud-sim:8080\"  # the API\nproject: team-a\ntokenFile: /etc/simcloud/token\nregion: 'sim-1'\n").unwrap();
        assert_eq!(
            c,
            CloudConfig {
                endpoint: "http://cloud-sim:8080".into(),
                project: Some("team-a".into()),
                token_file: Some("/etc/simcloud/token".into()),
                region: Some("sim-1".into())
            }
        );
        assert!(
            CloudConfig::parse("project: x")
                .unwrap_err()
                .contains("endpoint is required")
        );
        assert!(
            CloudConfig::parse("endpoint: cloud-sim:8080")
                .unwrap_err()
                .contains("http://")
        );
        assert!(
            CloudConfig::parse("endpoint: http://x\nzone: a")
                .unwrap_err()
                .contains("unknown key")
        );
        assert!(CloudConfig::parse("endpoint: http://x\n  nested: y").is_err());
    }

    /// The argument list of upstream's own cloud-controller-manager manifests (the
    /// k8s.io/cloud-provider sample DaemonSet, kubeadm-style flags, and what cloud providers'
    /// charts add) starts unchanged; what it sets that we honour is honoured.
    #[test]
    fn an_upstream_manifests_arguments_start_unchanged() {
        let dir = std::env::temp_dir().join(format!("ccm-flags-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("cloud-config");
        std::fs::write(&cfg, "endpoint: http://127.0.0.1:8080\n").unwrap();
        let cfg_arg = format!("--cloud-config={}", cfg.display());
        let upstream: Vec<&str> = vec![
            "/usr/local/bin/cloud-controller-manager",
            "--cloud-provider=simcloud",
            &cfg_arg,
            "--leader-elect=true",
            "--use-service-account-credentials",
            "--allocate-node-cidrs=false",
            "--cidr-allocator-type=RangeAllocator",
            "--configure-cloud-routes=false",
            "--cluster-cidr=10.244.0.0/16",
            "--cluster-name=kind",
            "--controllers=*,-route",
            "--bind-address=127.0.0.1",
            "--secure-port=10258",
            "--authentication-kubeconfig=/etc/kubernetes/controller-manager.conf",
            "--authorization-kubeconfig=/etc/kubernetes/controller-manager.conf",
            "--authentication-skip-lookup",
            "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
            "--client-ca-file=/etc/kubernetes/pki/ca.crt",
            "--requestheader-client-ca-file=/etc/kubernetes/pki/front-proxy-ca.crt",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-username-headers=X-Remote-User",
            "--tls-cert-file=/etc/ccm/tls.crt",
            "--tls-private-key-file=/etc/ccm/tls.key",
            "--cert-dir=/var/run/ccm",
            "--tls-cipher-suites=TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            "--tls-min-version=VersionTLS12",
            "--http2-max-streams-per-connection=1000",
            "--kube-api-qps=50",
            "--kube-api-burst=100",
            "--kube-api-content-type=application/vnd.kubernetes.protobuf",
            "--profiling=false",
            "--contention-profiling",
            "--feature-gates=CloudControllerManagerWatchBasedRoutesReconciliation=false",
            "--node-monitor-period=5s",
            "--node-status-update-frequency=5m",
            "--node-sync-period=100s",
            "--min-resync-period=12h",
            "--route-reconciliation-period=10s",
            "--concurrent-service-syncs=2",
            "--controller-start-interval=0s",
            "--leader-elect-lease-duration=15s",
            "--leader-elect-renew-deadline=10s",
            "--leader-elect-retry-period=2s",
            "--leader-elect-resource-lock=leases",
            "--leader-migration-config=/etc/ccm/migration.yaml",
            "--enable-leader-migration=false",
            "--external-cloud-volume-plugin=simcloud",
            "--allow-untagged-cloud",
            "--webhooks=*",
            "--webhook-secure-port=10260",
            "--vmodule=controller*=4",
            "--logging-format=json",
            "--v=2",
        ];
        let a = Args::try_parse_from(&upstream).unwrap_or_else(|e| panic!("{e}"));
        let v = a.validate().unwrap();
        assert!(!v.controllers.contains(&ControllerName::Route));
        assert!(a.leader_elect && !a.configure_cloud_routes);
        assert_eq!(a.cluster_name, "kind");
        assert_eq!((a.kube_api_qps, a.kube_api_burst), (50.0, 100));
        assert_eq!(a.concurrent_service_syncs, 2);
        assert_eq!(a.effective_log_format(), LogFormat::Json);
        assert_eq!(a.effective_log_filter(), "info");
        assert_eq!(a.upstream.use_service_account_credentials, Some(true));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Go's flag rules for booleans, verbosity, and what stays an error.
    #[test]
    fn go_flag_forms_and_errors() {
        /// (leader-elect, configure-cloud-routes, log filter), or text the error must contain.
        type Want = Result<(bool, bool, &'static str), &'static str>;
        let table: Vec<(Vec<&str>, Want)> = vec![
            (vec!["--leader-elect"], Ok((true, true, "info"))),
            (vec!["--leader-elect=false"], Ok((false, true, "info"))),
            (vec!["--configure-cloud-routes"], Ok((true, true, "info"))),
            (
                vec!["--configure-cloud-routes=false"],
                Ok((true, false, "info")),
            ),
            (vec!["-v=5"], Ok((true, true, "debug"))),
            (vec!["--v", "9"], Ok((true, true, "trace"))),
            (vec!["--v=9", "--log-filter=warn"], Ok((true, true, "warn"))),
            (vec!["--no-such-flag=1"], Err("--no-such-flag")),
            (vec!["--leader-elect=maybe"], Err("maybe")),
            (vec!["--logging-format=yaml"], Err("yaml")),
        ];
        for (extra, want) in table {
            let mut v = vec!["ccm", "--cloud-provider=simcloud"];
            v.extend_from_slice(&extra);
            match (Args::try_parse_from(&v), want) {
                (Ok(a), Ok((le, routes, filter))) => {
                    assert_eq!(
                        (
                            a.leader_elect,
                            a.configure_cloud_routes,
                            a.effective_log_filter().as_str()
                        ),
                        (le, routes, filter),
                        "{extra:?}"
                    );
                }
                (Err(e), Err(needle)) => {
                    assert!(e.to_string().contains(needle), "{extra:?}: {e}")
                }
                (got, want) => panic!("{extra:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn the_cloud_comes_from_the_environment_without_a_cloud_config() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let c = CloudConfig::from_env(env(&[
            ("SIMCLOUD_ENDPOINT", "http://cloud-sim:8080"),
            ("SIMCLOUD_REGION", "sim-1"),
        ]))
        .unwrap();
        assert_eq!(c.endpoint, "http://cloud-sim:8080");
        assert_eq!(c.region.as_deref(), Some("sim-1"));
        assert!(
            CloudConfig::from_env(env(&[]))
                .unwrap_err()
                .contains("SIMCLOUD_ENDPOINT")
        );
        assert!(CloudConfig::from_env(env(&[("SIMCLOUD_ENDPOINT", "cloud-sim")])).is_err());
    }

    fn args(extra: &[&str]) -> Args {
        let mut v = vec!["ccm", "--cloud-provider=simcloud"];
        v.extend_from_slice(extra);
        Args::parse_from(v)
    }

    #[test]
    fn validation_rejects_what_upstream_should() {
        let dir = std::env::temp_dir().join(format!("ccm-config-{:x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("cloud.yaml");
        std::fs::write(&cfg, "endpoint: http://127.0.0.1:8080\n").unwrap();
        let cfg = cfg.display().to_string();
        let ok = args(&["--cloud-config", &cfg, "--cluster-cidr", "10.244.0.0/16"])
            .validate()
            .unwrap();
        assert_eq!(ok.controllers.len(), 4);
        assert_eq!(ok.cluster_cidrs.len(), 1);
        // Routes need a cluster CIDR, unless they are switched off.
        let e = args(&["--cloud-config", &cfg]).validate().unwrap_err();
        assert!(e.contains("--cluster-cidr is required"), "{e}");
        assert!(
            args(&["--cloud-config", &cfg, "--configure-cloud-routes=false"])
                .validate()
                .is_ok()
        );
        assert!(
            args(&["--cloud-config", &cfg, "--controllers", "*,-route"])
                .validate()
                .is_ok()
        );
        assert!(
            args(&["--cloud-config", &cfg, "--cluster-cidr", "nope"])
                .validate()
                .is_err()
        );
        let cases: &[(&[&str], &str)] = &[
            (&["--controllers", "*,-bogus"], "not a known controller"),
            (&["--concurrent-node-syncs", "0"], "at least 1"),
            (&["--leader-elect-resource-lock", "endpoints"], "leases"),
            (&["--leader-elect-renew-deadline", "20s"], "renew deadline"),
            (&["--node-monitor-period", "0"], "greater than 0"),
        ];
        for (extra, want) in cases {
            let mut all = vec![
                "--cloud-config",
                cfg.as_str(),
                "--cluster-cidr",
                "10.244.0.0/16",
            ];
            all.extend_from_slice(extra);
            let e = args(&all).validate().unwrap_err();
            assert!(e.contains(want), "{extra:?}: {e}");
        }
        let e = Args::parse_from(["ccm", "--cloud-config", &cfg])
            .validate()
            .unwrap_err();
        assert!(e.contains("--cloud-provider cannot be empty"), "{e}");
        let e = Args::parse_from(["ccm", "--cloud-provider=aws", "--cloud-config", &cfg])
            .validate()
            .unwrap_err();
        assert!(e.contains("unknown cloud provider"), "{e}");
        assert!(
            args(&[])
                .validate()
                .unwrap_err()
                .contains("no --cloud-config, and the environment does not configure the cloud")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
