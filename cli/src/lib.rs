//! The `sessionrepl` command's library: the benchmark scenarios and their
//! floors and peers. Kept out of `libsessionrepl.so`, which carries the
//! engine and its bindings only; uses the engine's public API alone.
#![deny(missing_docs)]

pub mod bench;
