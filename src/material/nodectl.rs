//! nodectl's `cn-config.yaml`: where each profile expects its P12 (directory and file name).
//!
//! Under the top-level `nodectl:` key there is one mapping per profile (`dag-l0`, `dag-l1`, ...)
//! and the sections `global_p12`, `global_auto_restart`, `global_elements`. A profile's
//! `p12_key_location` / `p12_key_name` are a directory / file name, or `global`, meaning "take
//! `key_location` / `key_name` from `global_p12`". Older configs (v2.1.0) also had
//! `p12_key_store` / `key_store` = location + name; they are used when the name keys are absent.
//! Disabled profiles (`profile_enable: False`) do not use a key and are left out.

use serde::Serialize;
use serde_json::{Map, Value};

/// Cap on the size of a cn-config.yaml we are willing to parse.
pub const MAX_SIZE: u64 = 1024 * 1024;

/// Where one profile expects its P12.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct P12Location {
    /// The profile name, e.g. `dag-l0`.
    pub profile: String,
    /// Directory, normalised without a trailing `/` (None when `blank` or missing).
    pub directory: Option<String>,
    /// File name (None when `blank` or missing).
    pub name: Option<String>,
    /// Whether the values came from `global_p12`.
    pub from_global: bool,
}

impl P12Location {
    /// `directory/name`, when both are set.
    pub fn path(&self) -> Option<String> {
        Some(format!(
            "{}/{}",
            self.directory.as_deref()?,
            self.name.as_deref()?
        ))
    }
}

/// The file could not be understood as a nodectl config.
#[derive(Debug, thiserror::Error)]
#[error("not a usable nodectl cn-config.yaml: {0}")]
pub struct NodectlError(pub String);

/// A YAML error as `line:column` only. cn-config.yaml holds the P12 passphrase, and the
/// parser's message or snippet may quote it (an unquoted `@Str0ngPass` is a scanner error that
/// shows the line): nothing from the file is repeated.
fn yaml_error(e: &serde_saphyr::Error) -> String {
    match e.location() {
        Some(l) => format!(
            "YAML error at line {}, column {} (details withheld: the file holds the P12 passphrase)",
            l.line(),
            l.column()
        ),
        None => "YAML error (details withheld: the file holds the P12 passphrase)".to_string(),
    }
}

/// A parsed cn-config.yaml: it holds the P12 passphrase, so every string in it (keys and
/// values) is wiped when it is dropped, as the callers wipe the text (`Zeroizing`).
struct Doc(Value);

impl Doc {
    fn parse(text: &str) -> Result<Doc, NodectlError> {
        serde_saphyr::from_str(text)
            .map(Doc)
            .map_err(|e| NodectlError(yaml_error(&e)))
    }
}

impl std::ops::Deref for Doc {
    type Target = Value;
    fn deref(&self) -> &Value {
        &self.0
    }
}

impl Drop for Doc {
    fn drop(&mut self) {
        wipe(std::mem::take(&mut self.0));
    }
}

/// Overwrites every string of `v` (map keys too) before freeing it.
fn wipe(v: Value) {
    use zeroize::Zeroize;
    match v {
        Value::String(mut s) => s.zeroize(),
        Value::Array(items) => items.into_iter().for_each(wipe),
        Value::Object(map) => {
            for (mut k, v) in map {
                k.zeroize();
                wipe(v);
            }
        }
        _ => {}
    }
}

/// Reads every enabled profile's effective P12 location from cn-config.yaml text.
pub fn p12_locations(text: &str) -> Result<Vec<P12Location>, NodectlError> {
    let doc = Doc::parse(text)?;
    let root = doc
        .get("nodectl")
        .and_then(Value::as_object)
        .ok_or_else(|| NodectlError("no top-level `nodectl:` mapping".into()))?;
    let global = root.get("global_p12").and_then(Value::as_object);
    let mut out = Vec::new();
    for (profile, section) in root {
        if profile.starts_with("global_") {
            continue;
        }
        let Some(section) = section.as_object() else {
            continue;
        };
        if section.get("profile_enable").is_some_and(is_false) {
            continue;
        }
        let (directory, name, from_global) = effective(section, global)?;
        out.push(P12Location {
            // From the node's file, printed in tables: control characters escaped (a name with
            // one then no longer equals the configured one, and the restore refuses).
            profile: crate::text::escape_control(profile),
            directory: directory.map(|d| crate::text::escape_control(&d)),
            name: name.map(|n| crate::text::escape_control(&n)),
            from_global,
        });
    }
    if out.is_empty() {
        return Err(NodectlError("no enabled profile under `nodectl:`".into()));
    }
    Ok(out)
}

/// A profile's (directory, name, from_global).
fn effective(
    section: &Map<String, Value>,
    global: Option<&Map<String, Value>>,
) -> Result<(Option<String>, Option<String>, bool), NodectlError> {
    let location = scalar(section.get("p12_key_location"));
    let name = scalar(section.get("p12_key_name"));
    let store = scalar(section.get("p12_key_store"));
    let uses_global = [&location, &name, &store]
        .iter()
        .any(|v| v.as_deref() == Some("global"));
    if uses_global {
        let global = global.ok_or_else(|| {
            NodectlError("a profile says `global` but there is no `global_p12` section".into())
        })?;
        let (dir, file) = split_pair(
            scalar(global.get("key_location")),
            scalar(global.get("key_name")),
            scalar(global.get("key_store")),
        );
        return Ok((dir, file, true));
    }
    let (dir, file) = split_pair(location, name, store);
    Ok((dir, file, false))
}

/// Location and name, or both taken from a `key_store` full path; `blank` means unset.
fn split_pair(
    location: Option<String>,
    name: Option<String>,
    store: Option<String>,
) -> (Option<String>, Option<String>) {
    let location = location.filter(|v| !is_blank(v));
    let name = name.filter(|v| !is_blank(v));
    if location.is_none()
        && name.is_none()
        && let Some(store) = store.filter(|v| !is_blank(v))
        && let Some((dir, file)) = store.rsplit_once('/')
    {
        return (Some(normalise_dir(dir)), Some(file.to_string()));
    }
    (location.map(|l| normalise_dir(&l)), name)
}

fn normalise_dir(dir: &str) -> String {
    let trimmed = dir.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_string()
    } else {
        trimmed.to_string()
    }
}

fn is_blank(v: &str) -> bool {
    v.is_empty() || v.eq_ignore_ascii_case("blank") || v.eq_ignore_ascii_case("none")
}

fn is_false(v: &Value) -> bool {
    matches!(v, Value::Bool(false)) || v.as_str().is_some_and(|s| s.eq_ignore_ascii_case("false"))
}

fn scalar(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// What cn-config.yaml holds as a profile's P12 passphrase.
pub enum Passphrase {
    /// In plain text (wiped on drop; never printed).
    Plain(zeroize::Zeroizing<String>),
    /// Encrypted by nodectl (`global_p12.encryption: True`): the key is elsewhere.
    Encrypted,
    /// Not stored (`None`, `blank` or missing): nodectl asks for it.
    NotStored,
}

/// One enabled profile's P12 path and passphrase.
pub struct ProfilePassphrase {
    /// nodectl profile (`dag-l0`, ...).
    pub profile: String,
    /// `directory/name`, when both are set.
    pub path: Option<String>,
    /// What the file holds as its passphrase.
    pub passphrase: Passphrase,
}

/// Every enabled profile's P12 path and passphrase (`global` resolved through `global_p12`).
pub fn passphrases(text: &str) -> Result<Vec<ProfilePassphrase>, NodectlError> {
    let locations = p12_locations(text)?;
    let doc = Doc::parse(text)?;
    let root = doc.get("nodectl").and_then(Value::as_object);
    let global = root.and_then(|r| r.get("global_p12")).and_then(Value::as_object);
    let encrypted = global.is_some_and(|g| g.get("encryption").is_some_and(|v| !is_false(v) && !v.is_null()));
    Ok(locations
        .into_iter()
        .map(|l| {
            // Every copy of a passphrase is wiped when dropped.
            let own = root
                .and_then(|r| r.get(&l.profile))
                .and_then(|s| scalar(s.get("p12_passphrase")))
                .map(zeroize::Zeroizing::new);
            let value = match own.as_ref().map(|o| o.as_str()) {
                Some("global") | None => global
                    .and_then(|g| scalar(g.get("passphrase")))
                    .map(zeroize::Zeroizing::new),
                Some(_) => own,
            };
            let passphrase = match value {
                _ if encrypted => Passphrase::Encrypted,
                Some(v) if !is_blank(&v) => Passphrase::Plain(v),
                _ => Passphrase::NotStored,
            };
            ProfilePassphrase {
                path: l.path(),
                profile: l.profile,
                passphrase,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROFILE: &str = "    profile_enable: True\n    environment: mainnet\n    layer: 0\n";

    fn config(profiles: &str, global: &str) -> String {
        format!(
            "---\n# NODECTL CONFIGURATION FILE\nnodectl:\n{profiles}  global_auto_restart:\n    auto_restart: False\n\
             \x20 global_p12:\n{global}  global_elements:\n    nodectl_yaml: v2.2.0\n"
        )
    }

    #[test]
    fn global_values_apply_to_profiles_that_say_global() {
        let text = config(
            &format!(
                "  dag-l0:\n{PROFILE}    p12_nodeadmin: global\n    p12_key_location: global\n    p12_key_name: global\n    p12_passphrase: global\n\
                 \x20 dag-l1:\n{PROFILE}    p12_key_location: /home/nodeadmin/l1/\n    p12_key_name: l1.p12\n    p12_passphrase: None\n"
            ),
            "    nodeadmin: nodeadmin\n    key_location: /home/nodeadmin/tessellation/\n    key_name: nodeadmin-node.p12\n    passphrase: secret\n    encryption: False\n",
        );
        let locs = p12_locations(&text).unwrap();
        assert_eq!(locs.len(), 2);
        assert_eq!(locs[0].profile, "dag-l0");
        assert!(locs[0].from_global);
        assert_eq!(
            locs[0].path().unwrap(),
            "/home/nodeadmin/tessellation/nodeadmin-node.p12"
        );
        assert_eq!(locs[1].path().unwrap(), "/home/nodeadmin/l1/l1.p12");
        assert!(!locs[1].from_global);
    }

    #[test]
    fn blank_global_means_not_configured_and_disabled_profiles_are_skipped() {
        let text = config(
            &format!(
                "  dag-l0:\n{PROFILE}    p12_key_location: global\n    p12_key_name: global\n\
                 \x20 off:\n    profile_enable: False\n    p12_key_location: /x\n    p12_key_name: y.p12\n"
            ),
            "    nodeadmin: blank\n    key_location: blank\n    key_name: blank\n    passphrase: blank\n    encryption: False\n",
        );
        let locs = p12_locations(&text).unwrap();
        assert_eq!(locs.len(), 1);
        assert_eq!(
            (locs[0].directory.as_deref(), locs[0].name.as_deref()),
            (None, None)
        );
    }

    #[test]
    fn old_key_store_schema() {
        let text = config(
            &format!("  dag-l0:\n{PROFILE}    p12_key_store: global\n"),
            "    key_store: /home/nodeadmin/tessellation/old.p12\n",
        );
        let locs = p12_locations(&text).unwrap();
        assert_eq!(locs[0].path().unwrap(), "/home/nodeadmin/tessellation/old.p12");
    }

    #[test]
    fn not_a_nodectl_config() {
        assert!(
            p12_locations("foo: bar\n")
                .unwrap_err()
                .to_string()
                .contains("nodectl")
        );
        assert!(p12_locations("nodectl: [\n").is_err());
        let no_global = config(&format!("  dag-l0:\n{PROFILE}    p12_key_name: global\n"), "")
            .replace("  global_p12:\n", "");
        assert!(
            p12_locations(&no_global)
                .unwrap_err()
                .to_string()
                .contains("global_p12")
        );
    }
}

#[cfg(test)]
mod yaml_error_tests {
    use super::*;

    #[test]
    fn yaml_errors_never_repeat_the_file() {
        let text = "nodectl:\n  p12:\n    passphrase: @Str0ngPass\n";
        let err = p12_locations(text).unwrap_err().to_string();
        assert!(!err.contains("Str0ng"), "{err}");
        assert!(err.contains("line 3"), "{err}");
    }
}

/// cn-config.yaml bytes as text to parse, wiped when dropped (it holds the P12 passphrase;
/// bytes that are not UTF-8 are replaced, as `String::from_utf8_lossy` does).
pub fn text_of(bytes: &[u8]) -> zeroize::Zeroizing<String> {
    zeroize::Zeroizing::new(String::from_utf8_lossy(bytes).into_owned())
}
