//! The real Kubernetes control plane as a test fixture, the way controller-runtime's envtest
//! provides one: etcd, kube-apiserver, kube-controller-manager and kube-scheduler, built from
//! source at a pinned release by `tests/control-plane/build.sh`, started here on free loopback
//! ports with fresh certificates.
//!
//! - kube-apiserver serves TLS with a generated CA, authenticates client certificates and
//!   service-account tokens, and authorises with `Node,RBAC`; [`ControlPlane::kubeconfig`] is
//!   an admin (`system:masters`) kubeconfig, and [`ControlPlane::service_account_kubeconfig`]
//!   mints one for any service account, so RBAC is enforced for real.
//! - kube-controller-manager runs with `--cloud-provider=external` (the cloud controllers are
//!   the ccm's job) and node IPAM (`--allocate-node-cidrs`), as on kubeadm clusters, plus its
//!   usual controllers: node lifecycle, EndpointSlices with topology hints, Deployments and
//!   ReplicaSets, garbage collection, namespaces, service accounts.
//! - Every process logs to a file in the fixture's directory. A process that exits or does
//!   not become ready during start is an error naming it, with the tail of its log. Dropping
//!   the [`ControlPlane`] kills every process (also while a test panics, when it prints each
//!   log's tail and keeps the directory for a look). A fixture whose owner was killed outright
//!   leaves its processes running; the next fixture to start kills them (see `orphans`).

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;

mod orphans;
pub mod pki;
mod process;

use process::Proc;

mod binaries;
mod kubeconfig;

pub use binaries::{Binaries, SKIP_ENV, binaries_for_test};
pub use kubeconfig::client_from;
use kubeconfig::*;

/// The Kubernetes release the fixture is built from (the pin in `tests/control-plane/go.mod`).
pub const VERSION: &str = "v1.37.2";
/// What builds the binaries, relative to the repository root.
pub const BUILD_COMMAND: &str = "tests/control-plane/build.sh";
/// The binaries the build produces.
pub const BINARIES: [&str; 5] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
];
/// Overrides where the binaries are looked for (a directory holding all of [`BINARIES`]).
pub const BIN_ENV: &str = "SIMCLOUD_CONTROL_PLANE_BIN";
/// The cache root `build.sh` uses, when set.
pub const CACHE_ENV: &str = "SIMCLOUD_CONTROL_PLANE_DIR";

/// Why the fixture could not be found or started.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "the control-plane binaries are not built ({dir} does not exist); build them with `{BUILD_COMMAND}`"
    )]
    NotBuilt { dir: PathBuf },
    #[error(
        "the control-plane cache {dir} is broken: {problem}; rebuild it with `{BUILD_COMMAND}`"
    )]
    BrokenCache { dir: PathBuf, problem: String },
    #[error("cannot {what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot generate the fixture's certificates: {0}")]
    Pki(String),
    #[error("{process} exited during start-up ({status}); its log {} ends with:\n{tail}", log.display())]
    Exited {
        process: &'static str,
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("{process} was not ready within {timeout:?} (last check: {last}); its log {} ends with:\n{tail}", log.display())]
    NotReady {
        process: &'static str,
        timeout: Duration,
        last: String,
        log: PathBuf,
        tail: String,
    },
    #[error("kube client for {what}: {message}")]
    Client { what: String, message: String },
}

/// How to run the control plane.
#[derive(Debug, Clone)]
pub struct Options {
    /// Node IPAM's range (`--cluster-cidr`).
    pub cluster_cidr: String,
    /// Size of each node's pod CIDR (`--node-cidr-mask-size`).
    pub node_cidr_mask_size: u8,
    /// Service cluster IPs (`--service-cluster-ip-range`).
    pub service_cidr: String,
    /// How long the node-lifecycle controller waits for a silent kubelet before marking its
    /// Node `Unknown` (`--node-monitor-grace-period`; upstream's default is 50 s).
    pub node_monitor_grace_period: Duration,
    /// How often it checks (`--node-monitor-period`).
    pub node_monitor_period: Duration,
    /// Run kube-scheduler.
    pub scheduler: bool,
    /// Longest wait for each process to become ready.
    pub start_timeout: Duration,
    /// Where state and logs go; a fresh temporary directory when `None`, removed on a clean drop.
    pub dir: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            cluster_cidr: "10.244.0.0/16".to_owned(),
            node_cidr_mask_size: 24,
            service_cidr: "10.96.0.0/16".to_owned(),
            node_monitor_grace_period: Duration::from_secs(50),
            node_monitor_period: Duration::from_secs(5),
            scheduler: true,
            start_timeout: Duration::from_secs(120),
            dir: None,
        }
    }
}

impl Options {
    /// Quick node-lifecycle reactions for tests: a silent kubelet's Node turns `Unknown` after
    /// 6 s instead of 50 s.
    pub fn for_tests() -> Self {
        Self {
            node_monitor_grace_period: Duration::from_secs(6),
            node_monitor_period: Duration::from_secs(1),
            ..Self::default()
        }
    }
}

/// A running control plane. Dropping it stops every process.
pub struct ControlPlane {
    dir: PathBuf,
    remove_dir: bool,
    /// In start order; dropped (killed) in reverse.
    procs: Vec<Proc>,
    url: String,
    etcd_url: String,
    kubeconfig: PathBuf,
    pki: pki::Pki,
    bins: Binaries,
    /// How long the whole start took.
    pub started_in: Duration,
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { what, source }
}

/// A duration as a Go flag takes it, in milliseconds.
fn go_duration(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// Free loopback ports, held until the returned listeners are dropped.
fn reserve_ports(n: usize) -> Result<Vec<TcpListener>, Error> {
    (0..n)
        .map(|_| {
            TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
                .map_err(io("reserve a loopback port".to_owned()))
        })
        .collect()
}

fn port(l: &TcpListener) -> u16 {
    l.local_addr().map(|a| a.port()).unwrap_or(0)
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver, then kube-controller-manager and kube-scheduler, and
    /// waits until each one reports healthy.
    pub async fn start(opts: Options) -> Result<Self, Error> {
        let bins = Binaries::locate()?;
        Self::start_with(bins, opts).await
    }

    pub async fn start_with(bins: Binaries, opts: Options) -> Result<Self, Error> {
        let begun = Instant::now();
        // Fixtures whose owner was killed outright (no drop ran) have left processes running.
        orphans::sweep(&std::env::temp_dir());
        let (dir, remove_dir) = match &opts.dir {
            Some(d) => (d.clone(), false),
            None => (
                std::env::temp_dir().join(format!(
                    "{}{:016x}",
                    orphans::DIR_PREFIX,
                    rand::random::<u64>()
                )),
                true,
            ),
        };
        std::fs::create_dir_all(dir.join("etcd"))
            .map_err(io(format!("create {}", dir.display())))?;
        orphans::record_owner(&dir)
            .map_err(io(format!("write the owner into {}", dir.display())))?;
        let pki = pki::write(&dir)?;
        let ports = reserve_ports(5)?;
        let [etcd_client, etcd_peer, api, kcm, sched] = [0, 1, 2, 3, 4].map(|i| port(&ports[i]));
        let url = format!("https://127.0.0.1:{api}");
        let kubeconfig = dir.join("admin.kubeconfig");
        write_kubeconfig(
            &kubeconfig,
            &url,
            &pki.ca_cert,
            json!({"client-certificate": pki.admin_cert, "client-key": pki.admin_key}),
        )?;
        let mut cp = Self {
            dir,
            remove_dir,
            procs: Vec::new(),
            url,
            etcd_url: format!("http://127.0.0.1:{etcd_client}"),
            kubeconfig,
            pki,
            bins,
            started_in: Duration::ZERO,
        };
        let p = |path: &Path| path.display().to_string();
        let d = cp.dir.clone();
        let etcd_args = vec![
            "--name=fixture".to_owned(),
            format!("--data-dir={}", p(&d.join("etcd"))),
            format!("--listen-client-urls=http://127.0.0.1:{etcd_client}"),
            format!("--advertise-client-urls=http://127.0.0.1:{etcd_client}"),
            format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer}"),
            format!("--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}"),
            format!("--initial-cluster=fixture=http://127.0.0.1:{etcd_peer}"),
            // A test fixture: durability across a machine crash is not needed, speed is.
            "--unsafe-no-fsync=true".to_owned(),
            "--log-level=warn".to_owned(),
        ];
        let pki = cp.pki.clone();
        let api_args = vec![
            format!("--etcd-servers=http://127.0.0.1:{etcd_client}"),
            "--bind-address=127.0.0.1".to_owned(),
            "--advertise-address=127.0.0.1".to_owned(),
            // Loopback is not a valid endpoint address, so the `kubernetes` Service gets none.
            "--endpoint-reconciler-type=none".to_owned(),
            format!("--secure-port={api}"),
            format!("--cert-dir={}", p(&d.join("apiserver"))),
            format!("--tls-cert-file={}", p(&pki.serving_cert)),
            format!("--tls-private-key-file={}", p(&pki.serving_key)),
            format!("--client-ca-file={}", p(&pki.ca_cert)),
            // As kubeadm sets them; without, every delegating component (kube-controller-manager,
            // kube-scheduler, the ccm) logs that the front-proxy CA bundle is missing.
            format!("--requestheader-client-ca-file={}", p(&pki.ca_cert)),
            "--requestheader-allowed-names=front-proxy-client".to_owned(),
            "--requestheader-username-headers=X-Remote-User".to_owned(),
            "--requestheader-group-headers=X-Remote-Group".to_owned(),
            "--requestheader-extra-headers-prefix=X-Remote-Extra-".to_owned(),
            "--authorization-mode=Node,RBAC".to_owned(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_owned(),
            format!("--service-account-key-file={}", p(&pki.sa_pub)),
            format!("--service-account-signing-key-file={}", p(&pki.sa_key)),
            format!("--service-cluster-ip-range={}", opts.service_cidr),
            "--allow-privileged=true".to_owned(),
            "--profiling=false".to_owned(),
        ];
        // Reserved ports are released just before the processes that bind them start.
        drop(ports);
        cp.spawn("etcd", &etcd_args)?;
        cp.spawn("kube-apiserver", &api_args)?;
        let admin = cp.client().await?;
        cp.wait_healthy("kube-apiserver", &admin, "/readyz", opts.start_timeout)
            .await?;

        let kc = p(&cp.kubeconfig);
        let serving = [
            format!("--tls-cert-file={}", p(&pki.serving_cert)),
            format!("--tls-private-key-file={}", p(&pki.serving_key)),
            format!("--kubeconfig={kc}"),
            format!("--authentication-kubeconfig={kc}"),
            format!("--authorization-kubeconfig={kc}"),
            "--bind-address=127.0.0.1".to_owned(),
            "--leader-elect=false".to_owned(),
            "--profiling=false".to_owned(),
        ];
        let mut kcm_args = serving.to_vec();
        kcm_args.extend([
            format!("--secure-port={kcm}"),
            "--cloud-provider=external".to_owned(),
            "--allocate-node-cidrs=true".to_owned(),
            format!("--cluster-cidr={}", opts.cluster_cidr),
            format!("--node-cidr-mask-size={}", opts.node_cidr_mask_size),
            format!("--service-cluster-ip-range={}", opts.service_cidr),
            format!(
                "--node-monitor-grace-period={}",
                go_duration(opts.node_monitor_grace_period)
            ),
            format!(
                "--node-monitor-period={}",
                go_duration(opts.node_monitor_period)
            ),
            // As kubeadm runs it: each controller with its own service account.
            "--use-service-account-credentials=true".to_owned(),
            format!("--service-account-private-key-file={}", p(&pki.sa_key)),
            format!("--root-ca-file={}", p(&pki.ca_cert)),
            format!("--cluster-signing-cert-file={}", p(&pki.ca_cert)),
            format!("--cluster-signing-key-file={}", p(&pki.ca_key)),
            "--controllers=*".to_owned(),
        ]);
        cp.spawn("kube-controller-manager", &kcm_args)?;
        if opts.scheduler {
            let mut args = serving.to_vec();
            args.push(format!("--secure-port={sched}"));
            cp.spawn("kube-scheduler", &args)?;
        }
        let kcm_client = cp.client_at(kcm).await?;
        cp.wait_healthy(
            "kube-controller-manager",
            &kcm_client,
            "/healthz",
            opts.start_timeout,
        )
        .await?;
        if opts.scheduler {
            let c = cp.client_at(sched).await?;
            cp.wait_healthy("kube-scheduler", &c, "/healthz", opts.start_timeout)
                .await?;
        }
        cp.started_in = begun.elapsed();
        tracing::info!(url = %cp.url, dir = %cp.dir.display(), took = ?cp.started_in, "control plane ready");
        Ok(cp)
    }

    fn spawn(&mut self, name: &'static str, args: &[String]) -> Result<(), Error> {
        let p = Proc::spawn(name, &self.bins.path(name), args, &self.dir)?;
        let pid = p.pid();
        self.procs.push(p);
        orphans::record_process(&self.dir, pid)
            .map_err(io(format!("record {name} in {}", self.dir.display())))
    }

    /// Polls `path` on a component until it answers `ok`; fails at once if any process exits.
    async fn wait_healthy(
        &mut self,
        name: &'static str,
        client: &kube::Client,
        path: &str,
        timeout: Duration,
    ) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        loop {
            for p in &mut self.procs {
                if let Some(status) = p.exited() {
                    return Err(Error::Exited {
                        process: p.name,
                        status,
                        tail: process::tail(&p.log, 30),
                        log: p.log.clone(),
                    });
                }
            }
            let req = http_get(path);
            let last = match tokio::time::timeout(Duration::from_secs(5), client.request_text(req))
                .await
            {
                Ok(Ok(body)) if body.trim() == "ok" => return Ok(()),
                Ok(Ok(body)) => format!("answered {body:?}"),
                Ok(Err(e)) => e.to_string(),
                Err(_) => "no answer within 5 s".to_owned(),
            };
            if Instant::now() >= deadline {
                let log = self.dir.join(format!("{name}.log"));
                return Err(Error::NotReady {
                    process: name,
                    timeout,
                    last,
                    tail: process::tail(&log, 30),
                    log,
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The API server's URL (`https://127.0.0.1:<port>`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// An admin kubeconfig (`system:masters`).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The fixture's directory: certificates, etcd's data and every process's log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The log file of one process (`etcd`, `kube-apiserver`, ...).
    pub fn log(&self, process: &str) -> PathBuf {
        self.dir.join(format!("{process}.log"))
    }

    pub fn binaries(&self) -> &Binaries {
        &self.bins
    }

    /// Compacts etcd's history up to its current revision, as kube-apiserver does every five
    /// minutes: a watch from an older resourceVersion then gets 410 Expired. Returns the
    /// revision compacted to.
    pub async fn compact(&self) -> Result<i64, Error> {
        let err = |message: String| Error::Client {
            what: format!("etcd at {}", self.etcd_url),
            message,
        };
        let http = reqwest::Client::new();
        // etcd's JSON gateway: any read returns the current revision in its header.
        let head: serde_json::Value = http
            .post(format!("{}/v3/kv/range", self.etcd_url))
            .json(&json!({"key": "AA=="}))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| err(e.to_string()))?
            .json()
            .await
            .map_err(|e| err(e.to_string()))?;
        let rev: i64 = head
            .pointer("/header/revision")
            .and_then(|r| r.as_str())
            .and_then(|r| r.parse().ok())
            .ok_or_else(|| err(format!("no revision in {head}")))?;
        http.post(format!("{}/v3/kv/compaction", self.etcd_url))
            .json(&json!({"revision": rev.to_string(), "physical": true}))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| err(e.to_string()))?;
        Ok(rev)
    }

    /// The process ID of one process, to stop or signal it in a test.
    pub fn pid(&self, process: &str) -> Option<u32> {
        self.procs.iter().find(|p| p.name == process).map(Proc::pid)
    }

    /// A kubectl command with the admin kubeconfig set.
    pub fn kubectl(&self) -> std::process::Command {
        let mut c = std::process::Command::new(self.bins.path("kubectl"));
        c.arg("--kubeconfig").arg(&self.kubeconfig);
        c
    }

    /// A kube client with admin rights.
    pub async fn client(&self) -> Result<kube::Client, Error> {
        client_from(&self.kubeconfig).await
    }

    /// A client for another component's serving port, trusting the fixture's CA.
    async fn client_at(&self, port: u16) -> Result<kube::Client, Error> {
        let what = format!("127.0.0.1:{port}");
        let mut config = config_from(&self.kubeconfig).await?;
        config.cluster_url =
            format!("https://127.0.0.1:{port}")
                .parse()
                .map_err(|e: http::uri::InvalidUri| Error::Client {
                    what: what.clone(),
                    message: e.to_string(),
                })?;
        kube::Client::try_from(config).map_err(|e| Error::Client {
            what,
            message: e.to_string(),
        })
    }

    /// Makes service account `namespace/name` if it is missing, mints a token for it (valid
    /// 24 h) and writes a kubeconfig that uses it, so a process runs with exactly the rights
    /// RBAC grants that account.
    pub async fn service_account_kubeconfig(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<PathBuf, Error> {
        let what = format!("service account {namespace}/{name}");
        let err = |e: kube::Error| Error::Client {
            what: what.clone(),
            message: e.to_string(),
        };
        let sas: Api<ServiceAccount> = Api::namespaced(self.client().await?, namespace);
        let sa = ServiceAccount {
            metadata: kube::api::ObjectMeta {
                name: Some(name.to_owned()),
                ..Default::default()
            },
            ..Default::default()
        };
        match sas.create(&PostParams::default(), &sa).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(err(e)),
        }
        let req = TokenRequest {
            spec: TokenRequestSpec {
                audiences: Vec::new(),
                expiration_seconds: Some(24 * 3600),
                bound_object_ref: None,
            },
            ..Default::default()
        };
        let token = sas
            .create_token_request(name, &PostParams::default(), &req)
            .await
            .map_err(err)?
            .status
            .map(|s| s.token)
            .unwrap_or_default();
        let path = self.dir.join(format!("sa-{namespace}-{name}.kubeconfig"));
        write_kubeconfig(&path, &self.url, &self.pki.ca_cert, json!({"token": token}))?;
        Ok(path)
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let failing = std::thread::panicking();
        while let Some(mut p) = self.procs.pop() {
            p.kill();
            if failing {
                eprintln!(
                    "---- {} log ({}), last 40 lines ----\n{}",
                    p.name,
                    p.log.display(),
                    process::tail(&p.log, 40)
                );
            }
        }
        if failing {
            eprintln!(
                "control-plane fixture kept in {} for a look",
                self.dir.display()
            );
        } else if self.remove_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
