// Makes Acra keystore fixtures with the reference Themis (wasm-themis, Themis compiled to
// WebAssembly), so coldkeep's Secure Cell code is checked against keys it did not seal itself.
//
// Usage: node --no-experimental-fetch acra_fixtures.js '<json spec>'
//   v1: {"version":1, "dir": "<keys dir>", "clients": ["Alice"], "wrong_context": ["Alice_hmac"]}
//       writes a v1 keys directory (Themis EC key pairs, symmetric, HMAC, audit-log and poison keys,
//       rotated `*.old/` history) sealed under a fresh random master key with Acra's contexts
//       (keystore/filesystem/server_keystore.go); prints {"master_key": "<ACRA_MASTER_KEY>"}.
//   v2: {"version":2, "clients": ["Alice"], "wrong_context": ["client/Alice/hmac-sym"]}
//       seals the keys of every key ring with the v2 contexts
//       `AKSv2 keystore: key ring <path>: private key <seqnum>` / `symmetric key <seqnum>`
//       (keystore/v2/keystore/filesystem/key.go, keyRing.go, keyStore.go) and prints
//       {"master_key", "signature_key", "rings": [{"path", "keys": [{"seqnum", "format",
//       "public"?, "private"?, "symmetric"?}]}]}, base64 values; the Rust test support packs
//       them into signed DER key rings.
// Names listed in `wrong_context` are sealed with a context Acra would not use.
'use strict';
const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const themis = require('wasm-themis');

const HISTORY = '2020-05-21T16:01:58.656663';

function write(dir, rel, data, mode) {
  const file = path.join(dir, rel);
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  fs.writeFileSync(file, data, { mode });
  fs.chmodSync(file, mode);
}

function v1(spec) {
  const master = crypto.randomBytes(32);
  const cell = themis.SecureCellSeal.withKey(master);
  const wrong = new Set(spec.wrong_context || []);
  const dir = spec.dir;
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  fs.chmodSync(dir, 0o700);
  const seal = (name, data, context) =>
    Buffer.from(cell.encrypt(data, Buffer.from(wrong.has(name) ? `not ${context}` : context)));
  const keyPair = (name, context) => {
    const pair = new themis.KeyPair();
    write(dir, name, seal(name, pair.privateKey, context), 0o600);
    write(dir, `${name}.pub`, Buffer.from(pair.publicKey), 0o644);
  };
  const symmetric = (name, context) => write(dir, name, seal(name, crypto.randomBytes(32), context), 0o600);
  for (const id of spec.clients) {
    // A rotated storage key pair: the old files move into `<name>.old/<timestamp>` and keep the
    // context they were sealed with (WriteKeyFile, backupHistoricalKeyFile).
    keyPair(`${id}_storage`, id);
    fs.mkdirSync(path.join(dir, `${id}_storage.old`), { mode: 0o700 });
    fs.mkdirSync(path.join(dir, `${id}_storage.pub.old`), { mode: 0o700 });
    fs.renameSync(path.join(dir, `${id}_storage`), path.join(dir, `${id}_storage.old`, HISTORY));
    fs.renameSync(path.join(dir, `${id}_storage.pub`), path.join(dir, `${id}_storage.pub.old`, HISTORY));
    keyPair(`${id}_storage`, id);
    symmetric(`${id}_storage_sym`, id);
    symmetric(`${id}_hmac`, id);
  }
  symmetric('secure_log_key', 'secure_log_key');
  keyPair('.poison_key/poison_key', '.poison_key/poison_key');
  symmetric('.poison_key/poison_key_sym.old/' + HISTORY, '.poison_key/poison_key_sym');
  symmetric('.poison_key/poison_key_sym', '.poison_key/poison_key_sym');
  return { master_key: master.toString('base64') };
}

function v2(spec) {
  const encryption = crypto.randomBytes(32);
  const signature = crypto.randomBytes(32);
  const json = JSON.stringify({ encryption: encryption.toString('base64'), signature: signature.toString('base64') });
  const cell = themis.SecureCellSeal.withKey(encryption);
  const wrong = new Set(spec.wrong_context || []);
  const b64 = (x) => Buffer.from(x).toString('base64');
  const seal = (ring, what, seqnum, data) => {
    let context = `AKSv2 keystore: key ring ${ring}: ${what} ${seqnum}`;
    if (wrong.has(ring)) context = `AKSv2 keystore: key ring ${ring}: ${what} ${seqnum + 1}`;
    return b64(cell.encrypt(data, Buffer.from(context)));
  };
  const pairRing = (ring, count) => ({
    path: ring,
    keys: Array.from({ length: count }, (_, seqnum) => {
      const pair = new themis.KeyPair();
      return { seqnum, format: 1, public: b64(pair.publicKey), private: seal(ring, 'private key', seqnum, pair.privateKey) };
    }),
  });
  const symRing = (ring) => ({
    path: ring,
    keys: [{ seqnum: 0, format: 3, symmetric: seal(ring, 'symmetric key', 0, crypto.randomBytes(32)) }],
  });
  const rings = [symRing('audit-log'), pairRing('poison-record', 1), symRing('poison-record-sym')];
  for (const id of spec.clients) {
    rings.push(pairRing(`client/${id}/storage`, 2), symRing(`client/${id}/storage-sym`), symRing(`client/${id}/hmac-sym`));
  }
  return { master_key: Buffer.from(json).toString('base64'), signature_key: signature.toString('base64'), rings };
}

themis.initialized.then(() => {
  const spec = JSON.parse(process.argv[2]);
  const out = spec.version === 2 ? v2(spec) : v1(spec);
  process.stdout.write(JSON.stringify(out));
});
