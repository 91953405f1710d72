//! `sessionrepl node`: one node until SIGINT or SIGTERM, one line per event.

use sessionrepl::{Channel, Config};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Parses `--set k=v` and `--config FILE` into a config.
pub fn parse_config(args: &[String]) -> Result<Config, String> {
    let mut cfg = Config::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--set" => {
                let kv = it.next().ok_or("--set needs key=value")?;
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| format!("--set {kv}: expected key=value"))?;
                cfg.set(k, v).map_err(|e| e.to_string())?;
            }
            "--config" => {
                let f = it.next().ok_or("--config needs a file")?;
                let text = std::fs::read_to_string(f).map_err(|e| format!("{f}: {e}"))?;
                cfg.parse_file_text(&text)
                    .map_err(|e| format!("{f}: {e}"))?;
            }
            other => return Err(format!("unknown option '{other}'")),
        }
    }
    Ok(cfg)
}

/// One line to stdout, flushed at once (tests and scripts read it live).
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

pub fn run(args: &[String]) -> Result<(), String> {
    let cfg = parse_config(args)?;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let ch = Channel::builder(cfg)
        .listener(|m| {
            say(&format!(
                "message from={} bytes={}",
                m.from,
                m.payload.len()
            ));
            Ok(())
        })
        .member_listener(|ev| say(&ev.to_string()))
        .start()
        .map_err(|e| e.to_string())?;
    say(&format!("ready addr={}", ch.local_addr()));
    while !STOP.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
    }
    ch.stop();
    say("stopped");
    Ok(())
}
