//! `hardware:`: the hardware keys whose backup checks `status` watches.
//!
//! ```yaml
//! hardware:
//!   - name: treasury        # the name used with --name (store, pairing, check records)
//!     model: bitbox02       # or onlykey
//!     check_every: 30d      # status flags it when its last check is older
//! ```

use super::Config;
use super::raw::RawHardware;
use super::validate::Validator;
use std::collections::HashMap;
use std::time::Duration;

/// One hardware key `status` watches (`hardware:`): its backups' checks, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HardwareConfig {
    /// The name it has in the store, the pairing file and its check records.
    pub name: String,
    /// `bitbox02` or `onlykey`.
    pub model: HardwareModel,
    /// `status` flags it when its last check is older (default: `status --max-age`).
    pub check_every: Option<Duration>,
}

/// A hardware key model whose backups coldkeep checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HardwareModel {
    /// BitBox02: its microSD backup, checked by the device (`bitbox02 backups check`).
    Bitbox02,
    /// OnlyKey: its stored backup text, decrypted offline (`onlykey verify --name`).
    Onlykey,
}

impl HardwareModel {
    /// The config and record spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            HardwareModel::Bitbox02 => "bitbox02",
            HardwareModel::Onlykey => "onlykey",
        }
    }

    /// How people write it.
    pub fn display(self) -> &'static str {
        match self {
            HardwareModel::Bitbox02 => "BitBox02",
            HardwareModel::Onlykey => "OnlyKey",
        }
    }
}

impl Config {
    /// The `hardware:` entry with this name.
    pub fn hardware_key(&self, name: &str) -> Option<&HardwareConfig> {
        self.hardware.iter().find(|h| h.name == name)
    }
}

impl Validator<'_> {
    /// Validates `hardware:`: names as for nodes, unique; a known model; a non-zero period.
    pub(super) fn hardware(&self, raw: &[RawHardware]) -> Result<Vec<HardwareConfig>, super::ConfigError> {
        let mut seen: HashMap<String, u64> = HashMap::new();
        let mut out = Vec::new();
        for h in raw {
            self.name(&h.name, "hardware key")?;
            if let Some(first) = seen.insert(h.name.value.clone(), h.name.referenced.line()) {
                return Err(self.err(
                    &h.name.referenced,
                    format!(
                        "duplicate hardware key `{}` (first at line {first})",
                        h.name.value
                    ),
                ));
            }
            let model = match h.model.value.as_str() {
                "bitbox02" => HardwareModel::Bitbox02,
                "onlykey" => HardwareModel::Onlykey,
                other => {
                    return Err(self.err(
                        &h.model.referenced,
                        format!("unknown hardware model `{other}`: expected `bitbox02` or `onlykey`"),
                    ));
                }
            };
            let check_every = match &h.check_every {
                Some(d) if d.value.0.is_zero() => {
                    return Err(self.err(&d.referenced, "`check_every` must be longer than 0"));
                }
                Some(d) => Some(d.value.0),
                None => None,
            };
            out.push(HardwareConfig {
                name: h.name.value.clone(),
                model,
                check_every,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, HardwareModel};
    use std::path::Path;
    use std::time::Duration;

    const BASE: &str = "store: {path: /s}\nencryption: {recipients: [age1kec32r8z4pruze28j7mdjs983kkm7f027zdv8c5mvggemyl785vsgpd7uj]}\nsigning: {key: /k/signing_key, allowed_signers: /k/allowed}\n";

    #[test]
    fn hardware_keys_parse_and_bad_ones_are_located() {
        let c = Config::parse(
            &format!(
                "{BASE}hardware:\n  - {{name: treasury, model: bitbox02, check_every: 30d}}\n  - {{name: ok1, model: onlykey}}\n"
            ),
            Path::new("c.yaml"),
        )
        .unwrap();
        assert_eq!(c.hardware.len(), 2);
        assert_eq!(c.hardware[0].model, HardwareModel::Bitbox02);
        assert_eq!(c.hardware[0].check_every, Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(c.hardware_key("ok1").unwrap().check_every, None);

        for (yaml, want) in [
            ("  - {name: a, model: trezor}\n", "c.yaml:5:"),
            (
                "  - {name: a, model: onlykey}\n  - {name: a, model: bitbox02}\n",
                "duplicate hardware key `a`",
            ),
            ("  - {name: ../a, model: onlykey}\n", "invalid hardware key name"),
            (
                "  - {name: a, model: onlykey, check_every: 0s}\n",
                "longer than 0",
            ),
            ("  - {name: a, model: onlykey, every: 1d}\n", "every"),
        ] {
            let e = Config::parse(&format!("{BASE}hardware:\n{yaml}"), Path::new("c.yaml"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{want}: {e}");
        }
    }
}
