//! The L4 data path both sides share: copy bytes both ways between a downstream and an
//! upstream stream until either side closes or the connection is told to close, counting
//! it in the metrics.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::metrics::{ConnLabels, L4Metrics};

/// How a proxied connection ended.
#[derive(Debug)]
pub enum Ended {
    /// One side closed (or failed: the error).
    Done(Option<io::Error>),
    /// `close` fired (an intention now denies it, or shutdown): the reason.
    Closed(String),
}

/// Copies between `downstream` and `upstream` until one ends or `close` yields a reason.
/// Counts the connection as opened now and closed on return.
pub async fn pipe<D, U>(
    downstream: D,
    mut upstream: U,
    metrics: &L4Metrics,
    labels: &ConnLabels,
    close: impl Future<Output = String>,
) -> Ended
where
    D: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    metrics.opened.get_or_create(labels).inc();
    // Counted as the bytes move, so long-lived streams show up before they end.
    let mut downstream = Counted {
        io: downstream,
        read: metrics.bytes_in.get_or_create(labels).clone(),
        written: metrics.bytes_out.get_or_create(labels).clone(),
    };
    let ended = tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut downstream, &mut upstream) => {
            Ended::Done(copied.err())
        }
        reason = close => Ended::Closed(reason),
    };
    metrics.closed.get_or_create(labels).inc();
    ended
}

/// A stream that counts the bytes read from and written to it.
struct Counted<T> {
    io: T,
    read: Counter,
    written: Counter,
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.io).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before);
        self.read.inc_by(n as u64);
        poll
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &poll {
            self.written.inc_by(*n as u64);
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
