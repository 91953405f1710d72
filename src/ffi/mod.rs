//! The C ABI (`sr_*`). Thin over the Rust API; nothing else is exported.
