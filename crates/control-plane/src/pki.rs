//! The certificates and keys a control plane needs, made fresh for each one: a CA, a serving
//! certificate for every component (all on loopback), the admin's client certificate
//! (`system:masters`) and the service-account signing key.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::Error;

/// Paths of the files written by [`write`].
#[derive(Debug, Clone)]
pub struct Pki {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    /// One serving certificate for every component; its names are `localhost` and `127.0.0.1`.
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    pub admin_cert: PathBuf,
    pub admin_key: PathBuf,
    /// ECDSA private key that signs service-account tokens, and its public half.
    pub sa_key: PathBuf,
    pub sa_pub: PathBuf,
}

/// The admin user of the generated client certificate.
pub const ADMIN_USER: &str = "simcloud-admin";

fn pki_err(e: rcgen::Error) -> Error {
    Error::Pki(e.to_string())
}

/// Generates everything into `dir`.
pub fn write(dir: &Path) -> Result<Pki, Error> {
    let ca_key = KeyPair::generate().map_err(pki_err)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(pki_err)?;
    ca.distinguished_name
        .push(DnType::CommonName, "simcloud control-plane fixture CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).map_err(pki_err)?;
    let issuer = Issuer::new(ca, ca_key);

    let mut serving = CertificateParams::new(vec!["localhost".to_owned()]).map_err(pki_err)?;
    serving
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    serving
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let serving_key = KeyPair::generate().map_err(pki_err)?;
    let serving_cert = serving.signed_by(&serving_key, &issuer).map_err(pki_err)?;

    // kube-apiserver takes the subject's CN as the user name and its O entries as groups.
    let mut admin = CertificateParams::new(Vec::<String>::new()).map_err(pki_err)?;
    admin
        .distinguished_name
        .push(DnType::CommonName, ADMIN_USER);
    admin
        .distinguished_name
        .push(DnType::OrganizationName, "system:masters");
    admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let admin_key = KeyPair::generate().map_err(pki_err)?;
    let admin_cert = admin.signed_by(&admin_key, &issuer).map_err(pki_err)?;

    let sa = KeyPair::generate().map_err(pki_err)?;

    let pki = Pki {
        ca_cert: dir.join("ca.crt"),
        ca_key: dir.join("ca.key"),
        serving_cert: dir.join("serving.crt"),
        serving_key: dir.join("serving.key"),
        admin_cert: dir.join("admin.crt"),
        admin_key: dir.join("admin.key"),
        sa_key: dir.join("sa.key"),
        sa_pub: dir.join("sa.pub"),
    };
    let files = [
        (&pki.ca_cert, ca_cert.pem()),
        (&pki.ca_key, issuer.key().serialize_pem()),
        (&pki.serving_cert, serving_cert.pem()),
        (&pki.serving_key, serving_key.serialize_pem()),
        (&pki.admin_cert, admin_cert.pem()),
        (&pki.admin_key, admin_key.serialize_pem()),
        (&pki.sa_key, sa.serialize_pem()),
        (&pki.sa_pub, sa.public_key_pem()),
    ];
    for (path, pem) in files {
        std::fs::write(path, pem).map_err(|source| Error::Io {
            what: format!("write {}", path.display()),
            source,
        })?;
    }
    Ok(pki)
}
