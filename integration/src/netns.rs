//! A private LAN for partition tests: one network namespace per member, each with an
//! `eth0` on `10.99.0.<i+1>/24`, all cabled by veth pairs to a bridge that lives in a hub
//! namespace of its own. Cutting a member's cable (`link down` on the hub side) partitions it
//! from every other member at once, for real (the kernel drops its packets), and healing
//! puts it back. Nothing is added to the host's own namespace (no addresses, no routes, no
//! firewall rules), so a failed test cannot leave the machine's network changed; the
//! namespaces (and with them every veth and the bridge) are deleted on drop, also when the
//! test panics.
//!
//! Needs root and `ip` (iproute2); HTTP into a namespace goes through `curl` run in it
//! ([`curl`]), or through in-process clients on a thread moved into a member namespace
//! ([`enter`]). [`available`] says whether this machine can do it.

use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};

/// A bridge LAN of `n` namespaces.
#[derive(Debug)]
pub struct Lan {
    hub: String,
    members: Vec<String>,
    /// The first three octets of the members' `/24`.
    subnet: [u8; 3],
}

/// Runs `ip ARGS`, failing with its stderr.
fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Whether network namespaces can be made here (root, `ip` and `curl` present). Under CI a
/// missing program fails instead (see [`crate::tools`]).
pub fn available(what: &str) -> bool {
    if !crate::tools::require("ip", &["-V"], what) || !crate::tools::require("curl", &["-V"], what)
    {
        return false;
    }
    // Unique per call: tests of one process probe concurrently.
    static PROBES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let probe = format!("ccprobe{}-{n}", std::process::id());
    let ok = ip(&["netns", "add", &probe]).is_ok();
    let _ = ip(&["netns", "del", &probe]);
    if !ok {
        assert!(
            !crate::tools::is_ci(),
            "cannot create network namespaces (not root?), and CI is set: {what} must run"
        );
        eprintln!("cannot create network namespaces (not root?); skipping {what}");
    }
    ok
}

impl Lan {
    /// Creates the hub with its bridge and `n` member namespaces cabled to it. Names carry
    /// this process's id and `tag`, so parallel tests (and leftovers of a killed run, which
    /// are removed first) never clash.
    pub fn new(tag: &str, n: usize) -> anyhow::Result<Lan> {
        Lan::on(&format!("cc{}{tag}", std::process::id()), [10, 99, 0], n)
    }

    /// [`Lan::new`] with namespaces named `<prefix>h` (the hub) and `<prefix>m<i>`, members
    /// on `<subnet>.<i+1>/24`.
    pub fn on(prefix: &str, subnet: [u8; 3], n: usize) -> anyhow::Result<Lan> {
        let lan = Lan {
            hub: format!("{prefix}h"),
            members: (0..n).map(|i| format!("{prefix}m{i}")).collect(),
            subnet,
        };
        for ns in std::iter::once(&lan.hub).chain(&lan.members) {
            let _ = ip(&["netns", "del", ns]);
            ip(&["netns", "add", ns])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        ip(&["-n", &lan.hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &lan.hub, "link", "set", "br0", "up"])?;
        for (i, ns) in lan.members.iter().enumerate() {
            let port = format!("v{i}");
            let addr = format!("{}/24", lan.ip(i));
            ip(&[
                "-n", &lan.hub, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                "netns", ns,
            ])?;
            ip(&["-n", &lan.hub, "link", "set", &port, "master", "br0", "up"])?;
            ip(&["-n", ns, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", ns, "link", "set", "eth0", "up"])?;
        }
        Ok(lan)
    }

    /// Namespace of member `i`.
    pub fn ns(&self, i: usize) -> &str {
        &self.members[i]
    }

    /// Address of member `i`.
    pub fn ip(&self, i: usize) -> IpAddr {
        let last = u8::try_from(i + 1).expect("invariant: a test LAN has under 255 members");
        let [a, b, c] = self.subnet;
        IpAddr::V4(Ipv4Addr::new(a, b, c, last))
    }

    /// Cuts member `i` off the LAN (its cable goes down at the bridge).
    pub fn cut(&self, i: usize) -> anyhow::Result<()> {
        ip(&["-n", &self.hub, "link", "set", &format!("v{i}"), "down"])
    }

    /// Plugs member `i` back in.
    pub fn heal(&self, i: usize) -> anyhow::Result<()> {
        ip(&["-n", &self.hub, "link", "set", &format!("v{i}"), "up"])
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        // Deleting a namespace deletes its interfaces, and a veth pair dies with either end.
        for ns in std::iter::once(&self.hub).chain(&self.members) {
            if let Err(e) = ip(&["netns", "del", ns]) {
                tracing::warn!(error = %e, "could not delete test namespace {ns}");
            }
        }
    }
}

/// Moves the calling thread (only it) into network namespace `ns`: the sockets it makes
/// from then on live there. Run a current-thread tokio runtime on such a thread to drive
/// in-process clients against a [`Lan`]'s members.
pub fn enter(ns: &str) -> anyhow::Result<()> {
    use std::os::fd::AsFd as _;
    let path = format!("/run/netns/{ns}");
    let file = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
    rustix::thread::move_into_link_name_space(
        file.as_fd(),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )
    .with_context(|| format!("setns into {ns}"))?;
    Ok(())
}

/// An HTTP request run by `curl` inside namespace `ns`: status, `X-Consul-Index` (0 if
/// absent) and body.
pub async fn curl(
    ns: &str,
    method: &str,
    url: &str,
    body: &[u8],
) -> anyhow::Result<(u16, u64, Vec<u8>)> {
    let r = request(ns, method, url, body, Duration::from_secs(10)).await?;
    let index = r
        .header("x-consul-index")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok((r.status, index, r.body))
}

/// An HTTP response as `curl -i` printed it.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Response {
    /// The first header called `name` (case-insensitive), trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An HTTP request run by `curl` inside namespace `ns`, given up after `max_time` (an
/// error then, as for any transport failure).
pub async fn request(
    ns: &str,
    method: &str,
    url: &str,
    body: &[u8],
    max_time: Duration,
) -> anyhow::Result<Response> {
    let mut cmd = tokio::process::Command::new("ip");
    cmd.args(["netns", "exec", ns, "curl", "-sS", "-i", "--max-time"])
        .arg(format!("{:.3}", max_time.as_secs_f64()))
        .args(["-X", method, url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if !body.is_empty() {
        cmd.args(["--data-binary", "@-"]).stdin(Stdio::piped());
    } else {
        cmd.stdin(Stdio::null());
    }
    let mut child = cmd.spawn().context("running curl in a namespace")?;
    if let Some(mut stdin) = child.stdin.take() {
        use tokio::io::AsyncWriteExt as _;
        stdin.write_all(body).await?;
    }
    let out = child.wait_with_output().await?;
    if !out.status.success() {
        bail!(
            "curl {url}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    parse_response(&out.stdout)
}

/// Splits `curl -i` output into status, headers and body.
fn parse_response(raw: &[u8]) -> anyhow::Result<Response> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of headers in curl's output")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .context("no status line in curl's output")?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok(Response {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn namespaces() -> String {
        let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn lan_cuts_heals_and_cleans_up() {
        if !available("the namespace LAN test") {
            return;
        }
        let lan = Lan::new("t", 2).unwrap();
        let names = [
            lan.hub.clone(),
            lan.ns(0).to_string(),
            lan.ns(1).to_string(),
        ];
        assert!(names.iter().all(|n| namespaces().contains(n.as_str())));
        lan.cut(1).unwrap();
        lan.heal(1).unwrap();
        drop(lan);
        let left = namespaces();
        assert!(names.iter().all(|n| !left.contains(n.as_str())), "{left}");
    }

    #[test]
    fn a_thread_enters_a_member_namespace() {
        if !available("the namespace entry test") {
            return;
        }
        let lan = Lan::on(&format!("cc-{}-e", std::process::id()), [10, 248, 9], 1).unwrap();
        let addr = std::net::SocketAddr::new(lan.ip(0), 0);
        assert!(
            std::net::TcpListener::bind(addr).is_err(),
            "the member's address is not the host's"
        );
        let ns = lan.ns(0).to_string();
        let inside = std::thread::spawn(move || {
            enter(&ns).unwrap();
            std::net::TcpListener::bind(addr).map(|_| ())
        })
        .join()
        .unwrap();
        assert!(inside.is_ok(), "{inside:?}");
    }

    #[test]
    fn curl_output_is_split() {
        let raw =
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Consul-Index: 42\r\n\r\n[1]";
        let r = parse_response(raw).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"[1]"[..]));
        assert_eq!(r.header("X-CONSUL-INDEX"), Some("42"));
        let raw = b"HTTP/1.1 404 Not Found\r\n\r\n";
        let r = parse_response(raw).unwrap();
        assert_eq!((r.status, r.headers.len(), r.body.len()), (404, 0, 0));
    }
}
