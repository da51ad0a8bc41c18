//! Gossip encryption: a keyring of AES-GCM keys (16, 24 or 32 bytes, given base64 as Consul's
//! `-encrypt`). The primary key encrypts; every installed key is tried to decrypt, so a key
//! rotation (install everywhere, use, remove the old one) never splits the pool.
//!
//! Wire form of a sealed message: `[version 1][nonce 12][ciphertext + tag 16]`. The nonce is
//! random per message (96 bits: collisions are negligible at gossip rates).

use aes_gcm::aead::generic_array::typenum::U12;
use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng};
use aes_gcm::aes::Aes192;
use aes_gcm::{Aes128Gcm, Aes256Gcm, AesGcm, Nonce};
use base64::Engine;

use super::GossipError;

/// Version byte of a sealed message, so the format can change later.
const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Bytes a sealed message adds to its plaintext.
pub const OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN;

type Aes192Gcm = AesGcm<Aes192, U12>;

#[derive(Clone)]
enum Cipher {
    A128(Aes128Gcm),
    A192(Aes192Gcm),
    A256(Aes256Gcm),
}

/// One gossip key: its base64 text (what operators see and type) and its cipher.
#[derive(Clone)]
struct Key {
    text: String,
    cipher: Cipher,
    fingerprint: u64,
}

impl Key {
    fn parse(text: &str) -> Result<Key, GossipError> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| GossipError::BadKey(format!("not base64: {e}")))?;
        let cipher = match raw.len() {
            16 => Cipher::A128(Aes128Gcm::new_from_slice(&raw).map_err(bad_len)?),
            24 => Cipher::A192(Aes192Gcm::new_from_slice(&raw).map_err(bad_len)?),
            32 => Cipher::A256(Aes256Gcm::new_from_slice(&raw).map_err(bad_len)?),
            n => {
                return Err(GossipError::BadKey(format!(
                    "key is {n} bytes; it must be 16, 24 or 32"
                )))
            }
        };
        let mut key = Key {
            text: text.trim().to_string(),
            cipher,
            fingerprint: 0,
        };
        // The fingerprint lets members advertise which keys they hold (for `keyring -list`)
        // without revealing them: the GCM tag of a fixed message under a fixed nonce is a MAC
        // of that message under the key.
        let zero = Nonce::default();
        let tag = key.encrypt_with(&zero, b"concord keyring fingerprint")?;
        let mut fp = [0u8; 8];
        let tail = tag.len().saturating_sub(8);
        fp.copy_from_slice(&tag[tail..]);
        key.fingerprint = u64::from_be_bytes(fp);
        Ok(key)
    }

    fn encrypt_with(&self, nonce: &Nonce<U12>, plain: &[u8]) -> Result<Vec<u8>, GossipError> {
        let out = match &self.cipher {
            Cipher::A128(c) => c.encrypt(nonce, plain),
            Cipher::A192(c) => c.encrypt(nonce, plain),
            Cipher::A256(c) => c.encrypt(nonce, plain),
        };
        out.map_err(|_| GossipError::Crypto)
    }

    fn decrypt_with(&self, nonce: &Nonce<U12>, sealed: &[u8]) -> Option<Vec<u8>> {
        match &self.cipher {
            Cipher::A128(c) => c.decrypt(nonce, sealed).ok(),
            Cipher::A192(c) => c.decrypt(nonce, sealed).ok(),
            Cipher::A256(c) => c.decrypt(nonce, sealed).ok(),
        }
    }
}

fn bad_len(_: aes_gcm::aes::cipher::InvalidLength) -> GossipError {
    GossipError::BadKey("invalid key length".into())
}

/// 32 random bytes, base64: a new `-encrypt` key (`concord keygen`).
pub fn keygen() -> String {
    let key = Aes256Gcm::generate_key(OsRng);
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// The installed keys, primary first. Empty means gossip is plaintext.
#[derive(Clone, Default)]
pub struct Keyring {
    keys: Vec<Key>,
}

impl Keyring {
    /// A keyring from base64 keys; the first is the primary.
    pub fn new(keys: &[String]) -> Result<Keyring, GossipError> {
        let mut ring = Keyring::default();
        for k in keys {
            ring.install(k)?;
        }
        Ok(ring)
    }

    /// Whether messages are encrypted at all.
    pub fn enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Adds a key (it decrypts at once; it encrypts only once made primary, or if it is the
    /// first key). Installing a key twice is a no-op.
    pub fn install(&mut self, text: &str) -> Result<(), GossipError> {
        let key = Key::parse(text)?;
        if !self.keys.iter().any(|k| k.text == key.text) {
            self.keys.push(key);
        }
        Ok(())
    }

    /// Makes an installed key the primary (the one that encrypts).
    pub fn use_key(&mut self, text: &str) -> Result<(), GossipError> {
        let pos = self
            .keys
            .iter()
            .position(|k| k.text == text.trim())
            .ok_or(GossipError::KeyNotInstalled)?;
        let key = self.keys.remove(pos);
        self.keys.insert(0, key);
        Ok(())
    }

    /// Removes a key; the primary key cannot be removed (as in Serf: `use` another first).
    pub fn remove(&mut self, text: &str) -> Result<(), GossipError> {
        let pos = self
            .keys
            .iter()
            .position(|k| k.text == text.trim())
            .ok_or(GossipError::KeyNotInstalled)?;
        if pos == 0 {
            return Err(GossipError::RemovePrimaryKey);
        }
        self.keys.remove(pos);
        Ok(())
    }

    /// The installed keys (base64), primary first.
    pub fn keys(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.text.clone()).collect()
    }

    /// The primary key (base64), if any.
    pub fn primary(&self) -> Option<String> {
        self.keys.first().map(|k| k.text.clone())
    }

    /// Fingerprints of the installed keys, in keyring order (advertised in member metadata).
    pub fn fingerprints(&self) -> Vec<u64> {
        self.keys.iter().map(|k| k.fingerprint).collect()
    }

    /// The fingerprint of one base64 key, if it parses.
    pub fn fingerprint_of(text: &str) -> Option<u64> {
        Key::parse(text).ok().map(|k| k.fingerprint)
    }

    /// Encrypts with the primary key, or returns the plaintext when no key is installed.
    pub fn seal(&self, plain: Vec<u8>) -> Result<Vec<u8>, GossipError> {
        let Some(key) = self.keys.first() else {
            return Ok(plain);
        };
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let sealed = key.encrypt_with(&nonce, &plain)?;
        let mut out = Vec::with_capacity(OVERHEAD + plain.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Decrypts with any installed key; `None` when no key opens it (wrong key, garbled, or
    /// plaintext sent to an encrypted pool). Without keys, the data is returned as is.
    pub fn open(&self, data: &[u8]) -> Option<Vec<u8>> {
        if self.keys.is_empty() {
            return Some(data.to_vec());
        }
        if data.len() < OVERHEAD || data[0] != VERSION {
            return None;
        }
        let nonce = Nonce::from_slice(&data[1..1 + NONCE_LEN]);
        let sealed = &data[1 + NONCE_LEN..];
        self.keys.iter().find_map(|k| k.decrypt_with(nonce, sealed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_key_sizes_round_trip_and_wrong_key_fails() {
        let b64 = |n: usize| base64::engine::general_purpose::STANDARD.encode(vec![7u8; n]);
        for n in [16, 24, 32] {
            let ring = Keyring::new(&[b64(n)]).expect("valid key");
            let sealed = ring.seal(b"hello".to_vec()).expect("seal");
            assert!(!sealed.windows(5).any(|w| w == b"hello"));
            assert_eq!(ring.open(&sealed).as_deref(), Some(&b"hello"[..]));
            let other = Keyring::new(&[keygen()]).expect("valid key");
            assert_eq!(other.open(&sealed), None);
        }
        assert!(Keyring::new(&[b64(20)]).is_err());
        assert!(Keyring::new(&["not base64!".into()]).is_err());
    }

    #[test]
    fn rotation_keeps_old_messages_readable_until_removed() {
        let (old, new) = (keygen(), keygen());
        let mut ring = Keyring::new(std::slice::from_ref(&old)).expect("valid");
        let sealed_old = ring.seal(b"x".to_vec()).expect("seal");
        ring.install(&new).expect("install");
        ring.use_key(&new).expect("use");
        assert!(ring.remove(&new).is_err(), "primary cannot be removed");
        assert!(ring.open(&sealed_old).is_some());
        ring.remove(&old).expect("remove");
        assert!(ring.open(&sealed_old).is_none());
        assert_eq!(ring.keys(), vec![new]);
    }
}
