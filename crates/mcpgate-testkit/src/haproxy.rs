//! HAProxy (Debian's package) in front of replicas, with the configuration
//! mcpgate ships (`deploy/haproxy/mcpgate.cfg`): the fleet tests and the
//! fleet benchmark run that file with only its `bind` line and its `server`
//! lines set to loopback ports, so what is documented is what is tested.

/// The shipped configuration.
pub const SHIPPED: &str = include_str!("../../../deploy/haproxy/mcpgate.cfg");

/// `haproxy` in Debian's place (or /usr/local), if installed.
pub fn binary() -> Option<std::path::PathBuf> {
    ["/usr/sbin/haproxy", "/usr/local/sbin/haproxy"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists())
}

/// The shipped configuration listening on `127.0.0.1:front`, with one
/// `server` line per replica port (checked as shipped).
pub fn config(front: u16, replicas: &[u16]) -> String {
    let mut out = String::new();
    let mut servers_done = false;
    for line in SHIPPED.lines() {
        let t = line.trim_start();
        if t.starts_with("bind ") {
            out.push_str(&format!("    bind 127.0.0.1:{front}\n"));
        } else if t.starts_with("server ") {
            if !servers_done {
                for (i, p) in replicas.iter().enumerate() {
                    out.push_str(&format!(
                        "    server r{} 127.0.0.1:{p} check inter 500ms fall 2 rise 2\n",
                        i + 1
                    ));
                }
                servers_done = true;
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(
        servers_done,
        "deploy/haproxy/mcpgate.cfg has no server line"
    );
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_bind_and_servers_change() {
        let c = super::config(9000, &[9001, 9002]);
        assert!(c.contains("    bind 127.0.0.1:9000\n"));
        assert!(c.contains("server r1 127.0.0.1:9001 check"));
        assert!(c.contains("server r2 127.0.0.1:9002 check"));
        assert!(!c.contains("10.0.0."));
        assert!(c.contains("stick store-response res.hdr(mcp-session-id)"));
        let servers = c.lines().filter(|l| l.trim_start().starts_with("server "));
        assert_eq!(servers.count(), 2);
    }
}
