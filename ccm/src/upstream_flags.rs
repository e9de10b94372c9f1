//! Upstream's generic cloud-controller-manager flags that this ccm accepts so that an upstream
//! manifest starts unchanged. Some are honoured (`-v`, `--logging-format`); the rest are
//! accepted and have no effect, each for the reason in its help text (docs/ccm.md lists them).
//! An unknown flag is still an error that names it.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::config::parse_go_duration;

const HEADING: &str = "Upstream flags accepted for compatibility";

// Boolean flags follow Go's flag package: `--flag` alone means true, `--flag=false` false
// (`--flag false` is not a boolean's value there either).

#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = HEADING)]
pub struct UpstreamFlags {
    /// klog verbosity: sets the log filter when `--log-filter` is not given (0-3 info, 4-5
    /// debug, 6 and up trace).
    #[arg(short = 'v', long = "v", value_name = "LEVEL")]
    pub v: Option<u8>,

    /// Per-file klog verbosity. No effect: log filters take module paths (`--log-filter`).
    #[arg(long, value_name = "PATTERN=N,...")]
    pub vmodule: Option<String>,

    /// `text` or `json`: sets the log format when `--log-format` is not given.
    #[arg(long, value_name = "FORMAT", value_parser = ["text", "json"])]
    pub logging_format: Option<String>,

    /// Feature gates. No effect: this ccm has none.
    #[arg(long, value_name = "KEY=BOOL,...")]
    pub feature_gates: Option<String>,

    /// Each controller uses a token of its own kube-system service account (`node-controller`,
    /// `route-controller`, `service-controller`), as upstream's ccm does.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub use_service_account_credentials: Option<bool>,

    /// No effect: node IPAM is kube-controller-manager's (as with upstream's ccm).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub allocate_node_cidrs: Option<bool>,

    /// No effect (see `--allocate-node-cidrs`).
    #[arg(long, value_name = "TYPE")]
    pub cidr_allocator_type: Option<String>,

    /// No effect: the service controller reacts to node changes as they come.
    #[arg(long, value_parser = parse_go_duration, value_name = "DURATION")]
    pub node_sync_period: Option<Duration>,

    /// No effect: watches here do not resync.
    #[arg(long, value_parser = parse_go_duration, value_name = "DURATION")]
    pub min_resync_period: Option<Duration>,

    /// No effect: this ccm speaks JSON to the API server.
    #[arg(long, value_name = "TYPE")]
    pub kube_api_content_type: Option<String>,

    /// No effect: no profiling endpoints are served.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub profiling: Option<bool>,

    /// No effect (see `--profiling`).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub contention_profiling: Option<bool>,

    /// Kubeconfig for the serving port's TokenReviews [default: the ccm's own connection,
    /// which is the in-cluster one in a Pod].
    #[arg(long, value_name = "PATH")]
    pub authentication_kubeconfig: Option<PathBuf>,

    /// Kubeconfig for the serving port's SubjectAccessReviews [default: the ccm's own
    /// connection].
    #[arg(long, value_name = "PATH")]
    pub authorization_kubeconfig: Option<PathBuf>,

    /// No effect: client certificates are not read, so there is no client CA to look up.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub authentication_skip_lookup: Option<bool>,

    /// Paths anyone may read without a SubjectAccessReview (exact; a trailing `*` makes a
    /// prefix) [default: /healthz,/readyz,/livez].
    #[arg(long, value_delimiter = ',', value_name = "PATHS")]
    pub authorization_always_allow_paths: Vec<String>,

    /// No effect: the serving port authenticates bearer tokens only (client certificates are
    /// anonymous).
    #[arg(long, value_name = "PATH")]
    pub client_ca_file: Option<PathBuf>,

    /// No effect: front-proxy headers are not trusted (see `--client-ca-file`).
    #[arg(long, value_name = "PATH")]
    pub requestheader_client_ca_file: Option<PathBuf>,

    /// No effect (see `--requestheader-client-ca-file`).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub requestheader_allowed_names: Vec<String>,

    /// No effect (see `--requestheader-client-ca-file`).
    #[arg(long, value_delimiter = ',', value_name = "PREFIXES")]
    pub requestheader_extra_headers_prefix: Vec<String>,

    /// No effect (see `--requestheader-client-ca-file`).
    #[arg(long, value_delimiter = ',', value_name = "HEADERS")]
    pub requestheader_group_headers: Vec<String>,

    /// No effect (see `--requestheader-client-ca-file`).
    #[arg(long, value_delimiter = ',', value_name = "HEADERS")]
    pub requestheader_username_headers: Vec<String>,

    /// No effect (see `--requestheader-client-ca-file`).
    #[arg(long, value_delimiter = ',', value_name = "HEADERS")]
    pub requestheader_uid_headers: Vec<String>,

    /// Serving certificate (PEM, chain allowed); with `--tls-private-key-file`.
    #[arg(long, value_name = "PATH")]
    pub tls_cert_file: Option<PathBuf>,

    /// Serving certificate's private key (PEM).
    #[arg(long, value_name = "PATH")]
    pub tls_private_key_file: Option<PathBuf>,

    /// Without `--tls-cert-file`: where `cloud-controller-manager.crt` and `.key` are read,
    /// or generated (self-signed) when missing [default: generated in memory].
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,

    /// TLS 1.2 cipher suites by Go name; those the TLS library lacks (CBC, RSA key exchange)
    /// are left out with a warning. TLS 1.3 suites are not configurable, as in Go.
    #[arg(long, value_delimiter = ',', value_name = "SUITES")]
    pub tls_cipher_suites: Vec<String>,

    /// `VersionTLS12` or `VersionTLS13`; `VersionTLS10`/`11` are accepted and mean 1.2, the
    /// lowest this ccm speaks.
    #[arg(long, value_name = "VERSION")]
    pub tls_min_version: Option<String>,

    /// No effect: the serving port speaks HTTP/1.1.
    #[arg(long, value_name = "N")]
    pub http2_max_streams_per_connection: Option<u32>,

    /// No effect: there is no kube-controller-manager to migrate leadership from.
    #[arg(long, value_name = "PATH")]
    pub leader_migration_config: Option<PathBuf>,

    /// No effect (see `--leader-migration-config`).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub enable_leader_migration: Option<bool>,

    /// No effect: no volume plugins.
    #[arg(long, value_name = "NAME")]
    pub external_cloud_volume_plugin: Option<String>,

    /// No effect: simcloud resources are always tagged with the cluster name.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub allow_untagged_cloud: Option<bool>,

    /// No effect: controllers start together.
    #[arg(long, value_parser = parse_go_duration, value_name = "DURATION")]
    pub controller_start_interval: Option<Duration>,

    /// No effect: this ccm serves no webhooks.
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub webhooks: Vec<String>,

    /// No effect (see `--webhooks`).
    #[arg(long, value_name = "PORT")]
    pub webhook_secure_port: Option<u16>,
}

impl UpstreamFlags {
    /// The log filter `-v` asks for.
    pub fn log_filter(&self) -> Option<&'static str> {
        self.v.map(|v| match v {
            0..=3 => "info",
            4..=5 => "debug",
            _ => "trace",
        })
    }

    /// Warnings to log at start for flags given that change nothing a user might expect them to.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.client_ca_file.is_some() || self.requestheader_client_ca_file.is_some() {
            out.push("--client-ca-file/--requestheader-client-ca-file are accepted but the serving port authenticates bearer tokens only; client certificates are anonymous (docs/ccm.md)".to_owned());
        }
        out
    }
}
