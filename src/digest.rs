//! SHA-256 helpers shared by every layer.

use sha2::{Digest, Sha256};

/// Lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// A keyed hash (HMAC-SHA256) of plaintext, for what may be written or shown outside the
/// ciphertext: sidecars and output say "the same file as before" with it, never with a plain
/// SHA-256, which anyone who can read a sidecar could test guesses against (a passphrase file,
/// or a config file that is a template plus one secret). The key is derived from the agent's
/// signing key ([`crate::sign::Keys::keyed_hash`]), so listing needs no private age key, and
/// whoever can read or write the store cannot compute it.
pub struct Keyed {
    key: zeroize::Zeroizing<[u8; 32]>,
    id: String,
}

impl Keyed {
    /// The keyed hash with `key`; its id (recorded beside the hashes, so a reader knows whether
    /// its key made them) is a hash of the key, which says nothing about it.
    pub fn new(key: zeroize::Zeroizing<[u8; 32]>) -> Keyed {
        let mut h = Sha256::new();
        h.update(b"coldkeep keyed hash id\0");
        h.update(&key[..]);
        let id = hex::encode(&h.finalize()[..8]);
        Keyed { key, id }
    }

    /// The key's id (16 hex digits).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Lowercase hex HMAC-SHA256 of `data`.
    pub fn hex(&self, data: &[u8]) -> String {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(&self.key[..]).expect("any key length");
        mac.update(data);
        hex::encode(mac.finalize().into_bytes())
    }
}

impl std::fmt::Debug for Keyed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keyed({})", self.id)
    }
}
