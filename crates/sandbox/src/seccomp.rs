//! The system calls the safe parts of this crate cannot make through `nix` or `std`:
//! installing a seccomp filter that hands chosen system calls to a supervisor
//! (`SECCOMP_RET_USER_NOTIF`), the supervisor's side of that conversation, and marking
//! descriptors close-on-exec by number (see [`set_cloexec`]).
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

/// Marks the descriptor `fd` close-on-exec (`fcntl(F_SETFD, FD_CLOEXEC)`); fails with
/// EBADF when it is not open. Takes a number rather than a `BorrowedFd` because its callers
/// hold none: they mark every descriptor the process has, whoever owns it.
pub(crate) fn set_cloexec(fd: i32) -> io::Result<()> {
    // SAFETY: F_SETFD reads and writes no memory of ours; on a descriptor that is not open
    // it fails with EBADF, and on one that is it changes only its close-on-exec flag.
    let rc = unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Starts `cmd` in a user namespace of its own whose ids 0..`range.count` are the host ids
/// of `range`, with `filters` installed just before it runs the program.
///
/// Only a process in the parent namespace may map a range of ids, and only once the child
/// exists; `Command::spawn` returns only after the child ran its program. So the child,
/// between fork and exec, leaves for a new user namespace, sends its pid on one pipe and
/// waits on another; a thread of ours reads the pid, writes the child's `uid_map` and
/// `gid_map` and lets it go on; the child then installs the filters (after `unshare`,
/// which they forbid) and runs the program.
pub(crate) fn spawn_in_user_namespace(
    cmd: &mut std::process::Command,
    range: &crate::idmap::IdRange,
    filters: Vec<seccompiler::BpfProgram>,
) -> io::Result<std::process::Child> {
    use std::os::unix::process::CommandExt;

    let (pid_read, pid_write) = nix::unistd::pipe()?;
    let (go_read, go_write) = nix::unistd::pipe()?;
    let (child_pid_write, child_go_read) = (pid_write.as_raw_fd(), go_read.as_raw_fd());
    // The child closes its copies of our ends, so that it sees EOF when we fail.
    let (our_pid_read, our_go_write) = (pid_read.as_raw_fd(), go_write.as_raw_fd());
    let (uid_map, gid_map) = (range.uid_map(), range.gid_map());
    // Dropped without writing when a map cannot be written: the child then sees EOF.
    let mapper = std::thread::spawn(move || -> io::Result<()> {
        let mut pid = [0u8; 4];
        let mut from_child = std::fs::File::from(pid_read);
        // EOF: the child failed before it got there; `spawn` reports why.
        if std::io::Read::read_exact(&mut from_child, &mut pid).is_err() {
            return Ok(());
        }
        let pid = i32::from_ne_bytes(pid);
        std::fs::write(format!("/proc/{pid}/uid_map"), &uid_map)?;
        std::fs::write(format!("/proc/{pid}/gid_map"), &gid_map)?;
        std::io::Write::write_all(&mut std::fs::File::from(go_write), b"g")?;
        Ok(())
    });
    // SAFETY: the closure runs in the child between fork and exec. It makes system calls
    // only (getpid, unshare, write, read, close, setgroups, setresgid, setresuid, prctl and
    // seccomp through `apply_filter`,
    // which builds its `sock_fprog` on the stack), allocates nothing on its success path,
    // and uses only descriptors and a filter that were moved into it and stay valid.
    unsafe {
        cmd.pre_exec(move || {
            libc::close(our_pid_read);
            libc::close(our_go_write);
            // A UTS namespace of its own too, so that it may set its host name.
            if libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWUTS) != 0 {
                return Err(io::Error::last_os_error());
            }
            let pid = libc::getpid().to_ne_bytes();
            if libc::write(child_pid_write, pid.as_ptr().cast(), pid.len()) != 4 {
                return Err(io::Error::last_os_error());
            }
            let mut go = 0u8;
            if libc::read(child_go_read, (&raw mut go).cast(), 1) != 1 {
                return Err(io::Error::from_raw_os_error(libc::EPIPE));
            }
            libc::close(child_pid_write);
            libc::close(child_go_read);
            // Become the namespace's root (host id `uid_base`): until now this process was
            // the host's root, which the new namespace does not map.
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setresgid(0, 0, 0) != 0
                || libc::setresuid(0, 0, 0) != 0
            {
                return Err(io::Error::last_os_error());
            }
            for filter in &filters {
                if seccompiler::apply_filter(filter).is_err() {
                    return Err(io::Error::from_raw_os_error(libc::EPERM));
                }
            }
            Ok(())
        });
    }
    let spawned = cmd.spawn();
    // Our copies of the child's ends: without them the mapper sees EOF if the child died.
    drop(pid_write);
    drop(go_read);
    let mapped = mapper
        .join()
        .map_err(|_| io::Error::other("the thread that maps the ids panicked"))?;
    let child = spawned?;
    mapped?;
    Ok(child)
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
