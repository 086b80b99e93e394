//! A fake root without `fakeroot`: a script runs as root of a user namespace, and the calls
//! the kernel would refuse there — `chown` to an id the namespace does not map, `mknod` of
//! a device — are answered by a supervisor that records what was asked instead of doing
//! it, as fakeroot records them. The layer is then read back with those records
//! (`buildimage_layer::Tree::from_staged`).
//!
//! The calls reach the supervisor through a seccomp filter (`SECCOMP_RET_USER_NOTIF`,
//! see [`crate::seccomp`]), so this works for static binaries too (which fakeroot's
//! `LD_PRELOAD` cannot reach), as root and as an ordinary user alike:
//!
//! - `chown`, `lchown`, `fchown`, `fchownat`: the new owner and group are recorded for
//!   the object (by device and inode, so renames and hard links keep them) and the call
//!   succeeds; the file on disk keeps its owner, and keeps its mode as fakeroot does. A
//!   `chown` that changes nothing is made for real first, so that over an overlay
//!   (`runAsRoot` without real root) the object is copied up into the upper folder.
//! - `mknod`, `mknodat` of a character or block device: an empty regular file with the
//!   asked permission bits (less the umask) takes its place, recorded as that device. Any
//!   other `mknod` (fifos, files, the whiteout device 0/0) is made by the kernel as asked.
//! - `unlink`, `unlinkat`, `rmdir`, `rename`, `renameat`, `renameat2`: made by the kernel,
//!   but first the record of the object whose last name goes is dropped, since the file
//!   system may give its inode number to the next file the script makes.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

use nix::fcntl::{AtFlags, OFlag, open, openat};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::stat::{Mode, SFlag, fchmod, fstatat, major, minor};
use nix::unistd::{chown, fchownat};
use serde::{Deserialize, Serialize};

use buildimage_layer::Cancel;

use crate::seccomp::{self, Answer, Notification};

/// How long the supervisor waits for a call before it looks whether the script ended.
const POLL_MS: u16 = 20;

/// The longest path read from the script's memory (Linux's `PATH_MAX`).
const PATH_MAX: usize = 4096;

/// `AT_FDCWD` as it arrives in a system call's argument.
const AT_FDCWD: i32 = -100;

/// What the calls made of one object, as it crosses from the sandbox to the caller.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    /// Device of the object.
    pub dev: u64,
    /// Inode of the object.
    pub ino: u64,
    /// The owner given by `chown`.
    pub uid: Option<u32>,
    /// The group given by `chown`.
    pub gid: Option<u32>,
    /// The device `mknod` asked for: (character device?, major, minor).
    pub device: Option<(bool, u32, u32)>,
}

/// The system calls the filter hands to the supervisor on this architecture.
fn intercepted() -> Vec<i64> {
    #[cfg(target_arch = "x86_64")]
    let calls = vec![
        libc::SYS_chown,
        libc::SYS_lchown,
        libc::SYS_fchown,
        libc::SYS_fchownat,
        libc::SYS_mknod,
        libc::SYS_mknodat,
        libc::SYS_unlink,
        libc::SYS_unlinkat,
        libc::SYS_rmdir,
        libc::SYS_rename,
        libc::SYS_renameat,
        libc::SYS_renameat2,
    ];
    #[cfg(target_arch = "aarch64")]
    let calls = vec![
        libc::SYS_fchown,
        libc::SYS_fchownat,
        libc::SYS_mknodat,
        libc::SYS_unlinkat,
        libc::SYS_renameat,
        libc::SYS_renameat2,
    ];
    calls
}

/// Starts `cmd` with the filter: it is installed on a thread of its own, which starts the
/// command (the child inherits the filter) and ends, so that the supervisor itself is not
/// filtered. Returns the child and the listener.
///
/// With `userns`, the command starts in a user namespace of its own that maps that range
/// of host ids, and installs those filters once there
/// ([`seccomp::spawn_in_user_namespace`]).
pub(crate) fn spawn(
    mut cmd: Command,
    userns: Option<(crate::idmap::IdRange, Vec<seccompiler::BpfProgram>)>,
) -> io::Result<(Child, OwnedFd)> {
    std::thread::spawn(move || {
        let listener = seccomp::install(&intercepted())?;
        let child = match userns {
            Some((range, filters)) => seccomp::spawn_in_user_namespace(&mut cmd, &range, filters)?,
            None => cmd.spawn()?,
        };
        Ok((child, listener))
    })
    .join()
    .map_err(|_| io::Error::other("the thread that starts the script panicked"))?
}

/// How the supervised script ended.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ended {
    /// It exited or was killed by a signal.
    Status(ExitStatus),
    /// `stop` was set: it was killed.
    Stopped,
}

/// Answers the calls of `child` and of everything it starts, until it ends (or `stop` is
/// set, when it is killed); returns how it ended and what the calls recorded.
pub(crate) fn supervise(
    child: &mut Child,
    listener: &OwnedFd,
    stop: &Cancel,
    kill: &dyn Fn(&mut Child),
) -> io::Result<(Ended, Vec<Record>)> {
    let mut records: BTreeMap<(u64, u64), Record> = BTreeMap::new();
    loop {
        if let Some(status) = child.try_wait()? {
            // Calls still waiting come from what the script left running; it is killed
            // with it.
            drain(listener, &mut records);
            return Ok((Ended::Status(status), records.into_values().collect()));
        }
        if stop.is_cancelled() {
            kill(child);
            child.wait()?;
            return Ok((Ended::Stopped, records.into_values().collect()));
        }
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(POLL_MS)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(e.into()),
        }
        let ready = fds[0].revents().unwrap_or(PollFlags::empty());
        if ready.contains(PollFlags::POLLIN) {
            handle_one(listener, &mut records);
        } else if ready.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) {
            // No process has the filter any more: the child is gone or going.
            std::thread::sleep(Duration::from_millis(u64::from(POLL_MS)));
        }
    }
}

/// Answers calls already waiting, without blocking.
fn drain(listener: &OwnedFd, records: &mut BTreeMap<(u64, u64), Record>) {
    loop {
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::ZERO) {
            Ok(n) if n > 0 => {
                let ready = fds[0].revents().unwrap_or(PollFlags::empty());
                if !ready.contains(PollFlags::POLLIN) {
                    return;
                }
                handle_one(listener, records);
            }
            _ => return,
        }
    }
}

/// Receives one call and answers it.
fn handle_one(listener: &OwnedFd, records: &mut BTreeMap<(u64, u64), Record>) {
    // A caller that died before we read its call is not an error of ours.
    let Ok(call) = seccomp::receive(listener.as_fd()) else {
        return;
    };
    let answer =
        handle(&call, listener, records).unwrap_or_else(|errno| Answer::Errno(errno as i32));
    // A caller that died before the answer is not an error either.
    let _ = seccomp::answer(listener.as_fd(), call.id, answer);
}

/// What one call does; `Err` is the `errno` the call fails with.
fn handle(
    call: &Notification,
    listener: &OwnedFd,
    records: &mut BTreeMap<(u64, u64), Record>,
) -> Result<Answer, nix::errno::Errno> {
    use nix::errno::Errno;
    let arg = |i: usize| call.args[i];
    // File descriptors and flags are C ints in the calls' arguments.
    #[allow(clippy::cast_possible_wrap)]
    let int = |i: usize| arg(i) as u32 as i32;
    let (object, owner) = match call.nr {
        #[cfg(target_arch = "x86_64")]
        nr if nr == libc::SYS_chown || nr == libc::SYS_lchown => {
            let path = read_path(call.pid, arg(0))?;
            let follow = nr == libc::SYS_chown;
            (Target::At(AT_FDCWD, path, follow), (arg(1), arg(2)))
        }
        nr if nr == libc::SYS_fchown => (Target::Fd(int(0)), (arg(1), arg(2))),
        nr if nr == libc::SYS_fchownat => {
            let path = read_path(call.pid, arg(1))?;
            let flags = AtFlags::from_bits_truncate(int(4));
            let target = if path.is_empty() && flags.contains(AtFlags::AT_EMPTY_PATH) {
                Target::Fd(int(0))
            } else {
                Target::At(int(0), path, !flags.contains(AtFlags::AT_SYMLINK_NOFOLLOW))
            };
            (target, (arg(2), arg(3)))
        }
        #[cfg(target_arch = "x86_64")]
        nr if nr == libc::SYS_mknod => {
            let path = read_path(call.pid, arg(0))?;
            return mknod(call, listener, records, AT_FDCWD, &path, arg(1), arg(2));
        }
        nr if nr == libc::SYS_mknodat => {
            let path = read_path(call.pid, arg(1))?;
            return mknod(call, listener, records, int(0), &path, arg(2), arg(3));
        }
        #[cfg(target_arch = "x86_64")]
        nr if nr == libc::SYS_unlink || nr == libc::SYS_rmdir => {
            forget(call.pid, AT_FDCWD, arg(0), records);
            return Ok(Answer::Continue);
        }
        nr if nr == libc::SYS_unlinkat => {
            forget(call.pid, int(0), arg(1), records);
            return Ok(Answer::Continue);
        }
        // What a rename removes is the object it replaces at the new name.
        #[cfg(target_arch = "x86_64")]
        nr if nr == libc::SYS_rename => {
            forget(call.pid, AT_FDCWD, arg(1), records);
            return Ok(Answer::Continue);
        }
        nr if nr == libc::SYS_renameat => {
            forget(call.pid, int(2), arg(3), records);
            return Ok(Answer::Continue);
        }
        nr if nr == libc::SYS_renameat2 => {
            // RENAME_EXCHANGE swaps two names: nothing goes.
            if arg(4) & u64::from(libc::RENAME_EXCHANGE) == 0 {
                forget(call.pid, int(2), arg(3), records);
            }
            return Ok(Answer::Continue);
        }
        _ => return Ok(Answer::Continue),
    };
    if !seccomp::still_valid(listener.as_fd(), call.id) {
        return Err(Errno::ESRCH);
    }
    object.copy_up(call.pid);
    let (dev, ino) = object.identity(call.pid)?;
    let record = records.entry((dev, ino)).or_insert(Record {
        dev,
        ino,
        ..Record::default()
    });
    // -1 leaves the owner or group as it is.
    let id = |v: u64| {
        u32::try_from(v & 0xffff_ffff)
            .ok()
            .filter(|&v| v != u32::MAX)
    };
    if let Some(uid) = id(owner.0) {
        record.uid = Some(uid);
    }
    if let Some(gid) = id(owner.1) {
        record.gid = Some(gid);
    }
    Ok(Answer::Value(0))
}

/// Before a call removes the name `path` (relative to the caller's `dirfd`): drops the
/// record of the object it names when that is its last name (a folder has only one), so
/// that a later object given the same inode number starts without one. The call itself is
/// the kernel's; when the name cannot be looked up here, it will fail there too.
fn forget(pid: u32, dirfd: i32, address: u64, records: &mut BTreeMap<(u64, u64), Record>) {
    let Ok(path) = read_path(pid, address) else {
        return;
    };
    let Ok(base) = open_dir(pid, dirfd) else {
        return;
    };
    let Ok(st) = fstatat(&base, path.as_slice(), AtFlags::AT_SYMLINK_NOFOLLOW) else {
        return;
    };
    let folder = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
    if folder || st.st_nlink <= 1 {
        records.remove(&(st.st_dev, st.st_ino));
    }
}

/// `mknod(dirfd, path, mode, dev)`: a device becomes a recorded placeholder file.
fn mknod(
    call: &Notification,
    listener: &OwnedFd,
    records: &mut BTreeMap<(u64, u64), Record>,
    dirfd: i32,
    path: &[u8],
    mode: u64,
    dev: u64,
) -> Result<Answer, nix::errno::Errno> {
    // Both are C unsigned ints: the register's upper half is not the caller's.
    let mode = u32::try_from(mode & 0xffff_ffff).unwrap_or(0);
    let dev = dev & 0xffff_ffff;
    let kind = SFlag::from_bits_truncate(mode) & SFlag::S_IFMT;
    let char_device = kind == SFlag::S_IFCHR;
    if !(char_device || kind == SFlag::S_IFBLK) || (char_device && dev == 0) {
        // Files, fifos, sockets and overlayfs' whiteout: the kernel allows them.
        return Ok(Answer::Continue);
    }
    if !seccomp::still_valid(listener.as_fd(), call.id) {
        return Err(nix::errno::Errno::ESRCH);
    }
    let base = open_dir(call.pid, dirfd)?;
    let file = openat(
        &base,
        path,
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
        Mode::from_bits_truncate(0o600),
    )?;
    let umask = process_umask(call.pid);
    fchmod(&file, Mode::from_bits_truncate(mode & 0o7777 & !umask))?;
    let md = File::from(file).metadata().map_err(errno_of)?;
    records.insert(
        (md.dev(), md.ino()),
        Record {
            dev: md.dev(),
            ino: md.ino(),
            uid: None,
            gid: None,
            device: Some((char_device, major(dev) as u32, minor(dev) as u32)),
        },
    );
    Ok(Answer::Value(0))
}

/// The object a `chown` call names.
enum Target {
    /// An open descriptor of the caller.
    Fd(i32),
    /// A path, relative to the caller's descriptor or working folder, followed or not.
    At(i32, Vec<u8>, bool),
}

impl Target {
    /// A `chown` that changes nothing (owner and group -1), made for real: over an overlay
    /// (`runAsRoot` without real root) it copies an object that is still only in a lower
    /// layer up into the upper folder, which is what becomes the layer; elsewhere it only
    /// touches the change time. When it fails, the recorded call fails the same way below.
    fn copy_up(&self, pid: u32) {
        let _ = match self {
            Target::Fd(fd) if *fd == AT_FDCWD => {
                chown(format!("/proc/{pid}/cwd").as_str(), None, None)
            }
            Target::Fd(fd) => chown(format!("/proc/{pid}/fd/{fd}").as_str(), None, None),
            Target::At(dirfd, path, follow) => open_dir(pid, *dirfd).and_then(|base| {
                let flags = if *follow {
                    AtFlags::empty()
                } else {
                    AtFlags::AT_SYMLINK_NOFOLLOW
                };
                fchownat(&base, path.as_slice(), None, None, flags)
            }),
        };
    }

    /// The device and inode of the object.
    fn identity(&self, pid: u32) -> Result<(u64, u64), nix::errno::Errno> {
        let of = |md: std::fs::Metadata| (md.dev(), md.ino());
        match self {
            Target::Fd(fd) if *fd == AT_FDCWD => std::fs::metadata(format!("/proc/{pid}/cwd"))
                .map(of)
                .map_err(errno_of),
            // The descriptor's magic link leads to the open object, deleted or not.
            Target::Fd(fd) => std::fs::metadata(format!("/proc/{pid}/fd/{fd}"))
                .map(of)
                .map_err(errno_of),
            Target::At(dirfd, path, follow) => {
                let base = open_dir(pid, *dirfd)?;
                let flags = if *follow {
                    AtFlags::empty()
                } else {
                    AtFlags::AT_SYMLINK_NOFOLLOW
                };
                let st = fstatat(&base, path.as_slice(), flags)?;
                Ok((st.st_dev, st.st_ino))
            }
        }
    }
}

/// The caller's folder `dirfd` (its working folder for `AT_FDCWD`), opened for lookups.
fn open_dir(pid: u32, dirfd: i32) -> Result<OwnedFd, nix::errno::Errno> {
    let path = if dirfd == AT_FDCWD {
        format!("/proc/{pid}/cwd")
    } else {
        format!("/proc/{pid}/fd/{dirfd}")
    };
    open(
        path.as_str(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// Reads a NUL-terminated path from the caller's memory.
fn read_path(pid: u32, address: u64) -> Result<Vec<u8>, nix::errno::Errno> {
    let mut mem = File::open(format!("/proc/{pid}/mem")).map_err(errno_of)?;
    mem.seek(SeekFrom::Start(address)).map_err(errno_of)?;
    let mut path = Vec::new();
    let mut chunk = [0u8; 256];
    while path.len() < PATH_MAX {
        let n = mem.read(&mut chunk).map_err(errno_of)?;
        if n == 0 {
            return Err(nix::errno::Errno::EFAULT);
        }
        if let Some(end) = chunk[..n].iter().position(|&b| b == 0) {
            path.extend_from_slice(&chunk[..end]);
            return Ok(path);
        }
        path.extend_from_slice(&chunk[..n]);
    }
    Err(nix::errno::Errno::ENAMETOOLONG)
}

/// The caller's umask, from `/proc/PID/status` (022 when it cannot be read).
fn process_umask(pid: u32) -> u32 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}

#[allow(clippy::needless_pass_by_value)] // used as `map_err(errno_of)`
fn errno_of(e: io::Error) -> nix::errno::Errno {
    nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}
