//! The planned file tree of a layer: nodes, look-up and insertion, and its flattening into
//! tar entries in the order the writer streams them.
//!
//! The tree is filled by [`Tree::copy_from`] (rsync semantics, `copy`), read back from a
//! staging folder ([`Tree::from_dir`]) or an overlay upper folder ([`Tree::from_upper`],
//! `upper`).

mod copy;
mod link;
mod staged;
mod upper;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::entry::{Entry, EntryKind, Owner};
use crate::error::{Error, Result};
use crate::overlay::{OPAQUE_MARKER, is_whiteout};

pub use copy::{CopyOptions, resolve_host};
pub use staged::{Recorded, Recordings};
pub use upper::UpperOptions;

/// One node of the planned tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A directory with its children, sorted by the raw bytes of their names.
    Dir(Dir),
    /// A regular file read from `source` when the layer is written.
    File {
        /// Where its bytes are.
        source: PathBuf,
        /// Its size when it was planned.
        size: u64,
        /// Permission bits.
        mode: u32,
    },
    /// A symlink with its raw target.
    Symlink {
        /// The target, as stored in the link.
        target: Vec<u8>,
        /// Permission bits (0777 on Linux).
        mode: u32,
    },
    /// Any other kept object: fifo, device node, or a file whose bytes are held in memory
    /// (the empty whiteout files of [`Tree::from_upper`]).
    Special {
        /// The kind (never `Directory`, `File` or `Symlink`).
        kind: EntryKind,
        /// Permission bits.
        mode: u32,
    },
}

/// A directory node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Dir {
    /// Permission bits.
    pub mode: u32,
    /// Children by raw name; `BTreeMap` keeps them in byte order, GNU tar's `--sort=name`.
    pub children: BTreeMap<Vec<u8>, Node>,
}

/// The planned file tree of a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    /// The root directory (`./` in the tar).
    pub root: Dir,
    /// Owners (uid, gid) recorded for single paths (components without `./`, the root is
    /// the empty path). [`Tree::entries`] uses them instead of its `owner` argument. Filled
    /// by [`Tree::from_upper`], which records the real owners of a `runAsRoot` layer;
    /// [`Tree::insert`] forgets the owners of what it replaces, [`Tree::copy_from`] leaves
    /// them alone.
    pub owners: BTreeMap<Vec<u8>, (u64, u64)>,
}

impl Default for Tree {
    fn default() -> Self {
        Tree {
            root: Dir {
                mode: 0o755,
                children: BTreeMap::new(),
            },
            owners: BTreeMap::new(),
        }
    }
}

/// Result of copying sources: the tree plus what was skipped.
#[derive(Debug, Default)]
pub struct Warnings(pub Vec<String>);

/// The children of a host folder, sorted by the raw bytes of their names.
fn sorted_children(dir: &Path) -> Result<Vec<(Vec<u8>, PathBuf)>> {
    let mut out = Vec::new();
    for item in fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))? {
        let item = item.map_err(|e| Error::io("list", dir, e))?;
        let name = item.file_name();
        out.push((name.as_bytes().to_vec(), item.path()));
    }
    // Never trust read_dir order: sort by raw bytes.
    out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

impl Tree {
    /// An empty tree whose root has mode 0755, as `mkdir` makes it.
    pub fn new() -> Self {
        Tree::default()
    }

    /// `chmod ug+w` on the root directory, as buildImage does after copying.
    pub fn make_root_writable(&mut self) {
        self.root.mode |= 0o220;
    }

    /// Flattens the tree into tar entries in GNU tar `--sort=name` order: each directory
    /// before its children, children in byte order, names starting with `./`. Following the
    /// OCI layer specification, whiteouts come before their siblings: within a directory
    /// `.wh..wh..opq` first, then the other `.wh.` names, then the rest (byte order alone
    /// would put names such as `.bashrc` or `-x` before them). Paths with an owner in
    /// [`Tree::owners`] get that owner (named by [`Owner::numeric`]), the others `owner`.
    pub fn entries(&self, owner: &Owner, mtime: u64) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut name = b"./".to_vec();
        let flat = Flattener {
            owners: &self.owners,
            owner,
            mtime,
        };
        out.push(Entry {
            name: name.clone(),
            kind: EntryKind::Directory,
            mode: self.root.mode,
            owner: flat.owner_of(b""),
            mtime,
        });
        flat.flatten(&self.root, &mut name, &mut out);
        out
    }

    /// Visits every node of the tree, each folder before its contents, with its layer path
    /// (without `./`, no trailing `/`).
    pub fn for_each_node(&self, mut f: impl FnMut(&[u8], &Node)) {
        fn walk(dir: &Dir, prefix: &mut Vec<u8>, f: &mut dyn FnMut(&[u8], &Node)) {
            for (name, node) in &dir.children {
                let len = prefix.len();
                if len > 0 {
                    prefix.push(b'/');
                }
                prefix.extend_from_slice(name);
                f(prefix, node);
                if let Node::Dir(d) = node {
                    walk(d, prefix, f);
                }
                prefix.truncate(len);
            }
        }
        walk(&self.root, &mut Vec::new(), &mut f);
    }

    /// Visits every regular file of the tree with its layer path (without `./`).
    pub fn for_each_file(&self, mut f: impl FnMut(&[u8], &Path)) {
        self.for_each_node(|path, node| {
            if let Node::File { source, .. } = node {
                f(path, source);
            }
        });
    }

    /// Puts `node` at `path` (components without `./`), replacing what was there and
    /// creating missing parent directories with mode `dir_mode`. A parent that exists but
    /// is not a directory is replaced by one. Owners recorded in [`Tree::owners`] for what
    /// is replaced are forgotten; new nodes take the `owner` given to [`Tree::entries`].
    pub fn insert(&mut self, path: &[u8], node: Node, dir_mode: u32) {
        let parts: Vec<&[u8]> = path
            .split(|&b| b == b'/')
            .filter(|p| !p.is_empty())
            .collect();
        let Some((last, parents)) = parts.split_last() else {
            return;
        };
        if !self.owners.is_empty() {
            let mut at = Vec::new();
            for part in &parts {
                if !at.is_empty() {
                    at.push(b'/');
                }
                at.extend_from_slice(part);
                if !matches!(self.get(&at), Some(Node::Dir(_))) {
                    forget_owners(&mut self.owners, &at);
                    break;
                }
            }
            forget_owners(&mut self.owners, &parts.join(&b'/'));
        }
        let mut dir = &mut self.root;
        for part in parents {
            let child = dir
                .children
                .entry(part.to_vec())
                .and_modify(|n| {
                    if !matches!(n, Node::Dir(_)) {
                        *n = Node::Dir(Dir {
                            mode: dir_mode,
                            children: BTreeMap::new(),
                        });
                    }
                })
                .or_insert_with(|| {
                    Node::Dir(Dir {
                        mode: dir_mode,
                        children: BTreeMap::new(),
                    })
                });
            let Node::Dir(d) = child else {
                unreachable!("made a directory just above")
            };
            dir = d;
        }
        dir.children.insert(last.to_vec(), node);
    }

    /// Looks a path (components without `./`) up in the tree, without following symlinks.
    pub fn get(&self, path: &[u8]) -> Option<&Node> {
        let mut dir = &self.root;
        let mut parts = path
            .split(|&b| b == b'/')
            .filter(|p| !p.is_empty())
            .peekable();
        while let Some(part) = parts.next() {
            let node = dir.children.get(part)?;
            if parts.peek().is_none() {
                return Some(node);
            }
            match node {
                Node::Dir(d) => dir = d,
                _ => return None,
            }
        }
        None
    }
}

/// Forgets the owners of `path` and everything below it.
fn forget_owners(owners: &mut BTreeMap<Vec<u8>, (u64, u64)>, path: &[u8]) {
    let below: Vec<Vec<u8>> = owners
        .range(path.to_vec()..)
        .map(|(k, _)| k)
        .take_while(|k| k.starts_with(path))
        .filter(|k| k.len() == path.len() || k[path.len()] == b'/')
        .cloned()
        .collect();
    for key in below {
        owners.remove(&key);
    }
}

/// The children of `dir` in the order they are written: the opaque marker, the other
/// whiteouts, then the rest, each group in byte order.
fn tar_order(dir: &Dir) -> impl Iterator<Item = (&Vec<u8>, &Node)> {
    dir.children
        .get_key_value(OPAQUE_MARKER)
        .into_iter()
        .chain(
            dir.children
                .iter()
                .filter(move |(n, _)| is_whiteout(n) && n.as_slice() != OPAQUE_MARKER),
        )
        .chain(dir.children.iter().filter(move |(n, _)| !is_whiteout(n)))
}

struct Flattener<'a> {
    owners: &'a BTreeMap<Vec<u8>, (u64, u64)>,
    owner: &'a Owner,
    mtime: u64,
}

impl Flattener<'_> {
    /// The owner of the path `key` (without `./` and trailing `/`).
    fn owner_of(&self, key: &[u8]) -> Owner {
        match self.owners.get(key) {
            Some(&(uid, gid)) => Owner::numeric(uid, gid),
            None => self.owner.clone(),
        }
    }

    fn flatten(&self, dir: &Dir, name: &mut Vec<u8>, out: &mut Vec<Entry>) {
        for (child, node) in tar_order(dir) {
            let len = name.len();
            name.extend_from_slice(child);
            let owner = self.owner_of(&name[2..]);
            let (kind, mode) = match node {
                Node::Dir(d) => {
                    name.push(b'/');
                    (EntryKind::Directory, d.mode)
                }
                Node::File { source, size, mode } => (
                    EntryKind::File {
                        source: source.clone(),
                        size: *size,
                    },
                    *mode,
                ),
                Node::Symlink { target, mode } => (EntryKind::Symlink(target.clone()), *mode),
                Node::Special { kind, mode } => (kind.clone(), *mode),
            };
            out.push(Entry {
                name: name.clone(),
                kind,
                mode,
                owner,
                mtime: self.mtime,
            });
            if let Node::Dir(d) = node {
                self.flatten(d, name, out);
            }
            name.truncate(len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{lchown, symlink};

    use nix::sys::stat::{Mode, SFlag, mknod};

    fn names(entries: &[Entry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| String::from_utf8_lossy(&e.name).into_owned())
            .collect()
    }

    fn data(mode: u32) -> Node {
        Node::Special {
            kind: EntryKind::Data(Vec::new()),
            mode,
        }
    }

    #[test]
    fn whiteouts_come_before_their_siblings() {
        let mut tree = Tree::new();
        for name in [".bashrc", "-x", ".wh.-y", ".wh.b", ".wh..wh..opq", "a"] {
            tree.insert(format!("d/{name}").as_bytes(), data(0o644), 0o755);
        }
        let entries = tree.entries(&Owner::root(), 0);
        assert_eq!(
            names(&entries),
            [
                "./",
                "./d/",
                "./d/.wh..wh..opq",
                "./d/.wh.-y",
                "./d/.wh.b",
                "./d/-x",
                "./d/.bashrc",
                "./d/a"
            ]
        );
    }

    #[test]
    fn recorded_owners_win_and_insert_forgets_them() {
        let mut tree = Tree::new();
        tree.insert(b"a/b", data(0o644), 0o755);
        tree.insert(b"c", data(0o644), 0o755);
        tree.owners.insert(b"a".to_vec(), (7, 8));
        tree.owners.insert(b"a/b".to_vec(), (1000, 0));
        tree.owners.insert(b"c".to_vec(), (5, 5));
        let owners = |tree: &Tree| -> Vec<(u64, u64, String)> {
            tree.entries(&Owner::numeric(3, 3), 0)
                .into_iter()
                .map(|e| (e.owner.uid, e.owner.gid, e.owner.uname.into_owned()))
                .collect()
        };
        assert_eq!(
            owners(&tree),
            [
                (3, 3, String::new()),
                (7, 8, String::new()),
                (1000, 0, String::new()),
                (5, 5, String::new())
            ]
        );
        // Replacing `a` by a file forgets `a` and `a/b`; `c` is kept.
        tree.insert(b"a", data(0o600), 0o755);
        assert_eq!(
            tree.owners.keys().cloned().collect::<Vec<_>>(),
            [b"c".to_vec()]
        );
        // A file that becomes a parent directory loses its owner too.
        tree.insert(b"c/d", data(0o600), 0o755);
        assert!(tree.owners.is_empty());
    }

    /// Entries of an upper folder as (name, uid, gid).
    fn upper_entries(up: &Path, root: (u64, u64)) -> Vec<Entry> {
        let options = UpperOptions {
            root_uid: root.0,
            root_gid: root.1,
            ..UpperOptions::default()
        };
        let tree = Tree::from_upper(up, &options, &mut Warnings::default()).unwrap();
        tree.entries(&Owner::numeric(9, 9), 0)
    }

    fn shown(entries: &[Entry]) -> Vec<(String, u64, u64)> {
        entries
            .iter()
            .map(|e| {
                (
                    String::from_utf8_lossy(&e.name).into_owned(),
                    e.owner.uid,
                    e.owner.gid,
                )
            })
            .collect()
    }

    fn me() -> (u64, u64) {
        (
            u64::from(nix::unistd::geteuid().as_raw()),
            u64::from(nix::unistd::getegid().as_raw()),
        )
    }

    /// What any user can make: files owned by the caller (who stands for root) and
    /// overlayfs' opaque attribute, in its `user.` form.
    #[test]
    fn upper_dirs_map_the_caller_to_root_and_get_opaque_markers() {
        let dir = tempfile::tempdir().unwrap();
        let up = dir.path();
        fs::create_dir(up.join("etc")).unwrap();
        fs::write(up.join("etc/owned"), b"x").unwrap();
        symlink("owned", up.join("etc/link")).unwrap();
        fs::create_dir(up.join("opaque")).unwrap();
        xattr::set(up.join("opaque"), "user.overlay.opaque", b"y")
            .expect("the test folder's file system stores user.* extended attributes");
        fs::create_dir(up.join("plain")).unwrap();
        xattr::set(up.join("plain"), "user.overlay.opaque", b"n").unwrap();
        let entries = upper_entries(up, me());
        assert_eq!(
            shown(&entries),
            [
                ("./".to_owned(), 0, 0),
                ("./etc/".to_owned(), 0, 0),
                ("./etc/link".to_owned(), 0, 0),
                ("./etc/owned".to_owned(), 0, 0),
                ("./opaque/".to_owned(), 0, 0),
                ("./opaque/.wh..wh..opq".to_owned(), 0, 0),
                ("./plain/".to_owned(), 0, 0),
            ]
        );
        let marker = &entries[5];
        assert_eq!(marker.kind, EntryKind::Data(Vec::new()));
        assert_eq!(marker.mode, 0o644);
        assert_eq!(entries[0].owner.uname, "root");
    }

    /// What only root can make: other owners and overlayfs' deletion devices.
    #[test]
    fn upper_dirs_keep_real_owners_and_turn_deletions_into_whiteouts_as_root() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test needs root to chown and mknod (cargo xtask ci runs as root)"
        );
        let dir = tempfile::tempdir().unwrap();
        let up = dir.path();
        fs::create_dir(up.join("etc")).unwrap();
        fs::write(up.join("etc/owned"), b"x").unwrap();
        symlink("owned", up.join("etc/link")).unwrap();
        mknod(
            &up.join("etc/gone"),
            SFlag::S_IFCHR,
            Mode::empty(),
            nix::sys::stat::makedev(0, 0),
        )
        .unwrap();
        lchown(up.join("etc/owned"), Some(1000), Some(1001)).unwrap();
        lchown(up.join("etc/link"), Some(5), Some(6)).unwrap();
        let entries = upper_entries(up, (0, 0));
        assert_eq!(
            shown(&entries),
            [
                ("./".to_owned(), 0, 0),
                ("./etc/".to_owned(), 0, 0),
                ("./etc/.wh.gone".to_owned(), 0, 0),
                ("./etc/link".to_owned(), 5, 6),
                ("./etc/owned".to_owned(), 1000, 1001),
            ]
        );
        assert_eq!(entries[2].kind, EntryKind::Data(Vec::new()));
        assert_eq!(entries[2].mode, 0o644);
    }
}
