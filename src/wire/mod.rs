//! Byte formats only: native frames and the connection preface
//! (`docs/PROTOCOL.md`), Tribes-compatible frames and member blobs, and
//! compression. Nothing here does I/O.

pub mod compress;
pub mod frame;
pub mod preface;
pub mod tribes;

pub use frame::{FrameHeader, FrameType, HEADER_LEN};
pub use preface::Preface;

/// What the first bytes of an inbound connection say it speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Not enough bytes yet to tell.
    Unknown,
    /// The native protocol (`SRPL` preface).
    Native,
    /// Apache Tribes framing (`FLT2002`).
    Tribes,
    /// Neither: the connection is to be closed.
    Garbage,
}

/// Tells the dialect from a connection's first bytes.
pub fn detect_dialect(first: &[u8]) -> Dialect {
    let probes: [(&[u8], Dialect); 2] = [
        (&preface::MAGIC[..], Dialect::Native),
        (&tribes::START_DATA[..], Dialect::Tribes),
    ];
    let mut maybe = false;
    for (magic, d) in probes {
        let n = first.len().min(magic.len());
        if first[..n] == magic[..n] {
            if n == magic.len() {
                return d;
            }
            maybe = true;
        }
    }
    if maybe {
        Dialect::Unknown
    } else {
        Dialect::Garbage
    }
}
