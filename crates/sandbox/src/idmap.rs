//! The ids a script runs with when buildimage runs as root: a private range of host ids,
//! so that the script's root, and every owner it gives, is an unprivileged id on the host.
//!
//! The range is `root`'s line of `/etc/subuid` and `/etc/subgid` when there is one (as
//! rootless container engines take theirs), else [`DEFAULT_BASE`] and [`COUNT`] ids. The
//! script's id N is host id BASE+N. The folders the script sees (the base layers' extracted
//! folders, the staged upper folder) are shifted up by BASE before the run
//! ([`shift_tree`]), and the upper folder is read back shifted down
//! (`buildimage_layer::UpperOptions::id_shift`): packed owners are those the script saw.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// How many ids the range holds: 65,536, as every container engine maps.
pub const COUNT: u32 = 65_536;

/// The first host id of the range when `/etc/subuid` has none for root: high enough to
/// belong to no account, low enough to leave room below `u32::MAX`.
pub const DEFAULT_BASE: u32 = 0x7000_0000;

/// The host ids that stand for ids 0.. COUNT inside the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRange {
    /// Host uid of the script's uid 0.
    pub uid_base: u32,
    /// Host gid of the script's gid 0.
    pub gid_base: u32,
    /// How many ids are mapped.
    pub count: u32,
}

impl IdRange {
    /// Root's range: from `/etc/subuid` and `/etc/subgid`, else the default.
    pub fn for_root() -> IdRange {
        let uid = sub_range(Path::new("/etc/subuid"));
        let gid = sub_range(Path::new("/etc/subgid"));
        let count = [uid, gid]
            .iter()
            .map(|r| r.map_or(COUNT, |(_, n)| n))
            .min()
            .unwrap_or(COUNT)
            .min(COUNT);
        IdRange {
            uid_base: uid.map_or(DEFAULT_BASE, |(b, _)| b),
            gid_base: gid.map_or(DEFAULT_BASE, |(b, _)| b),
            count,
        }
    }

    /// The host uid of the script's `uid`, when the range holds it.
    pub fn host_uid(&self, uid: u32) -> Option<u32> {
        (uid < self.count).then(|| self.uid_base + uid)
    }

    /// The host gid of the script's `gid`, when the range holds it.
    pub fn host_gid(&self, gid: u32) -> Option<u32> {
        (gid < self.count).then(|| self.gid_base + gid)
    }

    /// `uid_map` of the script's user namespace.
    pub(crate) fn uid_map(&self) -> String {
        format!("0 {} {}\n", self.uid_base, self.count)
    }

    /// `gid_map` of the script's user namespace.
    pub(crate) fn gid_map(&self) -> String {
        format!("0 {} {}\n", self.gid_base, self.count)
    }
}

/// The first `root` (or `0`) line of a subordinate id file: (first id, count). Ranges that
/// would pass `u32::MAX` are ignored.
fn sub_range(file: &Path) -> Option<(u32, u32)> {
    let text = fs::read_to_string(file).ok()?;
    text.lines().find_map(|line| {
        let mut fields = line.trim().split(':');
        let (user, base, count) = (fields.next()?, fields.next()?, fields.next()?);
        if user != "root" && user != "0" {
            return None;
        }
        let base: u32 = base.parse().ok()?;
        let count: u32 = count.parse().ok()?;
        (count > 0 && base.checked_add(count).is_some()).then_some((base, count))
    })
}

/// Shifts the owner of `dir` and of everything below it (symlinks themselves, nothing
/// followed) from id N to the range's host id for N. Ids the range does not hold stay as
/// they are: the script sees them as unmapped (`nobody`).
pub fn shift_tree(dir: &Path, range: &IdRange) -> io::Result<()> {
    let mut pending = vec![dir.to_owned()];
    while let Some(path) = pending.pop() {
        let md = fs::symlink_metadata(&path)?;
        let uid = range.host_uid(md.uid());
        let gid = range.host_gid(md.gid());
        if uid.is_some() || gid.is_some() {
            std::os::unix::fs::lchown(&path, uid, gid)?;
            // chown clears setuid and setgid bits of files: put them back.
            if md.is_file() && md.mode() & 0o6000 != 0 {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(&path, fs::Permissions::from_mode(md.mode() & 0o7777))?;
            }
        }
        if md.is_dir() {
            for entry in fs::read_dir(&path)? {
                pending.push(entry?.path());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subordinate_ranges_are_read_for_root_only() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("subuid");
        fs::write(&file, "alice:100000:65536\nroot:200000:1000000\n").unwrap();
        assert_eq!(sub_range(&file), Some((200_000, 1_000_000)));
        fs::write(&file, "alice:100000:65536\n").unwrap();
        assert_eq!(sub_range(&file), None);
        fs::write(&file, "0:4294967000:65536\n").unwrap();
        assert_eq!(sub_range(&file), None, "past u32::MAX");
    }

    #[test]
    fn ids_outside_the_range_have_no_host_id() {
        let range = IdRange {
            uid_base: 1000,
            gid_base: 2000,
            count: 10,
        };
        assert_eq!(range.host_uid(0), Some(1000));
        assert_eq!(range.host_gid(9), Some(2009));
        assert_eq!(range.host_uid(10), None);
        assert_eq!(range.uid_map(), "0 1000 10\n");
    }
}
