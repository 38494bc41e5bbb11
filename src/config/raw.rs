//! The config as written: serde structs with source spans, before validation.

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_saphyr::Spanned;
use std::fmt;
use std::time::Duration;

/// A value with its position in the file.
pub(super) type S<T> = Spanned<T>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub store: S<RawStore>,
    pub encryption: S<RawEncryption>,
    #[serde(default)]
    pub ssh: Option<RawSsh>,
    pub jobs: Option<S<usize>>,
    pub schedule: Option<S<String>>,
    #[serde(default)]
    pub label_schedules: std::collections::BTreeMap<String, S<String>>,
    pub timezone: Option<S<String>>,
    pub retention: Option<S<RawRetention>>,
    pub retries: Option<S<u32>>,
    pub retry_wait: Option<S<RawDuration>>,
    pub metrics_file: Option<S<String>>,
    pub hooks: Option<S<RawHooks>>,
    pub verify_schedule: Option<S<String>>,
    pub verify_identity: Option<S<String>>,
    /// Required whenever there is a store (always): see [`RawSigning`].
    pub signing: Option<S<RawSigning>>,
    /// May be empty or absent (a store for hardware keys only).
    #[serde(default)]
    pub nodes: Option<Vec<RawNode>>,
    /// Hardware keys whose checks `status` watches.
    #[serde(default)]
    pub hardware: Vec<RawHardware>,
}

/// One entry of `hardware:`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHardware {
    pub name: S<String>,
    pub model: S<String>,
    pub check_every: Option<S<RawDuration>>,
}

/// `retention:` (top level, or per keystore).
#[derive(Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetention {
    pub keep_last: Option<u32>,
    pub keep_hourly: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    pub keep_yearly: Option<u32>,
    pub keep_pre_restore: Option<u32>,
}

/// `hooks:`: commands run around each backup run, node and keystore.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHooks {
    #[serde(default)]
    pub before: Vec<S<String>>,
    #[serde(default)]
    pub before_node: Vec<S<String>>,
    #[serde(default)]
    pub on_start: Vec<S<String>>,
    #[serde(default)]
    pub on_run_success: Vec<S<String>>,
    #[serde(default)]
    pub on_run_failure: Vec<S<String>>,
    #[serde(default)]
    pub on_success: Vec<S<String>>,
    #[serde(default)]
    pub on_failure: Vec<S<String>>,
    pub timeout: Option<S<RawDuration>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    pub path: S<String>,
    #[serde(default)]
    pub replicas: Vec<S<String>>,
    pub master_key_store: Option<S<String>>,
    #[serde(default)]
    pub master_key_replicas: Vec<S<String>>,
}

/// `signing:`: the key that signs every artifact, and the keys trusted on read.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSigning {
    pub key: S<String>,
    pub passphrase: Option<S<RawSecret>>,
    pub allowed_signers: S<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEncryption {
    #[serde(default)]
    pub recipients: Vec<S<String>>,
    pub recipients_file: Option<S<String>>,
    #[serde(default)]
    pub master_key_recipients: Vec<S<String>>,
}

/// Connection settings: in `ssh:` (defaults) and on each node (overrides).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSsh {
    pub user: Option<S<String>>,
    pub identity: Option<S<String>>,
    pub identity_passphrase: Option<S<RawSecret>>,
    pub known_hosts: Option<S<String>>,
    pub host_key_policy: Option<S<String>>,
    pub connect_timeout: Option<S<RawDuration>>,
    pub io_timeout: Option<S<RawDuration>>,
    pub file_transfer: Option<S<String>>,
    #[serde(rename = "become")]
    pub become_: Option<S<String>>,
    pub become_user: Option<S<String>>,
    pub node_helper: Option<S<String>>,
    pub node_policy: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNode {
    pub name: S<String>,
    pub host: S<String>,
    pub port: Option<S<u16>>,
    pub host_key: Option<S<String>>,
    #[serde(default)]
    pub labels: Vec<S<String>>,
    pub keystores: Option<S<Vec<RawKeystore>>>,
    pub schedule: Option<S<String>>,
    pub user: Option<S<String>>,
    pub identity: Option<S<String>>,
    pub identity_passphrase: Option<S<RawSecret>>,
    pub known_hosts: Option<S<String>>,
    pub host_key_policy: Option<S<String>>,
    pub connect_timeout: Option<S<RawDuration>>,
    pub io_timeout: Option<S<RawDuration>>,
    pub file_transfer: Option<S<String>>,
    #[serde(rename = "become")]
    pub become_: Option<S<String>>,
    pub become_user: Option<S<String>>,
    pub node_helper: Option<S<String>>,
    pub node_policy: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKeystore {
    pub name: S<String>,
    pub kind: S<String>,
    pub path: S<String>,
    pub password: Option<S<RawSecret>>,
    pub nodectl_config: Option<S<String>>,
    pub max_size: Option<S<u64>>,
    pub public_path: Option<S<String>>,
    pub version: Option<S<u8>>,
    pub max_files: Option<S<u64>>,
    pub master_key: Option<S<RawSecret>>,
    pub retention: Option<S<RawRetention>>,
}

/// What parsing a secret may say; none quotes anything from the file (config errors on a
/// secret's lines keep only these, see `validate::yaml_error`).
pub(super) const SECRET_MESSAGES: [&str; 3] = [
    "a secret takes exactly one of `env` or `file`",
    "a secret's source must be `env` or `file` (the key written is not shown)",
    "a secret needs `env: NAME` or `file: PATH`",
];

/// A secret reference, or an inline value (which validation rejects without echoing it).
pub(super) enum RawSecret {
    Inline,
    Env(String),
    File(String),
}

impl<'de> Deserialize<'de> for RawSecret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawSecret;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("{env: NAME} or {file: PATH}")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<RawSecret, E> {
                Ok(RawSecret::Inline)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<RawSecret, E> {
                Ok(RawSecret::Inline)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<RawSecret, E> {
                Ok(RawSecret::Inline)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<RawSecret, E> {
                Ok(RawSecret::Inline)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<RawSecret, E> {
                Ok(RawSecret::Inline)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawSecret, A::Error> {
                let mut found = None;
                // Keys are wiped: a secret pasted as a mapping key (`password: {hunter2}`) is
                // still a secret, and is never quoted in an error.
                while let Some(key) = map.next_key::<String>()? {
                    let key = zeroize::Zeroizing::new(key);
                    if !matches!(key.as_str(), "env" | "file") {
                        return Err(de::Error::custom(SECRET_MESSAGES[1]));
                    }
                    let value: String = map.next_value()?;
                    if found.is_some() {
                        return Err(de::Error::custom(SECRET_MESSAGES[0]));
                    }
                    found = Some(match key.as_str() {
                        "env" => RawSecret::Env(value),
                        _ => RawSecret::File(value),
                    });
                }
                found.ok_or_else(|| de::Error::custom(SECRET_MESSAGES[2]))
            }
        }
        d.deserialize_any(V)
    }
}

/// A duration: `10s`, `500ms`, `2m`, `1h`, `30d`, or a plain number of seconds.
pub(super) struct RawDuration(pub Duration);

impl<'de> Deserialize<'de> for RawDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration like 10s, 500ms, 2m, 1h or 30d")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawDuration, E> {
                Ok(RawDuration(Duration::from_secs(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawDuration, E> {
                u64::try_from(v)
                    .map(|v| RawDuration(Duration::from_secs(v)))
                    .map_err(|_| E::custom("a duration cannot be negative"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawDuration, E> {
                parse_duration(v).map(RawDuration).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses `10s`, `500ms`, `2m`, `1h`, `30d` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let bad = || format!("`{text}` is not a duration (expected e.g. 10s, 500ms, 2m, 1h, 30d)");
    let n: u64 = number.parse().map_err(|_| bad())?;
    let ms = match unit.trim() {
        "ms" => n,
        "" | "s" => n.saturating_mul(1000),
        "m" => n.saturating_mul(60_000),
        "h" => n.saturating_mul(3_600_000),
        "d" => n.saturating_mul(86_400_000),
        _ => return Err(bad()),
    };
    Ok(Duration::from_millis(ms))
}
