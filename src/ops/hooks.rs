//! Running hook commands: `sh -c`, a clean environment plus the `COLDKEEP_*` variables the caller
//! gives, output to our stderr, killed (with what it started) after the timeout.
//!
//! Why a clean environment: coldkeep's own holds secrets (P12 passwords, Acra master keys, the
//! SSH agent socket); a hook is an operator's shell line that often calls the network.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The variables kept from coldkeep's environment; everything else is dropped.
const KEPT: [&str; 5] = ["PATH", "HOME", "LANG", "LC_ALL", "TZ"];

/// Runs each command in turn with `env` set; stops at the first that fails and returns why
/// (the command and its exit status or timeout), for vetoing hooks.
pub fn run_until_failure(
    commands: &[String],
    env: &[(&str, String)],
    timeout: Duration,
) -> Result<(), String> {
    for command in commands {
        run_hook(command, env, timeout).map_err(|e| format!("hook `{command}` failed: {e:#}"))?;
    }
    Ok(())
}

/// Runs every command with `env` set; a failure is logged and does not stop the others
/// (notification hooks never change a run's result).
pub fn run_all(commands: &[String], env: &[(&str, String)], timeout: Duration) {
    for command in commands {
        if let Err(e) = run_hook(command, env, timeout) {
            tracing::warn!(hook = %command, "hook failed: {e:#}");
        }
    }
}

/// Runs one command and waits for it, at most `timeout`.
pub fn run_hook(command: &str, env: &[(&str, String)], timeout: Duration) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .env_clear()
        .envs(KEPT.iter().filter_map(|k| std::env::var_os(k).map(|v| (*k, v))))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        // Its own process group, so a timeout kills what it started too.
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(std::io::stderr())
        .spawn()?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            anyhow::ensure!(status.success(), "exited with {status}");
            return Ok(());
        }
        if Instant::now() >= deadline {
            // `-s KILL -- -PGID`: procps' kill reads `-KILL -PGID` as two signal names and
            // kills nothing, which left a hung hook's children running (and holding our stderr).
            let _ = Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{}", child.id())])
                .stderr(Stdio::null())
                .status();
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("killed after {}s (hooks.timeout)", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_failure_stops_vetoing_hooks_and_names_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let commands = vec![
            format!("echo one >> {}", log.display()),
            "exit 3".to_string(),
            format!("echo three >> {}", log.display()),
        ];
        let err = run_until_failure(&commands, &[], Duration::from_secs(10)).unwrap_err();
        assert!(
            err.contains("hook `exit 3` failed") && err.contains("exit status: 3"),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "one\n");
        run_all(&commands, &[], Duration::from_secs(10));
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "one\none\nthree\n");
    }

    #[test]
    fn hooks_see_only_their_variables_and_a_hung_one_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("env");
        let env = [("COLDKEEP_STATUS", "start".to_string())];
        run_hook(&format!("env > {}", out.display()), &env, Duration::from_secs(10)).unwrap();
        let seen = std::fs::read_to_string(&out).unwrap();
        assert!(seen.contains("COLDKEEP_STATUS=start"), "{seen}");
        // Only the kept variables, ours, and what the shell sets itself.
        for line in seen.lines() {
            let key = line.split('=').next().unwrap_or_default();
            assert!(
                KEPT.contains(&key) || ["COLDKEEP_STATUS", "PWD", "OLDPWD", "SHLVL", "_"].contains(&key),
                "leaked into the hook: {key}"
            );
        }
        // A hung hook is killed with what it started.
        let pid_file = dir.path().join("pid");
        let hung = format!("sleep 30 & echo $! > {}; wait", pid_file.display());
        let err = run_hook(&hung, &[], Duration::from_millis(500)).unwrap_err();
        assert!(err.to_string().contains("killed after"), "{err}");
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        let stat = format!("/proc/{}/stat", pid.trim());
        // Dead: gone, or a zombie until init reaps it (SIGKILL is delivered asynchronously).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match std::fs::read_to_string(&stat) {
                Err(_) => break,
                Ok(s) if s.rsplit(") ").next().is_some_and(|rest| rest.starts_with('Z')) => break,
                Ok(s) => assert!(Instant::now() < deadline, "the hook's child still runs: {s}"),
            }
            std::thread::yield_now();
        }
    }
}
