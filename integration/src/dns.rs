//! A DNS client for tests, over UDP or TCP, built on hickory-client.

use std::net::SocketAddr;

use hickory_client::client::{AsyncClient, ClientHandle};
use hickory_client::rr::{DNSClass, Name, RecordType};
use hickory_client::tcp::TcpClientStream;
use hickory_client::udp::UdpClientStream;
use hickory_proto::iocompat::AsyncIoTokioAsStd;
use hickory_proto::op::Message;
use tokio::net::{TcpStream, UdpSocket};

/// Transport of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
}

/// Sends one query and returns the full response message.
pub async fn query(
    server: SocketAddr,
    transport: Transport,
    name: &str,
    rtype: RecordType,
) -> anyhow::Result<Message> {
    let name = Name::from_ascii(name)?;
    let response = match transport {
        Transport::Udp => {
            let stream = UdpClientStream::<UdpSocket>::new(server);
            let (mut client, bg) = AsyncClient::connect(stream).await?;
            tokio::spawn(bg);
            client.query(name, DNSClass::IN, rtype).await?
        }
        Transport::Tcp => {
            let (stream, sender) = TcpClientStream::<AsyncIoTokioAsStd<TcpStream>>::new(server);
            let (mut client, bg) = AsyncClient::new(stream, sender, None).await?;
            tokio::spawn(bg);
            client.query(name, DNSClass::IN, rtype).await?
        }
    };
    Ok(response.into_message())
}

/// Sends one plain (non-EDNS) query over UDP, as `dig +noedns` or an old stub resolver does,
/// and returns the response.
pub async fn query_udp_no_edns(
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
) -> anyhow::Result<Message> {
    use hickory_proto::op::{MessageType, OpCode, Query};
    use std::time::Duration;

    let mut msg = Message::new();
    msg.set_id(0x5151)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(Name::from_ascii(name)?, rtype));
    let bytes = msg.to_vec()?;
    let sock = UdpSocket::bind("127.0.0.1:0").await?;
    sock.send_to(&bytes, server).await?;
    let mut buf = vec![0u8; 65535];
    let (len, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf)).await??;
    Ok(Message::from_vec(&buf[..len])?)
}
