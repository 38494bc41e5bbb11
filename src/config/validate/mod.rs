//! Turns the raw config into the validated [`Config`]: defaults, path expansion, secrets,
//! recipients, names; every problem located at `file:line:column`.

use super::raw::{RawConfig, RawHooks, RawRetention, RawSecret, S};
use super::{Config, ConfigError, Hooks, Retention, Secret};
use crate::schedule::{Schedule, Zone};
use serde_saphyr::Location;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

mod nodes;
mod store;

const DEFAULT_JOBS: usize = 8;
const DEFAULT_RETRIES: u32 = 2;
const DEFAULT_RETRY_WAIT: Duration = Duration::from_secs(10);
const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings every node and keystore inherits.
struct Shared {
    master_ready: bool,
    schedule: Option<Schedule>,
    label_schedules: BTreeMap<String, Schedule>,
    retention: Retention,
}

/// Parses YAML text into the raw structs, mapping parser errors to located [`ConfigError`]s.
pub(super) fn parse(text: &str, source: &Path) -> Result<Config, ConfigError> {
    // Comments are not kept: with them the parser buffers at most 32 comment lines while it
    // looks ahead, and a config whose example nodes are commented out (as `init` writes it)
    // failed with "too many buffered comments".
    let options = serde_saphyr::options! { emit_comments: false };
    let raw: RawConfig = serde_saphyr::from_str_with_options(text, options)
        .map_err(|e| super::redact::yaml_error(&e, text, source))?;
    Validator { text, source }.config(raw)
}

pub(super) struct Validator<'a> {
    text: &'a str,
    source: &'a Path,
}

impl Validator<'_> {
    pub(super) fn err(&self, at: &Location, message: impl Into<String>) -> ConfigError {
        self.located(at, message, false)
    }

    fn located(&self, at: &Location, message: impl Into<String>, redact: bool) -> ConfigError {
        let (line, mut column) = (at.line() as usize, at.column() as usize);
        // Never a column past where a secret line's redaction starts (it would tell its length).
        if let Some((_, limit)) = super::redact::secret_line(self.text, line) {
            column = column.min(limit);
        }
        ConfigError {
            file: self.source.to_path_buf(),
            line,
            column,
            message: message.into(),
            snippet: (line > 0).then(|| super::redact::snippet(self.text, line, column, redact)),
        }
    }

    fn config(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let store = self.store(&raw)?;
        let encryption = self.encryption(&raw)?;
        let jobs = match &raw.jobs {
            Some(j) if j.value == 0 => return Err(self.err(&j.referenced, "`jobs` must be at least 1")),
            Some(j) => j.value,
            None => DEFAULT_JOBS,
        };
        let master_ready = store.master_key_store.is_some() && !encryption.master_key_recipients.is_empty();
        let timezone = match &raw.timezone {
            Some(z) => Zone::parse(&z.value).map_err(|m| self.err(&z.referenced, m))?,
            None => Zone::Local,
        };
        let mut label_schedules = BTreeMap::new();
        for (label, expr) in &raw.label_schedules {
            label_schedules.insert(label.clone(), self.schedule(expr)?);
        }
        let shared = Shared {
            master_ready,
            schedule: raw.schedule.as_ref().map(|s| self.schedule(s)).transpose()?,
            label_schedules,
            retention: raw
                .retention
                .as_ref()
                .map(|r| self.retention(r))
                .transpose()?
                .unwrap_or_default(),
        };
        let retries = raw.retries.as_ref().map(|r| r.value).unwrap_or(DEFAULT_RETRIES);
        let retry_wait = match &raw.retry_wait {
            Some(d) => d.value.0,
            None => DEFAULT_RETRY_WAIT,
        };
        let metrics_file = raw.metrics_file.as_ref().map(|p| self.path(p)).transpose()?;
        let hooks = match &raw.hooks {
            Some(h) => self.hooks(&h.value)?,
            None => Hooks {
                timeout: DEFAULT_HOOK_TIMEOUT,
                ..Hooks::default()
            },
        };
        let verify_schedule = raw
            .verify_schedule
            .as_ref()
            .map(|s| self.schedule(s))
            .transpose()?;
        let verify_identity = match &raw.verify_identity {
            Some(p) if verify_schedule.is_none() => {
                return Err(self.err(
                    &p.referenced,
                    "`verify_identity` is only used by `verify_schedule`, which is not set",
                ));
            }
            Some(p) => Some(self.path(p)?),
            None => None,
        };
        let hardware = self.hardware(&raw.hardware)?;
        let signing = self.signing(&raw, &store)?;
        let defaults = raw.ssh.unwrap_or_default();
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut nodes = Vec::new();
        for node in raw.nodes.unwrap_or_default() {
            self.name(&node.name, "node")?;
            if node.name.value == super::HARDWARE_NODE {
                return Err(self.err(
                    &node.name.referenced,
                    "`hardware` is reserved (the store keeps hardware-key backups under it); rename the node",
                ));
            }
            if let Some(first) = seen.insert(node.name.value.clone(), node.name.referenced.line() as usize) {
                return Err(self.err(
                    &node.name.referenced,
                    format!(
                        "duplicate node name `{}` (first at line {first})",
                        node.name.value
                    ),
                ));
            }
            nodes.push(self.node(node, &defaults, &shared)?);
        }
        // Kept as a result: a config whose nodes all set what the defaults lack (HOME unset, no
        // `ssh.known_hosts`) is valid; only `discover --host` needs the defaults alone.
        let node_defaults = self.node_defaults(&defaults).map_err(|e| e.to_string());
        Ok(Config {
            source: self.source.to_path_buf(),
            store,
            encryption,
            signing,
            jobs,
            timezone,
            retries,
            retry_wait,
            metrics_file,
            hooks,
            verify_schedule,
            verify_identity,
            retention: shared.retention.clone(),
            hardware,
            nodes,
            node_defaults,
        })
    }

    fn schedule(&self, s: &S<String>) -> Result<Schedule, ConfigError> {
        Schedule::parse(&s.value).map_err(|m| self.err(&s.referenced, m))
    }

    fn retention(&self, r: &S<RawRetention>) -> Result<Retention, ConfigError> {
        let v = &r.value;
        let retention = Retention {
            keep_last: v.keep_last,
            keep_hourly: v.keep_hourly,
            keep_daily: v.keep_daily,
            keep_weekly: v.keep_weekly,
            keep_monthly: v.keep_monthly,
            keep_yearly: v.keep_yearly,
            keep_pre_restore: v.keep_pre_restore,
        };
        let rules = [
            ("keep_last", v.keep_last),
            ("keep_hourly", v.keep_hourly),
            ("keep_daily", v.keep_daily),
            ("keep_weekly", v.keep_weekly),
            ("keep_monthly", v.keep_monthly),
            ("keep_yearly", v.keep_yearly),
        ];
        if let Some((name, _)) = rules.iter().find(|(_, n)| *n == Some(0)) {
            return Err(self.err(
                &r.referenced,
                format!("`{name}: 0` keeps nothing by that rule; leave it out, or keep at least 1"),
            ));
        }
        Ok(retention)
    }

    fn hooks(&self, h: &RawHooks) -> Result<Hooks, ConfigError> {
        let commands = |list: &[S<String>]| -> Result<Vec<String>, ConfigError> {
            list.iter()
                .map(|c| {
                    if c.value.trim().is_empty() {
                        Err(self.err(&c.referenced, "empty hook command"))
                    } else {
                        Ok(c.value.clone())
                    }
                })
                .collect()
        };
        let timeout = match &h.timeout {
            Some(t) if t.value.0.is_zero() => return Err(self.err(&t.referenced, "a timeout cannot be zero")),
            Some(t) => t.value.0,
            None => DEFAULT_HOOK_TIMEOUT,
        };
        Ok(Hooks {
            before: commands(&h.before)?,
            before_node: commands(&h.before_node)?,
            on_start: commands(&h.on_start)?,
            on_run_success: commands(&h.on_run_success)?,
            on_run_failure: commands(&h.on_run_failure)?,
            on_success: commands(&h.on_success)?,
            on_failure: commands(&h.on_failure)?,
            timeout,
        })
    }

    fn secret(&self, s: &S<RawSecret>, key: &str) -> Result<Secret, ConfigError> {
        match &s.value {
            RawSecret::Inline => Err(self.located(
                &s.referenced,
                format!(
                    "`{key}` must not be written inline (secrets do not belong in config files): \
                     use `{{env: NAME}}` or `{{file: PATH}}`"
                ),
                true,
            )),
            RawSecret::Env(name) if name.is_empty() => Err(self.err(&s.referenced, "empty `env` name")),
            RawSecret::Env(name) => Ok(Secret::Env(name.clone())),
            RawSecret::File(path) => {
                let spanned = S::new(path.clone(), s.referenced, s.defined);
                Ok(Secret::File(self.path(&spanned)?))
            }
        }
    }

    /// Checks a name against `^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`.
    pub(super) fn name(&self, n: &S<String>, what: &str) -> Result<(), ConfigError> {
        let v = &n.value;
        let ok = !v.is_empty()
            && v.len() <= 64
            && v.starts_with(|c: char| c.is_ascii_alphanumeric())
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if ok {
            Ok(())
        } else {
            Err(self.err(
                &n.referenced,
                format!(
                    "invalid {what} name `{v}`: use 1-64 letters, digits, `.`, `_` or `-`, \
                     starting with a letter or digit"
                ),
            ))
        }
    }

    /// Expands `~` and `${VAR}` in a string.
    fn expand(&self, s: &S<String>) -> Result<String, ConfigError> {
        let mut text = s.value.clone();
        if text == "~" || text.starts_with("~/") {
            let Some(h) = home() else {
                return Err(self.err(&s.referenced, "`~` used but HOME is not set"));
            };
            text = format!("{}{}", h.display(), &text[1..]);
        }
        let mut out = String::new();
        let mut rest = text.as_str();
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let Some(len) = rest[start..].find('}') else {
                return Err(self.err(&s.referenced, "unterminated `${` in value"));
            };
            let var = &rest[start + 2..start + len];
            let value = std::env::var(var)
                .map_err(|_| self.err(&s.referenced, format!("environment variable `{var}` is not set")))?;
            out.push_str(&value);
            rest = &rest[start + len + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// An expanded local path; relative ones are taken from the config file's directory.
    fn path(&self, s: &S<String>) -> Result<PathBuf, ConfigError> {
        let p = PathBuf::from(self.expand(s)?);
        if p.is_absolute() {
            return Ok(p);
        }
        let base = self
            .source
            .parent()
            .filter(|b| !b.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Ok(std::path::absolute(base.join(p)).unwrap_or_else(|_| base.join(&s.value)))
    }
}

/// A path with `.` and `..` resolved, and symlinks too where it exists (to compare locations).
fn resolve(path: &Path) -> PathBuf {
    if let Ok(real) = std::fs::canonicalize(path) {
        return real;
    }
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}
