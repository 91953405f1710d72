//! `sessionrepl node` as an operator runs it: started from a Tomcat
//! `server.xml`, scraped at `/metrics`, stopped with SIGTERM, which drains
//! its sessions to the other members before it exits.

#[path = "../../tests/proc_util/mod.rs"]
mod proc_util;
#[path = "../../tests/store_util/mod.rs"]
mod store_util;

use proc_util::{field, Proc, WAIT};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use store_util::cluster_settings;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn setting<'a>(set: &'a [String], key: &str) -> &'a str {
    set.iter()
        .find_map(|s| s.strip_prefix(key)?.strip_prefix('='))
        .unwrap()
}

/// A Tomcat server.xml for the cluster of `set` (its multicast group,
/// port and domain), with Tomcat attributes sessionrepl has no use for.
fn server_xml(set: &[String], tcp_port: u16, metrics_port: u16) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Server port="-1" shutdown="SHUTDOWN">
  <Service name="Catalina">
    <Engine name="Catalina" defaultHost="localhost">
      <Cluster className="org.apache.catalina.ha.tcp.SimpleTcpCluster"
               channelSendOptions="6" domain="{domain}" backupCount="1"
               metricsPort="{metrics_port}" drainTimeout="30000">
        <Manager className="org.apache.catalina.ha.session.BackupManager"
                 expireSessionsOnShutdown="false" notifyListenersOnReplication="true"/>
        <Channel className="org.apache.catalina.tribes.group.GroupChannel">
          <Membership className="org.apache.catalina.tribes.membership.McastService"
                      address="{addr}" port="{port}" frequency="100" dropTime="1000"
                      bind="127.0.0.1" ttl="1"/>
          <Receiver className="org.apache.catalina.tribes.transport.nio.NioReceiver"
                    address="127.0.0.1" port="{tcp_port}" autoBind="100" selectorTimeout="5000"/>
          <Sender className="org.apache.catalina.tribes.transport.ReplicationTransmitter">
            <Transport className="org.apache.catalina.tribes.transport.nio.PooledParallelSender"/>
          </Sender>
          <Interceptor className="org.apache.catalina.tribes.group.interceptors.TcpFailureDetector"/>
          <Interceptor className="org.apache.catalina.tribes.group.interceptors.MessageDispatchInterceptor"/>
        </Channel>
        <Valve className="org.apache.catalina.ha.tcp.ReplicationValve" filter=""/>
      </Cluster>
    </Engine>
  </Service>
</Server>
"#,
        domain = setting(set, "domain"),
        addr = setting(set, "mcastAddr"),
        port = setting(set, "mcastPort"),
    )
}

fn scrape(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    out
}

fn sample(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

fn write_temp(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sessionrepl-daemon-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn server_xml_node_serves_metrics_and_drains_on_sigterm() {
    let set = cluster_settings(&["sessionMode=backup", "backupCount=1"]);
    let metrics_port = free_port();
    let xml = write_temp("server.xml", &server_xml(&set, free_port(), metrics_port));
    let mut a = Proc::start(&["node".into(), "--config".into(), xml.display().to_string()]);
    let ignored = a.line("config-ignored <Receiver autoBind>");
    assert!(ignored.contains("ignored"), "{ignored}");
    a.line("ready addr=");
    let m = a.line("metrics addr=");
    assert_eq!(m, format!("metrics addr=127.0.0.1:{metrics_port}"));

    a.line("store-ready sessions=0");
    let mut b = Proc::store_node(&set);
    let mut c = Proc::store_node(&set);
    for p in [&mut b, &mut c] {
        let r = p.ask("waitmembers 2 30000");
        assert_eq!(field(&r, "n"), 2, "{r}");
    }
    let per = 100;
    let r = c.ask(&format!("bulk create d- 0 {per} v 1 256"));
    assert_eq!(field(&r, "acked"), per, "{r}");

    let text = scrape(metrics_port);
    assert!(
        text.contains("# TYPE sessionrepl_msgs_received counter"),
        "{text}"
    );
    assert!(sample(&text, "sessionrepl_msgs_received") > 0);
    assert_eq!(sample(&text, "sessionrepl_store_members"), 2);
    assert_eq!(sample(&text, "sessionrepl_store_ready"), 1);
    let held = sample(&text, "sessionrepl_store_sessions");
    assert!(held > 0, "node a holds none of the sessions");

    a.signal(libc::SIGTERM);
    let d = a.line("draining ");
    assert_eq!(field(&d, "sessions"), held, "{d}");
    let d = a.line("drained ");
    assert!(field(&d, "handoffs") > 0, "{d}");
    a.line("stopped");
    assert!(a.wait_exit().success());

    // b and c hold everything a held; with c gone too (a second loss with
    // one backup) b still has every session, because a handed its over
    // before it left.
    let r = b.ask("waitmembers 1 30000");
    assert_eq!(field(&r, "n"), 1, "{r}");
    drop(c); // SIGKILL
    let r = b.ask("waitmembers 0 30000");
    assert_eq!(field(&r, "n"), 0, "{r}");
    let r = b.ask(&format!("check d- 0 {per} v 1"));
    assert_eq!(field(&r, "ok"), per, "{r}");
}

#[test]
fn node_refuses_a_config_that_cannot_take_effect() {
    let out = Command::new(env!("CARGO_BIN_EXE_sessionrepl"))
        .args(["node", "--set", "mcastAddr=239.1.2.3"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("mcastAddr") && err.contains("membershipType=multicast"),
        "{err}"
    );
    let bad = write_temp(
        "bad.xml",
        r#"<Server><Cluster><Channel><Membership className="org.apache.catalina.tribes.membership.McastService" port="99999"/></Channel></Cluster></Server>"#,
    );
    let out = Command::new(env!("CARGO_BIN_EXE_sessionrepl"))
        .args(["node", "--config", &bad.display().to_string()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("<Membership port>") && err.contains("mcastPort"),
        "{err}"
    );
}
