//! Hardware keys beside node keys in `status` and the metrics: when was each one's backup last
//! checked (a BitBox02 by the device, an OnlyKey by decrypting its stored backup offline), what
//! was found, and whether that is recent enough (`check_every` in `hardware:`, else
//! `status --max-age`). Checks are recorded by `run_state::record_device_check`.

use crate::config::{Config, HardwareModel};
use crate::store::{CheckResult, DeviceCheck, Store};
use crate::text::escape_control;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// The record of an offline `onlykey verify` of a stored backup: it opens (`detail` `None`), or
/// why not.
pub fn onlykey_check(name: &str, artifact: &str, detail: Option<String>) -> DeviceCheck {
    let result = if detail.is_none() {
        CheckResult::Opens
    } else {
        CheckResult::DoesNotOpen
    };
    let mut c = DeviceCheck::new(
        name,
        HardwareModel::Onlykey.as_str(),
        format!("artifact {artifact}"),
        result,
    );
    c.backup_id = Some(artifact.to_string());
    c.detail = detail;
    c
}

/// A device key that changed under one name without the operator declaring a new device
/// (`--new-device`): another device's answers recorded as this one's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyChange {
    /// The key before.
    pub was: String,
    /// The key now.
    pub now: String,
    /// The first check under the key now.
    pub since: DateTime<Utc>,
}

/// Of one device's records, oldest first: an undeclared change to its newest key. A record made
/// with `--new-device` accepts the key it was made with.
pub fn key_change<'a>(records: impl IntoIterator<Item = &'a DeviceCheck>) -> Option<KeyChange> {
    let mut current: Option<&str> = None;
    let mut change = None;
    for c in records {
        let Some(key) = c.device_key.as_deref() else {
            continue;
        };
        if c.new_device {
            change = None;
        } else if let Some(was) = current
            && was != key
        {
            change = Some(KeyChange {
                was: was.into(),
                now: key.into(),
                since: c.checked_at,
            });
        }
        current = Some(key);
    }
    change
}

/// One hardware key's checks, for `status`.
#[derive(Debug, Clone, Serialize)]
pub struct HardwareStatus {
    /// Its name.
    pub name: String,
    /// `bitbox02` or `onlykey`.
    pub model: String,
    /// The newest trusted check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_check: Option<DeviceCheck>,
    /// Its age.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_seconds: Option<i64>,
    /// The newest check that found the backup intact.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_ok: Option<DateTime<Utc>>,
    /// The period it must be checked in (`check_every`, else `--max-age`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check_every_seconds: Option<u64>,
    /// Whether it is configured under `hardware:`.
    pub configured: bool,
    /// Its device key changed without `--new-device`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_change: Option<KeyChange>,
    /// Why not fine (empty: fine).
    pub problems: Vec<String>,
}

impl HardwareStatus {
    /// `BitBox02 'treasury': backup checked 3 days ago` (and what was found).
    pub fn line(&self) -> String {
        let model = model_name(&self.model);
        let Some(c) = &self.last_check else {
            return format!("{model} '{}': backup never checked", self.name);
        };
        let verb = if self.model == HardwareModel::Onlykey.as_str() {
            "verified"
        } else {
            "checked"
        };
        let ago = self.age_seconds.map(ago).unwrap_or_default();
        let what = match c.result {
            CheckResult::Found => format!(
                "on the card: {}",
                describe(c.backup_id.as_deref(), c.backup_name.as_deref(), c.backup_created)
            ),
            CheckResult::Opens => format!(
                "opens: artifact {}",
                escape_control(c.backup_id.as_deref().unwrap_or("?"))
            ),
            CheckResult::NotFound => "NOT on the card".into(),
            CheckResult::NoCard => "NO CARD in the device".into(),
            CheckResult::DoesNotOpen => "DOES NOT OPEN".into(),
        };
        format!(
            "{} '{}': backup {verb} {ago} ({what})",
            escape_control(model),
            self.name
        )
    }
}

fn model_name(model: &str) -> &str {
    match model {
        "bitbox02" => HardwareModel::Bitbox02.display(),
        "onlykey" => HardwareModel::Onlykey.display(),
        other => other,
    }
}

/// `577782fd… "My BitBox", 2020-09-28`.
pub fn describe(id: Option<&str>, name: Option<&str>, created: Option<DateTime<Utc>>) -> String {
    // By characters: a record is signed, but what it holds came from a device or a card.
    let mut out = id
        .map(|i| format!("{}…", escape_control(&i.chars().take(8).collect::<String>())))
        .unwrap_or_default();
    if let Some(n) = name {
        let _ = write!(out, " {n:?}");
    }
    if let Some(t) = created {
        let _ = write!(out, ", {}", t.format("%Y-%m-%d"));
    }
    out
}

/// `3 days ago`, `5 hours ago`, `just now`.
pub fn ago(seconds: i64) -> String {
    let (n, unit) = match seconds {
        s if s < 60 => return "just now".into(),
        s if s < 3600 => (s / 60, "minute"),
        s if s < 172_800 => (s / 3600, "hour"),
        s => (s / 86_400, "day"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

/// Every hardware key that is configured or has a check record, with its problems at `now`,
/// and how many record files are not trusted.
pub fn statuses(
    config: &Config,
    max_age: Option<Duration>,
    now: DateTime<Utc>,
) -> anyhow::Result<(Vec<HardwareStatus>, usize)> {
    let checks = Store::new(&config.store).device_checks();
    let mut newest: BTreeMap<&str, &DeviceCheck> = BTreeMap::new();
    let mut newest_ok: BTreeMap<&str, DateTime<Utc>> = BTreeMap::new();
    // Oldest first: later ones replace earlier ones.
    for c in &checks.trusted {
        newest.insert(&c.device, c);
        if c.result.ok() {
            newest_ok.insert(&c.device, c.checked_at);
        }
    }
    // Untrusted record files (and links) by the device directory they lie in.
    let mut planted: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for u in &checks.untrusted {
        // A directory name a store writer chose is shown quoted unless it is a valid name.
        let device = if super::hardware::check_name(&u.device).is_ok() {
            u.device.clone()
        } else {
            format!("{:?}", u.device)
        };
        planted.entry(device).or_default().push(&u.why);
    }
    let mut names: Vec<(String, Option<String>)> = config
        .hardware
        .iter()
        .map(|h| (h.name.clone(), Some(h.model.as_str().to_string())))
        .collect();
    for name in newest.keys().copied().chain(planted.keys().map(String::as_str)) {
        if !names.iter().any(|(n, _)| n == name) {
            names.push((name.to_string(), None));
        }
    }
    let mut out = Vec::new();
    for (name, configured_model) in names {
        let configured = config.hardware_key(&name);
        let last = newest.get(name.as_str()).map(|c| (*c).clone());
        let model = configured_model
            .or_else(|| last.as_ref().map(|c| c.model.clone()))
            .unwrap_or_default();
        let every = configured.and_then(|h| h.check_every).or(max_age);
        let age = last.as_ref().map(|c| (now - c.checked_at).num_seconds());
        let mut problems = Vec::new();
        match &last {
            None => problems.push(format!(
                "never checked ({})",
                if model == HardwareModel::Onlykey.as_str() {
                    format!("`coldkeep onlykey verify --name {name} ...`")
                } else {
                    format!("`coldkeep bitbox02 backups check --name {name}`")
                }
            )),
            Some(c) if !c.result.ok() => problems.push(format!(
                "the last check ({}) found: {}",
                c.checked_at.format("%Y-%m-%d %H:%M:%S"),
                match c.result {
                    CheckResult::NotFound => "no backup of this wallet on the card".to_string(),
                    CheckResult::NoCard => "no card in the device".to_string(),
                    _ => format!(
                        "the backup does not open{}",
                        c.detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default()
                    ),
                }
            )),
            Some(_) => {}
        }
        if let (Some(every), Some(age)) = (every, age)
            && age > every.as_secs() as i64
        {
            problems.push(format!(
                "last checked {} (must be checked every {})",
                crate::ops::hardware_checks::ago(age),
                period(every)
            ));
        }
        if let Some(first) = checks.unreadable.first() {
            problems.push(format!(
                "some check records could not be read, so a check may be missing: {first}"
            ));
        }
        if let Some(why) = planted.get(&name) {
            problems.push(format!(
                "{} check record(s) in the store without a valid signature, never believed (planted \
                 or edited?): {}",
                why.len(),
                why[0]
            ));
        }
        let key_change = key_change(checks.trusted.iter().filter(|c| c.device == name));
        if let Some(k) = &key_change {
            problems.push(format!(
                "device key changed since {} (was {}, now {}): another device is answering as \
                 '{name}', or it was reset or replaced; if that was you, run `coldkeep bitbox02 \
                 backups check --name {name} --new-device`",
                k.since.format("%Y-%m-%d %H:%M:%S"),
                k.was,
                k.now
            ));
        }
        if let Some(c) = &last
            && !model.is_empty()
            && c.model != model
        {
            problems.push(format!(
                "its last check is of a {} but it is configured as {model}",
                c.model
            ));
        }
        // What a record or a store path says reaches the terminal: no escapes, no forged lines.
        let problems = problems.iter().map(|p| escape_control(p)).collect();
        out.push(HardwareStatus {
            name: escape_control(&name),
            model,
            age_seconds: age,
            last_ok: newest_ok.get(name.as_str()).copied(),
            last_check: last,
            check_every_seconds: every.map(|d| d.as_secs()),
            configured: configured.is_some(),
            key_change,
            problems,
        });
    }
    Ok((out, checks.untrusted.len()))
}

/// A Prometheus label value: backslash, quote and newline escaped (the exposition format's
/// three), other control characters dropped.
fn label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

fn period(d: Duration) -> String {
    let s = d.as_secs();
    if s.is_multiple_of(86_400) {
        format!("{}d", s / 86_400)
    } else if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else {
        format!("{}m", s.div_ceil(60))
    }
}

/// The hardware families of the metrics file: last check time and result per hardware key, and
/// the record files not trusted.
pub fn metrics_text(config: &Config) -> anyhow::Result<String> {
    let (statuses, untrusted) = statuses(config, None, Utc::now())?;
    let mut out = String::new();
    let label = |s: &HardwareStatus| {
        format!(
            "device=\"{}\",model=\"{}\"",
            label_value(&s.name),
            label_value(&s.model)
        )
    };
    let _ = writeln!(
        out,
        "# HELP coldkeep_hardware_last_check_timestamp_seconds Unix time of the last check of the \
         hardware key's backup (BitBox02: by the device; OnlyKey: offline verify).\n\
         # TYPE coldkeep_hardware_last_check_timestamp_seconds gauge"
    );
    for s in &statuses {
        if let Some(c) = &s.last_check {
            let _ = writeln!(
                out,
                "coldkeep_hardware_last_check_timestamp_seconds{{{}}} {}",
                label(s),
                c.checked_at.timestamp()
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP coldkeep_hardware_last_check_ok 1 if the last check found the backup intact, 0 if not.\n\
         # TYPE coldkeep_hardware_last_check_ok gauge"
    );
    for s in &statuses {
        if let Some(c) = &s.last_check {
            let _ = writeln!(
                out,
                "coldkeep_hardware_last_check_ok{{{}}} {}",
                label(s),
                u8::from(c.result.ok())
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP coldkeep_untrusted_device_checks Device-check records in the store without a valid \
         signature (never believed).\n# TYPE coldkeep_untrusted_device_checks gauge\n\
         coldkeep_untrusted_device_checks {untrusted}"
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_as_people_say_them() {
        assert_eq!(ago(5), "just now");
        assert_eq!(ago(60), "1 minute ago");
        assert_eq!(ago(7200), "2 hours ago");
        assert_eq!(ago(3 * 86_400 + 5), "3 days ago");
        assert_eq!(period(Duration::from_secs(30 * 86_400)), "30d");
        assert_eq!(period(Duration::from_secs(36 * 3600)), "36h");
    }

    #[test]
    fn a_device_key_change_is_flagged_until_declared() {
        let at = |key: Option<&str>, secs: i64, new_device: bool| {
            let mut c = DeviceCheck::new("t", "bitbox02", "x".into(), CheckResult::Found);
            c.device_key = key.map(str::to_string);
            c.checked_at = DateTime::from_timestamp(secs, 0).unwrap();
            c.new_device = new_device;
            c
        };
        let a1 = at(Some("A"), 1, false);
        let none = at(None, 2, false);
        let b3 = at(Some("B"), 3, false);
        let b4 = at(Some("B"), 4, false);
        let a5 = at(Some("A"), 5, false);
        let b6_declared = at(Some("B"), 6, true);
        assert_eq!(key_change([&a1, &none, &a1]), None);
        let change = key_change([&a1, &none, &b3, &b4]).unwrap();
        assert_eq!(
            (change.was.as_str(), change.now.as_str(), change.since.timestamp()),
            ("A", "B", 3)
        );
        assert_eq!(
            key_change([&a1, &b3, &a5]).unwrap().since.timestamp(),
            5,
            "back and forth"
        );
        assert_eq!(key_change([&a1, &b6_declared]), None, "declared");
        assert_eq!(key_change([&a1, &b3, &b6_declared, &b4]), None, "declared later");
        assert!(
            key_change([&a1, &b6_declared, &a5]).is_some(),
            "a change after it"
        );
    }

    /// Whatever a signed record holds, its line is one line without escapes, cut by characters.
    #[test]
    fn odd_record_content_is_shown_safely() {
        assert_eq!(
            describe(Some(&"é".repeat(9)), None, None),
            format!("{}…", "é".repeat(8))
        );
        assert_eq!(describe(Some("ab"), Some("x\ny"), None), "ab… \"x\\ny\"");
        assert_eq!(
            describe(Some("\x1b[2J\x1b[H"), None, None),
            "\\u{1b}[2J\\u{1b}[H…"
        );
        assert_eq!(label_value("a\"b\\c\nd\x1b"), "a\\\"b\\\\c\\nd");
    }
}
