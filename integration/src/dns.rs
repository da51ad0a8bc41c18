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
            let (stream, sender) =
                TcpClientStream::<AsyncIoTokioAsStd<TcpStream>>::new(server);
            let (mut client, bg) = AsyncClient::new(stream, sender, None).await?;
            tokio::spawn(bg);
            client.query(name, DNSClass::IN, rtype).await?
        }
    };
    Ok(response.into_message())
}
