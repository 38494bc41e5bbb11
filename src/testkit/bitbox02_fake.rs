//! A fake BitBox02 that speaks the device side of the real stack: U2F-HID framing, the HWW layer
//! with NOT_READY while "the user" acts, the Noise XX responder (with `snow`, an implementation
//! independent of the host's), pairing confirmation, and the backup requests as
//! `bitbox_api::pb` messages, answered as the firmware answers them (`hww.rs`, `hww/noise.rs`,
//! `hww/api.rs` `can_call`, `hww/api/backup.rs`, `hww/api/error.rs`).
//!
//! Its wire (framing, HWW and op bytes, the `'i'` answer) is its own, written from the
//! firmware's sources in `wire.rs`, not the host's `hid::bitbox02`: a byte the host gets wrong
//! fails against it instead of being shared by both sides.
//!
//! It is a [`Transport`] (reports in, reports out) for in-process tests; `bitbox02_server` serves
//! it over TCP the way the firmware simulator does, so the CLI tests run `coldkeep ...
//! --simulator 127.0.0.1:PORT` exactly as a user runs it against the simulator. What the device
//! holds and what "the user" does on it are a [`DeviceState`] the test sets and reads back.

mod wire;

use crate::hid::{HidError, Report, Transport};
use bitbox_api::pb;
use pb::request::Request;
use pb::response::Response;
use prost::Message;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wire::*;

/// A backup folder on the fake card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardBackup {
    /// Its id (the folder name).
    pub id: String,
    /// The wallet name stored in it.
    pub name: String,
    /// When it was made (Unix seconds).
    pub timestamp: u32,
    /// Whether its seed matches its id (a damaged copy fails the device's check).
    pub intact: bool,
}

/// What the fake device holds, and what its user will do.
#[derive(Debug, Clone)]
pub struct DeviceState {
    /// The device's Noise static private key (its identity).
    pub noise_private: Vec<u8>,
    /// Its public half.
    pub noise_public: Vec<u8>,
    /// Host keys that confirmed a pairing code (the device skips the code for them).
    pub paired_hosts: Vec<Vec<u8>>,
    /// Whether the user confirms the pairing code.
    pub accept_pairing: bool,
    /// The wallet seed; `None`: not set up.
    pub seed: Option<[u8; 32]>,
    /// Whether a backup was made (else only "seeded").
    pub initialized: bool,
    /// Whether the keystore is locked.
    pub locked: bool,
    /// Polls before the user has entered the password; `None`: nobody does.
    pub password_polls: Option<u32>,
    /// Polls before the user answers a confirmation.
    pub confirm_polls: u32,
    /// The user presses cancel at the next confirmation.
    pub abort_next: bool,
    /// The card; `None`: no card inserted.
    pub card: Option<Vec<CardBackup>>,
    /// Answer BUSY to this many new requests (another program holds the device).
    pub busy_next: u32,
    /// The device name (stored in new backups).
    pub name: String,
    /// The firmware version it reports.
    pub firmware: String,
    /// A hostile device: answers a backup check with this id, whatever the card holds.
    pub forged_check_id: Option<String>,
    /// A hostile device: its error answers carry this message instead of the firmware's.
    pub error_message: Option<String>,
    /// What it was asked, in order (`info`, `unlock`, `handshake`, `pairing`, request names).
    pub seen: Vec<String>,
}

impl DeviceState {
    /// A set-up, locked device (the password is "entered" after two polls), a new Noise key, no
    /// card, no pairing.
    pub fn new(seed: Option<[u8; 32]>) -> DeviceState {
        let keys = builder().generate_keypair().expect("keypair");
        DeviceState {
            noise_private: keys.private,
            noise_public: keys.public,
            paired_hosts: Vec::new(),
            accept_pairing: true,
            initialized: seed.is_some(),
            locked: seed.is_some(),
            seed,
            password_polls: Some(2),
            confirm_polls: 1,
            abort_next: false,
            card: None,
            busy_next: 0,
            name: "My BitBox".into(),
            firmware: "9.21.0".into(),
            forged_check_id: None,
            error_message: None,
            seen: Vec::new(),
        }
    }

    /// This wallet's backup id: HMAC-SHA256(key `backup`, seed) in hex (firmware `backup.rs`).
    pub fn backup_id(&self) -> Option<String> {
        let seed = self.seed?;
        crate::material::acra::hmac_sha256(b"backup", &[seed.as_slice()])
            .ok()
            .map(hex::encode)
    }

    /// A new Noise identity (a reset or replaced device).
    pub fn new_noise_key(&mut self) {
        let keys = builder().generate_keypair().expect("keypair");
        self.noise_private = keys.private;
        self.noise_public = keys.public;
    }
}

fn builder() -> snow::Builder<'static> {
    snow::Builder::new(
        "Noise_XX_25519_ChaChaPoly_SHA256"
            .parse()
            .expect("known Noise params"),
    )
}

enum NoiseState {
    Nothing,
    Handshaking(Box<snow::HandshakeState>),
    Ready {
        transport: Box<snow::TransportState>,
        verified: bool,
        host: Vec<u8>,
    },
}

/// What completes when a waiting request is done.
enum Effect {
    None,
    Unlock,
    Verified,
    Declined,
    Backup(CardBackup),
}

struct Pending {
    /// NOT_READY answers still to give; `None`: forever.
    polls: Option<u32>,
    answer: Vec<u8>,
    effect: Effect,
}

/// One connection to the fake device.
pub struct FakeBitBox02 {
    /// The device (shared with the test and across connections).
    pub state: Arc<Mutex<DeviceState>>,
    incoming: Incoming,
    out: VecDeque<Report>,
    noise: NoiseState,
    pending: Option<Pending>,
}

/// How an op answers: now, or after the user.
enum Answer {
    Now(Vec<u8>),
    Wait(Pending),
}

/// The device's prologue, written out here rather than taken from the host's code, so a host
/// that mixes in anything else fails against it (firmware `src/rust/bitbox-noise/src/noise_xx.rs`,
/// `State::init`).
const PROLOGUE: &[u8] = b"Noise_XX_25519_ChaChaPoly_SHA256";
const SUCCESS: u8 = OP_STATUS_SUCCESS;
const FAILURE: u8 = OP_STATUS_FAILURE;

impl FakeBitBox02 {
    /// A connection to the device in `state`.
    pub fn new(state: Arc<Mutex<DeviceState>>) -> FakeBitBox02 {
        FakeBitBox02 {
            state,
            incoming: Incoming::default(),
            out: VecDeque::new(),
            noise: NoiseState::Nothing,
            pending: None,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, DeviceState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn see(&self, what: &str) {
        self.state().seen.push(what.to_string());
    }

    /// The answer to one HWW message.
    fn on_message(&mut self, data: &[u8]) -> Vec<u8> {
        match data.split_first() {
            Some((&HWW_REQ_INFO, _)) => {
                self.see("info");
                let s = self.state();
                wire::info(&s.firmware, s.seed.is_some() && !s.locked, s.initialized)
            }
            Some((&HWW_REQ_NEW, op)) => {
                if self.pending.is_some() {
                    return vec![HWW_RSP_BUSY];
                }
                {
                    let mut s = self.state();
                    if s.busy_next > 0 {
                        s.busy_next -= 1;
                        return vec![HWW_RSP_BUSY];
                    }
                }
                match self.on_op(op) {
                    Answer::Now(a) => ack(a),
                    Answer::Wait(p) => {
                        self.pending = Some(p);
                        self.poll()
                    }
                }
            }
            Some((&HWW_REQ_RETRY, [])) => self.poll(),
            _ => vec![HWW_RSP_NACK],
        }
    }

    fn poll(&mut self) -> Vec<u8> {
        let Some(p) = self.pending.as_mut() else {
            return vec![HWW_RSP_NACK];
        };
        match p.polls {
            None => vec![HWW_RSP_NOT_READY],
            Some(n) if n > 0 => {
                p.polls = Some(n - 1);
                vec![HWW_RSP_NOT_READY]
            }
            Some(_) => {
                let p = self.pending.take().expect("checked");
                match p.effect {
                    Effect::None => {}
                    Effect::Unlock => self.state().locked = false,
                    Effect::Verified => {
                        if let NoiseState::Ready { verified, host, .. } = &mut self.noise {
                            *verified = true;
                            let host = host.clone();
                            self.state
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .paired_hosts
                                .push(host);
                        }
                    }
                    Effect::Declined => self.noise = NoiseState::Nothing,
                    Effect::Backup(b) => {
                        let mut s = self.state();
                        s.initialized = true;
                        if let Some(card) = s.card.as_mut() {
                            card.retain(|c| c.id != b.id);
                            card.push(b);
                        }
                    }
                }
                ack(p.answer)
            }
        }
    }

    /// The ops of `hww.rs` and `hww/noise.rs`.
    fn on_op(&mut self, op: &[u8]) -> Answer {
        match op.split_first() {
            Some((&OP_UNLOCK, [])) => {
                self.see("unlock");
                let s = self.state();
                if s.seed.is_none() || !s.initialized {
                    return Answer::Now(vec![OP_STATUS_FAILURE_UNINITIALIZED]);
                }
                if !s.locked {
                    return Answer::Now(vec![SUCCESS]);
                }
                Answer::Wait(Pending {
                    polls: s.password_polls,
                    answer: vec![SUCCESS],
                    effect: Effect::Unlock,
                })
            }
            Some((&OP_HANDSHAKE_START, [])) => {
                self.see("handshake");
                let key = self.state().noise_private.clone();
                let hs = builder()
                    .local_private_key(&key)
                    .and_then(|b| b.prologue(PROLOGUE))
                    .and_then(|b| b.build_responder());
                match hs {
                    Ok(hs) => {
                        self.noise = NoiseState::Handshaking(Box::new(hs));
                        Answer::Now(vec![SUCCESS])
                    }
                    Err(_) => Answer::Now(vec![FAILURE]),
                }
            }
            Some((&OP_HANDSHAKE, msg)) => Answer::Now(self.handshake(msg)),
            Some((&OP_PAIRING_VERIFY, [])) => {
                self.see("pairing");
                if !matches!(self.noise, NoiseState::Ready { .. }) {
                    return Answer::Now(vec![FAILURE]);
                }
                let mut s = self.state();
                let accept = s.accept_pairing && !std::mem::take(&mut s.abort_next);
                Answer::Wait(Pending {
                    polls: Some(s.confirm_polls),
                    answer: vec![if accept { SUCCESS } else { FAILURE }],
                    effect: if accept {
                        Effect::Verified
                    } else {
                        Effect::Declined
                    },
                })
            }
            Some((&OP_NOISE_MSG, encrypted)) => self.noise_message(encrypted),
            _ => Answer::Now(vec![FAILURE]),
        }
    }

    fn handshake(&mut self, msg: &[u8]) -> Vec<u8> {
        let NoiseState::Handshaking(hs) = &mut self.noise else {
            return vec![FAILURE];
        };
        let mut buf = vec![0u8; 1024];
        if hs.read_message(msg, &mut buf).is_err() {
            self.noise = NoiseState::Nothing;
            return vec![FAILURE];
        }
        if !hs.is_handshake_finished() {
            let Ok(n) = hs.write_message(&[], &mut buf) else {
                self.noise = NoiseState::Nothing;
                return vec![FAILURE];
            };
            let mut out = vec![SUCCESS];
            out.extend_from_slice(&buf[..n]);
            return out;
        }
        let host = hs.get_remote_static().map(<[u8]>::to_vec).unwrap_or_default();
        let NoiseState::Handshaking(hs) = std::mem::replace(&mut self.noise, NoiseState::Nothing) else {
            unreachable!("matched above");
        };
        let Ok(transport) = hs.into_transport_mode() else {
            return vec![FAILURE];
        };
        let verified = self.state().paired_hosts.contains(&host);
        self.noise = NoiseState::Ready {
            transport: Box::new(transport),
            verified,
            host,
        };
        vec![SUCCESS, u8::from(!verified)]
    }

    fn noise_message(&mut self, encrypted: &[u8]) -> Answer {
        let NoiseState::Ready {
            transport,
            verified: true,
            ..
        } = &mut self.noise
        else {
            self.see("refused: no verified session");
            return Answer::Now(vec![FAILURE]);
        };
        let mut plain = vec![0u8; encrypted.len()];
        let Ok(n) = transport.read_message(encrypted, &mut plain) else {
            return Answer::Now(vec![FAILURE]);
        };
        let (mut response, wait) = match pb::Request::decode(&plain[..n]) {
            Ok(pb::Request { request: Some(r) }) => self.request(r),
            _ => (error(101), None),
        };
        if let (Response::Error(e), Some(forged)) = (&mut response, &self.state().error_message) {
            e.message = forged.clone();
        }
        let body = pb::Response {
            response: Some(response),
        }
        .encode_to_vec();
        let NoiseState::Ready { transport, .. } = &mut self.noise else {
            unreachable!("matched above");
        };
        let mut out = vec![0u8; body.len() + 17];
        out[0] = SUCCESS;
        let Ok(n) = transport.write_message(&body, &mut out[1..]) else {
            return Answer::Now(vec![FAILURE]);
        };
        out.truncate(n + 1);
        match wait {
            None => Answer::Now(out),
            Some((polls, effect)) => Answer::Wait(Pending {
                polls: Some(polls),
                answer: out,
                effect,
            }),
        }
    }

    /// One protobuf request, as `hww/api.rs` and `hww/api/backup.rs` answer it; with the polls
    /// and effect when the user has to confirm first.
    fn request(&mut self, r: Request) -> (Response, Option<(u32, Effect)>) {
        let mut s = self.state();
        let uninitialized = s.seed.is_none();
        let unlocked_initialized = s.initialized && !s.locked && !uninitialized;
        let seeded = !uninitialized && !s.initialized;
        match r {
            Request::CheckSdcard(_) => {
                s.seen.push("check_sdcard".into());
                if s.initialized && s.locked {
                    return (error(105), None);
                }
                (
                    Response::CheckSdcard(pb::CheckSdCardResponse {
                        inserted: s.card.is_some(),
                    }),
                    None,
                )
            }
            Request::ListBackups(_) => {
                s.seen.push("list_backups".into());
                if s.initialized && s.locked {
                    return (error(105), None);
                }
                let Some(card) = &s.card else {
                    return (error(103), None);
                };
                let info = card
                    .iter()
                    .map(|c| pb::BackupInfo {
                        id: c.id.clone(),
                        timestamp: c.timestamp,
                        name: c.name.clone(),
                    })
                    .collect();
                (Response::ListBackups(pb::ListBackupsResponse { info }), None)
            }
            Request::CheckBackup(pb::CheckBackupRequest { silent }) => {
                s.seen.push(format!("check_backup silent={silent}"));
                if !unlocked_initialized {
                    return (error(105), None);
                }
                let Some(card) = &s.card else {
                    return (error(101), None);
                };
                if let Some(id) = s.forged_check_id.clone() {
                    return (Response::CheckBackup(pb::CheckBackupResponse { id }), None);
                }
                let id = s.backup_id().unwrap_or_default();
                if !card.iter().any(|c| c.id == id && c.intact) {
                    return (error(103), None);
                }
                let found = Response::CheckBackup(pb::CheckBackupResponse { id });
                if silent {
                    return (found, None);
                }
                let polls = s.confirm_polls;
                if std::mem::take(&mut s.abort_next) {
                    return (error(104), Some((polls, Effect::None)));
                }
                (found, Some((polls, Effect::None)))
            }
            Request::CreateBackup(pb::CreateBackupRequest { timestamp, .. }) => {
                s.seen.push(format!("create_backup {timestamp}"));
                if !(seeded || unlocked_initialized) {
                    return (error(105), None);
                }
                let polls = s.confirm_polls;
                // Cancelled at "Is today?", or at the prompt to insert a missing card.
                if std::mem::take(&mut s.abort_next) || s.card.is_none() {
                    return (error(104), Some((polls, Effect::None)));
                }
                let backup = CardBackup {
                    id: s.backup_id().unwrap_or_default(),
                    name: s.name.clone(),
                    timestamp,
                    intact: true,
                };
                (
                    Response::Success(pb::Success {}),
                    Some((polls, Effect::Backup(backup))),
                )
            }
            other => {
                s.seen.push(format!("unsupported {other:?}"));
                (error(101), None)
            }
        }
    }
}

fn ack(mut answer: Vec<u8>) -> Vec<u8> {
    answer.insert(0, HWW_RSP_ACK);
    answer
}

/// The firmware's error answer with its own message (`hww/api/error.rs`, `make_error`).
fn error(code: i32) -> Response {
    let message = match code {
        101 => "invalid input",
        103 => "generic error",
        104 => "aborted by the user",
        105 => "can't call this endpoint: wrong state",
        _ => "unknown",
    };
    Response::Error(pb::Error {
        code,
        message: message.into(),
    })
}

impl Transport for FakeBitBox02 {
    fn write(&mut self, report: &Report) -> Result<(), HidError> {
        let (cmd, data) = match self.incoming.push(report) {
            Ok(Some(m)) => m,
            Ok(None) => return Ok(()),
            Err(e) => return Err(HidError::Io(format!("fake BitBox02: {e}"))),
        };
        let reports = if cmd == HWW_CMD {
            let answer = self.on_message(&data);
            frames(HWW_CMD, &answer)
        } else {
            frames(FRAME_ERROR, &[ERR_INVALID_CMD])
        };
        self.out.extend(reports);
        Ok(())
    }

    fn read(&mut self, _timeout: Duration) -> Result<Option<Report>, HidError> {
        Ok(self.out.pop_front())
    }
}
