//! Small wrappers around mount(2) that report failures as [`Report`]s naming the step.

use std::path::Path;

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::statvfs::{FsFlags, statvfs};

use crate::protocol::Report;

/// Mounts, or says which step failed.
pub(crate) fn mount_at(
    step: &str,
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), Report> {
    mount(source, target, fstype, flags, data)
        .map_err(|e| Report::failed(step, format!("{}: {e}", target.display())))
}

/// The flags a read-only remount of a bind of `source` must keep: in a user namespace the
/// kernel refuses to drop `nosuid`, `nodev`, `noexec` or the atime flags of the original.
fn locked_flags(source: &Path) -> MsFlags {
    let Ok(st) = statvfs(source) else {
        return MsFlags::empty();
    };
    let flags = st.flags();
    let mut out = MsFlags::empty();
    for (st, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if flags.contains(st) {
            out |= ms;
        }
    }
    out
}

/// Binds `source` (not its sub-mounts) at `target` and makes the bind read-only.
pub(crate) fn bind_read_only(
    step: &str,
    source: &Path,
    target: &Path,
    extra: MsFlags,
) -> Result<(), Report> {
    mount_at(step, Some(source), target, None, MsFlags::MS_BIND, None)?;
    mount_at(
        step,
        None,
        target,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | locked_flags(source) | extra,
        None,
    )
}

/// Unmounts `target`, lazily when it is still busy.
pub(crate) fn unmount(target: &Path) -> nix::Result<()> {
    match umount2(target, MntFlags::empty()) {
        Err(nix::errno::Errno::EBUSY) => umount2(target, MntFlags::MNT_DETACH),
        other => other,
    }
}
