//! The Apache Tribes peer (the transport inside Tomcat's cluster), run
//! through the project's own Java harness `bench/tribes/TribesHarness.java`.
//!
//! The harness source is embedded in the crate, written to a cache
//! directory, compiled once per source version with `javac`, and run as
//! `java -Djava.net.preferIPv4Stack=true TribesHarness ...`, one JVM per
//! scenario. It prints one [`BenchLine`] with `impl=tribes`.
//!
//! Where things are found:
//!
//! * the JDK: `$JAVA_HOME/bin`, else `java` and `javac` on `PATH`;
//! * the jars: `$SESSIONREPL_TRIBES_CLASSPATH` (a `:`-separated list) if
//!   set, else Debian's `libtomcat10-java` (`/usr/share/java/tomcat10-tribes.jar`
//!   and `tomcat10-juli.jar`), then `libtomcat9-java`, then
//!   `$CATALINA_HOME/lib/catalina-tribes.jar` with `bin/tomcat-juli.jar`;
//! * the cache: `$CARGO_TARGET_DIR`, else the `target` directory the running
//!   executable lives in, else the temporary directory; under it
//!   `tribes-harness/<hash of the source>/`.

use std::env;
use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::{BenchLine, Scenario};

/// The harness source, embedded so that it is found at run time wherever the
/// binary runs.
pub const HARNESS_SOURCE: &str = include_str!("../../../bench/tribes/TribesHarness.java");

/// The harness's main class.
pub const HARNESS_CLASS: &str = "TribesHarness";

/// The harness's exit code when deliveries did not finish in its own time.
const HARNESS_EXIT_TIMEOUT: i32 = 3;

/// How the harness drives Tribes for a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TribesMode {
    /// `MessageDispatchInterceptor` (fastasyncqueue), no ack: S1.
    Async,
    /// `USE_ACK|SYNCHRONIZED_ACK` from this many sender threads: S2, S3, S4.
    Ack {
        /// Sending threads.
        threads: usize,
    },
    /// Async plus `GzipInterceptor` on both channels: S5.
    Gzip,
}

impl TribesMode {
    /// The harness's mode for `scenario`, `None` for S6 and S7 (they need
    /// Tomcat's session managers, not just the transport).
    pub fn for_scenario(scenario: Scenario) -> Option<TribesMode> {
        match scenario {
            Scenario::S1 => Some(TribesMode::Async),
            Scenario::S2 | Scenario::S3 | Scenario::S4 => Some(TribesMode::Ack {
                threads: scenario.threads(),
            }),
            Scenario::S5 => Some(TribesMode::Gzip),
            Scenario::S6 | Scenario::S7 => None,
        }
    }

    fn arg(self) -> &'static str {
        match self {
            TribesMode::Async => "async",
            TribesMode::Ack { .. } => "ack",
            TribesMode::Gzip => "gzip",
        }
    }

    fn threads(self) -> usize {
        match self {
            TribesMode::Ack { threads } => threads.max(1),
            _ => 1,
        }
    }
}

/// Why the peer cannot run here (no JDK, no Tribes jar).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable(pub String);

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tribes peer unavailable: {}", self.0)
    }
}

impl std::error::Error for Unavailable {}

/// A located JDK and Tribes classpath, ready to compile and run the harness.
#[derive(Debug, Clone)]
pub struct TribesHarness {
    java: PathBuf,
    javac: PathBuf,
    classpath: Vec<PathBuf>,
    cache_root: PathBuf,
}

impl TribesHarness {
    /// Finds `java`, `javac` and the Tribes and JULI jars (see the module
    /// documentation for where).
    ///
    /// # Errors
    ///
    /// [`Unavailable`] saying what is missing.
    pub fn discover() -> Result<TribesHarness, Unavailable> {
        let (java, javac) = find_jdk()?;
        let classpath = find_jars()?;
        Ok(TribesHarness {
            java,
            javac,
            classpath,
            cache_root: default_cache_root(),
        })
    }

    /// Uses `dir` (created as needed) as the cache root instead of the
    /// default.
    pub fn with_cache_root(mut self, dir: impl Into<PathBuf>) -> TribesHarness {
        self.cache_root = dir.into();
        self
    }

    /// The jars the harness runs against.
    pub fn classpath(&self) -> &[PathBuf] {
        &self.classpath
    }

    /// Writes the embedded source to the cache and compiles it unless its
    /// classes are already there and newer than the source. Returns the
    /// directory holding the classes. Safe to call from several processes at
    /// once: each compiles into its own directory and renames the classes
    /// in, the main class last.
    ///
    /// # Errors
    ///
    /// File-system errors, or `javac` failing (its output in the message).
    pub fn prepare(&self) -> io::Result<PathBuf> {
        let dir = self
            .cache_root
            .join("tribes-harness")
            .join(format!("{:016x}", fnv1a(HARNESS_SOURCE.as_bytes())));
        fs::create_dir_all(&dir)?;
        // Unique per call, not per process: tests prepare from several
        // threads of one process at once.
        static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let tag = format!(
            "{}.{}",
            std::process::id(),
            CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let source = dir.join(format!("{HARNESS_CLASS}.java"));
        if fs::read_to_string(&source).ok().as_deref() != Some(HARNESS_SOURCE) {
            let tmp = dir.join(format!("{HARNESS_CLASS}.java.{tag}"));
            fs::write(&tmp, HARNESS_SOURCE)?;
            fs::rename(&tmp, &source)?;
        }
        let main_class = dir.join(format!("{HARNESS_CLASS}.class"));
        if is_newer(&main_class, &source) {
            return Ok(dir);
        }
        let out = dir.join(format!("build.{tag}"));
        let _ = fs::remove_dir_all(&out);
        fs::create_dir_all(&out)?;
        let output = Command::new(&self.javac)
            .arg("-nowarn")
            .arg("-cp")
            .arg(self.classpath_arg(None)?)
            .arg("-d")
            .arg(&out)
            .arg(&source)
            .stdin(Stdio::null())
            .output()?;
        if !output.status.success() {
            let _ = fs::remove_dir_all(&out);
            return Err(io::Error::other(format!(
                "javac failed ({}): {}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )));
        }
        // Nested classes first, the main class last: a concurrent run that
        // sees the main class also sees the rest.
        let mut classes: Vec<_> = fs::read_dir(&out)?
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        classes.sort_by_key(|name| name.to_str() == Some(&format!("{HARNESS_CLASS}.class")));
        for name in classes {
            fs::rename(out.join(&name), dir.join(&name))?;
        }
        let _ = fs::remove_dir_all(&out);
        Ok(dir)
    }

    /// Runs `count` messages of `size` bytes through Tribes as `scenario`
    /// prescribes, killing the JVM after `timeout`. `Ok(None)` for S6 and
    /// S7, which the harness does not cover.
    ///
    /// # Errors
    ///
    /// As [`prepare`](TribesHarness::prepare); `TimedOut` when the JVM was
    /// killed or the harness gave up waiting for deliveries; `Other` when it failed, `InvalidData` when it printed no valid
    /// line for the scenario (its output in the message either way).
    pub fn run(
        &self,
        scenario: Scenario,
        count: u64,
        size: usize,
        timeout: Duration,
    ) -> io::Result<Option<BenchLine>> {
        let Some(mode) = TribesMode::for_scenario(scenario) else {
            return Ok(None);
        };
        let classes = self.prepare()?;
        // The harness gives up by itself a little before we kill it, so
        // that a slow run still says how far it got.
        let own_timeout = timeout
            .saturating_sub(Duration::from_secs(2))
            .max(Duration::from_secs(1));
        let child = Command::new(&self.java)
            .arg("-Djava.net.preferIPv4Stack=true")
            .arg("-cp")
            .arg(self.classpath_arg(Some(&classes))?)
            .arg(HARNESS_CLASS)
            .arg(scenario.id())
            .arg(scenario.name())
            .arg(mode.arg())
            .arg(count.to_string())
            .arg(size.to_string())
            .arg(mode.threads().to_string())
            .arg(own_timeout.as_secs().max(1).to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let run = wait_with_timeout(child, timeout)?;
        let tail = || {
            format!(
                "stdout: {} stderr: {}",
                tail(&run.stdout),
                tail(&run.stderr)
            )
        };
        if run.timed_out {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("Tribes harness killed after {timeout:?}; {}", tail()),
            ));
        }
        if run.code == Some(HARNESS_EXIT_TIMEOUT) {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("Tribes harness gave up after {own_timeout:?}; {}", tail()),
            ));
        }
        if !run.success {
            return Err(io::Error::other(format!(
                "Tribes harness failed ({}); {}",
                run.status,
                tail()
            )));
        }
        let prefix = format!("{} {} ", scenario.id(), scenario.name());
        run.stdout
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .find_map(|l| BenchLine::parse(l).ok())
            .filter(|l| l.impl_name == "tribes")
            .map(Some)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("no {prefix}line from the Tribes harness; {}", tail()),
                )
            })
    }

    fn classpath_arg(&self, extra: Option<&Path>) -> io::Result<OsString> {
        env::join_paths(self.classpath.iter().map(PathBuf::as_path).chain(extra))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
    }
}

/// Runs `scenario` on the Tribes peer if it can run here: discovers the JDK
/// and jars and runs the harness. When they are absent it prints the reason
/// on stderr and returns `Ok(None)`, as it does for S6 and S7.
///
/// # Errors
///
/// As [`TribesHarness::run`].
pub fn run_scenario(
    scenario: Scenario,
    count: u64,
    size: usize,
    timeout: Duration,
) -> io::Result<Option<BenchLine>> {
    match TribesHarness::discover() {
        Ok(harness) => harness.run(scenario, count, size, timeout),
        Err(why) => {
            eprintln!("{} {}: skipped, {why}", scenario.id(), scenario.name());
            Ok(None)
        }
    }
}

fn find_jdk() -> Result<(PathBuf, PathBuf), Unavailable> {
    if let Some(home) = env::var_os("JAVA_HOME").filter(|h| !h.is_empty()) {
        let bin = PathBuf::from(home).join("bin");
        let (java, javac) = (bin.join("java"), bin.join("javac"));
        if java.is_file() && javac.is_file() {
            return Ok((java, javac));
        }
    }
    let on_path = |name: &str| {
        env::var_os("PATH")
            .iter()
            .flat_map(env::split_paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    };
    match (on_path("java"), on_path("javac")) {
        (Some(java), Some(javac)) => Ok((java, javac)),
        (None, _) => Err(Unavailable("no `java` in $JAVA_HOME/bin or on PATH".into())),
        (_, None) => Err(Unavailable(
            "no `javac` in $JAVA_HOME/bin or on PATH (a JDK, not a JRE, is needed)".into(),
        )),
    }
}

fn find_jars() -> Result<Vec<PathBuf>, Unavailable> {
    if let Some(list) = env::var_os("SESSIONREPL_TRIBES_CLASSPATH").filter(|l| !l.is_empty()) {
        let jars: Vec<PathBuf> = env::split_paths(&list).collect();
        return match jars.iter().find(|j| !j.exists()) {
            Some(missing) => Err(Unavailable(format!(
                "$SESSIONREPL_TRIBES_CLASSPATH names {} which does not exist",
                missing.display()
            ))),
            None => Ok(jars),
        };
    }
    let share = Path::new("/usr/share/java");
    let mut candidates = vec![
        [
            share.join("tomcat10-tribes.jar"),
            share.join("tomcat10-juli.jar"),
        ],
        [
            share.join("tomcat9-tribes.jar"),
            share.join("tomcat9-juli.jar"),
        ],
    ];
    if let Some(home) = env::var_os("CATALINA_HOME") {
        let home = PathBuf::from(home);
        candidates.push([
            home.join("lib/catalina-tribes.jar"),
            home.join("bin/tomcat-juli.jar"),
        ]);
    }
    candidates
        .into_iter()
        .find(|pair| pair.iter().all(|j| j.is_file()))
        .map(Vec::from)
        .ok_or_else(|| {
            Unavailable(
                "no Tribes jar (install Debian's libtomcat10-java, or set \
                 SESSIONREPL_TRIBES_CLASSPATH to the tribes and juli jars)"
                    .into(),
            )
        })
}

fn default_cache_root() -> PathBuf {
    if let Some(dir) = env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.ancestors()
                .find(|a| a.file_name().is_some_and(|n| n == "target"))
                .map(Path::to_path_buf)
        })
        .unwrap_or_else(env::temp_dir)
}

fn is_newer(a: &Path, than: &Path) -> bool {
    let modified = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    match (modified(a), modified(than)) {
        (Some(a), Some(b)) => a >= b,
        _ => false,
    }
}

/// 64-bit FNV-1a: names the cache directory after the source it holds.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

struct Finished {
    success: bool,
    code: Option<i32>,
    timed_out: bool,
    status: String,
    stdout: String,
    stderr: String,
}

/// Waits for `child`, killing it at `timeout`; its pipes are drained on
/// threads so that a chatty JVM never blocks on a full pipe.
fn wait_with_timeout(mut child: Child, timeout: Duration) -> io::Result<Finished> {
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            timed_out = true;
            let _ = child.kill();
            break child.wait()?;
        }
        thread::sleep(Duration::from_millis(10));
    };
    let text = |h: thread::JoinHandle<String>| h.join().unwrap_or_default();
    Ok(Finished {
        success: status.success() && !timed_out,
        code: status.code(),
        timed_out,
        status: status.to_string(),
        stdout: text(stdout),
        stderr: text(stderr),
    })
}

/// The last few hundred bytes of `s`, for error messages.
fn tail(s: &str) -> &str {
    let s = s.trim_end();
    let mut start = s.len().saturating_sub(600);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_cover_the_transport_scenarios_only() {
        assert_eq!(
            TribesMode::for_scenario(Scenario::S1),
            Some(TribesMode::Async)
        );
        assert_eq!(
            TribesMode::for_scenario(Scenario::S3),
            Some(TribesMode::Ack { threads: 4 })
        );
        assert_eq!(
            TribesMode::for_scenario(Scenario::S4),
            Some(TribesMode::Ack { threads: 1 })
        );
        assert_eq!(
            TribesMode::for_scenario(Scenario::S5),
            Some(TribesMode::Gzip)
        );
        assert_eq!(TribesMode::for_scenario(Scenario::S6), None);
        assert_eq!(TribesMode::for_scenario(Scenario::S7), None);
    }

    #[test]
    fn embedded_source_is_the_harness_and_hash_is_stable() {
        assert!(HARNESS_SOURCE.contains("public final class TribesHarness"));
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn tail_keeps_the_end_on_a_char_boundary() {
        let s = format!("{}é{}", "x".repeat(10), "y".repeat(599));
        assert_eq!(tail(&s), "y".repeat(599));
        assert_eq!(tail("short\n"), "short");
    }

    #[test]
    fn killed_child_reports_a_timeout() {
        let child = Command::new("sleep")
            .arg("30")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        let run = wait_with_timeout(child, Duration::from_millis(200)).unwrap();
        assert!(run.timed_out);
        assert!(!run.success);
        assert!(t0.elapsed() < Duration::from_secs(10));
    }
}
