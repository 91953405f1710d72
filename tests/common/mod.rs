//! Helpers shared by the integration tests: a waitable log of lines or
//! events, a child process whose stdout lines land in such a log, and
//! compiling the project's Java peers against Debian's Tribes jar.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Debian's Tribes jar (package libtomcat10-java).
pub const TRIBES_JAR: &str = "/usr/share/java/tomcat10-tribes.jar";
/// The logging jar Tribes needs.
pub const JULI_JAR: &str = "/usr/share/java/tomcat10-juli.jar";

/// Things that happened, in order, waitable with a generous deadline.
pub struct Log<T> {
    v: Mutex<Vec<T>>,
    cv: Condvar,
    wait: Duration,
}

impl<T: Clone + std::fmt::Debug> Log<T> {
    /// An empty log whose waits give up after `wait`.
    pub fn new(wait: Duration) -> Arc<Log<T>> {
        Arc::new(Log {
            v: Mutex::new(Vec::new()),
            cv: Condvar::new(),
            wait,
        })
    }

    /// Appends one item and wakes waiters.
    pub fn push(&self, t: T) {
        self.v.lock().unwrap().push(t);
        self.cv.notify_all();
    }

    /// A copy of everything so far.
    pub fn snapshot(&self) -> Vec<T> {
        self.v.lock().unwrap().clone()
    }

    /// Waits until `n` items match `f`; returns the last of them.
    pub fn wait_n(&self, what: &str, n: usize, f: impl Fn(&T) -> bool) -> T {
        let deadline = Instant::now() + self.wait;
        let mut g = self.v.lock().unwrap();
        loop {
            let hits: Vec<&T> = g.iter().filter(|t| f(t)).collect();
            if hits.len() >= n {
                return hits[n - 1].clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out waiting for {what}; got {:?}",
                *g
            );
            g = self.cv.wait_timeout(g, left).unwrap().0;
        }
    }

    /// Waits for the first item at index `from` or later that matches `f`;
    /// returns its index and the item (a cursor for reading in order).
    pub fn wait_from(&self, what: &str, from: usize, f: impl Fn(&T) -> bool) -> (usize, T) {
        let deadline = Instant::now() + self.wait;
        let mut g = self.v.lock().unwrap();
        loop {
            if let Some(i) = (from..g.len()).find(|&i| f(&g[i])) {
                return (i, g[i].clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out waiting for {what}; got {:?}",
                *g
            );
            g = self.cv.wait_timeout(g, left).unwrap().0;
        }
    }

    /// Waits until an item matches `f`; returns the first that does.
    pub fn wait(&self, what: &str, f: impl Fn(&T) -> bool) -> T {
        self.wait_n(what, 1, f)
    }
}

/// Forwards the child's stdout, line by line, into a new log.
pub fn stdout_lines(child: &mut Child, wait: Duration) -> Arc<Log<String>> {
    let log = Log::new(wait);
    let out = child.stdout.take().expect("stdout piped");
    let l2 = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            l2.push(line);
        }
    });
    log
}

/// Compiles `java/<file>` against the Tribes jars into a fresh temp dir, or
/// says why it cannot (no jar, no javac) so the caller can skip — except
/// under `CI=true`, where a test that cannot run its real peer fails
/// instead of passing silently.
pub fn compile_java(file: &str) -> Result<PathBuf, String> {
    let r = compile_java_here(file);
    if let Err(why) = &r {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the Java peer cannot be built under CI=true: {why}"
        );
    }
    r
}

fn compile_java_here(file: &str) -> Result<PathBuf, String> {
    for jar in [TRIBES_JAR, JULI_JAR] {
        if !Path::new(jar).exists() {
            return Err(format!(
                "{jar} missing (apt-get install -y libtomcat10-java)"
            ));
        }
    }
    let stem = file.trim_end_matches(".java");
    // Unique per call: tests of one binary compile from several threads.
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // Under the target's scratch dir (cargo sets it for integration
    // tests), not /tmp, where one directory per test process piled up.
    let scratch = option_env!("CARGO_TARGET_TMPDIR")
        .map_or_else(std::env::temp_dir, std::path::PathBuf::from);
    let dir = scratch.join(format!("sr-{stem}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    // The repository root: this package's, or its parent for the cli crate.
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = if manifest.join("java").is_dir() {
        manifest
    } else {
        manifest.parent().unwrap_or(manifest)
    };
    let src = root.join("java").join(file);
    let st = Command::new("javac")
        .args(["-nowarn", "-cp", &format!("{TRIBES_JAR}:{JULI_JAR}"), "-d"])
        .arg(&dir)
        .arg(&src)
        .status()
        .map_err(|e| format!("javac not runnable: {e}"))?;
    if !st.success() {
        return Err(format!("javac failed: {st}"));
    }
    Ok(dir)
}

// Running on both I/O drivers.

use sessionrepl::Config;

#[path = "../support/certs.rs"]
pub mod certs;

thread_local! {
    static IO: std::cell::RefCell<&'static str> = const { std::cell::RefCell::new("mio") };
    static SEC: std::cell::RefCell<&'static str> = const { std::cell::RefCell::new("none") };
}

/// A default config for the driver (and security mode) under test.
pub fn io_cfg() -> Config {
    let mut c = Config::default();
    c.io_backend = IO.with(|io| io.borrow().to_string());
    for s in certs::security_settings(SEC.with(|m| *m.borrow())) {
        let (k, v) = s.split_once('=').unwrap();
        c.set(k, v).unwrap();
    }
    c
}

/// Runs `f` as [`with_io`] does, every channel from [`io_cfg`] in
/// security mode `sec` (`"key"`: shared key, `"tls"`: certificates).
pub fn with_io_secure(io: &'static str, sec: &'static str, f: fn()) {
    SEC.with(|c| *c.borrow_mut() = sec);
    with_io(io, f);
    SEC.with(|c| *c.borrow_mut() = "none");
}

/// Runs `f` with every channel on driver `io`; the io_uring run is skipped
/// (with the reason printed) only where the kernel refuses io_uring, and
/// never under `CI=true`, where a skipped run must not count as passed.
pub fn with_io(io: &'static str, f: fn()) {
    if io == "uring" && !uring_usable() {
        return;
    }
    IO.with(|c| *c.borrow_mut() = io);
    f();
}

/// True where io_uring runs; else prints why the caller skips, and fails
/// under `CI=true`, where a skipped run must not count as passed.
pub fn uring_usable() -> bool {
    match sessionrepl::__internal::driver::uring::probe() {
        Ok(_) => true,
        Err(why) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "io_uring unavailable under CI=true: {why}"
            );
            eprintln!("skipped: io_uring unavailable here: {why}");
            false
        }
    }
}

/// Generates `<test>::mio` and `<test>::uring` for each test body (the
/// including file declares `mod common` at its root).
#[allow(unused_macros)]
macro_rules! on_both_drivers {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn mio() {
                    super::common::with_io("mio", super::$name);
                }
                #[test]
                fn uring() {
                    super::common::with_io("uring", super::$name);
                }
            }
        )*
    };
}

/// Generates `encrypted::<test>::{mio,uring}_{key,tls}`: each body on
/// both drivers with encryption on in both modes. Call once per file.
#[allow(unused_macros)]
macro_rules! on_both_drivers_encrypted {
    ($($name:ident),* $(,)?) => {
        mod encrypted {
            $(
                mod $name {
                    #[test]
                    fn mio_key() {
                        super::super::common::with_io_secure("mio", "key", super::super::$name);
                    }
                    #[test]
                    fn uring_key() {
                        super::super::common::with_io_secure("uring", "key", super::super::$name);
                    }
                    #[test]
                    fn mio_tls() {
                        super::super::common::with_io_secure("mio", "tls", super::super::$name);
                    }
                    #[test]
                    fn uring_tls() {
                        super::super::common::with_io_secure("uring", "tls", super::super::$name);
                    }
                }
            )*
        }
    };
}

/// How long a [`TribesPeer`] line may take to appear.
pub const TRIBES_PEER_WAIT: Duration = Duration::from_secs(30);

/// A `java/TribesTransportPeer` process: a stock Tribes node driven by
/// commands on its stdin (see that file for the commands and lines).
pub struct TribesPeer {
    /// The JVM process.
    pub child: std::process::Child,
    stdin: std::process::ChildStdin,
    /// Every line it printed.
    pub lines: Arc<Log<String>>,
    /// Lines already matched by `expect` (each is consumed once).
    used: usize,
    /// The port its receiver is bound to.
    pub port: u16,
}

impl TribesPeer {
    /// Starts the peer from `classes` (see [`compile_java`]), with
    /// GzipInterceptor if `gzip` and EncryptInterceptor under `key`.
    pub fn start(classes: &Path, gzip: bool, key: Option<&str>) -> TribesPeer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new("java")
            .arg("-Djava.net.preferIPv4Stack=true")
            .arg("-cp")
            .arg(format!("{}:{TRIBES_JAR}:{JULI_JAR}", classes.display()))
            .arg("TribesTransportPeer")
            .arg(port.to_string())
            .arg(gzip.to_string())
            .args(key)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("java");
        let stdin = child.stdin.take().unwrap();
        let lines = stdout_lines(&mut child, TRIBES_PEER_WAIT);
        let mut p = TribesPeer {
            child,
            stdin,
            lines,
            used: 0,
            port: 0,
        };
        let l = p.expect("started");
        p.port = l
            .split("port=")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        p
    }
    /// The next line (after the last one expected) starting with `prefix`.
    pub fn expect(&mut self, prefix: &str) -> String {
        let (i, line) = self
            .lines
            .wait_from(prefix, self.used, |l| l.starts_with(prefix));
        self.used = i + 1;
        line
    }
    /// Writes one command line.
    pub fn cmd(&mut self, c: &str) {
        writeln!(self.stdin, "{c}").unwrap();
        self.stdin.flush().unwrap();
    }
    /// The peer's receiver address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for TribesPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
