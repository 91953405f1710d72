//! Session-store settings, with Tomcat's attribute names.

use crate::config::{bad, parse_bool, parse_ms, parse_u64};
use crate::error::Result;
use std::time::Duration;

/// How sessions are replicated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionMode {
    /// Every member holds every session; commits go to all (DeltaManager).
    Delta,
    /// Each session lives on a primary plus `backupCount` backups chosen by
    /// rendezvous hashing over live members (BackupManager, done better).
    Backup,
}

/// Session-store configuration (`sendAllSessionsSize`, `stateTransferTimeout`, ...).
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// `sessionMode`: `delta` or `backup` (default backup). Tomcat's class
    /// names (`...DeltaManager`, `...BackupManager`) are accepted too.
    pub mode: SessionMode,
    /// `backupCount`: copies besides the primary in backup mode (default 1).
    pub backup_count: usize,
    /// `sendAllSessionsSize`: sessions per state-transfer chunk (default 1000).
    pub send_all_sessions_size: usize,
    /// `sendAllSessionsBytes`: a chunk is closed once it holds this many
    /// bytes, whatever its session count (default 4 MiB).
    pub send_all_sessions_bytes: usize,
    /// `stateTransferWindow`: chunks in flight before the donor waits for a
    /// chunk ack (default 4).
    pub state_transfer_window: usize,
    /// `stateTransferTimeout` in seconds, as in Tomcat (default 60; a
    /// fraction such as `0.5` is accepted; `-1` waits forever, stored as
    /// `None`).
    pub state_transfer_timeout: Option<Duration>,
    /// `maxInactiveInterval` in seconds for new sessions (default 1800;
    /// negative: never expire).
    pub max_inactive_interval: i64,
    /// `notifyListenersOnReplication`: report changes made by other members
    /// as events (default true).
    pub notify_listeners_on_replication: bool,
    /// `expireCheckInterval` in ms: how often idle sessions are looked for
    /// (default 1000).
    pub expire_check_interval: Duration,
    /// `accessTimeout` in ms: how long a fetch from an owner may take
    /// (Tomcat BackupManager's name; default 5000).
    pub access_timeout: Duration,
    /// `maxActiveSessions`: refuse to create more sessions (-1 = no limit,
    /// the default).
    pub max_active_sessions: Option<usize>,
    /// `commitRetries`: whole-copy resends to a member that refused or lost
    /// a commit before the commit is reported failed (default 2).
    pub commit_retries: u32,
    /// `tombstoneRetention` in ms: how long removed or renamed ids are
    /// remembered so late copies do not resurrect them (default 120000).
    pub tombstone_retention: Duration,
    /// `memberDiscoveryTime` in ms: how long a starting store listens for
    /// members before it asks them for state (default: twice
    /// `mcastFrequency` plus 50 ms with multicast, 1 s with DNS, 0 with a
    /// static list). Too short, and a joiner that heard nobody yet starts
    /// alone, empty.
    pub member_discovery_time: Option<Duration>,
    /// `minCommitCopies` (like Redis's `min-replicas-to-write`): a commit
    /// fails unless at least this many holders, the primary included, can
    /// take it and acknowledge it (default 1: the primary alone suffices
    /// when it is the only member left).
    pub min_commit_copies: usize,
    /// `primarySettleTime` in ms: how long a member that just became a
    /// session's primary (a loss, a drain, a join) waits before it answers
    /// reads of it and applies commits to it (they wait meanwhile), so that
    /// a commit the former primary had in flight arrives first (default
    /// 1000).
    pub primary_settle_time: Duration,
    /// `maxAsyncOperations`: asynchronous commits and reads of the C API
    /// (`sr_session_store_*_async`) outstanding at once, from start until
    /// completed and reaped (default 1024); past it they are refused with
    /// `SR_QUEUE_FULL`.
    pub max_async_operations: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            mode: SessionMode::Backup,
            backup_count: 1,
            send_all_sessions_size: 1000,
            send_all_sessions_bytes: 4 << 20,
            state_transfer_window: 4,
            state_transfer_timeout: Some(Duration::from_millis(60_000)),
            max_inactive_interval: 1800,
            notify_listeners_on_replication: true,
            expire_check_interval: Duration::from_millis(1000),
            access_timeout: Duration::from_millis(5000),
            max_active_sessions: None,
            commit_retries: 2,
            tombstone_retention: Duration::from_millis(120_000),
            member_discovery_time: None,
            min_commit_copies: 1,
            primary_settle_time: Duration::from_millis(1000),
            max_async_operations: 1024,
        }
    }
}

const MAX_MS: u64 = 24 * 3600 * 1000;

fn parse_i64(key: &str, v: &str, min: i64, max: i64) -> Result<i64> {
    let n: i64 = v.parse().map_err(|_| bad(key, "expected an integer"))?;
    if n < min || n > max {
        return Err(bad(key, &format!("must be between {min} and {max}")));
    }
    Ok(n)
}

impl SessionConfig {
    /// Sets one session-store key; `Ok(false)` if the key is not one of them.
    ///
    /// # Errors
    /// A bad value for a session-store key.
    pub fn set(&mut self, key: &str, value: &str) -> Result<bool> {
        let k = key.trim();
        let v = value.trim();
        match k {
            "sessionMode" | "manager" | "managerClass" => {
                let l = v.to_ascii_lowercase();
                self.mode = if l == "delta" || l.ends_with("deltamanager") {
                    SessionMode::Delta
                } else if l == "backup" || l.ends_with("backupmanager") {
                    SessionMode::Backup
                } else {
                    return Err(bad(k, "expected delta or backup"));
                }
            }
            "backupCount" => self.backup_count = parse_u64(k, v, 0, 15)? as usize,
            "sendAllSessionsSize" => {
                self.send_all_sessions_size = parse_u64(k, v, 1, 1 << 20)? as usize
            }
            "sendAllSessionsBytes" => {
                self.send_all_sessions_bytes = parse_u64(k, v, 1024, 1 << 30)? as usize
            }
            "stateTransferWindow" => {
                self.state_transfer_window = parse_u64(k, v, 1, 1024)? as usize
            }
            "stateTransferTimeout" => {
                self.state_transfer_timeout = if v == "-1" {
                    None
                } else {
                    let secs: f64 = v
                        .parse()
                        .ok()
                        .filter(|s: &f64| {
                            s.is_finite() && *s >= 0.001 && *s <= (MAX_MS / 1000) as f64
                        })
                        .ok_or_else(|| bad(k, "expected seconds (0.001 or more) or -1"))?;
                    Some(Duration::from_secs_f64(secs))
                }
            }
            "maxInactiveInterval" => {
                self.max_inactive_interval = parse_i64(k, v, -1, 10 * 365 * 86400)?
            }
            "notifyListenersOnReplication" => {
                self.notify_listeners_on_replication = parse_bool(k, v)?
            }
            "expireCheckInterval" => self.expire_check_interval = parse_ms(k, v, 1, MAX_MS)?,
            "accessTimeout" => self.access_timeout = parse_ms(k, v, 1, MAX_MS)?,
            "maxActiveSessions" => {
                self.max_active_sessions = match parse_i64(k, v, -1, i64::MAX)? {
                    -1 => None,
                    n => Some(n as usize),
                }
            }
            "commitRetries" => self.commit_retries = parse_u64(k, v, 0, 100)? as u32,
            "tombstoneRetention" => self.tombstone_retention = parse_ms(k, v, 1, MAX_MS)?,
            "memberDiscoveryTime" => self.member_discovery_time = Some(parse_ms(k, v, 0, MAX_MS)?),
            "minCommitCopies" => self.min_commit_copies = parse_u64(k, v, 1, 64)? as usize,
            "primarySettleTime" => self.primary_settle_time = parse_ms(k, v, 0, MAX_MS)?,
            "maxAsyncOperations" => {
                self.max_async_operations = parse_u64(k, v, 1, 1 << 20)? as usize
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn defaults_follow_tomcat() {
        let c = SessionConfig::default();
        assert_eq!(c.mode, SessionMode::Backup);
        assert_eq!(c.backup_count, 1);
        assert_eq!(c.send_all_sessions_size, 1000);
        assert_eq!(c.state_transfer_timeout, Some(Duration::from_secs(60)));
        assert_eq!(c.max_inactive_interval, 1800);
        assert!(c.notify_listeners_on_replication);
    }

    #[test]
    fn session_keys_are_parsed_and_others_passed_on() {
        let mut c = SessionConfig::default();
        assert!(c.set("sessionMode", "delta").unwrap());
        assert_eq!(c.mode, SessionMode::Delta);
        assert!(c
            .set("manager", "org.apache.catalina.ha.session.BackupManager")
            .unwrap());
        assert_eq!(c.mode, SessionMode::Backup);
        assert!(c.set("stateTransferTimeout", "-1").unwrap());
        assert_eq!(c.state_transfer_timeout, None);
        assert!(c.set("backupCount", "2").unwrap());
        assert_eq!(c.backup_count, 2);
        assert!(c.set("maxActiveSessions", "10").unwrap());
        assert_eq!(c.max_active_sessions, Some(10));
        assert!(!c.set("mcastAddr", "228.0.0.4").unwrap());
    }

    #[test]
    fn bad_values_are_refused_with_the_key() {
        let mut c = SessionConfig::default();
        for (k, v) in [
            ("sessionMode", "all"),
            ("backupCount", "99"),
            ("sendAllSessionsSize", "0"),
            ("stateTransferTimeout", "-5"),
            ("notifyListenersOnReplication", "maybe"),
        ] {
            match c.set(k, v) {
                Err(Error::InvalidConfigValue { key, .. }) => assert_eq!(key, k),
                other => panic!("{k}={v}: {other:?}"),
            }
        }
    }
}
