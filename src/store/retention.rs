//! Retention with restic's `forget` semantics, per keystore.
//!
//! Artifacts are taken newest first. `keep_last n` keeps the n newest. `keep_hourly n` keeps the
//! newest artifact of each of the n most recent hours that have one; daily, weekly (ISO weeks),
//! monthly and yearly likewise. An artifact kept by several rules lists every reason. Never
//! removed whatever the policy: the newest backup, the newest one whose copies check out, and
//! the newest intact one whose identity was checked when it was stored (so a run of backups
//! marked "identity not checked", a P12 password gone stale, never prunes the last one known
//! to open).
//! `pre-restore` artifacts are kept unless `keep_pre_restore` is set (then the n newest).

use crate::config::Retention;
use crate::schedule::Zone;
use chrono::{DateTime, Datelike, NaiveDateTime, Timelike, Utc};
use serde::Serialize;

/// What the planner needs to know about one artifact.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The artifact id.
    pub id: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// Whether it is a pre-restore artifact.
    pub pre_restore: bool,
    /// Every copy is present and its ciphertext matches its sidecar.
    pub intact: bool,
    /// Its identity was checked when it was stored (not marked `identity_unchecked`).
    pub checked: bool,
}

/// The decision for one artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The artifact id.
    pub id: String,
    /// Kept (true) or removed.
    pub keep: bool,
    /// Why it is kept (`last 3`, `daily`, `newest`, ...); empty when it goes.
    pub reasons: Vec<String>,
}

/// Decides, for one keystore's artifacts (any order), which to keep and why. With no rule set
/// for regular backups every backup is kept.
pub fn plan(policy: &Retention, candidates: &[Candidate], zone: &Zone) -> Vec<Decision> {
    let mut sorted: Vec<&Candidate> = candidates.iter().collect();
    sorted.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
    let mut reasons: Vec<Vec<String>> = vec![Vec::new(); sorted.len()];

    let backups: Vec<usize> = (0..sorted.len()).filter(|&i| !sorted[i].pre_restore).collect();
    if let Some(&newest) = backups.first() {
        reasons[newest].push("newest".into());
    }
    if let Some(&i) = backups.iter().find(|&&i| sorted[i].intact) {
        reasons[i].push("newest intact".into());
    }
    if let Some(&i) = backups.iter().find(|&&i| sorted[i].intact && sorted[i].checked) {
        reasons[i].push("newest checked".into());
    }
    if !policy.is_set() {
        for &i in &backups {
            reasons[i].push("no retention policy".into());
        }
    }
    if let Some(n) = policy.keep_last {
        for &i in backups.iter().take(n as usize) {
            reasons[i].push(format!("last {n}"));
        }
    }
    type Bucket = fn(NaiveDateTime) -> (i32, u32, u32, u32);
    let rules: [(Option<u32>, &str, Bucket); 5] = [
        (policy.keep_hourly, "hourly", |t| {
            (t.year(), t.ordinal(), t.hour(), 0)
        }),
        (policy.keep_daily, "daily", |t| (t.year(), t.ordinal(), 0, 0)),
        (policy.keep_weekly, "weekly", |t| {
            let w = t.iso_week();
            (w.year(), w.week(), 0, 0)
        }),
        (policy.keep_monthly, "monthly", |t| (t.year(), t.month(), 0, 0)),
        (policy.keep_yearly, "yearly", |t| (t.year(), 0, 0, 0)),
    ];
    for (count, name, bucket) in rules {
        let Some(n) = count else { continue };
        let mut last = None;
        let mut used = 0;
        for &i in &backups {
            if used >= n {
                break;
            }
            let b = bucket(zone.wall_clock(sorted[i].created_at));
            if last != Some(b) {
                reasons[i].push(name.to_string());
                last = Some(b);
                used += 1;
            }
        }
    }
    let pre: Vec<usize> = (0..sorted.len()).filter(|&i| sorted[i].pre_restore).collect();
    match policy.keep_pre_restore {
        None => pre
            .iter()
            .for_each(|&i| reasons[i].push("pre-restore (kept)".into())),
        Some(n) => pre
            .iter()
            .take(n as usize)
            .for_each(|&i| reasons[i].push(format!("pre-restore, last {n}"))),
    }
    sorted
        .iter()
        .zip(reasons)
        .map(|(c, reasons)| Decision {
            id: c.id.clone(),
            keep: !reasons.is_empty(),
            reasons,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn c(id: &str, y: i32, mo: u32, d: u32, h: u32) -> Candidate {
        Candidate {
            id: id.into(),
            created_at: Utc.with_ymd_and_hms(y, mo, d, h, 0, 0).unwrap(),
            pre_restore: false,
            intact: true,
            checked: true,
        }
    }

    /// The kept ids with their reasons, newest first; the removed ids.
    fn run(policy: Retention, cands: &[Candidate]) -> (Vec<(String, String)>, Vec<String>) {
        let d = plan(&policy, cands, &Zone::Utc);
        let kept = d
            .iter()
            .filter(|d| d.keep)
            .map(|d| (d.id.clone(), d.reasons.join(",")))
            .collect();
        let gone = d.iter().filter(|d| !d.keep).map(|d| d.id.clone()).collect();
        (kept, gone)
    }

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    /// Two a day on 2026-11-20..23 (10:00 and 22:00), oldest first: a..h.
    fn twice_daily() -> Vec<Candidate> {
        let mut v = Vec::new();
        let ids = ["a", "b", "c", "d", "e", "f", "g", "h"];
        for (k, id) in ids.iter().enumerate() {
            v.push(c(
                id,
                2026,
                11,
                20 + (k / 2) as u32,
                if k % 2 == 0 { 10 } else { 22 },
            ));
        }
        v
    }

    #[test]
    fn no_policy_keeps_everything() {
        let (kept, gone) = run(Retention::default(), &twice_daily());
        assert_eq!(kept.len(), 8);
        assert!(gone.is_empty());
    }

    #[test]
    fn keep_last() {
        let policy = Retention {
            keep_last: Some(3),
            ..Default::default()
        };
        let (kept, gone) = run(policy, &twice_daily());
        assert_eq!(
            kept,
            kv(&[
                ("h", "newest,newest intact,newest checked,last 3"),
                ("g", "last 3"),
                ("f", "last 3")
            ])
        );
        assert_eq!(gone, vec!["e", "d", "c", "b", "a"]);
    }

    #[test]
    fn keep_daily_takes_the_newest_of_each_day() {
        let policy = Retention {
            keep_daily: Some(3),
            ..Default::default()
        };
        let (kept, gone) = run(policy, &twice_daily());
        assert_eq!(
            kept,
            kv(&[
                ("h", "newest,newest intact,newest checked,daily"),
                ("f", "daily"),
                ("d", "daily")
            ])
        );
        assert_eq!(gone, vec!["g", "e", "c", "b", "a"]);
    }

    #[test]
    fn hourly_weekly_monthly_yearly() {
        // 2026-11-23 is a Monday: the 20th-22nd are in ISO week 47, the 23rd in week 48.
        let cands = twice_daily();
        let policy = Retention {
            keep_hourly: Some(2),
            ..Default::default()
        };
        assert_eq!(run(policy, &cands).0.len(), 2);
        let policy = Retention {
            keep_weekly: Some(5),
            ..Default::default()
        };
        assert_eq!(
            run(policy, &cands).0,
            kv(&[
                ("h", "newest,newest intact,newest checked,weekly"),
                ("f", "weekly")
            ])
        );
        let years = vec![
            c("y1", 2024, 12, 31, 0),
            c("y2", 2025, 6, 1, 0),
            c("y3", 2025, 12, 1, 0),
            c("y4", 2026, 1, 1, 0),
        ];
        let policy = Retention {
            keep_monthly: Some(2),
            keep_yearly: Some(3),
            ..Default::default()
        };
        let (kept, gone) = run(policy, &years);
        assert_eq!(
            kept,
            kv(&[
                ("y4", "newest,newest intact,newest checked,monthly,yearly"),
                ("y3", "monthly,yearly"),
                ("y1", "yearly")
            ])
        );
        assert_eq!(gone, vec!["y2"]);
    }

    #[test]
    fn combined_rules_and_the_newest_intact_is_never_removed() {
        let mut cands = twice_daily();
        // The three newest are damaged: the newest intact one (e) stays whatever the policy.
        for c in cands.iter_mut().skip(5) {
            c.intact = false;
        }
        let policy = Retention {
            keep_last: Some(1),
            keep_daily: Some(2),
            ..Default::default()
        };
        let (kept, gone) = run(policy, &cands);
        assert_eq!(
            kept,
            kv(&[
                ("h", "newest,last 1,daily"),
                ("f", "daily"),
                ("e", "newest intact,newest checked")
            ])
        );
        assert_eq!(gone, vec!["g", "d", "c", "b", "a"]);
    }

    #[test]
    fn the_newest_backup_whose_identity_was_checked_is_never_removed() {
        let mut cands = twice_daily();
        // The five newest were stored without their identity checked (a P12 password gone
        // stale), and the newest checked one (c) is damaged: b stays whatever the policy.
        for c in cands.iter_mut().skip(3) {
            c.checked = false;
        }
        cands[2].intact = false;
        let policy = Retention {
            keep_last: Some(1),
            ..Default::default()
        };
        let (kept, gone) = run(policy, &cands);
        assert_eq!(
            kept,
            kv(&[("h", "newest,newest intact,last 1"), ("b", "newest checked")])
        );
        assert_eq!(gone, vec!["g", "f", "e", "d", "c", "a"]);
    }

    #[test]
    fn pre_restore_artifacts_follow_their_own_rule() {
        let mut cands = twice_daily();
        cands[0].pre_restore = true;
        cands[1].pre_restore = true;
        let policy = Retention {
            keep_last: Some(1),
            ..Default::default()
        };
        let (kept, _) = run(policy.clone(), &cands);
        assert!(kept.iter().any(|(id, r)| id == "a" && r == "pre-restore (kept)"));
        let policy = Retention {
            keep_pre_restore: Some(1),
            ..policy
        };
        let (kept, gone) = run(policy, &cands);
        assert!(kept.iter().any(|(id, r)| id == "b" && r == "pre-restore, last 1"));
        assert!(gone.contains(&"a".to_string()));
    }
}
