//! Small wrappers around mount(2) that report failures as [`Report`]s naming the step.

use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

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

/// Binds `source` with everything mounted below it at `target`, and makes each of those
/// mounts read-only. Inside Nix's build sandbox the store is a folder of one bind per
/// input path, which a user namespace may only bind as a whole.
pub(crate) fn bind_tree_read_only(step: &str, source: &Path, target: &Path) -> Result<(), Report> {
    mount_at(
        step,
        Some(source),
        target,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )?;
    let table = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Report::failed(step, format!("/proc/self/mountinfo: {e}")))?;
    for point in mount_points(&table) {
        if point.starts_with(target) {
            mount_at(
                step,
                None,
                &point,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | locked_flags(&point),
                None,
            )?;
        }
    }
    Ok(())
}

/// The mount points of a `/proc/self/mountinfo` table (the fifth field, with the kernel's
/// octal escapes of space, tab, newline and backslash undone), in table order.
fn mount_points(table: &str) -> Vec<PathBuf> {
    table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| {
            let bytes = field.as_bytes();
            let mut out = Vec::with_capacity(bytes.len());
            let mut i = 0;
            while i < bytes.len() {
                let octal = bytes.get(i + 1..i + 4).and_then(|d| {
                    std::str::from_utf8(d)
                        .ok()
                        .and_then(|d| u8::from_str_radix(d, 8).ok())
                });
                match (bytes[i], octal) {
                    (b'\\', Some(byte)) => {
                        out.push(byte);
                        i += 4;
                    }
                    (byte, _) => {
                        out.push(byte);
                        i += 1;
                    }
                }
            }
            PathBuf::from(std::ffi::OsString::from_vec(out))
        })
        .collect()
}

/// Unmounts `target`, lazily when it is still busy.
pub(crate) fn unmount(target: &Path) -> nix::Result<()> {
    match umount2(target, MntFlags::empty()) {
        Err(nix::errno::Errno::EBUSY) => umount2(target, MntFlags::MNT_DETACH),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_undo_the_kernel_escapes() {
        let table = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
                     90 22 8:1 /x /tmp/a\\040b\\134c rw - ext4 /dev/sda1 rw\n";
        assert_eq!(
            mount_points(table),
            [PathBuf::from("/"), PathBuf::from("/tmp/a b\\c")]
        );
    }
}
