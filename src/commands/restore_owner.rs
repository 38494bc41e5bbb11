//! Which owner a restore gives a file that does not exist on the node: the one its backup
//! recorded, when those names exist there; otherwise whoever writes it, and the plan says so.

use crate::bundle::FileOwner;
use crate::remote::Session;

/// `(user:group to chown to, what the plan says)`.
pub fn pick(session: &Session, recorded: Option<&FileOwner>) -> anyhow::Result<(Option<String>, String)> {
    let Some(o) = recorded else {
        return Ok((None, "the writing user's (the backup recorded no owner)".into()));
    };
    let (Some(user), Some(group)) = (&o.user, &o.group) else {
        return Ok((
            None,
            format!(
                "the writing user's (the backup recorded uid {} gid {} without names)",
                o.uid, o.gid
            ),
        ));
    };
    if session.owner_exists(user, group)? {
        Ok((
            Some(format!("{user}:{group}")),
            format!("{user}:{group} (recorded in the backup)"),
        ))
    } else {
        Ok((
            None,
            format!("the writing user's ({user}:{group} from the backup does not exist on this node)"),
        ))
    }
}

/// For a whole tree (an Acra keystore that does not exist on the node): the owner its files
/// were recorded with, when they all had the same one.
pub fn pick_for_tree(
    session: &Session,
    files: &[&crate::bundle::PlainFile],
) -> anyhow::Result<(Option<String>, String)> {
    let named = |f: &&crate::bundle::PlainFile| {
        f.entry
            .owner
            .as_ref()
            .and_then(|o| Some((o.user.clone()?, o.group.clone()?)))
    };
    let first = files.first().and_then(named);
    if first.is_none() || files.iter().any(|f| named(f) != first) {
        return Ok((
            None,
            "the writing user's (the backup recorded no single named owner for the files)".into(),
        ));
    }
    pick(session, files[0].entry.owner.as_ref())
}
