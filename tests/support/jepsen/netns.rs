//! Network namespaces for partitions: `n` hosts, each with a veth to a
//! bridge in a hub namespace, addressed in a private range that exists only
//! inside these namespaces. All created by the test and deleted on drop;
//! names are unique per process. Cutting a host takes its bridge port down.

use std::process::Command;

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The namespaces of one test.
pub struct Lab {
    hub: String,
    hosts: Vec<String>,
    subnet: String,
}

impl Lab {
    /// Builds `n` hosts joined by a bridge.
    ///
    /// # Errors
    /// Why the namespaces could not be made (no rights, no `ip`); whatever
    /// was made is removed.
    pub fn build(n: usize) -> Result<Lab, String> {
        let tag = std::process::id() % 100_000;
        let mut lab = Lab {
            hub: format!("srjb{tag}"),
            hosts: Vec::new(),
            // 10.215.x.0/24: only inside these namespaces.
            subnet: format!("10.215.{}", tag % 250),
        };
        let hub = lab.hub.clone();
        let _ = ip(&["netns", "del", &hub]); // a leftover of a killed run
        ip(&["netns", "add", &hub])?;
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&[
            "-n",
            &hub,
            "link",
            "set",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        for i in 0..n {
            let h = format!("srj{tag}h{i}");
            let _ = ip(&["netns", "del", &h]);
            ip(&["netns", "add", &h])?;
            lab.hosts.push(h.clone());
            let port = format!("v{i}");
            ip(&[
                "link", "add", "eth0", "netns", &h, "type", "veth", "peer", "name", &port, "netns",
                &hub,
            ])?;
            ip(&["-n", &hub, "link", "set", &port, "master", "br0"])?;
            ip(&["-n", &hub, "link", "set", &port, "up"])?;
            let addr = format!("{}/24", lab.host_ip(i));
            ip(&["-n", &h, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", &h, "link", "set", "eth0", "up"])?;
            ip(&["-n", &h, "link", "set", "lo", "up"])?;
        }
        Ok(lab)
    }

    /// Host `i`'s namespace.
    pub fn ns(&self, i: usize) -> &str {
        &self.hosts[i]
    }

    /// Host `i`'s address (inside the namespaces only).
    pub fn host_ip(&self, i: usize) -> String {
        format!("{}.{}", self.subnet, i + 1)
    }

    /// The command prefix that runs a program on host `i`.
    pub fn prefix(&self, i: usize) -> Vec<String> {
        vec![
            "ip".into(),
            "netns".into(),
            "exec".into(),
            self.hosts[i].clone(),
        ]
    }

    /// Takes host `i`'s bridge port down (`up = false`: cut off from every
    /// other host) or up again.
    ///
    /// # Errors
    /// `ip` failed.
    pub fn link(&self, i: usize, up: bool) -> Result<(), String> {
        let port = format!("v{i}");
        ip(&[
            "-n",
            &self.hub,
            "link",
            "set",
            &port,
            if up { "up" } else { "down" },
        ])
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for h in self.hosts.iter().chain(std::iter::once(&self.hub)) {
            let _ = ip(&["netns", "del", h]);
        }
    }
}

/// Why namespaces cannot be used here, if they cannot.
pub fn unavailable() -> Option<String> {
    let euid = Command::new("id").arg("-u").output().ok();
    let root = euid.is_some_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        return Some("not root".into());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("`ip` (iproute2) not available".into()),
    }
}
