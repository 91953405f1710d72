//! Tomcat's `server.xml` as a node config: the first `<Cluster>` element
//! and its children mapped to sessionrepl keys (docs/OPERATIONS.md has the
//! table). What has no equivalent is reported, never dropped silently; a
//! bad value of a mapped attribute is an error naming the element.
//!
//! Tomcat defaults are followed where the file leaves something out: no
//! `<Membership>` means Tomcat's `McastService`, so `membershipType=multicast`.

use roxmltree::{Document, Node, ParsingOptions};

/// Largest `server.xml` read (a real one is a few KiB).
pub const MAX_BYTES: usize = 1 << 20;

/// One setting taken from the file, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// sessionrepl key.
    pub key: String,
    /// Its value.
    pub value: String,
    /// `<Element attribute>` it came from, for error messages.
    pub origin: String,
}

/// What a `server.xml` says, in sessionrepl terms.
#[derive(Debug, Default)]
pub struct Mapped {
    /// Settings in document order (later ones win).
    pub settings: Vec<Setting>,
    /// Attributes and elements with no equivalent, one line each.
    pub ignored: Vec<String>,
}

/// True if `text` looks like XML rather than `key=value` lines.
pub fn is_xml(text: &str) -> bool {
    text.trim_start().starts_with('<')
}

fn short(class: &str) -> &str {
    class.rsplit('.').next().unwrap_or(class)
}

/// Tomcat's `uniqueId="{0,1,...,15}"` (signed or unsigned decimal bytes)
/// as 32 hex digits.
fn unique_id_hex(v: &str) -> Option<String> {
    let inner = v.trim().trim_start_matches('{').trim_end_matches('}');
    let bytes: Vec<u8> = inner
        .split(',')
        .map(|b| {
            b.trim()
                .parse::<i16>()
                .ok()
                .filter(|n| (-128..=255).contains(n))
        })
        .map(|n| n.map(|n| n as u8))
        .collect::<Option<_>>()?;
    (bytes.len() == 16).then(|| bytes.iter().map(|b| format!("{b:02x}")).collect())
}

struct Mapper {
    out: Mapped,
}

impl Mapper {
    fn set(&mut self, key: &str, value: &str, el: &str, attr: &str) {
        self.out.settings.push(Setting {
            key: key.to_string(),
            value: value.to_string(),
            origin: format!("<{el} {attr}>"),
        });
    }

    fn ignore(&mut self, what: String) {
        self.out.ignored.push(what);
    }

    /// Maps each attribute of `n` through `table` (Tomcat name, our key);
    /// `className` is skipped, attributes not in the table are reported.
    fn attrs(&mut self, n: Node<'_, '_>, table: &[(&str, &str)]) {
        let el = n.tag_name().name().to_string();
        for a in n.attributes() {
            if a.name() == "className" {
                continue;
            }
            match table.iter().find(|(t, _)| *t == a.name()) {
                Some((_, key)) if !key.is_empty() => self.set(key, a.value(), &el, a.name()),
                _ => self.ignore(format!("<{el} {}>: no equivalent, ignored", a.name())),
            }
        }
    }

    fn cluster(&mut self, c: Node<'_, '_>) {
        for a in c.attributes() {
            match a.name() {
                "className" => {
                    if short(a.value()) != "SimpleTcpCluster" {
                        self.ignore(format!(
                            "<Cluster className={}>: treated as SimpleTcpCluster",
                            a.value()
                        ));
                    }
                }
                "channelSendOptions" => self.send_options(a.value()),
                // Anything sessionrepl itself understands may sit on
                // <Cluster> (backupCount, domain, metricsPort, ...); the
                // caller reports a name nobody knows.
                name => self.set(name, a.value(), "Cluster", name),
            }
        }
        let mut membership = false;
        for n in c.children().filter(Node::is_element) {
            match n.tag_name().name() {
                "Manager" => self.manager(n),
                "Channel" => membership |= self.channel(n),
                other => self.ignore(format!(
                    "<{other}>: not applicable to a session-store node, ignored"
                )),
            }
        }
        if !membership {
            // Tomcat's default membership is McastService.
            self.set(
                "membershipType",
                "multicast",
                "Cluster",
                "(default McastService)",
            );
        }
    }

    /// Tomcat's `channelSendOptions` bits: 2 USE_ACK, 4 SYNCHRONIZED_ACK,
    /// 8 ASYNCHRONOUS.
    fn send_options(&mut self, v: &str) {
        let Ok(bits) = v.trim().parse::<u32>() else {
            self.set("channelSendOptions", v, "Cluster", "channelSendOptions");
            return;
        };
        let o = "channelSendOptions";
        let b = |m: u32| if bits & m != 0 { "true" } else { "false" };
        self.set("waitForAck", b(2), "Cluster", o);
        self.set("syncAck", b(4), "Cluster", o);
        if bits & 8 != 0 {
            self.set("replicationMode", "fastasyncqueue", "Cluster", o);
        }
    }

    fn manager(&mut self, m: Node<'_, '_>) {
        if let Some(class) = m.attribute("className") {
            self.set("sessionMode", short(class), "Manager", "className");
        }
        self.attrs(
            m,
            &[
                ("sendAllSessionsSize", "sendAllSessionsSize"),
                ("stateTransferTimeout", "stateTransferTimeout"),
                ("maxInactiveInterval", "maxInactiveInterval"),
                (
                    "notifyListenersOnReplication",
                    "notifyListenersOnReplication",
                ),
                ("maxActiveSessions", "maxActiveSessions"),
                ("accessTimeout", "accessTimeout"),
                ("backupCount", "backupCount"),
            ],
        );
    }

    /// Returns true if the channel names its membership.
    fn channel(&mut self, ch: Node<'_, '_>) -> bool {
        let mut membership = false;
        for n in ch.children().filter(Node::is_element) {
            let class = n.attribute("className").map(short).unwrap_or("");
            match n.tag_name().name() {
                "Membership" => {
                    membership = true;
                    self.membership(n, class);
                }
                "Receiver" => self.attrs(
                    n,
                    &[
                        ("address", "tcpListenAddress"),
                        ("port", "tcpListenPort"),
                        ("maxThreads", "tcpThreadCount"),
                        ("rxBufSize", "rxBufSize"),
                        ("txBufSize", "txBufSize"),
                        ("tcpNoDelay", "tcpNoDelay"),
                    ],
                ),
                "Sender" => {
                    for t in n.children().filter(|t| t.has_tag_name("Transport")) {
                        let tc = t.attribute("className").map(short).unwrap_or("");
                        if tc == "PooledParallelSender" || tc.is_empty() {
                            self.set("replicationMode", "pooled", "Transport", "className");
                        } else {
                            self.ignore(format!("<Transport className={tc}>: pooled sender used"));
                        }
                        self.attrs(
                            t,
                            &[
                                ("timeout", "ackTimeout"),
                                ("maxRetryAttempts", "maxRetryAttempts"),
                                ("keepAliveCount", "keepAliveCount"),
                                ("keepAliveTime", "keepAliveTimeout"),
                                ("poolSize", "maxPoolSocketLimit"),
                                ("rxBufSize", "rxBufSize"),
                                ("txBufSize", "txBufSize"),
                                ("tcpNoDelay", "tcpNoDelay"),
                            ],
                        );
                    }
                }
                "Interceptor" => self.interceptor(n, class),
                other => self.ignore(format!("<{other}> in <Channel>: ignored")),
            }
        }
        membership
    }

    fn membership(&mut self, n: Node<'_, '_>, class: &str) {
        match class {
            "McastService" | "" => {
                self.set("membershipType", "multicast", "Membership", "className");
                self.attrs(
                    n,
                    &[
                        ("address", "mcastAddr"),
                        ("port", "mcastPort"),
                        ("frequency", "mcastFrequency"),
                        ("dropTime", "mcastDropTime"),
                        ("bind", "mcastBindAddress"),
                        ("ttl", "mcastTTL"),
                        ("domain", "mcastClusterDomain"),
                    ],
                );
            }
            "StaticMembershipService" => {
                self.set("membershipType", "static", "Membership", "className");
                self.static_members(n);
            }
            other => {
                self.set("membershipType", other, "Membership", "className");
            }
        }
    }

    fn static_members(&mut self, parent: Node<'_, '_>) {
        let mut list = Vec::new();
        for m in parent.children().filter(|m| m.has_tag_name("Member")) {
            let (Some(host), Some(port)) = (m.attribute("host"), m.attribute("port")) else {
                self.ignore("<Member> without host and port, ignored".into());
                continue;
            };
            let mut e = format!("{host}:{port}");
            if let Some(id) = m.attribute("uniqueId") {
                match unique_id_hex(id) {
                    Some(h) => e.push_str(&format!("/{h}")),
                    None => self.ignore(format!("<Member uniqueId={id}>: not 16 bytes, ignored")),
                }
            }
            list.push(e);
        }
        if !list.is_empty() {
            self.set("staticMembers", &list.join(","), "Member", "host/port");
        }
    }

    fn interceptor(&mut self, n: Node<'_, '_>, class: &str) {
        match class {
            "TcpFailureDetector" => {
                self.set("failureDetection", "true", "Interceptor", "className");
                self.attrs(
                    n,
                    &[
                        ("connectTimeout", "failureDetectorConnectTimeout"),
                        ("removeSuspectsTimeout", "removeSuspectsTimeout"),
                    ],
                );
            }
            "MessageDispatchInterceptor" | "MessageDispatch15Interceptor" => {
                self.set(
                    "replicationMode",
                    "fastasyncqueue",
                    "Interceptor",
                    "className",
                );
                self.attrs(n, &[("maxQueueSize", ""), ("optionFlag", "")]);
            }
            "StaticMembershipInterceptor" => self.static_members(n),
            "GzipInterceptor" => self.set("compress", "true", "Interceptor", "className"),
            "DomainFilterInterceptor" => self.attrs(n, &[("domain", "domain")]),
            "TcpPingInterceptor" => self.attrs(n, &[("interval", "tcpPingInterval")]),
            other => self.ignore(format!(
                "<Interceptor className={other}>: no equivalent, ignored"
            )),
        }
    }
}

/// Maps the first `<Cluster>` of a `server.xml`.
///
/// # Errors
/// Text over [`MAX_BYTES`], XML that does not parse (a DTD is refused too),
/// or no `<Cluster>` element.
pub fn map(text: &str) -> Result<Mapped, String> {
    if text.len() > MAX_BYTES {
        return Err(format!("larger than {MAX_BYTES} bytes"));
    }
    let opts = ParsingOptions {
        allow_dtd: false,
        nodes_limit: 100_000,
    };
    let doc = Document::parse_with_options(text, opts).map_err(|e| format!("XML: {e}"))?;
    let cluster = doc
        .descendants()
        .find(|n| n.has_tag_name("Cluster"))
        .ok_or("no <Cluster> element")?;
    let mut m = Mapper {
        out: Mapped::default(),
    };
    m.cluster(cluster);
    Ok(m.out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOMCAT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Server port="8005" shutdown="SHUTDOWN">
  <Service name="Catalina">
    <Engine name="Catalina" defaultHost="localhost">
      <Cluster className="org.apache.catalina.ha.tcp.SimpleTcpCluster" channelSendOptions="8">
        <Manager className="org.apache.catalina.ha.session.DeltaManager"
                 expireSessionsOnShutdown="false" notifyListenersOnReplication="true"/>
        <Channel className="org.apache.catalina.tribes.group.GroupChannel">
          <Membership className="org.apache.catalina.tribes.membership.McastService"
                      address="228.0.0.4" port="45564" frequency="500" dropTime="3000"/>
          <Receiver className="org.apache.catalina.tribes.transport.nio.NioReceiver"
                    address="127.0.0.1" port="4000" autoBind="100" selectorTimeout="5000" maxThreads="6"/>
          <Sender className="org.apache.catalina.tribes.transport.ReplicationTransmitter">
            <Transport className="org.apache.catalina.tribes.transport.nio.PooledParallelSender"/>
          </Sender>
          <Interceptor className="org.apache.catalina.tribes.group.interceptors.TcpFailureDetector"/>
          <Interceptor className="org.apache.catalina.tribes.group.interceptors.MessageDispatchInterceptor"/>
          <Interceptor className="org.apache.catalina.tribes.group.interceptors.StaticMembershipInterceptor">
            <Member className="org.apache.catalina.tribes.membership.StaticMember"
                    host="127.0.0.1" port="4001" uniqueId="{0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,-1}"/>
          </Interceptor>
        </Channel>
        <Valve className="org.apache.catalina.ha.tcp.ReplicationValve" filter=""/>
        <ClusterListener className="org.apache.catalina.ha.session.ClusterSessionListener"/>
      </Cluster>
    </Engine>
  </Service>
</Server>"#;

    fn get<'a>(m: &'a Mapped, key: &str) -> Option<&'a str> {
        m.settings
            .iter()
            .rev()
            .find(|s| s.key == key)
            .map(|s| s.value.as_str())
    }

    #[test]
    fn tomcat_cluster_maps_to_keys_and_reports_the_rest() {
        assert!(is_xml(TOMCAT));
        let m = map(TOMCAT).unwrap();
        assert_eq!(get(&m, "sessionMode"), Some("DeltaManager"));
        assert_eq!(get(&m, "membershipType"), Some("multicast"));
        assert_eq!(get(&m, "mcastAddr"), Some("228.0.0.4"));
        assert_eq!(get(&m, "mcastDropTime"), Some("3000"));
        assert_eq!(get(&m, "tcpListenPort"), Some("4000"));
        assert_eq!(get(&m, "tcpThreadCount"), Some("6"));
        assert_eq!(get(&m, "replicationMode"), Some("fastasyncqueue"));
        assert_eq!(get(&m, "waitForAck"), Some("false"));
        assert_eq!(get(&m, "failureDetection"), Some("true"));
        assert_eq!(
            get(&m, "staticMembers"),
            Some("127.0.0.1:4001/000102030405060708090a0b0c0d0eff")
        );
        let ignored = m.ignored.join("\n");
        for what in [
            "<Receiver autoBind>",
            "<Receiver selectorTimeout>",
            "<Valve>",
            "<ClusterListener>",
            "expireSessionsOnShutdown",
        ] {
            assert!(ignored.contains(what), "{what} not reported in:\n{ignored}");
        }
    }

    #[test]
    fn no_membership_element_means_tomcats_multicast_default() {
        let m = map(
            r#"<Cluster className="org.apache.catalina.ha.tcp.SimpleTcpCluster" backupCount="2"/>"#,
        )
        .unwrap();
        assert_eq!(get(&m, "membershipType"), Some("multicast"));
        assert_eq!(get(&m, "backupCount"), Some("2"));
    }

    #[test]
    fn hostile_or_empty_files_are_refused() {
        assert!(map("<Server/>").unwrap_err().contains("no <Cluster>"));
        assert!(map("<Cluster").unwrap_err().starts_with("XML"));
        let dtd = r#"<!DOCTYPE x [<!ENTITY a "aaaa">]><Cluster/>"#;
        assert!(map(dtd).is_err());
        assert!(map(&" ".repeat(MAX_BYTES + 1)).is_err());
        assert_eq!(unique_id_hex("{1,2}"), None);
        assert_eq!(unique_id_hex("{0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,999}"), None);
    }
}
