//! Small apps to put behind sidecars in tests, run in the test process: a TCP echo server
//! and an HTTP/1.1 server that answers with its name and the request line. Both stop when
//! their handle is dropped.

use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A running app; dropping it stops accepting (open connections end with the runtime).
#[derive(Debug)]
pub struct App {
    /// Where it listens.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for App {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve<F, Fut>(handler: F) -> anyhow::Result<App>
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(handler(stream));
        }
    });
    Ok(App { addr, task })
}

/// Echoes every byte back until the peer closes.
pub async fn tcp_echo() -> anyhow::Result<App> {
    serve(|mut stream: TcpStream| async move {
        let (mut r, mut w) = stream.split();
        let _ = tokio::io::copy(&mut r, &mut w).await;
    })
    .await
}

/// Answers every HTTP/1.1 request (keep-alive) with `200`, body `<name> <METHOD> <path>`.
pub async fn http_echo(name: &'static str) -> anyhow::Result<App> {
    serve(move |stream: TcpStream| async move {
        let _ = http_connection(name, stream).await;
    })
    .await
}

async fn http_connection(name: &str, stream: TcpStream) -> std::io::Result<()> {
    let mut stream = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if stream.read_line(&mut request_line).await? == 0 {
            return Ok(());
        }
        let mut content_length = 0usize;
        loop {
            let mut line = String::new();
            if stream.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.trim().eq_ignore_ascii_case("content-length") {
                    content_length = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; content_length];
        stream.read_exact(&mut body).await?;
        let mut parts = request_line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let reply = format!("{name} {method} {path}");
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{reply}",
            reply.len()
        );
        stream.get_mut().write_all(response.as_bytes()).await?;
    }
}
