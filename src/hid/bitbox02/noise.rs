//! The encrypted channel: `Noise_XX_25519_ChaChaPoly_SHA256` with the host as initiator, the
//! pairing code, and the `'n'` messages that carry protobuf requests.
//!
//! Ops inside the HWW layer (firmware `src/rust/bitbox02-rust/src/hww.rs` and `hww/noise.rs`):
//! `'u'` unlock (answer `0` done, `2` not set up), `'h'` start a handshake, `'H'` + a handshake
//! message (the answer to the host's third message is `[0, 1]` when the device wants the pairing
//! code confirmed, `[0, 0]` when it knows this host), `'v'` show the pairing code on the device
//! (`0` confirmed, `1` declined), `'n'` + an encrypted request (`0` + the encrypted answer, `1`
//! when the device has no verified session). Both sides mix the protocol name in as the
//! prologue (firmware `src/rust/bitbox-noise/src/noise_xx.rs`, `State::init`).
//!
//! The host side uses `noise-protocol` with `noise-rust-crypto`, the implementation the firmware
//! itself runs; the test kit's device uses `snow`, so the tests check one against the other.

use super::error::DeviceError;
use super::hww::{Hww, Waiting};
use noise_protocol::{CipherState, DH, HandshakeState, U8Array, patterns};
use noise_rust_crypto::sensitive::Sensitive;
use noise_rust_crypto::{ChaCha20Poly1305, Sha256, X25519};

/// Unlock (the device asks for its password).
pub const OP_UNLOCK: u8 = b'u';
/// Start a handshake.
pub const OP_HANDSHAKE_START: u8 = b'h';
/// A handshake message.
pub const OP_HANDSHAKE: u8 = b'H';
/// Show the pairing code on the device.
pub const OP_PAIRING_VERIFY: u8 = b'v';
/// An encrypted protobuf message.
pub const OP_NOISE_MSG: u8 = b'n';
/// Success status of these ops.
pub const STATUS_SUCCESS: u8 = 0;
/// Failure status.
pub const STATUS_FAILURE: u8 = 1;
/// The unlock answer of a device with no wallet (`OP_STATUS_FAILURE_UNINITIALIZED`).
pub const STATUS_UNINITIALIZED: u8 = 2;
/// The prologue both sides mix in: the protocol name.
pub const PROLOGUE: &[u8] = b"Noise_XX_25519_ChaChaPoly_SHA256";

/// The host's long-term Noise key (wiped on drop).
pub type HostKey = Sensitive<[u8; 32]>;

/// A fresh host key.
pub fn new_host_key() -> HostKey {
    X25519::genkey()
}

/// The public half of a host key.
pub fn public_key(key: &HostKey) -> [u8; 32] {
    X25519::pubkey(key)
}

/// A host key from its 32 bytes.
pub fn host_key_from(bytes: &[u8; 32]) -> HostKey {
    HostKey::from_slice(bytes)
}

/// The pairing code for a handshake hash: base32 (RFC 4648, padded alphabet), first 20
/// characters, as `XXXXX XXXXX` / `XXXXX XXXXX` (firmware `src/rust/bitbox02-rust/src/workflow/
/// pairing.rs`, `format_hash`).
pub fn pairing_code(hash: &[u8; 32]) -> String {
    let b32 = base32::encode(base32::Alphabet::Rfc4648 { padding: true }, hash);
    format!(
        "{} {}\n{} {}",
        &b32[0..5],
        &b32[5..10],
        &b32[10..15],
        &b32[15..20]
    )
}

/// A finished handshake, before the pairing is settled.
pub struct Handshake {
    state: HandshakeState<X25519, ChaCha20Poly1305, Sha256>,
    /// The device's static public key: its identity.
    pub device_key: [u8; 32],
    /// The handshake hash (the pairing code comes from it).
    pub hash: [u8; 32],
    /// Whether the device wants the pairing code confirmed (it does not know this host).
    pub device_wants_pairing: bool,
}

fn op(hww: &mut Hww, op: u8, body: &[u8], waiting: Waiting) -> Result<Vec<u8>, DeviceError> {
    let mut msg = Vec::with_capacity(body.len() + 1);
    msg.push(op);
    msg.extend_from_slice(body);
    hww.query(&msg, waiting)
}

/// `'u'`: waits while the user enters the password. `Ok(false)` for a device with no wallet
/// (nothing to unlock: it still lists cards, and refuses the rest in its own words).
pub fn unlock(hww: &mut Hww) -> Result<bool, DeviceError> {
    match op(hww, OP_UNLOCK, &[], Waiting::Password)?.as_slice() {
        [STATUS_SUCCESS] => Ok(true),
        [STATUS_UNINITIALIZED] => Ok(false),
        other => Err(DeviceError::Protocol(format!("unlock answered {other:02x?}"))),
    }
}

/// Runs the XX handshake as initiator with `host_key`.
pub fn handshake(hww: &mut Hww, host_key: &HostKey) -> Result<Handshake, DeviceError> {
    let noise = |e: noise_protocol::Error| DeviceError::Noise(format!("{:?}", e.kind()));
    let mut state = HandshakeState::<X25519, ChaCha20Poly1305, Sha256>::new(
        patterns::noise_xx(),
        true,
        PROLOGUE,
        Some(U8Array::clone(host_key)),
        None,
        None,
        None,
    );
    if op(hww, OP_HANDSHAKE_START, &[], Waiting::Confirm("the connection"))? != [STATUS_SUCCESS] {
        return Err(DeviceError::Noise(
            "the device refused to start a handshake".into(),
        ));
    }
    let first = state.write_message_vec(&[]).map_err(noise)?;
    let second = status_body(op(hww, OP_HANDSHAKE, &first, Waiting::Confirm("the connection"))?)?;
    state.read_message_vec(&second).map_err(noise)?;
    let third = state.write_message_vec(&[]).map_err(noise)?;
    let done = status_body(op(hww, OP_HANDSHAKE, &third, Waiting::Confirm("the connection"))?)?;
    if !state.completed() {
        return Err(DeviceError::Noise("the handshake did not complete".into()));
    }
    let device_key = state
        .get_rs()
        .ok_or_else(|| DeviceError::Noise("no device key after the handshake".into()))?;
    let hash: [u8; 32] = state
        .get_hash()
        .try_into()
        .map_err(|_| DeviceError::Noise("a handshake hash that is not 32 bytes".into()))?;
    let device_wants_pairing = match done.as_slice() {
        [] | [0] => false,
        [1] => true,
        other => {
            return Err(DeviceError::Protocol(format!(
                "handshake end answered {other:02x?}"
            )));
        }
    };
    Ok(Handshake {
        state,
        device_key,
        hash,
        device_wants_pairing,
    })
}

/// The body after a success status; a failure status is a handshake failure.
fn status_body(mut answer: Vec<u8>) -> Result<Vec<u8>, DeviceError> {
    match answer.first() {
        Some(&STATUS_SUCCESS) => {
            answer.remove(0);
            Ok(answer)
        }
        _ => Err(DeviceError::Noise(
            "the device rejected a handshake message".into(),
        )),
    }
}

impl Handshake {
    /// `'v'`: the device shows the pairing code and waits for the user's answer.
    pub fn confirm_pairing(&self, hww: &mut Hww) -> Result<(), DeviceError> {
        match op(hww, OP_PAIRING_VERIFY, &[], Waiting::Pairing)?.as_slice() {
            [STATUS_SUCCESS] => Ok(()),
            _ => Err(DeviceError::PairingRejected),
        }
    }

    /// The transport ciphers.
    pub fn into_channel(self) -> Channel {
        let (send, recv) = self.state.get_ciphers();
        Channel { send, recv }
    }
}

/// The encrypted channel after the handshake and pairing.
pub struct Channel {
    send: CipherState<ChaCha20Poly1305>,
    recv: CipherState<ChaCha20Poly1305>,
}

impl Channel {
    /// Sends one encrypted request and returns the decrypted answer.
    pub fn query(&mut self, hww: &mut Hww, plain: &[u8], waiting: Waiting) -> Result<Vec<u8>, DeviceError> {
        let encrypted = self.send.encrypt_vec(plain);
        let answer = op(hww, OP_NOISE_MSG, &encrypted, waiting)?;
        match answer.split_first() {
            Some((&STATUS_SUCCESS, body)) => self
                .recv
                .decrypt_vec(body)
                .map_err(|()| DeviceError::Noise("an answer that does not decrypt".into())),
            _ => Err(DeviceError::SessionLost),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The firmware's own vector (`workflow/pairing.rs`, `test_confirm`).
    #[test]
    fn pairing_code_matches_the_firmware() {
        let hash: [u8; 32] = hex::decode("59289bdbbbb6b68e8f127f49a525b03013500b3c1af2626f4007ebe44f09c86b")
            .unwrap()
            .try_into()
            .unwrap();
        assert_eq!(pairing_code(&hash), "LEUJX W53W2\n3I5DY SP5E2");
    }
}
