//! Apache Tribes wire formats (`FLT2002` frames, ChannelData, member blobs,
//! ACK bodies). See `docs/PROTOCOL.md` and `shared/design/TRIBES.md`.

/// `START_DATA`: ASCII `FLT2002`.
pub const START_DATA: [u8; 7] = *b"FLT2002";
/// `END_DATA`: ASCII `TLF2003`.
pub const END_DATA: [u8; 7] = *b"TLF2003";
