//! The daemon's scheduler: each node's next fire time and the store verification's, which nodes
//! are in a run, and what a config reload keeps.
//!
//! Why a struct with an injected [`Clock`]: the rules (a node is never in two runs at once; a
//! fire time that comes while the node's previous run is in flight is skipped; a reload keeps the
//! pending fire time of a node whose schedule did not change) are decisions, and they are
//! unit-tested here with a clock the test moves, without sleeping. The daemon owns the threads,
//! channels and signals and asks this struct what to do.

use crate::config::{Config, NodeConfig};
use crate::error::UsageError;
use crate::schedule::{Schedule, Zone};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Where the scheduler reads the time: the system clock in the daemon, a hand-moved one in tests.
pub trait Clock {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The longest the daemon sleeps between looks at the schedule (a clock jump is noticed then).
pub const MAX_WAIT: Duration = Duration::from_secs(3600);

/// The nodes the daemon runs, their schedules and next fire times, and the runs in flight.
pub struct Scheduler<C: Clock> {
    clock: C,
    zone: Zone,
    schedules: BTreeMap<String, Schedule>,
    next: BTreeMap<String, DateTime<Utc>>,
    running: BTreeSet<String>,
    /// `verify_schedule` and its next fire time.
    verify: Option<(Schedule, DateTime<Utc>)>,
    verifying: bool,
}

/// What [`Scheduler::due`] decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Due {
    /// Nodes to start a run for now (marked running).
    pub start: Vec<String>,
    /// Nodes whose fire time came while their previous run was still going: skipped.
    pub skipped: Vec<String>,
    /// Start the scheduled store verification now (marked running).
    pub verify: bool,
    /// The verification's fire time came while the previous one was still going: skipped.
    pub verify_skipped: bool,
}

impl<C: Clock> Scheduler<C> {
    /// Schedules `nodes` (the daemon's selection) from the clock's now. Nodes without a schedule
    /// are left out (logged); none with a schedule is a usage error.
    pub fn new(config: &Config, nodes: &[&NodeConfig], clock: C) -> Result<Scheduler<C>, UsageError> {
        let mut scheduler = Scheduler {
            clock,
            zone: config.timezone.clone(),
            schedules: BTreeMap::new(),
            next: BTreeMap::new(),
            running: BTreeSet::new(),
            verify: None,
            verifying: false,
        };
        scheduler.schedule(config, nodes)?;
        Ok(scheduler)
    }

    fn schedule(&mut self, config: &Config, nodes: &[&NodeConfig]) -> Result<(), UsageError> {
        let now = self.clock.now();
        let mut schedules = BTreeMap::new();
        let mut next = BTreeMap::new();
        for node in nodes {
            match node
                .schedule
                .as_ref()
                .and_then(|s| Some((s, s.next_after(now, &config.timezone)?)))
            {
                Some((s, t)) => {
                    schedules.insert(node.name.clone(), s.clone());
                    next.insert(node.name.clone(), t);
                }
                None => {
                    tracing::warn!(node = %node.name, "no schedule: the daemon will not back up this node")
                }
            }
        }
        let verify = config
            .verify_schedule
            .as_ref()
            .and_then(|s| Some((s.clone(), s.next_after(now, &config.timezone)?)));
        // A daemon that only verifies (say, on the host of a replica) is fine.
        if next.is_empty() && verify.is_none() {
            return Err(UsageError(
                "no selected node has a schedule: set `schedule:` (top level, per node, or in label_schedules)"
                    .into(),
            ));
        }
        self.zone = config.timezone.clone();
        self.schedules = schedules;
        self.next = next;
        self.verify = verify;
        Ok(())
    }

    /// The nodes due now: those not in a run start (and count as running until
    /// [`Scheduler::finished`]); those still in a run are skipped. Either way each due node's next
    /// fire time moves past now.
    pub fn due(&mut self) -> Due {
        let now = self.clock.now();
        let due: Vec<String> = self
            .next
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(n, _)| n.clone())
            .collect();
        let mut out = Due::default();
        for name in due {
            if self.running.contains(&name) {
                out.skipped.push(name.clone());
            } else {
                self.running.insert(name.clone());
                out.start.push(name.clone());
            }
            match self
                .schedules
                .get(&name)
                .and_then(|s| s.next_after(now, &self.zone))
            {
                Some(t) => {
                    self.next.insert(name, t);
                }
                None => {
                    self.next.remove(&name);
                }
            }
        }
        if let Some((schedule, t)) = &self.verify
            && *t <= now
        {
            if self.verifying {
                out.verify_skipped = true;
            } else {
                self.verifying = true;
                out.verify = true;
            }
            self.verify = schedule
                .next_after(now, &self.zone)
                .map(|t| (schedule.clone(), t));
        }
        out
    }

    /// Marks the scheduled verification as finished: the next fire time may start it again.
    pub fn verify_finished(&mut self) {
        self.verifying = false;
    }

    /// The scheduled verification's next fire time, if it is scheduled.
    pub fn next_verify(&self) -> Option<DateTime<Utc>> {
        self.verify.as_ref().map(|(_, t)| *t)
    }

    /// Marks the nodes of a finished run as free for their next fire time.
    pub fn finished(&mut self, nodes: &[String]) {
        for n in nodes {
            self.running.remove(n);
        }
    }

    /// How long to sleep until the next fire time (zero when one is due, at most [`MAX_WAIT`]).
    pub fn wait(&self) -> Duration {
        let now = self.clock.now();
        let verify = self.next_verify();
        self.next
            .values()
            .chain(verify.as_ref())
            .min()
            .map(|t| (*t - now).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(MAX_WAIT)
            .min(MAX_WAIT)
    }

    /// Takes a reloaded config: nodes are scheduled afresh, except that a node whose schedule did
    /// not change keeps its pending fire time (it may be due). Runs in flight stay in flight. On
    /// an error nothing changes.
    pub fn reload(&mut self, config: &Config, nodes: &[&NodeConfig]) -> Result<(), UsageError> {
        let old_next = self.next.clone();
        let old_schedules = self.schedules.clone();
        let old_zone = self.zone.clone();
        let old_verify = self.verify.clone();
        if let Err(e) = self.schedule(config, nodes) {
            (self.next, self.schedules, self.zone, self.verify) =
                (old_next, old_schedules, old_zone, old_verify);
            return Err(e);
        }
        if let (Some((old, t)), Some((new, next))) = (&old_verify, &mut self.verify)
            && old.as_str() == new.as_str()
        {
            *next = *t;
        }
        for (name, t) in self.next.iter_mut() {
            let unchanged = old_schedules.get(name).map(Schedule::as_str)
                == self.schedules.get(name).map(Schedule::as_str);
            if let Some(old) = old_next.get(name)
                && unchanged
            {
                *t = *old;
            }
        }
        Ok(())
    }

    /// Each scheduled node's next fire time.
    pub fn next_runs(&self) -> &BTreeMap<String, DateTime<Utc>> {
        &self.next
    }

    /// The nodes in a run now.
    pub fn running(&self) -> &BTreeSet<String> {
        &self.running
    }
}

/// Runs `batch`; a panic inside it is caught, logged and recorded (state file, metrics, hooks)
/// as a failure of every keystore of `names`, so the nodes are freed for their next fire time
/// instead of staying "running" forever. Returns whether it panicked.
pub fn guard_batch(config: &Config, names: &[String], batch: impl FnOnce()) -> bool {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    let Err(panic) = catch_unwind(AssertUnwindSafe(batch)) else {
        return false;
    };
    let message = panic_message(panic.as_ref());
    tracing::error!(nodes = ?names, "backup batch panicked: {message}; its nodes run again at their next fire time");
    let outcomes = names
        .iter()
        .filter_map(|n| config.node(n))
        .flat_map(|node| {
            node.keystores.iter().map(|ks| super::backup::KeystoreOutcome {
                node: node.name.clone(),
                keystore: ks.name.clone(),
                ok: false,
                id: None,
                size: None,
                identity: None,
                error: Some(format!("internal error: the backup panicked: {message}")),
                warnings: Vec::new(),
                identity_unchecked: None,
                unchanged: false,
                ticket: None,
            })
        })
        .collect();
    let report = super::backup::BackupReport {
        dry_run: false,
        outcomes,
    };
    if catch_unwind(AssertUnwindSafe(|| {
        super::run_state::record(config, &report, Duration::ZERO);
        // The run's start ping went out: its failure ping must follow.
        super::run::finish_hooks(config, &report, names.join(" "), Duration::ZERO);
    }))
    .is_err()
    {
        tracing::error!("recording the panicked batch panicked too");
    }
    true
}

/// Runs a scheduled verification; a panic inside it is caught and logged, so the daemon still
/// hears that it finished and starts it again at the next fire time (instead of skipping every
/// later one as "still going"). Nothing is recorded: the state and metrics keep the last
/// verification, whose `coldkeep_verify_last_run_timestamp_seconds` then stops advancing, which
/// is what a staleness alert watches. Returns whether it panicked.
pub fn guard_verify(verify: impl FnOnce()) -> bool {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    let Err(panic) = catch_unwind(AssertUnwindSafe(verify)) else {
        return false;
    };
    tracing::error!(
        "scheduled verify panicked: {}; it runs again at its next fire time",
        panic_message(panic.as_ref())
    );
    true
}

/// The text of a panic payload (`panic!` gives a `&str` or a `String`).
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::cell::Cell;
    use std::rc::Rc;

    /// A clock the test moves by hand.
    #[derive(Clone)]
    struct TestClock(Rc<Cell<DateTime<Utc>>>);

    impl TestClock {
        fn at(h: u32, m: u32, s: u32) -> TestClock {
            TestClock(Rc::new(Cell::new(
                Utc.with_ymd_and_hms(2026, 12, 1, h, m, s).unwrap(),
            )))
        }
        fn set(&self, h: u32, m: u32, s: u32) {
            self.0.set(Utc.with_ymd_and_hms(2026, 12, 1, h, m, s).unwrap());
        }
    }

    impl Clock for TestClock {
        fn now(&self) -> DateTime<Utc> {
            self.0.get()
        }
    }

    fn config(nodes: &[(&str, Option<&str>)]) -> Config {
        config_with("", nodes)
    }

    fn config_with(top: &str, nodes: &[(&str, Option<&str>)]) -> Config {
        let mut text = format!(
            "{top}timezone: UTC\nstore:\n  path: /tmp/coldkeep-scheduler-test\nencryption:\n  recipients: \
             [age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p]\nssh:\n  user: t\n  \
             identity: /nonexistent/id\n  known_hosts: /nonexistent/kh\nsigning:\n  key: \
             /nonexistent/signing_key\n  allowed_signers: /nonexistent/allowed_signers\nnodes:\n",
        );
        for (name, schedule) in nodes {
            text.push_str(&format!("  - name: {name}\n    host: 127.0.0.1\n"));
            if let Some(s) = schedule {
                text.push_str(&format!("    schedule: \"{s}\"\n"));
            }
            text.push_str("    keystores:\n      - name: p12\n        kind: p12\n        path: /k.p12\n");
        }
        Config::parse(&text, std::path::Path::new("/tmp/coldkeep.yaml")).unwrap()
    }

    #[test]
    fn the_verify_schedule_fires_once_per_time_and_never_overlaps() {
        let c = config_with("verify_schedule: \"30 4 * * *\"\n", &[("a", Some("0 4 * * *"))]);
        let clock = TestClock::at(3, 0, 0);
        let mut s = Scheduler::new(&c, &all(&c), clock.clone()).unwrap();
        assert_eq!(s.next_verify(), Some(at(4, 30, 0)));
        clock.set(4, 0, 0);
        let due = s.due();
        assert_eq!(
            (due.start.as_slice(), due.verify),
            (["a".to_string()].as_slice(), false)
        );
        assert_eq!(
            s.wait(),
            Duration::from_secs(1800),
            "the verification is the next thing to do"
        );
        clock.set(4, 30, 0);
        let due = s.due();
        assert!(due.verify && due.start.is_empty(), "{due:?}");
        assert_eq!(s.due(), Due::default(), "each fire time fires once");
        // Still verifying a day later: that fire time is skipped, not run twice.
        clock.0.set(Utc.with_ymd_and_hms(2026, 12, 2, 4, 30, 0).unwrap());
        let due = s.due();
        assert!(!due.verify && due.verify_skipped, "{due:?}");
        s.verify_finished();
        clock.0.set(Utc.with_ymd_and_hms(2026, 12, 3, 4, 30, 0).unwrap());
        assert!(s.due().verify);
    }

    #[test]
    fn a_panicking_verify_is_caught_and_the_next_fire_time_starts_it_again() {
        let c = config_with("verify_schedule: \"*/10 * * * *\"\n", &[("a", None)]);
        let clock = TestClock::at(4, 0, 0);
        let mut s = Scheduler::new(&c, &all(&c), clock.clone()).unwrap();
        clock.set(4, 10, 0);
        assert!(s.due().verify);
        // As the daemon's verify thread does: guarded, then always reports it finished.
        assert!(guard_verify(|| panic!("boom in a verify")));
        s.verify_finished();
        clock.set(4, 20, 0);
        let due = s.due();
        assert!(due.verify && !due.verify_skipped, "{due:?}");
        assert!(!guard_verify(|| {}));
    }

    #[test]
    fn a_verify_schedule_alone_is_enough_and_reload_keeps_its_pending_time() {
        let c = config_with("verify_schedule: \"0 5 * * *\"\n", &[("a", None)]);
        let clock = TestClock::at(3, 0, 0);
        let mut s = Scheduler::new(&c, &all(&c), clock.clone()).unwrap();
        assert!(s.next_runs().is_empty());
        clock.set(5, 0, 5);
        s.reload(&c, &all(&c)).unwrap();
        assert_eq!(s.next_verify(), Some(at(5, 0, 0)), "unchanged: still due");
        let c2 = config_with("verify_schedule: \"0 6 * * *\"\n", &[("a", None)]);
        s.reload(&c2, &all(&c2)).unwrap();
        assert_eq!(
            s.next_verify(),
            Some(at(6, 0, 0)),
            "changed: rescheduled from now"
        );
        // Taking the verify schedule away leaves nothing to do: refused, nothing changes.
        let none = config(&[("a", None)]);
        assert!(s.reload(&none, &all(&none)).is_err());
        assert_eq!(s.next_verify(), Some(at(6, 0, 0)));
    }

    fn all(c: &Config) -> Vec<&NodeConfig> {
        c.nodes.iter().collect()
    }

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, h, m, s).unwrap()
    }

    #[test]
    fn first_fire_times_and_the_wait_until_them() {
        let c = config(&[("a", Some("*/10 * * * *")), ("b", Some("0 4 * * *")), ("c", None)]);
        let clock = TestClock::at(3, 55, 0);
        let s = Scheduler::new(&c, &all(&c), clock.clone()).unwrap();
        assert_eq!(s.next_runs()["a"], at(4, 0, 0));
        assert_eq!(s.next_runs()["b"], at(4, 0, 0));
        assert!(!s.next_runs().contains_key("c"), "no schedule, not run");
        assert_eq!(s.wait(), Duration::from_secs(300));
        clock.set(4, 0, 30);
        assert_eq!(s.wait(), Duration::ZERO, "overdue: no sleep");
    }

    #[test]
    fn no_node_with_a_schedule_is_a_usage_error() {
        let c = config(&[("a", None)]);
        let err = Scheduler::new(&c, &all(&c), TestClock::at(0, 0, 0))
            .err()
            .unwrap();
        assert!(err.0.contains("no selected node has a schedule"), "{err}");
    }

    #[test]
    fn due_nodes_start_and_move_to_their_next_fire_time() {
        let c = config(&[("a", Some("*/10 * * * *")), ("b", Some("0 4 * * *"))]);
        let clock = TestClock::at(3, 55, 0);
        let mut s = Scheduler::new(&c, &all(&c), clock.clone()).unwrap();
        assert_eq!(s.due(), Due::default(), "nothing due before 04:00");
        clock.set(4, 0, 0);
        let due = s.due();
        assert_eq!(due.start, ["a", "b"]);
        assert!(due.skipped.is_empty());
        assert_eq!(s.next_runs()["a"], at(4, 10, 0));
        assert_eq!(
            s.next_runs()["b"],
            Utc.with_ymd_and_hms(2026, 12, 2, 4, 0, 0).unwrap()
        );
        assert_eq!(s.due(), Due::default(), "each fire time fires once");
    }

    #[test]
    fn a_node_still_running_is_skipped_not_run_twice() {
        let c = config(&[("a", Some("*/10 * * * *"))]);
        let clock = TestClock::at(4, 0, 0);
        let mut s = Scheduler::new(&c, &all(&c), clock.clone()).unwrap();
        clock.set(4, 10, 0);
        assert_eq!(s.due().start, ["a"]);
        clock.set(4, 20, 0);
        let due = s.due();
        assert!(due.start.is_empty());
        assert_eq!(due.skipped, ["a"], "the previous run is in flight");
        assert_eq!(
            s.next_runs()["a"],
            at(4, 30, 0),
            "skipping still moves the fire time on"
        );
        s.finished(&["a".into()]);
        assert!(s.running().is_empty());
        clock.set(4, 30, 0);
        assert_eq!(s.due().start, ["a"]);
    }

    #[test]
    fn reload_keeps_pending_fire_times_of_unchanged_schedules() {
        let c = config(&[("a", Some("0 4 * * *")), ("b", Some("0 4 * * *"))]);
        let clock = TestClock::at(3, 0, 0);
        let mut s = Scheduler::new(&c, &all(&c), clock.clone()).unwrap();
        // The reload comes after a's and b's 04:00 fire time passed but before the scheduler looked.
        clock.set(4, 0, 5);
        let c2 = config(&[
            ("a", Some("0 4 * * *")),
            ("b", Some("30 4 * * *")),
            ("new", Some("0 5 * * *")),
        ]);
        s.reload(&c2, &all(&c2)).unwrap();
        assert_eq!(s.next_runs()["a"], at(4, 0, 0), "unchanged: still due");
        assert_eq!(s.next_runs()["b"], at(4, 30, 0), "changed: rescheduled from now");
        assert_eq!(s.next_runs()["new"], at(5, 0, 0));
        assert_eq!(s.due().start, ["a"]);
    }

    #[test]
    fn reload_keeps_runs_in_flight_and_a_bad_reload_changes_nothing() {
        let c = config(&[("a", Some("*/10 * * * *"))]);
        let clock = TestClock::at(4, 0, 0);
        let mut s = Scheduler::new(&c, &all(&c), clock.clone()).unwrap();
        clock.set(4, 10, 0);
        assert_eq!(s.due().start, ["a"]);
        let before = s.next_runs().clone();
        let none = config(&[("a", None)]);
        assert!(s.reload(&none, &all(&none)).is_err());
        assert_eq!(s.next_runs(), &before);
        s.reload(&c, &all(&c)).unwrap();
        clock.set(4, 20, 0);
        assert_eq!(s.due().skipped, ["a"], "still in flight after a reload");
    }

    #[test]
    fn a_node_removed_by_a_reload_is_no_longer_scheduled() {
        let c = config(&[("a", Some("*/10 * * * *")), ("b", Some("*/10 * * * *"))]);
        let clock = TestClock::at(4, 0, 0);
        let mut s = Scheduler::new(&c, &all(&c), clock.clone()).unwrap();
        let c2 = config(&[("a", Some("*/10 * * * *"))]);
        s.reload(&c2, &all(&c2)).unwrap();
        clock.set(4, 10, 0);
        assert_eq!(s.due().start, ["a"]);
        assert!(!s.next_runs().contains_key("b"));
    }
}

#[cfg(test)]
mod panic_tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn a_panicking_batch_is_caught_and_recorded_as_failed() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let text = format!(
            "store:\n  path: {}\nencryption:\n  recipients: [age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p]\n\
             signing:\n  key: /nonexistent/signing_key\n  allowed_signers: /nonexistent/allowed_signers\n\
             nodes:\n  - name: n1\n    host: h\n    keystores:\n      - name: p12\n        kind: p12\n        path: /k.p12\n",
            store.display()
        );
        let mut config = Config::parse(&text, Path::new("/t.yaml")).unwrap();
        // The run state is authenticated with a key derived from the signing key.
        let signer = crate::sign::Signer::generate();
        let allowed = crate::sign::AllowedSigners::parse(&format!("t {}", signer.public_line())).unwrap();
        config.store.keys = Some(std::sync::Arc::new(crate::sign::Keys { signer, allowed }));
        let names = vec!["n1".to_string()];
        assert!(!guard_batch(&config, &names, || {}));
        assert!(guard_batch(&config, &names, || panic!("boom in a batch")));
        let state = crate::store::RunState::load(&crate::store::Store::new(&config.store)).unwrap();
        let entry = state.keystores.get("n1/p12").expect("the failure is recorded");
        assert!(entry.last_failure.is_some());
        assert!(
            entry
                .last_error
                .as_deref()
                .unwrap_or("")
                .contains("panicked: boom in a batch"),
            "{:?}",
            entry.last_error
        );
    }
}
