//! The identity foca tracks for each member: as small as possible, because every SWIM packet
//! carries two of them (source and destination) and every member holds one per peer.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

/// A member's SWIM identity: its gossip address plus a generation.
///
/// The node *name* is not here on purpose: names travel in the (rarer) metadata broadcasts, so
/// probes stay small. The generation lets a restarted member (same address) replace its old
/// incarnation at once instead of waiting for the cluster to forget it (foca's
/// `Identity::renew`): the higher generation wins an address conflict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Id {
    /// Gossip IP address.
    pub ip: IpAddr,
    /// Gossip port (UDP and TCP).
    pub port: u16,
    /// Chosen at start (seconds since the epoch) and bumped on each automatic rejoin.
    pub generation: u32,
}

impl Id {
    /// A new identity for `addr` with generation `generation`.
    pub fn new(addr: SocketAddr, generation: u32) -> Self {
        Id {
            ip: addr.ip(),
            port: addr.port(),
            generation,
        }
    }

    /// Where to send this member's packets.
    pub fn socket(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port)
    }
}

impl foca::Identity for Id {
    type Addr = (IpAddr, u16);

    fn renew(&self) -> Option<Self> {
        Some(Id {
            generation: self.generation.wrapping_add(1),
            ..*self
        })
    }

    fn addr(&self) -> Self::Addr {
        (self.ip, self.port)
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.generation > adversary.generation
    }
}
