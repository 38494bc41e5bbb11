//! `coldkeep completions SHELL` and `coldkeep man`: generated from the clap definition in
//! [`crate::cli`] at run time, so they always match the binary that prints them.

use crate::cli::Cli;
use crate::error::Exit;
use anyhow::Context;
use clap::CommandFactory;
use std::io::Write;
use std::path::Path;

/// Prints the completion script for `shell` on stdout.
pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<Exit> {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "coldkeep", &mut std::io::stdout());
    Ok(Exit::Ok)
}

/// Prints `coldkeep(1)` on stdout, or with `dir` writes it and one page per subcommand there
/// (`coldkeep-backup.1`, `coldkeep-config-check.1`, ...).
pub fn man(dir: Option<&Path>) -> anyhow::Result<Exit> {
    // NAME gets a one-line summary; the CLI's longer about text becomes DESCRIPTION.
    let mut cmd = Cli::command();
    if let Some(about) = cmd.get_long_about().or(cmd.get_about()).cloned() {
        cmd = cmd.long_about(about);
    }
    let mut cmd = cmd
        .about(env!("CARGO_PKG_DESCRIPTION"))
        .disable_help_subcommand(true);
    // Building names the subcommands `coldkeep-backup` etc., which the page names follow.
    cmd.build();
    let Some(dir) = dir else {
        let mut out = std::io::stdout().lock();
        clap_mangen::Man::new(cmd)
            .render(&mut out)
            .context("writing the man page")?;
        out.flush()?;
        return Ok(Exit::Ok);
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut todo = vec![cmd];
    while let Some(cmd) = todo.pop() {
        todo.extend(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
        let page = clap_mangen::Man::new(cmd);
        let path = dir.join(page.get_filename());
        let mut file =
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        page.render(&mut file)
            .and_then(|()| file.flush())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(Exit::Ok)
}
