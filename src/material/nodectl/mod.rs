//! nodectl's `cn-config.yaml`: which P12 each profile uses, under which alias, with which
//! passphrase, resolved the way nodectl v2.19 itself resolves them.
//!
//! Read as nodectl reads it (`yaml`: PyYAML's YAML 1.1, a duplicated key keeps its last value
//! with a warning). Then, per profile:
//! - Formats. nodectl_yaml v2.1.1 (nodectl 2.13+): under `nodectl:` one mapping per profile with
//!   flat `p12_nodeadmin`, `p12_key_location`, `p12_key_name`, `p12_passphrase`, and a
//!   `global_p12` section; no alias (nodectl reads it from the file). v2.0.0/v2.1.0 (nodectl
//!   2.9-2.12) add `p12_key_alias` / `global_p12.key_alias`, which nodectl exports as
//!   `CL_KEYALIAS`: a P12 under another alias breaks the node. The pre-2.0 nested form
//!   (`nodectl: profiles: <p>: p12: {key_location, p12_name, wallet_alias, passphrase}` beside
//!   `global_p12`) is read too: nodectl migrates it on upgrade, but a node not yet upgraded
//!   still runs on it.
//! - Profiles are the keys of `nodectl:` that do not contain `global` (nodectl's
//!   `clear_global_profiles`). `profile_enable: False` profiles run no service and use no key.
//! - `global` is resolved key by key (`validate_global_setting`): each `p12_*` value that
//!   contains `global` takes `global_p12`'s value of the same key, independently of the others.
//!   nodectl tests with `"global" in value`, a substring test, and so does this (a location
//!   like `/home/global/` is taken from `global_p12` by nodectl too). Only `p12_key_name` and
//!   `p12_passphrase` must be both `global` or both set, else nodectl refuses the file: such a
//!   profile carries a [`Profile::problem`].
//!   These checks run before nodectl drops disabled profiles (`implement_config`:
//!   `finalize_config_tests` -> `validate_global_setting`, then `remove_disabled_profiles`), so a
//!   disabled profile's bad pairing makes nodectl refuse the whole file too; the pre-2.0 form
//!   (nodectl 2.8's `validate_global_setting`) ties `p12_name` and `passphrase` the same way,
//!   and nodectl 2.9-2.12 (v2.0.0/v2.1.0 files) tie `key_alias` in as well.
//! - A profile's `p12_*` value that is not text (an unquoted number, a boolean, null) stops
//!   nodectl: `validate_global_setting` tests `"global" in value` on each, outside its `try`.
//! - The P12's path is nodectl's `create_path_variable`: `location/name` (no second `/` when the
//!   location ends in one), then nodectl 2.13+ (`v2.1.1` files) collapses `//` with
//!   `cleaner(path, "double_slash")` (`re.sub('//', '/', ...)`, left to right, not repeated);
//!   older readers do not.
//! - The alias: nodectl 2.13+ overwrites `p12_key_alias` with the alias it reads from the P12
//!   (`setup_config_vars` sets it to a placeholder, `setup_p12_aliases` fills it), so a stored
//!   alias counts only in v2.0.0/v2.1.0 files (nodectl 2.9-2.12 exported it as `CL_KEYALIAS`)
//!   and in the pre-2.0 form (`wallet_alias`, nodectl 2.8).
//! - `blank` (the installer's placeholder) or a missing value means not set; a passphrase
//!   `None` (or null) is not stored: nodectl asks for it. With `global_p12.encryption: True`
//!   every stored passphrase is a token whose key is in `/etc/security/cnngsenc.conf`.
//! - A stored passphrase that is not text (an unquoted number or `True`) is not checked: nodectl's
//!   own passphrase check writes it to a file with `f.write` (`p12.py`, `handle_pass_file`),
//!   which takes text only, so nodectl cannot use it, while the service file would get Python's
//!   `str()` of it (for a float its shortest round-trip repr). Which of the two the operator
//!   meant is a guess; quoting it in cn-config.yaml settles it.
//!
//! Nothing read here is printed as it is: values from the node go through
//! [`crate::text::escape_control`] where they are shown, and the passphrase never is.

mod yaml;

#[cfg(test)]
mod tests;

use serde::Serialize;
use yaml::Node;
use zeroize::Zeroizing;

/// Cap on the size of a cn-config.yaml we are willing to parse.
pub const MAX_SIZE: u64 = 1024 * 1024;

/// Where nodectl keeps the key of its encrypted passphrases (`global_p12.encryption: True`).
pub const CNNGSENC_CONF: &str = "/etc/security/cnngsenc.conf";

/// The file could not be understood as a nodectl config.
#[derive(Debug, thiserror::Error)]
#[error("not a usable nodectl cn-config.yaml: {0}")]
pub struct NodectlError(pub String);

/// What cn-config.yaml holds as a profile's P12 passphrase.
pub enum Passphrase {
    /// In plain text (wiped on drop; never printed).
    Plain(Zeroizing<String>),
    /// Encrypted by nodectl (`global_p12.encryption: True`): the key is in cnngsenc.conf.
    Encrypted,
    /// Not stored (`None`, `blank`, null or missing): nodectl asks for it.
    NotStored,
    /// Not text: an unquoted number or boolean (`a float`, `an int`, `a boolean`), which nodectl
    /// cannot use as it is (see the module documentation).
    NotText(&'static str),
}

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Passphrase::Plain(_) => "Plain(..)",
            Passphrase::Encrypted => "Encrypted",
            Passphrase::NotStored => "NotStored",
            Passphrase::NotText(_) => "NotText",
        })
    }
}

/// Which of a profile's values came from `global_p12`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FromGlobal {
    /// `key_location`.
    pub location: bool,
    /// `key_name`.
    pub name: bool,
    /// `passphrase`.
    pub passphrase: bool,
    /// `key_alias` (v2.0.0/v2.1.0 and pre-2.0 only).
    pub alias: bool,
}

/// One profile, resolved.
#[derive(Debug)]
pub struct Profile {
    /// The profile name (`dag-l0`, `intnet-l1`, `dor-dl1`, ...), as in the file.
    pub name: String,
    /// `profile_enable` (missing: enabled).
    pub enabled: bool,
    /// The P12's directory, without a trailing `/` (None when not set).
    pub directory: Option<String>,
    /// nodectl's `p12_key_store`: the P12's path as nodectl builds it (None unless both the
    /// location and the name are set).
    key_store: Option<String>,
    /// The P12's file name (None when not set).
    pub key_name: Option<String>,
    /// The alias nodectl exports as `CL_KEYALIAS` where it takes it from this file (v2.0.0/v2.1.0
    /// and pre-2.0 files), else None: nodectl 2.13+ reads it from the P12.
    pub alias: Option<String>,
    /// The passphrase as stored.
    pub passphrase: Passphrase,
    /// Which values came from `global_p12`.
    pub from_global: FromGlobal,
    /// Why nodectl refuses this profile's P12 settings, when it does.
    pub problem: Option<String>,
}

impl Profile {
    /// The P12's path as nodectl builds it (`p12_key_store`, see the module documentation),
    /// when both location and name are set.
    pub fn path(&self) -> Option<String> {
        self.key_store.clone()
    }
}

/// Which nodectl reads the file: what it checks and how it builds paths differ (see the module
/// documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reader {
    /// nodectl 2.8 and before: the pre-2.0 nested form.
    Nested,
    /// nodectl 2.9-2.12: nodectl_yaml v2.0.0 and v2.1.0.
    V2_0,
    /// nodectl 2.13 and later: nodectl_yaml v2.1.1 (and a file that states no version).
    V2_1_1,
}

impl Reader {
    fn of(nested: bool, yaml_version: Option<&str>) -> Reader {
        match (nested, yaml_version) {
            (true, _) => Reader::Nested,
            (false, Some("v2.0.0" | "v2.1.0")) => Reader::V2_0,
            _ => Reader::V2_1_1,
        }
    }
}

/// A cn-config.yaml, resolved.
#[derive(Debug)]
pub struct NodectlConfig {
    /// `global_elements.nodectl_yaml` (`v2.1.1`, ...), when the file says.
    pub yaml_version: Option<String>,
    /// The pre-2.0 nested form (`nodectl: profiles:`).
    pub nested: bool,
    /// `global_p12.encryption`: passphrases are encrypted tokens.
    pub encryption: bool,
    /// Every profile, in file order (disabled ones too: see [`Profile::enabled`]).
    pub profiles: Vec<Profile>,
    /// What was accepted but deserves a look (duplicated keys), one line each.
    pub warnings: Vec<String>,
}

impl NodectlConfig {
    /// The profiles nodectl runs.
    pub fn enabled(&self) -> impl Iterator<Item = &Profile> {
        self.profiles.iter().filter(|p| p.enabled)
    }

    /// A short description of the format, for messages.
    pub fn format(&self) -> String {
        match (&self.yaml_version, self.nested) {
            (_, true) => "the pre-2.0 nested format".to_string(),
            (Some(v), false) => format!("nodectl_yaml {}", crate::text::escape_control(v)),
            (None, false) => "nodectl_yaml (version not stated)".to_string(),
        }
    }
}

/// Reads cn-config.yaml text.
pub fn parse(text: &str) -> Result<NodectlConfig, NodectlError> {
    let mut warnings = Vec::new();
    let doc = yaml::load(text, &mut warnings).map_err(NodectlError)?;
    let Some(root @ Node::Map(_)) = doc.get("nodectl") else {
        return Err(NodectlError("no top-level `nodectl:` mapping".into()));
    };
    let yaml_version = root
        .get("global_elements")
        .and_then(|g| g.get("nodectl_yaml"))
        .and_then(Node::text)
        .map(|v| v.to_string());
    let nested = matches!(root.get("profiles"), Some(Node::Map(_)));
    let global = root.get("global_p12");
    let encryption = global
        .and_then(|g| g.get("encryption"))
        .is_some_and(|e| !e.is_falsy());
    let reader = Reader::of(nested, yaml_version.as_deref());
    let profiles = if nested {
        nested_profiles(root, global)
    } else {
        flat_profiles(root, global, encryption, reader)
    };
    if profiles.is_empty() {
        return Err(NodectlError("no profile under `nodectl:`".into()));
    }
    Ok(NodectlConfig {
        yaml_version,
        nested,
        encryption,
        profiles,
        warnings,
    })
}

/// The keys a profile's P12 settings have in each format: (profile key, global_p12 key).
struct Keys {
    location: (&'static str, &'static str),
    name: (&'static str, &'static str),
    passphrase: (&'static str, &'static str),
    alias: (&'static str, &'static str),
}

const FLAT: Keys = Keys {
    location: ("p12_key_location", "key_location"),
    name: ("p12_key_name", "key_name"),
    passphrase: ("p12_passphrase", "passphrase"),
    alias: ("p12_key_alias", "key_alias"),
};

/// Pre-2.0: the same names in the profile's `p12:` and in `global_p12`.
const NESTED: Keys = Keys {
    location: ("key_location", "key_location"),
    name: ("p12_name", "p12_name"),
    passphrase: ("passphrase", "passphrase"),
    alias: ("wallet_alias", "wallet_alias"),
};

/// nodectl_yaml v2.x: flat `p12_*` keys in each profile mapping.
fn flat_profiles(root: &Node, global: Option<&Node>, encryption: bool, reader: Reader) -> Vec<Profile> {
    // validate_global_setting's pairing: nodectl 2.13+ ties name and passphrase, 2.9-2.12 the
    // alias too; each only where global_p12 has the key.
    let tied: &[(&str, &str)] = match reader {
        Reader::V2_0 => &[FLAT.name, FLAT.passphrase, FLAT.alias],
        _ => &[FLAT.name, FLAT.passphrase],
    };
    root.entries()
        .iter()
        .filter(|e| !e.key.contains("global") && matches!(e.value, Node::Map(_)))
        .map(|e| {
            let enabled = e.value.get("profile_enable").is_none_or(|v| !v.is_falsy());
            let mut profile = resolve(&e.key, enabled, &e.value, global, &FLAT, encryption, reader);
            let tested: Vec<&str> = tied
                .iter()
                .filter(|(_, g)| global.and_then(|gl| gl.get(g)).is_some())
                .map(|(own, _)| *own)
                .collect();
            // The loop that resolves `global` tests these (outside validate_global_setting's `try`).
            let own_p12 = |k: &str| k.contains("p12_") && !k.contains("global");
            if let Some(problem) =
                pairing_problem(&e.value, &tested).or_else(|| not_text_problem(&e.value, own_p12))
            {
                profile.problem = Some(problem);
            }
            profile
        })
        .collect()
}

/// Pre-2.0: `nodectl: profiles: <p>: {enable, p12: {...}}`.
fn nested_profiles(root: &Node, global: Option<&Node>) -> Vec<Profile> {
    root.get("profiles")
        .map(Node::entries)
        .unwrap_or_default()
        .iter()
        .filter(|e| matches!(e.value, Node::Map(_)))
        .map(|e| {
            let enabled = e.value.get("enable").is_none_or(|v| !v.is_falsy());
            let empty = Node::Map(Vec::new());
            let p12 = e.value.get("p12").unwrap_or(&empty);
            let mut profile = resolve(&e.key, enabled, p12, global, &NESTED, false, Reader::Nested);
            // nodectl 2.8's validate_global_setting reads both keys of every profile (a missing
            // one or section is its cfg-705 error) and ties them; its resolving loop tests
            // `"global" in value` on every key of `p12:`.
            profile.problem = if e.value.get("p12").is_none() {
                Some("no `p12:` section in this profile: nodectl refuses the file".into())
            } else {
                pairing_problem(p12, &[NESTED.name.0, NESTED.passphrase.0])
                    .or_else(|| not_text_problem(p12, |k| !k.contains("global")))
            };
            profile
        })
        .collect()
}

/// validate_global_setting's rule on `keys` of `own`: each present, and all `global` or none
/// (an exact comparison there, unlike the substring test that resolves values).
fn pairing_problem(own: &Node, keys: &[&str]) -> Option<String> {
    let missing: Vec<&str> = keys.iter().copied().filter(|k| own.get(k).is_none()).collect();
    if !missing.is_empty() {
        return Some(format!(
            "no {} in this profile: nodectl refuses the file",
            missing.join(", ")
        ));
    }
    let globals = keys
        .iter()
        .filter(|k| matches!(own.get(k), Some(Node::Str(s)) if s.as_str() == "global"))
        .count();
    (globals != 0 && globals != keys.len()).then(|| {
        let (last, rest) = keys.split_last().unwrap_or((&"", &[]));
        format!(
            "{} and {last} must all be `global` or all be set: nodectl refuses the file",
            rest.join(", ")
        )
    })
}

/// A value nodectl's resolving loop tests with `"global" in value` that is not text: Python
/// raises on it and nodectl stops.
fn not_text_problem(own: &Node, tested: impl Fn(&str) -> bool) -> Option<String> {
    own.entries().iter().filter(|e| tested(&e.key)).find_map(|e| {
        let kind = match &e.value {
            Node::Str(_) => return None,
            Node::Int(_) => "an int",
            Node::Float(_) => "a float",
            Node::Bool(_) => "a boolean",
            Node::Null => "empty",
            Node::Map(_) | Node::Seq(_) => "not a single value",
        };
        Some(format!(
            "`{}` is {kind}, not text (quote it): nodectl stops on it (`\"global\" in value` in \
                 validate_global_setting)",
            crate::text::escape_control(&e.key)
        ))
    })
}

/// One profile's values, each `global` one taken from `global_p12` on its own.
fn resolve(
    name: &str,
    enabled: bool,
    own: &Node,
    global: Option<&Node>,
    keys: &Keys,
    encryption: bool,
    reader: Reader,
) -> Profile {
    let mut from_global = FromGlobal::default();
    let pick = |(own_key, global_key): (&str, &str), flag: &mut bool| -> Option<&Node> {
        match own.get(own_key) {
            // nodectl: `if "global" in p12_value` (a substring test, on strings only).
            Some(Node::Str(s)) if s.contains("global") => {
                *flag = true;
                global.and_then(|g| g.get(global_key))
            }
            other => other,
        }
    };
    let location = pick(keys.location, &mut from_global.location)
        .and_then(Node::text)
        .filter(|v| is_set(v))
        .map(|v| v.to_string());
    let key_name = pick(keys.name, &mut from_global.name)
        .and_then(Node::text)
        .filter(|v| is_set(v))
        .map(|v| v.to_string());
    // nodectl 2.13+ reads the alias from the P12 and overwrites the stored one.
    let mut alias_from_global = false;
    let alias = pick(keys.alias, &mut alias_from_global)
        .and_then(Node::text)
        .filter(|v| is_set(v) && reader != Reader::V2_1_1)
        .map(|v| v.to_string());
    from_global.alias = alias_from_global && alias.is_some();
    let passphrase = match pick(keys.passphrase, &mut from_global.passphrase) {
        Some(Node::Int(_)) => Passphrase::NotText("an int"),
        Some(Node::Float(_)) => Passphrase::NotText("a float"),
        // False is falsy: nodectl asks for the passphrase, as for none.
        Some(Node::Bool(true)) => Passphrase::NotText("a boolean"),
        Some(Node::Str(v)) if is_set(v) && v.as_str() != "None" && encryption => Passphrase::Encrypted,
        Some(Node::Str(v)) if is_set(v) && v.as_str() != "None" => Passphrase::Plain(v.clone()),
        _ => Passphrase::NotStored,
    };
    let key_store = match (&location, &key_name) {
        (Some(location), Some(name)) => Some(create_path_variable(location, name, reader)),
        _ => None,
    };
    Profile {
        name: name.to_string(),
        enabled,
        directory: location.as_deref().map(normalise_dir),
        key_store,
        key_name,
        alias,
        passphrase,
        from_global,
        problem: None,
    }
}

/// nodectl's `create_path_variable` (config.py): `location/name`, or `location` + `name` when the
/// location ends in `/`; nodectl 2.13+ then runs `cleaner(path, "double_slash")`, Python's
/// `re.sub('//', '/', path)`: each `//` left to right, not repeated (`///` gives `//`), which is
/// what `str::replace` does.
fn create_path_variable(location: &str, name: &str, reader: Reader) -> String {
    let path = if location.ends_with('/') {
        format!("{location}{name}")
    } else {
        format!("{location}/{name}")
    };
    match reader {
        Reader::V2_1_1 => path.replace("//", "/"),
        Reader::Nested | Reader::V2_0 => path,
    }
}

fn is_set(v: &str) -> bool {
    !v.is_empty() && v != "blank"
}

fn normalise_dir(dir: &str) -> String {
    let trimmed = dir.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_string()
    } else {
        trimmed.to_string()
    }
}

/// Where one enabled profile expects its P12, as reports show it (escaped for printing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct P12Location {
    /// The profile name, e.g. `dag-l0`.
    pub profile: String,
    /// Directory, without a trailing `/` (None when not set).
    pub directory: Option<String>,
    /// File name (None when not set).
    pub name: Option<String>,
    /// Whether the location or the name came from `global_p12`.
    pub from_global: bool,
    /// The alias nodectl exports for it, in formats that store one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
}

impl P12Location {
    /// `directory/name`, when both are set.
    pub fn path(&self) -> Option<String> {
        Some(format!(
            "{}/{}",
            self.directory.as_deref()?.trim_end_matches('/'),
            self.name.as_deref()?
        ))
    }
}

impl From<&Profile> for P12Location {
    fn from(p: &Profile) -> P12Location {
        let esc = |s: &Option<String>| s.as_deref().map(crate::text::escape_control);
        P12Location {
            profile: crate::text::escape_control(&p.name),
            directory: esc(&p.directory),
            name: esc(&p.key_name),
            from_global: p.from_global.location || p.from_global.name,
            alias: esc(&p.alias),
        }
    }
}

/// cn-config.yaml bytes as text to parse, wiped when dropped (it holds the P12 passphrase;
/// bytes that are not UTF-8 are replaced, as `String::from_utf8_lossy` does).
pub fn text_of(bytes: &[u8]) -> zeroize::Zeroizing<String> {
    zeroize::Zeroizing::new(String::from_utf8_lossy(bytes).into_owned())
}
