//! Certificate mode: mutual TLS 1.3 with rustls, driven sans-IO
//! (`read_tls` / `process_new_packets` / `write_tls` over byte slices).
//!
//! Both sides present a certificate chain (`tlsCertificateFile`,
//! `tlsCertificateKeyFile`) and verify the peer's against the cluster CA
//! (`tlsCaCertificateFile`). The cluster CA is the trust root: any
//! certificate it signed is a member. A server certificate is checked
//! against the address dialled when it names one; a certificate without a
//! matching name is still accepted if its chain verifies, because cluster
//! members are dialled by address and often share one certificate.

use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::sync::Arc;

use pki_types::pem::PemObject;
use pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, ClientConfig, ClientConnection, Connection, DigitallySignedStruct,
    RootCertStore, ServerConfig, ServerConnection, SignatureScheme,
};

use super::{PlainBuf, SecureError};

/// Most plaintext buffered inside rustls before the handshake completes.
pub const MAX_EARLY: usize = 256 * 1024;

/// rustls client and server configurations of one node.
pub struct TlsContext {
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
}

impl std::fmt::Debug for TlsContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsContext(<redacted>)")
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsContext {
    /// Builds both configurations from PEM text: this node's certificate
    /// chain (leaf first), its private key, and the cluster CA
    /// certificate(s).
    ///
    /// # Errors
    /// [`SecureError::Config`] naming what is missing or invalid (never
    /// the key material itself).
    pub fn from_pem(chain_pem: &[u8], key_pem: &[u8], ca_pem: &[u8]) -> Result<Self, SecureError> {
        let cfg = |s: &str| SecureError::Config(s.to_string());
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| cfg(&format!("tlsCertificateFile: {e}")))?;
        if chain.is_empty() {
            return Err(cfg("tlsCertificateFile: no certificate in PEM"));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| {
            cfg("tlsCertificateKeyFile: no PKCS#8, PKCS#1 or SEC1 private key in PEM")
        })?;
        let mut roots = RootCertStore::empty();
        let mut n = 0;
        for c in CertificateDer::pem_slice_iter(ca_pem) {
            let c = c.map_err(|e| cfg(&format!("tlsCaCertificateFile: {e}")))?;
            roots
                .add(c)
                .map_err(|e| cfg(&format!("tlsCaCertificateFile: {e}")))?;
            n += 1;
        }
        if n == 0 {
            return Err(cfg("tlsCaCertificateFile: no certificate in PEM"));
        }
        let roots = Arc::new(roots);
        let p = provider();
        let versions = &[&rustls::version::TLS13];

        let client_verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), p.clone())
            .build()
            .map_err(|e| cfg(&format!("tlsCaCertificateFile: {e}")))?;
        let server = ServerConfig::builder_with_provider(p.clone())
            .with_protocol_versions(versions)
            .map_err(|e| cfg(&e.to_string()))?
            .with_client_cert_verifier(client_verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| cfg(&format!("tlsCertificateKeyFile: {e}")))?;

        let inner = WebPkiServerVerifier::builder_with_provider(roots, p.clone())
            .build()
            .map_err(|e| cfg(&format!("tlsCaCertificateFile: {e}")))?;
        let client = ClientConfig::builder_with_provider(p)
            .with_protocol_versions(versions)
            .map_err(|e| cfg(&e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ClusterServerVerifier { inner }))
            .with_client_auth_cert(chain, key)
            .map_err(|e| cfg(&format!("tlsCertificateKeyFile: {e}")))?;
        Ok(TlsContext {
            client: Arc::new(client),
            server: Arc::new(server),
        })
    }
}

/// WebPKI chain verification against the cluster CA, tolerating a name
/// that does not match the dialled address (see the module docs).
#[derive(Debug)]
struct ClusterServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ClusterServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // WebPKI checks the chain before the name, so a name error means
        // the chain verified.
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            r => r,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// One connection's TLS session (either side), sans-IO.
pub struct TlsSession {
    conn: Connection,
    failed: bool,
}

impl std::fmt::Debug for TlsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSession")
            .field("established", &self.is_established())
            .finish_non_exhaustive()
    }
}

fn classify(e: rustls::Error) -> SecureError {
    use rustls::{AlertDescription as A, Error as E};
    match e {
        E::InvalidCertificate(_)
        | E::NoCertificatesPresented
        | E::InappropriateHandshakeMessage { .. }
        | E::InappropriateMessage { .. }
        | E::PeerIncompatible(_)
        | E::AlertReceived(
            A::BadCertificate
            | A::UnknownCA
            | A::CertificateRequired
            | A::CertificateUnknown
            | A::HandshakeFailure
            | A::ProtocolVersion
            | A::DecryptError
            | A::AccessDenied,
        ) => SecureError::Refused(format!("TLS: {e}")),
        other => SecureError::Corrupt(format!("TLS: {other}")),
    }
}

impl TlsSession {
    /// The connecting side, to `peer`.
    ///
    /// # Errors
    /// [`SecureError::Config`] if rustls refuses the configuration.
    pub fn client(ctx: &TlsContext, peer: IpAddr) -> Result<Self, SecureError> {
        let name = ServerName::IpAddress(peer.into());
        let mut c = ClientConnection::new(ctx.client.clone(), name)
            .map_err(|e| SecureError::Config(format!("TLS client: {e}")))?;
        c.set_buffer_limit(Some(MAX_EARLY));
        Ok(TlsSession {
            conn: c.into(),
            failed: false,
        })
    }

    /// The accepting side.
    ///
    /// # Errors
    /// [`SecureError::Config`] if rustls refuses the configuration.
    pub fn server(ctx: &TlsContext) -> Result<Self, SecureError> {
        let mut c = ServerConnection::new(ctx.server.clone())
            .map_err(|e| SecureError::Config(format!("TLS server: {e}")))?;
        c.set_buffer_limit(Some(MAX_EARLY));
        Ok(TlsSession {
            conn: c.into(),
            failed: false,
        })
    }

    /// True once the handshake (both certificates verified) completed.
    pub fn is_established(&self) -> bool {
        !self.failed && !self.conn.is_handshaking()
    }

    /// The peer closed its side.
    ///
    /// # Errors
    /// [`SecureError::Corrupt`] if rustls holds part of a record (the
    /// stream was truncated).
    pub fn receive_eof(&mut self) -> Result<(), SecureError> {
        let mut empty: &[u8] = &[];
        let _ = self.conn.read_tls(&mut empty);
        self.conn.process_new_packets().map_err(|e| {
            self.failed = true;
            classify(e)
        })?;
        Ok(())
    }

    /// The peer's certificate chain once verified (leaf first).
    pub fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        self.conn.peer_certificates()
    }

    /// Bytes received; plaintext appended to `plain`.
    ///
    /// # Errors
    /// [`SecureError::Refused`] for certificate and handshake failures,
    /// [`SecureError::Corrupt`] for bad records; close the connection
    /// after sending what [`TlsSession::poll_transmit`] gives (an alert).
    pub fn receive(&mut self, input: &[u8], plain: &mut impl PlainBuf) -> Result<(), SecureError> {
        if self.failed {
            return Err(SecureError::Corrupt("session failed".into()));
        }
        let mut rd = input;
        while !rd.is_empty() {
            if let Err(e) = self.conn.read_tls(&mut rd) {
                self.failed = true;
                return Err(SecureError::Corrupt(format!("TLS: {e}")));
            }
            if let Err(e) = self.conn.process_new_packets() {
                self.failed = true;
                return Err(classify(e));
            }
            self.drain_plaintext(plain)?;
        }
        Ok(())
    }

    fn drain_plaintext(&mut self, plain: &mut impl PlainBuf) -> Result<(), SecureError> {
        loop {
            let start = plain.len();
            match self.conn.reader().read(plain.grow(16 * 1024)) {
                Ok(0) => {
                    plain.cut(start);
                    return Ok(());
                }
                Ok(n) => plain.cut(start + n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    plain.cut(start);
                    return Ok(());
                }
                Err(e) => {
                    plain.cut(start);
                    self.failed = true;
                    return Err(SecureError::Corrupt(format!("TLS: {e}")));
                }
            }
        }
    }

    /// Plaintext to send; TLS records are appended to `out` (before the
    /// handshake completes they wait inside rustls, bounded).
    ///
    /// # Errors
    /// [`SecureError::Backpressure`] past [`MAX_EARLY`].
    pub fn send(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), SecureError> {
        if self.failed {
            return Err(SecureError::Corrupt("session failed".into()));
        }
        let mut rest = plain;
        loop {
            let n = self
                .conn
                .writer()
                .write(rest)
                .map_err(|e| SecureError::Corrupt(format!("TLS: {e}")))?;
            self.poll_transmit(out);
            rest = &rest[n..];
            if rest.is_empty() {
                return Ok(());
            }
            if n == 0 && self.conn.is_handshaking() {
                return Err(SecureError::Backpressure);
            }
        }
    }

    /// As [`TlsSession::send`] for plaintext in pieces; rustls gathers
    /// them into full records. Returns the plaintext bytes taken.
    ///
    /// # Errors
    /// As [`TlsSession::send`].
    pub fn send_vectored(
        &mut self,
        parts: &[&[u8]],
        out: &mut Vec<u8>,
    ) -> Result<usize, SecureError> {
        if self.failed {
            return Err(SecureError::Corrupt("session failed".into()));
        }
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let mut iov: Vec<io::IoSlice<'_>> = parts.iter().map(|p| io::IoSlice::new(p)).collect();
        let mut slices = &mut iov[..];
        let mut done = 0;
        while done < total {
            let n = self
                .conn
                .writer()
                .write_vectored(slices)
                .map_err(|e| SecureError::Corrupt(format!("TLS: {e}")))?;
            self.poll_transmit(out);
            done += n;
            if n == 0 && self.conn.is_handshaking() {
                return Err(SecureError::Backpressure);
            }
            io::IoSlice::advance_slices(&mut slices, n);
        }
        Ok(total)
    }

    /// Handshake records, alerts and queued data to write.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) {
        while self.conn.wants_write() {
            match self.conn.write_tls(out) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
