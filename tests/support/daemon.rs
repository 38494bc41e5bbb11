//! A `coldkeep daemon` under test: its stderr lines on a channel, waited on with a bound (no
//! sleeps), killed when dropped so a failing test leaves nothing running.

use super::fleet::Fleet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A child process killed when dropped, so a failing test leaves nothing running.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running daemon with its stderr lines on a channel.
pub struct Daemon {
    pub child: Killed,
    pub lines: mpsc::Receiver<String>,
}

impl Daemon {
    /// Starts `coldkeep daemon` with the fleet's config and environment.
    pub fn start(f: &Fleet) -> Daemon {
        let mut child = f
            .command(&["daemon"])
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Daemon {
            child: Killed(child),
            lines,
        }
    }

    /// Waits (bounded) for a log line containing `want`; returns it.
    pub fn expect(&self, want: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        while let Ok(line) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            if line.contains(want) {
                return line;
            }
            seen.push(line);
        }
        panic!("no log line with {want:?}; saw:\n{}", seen.join("\n"));
    }

    /// SIGTERM, then the exit code.
    pub fn terminate(mut self) -> i32 {
        let pid = self.child.0.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        self.child.0.wait().unwrap().code().unwrap()
    }
}
