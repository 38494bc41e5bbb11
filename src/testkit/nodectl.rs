//! nodectl's cn-config.yaml as nodectl writes it, for tests.
//!
//! Starts from nodectl's own files, read where they are (`../shared/reference/nodectl/` beside
//! the project; never copied into it), and edits them the way nodectl's own code does: the
//! installer replaces each `    <key>: blank` line of `global_p12` (`modules/install.py`,
//! passphrase in single quotes, location from `os.path.split`, so without a trailing slash),
//! the configurator rewrites a profile's `p12_*` lines (location with a trailing slash,
//! passphrase in double quotes). The pre-2.0 nested form is generated from nodectl 2.0's
//! templates (`node_service.py` `config_yaml_*`), which no reference file holds.

use std::path::PathBuf;

/// nodectl v2.19.0's `predefined_configs/mainnet.yaml` (nodectl_yaml v2.1.1, dag-l0 and dag-l1,
/// every `p12_*` `global`, `global_p12` all `blank`).
pub const MAINNET: &str = "v2.19.0-mainnet.yaml";
/// nodectl v2.19.0's `predefined_configs/v1211_dor.yaml` (nodectl_yaml v2.1.0, one metagraph
/// profile `dor-dl1`, with `p12_key_alias` and `global_p12.key_alias`).
pub const V1211_DOR: &str = "v2.19.0-v1211_dor.yaml";

/// Where the reference files are: `../shared/reference/nodectl/` from the project root.
pub fn reference_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/nodectl")
}

/// One of nodectl's reference files, as it is.
pub fn reference(name: &str) -> String {
    let path = reference_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (nodectl's reference files live in ../shared/reference/nodectl/ beside the \
             project, as on CI)",
            path.display()
        )
    })
}

/// What the installer fills into `global_p12`.
pub struct Install<'a> {
    /// `nodeadmin`.
    pub nodeadmin: &'a str,
    /// The P12's directory, as `os.path.split` gives it (no trailing slash) or with one.
    pub key_location: &'a str,
    /// The P12's file name.
    pub key_name: &'a str,
    /// The passphrase (written in single quotes, as the installer does).
    pub passphrase: &'a str,
}

/// The installer's substitution: each `    <key>: blank` line becomes `    <key>: <value>`.
pub fn install(template: &str, i: &Install) -> String {
    let mut text = template.to_string();
    for (key, value) in [
        ("passphrase", format!("'{}'", i.passphrase)),
        ("key_location", i.key_location.to_string()),
        ("key_name", i.key_name.to_string()),
        ("nodeadmin", i.nodeadmin.to_string()),
    ] {
        let search = format!("    {key}: blank\n");
        assert!(
            text.contains(&search),
            "no `{}` line to fill in",
            search.trim_end()
        );
        text = text.replacen(&search, &format!("    {key}: {value}\n"), 1);
    }
    text
}

/// The line range of `profile`'s section (two-space key) in `text`.
fn section(text: &str, profile: &str) -> (usize, usize) {
    let head = format!("\n  {profile}:\n");
    let start = text.find(&head).unwrap_or_else(|| panic!("no profile {profile}")) + head.len();
    // The section ends at the next line indented by two spaces or less (the next key of
    // `nodectl:`), or at the end.
    let mut end = start;
    for line in text[start..].split_inclusive('\n') {
        let indent = line.len() - line.trim_start_matches(' ').len();
        if !line.trim().is_empty() && indent <= 2 {
            break;
        }
        end += line.len();
    }
    (start, end)
}

/// The configurator's edit of one profile line: `    <key>: <old>` becomes `    <key>: <value>`.
pub fn set_profile_key(text: &str, profile: &str, key: &str, value: &str) -> String {
    let (start, end) = section(text, profile);
    let body = &text[start..end];
    let prefix = format!("    {key}: ");
    let at = body
        .find(&prefix)
        .unwrap_or_else(|| panic!("no {key} in profile {profile}"));
    let line_end = body[at..].find('\n').map_or(body.len(), |i| at + i);
    format!(
        "{}{prefix}{value}{}",
        &text[..start + at],
        &text[start + line_end..]
    )
}

/// A line added inside a profile's section, after the line of `after_key` (a hand edit: used to
/// duplicate a key).
pub fn insert_after(text: &str, profile: &str, after_key: &str, line: &str) -> String {
    let (start, end) = section(text, profile);
    let body = &text[start..end];
    let at = body
        .find(&format!("    {after_key}: "))
        .unwrap_or_else(|| panic!("no {after_key} in profile {profile}"));
    let line_end = start + body[at..].find('\n').map_or(body.len(), |i| at + i) + 1;
    format!("{}    {line}\n{}", &text[..line_end], &text[line_end..])
}

/// A copy of profile `from` added as `to` right after it (a third profile, e.g. a metagraph).
pub fn copy_profile(text: &str, from: &str, to: &str) -> String {
    let (start, end) = section(text, from);
    let copy = format!("  {to}:\n{}", &text[start..end]);
    format!("{}{copy}{}", &text[..end], &text[end..])
}

/// One profile of the pre-2.0 nested form.
pub struct NestedProfile<'a> {
    /// The profile name.
    pub name: &'a str,
    /// `enable`.
    pub enable: bool,
    /// Its `p12:` values: (key_location, p12_name, wallet_alias, passphrase); `global` for each
    /// means `global_p12`'s.
    pub p12: [&'a str; 4],
}

/// A pre-2.0 cn-config.yaml (nodectl 2.0's templates), `global_p12` = (nodeadmin, key_location,
/// p12_name, wallet_alias, passphrase), the passphrase double-quoted as its migration wrote it.
pub fn nested(profiles: &[NestedProfile], global: [&str; 5]) -> String {
    let mut text = "---\n# NODECTL CONFIGURATION FILE\n# @netmet72\n# =========================================================\n\
                    nodectl:\n  profiles:\n"
        .to_string();
    for (layer, p) in profiles.iter().enumerate() {
        let [location, name, alias, passphrase] = p.p12;
        text.push_str(&format!(
            "    {}:\n      enable: {}\n      layer: {layer}\n      edge_point: \n        https: False\n        host: l{layer}-lb-mainnet.constellationnetwork.io\n\
             \x20       host_port: 80\n      environment: mainnet\n      ports:\n        public: 90{layer}0\n        p2p: 90{layer}1\n        cli: 90{layer}2\n\
             \x20     service: node_l{layer}\n      layer0_link: \n        enable: False\n        layer0_key: None\n        layer0_host: None\n\
             \x20       layer0_port: None\n        link_profile: None\n      dirs:\n        snapshots: default\n        backups: default\n\
             \x20       uploads: default\n      java:\n        xms: 1024M\n        xmx: 7G\n        xss: 256K\n      p12:\n\
             \x20       nodeadmin: global\n        key_location: {location}\n        p12_name: {name}\n        wallet_alias: {alias}\n\
             \x20       passphrase: {passphrase}\n      pro:\n        seed_location: default\n        seed_file: default\n\
             \x20     node_type: validator\n      description: layer {layer}\n",
            p.name,
            if p.enable { "True" } else { "False" },
        ));
    }
    let [nodeadmin, location, name, alias, passphrase] = global;
    text.push_str(&format!(
        "  auto_restart:\n    enable: False\n    auto_upgrade: False\n  global_p12:\n    nodeadmin: {nodeadmin}\n\
         \x20   key_location: {location}\n    p12_name: {name}\n    wallet_alias: {alias}\n    passphrase: \"{passphrase}\"\n"
    ));
    text
}
