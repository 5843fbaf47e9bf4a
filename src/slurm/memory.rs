//! How the job readers dereference slurmctld's pointers: trusted (plain loads,
//! the hot path once the layout is verified) or checked (every byte first
//! copied with process_vm_readv on the plugin's own process, which fails with
//! EFAULT instead of faulting; the layout guard's reads).

use crate::guard::{Check, Refusal, STRING_BOUND};
use std::ffi::{c_char, c_void, CStr};
use std::sync::atomic::{AtomicBool, Ordering};

/// Dereferences for a job reader. `Ok(None)` is a NULL pointer.
///
/// # Safety
/// With [`Trusted`], every pointer must be valid for what it is read as (the
/// layout is right); with [`Checked`], any pointer value is fine.
pub trait Memory {
    /// True for the checked reads (the guard's extra checks run only then).
    const CHECKED: bool;

    /// The `T` at `ptr`.
    ///
    /// # Safety
    /// See the trait.
    unsafe fn get<'a, T>(&self, ptr: *const T, field: &'static str) -> Result<Option<&'a T>, Refusal>;

    /// The NUL-terminated string at `ptr`, without its NUL.
    ///
    /// # Safety
    /// See the trait.
    unsafe fn string<'a>(&self, ptr: *const c_char, field: &'static str) -> Result<Option<&'a [u8]>, Refusal>;

    /// `len` elements at `ptr`.
    ///
    /// # Safety
    /// See the trait.
    unsafe fn slice<'a, T>(&self, ptr: *const T, len: usize, field: &'static str) -> Result<Option<&'a [T]>, Refusal>;
}

/// Plain loads: no system call, no check beyond NULL.
pub struct Trusted;

impl Memory for Trusted {
    const CHECKED: bool = false;

    #[inline(always)]
    unsafe fn get<'a, T>(&self, ptr: *const T, _field: &'static str) -> Result<Option<&'a T>, Refusal> {
        Ok(ptr.as_ref())
    }

    #[inline(always)]
    unsafe fn string<'a>(&self, ptr: *const c_char, _field: &'static str) -> Result<Option<&'a [u8]>, Refusal> {
        Ok((!ptr.is_null()).then(|| CStr::from_ptr(ptr).to_bytes()))
    }

    #[inline(always)]
    unsafe fn slice<'a, T>(&self, ptr: *const T, len: usize, _field: &'static str) -> Result<Option<&'a [T]>, Refusal> {
        Ok((!ptr.is_null()).then(|| std::slice::from_raw_parts(ptr, len)))
    }
}

/// Reads that cannot fault: each range is first copied out of the process's
/// own memory by the kernel, page by page; a range that is not readable is a
/// refusal, not a SIGSEGV. A pointer is borrowed only after its whole range
/// (and a string's NUL) was read that way. Several system calls per record:
/// the guard's first records only, never the hot path.
pub struct Checked;

const PAGE: usize = 4096;

impl Memory for Checked {
    const CHECKED: bool = true;

    unsafe fn get<'a, T>(&self, ptr: *const T, field: &'static str) -> Result<Option<&'a T>, Refusal> {
        self.slice(ptr, 1, field).map(|s| s.map(|s| &s[0]))
    }

    unsafe fn string<'a>(&self, ptr: *const c_char, field: &'static str) -> Result<Option<&'a [u8]>, Refusal> {
        if ptr.is_null() {
            return Ok(None);
        }
        let start = ptr as usize;
        let mut at = start;
        let mut chunk = [0u8; PAGE];
        while at - start < STRING_BOUND {
            // Up to the end of the page: a page is readable or not as a whole.
            let len = PAGE - at % PAGE;
            if !copy_out(at, &mut chunk[..len]) {
                return Err(Refusal::new(Check::Unreadable, field));
            }
            if let Some(nul) = chunk[..len].iter().position(|b| *b == 0) {
                let length = at - start + nul;
                return Ok(Some(std::slice::from_raw_parts(ptr as *const u8, length)));
            }
            at += len;
        }
        Err(Refusal::new(Check::Unterminated, field))
    }

    unsafe fn slice<'a, T>(&self, ptr: *const T, len: usize, field: &'static str) -> Result<Option<&'a [T]>, Refusal> {
        if ptr.is_null() {
            return Ok(None);
        }
        if !(ptr as usize).is_multiple_of(std::mem::align_of::<T>()) {
            return Err(Refusal::new(Check::Misaligned, field));
        }
        let bytes = std::mem::size_of::<T>()
            .checked_mul(len)
            .filter(|b| (ptr as usize).checked_add(*b).is_some())
            .ok_or(Refusal::new(Check::Unreadable, field))?;
        if !readable(ptr as usize, bytes) {
            return Err(Refusal::new(Check::Unreadable, field));
        }
        Ok(Some(std::slice::from_raw_parts(ptr, len)))
    }
}

/// True when `len` bytes from `address` can be read without a fault.
pub fn readable(address: usize, len: usize) -> bool {
    let Some(end) = address.checked_add(len) else { return false };
    let mut chunk = [0u8; PAGE];
    let mut at = address;
    while at < end {
        let n = (PAGE - at % PAGE).min(end - at);
        if !copy_out(at, &mut chunk[..n]) {
            return false;
        }
        at += n;
    }
    true
}

/// Set when process_vm_readv is not available (seccomp, an old gVisor):
/// the pipe fallback is used from then on.
static NO_VM_READV: AtomicBool = AtomicBool::new(false);

/// Copies `buffer.len()` bytes at `address` of this process into `buffer`;
/// false when they are not all readable. Never faults.
fn copy_out(address: usize, buffer: &mut [u8]) -> bool {
    if buffer.is_empty() {
        return true;
    }
    if !NO_VM_READV.load(Ordering::Relaxed) {
        let local = libc::iovec { iov_base: buffer.as_mut_ptr() as *mut c_void, iov_len: buffer.len() };
        let remote = libc::iovec { iov_base: address as *mut c_void, iov_len: buffer.len() };
        // SAFETY: the kernel writes at most buffer.len() bytes into buffer and
        // reports an unreadable remote range as EFAULT.
        let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
        if n >= 0 {
            return n as usize == buffer.len();
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::ENOSYS) | Some(libc::EPERM) => NO_VM_READV.store(true, Ordering::Relaxed),
            _ => return false,
        }
    }
    copy_out_through_pipe(address, buffer)
}

/// The fallback: write(2) from the address into a pipe (EFAULT when it is not
/// readable), then read the bytes back.
fn copy_out_through_pipe(address: usize, buffer: &mut [u8]) -> bool {
    let mut fds = [0; 2];
    // SAFETY: plain system calls on descriptors this function owns; write reads
    // from `address` in the kernel, which reports EFAULT rather than faulting.
    unsafe {
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return false;
        }
        let written = libc::write(fds[1], address as *const c_void, buffer.len());
        let ok = written == buffer.len() as isize
            && libc::read(fds[0], buffer.as_mut_ptr() as *mut c_void, buffer.len()) == written;
        libc::close(fds[0]);
        libc::close(fds[1]);
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_reads_refuse_what_is_not_readable() {
        let text = b"abc\0".to_vec();
        let s = unsafe { Checked.string(text.as_ptr() as *const c_char, "t") };
        assert_eq!(s, Ok(Some(&b"abc"[..])));
        assert_eq!(unsafe { Checked.string(std::ptr::null(), "t") }, Ok(None));
        let unmapped = 16 as *const c_char;
        assert_eq!(unsafe { Checked.string(unmapped, "t") }, Err(Refusal::new(Check::Unreadable, "t")));
        let value = 5u64;
        assert_eq!(unsafe { Checked.get(&value as *const u64, "v") }, Ok(Some(&5)));
        let odd = (&value as *const u64 as usize + 1) as *const u64;
        assert_eq!(unsafe { Checked.get(odd, "v") }, Err(Refusal::new(Check::Misaligned, "v")));
        assert_eq!(unsafe { Checked.get(0x1000 as *const u64, "v") }, Err(Refusal::new(Check::Unreadable, "v")));
        assert!(!readable(usize::MAX - 3, 8));
    }

    #[test]
    fn strings_are_bounded_and_may_cross_pages() {
        // A page-crossing string is read whole.
        let mut long = vec![b'x'; 3 * PAGE];
        long.push(0);
        let s = unsafe { Checked.string(long.as_ptr().add(100) as *const c_char, "t") }.unwrap().unwrap();
        assert_eq!(s.len(), 3 * PAGE - 100);
        // No NUL within the bound: refused, the bytes after it are never read.
        let unterminated = vec![b'y'; STRING_BOUND + PAGE];
        let r = unsafe { Checked.string(unterminated.as_ptr() as *const c_char, "t") };
        assert_eq!(r, Err(Refusal::new(Check::Unterminated, "t")));
    }

    #[test]
    fn the_pipe_fallback_refuses_the_same() {
        let value = *b"12345678";
        let mut out = [0u8; 8];
        assert!(copy_out_through_pipe(value.as_ptr() as usize, &mut out));
        assert_eq!(out, value);
        assert!(!copy_out_through_pipe(0x1000, &mut out));
    }
}
