//! The system calls the safe parts of this crate cannot make through `nix` or `std`:
//! installing a seccomp filter that hands chosen system calls to a supervisor
//! (`SECCOMP_RET_USER_NOTIF`), and the supervisor's side of that conversation.
//!
//! This is the one module of the workspace with `unsafe` code. Each block is a single
//! system call on values this module owns; none keeps a pointer past the call.
//!
//! Why not a crate: `seccompiler` cannot emit `SECCOMP_RET_USER_NOTIF`, and `libseccomp`
//! links a C library at build time (and needs a static one for a static binary), for a
//! filter of a dozen instructions.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// A system call the filter hands to the supervisor, with its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Notification {
    /// Identifies the call in the answer.
    pub id: u64,
    /// The calling thread, as the supervisor's PID namespace sees it.
    pub pid: u32,
    /// The system call number.
    pub nr: i64,
    /// Its arguments.
    pub args: [u64; 6],
}

/// How the supervisor answers a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// The call returns this value, without being made.
    Value(i64),
    /// The call fails with this `errno`, without being made.
    Errno(i32),
    /// The kernel makes the call as asked.
    Continue,
}

// Classic BPF as seccomp runs it: load a word of `struct seccomp_data`, compare, return.
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JEQ_K: u16 = 0x15;
const BPF_RET_K: u16 = 0x06;
/// Offset of `nr` in `struct seccomp_data`.
const DATA_NR: u32 = 0;
/// Offset of `arch` in `struct seccomp_data`.
const DATA_ARCH: u32 = 4;

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// The filter: calls numbered `syscalls` (of this machine's architecture) go to the
/// supervisor; everything else is allowed.
fn program(syscalls: &[i64]) -> io::Result<Vec<libc::sock_filter>> {
    let n = u8::try_from(syscalls.len())
        .ok()
        .filter(|&n| n < 250)
        .ok_or_else(|| io::Error::other("too many system calls for one filter"))?;
    let mut out = vec![
        insn(BPF_LD_W_ABS, 0, 0, DATA_ARCH),
        // Another architecture (a 32-bit call on a 64-bit kernel): allowed as it is.
        insn(BPF_JMP_JEQ_K, 0, n + 1, AUDIT_ARCH),
        insn(BPF_LD_W_ABS, 0, 0, DATA_NR),
    ];
    for (i, &nr) in syscalls.iter().enumerate() {
        let nr = u32::try_from(nr).map_err(|_| io::Error::other("a negative system call"))?;
        // Jump over the remaining comparisons and the `allow` to `notify`.
        let skip = n - u8::try_from(i).unwrap_or(0);
        out.push(insn(BPF_JMP_JEQ_K, skip, 0, nr));
    }
    out.push(insn(BPF_RET_K, 0, 0, libc::SECCOMP_RET_ALLOW));
    out.push(insn(BPF_RET_K, 0, 0, libc::SECCOMP_RET_USER_NOTIF));
    Ok(out)
}

/// Sets `no_new_privs` and installs the filter on the calling thread (and everything it
/// starts from now on); returns the listener on which the supervisor receives the calls.
pub(crate) fn install(syscalls: &[i64]) -> io::Result<OwnedFd> {
    nix::sys::prctl::set_no_new_privs().map_err(io::Error::from)?;
    let mut filter = program(syscalls)?;
    let prog = libc::sock_fprog {
        len: u16::try_from(filter.len()).map_err(io::Error::other)?,
        filter: filter.as_mut_ptr(),
    };
    let flags =
        libc::c_long::try_from(libc::SECCOMP_FILTER_FLAG_NEW_LISTENER).map_err(io::Error::other)?;
    // SAFETY: `prog` points at `filter`, which outlives the call; the kernel copies it.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::c_long::from(libc::SECCOMP_SET_MODE_FILTER),
            flags,
            &raw const prog,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(io::Error::other)?;
    // SAFETY: the kernel just returned this new descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// How many bytes the kernel writes for one notification: its `struct seccomp_notif` may
/// be larger than the one this program was built with (`seccomp_unotify(2)` asks to size
/// the buffer by `SECCOMP_GET_NOTIF_SIZES`), and never smaller.
fn notification_size() -> io::Result<usize> {
    static SIZE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    if let Some(&size) = SIZE.get() {
        return Ok(size);
    }
    let mut sizes = libc::seccomp_notif_sizes {
        seccomp_notif: 0,
        seccomp_notif_resp: 0,
        seccomp_data: 0,
    };
    // SAFETY: `sizes` is a valid, writable `seccomp_notif_sizes` for the duration of the
    // call; the flags argument must be 0.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::c_long::from(libc::SECCOMP_GET_NOTIF_SIZES),
            0 as libc::c_long,
            &raw mut sizes,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let size = usize::from(sizes.seccomp_notif).max(std::mem::size_of::<libc::seccomp_notif>());
    Ok(*SIZE.get_or_init(|| size))
}

/// Receives the next call (blocks until one comes; fails with `ENOENT` when the caller
/// died in the meantime, and with `ECANCELED`-like errors when no process has the filter).
pub(crate) fn receive(listener: BorrowedFd<'_>) -> io::Result<Notification> {
    // Zeroed, as the kernel requires, and as large as the kernel's structure; u64 words
    // keep it aligned for `seccomp_notif`.
    let words = notification_size()?.div_ceil(8);
    let mut buffer = vec![0u64; words];
    // SAFETY: `buffer` is writable and at least as large as the kernel's notification for
    // the duration of the call.
    let rc = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_RECV,
            buffer.as_mut_ptr(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the buffer is aligned for and at least as large as `seccomp_notif`, whose
    // fields are plain integers the kernel filled in (any bit pattern is valid).
    let notif: libc::seccomp_notif =
        unsafe { std::ptr::read(buffer.as_ptr().cast::<libc::seccomp_notif>()) };
    Ok(Notification {
        id: notif.id,
        pid: notif.pid,
        nr: i64::from(notif.data.nr),
        args: notif.data.args,
    })
}

/// Whether the call `id` is still waiting for its answer (its caller did not die, and
/// nothing it pointed at could have been reused by another process).
pub(crate) fn still_valid(listener: BorrowedFd<'_>, id: u64) -> bool {
    let mut id = id;
    // SAFETY: `id` is a valid `u64` for the duration of the call.
    let rc = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_ID_VALID,
            &raw mut id,
        )
    };
    rc == 0
}

/// Answers the call `id`.
pub(crate) fn answer(listener: BorrowedFd<'_>, id: u64, answer: Answer) -> io::Result<()> {
    let (val, error, flags) = match answer {
        Answer::Value(v) => (v, 0, 0),
        Answer::Errno(e) => (0, -e, 0),
        Answer::Continue => (
            0,
            0,
            u32::try_from(libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE).unwrap_or(1),
        ),
    };
    let mut resp = libc::seccomp_notif_resp {
        id,
        val,
        error,
        flags,
    };
    // SAFETY: `resp` is a valid `seccomp_notif_resp` for the duration of the call.
    let rc = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SEND,
            &raw mut resp,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_jumps_to_notify_for_each_call_and_allows_the_rest() {
        let p = program(&[10, 20, 30]).unwrap();
        assert_eq!(p.len(), 3 + 3 + 2);
        // Not our architecture: straight to `allow`, the second-to-last instruction.
        assert_eq!(usize::from(p[1].jf) + 2, p.len() - 2);
        // Each comparison, when equal, lands on `notify`, the last instruction.
        for (i, index) in (3..6).enumerate() {
            assert_eq!(
                index + usize::from(p[index].jt) + 1,
                p.len() - 1,
                "call {i}"
            );
        }
        assert_eq!(p[p.len() - 1].k, libc::SECCOMP_RET_USER_NOTIF);
        assert_eq!(p[p.len() - 2].k, libc::SECCOMP_RET_ALLOW);
    }
}
