//! Reading an overlay upper folder back after a `runAsRoot` script ran on it: real owners,
//! and overlayfs' deletion and opaque markers turned into OCI whiteouts.

use std::collections::BTreeMap;
use std::fs::{self, Metadata};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use super::{Dir, Node, Recorded, Recordings, Tree, Warnings, sorted_children};
use crate::entry::EntryKind;
use crate::error::{Error, Result};
use crate::overlay::{
    OPAQUE_MARKER, OPAQUE_XATTR_TRUSTED, OPAQUE_XATTR_USER, WHITEOUT_MODE, WHITEOUT_PREFIX,
};
use crate::stat::{folder_metadata, leaf_node};

/// How [`Tree::from_upper`] reads owners from disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UpperOptions<'a> {
    /// The host user id that stands for root: 0 when the script ran as real root, the
    /// caller's uid when it ran as root of a user namespace. Files owned by it are recorded
    /// as owned by 0; other ids are kept as they are.
    pub root_uid: u64,
    /// The host group id that stands for root, as `root_uid`.
    pub root_gid: u64,
    /// A range of host ids the script ran with: (host uid of its uid 0, host gid of its gid
    /// 0, how many). An id in the range is recorded as the script's id (host uid
    /// `base + 1000` as 1000); `root_uid` and `root_gid` still apply outside it.
    pub id_shift: Option<(u64, u64, u64)>,
    /// What a script run without real root recorded (see [`Tree::from_staged`]): owners it
    /// gave and device nodes it made, which the disk cannot show. A recorded owner wins
    /// over the one on disk; a regular file recorded as a device becomes that device.
    pub recordings: Option<&'a Recordings>,
}

impl UpperOptions<'_> {
    fn owner(&self, md: &Metadata) -> (u64, u64) {
        let shifted =
            |id: u64, base: u64, count: u64| (id >= base && id - base < count).then(|| id - base);
        let map = |id: u64, root: u64, base: Option<(u64, u64)>| match base
            .and_then(|(base, count)| shifted(id, base, count))
        {
            Some(inside) => inside,
            None if id == root => 0,
            None => id,
        };
        let disk = (
            map(
                u64::from(md.uid()),
                self.root_uid,
                self.id_shift.map(|(uid, _, count)| (uid, count)),
            ),
            map(
                u64::from(md.gid()),
                self.root_gid,
                self.id_shift.map(|(_, gid, count)| (gid, count)),
            ),
        );
        match self.recorded(md) {
            Some(r) => (r.uid.unwrap_or(disk.0), r.gid.unwrap_or(disk.1)),
            None => disk,
        }
    }

    fn recorded(&self, md: &Metadata) -> Option<&Recorded> {
        self.recordings?.get(&(md.dev(), md.ino()))
    }
}

impl Tree {
    /// Reads the upper directory of an overlay after a `runAsRoot` script ran on it: like
    /// [`Tree::from_dir`], but every node records its real owner from disk (see
    /// [`UpperOptions`]) in [`Tree::owners`], and overlayfs' markers become OCI ones: a
    /// character device 0/0 `NAME` (a deletion) becomes an empty file `.wh.NAME`, and a
    /// directory with the opaque attribute (`trusted.overlay.opaque` or
    /// `user.overlay.opaque` set to `y`) gets an empty `.wh..wh..opq` file. Whiteout files
    /// take the owner of what they come from and mode 0644.
    pub fn from_upper(
        dir: &Path,
        options: &UpperOptions<'_>,
        warnings: &mut Warnings,
    ) -> Result<Tree> {
        let md = folder_metadata(dir, dir, false)?;
        let mut tree = Tree::new();
        tree.root.mode = md.mode() & 0o7777;
        tree.owners.insert(Vec::new(), options.owner(&md));
        let mut reader = UpperReader {
            options,
            warnings,
            owners: &mut tree.owners,
        };
        reader.read(dir, &mut tree.root, &mut Vec::new())?;
        Ok(tree)
    }
}

/// Reads an overlay upper directory for [`Tree::from_upper`].
struct UpperReader<'a> {
    options: &'a UpperOptions<'a>,
    warnings: &'a mut Warnings,
    owners: &'a mut BTreeMap<Vec<u8>, (u64, u64)>,
}

impl UpperReader<'_> {
    fn read(&mut self, source: &Path, dir: &mut Dir, prefix: &mut Vec<u8>) -> Result<()> {
        for (name, path) in sorted_children(source)? {
            let md = fs::symlink_metadata(&path).map_err(|e| Error::io("inspect", &path, e))?;
            let ft = md.file_type();
            let mode = md.mode() & 0o7777;
            let owner = self.options.owner(&md);
            let len = prefix.len();
            if len > 0 {
                prefix.push(b'/');
            }
            if ft.is_char_device() && md.rdev() == 0 {
                // overlayfs records a deletion as a character device 0/0 of the same name.
                let mut whiteout = WHITEOUT_PREFIX.to_vec();
                whiteout.extend_from_slice(&name);
                prefix.extend_from_slice(&whiteout);
                self.owners.insert(prefix.clone(), owner);
                prefix.truncate(len);
                dir.children.insert(whiteout, empty_file());
                continue;
            }
            prefix.extend_from_slice(&name);
            let node = if ft.is_dir() {
                let mut child = Dir {
                    mode,
                    children: BTreeMap::new(),
                };
                self.read(&path, &mut child, prefix)?;
                if is_opaque(&path) {
                    let mut marker = prefix.clone();
                    marker.push(b'/');
                    marker.extend_from_slice(OPAQUE_MARKER);
                    self.owners.insert(marker, owner);
                    child.children.insert(OPAQUE_MARKER.to_vec(), empty_file());
                }
                Node::Dir(child)
            } else if let Some(kind) = self
                .options
                .recorded(&md)
                .and_then(|r| r.device.clone())
                .filter(|_| ft.is_file())
            {
                Node::Special { kind, mode }
            } else if let Some(node) = leaf_node(&path, &md, self.warnings)? {
                node
            } else {
                prefix.truncate(len);
                continue;
            };
            self.owners.insert(prefix.clone(), owner);
            prefix.truncate(len);
            dir.children.insert(name, node);
        }
        Ok(())
    }
}

fn empty_file() -> Node {
    Node::Special {
        kind: EntryKind::Data(Vec::new()),
        mode: WHITEOUT_MODE,
    }
}

/// Whether overlayfs marked the directory opaque. A file system without extended
/// attributes has no opaque directories.
fn is_opaque(path: &Path) -> bool {
    [OPAQUE_XATTR_TRUSTED, OPAQUE_XATTR_USER]
        .iter()
        .any(|name| matches!(xattr::get(path, name), Ok(Some(v)) if v == b"y"))
}
