//! Membership settings, with Tomcat's attribute names.

use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use crate::config::{bad, parse_bool, parse_member_id, parse_ms, parse_u64};
use crate::error::Result;

/// How members are discovered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembershipType {
    /// No discovery and no members, `staticMembers` included (the default,
    /// so plain channels never multicast).
    None,
    /// Tribes-compatible multicast heartbeats (`McastService`), plus any
    /// `staticMembers` (like Tribes' StaticMembershipInterceptor).
    Multicast,
    /// Only the `staticMembers` list.
    Static,
    /// Every address a DNS name resolves to (`dnsMembershipName`), plus any
    /// `staticMembers`.
    Dns,
}

impl MembershipType {
    /// Parses `none`, `multicast` (`mcast`), `static`, `dns`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "none" | "off" => Some(Self::None),
            "multicast" | "mcast" => Some(Self::Multicast),
            "static" => Some(Self::Static),
            "dns" => Some(Self::Dns),
            _ => None,
        }
    }
}

/// One entry of `staticMembers`: `host:port`, optionally `/` and the
/// member's 32-hex-digit unique id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticMember {
    /// The member's TCP address.
    pub addr: SocketAddr,
    /// Its unique id, if given (otherwise one is derived from `addr`).
    pub id: Option<[u8; 16]>,
}

/// Membership configuration (`mcastAddr`, `mcastPort`, `staticMembers`, ...).
#[derive(Debug, Clone)]
pub struct MembershipConfig {
    /// `membershipType` (alias `membership`; `mcastEnabled=true` selects
    /// multicast): default `none`.
    pub membership_type: MembershipType,
    /// `mcastAddr`: multicast group (default 228.0.0.4).
    pub mcast_addr: Ipv4Addr,
    /// `mcastPort` (default 45564).
    pub mcast_port: u16,
    /// `mcastFrequency`: heartbeat period (default 500 ms).
    pub mcast_frequency: Duration,
    /// `mcastDropTime`: silence after which a member is dropped (default
    /// 3000 ms).
    pub mcast_drop_time: Duration,
    /// `mcastClusterDomain`: domain carried in heartbeats; when not empty,
    /// heartbeats of other domains are ignored (default empty).
    pub mcast_cluster_domain: Vec<u8>,
    /// `mcastBindAddress`: interface for joining and sending (default
    /// 127.0.0.1, so traffic stays on the host unless told otherwise).
    pub mcast_bind_address: Ipv4Addr,
    /// `mcastTTL` (default 1).
    pub mcast_ttl: u32,
    /// `memberPayload`: application metadata this node announces in its
    /// heartbeats (an HTTP address, a route name), at most
    /// [`MAX_MEMBER_PAYLOAD`](super::member::MAX_MEMBER_PAYLOAD) bytes
    /// (default empty). Tomcat's `Member` has the same `payload` field.
    pub member_payload: Vec<u8>,
    /// `staticMembers`: comma-separated `host:port[/hexid]`.
    pub static_members: Vec<StaticMember>,
    /// `dnsMembershipName`: DNS name whose addresses are the members.
    pub dns_name: String,
    /// `dnsMembershipPort`: TCP port of DNS members (default 4000).
    pub dns_port: u16,
    /// `dnsRefreshInterval` (default 5000 ms).
    pub dns_refresh_interval: Duration,
    /// `tcpPingInterval`: TCP reachability check of static and DNS members
    /// (default 1000 ms, 0 = off).
    pub tcp_ping_interval: Duration,
    /// `failureDetection`: verify a silent or failing member over TCP before
    /// dropping it (Tribes' TcpFailureDetector; default true).
    pub failure_detection: bool,
    /// `failureDetectorConnectTimeout` (default 1000 ms).
    pub failure_connect_timeout: Duration,
    /// `removeSuspectsTimeout`: a suspect (silent but reachable) member is
    /// dropped after this (default 300 s).
    pub remove_suspects_timeout: Duration,
    /// The keys [`MembershipConfig::set`] was given, so that
    /// [`MembershipConfig::validate`] can refuse one that cannot take effect
    /// with the chosen `membershipType`.
    given: Vec<&'static str>,
    /// Keys authenticating multicast heartbeats (current first), set from
    /// `encryptionKey` / `encryptionKeyPrevious` by the channel config;
    /// empty = heartbeats are not authenticated. Redacted in `Debug`.
    pub heartbeat_keys: Vec<crate::proto::secure::SharedKey>,
    /// Freshness window of authenticated heartbeats (`heartbeatAuthWindow`).
    pub heartbeat_auth_window: Duration,
}

/// Keys that only multicast membership reads.
const MCAST_KEYS: [&str; 8] = [
    "mcastAddr",
    "mcastPort",
    "mcastFrequency",
    "mcastDropTime",
    "mcastClusterDomain",
    "mcastBindAddress",
    "mcastTTL",
    "memberPayload",
];
/// Keys that only DNS membership reads.
const DNS_KEYS: [&str; 3] = [
    "dnsMembershipName",
    "dnsMembershipPort",
    "dnsRefreshInterval",
];
/// Keys that every membership type reads (but `none` does not).
const COMMON_KEYS: [&str; 5] = [
    "staticMembers",
    "tcpPingInterval",
    "failureDetection",
    "failureDetectorConnectTimeout",
    "removeSuspectsTimeout",
];

/// The canonical name of a membership key `set` accepts (its `&'static`
/// spelling), `None` for `membershipType`/`mcastEnabled` and other keys.
fn canonical(key: &str) -> Option<&'static str> {
    MCAST_KEYS
        .iter()
        .chain(DNS_KEYS.iter())
        .chain(COMMON_KEYS.iter())
        .find(|k| **k == key)
        .copied()
}

impl Default for MembershipConfig {
    fn default() -> Self {
        MembershipConfig {
            membership_type: MembershipType::None,
            mcast_addr: Ipv4Addr::new(228, 0, 0, 4),
            mcast_port: 45564,
            mcast_frequency: Duration::from_millis(500),
            mcast_drop_time: Duration::from_millis(3000),
            mcast_cluster_domain: Vec::new(),
            mcast_bind_address: Ipv4Addr::LOCALHOST,
            mcast_ttl: 1,
            member_payload: Vec::new(),
            static_members: Vec::new(),
            dns_name: String::new(),
            dns_port: 4000,
            dns_refresh_interval: Duration::from_millis(5000),
            tcp_ping_interval: Duration::from_millis(1000),
            failure_detection: true,
            failure_connect_timeout: Duration::from_millis(1000),
            remove_suspects_timeout: Duration::from_secs(300),
            given: Vec::new(),
            heartbeat_keys: Vec::new(),
            heartbeat_auth_window: Duration::from_millis(10_000),
        }
    }
}

const HOUR_MS: u64 = 3600 * 1000;

/// Parses one `staticMembers` entry.
fn parse_static(key: &str, entry: &str) -> Result<StaticMember> {
    let (hp, id) = match entry.split_once('/') {
        Some((hp, id)) => (hp, Some(parse_member_id(key, id)?)),
        None => (entry, None),
    };
    // Numeric addresses parse directly; names are resolved once, now.
    let addr = match hp.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => hp
            .to_socket_addrs()
            .map_err(|e| bad(key, &format!("'{hp}': {e}")))?
            .next()
            .ok_or_else(|| bad(key, &format!("'{hp}' resolves to nothing")))?,
    };
    if addr.port() == 0 {
        return Err(bad(key, "port 0"));
    }
    Ok(StaticMember { addr, id })
}

impl MembershipConfig {
    /// Sets one membership key; `Ok(false)` if the key is not a membership key.
    ///
    /// # Errors
    /// A bad value for a membership key (`Error::InvalidConfigValue`).
    pub fn set(&mut self, key: &str, value: &str) -> Result<bool> {
        let k = key.trim();
        let v = value.trim();
        match k {
            "membershipType" | "membership" => {
                self.membership_type = MembershipType::parse(v)
                    .ok_or_else(|| bad(k, "expected none, multicast, static or dns"))?
            }
            "mcastEnabled" => {
                if parse_bool(k, v)? {
                    self.membership_type = MembershipType::Multicast;
                } else if self.membership_type == MembershipType::Multicast {
                    self.membership_type = MembershipType::None;
                }
            }
            "mcastAddr" => {
                let a: Ipv4Addr = v.parse().map_err(|_| bad(k, "expected an IPv4 address"))?;
                if !a.is_multicast() {
                    return Err(bad(k, "not a multicast address (224.0.0.0/4)"));
                }
                self.mcast_addr = a
            }
            "mcastPort" => self.mcast_port = parse_u64(k, v, 1, 65535)? as u16,
            "mcastFrequency" => self.mcast_frequency = parse_ms(k, v, 10, HOUR_MS)?,
            "mcastDropTime" => self.mcast_drop_time = parse_ms(k, v, 20, HOUR_MS)?,
            "mcastClusterDomain" => {
                if v.len() > 255 {
                    return Err(bad(k, "at most 255 bytes"));
                }
                self.mcast_cluster_domain = v.as_bytes().to_vec()
            }
            "mcastBindAddress" => {
                let a: Ipv4Addr = v.parse().map_err(|_| bad(k, "expected an IPv4 address"))?;
                if a.is_multicast() || a.is_unspecified() {
                    return Err(bad(k, "expected the address of a local interface"));
                }
                self.mcast_bind_address = a
            }
            "mcastTTL" => self.mcast_ttl = parse_u64(k, v, 0, 255)? as u32,
            "memberPayload" => {
                let max = super::member::MAX_MEMBER_PAYLOAD;
                if v.len() > max {
                    return Err(bad(k, &format!("at most {max} bytes")));
                }
                self.member_payload = v.as_bytes().to_vec()
            }
            "staticMembers" => {
                let mut list = Vec::new();
                for e in v.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                    if list.len() >= 1024 {
                        return Err(bad(k, "more than 1024 members"));
                    }
                    list.push(parse_static(k, e)?);
                }
                self.static_members = list
            }
            "dnsMembershipName" => {
                if v.len() > 253 {
                    return Err(bad(k, "longer than 253 bytes"));
                }
                self.dns_name = v.to_string()
            }
            "dnsMembershipPort" => self.dns_port = parse_u64(k, v, 1, 65535)? as u16,
            "dnsRefreshInterval" => self.dns_refresh_interval = parse_ms(k, v, 100, HOUR_MS)?,
            "tcpPingInterval" => self.tcp_ping_interval = parse_ms(k, v, 0, HOUR_MS)?,
            "failureDetection" => self.failure_detection = parse_bool(k, v)?,
            "failureDetectorConnectTimeout" => {
                self.failure_connect_timeout = parse_ms(k, v, 1, 60_000)?
            }
            "removeSuspectsTimeout" => {
                self.remove_suspects_timeout = parse_ms(k, v, 0, 24 * HOUR_MS)?
            }
            _ => return Ok(false),
        }
        if let Some(c) = canonical(k) {
            if !self.given.contains(&c) {
                self.given.push(c);
            }
        }
        Ok(true)
    }

    /// The first key that was set but cannot take effect with the chosen
    /// `membershipType`, with the fix to name.
    fn ineffective_key(&self) -> Option<(&'static str, String)> {
        use MembershipType::*;
        for &k in &self.given {
            let fix = match self.membership_type {
                None => format!(
                    "has no effect with membershipType=none (the default): set \
                     membershipType=multicast (what Tomcat's <Cluster> uses by default), \
                     static or dns, or remove {k}"
                ),
                t if MCAST_KEYS.contains(&k) && t != Multicast => format!(
                    "only multicast membership reads it: set membershipType=multicast \
                     or remove {k}"
                ),
                t if DNS_KEYS.contains(&k) && t != Dns => {
                    format!("only DNS membership reads it: set membershipType=dns or remove {k}")
                }
                _ => continue,
            };
            return Some((k, fix));
        }
        Option::None
    }

    /// Checks cross-field constraints.
    ///
    /// # Errors
    /// A membership key that was set but cannot take effect with the chosen
    /// `membershipType` (multicast keys without multicast membership, DNS
    /// keys without DNS membership, any membership key with `none`): the
    /// error names the key and the fix. Also `mcastDropTime` not above
    /// `mcastFrequency`, or DNS membership without a name.
    pub fn validate(&self) -> Result<()> {
        if let Some((key, fix)) = self.ineffective_key() {
            return Err(bad(key, &fix));
        }
        if self.mcast_drop_time <= self.mcast_frequency {
            return Err(bad("mcastDropTime", "must be greater than mcastFrequency"));
        }
        if self.membership_type == MembershipType::Dns && self.dns_name.is_empty() {
            return Err(bad("dnsMembershipName", "required with membershipType=dns"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    #[test]
    fn defaults_match_tomcat_and_stay_home() {
        let c = MembershipConfig::default();
        assert_eq!(c.mcast_addr, Ipv4Addr::new(228, 0, 0, 4));
        assert_eq!(c.mcast_port, 45564);
        assert_eq!(c.mcast_frequency, Duration::from_millis(500));
        assert_eq!(c.mcast_drop_time, Duration::from_millis(3000));
        assert_eq!(c.mcast_bind_address, Ipv4Addr::LOCALHOST);
        assert_eq!(c.mcast_ttl, 1);
        assert_eq!(c.membership_type, MembershipType::None);
        c.validate().unwrap();
    }

    #[test]
    fn membership_keys_are_taken_and_others_passed_on() {
        let mut c = MembershipConfig::default();
        assert!(c.set("mcastAddr", "239.1.2.3").unwrap());
        assert!(c.set("mcastPort", "45999").unwrap());
        assert!(c.set("mcastEnabled", "true").unwrap());
        assert!(c.set("mcastClusterDomain", "shop").unwrap());
        assert!(c
            .set(
                "staticMembers",
                "127.0.0.1:4001, 127.0.0.1:4002/000102030405060708090a0b0c0d0e0f"
            )
            .unwrap());
        assert!(!c.set("ackTimeout", "5").unwrap());
        assert_eq!(c.membership_type, MembershipType::Multicast);
        assert_eq!(c.mcast_addr, Ipv4Addr::new(239, 1, 2, 3));
        assert_eq!(c.static_members.len(), 2);
        assert_eq!(c.static_members[1].id.unwrap()[15], 15);
        assert_eq!(c.mcast_cluster_domain, b"shop");
        c.validate().unwrap();
        let mut d = MembershipConfig::default();
        d.set("membership", "dns").unwrap();
        assert!(d.validate().is_err());
        d.set("dnsMembershipName", "localhost").unwrap();
        d.validate().unwrap();
    }

    fn refusal(c: &MembershipConfig) -> String {
        match c.validate() {
            Err(Error::InvalidConfigValue { key, reason }) => format!("{key}: {reason}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn mcast_keys_without_multicast_membership_are_refused_naming_the_fix() {
        let mut c = MembershipConfig::default();
        c.set("mcastAddr", "228.0.0.4").unwrap();
        let e = refusal(&c);
        assert!(e.starts_with("mcastAddr: "), "{e}");
        assert!(e.contains("membershipType=multicast"), "{e}");
        c.set("membershipType", "static").unwrap();
        let e = refusal(&c);
        assert!(e.contains("only multicast membership"), "{e}");
        c.set("membershipType", "multicast").unwrap();
        c.validate().unwrap();
        // The order of the keys does not matter, only the final type.
        let mut c = MembershipConfig::default();
        c.set("mcastEnabled", "true").unwrap();
        c.set("mcastTTL", "1").unwrap();
        c.validate().unwrap();
        c.set("mcastEnabled", "false").unwrap();
        assert!(refusal(&c).starts_with("mcastTTL: "));
    }

    #[test]
    fn dns_and_static_keys_need_a_type_that_reads_them() {
        let mut c = MembershipConfig::default();
        c.set("dnsMembershipPort", "4000").unwrap();
        assert!(refusal(&c).contains("membershipType=none"));
        c.set("membershipType", "multicast").unwrap();
        let e = refusal(&c);
        assert!(e.contains("membershipType=dns"), "{e}");
        let mut s = MembershipConfig::default();
        s.set("staticMembers", "127.0.0.1:4000").unwrap();
        let e = refusal(&s);
        assert!(e.starts_with("staticMembers: "), "{e}");
        for t in ["static", "multicast"] {
            s.set("membershipType", t).unwrap();
            s.validate().unwrap();
        }
        s.set("mcastDropTime", "5000").unwrap();
        s.set("membershipType", "static").unwrap();
        assert!(refusal(&s).starts_with("mcastDropTime: "));
    }

    #[test]
    fn bad_values_are_refused() {
        let mut c = MembershipConfig::default();
        for (k, v) in [
            ("mcastAddr", "10.0.0.1"),
            ("mcastAddr", "nope"),
            ("mcastPort", "0"),
            ("mcastTTL", "256"),
            ("mcastBindAddress", "0.0.0.0"),
            ("membershipType", "carrier-pigeon"),
            ("staticMembers", "127.0.0.1"),
            ("staticMembers", "127.0.0.1:0"),
            ("staticMembers", "127.0.0.1:5/xyz"),
            ("mcastFrequency", "1"),
            ("failureDetection", "maybe"),
        ] {
            assert!(
                matches!(c.set(k, v), Err(Error::InvalidConfigValue { .. })),
                "{k}={v}"
            );
        }
        c.set("mcastFrequency", "1000").unwrap();
        c.set("mcastDropTime", "900").unwrap();
        assert!(c.validate().is_err());
    }
}
