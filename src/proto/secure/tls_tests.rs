use super::*;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new() -> Ca {
        let mut p = CertificateParams::new(vec![]).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Ca {
            issuer: CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap(),
        }
    }
    fn pem(&self) -> String {
        self.issuer.pem()
    }
    /// A node certificate (chain PEM, key PEM) signed by this CA.
    fn node(&self, san: &str) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![san.to_string()])
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }
    fn context(&self, san: &str) -> TlsContext {
        let (c, k) = self.node(san);
        TlsContext::from_pem(c.as_bytes(), k.as_bytes(), self.pem().as_bytes()).unwrap()
    }
}

const PEER: &str = "127.0.0.1";

/// Pumps bytes between the two until neither has anything to say; returns
/// the first error of each side.
fn pump(
    c: &mut TlsSession,
    s: &mut TlsSession,
    c_plain: &mut Vec<u8>,
    s_plain: &mut Vec<u8>,
) -> (Option<SecureError>, Option<SecureError>) {
    let (mut ce, mut se) = (None, None);
    for _ in 0..20 {
        let mut w = Vec::new();
        c.poll_transmit(&mut w);
        if !w.is_empty() && se.is_none() {
            se = s.receive(&w, s_plain).err();
        }
        let mut w2 = Vec::new();
        s.poll_transmit(&mut w2);
        if !w2.is_empty() && ce.is_none() {
            ce = c.receive(&w2, c_plain).err();
        }
        if w.is_empty() && w2.is_empty() {
            break;
        }
    }
    (ce, se)
}

#[test]
fn mutual_tls_handshake_and_data_both_ways() {
    let ca = Ca::new();
    let (cc, sc) = (ca.context("node-a"), ca.context("node-b"));
    let mut c = TlsSession::client(&cc, PEER.parse().unwrap()).unwrap();
    let mut s = TlsSession::server(&sc).unwrap();
    let (mut cp, mut sp) = (Vec::new(), Vec::new());
    // Written before the handshake: waits inside rustls.
    let mut hello = Vec::new();
    c.send(b"SRPL preface and frames", &mut hello).unwrap();
    s.receive(&hello, &mut sp).unwrap();
    assert_eq!(pump(&mut c, &mut s, &mut cp, &mut sp), (None, None));
    assert!(c.is_established() && s.is_established());
    assert_eq!(sp, b"SRPL preface and frames");
    let mut w = Vec::new();
    s.send(b"ack", &mut w).unwrap();
    c.receive(&w, &mut cp).unwrap();
    assert_eq!(cp, b"ack");
    assert!(s.peer_certificates().is_some_and(|c| c.len() == 1));
    let marker = b"SECRET-MARKER";
    let mut w = Vec::new();
    c.send(marker, &mut w).unwrap();
    assert!(!w.windows(marker.len()).any(|x| x == marker));
}

#[test]
fn client_with_certificate_from_another_ca_is_refused() {
    let (ca, rogue) = (Ca::new(), Ca::new());
    let mut c = TlsSession::client(&rogue.context("mallory"), PEER.parse().unwrap()).unwrap();
    let mut s = TlsSession::server(&ca.context("node-b")).unwrap();
    let (mut cp, mut sp) = (Vec::new(), Vec::new());
    let mut hello = Vec::new();
    c.send(b"injected", &mut hello).unwrap();
    s.receive(&hello, &mut sp).unwrap();
    let (_ce, se) = pump(&mut c, &mut s, &mut cp, &mut sp);
    assert!(matches!(se, Some(SecureError::Refused(_))), "{se:?}");
    assert!(sp.is_empty(), "delivered {sp:?}");
    assert!(!s.is_established());
}

#[test]
fn server_with_certificate_from_another_ca_is_refused() {
    let (ca, rogue) = (Ca::new(), Ca::new());
    let mut c = TlsSession::client(&ca.context("node-a"), PEER.parse().unwrap()).unwrap();
    let mut s = TlsSession::server(&rogue.context("mallory")).unwrap();
    let (mut cp, mut sp) = (Vec::new(), Vec::new());
    let mut hello = Vec::new();
    c.send(b"secret session data", &mut hello).unwrap();
    s.receive(&hello, &mut sp).unwrap();
    let (ce, _se) = pump(&mut c, &mut s, &mut cp, &mut sp);
    assert!(matches!(ce, Some(SecureError::Refused(_))), "{ce:?}");
    assert!(sp.is_empty(), "the rogue server read {sp:?}");
}

#[test]
fn flipped_bit_in_a_record_fails_the_session() {
    let ca = Ca::new();
    let mut c = TlsSession::client(&ca.context("a"), PEER.parse().unwrap()).unwrap();
    let mut s = TlsSession::server(&ca.context("b")).unwrap();
    let (mut cp, mut sp) = (Vec::new(), Vec::new());
    assert_eq!(pump(&mut c, &mut s, &mut cp, &mut sp), (None, None));
    let mut w = Vec::new();
    c.send(b"payload", &mut w).unwrap();
    let last = w.len() - 3;
    w[last] ^= 1;
    assert!(matches!(
        s.receive(&w, &mut sp),
        Err(SecureError::Corrupt(_))
    ));
    assert!(sp.is_empty());
}

#[test]
fn replayed_record_fails_the_session() {
    let ca = Ca::new();
    let mut c = TlsSession::client(&ca.context("a"), PEER.parse().unwrap()).unwrap();
    let mut s = TlsSession::server(&ca.context("b")).unwrap();
    let (mut cp, mut sp) = (Vec::new(), Vec::new());
    assert_eq!(pump(&mut c, &mut s, &mut cp, &mut sp), (None, None));
    let mut w = Vec::new();
    c.send(b"once", &mut w).unwrap();
    s.receive(&w, &mut sp).unwrap();
    assert_eq!(sp, b"once");
    sp.clear();
    assert!(s.receive(&w, &mut sp).is_err());
    assert!(sp.is_empty());
}

#[test]
fn bad_pem_is_a_clear_config_error() {
    let ca = Ca::new();
    let (c, k) = ca.node("x");
    let e = TlsContext::from_pem(b"", k.as_bytes(), ca.pem().as_bytes()).unwrap_err();
    assert!(e.to_string().contains("tlsCertificateFile"), "{e}");
    let e = TlsContext::from_pem(c.as_bytes(), b"nope", ca.pem().as_bytes()).unwrap_err();
    assert!(e.to_string().contains("tlsCertificateKeyFile"), "{e}");
    let e = TlsContext::from_pem(c.as_bytes(), k.as_bytes(), b"").unwrap_err();
    assert!(e.to_string().contains("tlsCaCertificateFile"), "{e}");
    // A key that does not match the certificate.
    let (_, other_key) = ca.node("y");
    assert!(TlsContext::from_pem(c.as_bytes(), other_key.as_bytes(), ca.pem().as_bytes()).is_err());
    // Errors never quote key material.
    let e = TlsContext::from_pem(c.as_bytes(), b"nope", ca.pem().as_bytes()).unwrap_err();
    assert!(!e.to_string().contains("PRIVATE KEY"));
}

#[test]
fn scattered_plaintext_arrives_whole_over_tls() {
    let ca = Ca::new();
    let mut c = TlsSession::client(&ca.context("a"), PEER.parse().unwrap()).unwrap();
    let mut s = TlsSession::server(&ca.context("b")).unwrap();
    let (mut cp, mut sp) = (Vec::new(), Vec::new());
    assert_eq!(pump(&mut c, &mut s, &mut cp, &mut sp), (None, None));
    let hdr = [1u8; 16];
    let body = [2u8; 3000];
    let parts: Vec<&[u8]> = (0..40).flat_map(|_| [&hdr[..], &body[..]]).collect();
    let mut w = Vec::new();
    assert_eq!(c.send_vectored(&parts, &mut w).unwrap(), 40 * 3016);
    s.receive(&w, &mut sp).unwrap();
    assert_eq!(sp, parts.concat());
}

use crate::proto::secure::{SecureContext, SecureStream};

/// Seals `total` plaintext bytes in one [`SecureStream`] batch and writes
/// the ciphertext to the peer in 1000-byte pieces: after every piece, the
/// plaintext [`SecureStream::written`] reported so far covers all the peer
/// could open (a sender must count a frame as written before its ack can
/// come back), and by the end it is all of it.
fn written_keeps_ahead_of_the_peer(client: &SecureContext, server: &SecureContext) {
    let mut c = SecureStream::connect(client, PEER.parse().unwrap()).unwrap();
    let mut s = SecureStream::accept(server).unwrap();
    for _ in 0..10 {
        let w = c.pending().to_vec();
        let n = w.len();
        c.written(n);
        s.receive(&w).unwrap();
        let w = s.pending().to_vec();
        let n = w.len();
        s.written(n);
        c.receive(&w).unwrap();
    }
    assert!(c.is_established() && s.is_established());
    let total = 200 * 1024 + 17;
    let data = vec![9u8; total];
    let mut seal = c.sealer();
    seal.push(&data[..1000]);
    seal.push(&data[1000..]);
    seal.finish().unwrap();
    assert_eq!(c.unsent_plain(), total);
    let (mut counted, mut opened) = (0, 0);
    while !c.pending().is_empty() {
        let piece = c.pending()[..c.pending().len().min(1000)].to_vec();
        counted += c.written(piece.len());
        s.receive(&piece).unwrap();
        opened += s.plain().len();
        s.plain().clear();
        assert!(counted >= opened, "counted {counted} < opened {opened}");
    }
    assert_eq!((counted, opened, c.unsent_plain()), (total, total, 0));
}

#[test]
fn written_counts_each_record_as_it_goes_out() {
    use crate::proto::secure::SharedKey;
    let key = SharedKey::from_hex(&"ab".repeat(32)).unwrap();
    let ctx = SecureContext::shared_key(&[key]);
    written_keeps_ahead_of_the_peer(&ctx, &ctx);
    let ca = Ca::new();
    let tls = |san| SecureContext::Tls(Arc::new(ca.context(san)));
    written_keeps_ahead_of_the_peer(&tls("a"), &tls("b"));
}
