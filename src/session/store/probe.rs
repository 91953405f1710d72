//! What kind of node a static member is, learned from its answer to the
//! native connection preface (`docs/PROTOCOL.md`): a sessionrepl receiver
//! answers with its own preface; a Tomcat/Tribes receiver reads the bytes
//! as a broken Tribes package and answers nothing. Static members carry no
//! heartbeat facts, so a session store asks each reachable one at open and
//! refuses to start with one that is not a sessionrepl node: it could
//! never hold sessions, and commits placed on it would only fail.

use crate::error::{Error, Result};
use crate::wire::Preface;
use std::io::{IoSlice, Read};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// How long a connected member may take to answer the preface.
pub(crate) const MAX_REPLY_WAIT: Duration = Duration::from_secs(5);

/// What a probe learned.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// It answered with a native preface.
    Native,
    /// Not known: not reachable now, or it closed the connection (another
    /// domain, a node that requires a secure connection, its limits).
    Unknown,
    /// Not a sessionrepl node: why.
    Other(String),
}

/// Asks the node at `addr` for its preface answer, sending `preface`.
pub(crate) fn probe(addr: SocketAddr, preface: &[u8], connect: Duration, reply: Duration) -> Kind {
    let Ok(s) = TcpStream::connect_timeout(&addr, connect) else {
        return Kind::Unknown;
    };
    let _ = s.set_nodelay(true);
    if s.set_read_timeout(Some(reply)).is_err() {
        return Kind::Unknown;
    }
    // MSG_NOSIGNAL: a peer that closed at once gives EPIPE, not SIGPIPE.
    if crate::driver::sys::writev_all(s.as_raw_fd(), &mut [IoSlice::new(preface)]).is_err() {
        return Kind::Unknown;
    }
    let deadline = Instant::now() + reply;
    let mut buf = Vec::with_capacity(64);
    let mut chunk = [0u8; 512];
    let mut s = s;
    loop {
        match Preface::decode(&buf) {
            Ok(Some((p, _))) if p.reply => return Kind::Native,
            Ok(Some(_)) => {
                return Kind::Other("answered with a preface that is not a reply".into())
            }
            Ok(None) if buf.len() > 64 * 1024 => return Kind::Unknown,
            Ok(None) => {}
            Err(_) => {
                let head: String = buf.iter().take(8).map(|b| format!("{b:02x}")).collect();
                return Kind::Other(format!(
                    "answered the native preface with other bytes ({head}...)"
                ));
            }
        }
        if Instant::now() >= deadline {
            break;
        }
        match s.read(&mut chunk) {
            Ok(0) => return Kind::Unknown,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break
            }
            Err(_) => return Kind::Unknown,
        }
    }
    Kind::Other(format!(
        "accepted the connection but did not answer the native preface within {} ms",
        reply.as_millis()
    ))
}

/// Probes every static member but `me`, within about `budget` in all
/// (members not reached by then are left unknown).
///
/// # Errors
/// [`Error::InvalidConfigValue`] for `staticMembers`, naming the first
/// member that is not a sessionrepl node and why.
pub(crate) fn check_static_members(
    members: &[SocketAddr],
    me: SocketAddr,
    preface: &[u8],
    connect: Duration,
    reply: Duration,
) -> Result<()> {
    let budget = Instant::now() + (connect + reply) * 2;
    for &a in members {
        let now = Instant::now();
        if a == me || now >= budget {
            continue;
        }
        let left = budget - now;
        if let Kind::Other(why) = probe(a, preface, connect.min(left), reply.min(left)) {
            return Err(Error::InvalidConfigValue {
                key: "staticMembers".into(),
                reason: format!(
                    "{a} is not a sessionrepl node: it {why} (a Tomcat/Tribes node?); \
                     a session store needs sessionrepl members, so list only those"
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    fn preface() -> Vec<u8> {
        Preface::new([1; 16], b"", false).encode()
    }

    #[test]
    fn a_silent_listener_is_not_a_sessionrepl_node_and_a_closed_port_is_unknown() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        let k = probe(
            a,
            &preface(),
            Duration::from_secs(5),
            Duration::from_millis(200),
        );
        assert!(
            matches!(&k, Kind::Other(w) if w.contains("did not answer")),
            "{k:?}"
        );
        drop(l);
        let k = probe(
            a,
            &preface(),
            Duration::from_secs(5),
            Duration::from_millis(200),
        );
        assert_eq!(k, Kind::Unknown);
        let err = check_static_members(
            &[a],
            "127.0.0.1:1".parse().unwrap(),
            &preface(),
            Duration::from_secs(1),
            Duration::from_millis(200),
        );
        assert!(
            err.is_ok(),
            "an unreachable member is not an error: {err:?}"
        );
    }

    #[test]
    fn a_reply_preface_is_native_and_other_bytes_are_not() {
        for (answer, native) in [
            (Preface::new([2; 16], b"", true).encode(), true),
            (b"FLT2002 and more".to_vec(), false),
        ] {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let a = l.local_addr().unwrap();
            let t = std::thread::spawn(move || {
                let (mut s, _) = l.accept().unwrap();
                s.write_all(&answer).unwrap();
                std::thread::sleep(Duration::from_millis(200));
            });
            let k = probe(
                a,
                &preface(),
                Duration::from_secs(5),
                Duration::from_secs(5),
            );
            t.join().unwrap();
            if native {
                assert_eq!(k, Kind::Native);
            } else {
                assert!(
                    matches!(&k, Kind::Other(w) if w.contains("other bytes")),
                    "{k:?}"
                );
            }
        }
    }
}
