//! Nodes on hosts of their own: a network namespace per node with its own
//! address, joined to the test's namespace by a veth pair (iproute2). A
//! node reaches PostgreSQL and Redis through TCP relays the test runs on
//! the host end of its link, so taking that link down cuts exactly this
//! node off from the database, the broker and its clients, as a network
//! partition would. Needs root and `ip`; [`Host::create`] says `None`
//! elsewhere and the tests fall back to loopback ports.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::{Server, command};

pub struct Host {
    ns: String,
    link: String,
    /// The host end of the link (relays listen here).
    gateway: Ipv4Addr,
    /// The node's own address.
    pub addr: Ipv4Addr,
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Copies one direction until either side closes.
fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

impl Host {
    /// Host `index` (0..=250) of this test process, or `None` where
    /// namespaces cannot be made here.
    pub fn create(index: u8) -> Option<Host> {
        let tag = std::process::id() % 10_000;
        let ns = format!("qbt{tag}h{index}");
        let link = format!("qbt{tag}v{index}");
        let peer = format!("qbt{tag}p{index}");
        let net = (100 + tag % 100) as u8;
        let (gateway, addr) = (
            Ipv4Addr::new(10, net, index, 1),
            Ipv4Addr::new(10, net, index, 2),
        );
        if !ip(&["netns", "add", &ns]) {
            return None;
        }
        let host = Host {
            ns: ns.clone(),
            link: link.clone(),
            gateway,
            addr,
        };
        let ok = ip(&["link", "add", &link, "type", "veth", "peer", "name", &peer])
            && ip(&["link", "set", &peer, "netns", &ns])
            && ip(&["addr", "add", &format!("{gateway}/24"), "dev", &link])
            && ip(&["link", "set", &link, "up"])
            && ip(&[
                "netns",
                "exec",
                &ns,
                "ip",
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                &peer,
            ])
            && ip(&["netns", "exec", &ns, "ip", "link", "set", &peer, "up"])
            && ip(&["netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
        ok.then_some(host)
    }

    /// A relay on this host's link to `target` (PostgreSQL, Redis): the
    /// address the node uses instead.
    pub fn relay(&self, target: SocketAddr) -> SocketAddr {
        let listener = TcpListener::bind((self.gateway, 0)).unwrap();
        let at = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || pump(client, server));
                std::thread::spawn(move || pump(s2, c2));
            }
        });
        at
    }

    /// Takes the link down: the node can reach nothing, nothing reaches it.
    pub fn cut(&self) {
        assert!(
            ip(&["link", "set", &self.link, "down"]),
            "cut {}",
            self.link
        );
    }

    /// Brings the link back.
    pub fn restore(&self) {
        assert!(
            ip(&["link", "set", &self.link, "up"]),
            "restore {}",
            self.link
        );
    }

    /// A quantbox server inside this host, on its own address.
    pub fn start(&self, dir: &Path, env: &[(&str, &str)]) -> Server {
        let inner = command(dir, env);
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns])
            .arg(inner.get_program());
        cmd.env_clear();
        for (k, v) in inner.get_envs() {
            if let Some(v) = v {
                cmd.env(k, v);
            }
        }
        Server::spawn(cmd, dir, &format!("{}:0", self.addr))
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // Deleting the namespace deletes the veth pair with it.
        ip(&["netns", "del", &self.ns]);
        ip(&["link", "del", &self.link]);
    }
}

/// `url` (`scheme://[user@]host:port/...`) pointed at `to`; and the
/// address it pointed at before.
pub fn rehost(url: &str, to: SocketAddr) -> (String, SocketAddr) {
    use std::net::ToSocketAddrs;
    let (scheme, rest) = url.split_once("://").unwrap();
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (user, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), authority),
    };
    let from = hostport.to_socket_addrs().unwrap().next().unwrap();
    (format!("{scheme}://{user}{to}{path}"), from)
}

/// The environment of a node on `host`: its database and Redis URLs
/// through relays on its link.
pub fn through(host: &Host, env: Vec<(String, String)>) -> Vec<(String, String)> {
    env.into_iter()
        .map(|(k, v)| {
            if k == "DATABASE_URL" || k == "REDIS_URL" {
                let (_, target) = rehost(&v, "0.0.0.0:0".parse().unwrap());
                let (url, _) = rehost(&v, host.relay(target));
                (k, url)
            } else {
                (k, v)
            }
        })
        .collect()
}
