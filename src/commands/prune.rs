//! `coldkeep prune`: apply each keystore's retention policy to the store and its replicas.
//!
//! Each artifact's fate is printed as it is decided (a store of 300,000 artifacts is never
//! held): the table's columns have fixed widths (the names' from the store's directories),
//! `--json` is written an element at a time.

use crate::cli::PruneArgs;
use crate::config::Config;
use crate::error::Exit;
use crate::ops::prune::{Pruned, prune_each};
use crate::output::JsonList;
use std::io::Write;

/// Runs `coldkeep prune`.
pub fn run(config: &Config, args: &PruneArgs) -> anyhow::Result<Exit> {
    let nodes: Vec<Option<String>> = match crate::ops::selected_names(config, &(&args.select).into())? {
        None => vec![None],
        Some(names) => names.into_iter().map(Some).collect(),
    };
    let mut out = if args.json {
        Output::Json(JsonList::start()?)
    } else {
        let store = crate::store::Store::new(&config.store);
        let mut widths = (4, 8);
        for node in &nodes {
            for (n, ks) in store.keystores(node.as_deref())? {
                widths = (widths.0.max(n.chars().count()), widths.1.max(ks.chars().count()));
            }
        }
        Output::Text(Text::new(widths, args.dry_run))
    };
    let mut failed = false;
    let mut result = Ok(());
    for node in &nodes {
        result = prune_each(config, node.as_deref(), args.dry_run, |p| {
            failed |= p.error.is_some();
            out.item(&p);
        });
        if result.is_err() {
            break;
        }
    }
    // A whole document (and the counts) even when a keystore could not be listed.
    out.finish()?;
    result?;
    Ok(if failed { Exit::Failed } else { Exit::Ok })
}

/// Where the fates go: `--json` or the table.
enum Output {
    Json(JsonList),
    Text(Text),
}

impl Output {
    fn item(&mut self, p: &Pruned) {
        // A broken pipe (`| head`) ends the output, not the removals.
        let _ = match self {
            Output::Json(list) => list.item(p),
            Output::Text(text) => text.row(p),
        };
    }

    fn finish(self) -> anyhow::Result<()> {
        match self {
            Output::Json(list) => list.finish().map(drop),
            Output::Text(text) => text.finish(),
        }
    }
}

/// The table, a row at a time: NODE and KEYSTORE as wide as the longest name, the creation
/// time, the id and the action at their fixed widths, then why.
struct Text {
    out: std::io::BufWriter<std::io::StdoutLock<'static>>,
    widths: (usize, usize),
    dry_run: bool,
    kept: usize,
    gone: usize,
}

/// The widths of the creation time (`2026-11-22 03:15:00`), an id and the longest action.
const CREATED: usize = 19;
const ID: usize = 25;
const ACTION: usize = 13;

impl Text {
    fn new(widths: (usize, usize), dry_run: bool) -> Text {
        Text {
            out: std::io::BufWriter::new(std::io::stdout().lock()),
            widths,
            dry_run,
            kept: 0,
            gone: 0,
        }
    }

    fn line(&mut self, cells: [&str; 6]) -> anyhow::Result<()> {
        let (n, k) = self.widths;
        let line = format!(
            "{:<n$}  {:<k$}  {:<CREATED$}  {:<ID$}  {:<ACTION$}  {}",
            cells[0], cells[1], cells[2], cells[3], cells[4], cells[5]
        );
        writeln!(self.out, "{}", line.trim_end())?;
        Ok(())
    }

    fn row(&mut self, r: &Pruned) -> anyhow::Result<()> {
        if self.kept + self.gone == 0 {
            self.line(["NODE", "KEYSTORE", "CREATED (UTC)", "ID", "ACTION", "WHY"])?;
        }
        let action = match (r.keep, self.dry_run, &r.error) {
            (true, _, _) => "keep",
            (false, true, _) => "would remove",
            (false, false, None) => "removed",
            (false, false, Some(_)) => "REMOVE FAILED",
        };
        if r.keep {
            self.kept += 1;
        } else {
            self.gone += 1;
        }
        let why = r.error.clone().unwrap_or_else(|| r.reasons.join(", "));
        let created = r.created_at.format("%Y-%m-%d %H:%M:%S").to_string();
        self.line([&r.node, &r.keystore, &created, &r.id, action, &why])
    }

    fn finish(mut self) -> anyhow::Result<()> {
        if self.kept + self.gone == 0 {
            writeln!(self.out, "No artifacts.")?;
        } else {
            writeln!(
                self.out,
                "\n{} kept, {} {}.",
                self.kept,
                self.gone,
                if self.dry_run {
                    "would be removed (dry run)"
                } else {
                    "removed"
                }
            )?;
        }
        self.out.flush()?;
        Ok(())
    }
}
