//! Secure serving as upstream's ccm does it: HTTPS on `--bind-address:--secure-port` with the
//! certificate from `--tls-cert-file`/`--tls-private-key-file`, else the pair
//! `cloud-controller-manager.{crt,key}` in `--cert-dir` (generated there when missing), else one
//! generated in memory. Who may see what is [`crate::delegation`]'s job.
//!
//! HTTP/1.1 only (ALPN `http/1.1`): HTTP/2 would be one more dependency for four small
//! endpoints, so `--http2-max-streams-per-connection` has nothing to limit.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Upstream's pair name: the files in `--cert-dir` are `<pair>.crt` and `<pair>.key`.
pub const PAIR_NAME: &str = "cloud-controller-manager";

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ServingError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{path} holds no certificate")]
    NoCertificate { path: PathBuf },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot generate a self-signed serving certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("--tls-cert-file and --tls-private-key-file go together; only {given} was given")]
    HalfPair { given: &'static str },
    #[error(
        "--tls-min-version {0:?}: expected VersionTLS10, VersionTLS11, VersionTLS12 or VersionTLS13"
    )]
    MinVersion(String),
    #[error(
        "--tls-cipher-suites: {0:?} is not a TLS cipher suite name (expected e.g. TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)"
    )]
    CipherSuite(String),
    #[error("the certificate and key cannot serve TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Where the serving certificate comes from, in upstream's order of preference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSource {
    /// `--tls-cert-file` and `--tls-private-key-file`.
    Files { cert: PathBuf, key: PathBuf },
    /// `--cert-dir`: reuse the pair there, or generate and write it.
    Dir(PathBuf),
    /// Neither: generate one in memory for this process's life.
    Generated,
}

impl CertSource {
    pub fn from_flags(
        cert: Option<&Path>,
        key: Option<&Path>,
        dir: Option<&Path>,
    ) -> Result<Self, ServingError> {
        match (cert, key, dir) {
            (Some(c), Some(k), _) => Ok(Self::Files {
                cert: c.to_owned(),
                key: k.to_owned(),
            }),
            (Some(_), None, _) => Err(ServingError::HalfPair {
                given: "--tls-cert-file",
            }),
            (None, Some(_), _) => Err(ServingError::HalfPair {
                given: "--tls-private-key-file",
            }),
            (None, None, Some(d)) if !d.as_os_str().is_empty() => Ok(Self::Dir(d.to_owned())),
            (None, None, _) => Ok(Self::Generated),
        }
    }
}

/// The lowest TLS version offered. TLS 1.0 and 1.1 are accepted as upstream's flag values but
/// this ccm's TLS library starts at 1.2, so both mean 1.2 here (stricter, never looser).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MinVersion {
    #[default]
    Tls12,
    Tls13,
}

impl MinVersion {
    pub fn parse(s: Option<&str>) -> Result<Self, ServingError> {
        match s.unwrap_or("") {
            "" | "VersionTLS10" | "VersionTLS11" | "VersionTLS12" => Ok(Self::Tls12),
            "VersionTLS13" => Ok(Self::Tls13),
            other => Err(ServingError::MinVersion(other.to_owned())),
        }
    }
}

/// Everything the HTTPS listener needs.
#[derive(Debug, Clone)]
pub struct ServingOptions {
    pub addr: SocketAddr,
    pub cert: CertSource,
    pub min_version: MinVersion,
    /// Go names of the TLS 1.2 suites to offer; empty means the library's (all AEAD, forward
    /// secret). As with Go, TLS 1.3 suites are not configurable.
    pub cipher_suites: Vec<String>,
}

/// A certificate chain and its key, and where they came from (for the log).
pub struct ServingCert {
    pub chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    pub origin: String,
}

impl std::fmt::Debug for ServingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingCert")
            .field("certificates", &self.chain.len())
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// The names a generated certificate is valid for: `localhost`, plus the bind address when it
/// is a specific one (upstream: the bind address, or localhost when it is unspecified), plus
/// 127.0.0.1 so a local probe can verify it.
fn generated_names(bind: IpAddr) -> Vec<String> {
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    if !bind.is_unspecified() && !bind.is_loopback() {
        names.push(bind.to_string());
    }
    names
}

/// A CA and a serving certificate it signed, valid for a year, as upstream's
/// `GenerateSelfSignedCertKey`; returns (chain PEM: leaf then CA, key PEM).
fn generate(bind: IpAddr) -> Result<(String, String), ServingError> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let now = jiff::Zoned::now().date();
    let day = |d: jiff::civil::Date| {
        rcgen::date_time_ymd(i32::from(d.year()), d.month() as u8, d.day() as u8)
    };
    let not_before = day(now.yesterday().unwrap_or(now));
    let not_after = day(now.saturating_add(jiff::Span::new().years(1)));
    let host = generated_names(bind).swap_remove(0);
    let stamp = jiff::Timestamp::now().as_second();

    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, format!("{host}-ca@{stamp}"));
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    (ca.not_before, ca.not_after) = (not_before, not_after);
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(generated_names(bind))?;
    leaf.distinguished_name
        .push(DnType::CommonName, format!("{host}@{stamp}"));
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    (leaf.not_before, leaf.not_after) = (not_before, not_after);
    let leaf_cert = leaf.signed_by(&key, &issuer)?;
    Ok((
        format!("{}{}", leaf_cert.pem(), ca_cert.pem()),
        key.serialize_pem(),
    ))
}

/// Parses a PEM chain and key; `cert_at` and `key_at` name where they came from.
fn parse(
    chain_pem: &[u8],
    key_pem: &[u8],
    cert_at: &str,
    key_at: &str,
) -> Result<ServingCert, ServingError> {
    let chain = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| ServingError::Read {
            what: "certificate",
            path: cert_at.into(),
            source,
        })?;
    if chain.is_empty() {
        return Err(ServingError::NoCertificate {
            path: cert_at.into(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|source| ServingError::Read {
        what: "private key",
        path: key_at.into(),
        source,
    })?;
    Ok(ServingCert {
        chain,
        key,
        origin: cert_at.to_owned(),
    })
}

/// Reads and parses a certificate file and a key file.
fn parse_files(cert: &Path, key: &Path) -> Result<ServingCert, ServingError> {
    parse(
        &read_file("certificate", cert)?,
        &read_file("private key", key)?,
        &cert.display().to_string(),
        &key.display().to_string(),
    )
}

fn read_file(what: &'static str, path: &Path) -> Result<Vec<u8>, ServingError> {
    std::fs::read(path).map_err(|e| ServingError::Read {
        what,
        path: path.to_owned(),
        source: rustls::pki_types::pem::Error::Io(e),
    })
}

fn write_file(path: &Path, contents: &str, private: bool) -> Result<(), ServingError> {
    let err = |source| ServingError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt as _;
        open.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    use std::io::Write as _;
    open.open(path)
        .and_then(|mut f| f.write_all(contents.as_bytes()))
        .map_err(err)
}

/// Loads or makes the serving certificate as [`CertSource`] says.
pub fn load_or_generate(src: &CertSource, bind: IpAddr) -> Result<ServingCert, ServingError> {
    match src {
        CertSource::Files { cert, key } => parse_files(cert, key),
        CertSource::Dir(dir) => {
            let cert = dir.join(format!("{PAIR_NAME}.crt"));
            let key = dir.join(format!("{PAIR_NAME}.key"));
            if cert.is_file() && key.is_file() {
                return parse_files(&cert, &key);
            }
            let (chain, k) = generate(bind)?;
            write_file(&cert, &chain, false)?;
            write_file(&key, &k, true)?;
            tracing::info!(cert = %cert.display(), key = %key.display(), "generated a self-signed serving certificate");
            parse_files(&cert, &key)
        }
        CertSource::Generated => {
            let (chain, k) = generate(bind)?;
            tracing::info!("generated a self-signed serving certificate in memory");
            parse(chain.as_bytes(), k.as_bytes(), "in memory", "in memory")
        }
    }
}

/// Normalises a Go cipher-suite name to rustls's spelling (Go drops the `_SHA256` of the
/// ChaCha20 suites).
fn suite_key(name: &str) -> String {
    let n = name.trim();
    if n.ends_with("_CHACHA20_POLY1305") {
        format!("{n}_SHA256")
    } else {
        n.to_owned()
    }
}

/// The provider's suites limited to `names` for TLS 1.2 (TLS 1.3 suites are always kept, as Go
/// keeps them); returns the suites and the names this library does not offer.
fn select_suites(
    all: &[rustls::SupportedCipherSuite],
    names: &[String],
) -> Result<(Vec<rustls::SupportedCipherSuite>, Vec<String>), ServingError> {
    if names.is_empty() {
        return Ok((all.to_vec(), Vec::new()));
    }
    for n in names {
        if !n.trim().starts_with("TLS_") {
            return Err(ServingError::CipherSuite(n.clone()));
        }
    }
    let wanted: Vec<String> = names.iter().map(|n| suite_key(n)).collect();
    let kept: Vec<_> = all
        .iter()
        .filter(|s| {
            s.version() == &rustls::version::TLS13 || wanted.contains(&format!("{:?}", s.suite()))
        })
        .copied()
        .collect();
    let offered: Vec<String> = all.iter().map(|s| format!("{:?}", s.suite())).collect();
    let unknown = names
        .iter()
        .filter(|n| {
            !offered.contains(&suite_key(n))
                && !n.starts_with("TLS_AES_")
                && !n.starts_with("TLS_CHACHA20_")
        })
        .cloned()
        .collect();
    Ok((kept, unknown))
}

/// The rustls configuration for `cert` under `opts`; logs suites it cannot offer.
pub fn tls_config(
    cert: ServingCert,
    opts: &ServingOptions,
) -> Result<rustls::ServerConfig, ServingError> {
    let mut provider = rustls::crypto::ring::default_provider();
    let (suites, unknown) = select_suites(&provider.cipher_suites, &opts.cipher_suites)?;
    if !unknown.is_empty() {
        tracing::warn!(suites = ?unknown, "--tls-cipher-suites names suites this ccm's TLS library does not offer; they are left out");
    }
    provider.cipher_suites = suites;
    let versions: &[&rustls::SupportedProtocolVersion] = match opts.min_version {
        MinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        MinVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)?
        .with_no_client_auth()
        .with_single_cert(cert.chain, cert.key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Binds, then serves `app` over TLS in the background; returns the bound address.
pub async fn spawn(opts: &ServingOptions, app: Router) -> Result<SocketAddr, ServingError> {
    let cert = load_or_generate(&opts.cert, opts.addr.ip())?;
    let origin = cert.origin.clone();
    let acceptor = TlsAcceptor::from(Arc::new(tls_config(cert, opts)?));
    let listener = tokio::net::TcpListener::bind(opts.addr)
        .await
        .map_err(|source| ServingError::Bind {
            addr: opts.addr,
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| ServingError::Bind {
        addr: opts.addr,
        source,
    })?;
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "accepting a connection on the serving port failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let acceptor = acceptor.clone();
            let app = app.clone();
            tokio::spawn(async move {
                let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
                let service = TowerToHyperService::new(app);
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HANDSHAKE_TIMEOUT)
                    .serve_connection(TokioIo::new(tls), service)
                    .await
                {
                    tracing::debug!(%peer, error = %e, "serving a connection failed");
                }
            });
        }
    });
    tracing::info!(addr = %bound, certificate = %origin, "serving HTTPS: /healthz, /readyz, /livez and /metrics");
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cert_source_follows_upstreams_preference() {
        let p = |s: &str| Some(PathBuf::from(s));
        // (--tls-cert-file, --tls-private-key-file, --cert-dir, source or error text)
        type Case = (
            Option<PathBuf>,
            Option<PathBuf>,
            Option<PathBuf>,
            Result<CertSource, &'static str>,
        );
        let cases: &[Case] = &[
            (
                p("c"),
                p("k"),
                p("d"),
                Ok(CertSource::Files {
                    cert: "c".into(),
                    key: "k".into(),
                }),
            ),
            (None, None, p("d"), Ok(CertSource::Dir("d".into()))),
            (None, None, p(""), Ok(CertSource::Generated)),
            (None, None, None, Ok(CertSource::Generated)),
            (p("c"), None, None, Err("only --tls-cert-file")),
            (None, p("k"), p("d"), Err("only --tls-private-key-file")),
        ];
        for (cert, key, dir, want) in cases {
            let got = CertSource::from_flags(cert.as_deref(), key.as_deref(), dir.as_deref());
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(&g, w),
                (Err(e), Err(w)) => assert!(e.to_string().contains(w), "{e}"),
                (g, w) => panic!("{cert:?} {key:?} {dir:?}: got {g:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn min_version_values() {
        for (flag, want) in [
            (None, Some(MinVersion::Tls12)),
            (Some("VersionTLS10"), Some(MinVersion::Tls12)),
            (Some("VersionTLS12"), Some(MinVersion::Tls12)),
            (Some("VersionTLS13"), Some(MinVersion::Tls13)),
            (Some("TLS13"), None),
        ] {
            assert_eq!(MinVersion::parse(flag).ok(), want, "{flag:?}");
        }
    }

    #[test]
    fn cipher_suites_by_go_name() {
        let all = rustls::crypto::ring::default_provider().cipher_suites;
        let names = |v: &[rustls::SupportedCipherSuite]| -> Vec<String> {
            v.iter().map(|s| format!("{:?}", s.suite())).collect()
        };
        // Go's names pick TLS 1.2 suites; TLS 1.3 suites stay; CBC suites are not offered.
        let (kept, unknown) = select_suites(
            &all,
            &[
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".into(),
                "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305".into(),
                "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA".into(),
                "TLS_AES_128_GCM_SHA256".into(),
            ],
        )
        .unwrap();
        let kept = names(&kept);
        assert!(
            kept.contains(&"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".to_owned()),
            "{kept:?}"
        );
        assert!(
            kept.contains(&"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256".to_owned()),
            "{kept:?}"
        );
        assert!(
            !kept.contains(&"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384".to_owned()),
            "{kept:?}"
        );
        assert!(kept.iter().any(|k| k.starts_with("TLS13_")), "{kept:?}");
        assert_eq!(
            unknown,
            vec!["TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA".to_owned()]
        );
        // No names: everything; a name that is no suite at all: an error naming it.
        assert_eq!(select_suites(&all, &[]).unwrap().0.len(), all.len());
        let e = select_suites(&all, &["AES128".into()]).unwrap_err();
        assert!(e.to_string().contains("\"AES128\""), "{e}");
    }

    #[test]
    fn cert_dir_pair_is_generated_once_then_reused() {
        let dir = std::env::temp_dir().join(format!("ccm-serving-{:016x}", rand::random::<u64>()));
        let src = CertSource::Dir(dir.clone());
        let first = load_or_generate(&src, "0.0.0.0".parse().unwrap()).unwrap();
        assert_eq!(first.chain.len(), 2, "leaf and CA");
        let second = load_or_generate(&src, "0.0.0.0".parse().unwrap()).unwrap();
        assert_eq!(
            first.chain, second.chain,
            "the pair in --cert-dir is reused"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.join("cloud-controller-manager.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "the key is private: {mode:o}");
        }
        // The same pair given as files; a damaged key is an error that names the file.
        let files = CertSource::Files {
            cert: dir.join("cloud-controller-manager.crt"),
            key: dir.join("cloud-controller-manager.key"),
        };
        assert_eq!(
            load_or_generate(&files, "0.0.0.0".parse().unwrap())
                .unwrap()
                .chain,
            first.chain
        );
        std::fs::write(dir.join("cloud-controller-manager.key"), "garbage").unwrap();
        let e = load_or_generate(&files, "0.0.0.0".parse().unwrap()).unwrap_err();
        assert!(e.to_string().contains("private key"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn generated_names_cover_loopback_and_a_specific_bind_address() {
        assert_eq!(
            generated_names("0.0.0.0".parse().unwrap()),
            ["localhost", "127.0.0.1"]
        );
        assert_eq!(
            generated_names("10.0.0.7".parse().unwrap()),
            ["localhost", "127.0.0.1", "10.0.0.7"]
        );
    }
}
