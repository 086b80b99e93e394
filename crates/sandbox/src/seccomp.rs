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
    // SAFETY: `prog` points at `filter`, which outlives the call; the kernel copies it.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
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

/// Receives the next call (blocks until one comes; fails with `ENOENT` when the caller
/// died in the meantime, and with `ECANCELED`-like errors when no process has the filter).
pub(crate) fn receive(listener: BorrowedFd<'_>) -> io::Result<Notification> {
    // SAFETY: an all-zero `seccomp_notif` is valid (plain integers), and the kernel
    // requires the buffer to be zeroed.
    let mut notif: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: `notif` is a valid, writable `seccomp_notif` for the duration of the call.
    let rc = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_RECV,
            &raw mut notif,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
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
