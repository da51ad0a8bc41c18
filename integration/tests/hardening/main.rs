//! Heavy and hostile clients (issue 18): the agent raises its open-files limit, cuts off
//! slow and greedy clients without starving the others, and answers the inputs Consul
//! rejects as Consul does, changing nothing.

// Test helpers outside #[test] functions may unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod inputs;
mod limits;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use concord_integration::TestAgent;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Starts a dev agent with this JSON config file.
async fn dev_with_config(json: &str) -> (TestAgent, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("limits.json");
    std::fs::write(&path, json).unwrap();
    let agent = TestAgent::start(&["-dev", "-config-file", path.to_str().unwrap()])
        .await
        .unwrap();
    (agent, dir)
}

/// A connection to `to` from the loopback address `127.0.0.{host}`.
async fn connect_from(host: u8, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, host)),
        0,
    ))?;
    socket.connect(to).await
}

/// Sends a whole `GET path` on `stream` and returns the status line's code, or `None` when
/// the connection was closed (or reset) instead.
async fn get_status(stream: &mut TcpStream, path: &str) -> Option<u16> {
    let request = format!("GET {path} HTTP/1.1\r\nhost: agent\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut buf = vec![0u8; 4096];
    let n = stream.read(&mut buf).await.ok()?;
    let head = String::from_utf8_lossy(&buf[..n]);
    head.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// Whether the peer closed `stream` (a read sees end of file or a reset).
async fn closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(stream.read(&mut buf).await, Ok(0) | Err(_))
}
