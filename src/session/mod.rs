//! The replicated session store: delta (all-to-all) and backup (primary + N)
//! modes, state transfer on join, expiry, id change, drain before shutdown.

mod config;
pub use config::SessionConfig;
