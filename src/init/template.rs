//! The config `init` writes: the documented template with the store, recipients and signing
//! paths filled in and the example nodes commented out.

use super::InitError;
use std::path::Path;

/// The documented config template, compiled in so `init` writes exactly what the README shows.
pub const TEMPLATE: &str = include_str!("../../config/coldkeep.yaml");

/// A double-quoted YAML scalar (JSON strings are valid YAML); `${` would be expanded as a
/// variable by the config loader, so such paths are refused.
fn quoted_path(path: &Path) -> Result<String, InitError> {
    match path.to_str() {
        Some(s) if !s.contains("${") => Ok(serde_json::to_string(s).expect("a string serialises")),
        _ => Err(InitError::UnusablePath(path.to_path_buf())),
    }
}

/// Fills the template: the store path, the recipients, the signing key and allowed_signers paths
/// (`signing`: key, allowed_signers), and `nodes:` with the examples commented out (so the file is
/// valid before any node is added, and adding one is uncommenting).
pub fn render_config(
    template: &str,
    store: &Path,
    recipients: &[String],
    signing: (&Path, &Path),
) -> Result<String, InitError> {
    let mut out = format!(
        "# Written by `coldkeep init` on {} from the documented template. Add your nodes at the\n\
         # end, then run `coldkeep config check` and `coldkeep backup --dry-run`.\n#\n",
        chrono::Utc::now().format("%Y-%m-%d")
    );
    let mut lines = template.lines().peekable();
    let (mut store_done, mut recipients_done, mut nodes_done) = (false, false, false);
    let (mut key_done, mut allowed_done) = (false, false);
    let mut section = "";
    while let Some(line) = lines.next() {
        if !line.starts_with([' ', '#']) && !line.is_empty() {
            section = line.split(':').next().unwrap_or("");
        }
        if section == "store" && !store_done && line.trim_start().starts_with("path:") {
            out.push_str(&format!("  path: {}\n", quoted_path(store)?));
            store_done = true;
        } else if section == "signing" && !key_done && line.starts_with("  key:") {
            out.push_str(&format!("  key: {}\n", quoted_path(signing.0)?));
            key_done = true;
        } else if section == "signing" && !allowed_done && line.starts_with("  allowed_signers:") {
            out.push_str(&format!("  allowed_signers: {}\n", quoted_path(signing.1)?));
            allowed_done = true;
        } else if section == "encryption" && !recipients_done && line == "  recipients:" {
            out.push_str("  recipients:\n");
            while lines.peek().is_some_and(|l| l.starts_with("    - ")) {
                lines.next();
            }
            for r in recipients {
                let quoted = serde_json::to_string(r).expect("a string serialises");
                out.push_str(&format!("    - {quoted}\n"));
            }
            recipients_done = true;
        } else if line == "nodes:" {
            out.push_str(
                "# Nodes to back up. Examples (remove the leading `#` and edit); a node overrides any\n\
                 # `ssh:` setting above, and its host key must be in known_hosts (or pinned with\n\
                 # `host_key:`) before the first backup.\nnodes:\n",
            );
            for rest in lines.by_ref() {
                out.push_str(&format!("#{rest}\n"));
            }
            nodes_done = true;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    for (done, what) in [
        (store_done, "`store.path`"),
        (recipients_done, "`encryption.recipients`"),
        (key_done, "`signing.key`"),
        (allowed_done, "`signing.allowed_signers`"),
        (nodes_done, "`nodes:`"),
    ] {
        if !done {
            return Err(InitError::Template(what));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const KEY: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
    const SSH: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHJS7gvA1ffFRf/ARWSkf2pd1jYeBYSLML3c8AsZLX/r op@laptop";

    fn signing() -> (&'static Path, &'static Path) {
        (Path::new("/k"), Path::new("/a"))
    }

    #[test]
    fn the_template_renders_to_a_valid_config_with_our_store_and_recipients() {
        let text = render_config(
            TEMPLATE,
            Path::new("/srv/cold \"keep\""),
            &[KEY.into(), SSH.into()],
            (Path::new("/etc/ck/sk"), Path::new("/etc/ck/allowed")),
        )
        .unwrap();
        let config = Config::parse(&text, Path::new("/etc/coldkeep/coldkeep.yaml")).unwrap();
        assert_eq!(config.store.path, Path::new("/srv/cold \"keep\""));
        let got: Vec<&str> = config.encryption.recipients.iter().map(|r| r.as_str()).collect();
        assert_eq!(got, [KEY, SSH]);
        assert_eq!(config.signing.key, Path::new("/etc/ck/sk"));
        assert_eq!(config.signing.allowed_signers, Path::new("/etc/ck/allowed"));
        assert!(config.nodes.is_empty(), "the examples are commented out");
        // The documentation stays: every comment line of the template is still there.
        for line in TEMPLATE.lines().filter(|l| l.trim_start().starts_with('#')) {
            assert!(text.contains(line), "lost: {line}");
        }
        // Uncommenting the examples gives the template's nodes back.
        let uncommented: String = text
            .lines()
            .skip_while(|l| *l != "nodes:")
            .skip(1)
            .map(|l| format!("{}\n", l.strip_prefix('#').unwrap()))
            .collect();
        assert!(TEMPLATE.ends_with(&uncommented));
    }

    #[test]
    fn a_template_without_the_lines_init_fills_is_an_error_not_a_wrong_config() {
        let broken = TEMPLATE.replace("\nnodes:\n", "\nhosts:\n");
        assert!(matches!(
            render_config(&broken, Path::new("/s"), &[KEY.into()], signing()),
            Err(InitError::Template("`nodes:`"))
        ));
        assert!(matches!(
            render_config(TEMPLATE, Path::new("/a/${HOME}"), &[KEY.into()], signing()),
            Err(InitError::UnusablePath(_))
        ));
        let no_signing = TEMPLATE.replace("\n  allowed_signers:", "\n  # allowed_signers:");
        assert!(matches!(
            render_config(&no_signing, Path::new("/s"), &[KEY.into()], signing()),
            Err(InitError::Template("`signing.allowed_signers`"))
        ));
    }
}
