//! User and group names on the node (getpwnam_r and friends, no process spawned).
//!
//! Why: the policy names owners as `user:group` (names are what nodectl and Acra set up; ids
//! differ between hosts), and the helper reports owners with names so the agent's manifests
//! record them the way they did with `stat %U`.

use std::collections::HashMap;
use std::ffi::{CStr, CString};

/// Looks up names by id once each.
#[derive(Default)]
pub struct Names {
    users: HashMap<u32, Option<String>>,
    groups: HashMap<u32, Option<String>>,
}

impl Names {
    /// The user name of `uid`, if the node knows it.
    pub fn user(&mut self, uid: u32) -> Option<String> {
        self.users.entry(uid).or_insert_with(|| user_name(uid)).clone()
    }

    /// The group name of `gid`, if the node knows it.
    pub fn group(&mut self, gid: u32) -> Option<String> {
        self.groups.entry(gid).or_insert_with(|| group_name(gid)).clone()
    }
}

/// A buffer for the `_r` calls: grown on `ERANGE` up to 1 MiB.
fn with_buffer<T>(mut call: impl FnMut(&mut [libc::c_char]) -> Result<Option<T>, i32>) -> Option<T> {
    let mut size = 1024;
    loop {
        let mut buf = vec![0 as libc::c_char; size];
        match call(&mut buf) {
            Ok(found) => return found,
            Err(libc::ERANGE) if size < 1 << 20 => size *= 4,
            Err(_) => return None,
        }
    }
}

fn text(p: *const libc::c_char) -> Option<String> {
    if p.is_null() {
        return None;
    }
    // SAFETY: non-null pointers from getpw*/getgr* point into our buffer, NUL-terminated.
    unsafe { CStr::from_ptr(p) }.to_str().ok().map(str::to_string)
}

fn user_name(uid: u32) -> Option<String> {
    with_buffer(|buf| {
        // SAFETY: all-zero is a valid `passwd`; the pointers passed are valid for the call.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: valid pointers and the buffer's real length.
        let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut out) };
        match rc {
            0 if out.is_null() => Ok(None),
            0 => Ok(text(pwd.pw_name)),
            e => Err(e),
        }
    })
}

fn group_name(gid: u32) -> Option<String> {
    with_buffer(|buf| {
        // SAFETY: all-zero is a valid `group`; the pointers passed are valid for the call.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut out: *mut libc::group = std::ptr::null_mut();
        // SAFETY: valid pointers and the buffer's real length.
        let rc = unsafe { libc::getgrgid_r(gid, &mut grp, buf.as_mut_ptr(), buf.len(), &mut out) };
        match rc {
            0 if out.is_null() => Ok(None),
            0 => Ok(text(grp.gr_name)),
            e => Err(e),
        }
    })
}

/// The uid of a user name, if it exists.
pub fn uid_of(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    with_buffer(|buf| {
        // SAFETY: all-zero is a valid `passwd`; the pointers passed are valid for the call.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: valid pointers and the buffer's real length.
        let rc = unsafe { libc::getpwnam_r(c.as_ptr(), &mut pwd, buf.as_mut_ptr(), buf.len(), &mut out) };
        match rc {
            0 if out.is_null() => Ok(None),
            0 => Ok(Some(pwd.pw_uid)),
            e => Err(e),
        }
    })
}

/// The gid of a group name, if it exists.
pub fn gid_of(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    with_buffer(|buf| {
        // SAFETY: all-zero is a valid `group`; the pointers passed are valid for the call.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut out: *mut libc::group = std::ptr::null_mut();
        // SAFETY: valid pointers and the buffer's real length.
        let rc = unsafe { libc::getgrnam_r(c.as_ptr(), &mut grp, buf.as_mut_ptr(), buf.len(), &mut out) };
        match rc {
            0 if out.is_null() => Ok(None),
            0 => Ok(Some(grp.gr_gid)),
            e => Err(e),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_found_both_ways_and_a_missing_name_is_none() {
        assert_eq!(uid_of("root"), Some(0));
        assert_eq!(gid_of("root"), Some(0));
        let mut names = Names::default();
        assert_eq!(names.user(0).as_deref(), Some("root"));
        assert_eq!(names.group(0).as_deref(), Some("root"));
        assert_eq!(uid_of("coldkeep-no-such-user"), None);
        assert_eq!(names.user(4_000_000_000), None);
    }
}
