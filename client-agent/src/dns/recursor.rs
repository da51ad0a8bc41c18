//! Forwarding names that are not ours to the configured recursors (Consul's `recursors`).
//!
//! As Consul: recursors are tried in the configured order, each with `recursor_timeout`; a
//! NOERROR or NXDOMAIN answer is final, any other rcode (SERVFAIL, REFUSED...) or no answer
//! moves on to the next one. The upstream transport follows the client's: a UDP client's
//! query goes over UDP and a truncated (TC) answer is passed through, so the client retries
//! over TCP and that retry goes upstream over TCP. Retrying over TCP ourselves would fetch an
//! answer the client's UDP buffer could not hold anyway.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// Largest DNS message over UDP we accept back from a recursor.
const MAX_UDP_RESPONSE: usize = 65_535;

/// The configured recursors.
#[derive(Clone, Debug)]
pub(crate) struct Recursors {
    addrs: Vec<SocketAddr>,
    timeout: Duration,
}

/// Why one recursor gave no usable answer (logged at debug, then the next is tried).
#[derive(Debug, thiserror::Error)]
enum ExchangeError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("undecodable answer")]
    Decode(#[from] hickory_proto::error::ProtoError),
    #[error("answered {0}")]
    Rcode(ResponseCode),
}

impl Recursors {
    pub(crate) fn new(addrs: Vec<SocketAddr>, timeout: Duration) -> Self {
        Recursors { addrs, timeout }
    }

    /// Whether any recursor is configured (then responses advertise RA).
    pub(crate) fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }

    /// Forwards `query` to each recursor in turn; the first final answer, or `None` when all
    /// failed (the caller answers SERVFAIL).
    pub(crate) async fn forward(
        &self,
        query: &Query,
        recursion_desired: bool,
        edns: Option<&Edns>,
        tcp: bool,
    ) -> Option<Message> {
        // A fresh random id per exchange: the recursor's answer is matched by it, so a spoofed
        // packet must guess it.
        let mut request = Message::new();
        request
            .set_id(rand::random())
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(recursion_desired)
            .add_query(query.clone());
        if let Some(edns) = edns {
            let mut ours = Edns::new();
            ours.set_max_payload(edns.max_payload());
            request.set_edns(ours);
        }
        let bytes = match request.to_vec() {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::debug!(%error, "cannot encode the query for the recursors");
                return None;
            }
        };
        for addr in &self.addrs {
            let exchange = async {
                if tcp {
                    exchange_tcp(*addr, &bytes, request.id()).await
                } else {
                    exchange_udp(*addr, &bytes, request.id()).await
                }
            };
            let result = match tokio::time::timeout(self.timeout, exchange).await {
                Ok(result) => result,
                Err(_) => Err(ExchangeError::Timeout(self.timeout)),
            };
            let answer = result.and_then(|answer| match answer.response_code() {
                ResponseCode::NoError | ResponseCode::NXDomain => Ok(answer),
                other => Err(ExchangeError::Rcode(other)),
            });
            match answer {
                Ok(answer) => return Some(answer),
                Err(error) => {
                    tracing::debug!(recursor = %addr, name = %query.name(), %error, "recursor failed")
                }
            }
        }
        tracing::warn!(name = %query.name(), "all DNS recursors failed");
        None
    }
}

/// One UDP exchange: waits for the answer carrying `id` from `addr`, ignoring other packets.
async fn exchange_udp(addr: SocketAddr, bytes: &[u8], id: u16) -> Result<Message, ExchangeError> {
    let local: IpAddr = match addr {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let socket = UdpSocket::bind((local, 0)).await?;
    socket.connect(addr).await?;
    socket.send(bytes).await?;
    let mut buffer = vec![0; MAX_UDP_RESPONSE];
    loop {
        let len = socket.recv(&mut buffer).await?;
        match Message::from_vec(&buffer[..len]) {
            Ok(answer) if answer.id() == id && answer.message_type() == MessageType::Response => {
                return Ok(answer)
            }
            // A stray or mangled packet: keep waiting for ours until the timeout.
            _ => continue,
        }
    }
}

/// One TCP exchange: 2-byte length prefix each way (RFC 1035 §4.2.2).
async fn exchange_tcp(addr: SocketAddr, bytes: &[u8], id: u16) -> Result<Message, ExchangeError> {
    let mut stream = TcpStream::connect(addr).await?;
    let len = u16::try_from(bytes.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "query too long"))?;
    let mut framed = Vec::with_capacity(bytes.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).await?;
    let len = stream.read_u16().await?;
    let mut buffer = vec![0; usize::from(len)];
    stream.read_exact(&mut buffer).await?;
    let answer = Message::from_vec(&buffer)?;
    if answer.id() != id {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "answer for another query",
        )
        .into());
    }
    Ok(answer)
}
