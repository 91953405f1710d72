//! A small logging facade. The engine logs through [`emit`]; the host routes
//! the records where it wants with [`set_sink`] (the C ABI's log callback
//! does exactly that). Without a sink, records at or above the level named by
//! the `SESSIONREPL_LOG` environment variable (default `warn`) go to stderr.
//!
//! [`emit`]: crate::log::emit
//! [`set_sink`]: crate::log::set_sink

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

/// Severity of a log record (numbers are stable: the C ABI uses them).
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Something failed.
    Error = 1,
    /// Something was refused or looks wrong, and the engine carried on.
    Warn = 2,
    /// Life-cycle events.
    Info = 3,
    /// Detail for debugging.
    Debug = 4,
}

impl Level {
    /// Parses `error`, `warn`, `info`, `debug` (case-insensitive).
    pub fn parse(s: &str) -> Option<Level> {
        match s.to_ascii_lowercase().as_str() {
            "error" => Some(Level::Error),
            "warn" | "warning" => Some(Level::Warn),
            "info" => Some(Level::Info),
            "debug" | "trace" => Some(Level::Debug),
            _ => None,
        }
    }
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}

/// A log sink: level, target (module), message.
pub type Sink = Arc<dyn Fn(Level, &str, &str) + Send + Sync>;

static MAX_LEVEL: AtomicU8 = AtomicU8::new(0);
static SINK: OnceLock<RwLock<Option<Sink>>> = OnceLock::new();

fn sink_cell() -> &'static RwLock<Option<Sink>> {
    SINK.get_or_init(|| RwLock::new(None))
}

fn max_level() -> u8 {
    let l = MAX_LEVEL.load(Ordering::Relaxed);
    if l != 0 {
        return l;
    }
    let lvl = std::env::var("SESSIONREPL_LOG")
        .ok()
        .and_then(|s| Level::parse(&s))
        .unwrap_or(Level::Warn) as u8;
    MAX_LEVEL.store(lvl, Ordering::Relaxed);
    lvl
}

/// Routes every record to `sink` (replacing any earlier sink); `None`
/// restores the stderr default.
pub fn set_sink(sink: Option<Sink>) {
    let mut g = sink_cell().write().unwrap_or_else(|e| e.into_inner());
    *g = sink;
}

/// Sets the most verbose level that is emitted.
pub fn set_max_level(level: Level) {
    MAX_LEVEL.store(level as u8, Ordering::Relaxed);
}

/// True if a record of `level` would be emitted.
pub fn enabled(level: Level) -> bool {
    (level as u8) <= max_level()
}

/// Emits one record. Use the `sr_log!` macro rather than calling this.
pub fn emit(level: Level, target: &str, args: fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    let msg = args.to_string();
    let g = sink_cell().read().unwrap_or_else(|e| e.into_inner());
    match g.as_ref() {
        Some(s) => s(level, target, &msg),
        None => eprintln!("sessionrepl {} [{}] {}", level.as_str(), target, msg),
    }
}

/// Logs at a level: `sr_log!(Warn, "closed {}: {}", peer, reason)`.
#[macro_export]
macro_rules! sr_log {
    ($lvl:ident, $($arg:tt)+) => {
        if $crate::log::enabled($crate::log::Level::$lvl) {
            $crate::log::emit($crate::log::Level::$lvl, module_path!(), format_args!($($arg)+));
        }
    };
}
