//! Security settings (issue 12): shared-key mode (`encryptionKey`, Tomcat
//! `EncryptInterceptor`'s names), certificate mode (`tlsCertificateFile`,
//! `tlsCertificateKeyFile`, `tlsCaCertificateFile`, Tomcat `SSLHostConfig`'s
//! names) and heartbeat authentication. See `docs/SECURITY.md`.
//!
//! Key material never reaches a log, an error message or `Debug` output.
//!
//! [`SecurityConfig::context`] builds what every native connection uses;
//! heartbeat authentication is live. Tribes-framed connections are refused
//! (receive) or fail (send) on a node that requires encryption.
//!
//! [`SecurityConfig::context`]: crate::security::SecurityConfig::context

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{bad, parse_ms};
use crate::error::Result;
use crate::proto::secure::tribes::ALGORITHM;
use crate::proto::secure::{SecureContext, SharedKey, TlsContext};

/// True: the native transport runs every connection through the secure
/// layer (both sender modes families, both drivers, the receiver). Were it
/// false, a channel configured with security would refuse to start
/// ([`crate::Config::validate`]) instead of sending in clear text.
pub const CONNECTIONS_SECURED: bool = true;

/// Most extra keys accepted during a rollover.
pub const MAX_ACCEPTED_KEYS: usize = 2;

/// Security configuration.
#[derive(Debug, Clone)]
pub struct SecurityConfig {
    /// `encryptionKey`: the cluster key (hex, 128/192/256 bits). Set, it
    /// makes every connection authenticated and encrypted, and every
    /// heartbeat authenticated; nothing falls back to clear text.
    pub encryption_key: Option<SharedKey>,
    /// `encryptionKeyPrevious` (alias `encryptionKeyAccepted`): up to two
    /// more keys (comma-separated) accepted from peers but never used to
    /// connect, for a rollover.
    pub accepted_keys: Vec<SharedKey>,
    /// `encryptionAlgorithm`: what Tribes `EncryptInterceptor` peers use;
    /// only `AES/GCM/NoPadding` is accepted.
    pub encryption_algorithm: String,
    /// `tlsCertificateFile`: this node's certificate chain (PEM, leaf first).
    pub tls_certificate_file: Option<PathBuf>,
    /// `tlsCertificateKeyFile`: its private key (PEM).
    pub tls_certificate_key_file: Option<PathBuf>,
    /// `tlsCaCertificateFile`: the cluster CA certificate(s) (PEM).
    pub tls_ca_certificate_file: Option<PathBuf>,
    /// `heartbeatAuthWindow`: how far an authenticated heartbeat's time may
    /// be from the receiver's clock (default 10 s, like Tomcat's
    /// `replayWindowTime`).
    pub heartbeat_auth_window: Duration,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            encryption_key: None,
            accepted_keys: Vec::new(),
            encryption_algorithm: ALGORITHM.to_string(),
            tls_certificate_file: None,
            tls_certificate_key_file: None,
            tls_ca_certificate_file: None,
            heartbeat_auth_window: Duration::from_millis(10_000),
        }
    }
}

fn parse_key(k: &str, v: &str) -> Result<SharedKey> {
    SharedKey::from_hex(v).map_err(|reason| bad(k, &reason))
}

fn parse_path(k: &str, v: &str) -> Result<Option<PathBuf>> {
    if v.is_empty() {
        return Ok(None);
    }
    if v.len() > 4096 {
        return Err(bad(k, "path longer than 4096 bytes"));
    }
    Ok(Some(PathBuf::from(v)))
}

impl SecurityConfig {
    /// Sets one key if it is a security key; `Ok(false)` if it is not.
    ///
    /// # Errors
    /// A bad value, named by key; the value itself is never repeated.
    pub fn set(&mut self, k: &str, v: &str) -> Result<bool> {
        match k {
            "encryptionKey" => {
                self.encryption_key = if v.is_empty() {
                    None
                } else {
                    Some(parse_key(k, v)?)
                }
            }
            "encryptionKeyPrevious" | "encryptionKeyAccepted" => {
                let keys = v
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| parse_key(k, s))
                    .collect::<Result<Vec<_>>>()?;
                if keys.len() > MAX_ACCEPTED_KEYS {
                    return Err(bad(k, "at most 2 keys"));
                }
                self.accepted_keys = keys;
            }
            "encryptionAlgorithm" => {
                if !v.eq_ignore_ascii_case(ALGORITHM) {
                    return Err(bad(k, "only AES/GCM/NoPadding is supported"));
                }
                self.encryption_algorithm = ALGORITHM.to_string();
            }
            "tlsCertificateFile" => self.tls_certificate_file = parse_path(k, v)?,
            "tlsCertificateKeyFile" => self.tls_certificate_key_file = parse_path(k, v)?,
            "tlsCaCertificateFile" => self.tls_ca_certificate_file = parse_path(k, v)?,
            "heartbeatAuthWindow" => self.heartbeat_auth_window = parse_ms(k, v, 100, 3_600_000)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// True if certificate mode is configured.
    pub fn tls_enabled(&self) -> bool {
        self.tls_certificate_file.is_some()
            || self.tls_certificate_key_file.is_some()
            || self.tls_ca_certificate_file.is_some()
    }

    /// True if connections must be secured (either mode).
    pub fn required(&self) -> bool {
        self.encryption_key.is_some() || self.tls_enabled()
    }

    /// The cluster keys, current first, then those accepted in a rollover.
    pub fn keys(&self) -> Vec<SharedKey> {
        self.encryption_key
            .iter()
            .chain(self.accepted_keys.iter())
            .cloned()
            .collect()
    }

    /// Checks the settings fit together.
    ///
    /// # Errors
    /// Accepted keys without a current key; an incomplete certificate set.
    pub fn validate(&self) -> Result<()> {
        if self.encryption_key.is_none() && !self.accepted_keys.is_empty() {
            return Err(bad("encryptionKeyPrevious", "needs encryptionKey"));
        }
        if self.tls_enabled() {
            for (k, v) in [
                ("tlsCertificateFile", &self.tls_certificate_file),
                ("tlsCertificateKeyFile", &self.tls_certificate_key_file),
                ("tlsCaCertificateFile", &self.tls_ca_certificate_file),
            ] {
                if v.is_none() {
                    return Err(bad(k, "certificate mode needs all three TLS files"));
                }
            }
        }
        Ok(())
    }

    /// What connections use: certificate mode if configured (it reads the
    /// PEM files), else shared-key mode if a key is set, else `None`
    /// (clear text).
    ///
    /// # Errors
    /// [`SecurityConfig::validate`]'s, an unreadable file, or bad PEM, each
    /// naming the setting.
    pub fn context(&self) -> Result<Option<SecureContext>> {
        self.validate()?;
        if self.tls_enabled() {
            let read = |k: &str, p: &Option<PathBuf>| -> Result<Vec<u8>> {
                let p = p.as_ref().expect("validated");
                std::fs::read(p).map_err(|e| bad(k, &format!("cannot read {}: {e}", p.display())))
            };
            let chain = read("tlsCertificateFile", &self.tls_certificate_file)?;
            let key = read("tlsCertificateKeyFile", &self.tls_certificate_key_file)?;
            let ca = read("tlsCaCertificateFile", &self.tls_ca_certificate_file)?;
            let t = TlsContext::from_pem(&chain, &key, &ca)?;
            return Ok(Some(SecureContext::Tls(std::sync::Arc::new(t))));
        }
        if self.encryption_key.is_some() {
            return Ok(Some(SecureContext::shared_key(&self.keys())));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, Error};

    const K1: &str = "00112233445566778899aabbccddeeff";

    #[test]
    fn keys_are_set_through_config_and_never_printed() {
        let mut c = Config::default();
        c.set("encryptionKey", K1).unwrap();
        c.set("encryptionKeyPrevious", &"ab".repeat(32)).unwrap();
        assert!(c.security.required());
        assert_eq!(c.security.keys().len(), 2);
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("8899aabb") && !dbg.contains("abab"), "{dbg}");
        assert!(dbg.contains("redacted"));
        assert!(c.membership.heartbeat_keys.len() == 2);
        assert!(matches!(
            c.security.context().unwrap(),
            Some(SecureContext::SharedKey(_))
        ));
    }

    #[test]
    fn wrong_or_short_key_is_a_clear_error_without_the_value() {
        let mut c = Config::default();
        for v in ["0011", "xyz", &"12".repeat(20), "abc"] {
            let e = c.set("encryptionKey", v).unwrap_err();
            assert!(matches!(e, Error::InvalidConfigValue { .. }));
            let s = e.to_string();
            assert!(s.contains("encryptionKey"), "{s}");
            assert!(!s.contains(v), "{s} repeats the value");
        }
        let e = c.set("encryptionKey", &"12".repeat(20)).unwrap_err();
        assert!(e.to_string().contains("160 bits"), "{e}");
        assert!(c.security.encryption_key.is_none());
        assert!(c
            .set("encryptionKeyPrevious", &format!("{K1},{K1},{K1}"))
            .is_err());
        assert!(c
            .set("encryptionAlgorithm", "AES/CBC/PKCS5Padding")
            .is_err());
        c.set("encryptionAlgorithm", "aes/gcm/nopadding").unwrap();
    }

    #[test]
    fn incomplete_tls_settings_and_orphan_previous_key_are_refused() {
        let mut c = SecurityConfig::default();
        c.set("tlsCertificateFile", "/tmp/x.pem").unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("tlsCertificateKeyFile"), "{e}");
        let mut c = SecurityConfig::default();
        c.set("encryptionKeyPrevious", K1).unwrap();
        assert!(c.validate().is_err());
        let mut c = SecurityConfig::default();
        c.set("tlsCertificateFile", "/nonexistent/c.pem").unwrap();
        c.set("tlsCertificateKeyFile", "/nonexistent/k.pem")
            .unwrap();
        c.set("tlsCaCertificateFile", "/nonexistent/ca.pem")
            .unwrap();
        let e = c.context().unwrap_err().to_string();
        assert!(
            e.contains("tlsCertificateFile") && e.contains("cannot read"),
            "{e}"
        );
    }

    #[test]
    fn certificate_mode_reads_the_three_pem_files() {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let mut p = CertificateParams::new(vec![]).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["node1".into()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let dir = std::env::temp_dir().join(format!("sr-sec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let files = [
            ("tlsCertificateFile", "node1.pem", cert.pem()),
            ("tlsCertificateKeyFile", "node1.key", key.serialize_pem()),
            ("tlsCaCertificateFile", "ca.pem", ca.pem()),
        ];
        let mut c = Config::default();
        for (k, name, pem) in &files {
            let path = dir.join(name);
            std::fs::write(&path, pem).unwrap();
            c.set(k, path.to_str().unwrap()).unwrap();
        }
        let ctx = c.security.context().unwrap().unwrap();
        assert_eq!(ctx.mode_name(), "tls");
        assert!(!format!("{c:?} {ctx:?}").contains("PRIVATE KEY"));
        // A CA file holding the node certificate instead: chains to nothing
        // this node trusts, but loads (it is a certificate); a key file
        // holding a certificate does not.
        std::fs::write(dir.join("node1.key"), cert.pem()).unwrap();
        let e = c.security.context().unwrap_err().to_string();
        assert!(e.contains("tlsCertificateKeyFile"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_channel_asking_for_security_starts_with_its_connections_secured() {
        const { assert!(CONNECTIONS_SECURED) };
        let mut c = Config::default();
        c.set("encryptionKey", K1).unwrap();
        c.validate().unwrap();
        let ch = crate::Channel::builder(c).start().unwrap();
        ch.stop();
    }

    #[test]
    fn no_settings_means_clear_text() {
        let c = SecurityConfig::default();
        assert!(!c.required());
        assert!(c.context().unwrap().is_none());
    }
}
