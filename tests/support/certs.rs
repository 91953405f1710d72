//! Key material for the encrypted-run tests: a cluster key, and PEM files
//! of a cluster CA and a node certificate it signed (plus a second CA for
//! refusal tests), written once per test process to a private temp dir.
#![allow(dead_code)]

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use std::path::PathBuf;
use std::sync::OnceLock;

/// The cluster key of the shared-key runs (256 bits).
pub const CLUSTER_KEY: &str = "5e551011be9c0de5e551011be9c0de5e551011be9c0de5e551011be9c0de0042";
/// Another key: a node holding it is not a member.
pub const OTHER_KEY: &str = "0be9c0de5e551011be9c0de5e551011be9c0de5e551011be9c0de5e55101100f";

/// Certificate-mode files of one node.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// `tlsCertificateFile`.
    pub cert: PathBuf,
    /// `tlsCertificateKeyFile`.
    pub key: PathBuf,
    /// `tlsCaCertificateFile`.
    pub ca: PathBuf,
}

impl TlsFiles {
    /// The three settings as `key=value`.
    pub fn settings(&self) -> Vec<String> {
        vec![
            format!("tlsCertificateFile={}", self.cert.display()),
            format!("tlsCertificateKeyFile={}", self.key.display()),
            format!("tlsCaCertificateFile={}", self.ca.display()),
        ]
    }
}

fn write_set(tag: &str) -> TlsFiles {
    let mut p = CertificateParams::new(vec![]).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    // Under the target's scratch dir (cargo sets it for integration
    // tests), not /tmp, where one directory per test process piled up.
    let scratch = option_env!("CARGO_TARGET_TMPDIR")
        .map_or_else(std::env::temp_dir, std::path::PathBuf::from);
    let dir = scratch.join(format!("sr-tls-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = TlsFiles {
        cert: dir.join("node.pem"),
        key: dir.join("node.key"),
        ca: dir.join("ca.pem"),
    };
    std::fs::write(&f.cert, cert.pem()).unwrap();
    std::fs::write(&f.key, key.serialize_pem()).unwrap();
    std::fs::write(&f.ca, ca.pem()).unwrap();
    f
}

/// The cluster's certificate files (one CA per test process).
pub fn cluster_tls() -> &'static TlsFiles {
    static F: OnceLock<TlsFiles> = OnceLock::new();
    F.get_or_init(|| write_set("cluster"))
}

/// Files of a node whose CA is not the cluster's.
pub fn foreign_tls() -> &'static TlsFiles {
    static F: OnceLock<TlsFiles> = OnceLock::new();
    F.get_or_init(|| write_set("foreign"))
}

/// The settings of security mode `mode`: `"key"`, `"tls"` or `"none"`.
pub fn security_settings(mode: &str) -> Vec<String> {
    match mode {
        "key" => vec![format!("encryptionKey={CLUSTER_KEY}")],
        "tls" => cluster_tls().settings(),
        _ => Vec::new(),
    }
}
