//! User and group names for releases whose job record carries only ids (before
//! 23.11's identity). Looked up with getpwuid_r / getgrgid_r on the delivery
//! thread -- never on the hot path, since a name-service lookup can block on the
//! network (LDAP, SSSD) -- and cached, because one user runs many jobs.

use std::collections::HashMap;
use std::ffi::CStr;
use std::time::{Duration, Instant};

/// Names are re-resolved after this long, so that a renamed account shows up
/// without a restart.
const TTL: Duration = Duration::from_secs(600);

#[derive(Default)]
pub struct NameCache {
    users: HashMap<u32, (Option<Vec<u8>>, Instant)>,
    groups: HashMap<u32, (Option<Vec<u8>>, Instant)>,
}

impl NameCache {
    pub fn user(&mut self, uid: u32) -> Option<Vec<u8>> {
        cached(&mut self.users, uid, lookup_user)
    }

    pub fn group(&mut self, gid: u32) -> Option<Vec<u8>> {
        cached(&mut self.groups, gid, lookup_group)
    }
}

fn cached(
    map: &mut HashMap<u32, (Option<Vec<u8>>, Instant)>,
    id: u32,
    lookup: fn(u32) -> Option<Vec<u8>>,
) -> Option<Vec<u8>> {
    if let Some((name, at)) = map.get(&id) {
        if at.elapsed() < TTL {
            return name.clone();
        }
    }
    let name = lookup(id);
    map.insert(id, (name.clone(), Instant::now()));
    name
}

fn lookup_user(uid: u32) -> Option<Vec<u8>> {
    // SAFETY: getpwuid_r fills `entry` with pointers into `buffer` only.
    lookup(|entry: &mut libc::passwd, buffer, result| unsafe {
        libc::getpwuid_r(uid, entry, buffer.as_mut_ptr().cast(), buffer.len(), result)
    }, |entry| entry.pw_name)
}

fn lookup_group(gid: u32) -> Option<Vec<u8>> {
    // SAFETY: getgrgid_r fills `entry` with pointers into `buffer` only.
    lookup(|entry: &mut libc::group, buffer, result| unsafe {
        libc::getgrgid_r(gid, entry, buffer.as_mut_ptr().cast(), buffer.len(), result)
    }, |entry| entry.gr_name)
}

/// Runs a reentrant NSS call (`get*_r`), growing its buffer on ERANGE, and
/// copies the name out of the entry it fills.
fn lookup<E>(
    call: impl Fn(&mut E, &mut [u8], &mut *mut E) -> libc::c_int,
    name_of: impl Fn(&E) -> *const libc::c_char,
) -> Option<Vec<u8>> {
    let mut buffer = vec![0u8; 1024];
    loop {
        // SAFETY: the passwd/group structs are plain C data; all-zero is valid.
        let mut entry: E = unsafe { std::mem::zeroed() };
        let mut result: *mut E = std::ptr::null_mut();
        let rc = call(&mut entry, &mut buffer, &mut result);
        if rc == libc::ERANGE && buffer.len() < 1 << 20 {
            buffer.resize(buffer.len() * 4, 0);
            continue;
        }
        let name = name_of(&entry);
        if rc != 0 || result.is_null() || name.is_null() {
            return None;
        }
        // SAFETY: a found entry's name is a NUL-terminated string inside `buffer`.
        return Some(unsafe { CStr::from_ptr(name) }.to_bytes().to_vec());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_resolves_and_unknown_ids_do_not() {
        let mut cache = NameCache::default();
        assert_eq!(cache.user(0).as_deref(), Some(&b"root"[..]));
        assert_eq!(cache.group(0).as_deref(), Some(&b"root"[..]));
        assert_eq!(cache.user(3_999_999_999), None);
        assert_eq!(cache.group(3_999_999_999), None);
        // Cached answers are the same answers.
        assert_eq!(cache.user(0).as_deref(), Some(&b"root"[..]));
    }
}
