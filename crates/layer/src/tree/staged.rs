//! Reading a staged folder back after a script ran in it as a fake root: owners and device
//! nodes the script asked for, which the kernel could not give an unprivileged process,
//! come from a record of the script's calls rather than from the disk.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::{Dir, Node, Tree, Warnings, sorted_children};
use crate::entry::EntryKind;
use crate::error::{Error, Result};
use crate::stat::{folder_metadata, leaf_node};

/// What a fake root's calls made of one object (by device and inode).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recorded {
    /// The owner `chown` gave it, if any.
    pub uid: Option<u64>,
    /// The group `chown` gave it, if any.
    pub gid: Option<u64>,
    /// The device node `mknod` made of it (a character or block device), if any: on disk
    /// it is an empty regular file.
    pub device: Option<EntryKind>,
}

/// The records of a run, by (device, inode) of the objects.
pub type Recordings = BTreeMap<(u64, u64), Recorded>;

impl Tree {
    /// Reads the folder `dir` exactly as it is (symlinks kept, nothing followed) after a
    /// fake root's script ran in it: every object is owned by root unless `recordings`
    /// hold another owner for it, and an object recorded as a device node becomes one
    /// (with the permission bits it has on disk). The paths in `skip` (relative, such as
    /// `dev` or `nix/store`) are left out with everything below them: the mount points of
    /// the script's root. Sockets are skipped with a warning.
    pub fn from_staged(
        dir: &Path,
        recordings: &Recordings,
        skip: &[&[u8]],
        warnings: &mut Warnings,
    ) -> Result<Tree> {
        let md = folder_metadata(dir, dir, false)?;
        let mut tree = Tree::new();
        tree.root.mode = md.mode() & 0o7777;
        let mut reader = StagedReader {
            recordings,
            warnings,
            owners: &mut tree.owners,
        };
        reader.record_owner(&[], &md);
        reader.read(dir, &mut tree.root, &mut Vec::new(), skip)?;
        Ok(tree)
    }
}

struct StagedReader<'a> {
    recordings: &'a Recordings,
    warnings: &'a mut Warnings,
    owners: &'a mut BTreeMap<Vec<u8>, (u64, u64)>,
}

impl StagedReader<'_> {
    fn recorded(&self, md: &fs::Metadata) -> Option<&Recorded> {
        self.recordings.get(&(md.dev(), md.ino()))
    }

    /// Records the owner of `path` when the script gave it one.
    fn record_owner(&mut self, path: &[u8], md: &fs::Metadata) {
        if let Some(recorded) = self.recorded(md)
            && (recorded.uid.is_some() || recorded.gid.is_some())
        {
            let owner = (recorded.uid.unwrap_or(0), recorded.gid.unwrap_or(0));
            self.owners.insert(path.to_vec(), owner);
        }
    }

    fn read(
        &mut self,
        source: &Path,
        dir: &mut Dir,
        prefix: &mut Vec<u8>,
        skip: &[&[u8]],
    ) -> Result<()> {
        for (name, path) in sorted_children(source)? {
            let len = prefix.len();
            if len > 0 {
                prefix.push(b'/');
            }
            prefix.extend_from_slice(&name);
            if skip.contains(&prefix.as_slice()) {
                prefix.truncate(len);
                continue;
            }
            let md = fs::symlink_metadata(&path).map_err(|e| Error::io("inspect", &path, e))?;
            let ft = md.file_type();
            let mode = md.mode() & 0o7777;
            let device = self.recorded(&md).and_then(|r| r.device.clone());
            let node = if let Some(kind) = device.filter(|_| ft.is_file()) {
                Node::Special { kind, mode }
            } else if ft.is_dir() {
                let mut child = Dir {
                    mode,
                    children: BTreeMap::new(),
                };
                self.read(&path, &mut child, prefix, skip)?;
                Node::Dir(child)
            } else if let Some(node) = leaf_node(&path, &md, self.warnings)? {
                node
            } else {
                prefix.truncate(len);
                continue;
            };
            self.record_owner(&prefix.clone(), &md);
            prefix.truncate(len);
            dir.children.insert(name, node);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;
    use crate::entry::Owner;

    #[test]
    fn recorded_owners_and_devices_replace_what_the_disk_says() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir(root.join("etc")).unwrap();
        fs::write(root.join("etc/owned"), "x").unwrap();
        fs::write(root.join("etc/null"), "").unwrap();
        symlink("owned", root.join("etc/link")).unwrap();
        fs::create_dir(root.join("proc")).unwrap();
        fs::create_dir_all(root.join("nix/store")).unwrap();
        fs::create_dir_all(root.join("nix/var")).unwrap();
        let id = |p: &str| {
            let md = fs::symlink_metadata(root.join(p)).unwrap();
            (md.dev(), md.ino())
        };
        let mut recordings = Recordings::new();
        recordings.insert(
            id("etc/owned"),
            Recorded {
                uid: Some(1000),
                gid: None,
                device: None,
            },
        );
        recordings.insert(
            id("etc/null"),
            Recorded {
                uid: None,
                gid: None,
                device: Some(EntryKind::CharDevice { major: 1, minor: 3 }),
            },
        );
        let tree = Tree::from_staged(
            root,
            &recordings,
            &[b"proc", b"nix/store"],
            &mut Warnings::default(),
        )
        .unwrap();
        let entries = tree.entries(&Owner::root(), 0);
        let shown: Vec<(String, u64, u64, EntryKind)> = entries
            .iter()
            .map(|e| {
                let kind = match &e.kind {
                    EntryKind::File { .. } => EntryKind::Data(Vec::new()),
                    other => other.clone(),
                };
                (
                    String::from_utf8_lossy(&e.name).into_owned(),
                    e.owner.uid,
                    e.owner.gid,
                    kind,
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                ("./".to_owned(), 0, 0, EntryKind::Directory),
                ("./etc/".to_owned(), 0, 0, EntryKind::Directory),
                (
                    "./etc/link".to_owned(),
                    0,
                    0,
                    EntryKind::Symlink(b"owned".to_vec())
                ),
                (
                    "./etc/null".to_owned(),
                    0,
                    0,
                    EntryKind::CharDevice { major: 1, minor: 3 }
                ),
                (
                    "./etc/owned".to_owned(),
                    1000,
                    0,
                    EntryKind::Data(Vec::new())
                ),
                ("./nix/".to_owned(), 0, 0, EntryKind::Directory),
                ("./nix/var/".to_owned(), 0, 0, EntryKind::Directory),
            ]
        );
    }
}
