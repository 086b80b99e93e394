//! The layer's file tree, merged from source directories with rsync `-a` semantics.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::entry::{Entry, EntryKind, Owner};
use crate::error::{Error, Result};

/// How many symlinks a path may pass through before it counts as a loop (Linux's limit).
const MAX_HOPS: usize = 40;

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

/// How source directories are copied into the tree.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// rsync `-K` (true): symlinks to directories stay symlinks, and a later directory is
    /// merged into the directory an existing symlink points to. rsync `-k` (false, the
    /// default of buildImage): a symlink to a directory becomes a copy of that directory.
    pub keep_dirlinks: bool,
    /// The folder that holds `nix/store`: absolute symlink targets under `/nix/store` are
    /// resolved there, never on the host.
    pub store_root: PathBuf,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            keep_dirlinks: false,
            store_root: PathBuf::from("/"),
        }
    }
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

/// The prefix of an OCI whiteout file: `.wh.NAME` deletes `NAME` of the lower layers.
pub const WHITEOUT_PREFIX: &[u8] = b".wh.";

/// The OCI opaque-directory marker: its directory hides everything the lower layers had in it.
pub const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

/// Permission bits of the whiteout files [`Tree::from_upper`] writes (`touch` under umask
/// 022, as nixpkgs makes them).
const WHITEOUT_MODE: u32 = 0o644;

/// The extended attributes overlayfs marks opaque directories with: `trusted.` when mounted
/// by real root, `user.` with the `userxattr` option (in a user namespace).
const OPAQUE_XATTRS: [&str; 2] = ["trusted.overlay.opaque", "user.overlay.opaque"];

/// How [`Tree::from_upper`] reads owners from disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UpperOptions {
    /// The host user id that stands for root: 0 when the script ran as real root, the
    /// caller's uid when it ran as root of a user namespace. Files owned by it are recorded
    /// as owned by 0; other ids are kept as they are.
    pub root_uid: u64,
    /// The host group id that stands for root, as `root_uid`.
    pub root_gid: u64,
}

impl UpperOptions {
    fn owner(&self, md: &Metadata) -> (u64, u64) {
        let map = |id: u64, root: u64| if id == root { 0 } else { id };
        (
            map(u64::from(md.uid()), self.root_uid),
            map(u64::from(md.gid()), self.root_gid),
        )
    }
}

/// Result of copying sources: the tree plus what was skipped.
#[derive(Debug, Default)]
pub struct Warnings(pub Vec<String>);

fn file_kind_name(md: &Metadata) -> &'static str {
    let ft = md.file_type();
    if ft.is_file() {
        "a regular file"
    } else if ft.is_symlink() {
        "a symlink"
    } else if ft.is_fifo() {
        "a fifo"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_char_device() || ft.is_block_device() {
        "a device node"
    } else {
        "not a directory"
    }
}

/// Splits a Linux `dev_t` into major and minor numbers (glibc's encoding).
fn split_dev(dev: u64) -> (u32, u32) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major as u32, minor as u32)
}

/// The node of a regular file, fifo or device node at `path` (whose `lstat` is `md`);
/// `None` for a socket. Folders and symlinks are the callers' business.
fn file_or_special(path: &Path, md: &Metadata) -> Option<Node> {
    let stat = Stat::from(md);
    if md.file_type().is_file() {
        Some(Node::File {
            source: path.to_owned(),
            size: stat.size,
            mode: stat.mode,
        })
    } else {
        special_kind(&stat).map(|kind| Node::Special {
            kind,
            mode: stat.mode,
        })
    }
}

/// The kind of a fifo or device node; `None` for anything else.
fn special_kind(stat: &Stat) -> Option<EntryKind> {
    use libc_ifmt::{S_IFBLK, S_IFCHR, S_IFIFO};
    let (major, minor) = split_dev(stat.rdev);
    match stat.format {
        S_IFIFO => Some(EntryKind::Fifo),
        S_IFCHR => Some(EntryKind::CharDevice { major, minor }),
        S_IFBLK => Some(EntryKind::BlockDevice { major, minor }),
        _ => None,
    }
}

fn sorted_children(dir: &Path) -> Result<Vec<(Vec<u8>, PathBuf)>> {
    let mut out = Vec::new();
    for item in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let item = item.map_err(|e| Error::io(dir, e))?;
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

    /// Copies the contents of the directory `source` into the root of the tree, as
    /// `rsync -a[k|K] SOURCE/ layer/` does: later copies overwrite earlier entries where
    /// names collide, directories are merged and take the later mode, hard links become
    /// separate files. Sockets are skipped with a warning in `warnings`.
    pub fn copy_from(
        &mut self,
        source: &Path,
        options: &CopyOptions,
        warnings: &mut Warnings,
    ) -> Result<()> {
        let real = resolve_host(source, &options.store_root).unwrap_or_else(|| source.to_owned());
        let md = fs::metadata(&real).map_err(|e| Error::io(source, e))?;
        if !md.is_dir() {
            let lmd = fs::symlink_metadata(&real).map_err(|e| Error::io(source, e))?;
            return Err(Error::NotADirectory {
                path: source.to_owned(),
                found: file_kind_name(&lmd),
            });
        }
        self.root.mode = md.mode() & 0o7777;
        let mut stack = vec![(md.dev(), md.ino())];
        let mut copier = Copier {
            options,
            warnings,
            stack: &mut stack,
        };
        copier.merge(&mut self.root, &[], &real)
    }

    /// `chmod ug+w` on the root directory, as buildImage does after copying.
    pub fn make_root_writable(&mut self) {
        self.root.mode |= 0o220;
    }

    /// Reads a directory exactly as it is (symlinks kept, nothing followed), for example a
    /// staging folder after `extraCommands` ran in it.
    pub fn from_dir(dir: &Path, warnings: &mut Warnings) -> Result<Tree> {
        let mut tree = Tree::new();
        let options = CopyOptions {
            keep_dirlinks: true,
            store_root: PathBuf::from("/"),
        };
        tree.copy_from(dir, &options, warnings)?;
        Ok(tree)
    }

    /// Reads the upper directory of an overlay after a `runAsRoot` script ran on it: like
    /// [`Tree::from_dir`], but every node records its real owner from disk (see
    /// [`UpperOptions`]) in [`Tree::owners`], and overlayfs' markers become OCI ones: a
    /// character device 0/0 `NAME` (a deletion) becomes an empty file `.wh.NAME`, and a
    /// directory with the opaque attribute (`trusted.overlay.opaque` or
    /// `user.overlay.opaque` set to `y`) gets an empty `.wh..wh..opq` file. Whiteout files
    /// take the owner of what they come from and mode 0644.
    pub fn from_upper(dir: &Path, options: &UpperOptions, warnings: &mut Warnings) -> Result<Tree> {
        let md = fs::symlink_metadata(dir).map_err(|e| Error::io(dir, e))?;
        if !md.is_dir() {
            return Err(Error::NotADirectory {
                path: dir.to_owned(),
                found: file_kind_name(&md),
            });
        }
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
    let is_whiteout = |name: &[u8]| name.starts_with(WHITEOUT_PREFIX);
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

/// Reads an overlay upper directory for [`Tree::from_upper`].
struct UpperReader<'a> {
    options: &'a UpperOptions,
    warnings: &'a mut Warnings,
    owners: &'a mut BTreeMap<Vec<u8>, (u64, u64)>,
}

impl UpperReader<'_> {
    fn read(&mut self, source: &Path, dir: &mut Dir, prefix: &mut Vec<u8>) -> Result<()> {
        for (name, path) in sorted_children(source)? {
            let md = fs::symlink_metadata(&path).map_err(|e| Error::io(&path, e))?;
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
            } else if ft.is_symlink() {
                let target = fs::read_link(&path).map_err(|e| Error::io(&path, e))?;
                Node::Symlink {
                    target: target.as_os_str().as_bytes().to_vec(),
                    mode,
                }
            } else if let Some(node) = file_or_special(&path, &md) {
                node
            } else {
                self.warnings.0.push(format!(
                    "skipping socket {} (sockets cannot be stored in a layer)",
                    path.display()
                ));
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
    OPAQUE_XATTRS
        .iter()
        .any(|name| matches!(xattr::get(path, name), Ok(Some(v)) if v == b"y"))
}

struct Copier<'a> {
    options: &'a CopyOptions,
    warnings: &'a mut Warnings,
    /// (device, inode) of the source directories being copied, to catch `-k` loops.
    stack: &'a mut Vec<(u64, u64)>,
}

fn dir_at<'t>(root: &'t mut Dir, at: &[Vec<u8>]) -> &'t mut Dir {
    let mut dir = root;
    for part in at {
        dir = match dir.children.get_mut(part) {
            Some(Node::Dir(d)) => d,
            _ => unreachable!("the copier only descends into directories it made"),
        };
    }
    dir
}

impl Copier<'_> {
    fn merge(&mut self, root: &mut Dir, at: &[Vec<u8>], source: &Path) -> Result<()> {
        for (name, path) in sorted_children(source)? {
            let md = fs::symlink_metadata(&path).map_err(|e| Error::io(&path, e))?;
            let ft = md.file_type();
            let mode = md.mode() & 0o7777;
            let node = if ft.is_dir() {
                self.merge_dir(root, at, name, &path, &path, &md)?;
                continue;
            } else if ft.is_symlink() {
                let target = fs::read_link(&path).map_err(|e| Error::io(&path, e))?;
                if !self.options.keep_dirlinks
                    && let Some(real) = resolve_host(&path, &self.options.store_root)
                    && let Ok(tmd) = fs::metadata(&real)
                    && tmd.is_dir()
                {
                    self.merge_dir(root, at, name, &path, &real, &tmd)?;
                    continue;
                }
                Node::Symlink {
                    target: target.as_os_str().as_bytes().to_vec(),
                    mode,
                }
            } else if let Some(node) = file_or_special(&path, &md) {
                node
            } else {
                self.warnings.0.push(format!(
                    "skipping socket {} (sockets cannot be stored in a layer)",
                    path.display()
                ));
                continue;
            };
            dir_at(root, at).children.insert(name, node);
        }
        Ok(())
    }

    /// Merges the source directory `real` (reached through `path`) as child `name` of `at`.
    fn merge_dir(
        &mut self,
        root: &mut Dir,
        at: &[Vec<u8>],
        name: Vec<u8>,
        path: &Path,
        real: &Path,
        md: &Metadata,
    ) -> Result<()> {
        let id = (md.dev(), md.ino());
        if self.stack.contains(&id) {
            return Err(Error::Loop {
                path: path.to_owned(),
            });
        }
        let mode = md.mode() & 0o7777;
        let mut child_at = at.to_vec();
        let existing = dir_at(root, at).children.get(&name);
        match existing {
            Some(Node::Dir(_)) => {
                if let Some(Node::Dir(d)) = dir_at(root, at).children.get_mut(&name) {
                    d.mode = mode;
                }
                child_at.push(name);
            }
            Some(Node::Symlink { target, .. }) if self.options.keep_dirlinks => {
                let target = target.clone();
                if let Some(resolved) = resolve_in_tree(root, at, &target) {
                    child_at = resolved;
                } else if self.points_to_store_dir(&target) {
                    let mut shown = at.join(&b'/');
                    if !shown.is_empty() {
                        shown.push(b'/');
                    }
                    shown.extend_from_slice(&name);
                    return Err(Error::DirlinkOutside {
                        path: path.to_owned(),
                        name: String::from_utf8_lossy(&shown).into_owned(),
                        target: String::from_utf8_lossy(&target).into_owned(),
                    });
                } else {
                    Self::insert_dir(root, at, &name, mode);
                    child_at.push(name);
                }
            }
            _ => {
                Self::insert_dir(root, at, &name, mode);
                child_at.push(name);
            }
        }
        self.stack.push(id);
        let merged = self.merge(root, &child_at, real);
        self.stack.pop();
        merged
    }

    fn insert_dir(root: &mut Dir, at: &[Vec<u8>], name: &[u8], mode: u32) {
        dir_at(root, at).children.insert(
            name.to_vec(),
            Node::Dir(Dir {
                mode,
                children: BTreeMap::new(),
            }),
        );
    }

    fn points_to_store_dir(&self, target: &[u8]) -> bool {
        target.starts_with(b"/nix/store/")
            && fs::metadata(
                self.options
                    .store_root
                    .join(Path::new(OsStr::from_bytes(&target[1..]))),
            )
            .is_ok_and(|m| m.is_dir())
    }
}

/// Resolves a symlink target inside the tree, as rsync `-K` sees the destination: relative
/// targets from the link's directory `at`, absolute ones from the layer root. Returns the
/// directory's path when the target is a directory of the tree.
fn resolve_in_tree(root: &Dir, at: &[Vec<u8>], target: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut cur: Vec<Vec<u8>> = if target.starts_with(b"/") {
        Vec::new()
    } else {
        at.to_vec()
    };
    let mut pending: Vec<Vec<u8>> = split_rev(target);
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        match part.as_slice() {
            b"" | b"." => {}
            b".." => {
                cur.pop();
            }
            _ => {
                let dir = lookup_dir(root, &cur)?;
                match dir.children.get(&part)? {
                    Node::Dir(_) => cur.push(part),
                    Node::Symlink { target, .. } => {
                        hops += 1;
                        if hops > MAX_HOPS {
                            return None;
                        }
                        if target.starts_with(b"/") {
                            cur.clear();
                        }
                        pending.extend(split_rev(target));
                    }
                    _ => return None,
                }
            }
        }
    }
    Some(cur)
}

fn split_rev(path: &[u8]) -> Vec<Vec<u8>> {
    path.split(|&b| b == b'/')
        .rev()
        .map(<[u8]>::to_vec)
        .collect()
}

fn lookup_dir<'t>(root: &'t Dir, at: &[Vec<u8>]) -> Option<&'t Dir> {
    let mut dir = root;
    for part in at {
        match dir.children.get(part)? {
            Node::Dir(d) => dir = d,
            _ => return None,
        }
    }
    Some(dir)
}

/// Resolves `path` on the host, following every symlink of its last component, with
/// absolute targets under `/nix/store` taken from `store_root`. The folder holding `path` is
/// taken as the host sees it. Returns `None` for a dangling link, a loop, or a link to an
/// absolute path outside the store: those are never followed, because the image must not
/// depend on the build machine's own files.
pub fn resolve_host(path: &Path, store_root: &Path) -> Option<PathBuf> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut cur = fs::canonicalize(parent).ok()?;
    let mut pending: Vec<PathBuf> = Vec::new();
    push_components(&mut pending, Path::new(path.file_name()?));
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        if part.as_os_str() == ".." {
            cur.pop();
            continue;
        }
        let next = cur.join(&part);
        let md = fs::symlink_metadata(&next).ok()?;
        if md.file_type().is_symlink() {
            hops += 1;
            if hops > MAX_HOPS {
                return None;
            }
            let target = fs::read_link(&next).ok()?;
            if target.is_absolute() {
                let rest = target.strip_prefix("/nix/store").ok()?;
                cur = store_root.join("nix/store");
                push_components(&mut pending, rest);
            } else {
                push_components(&mut pending, &target);
            }
        } else {
            cur = next;
        }
    }
    Some(cur)
}

/// Pushes the normal and `..` components of `path` onto `pending` so that the first one is
/// popped first.
fn push_components(pending: &mut Vec<PathBuf>, path: &Path) {
    let parts: Vec<PathBuf> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(p) => Some(PathBuf::from(p)),
            Component::ParentDir => Some(PathBuf::from("..")),
            _ => None,
        })
        .collect();
    pending.extend(parts.into_iter().rev());
}

/// Sets permission bits on a host path (used by staging).
pub(crate) fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| Error::io(path, e))
}

/// What an entry needs to know of an object, from `lstat` or `fstatat`.
struct Stat {
    /// The `S_IFMT` bits of `st_mode`.
    format: u32,
    /// Permission bits with setuid, setgid and sticky.
    mode: u32,
    size: u64,
    rdev: u64,
}

impl From<&fs::Metadata> for Stat {
    fn from(md: &fs::Metadata) -> Self {
        Stat {
            format: md.mode() & libc_ifmt::S_IFMT,
            mode: md.mode() & 0o7777,
            size: md.len(),
            rdev: md.rdev(),
        }
    }
}

/// The file-type bits of `st_mode` (the values are the same on every Linux).
mod libc_ifmt {
    pub const S_IFMT: u32 = 0o170_000;
    pub const S_IFDIR: u32 = 0o040_000;
    pub const S_IFLNK: u32 = 0o120_000;
    pub const S_IFREG: u32 = 0o100_000;
    pub const S_IFIFO: u32 = 0o010_000;
    pub const S_IFCHR: u32 = 0o020_000;
    pub const S_IFBLK: u32 = 0o060_000;
}

/// The entry for the object at `source` (not followed), named `name`, or `None` for a
/// socket.
fn entry_at(source: &Path, name: &[u8], owner: &Owner, mtime: u64) -> Result<Option<Entry>> {
    let md = fs::symlink_metadata(source).map_err(|e| Error::io(source, e))?;
    entry_from(&Stat::from(&md), source, name, owner, mtime, || {
        fs::read_link(source).map(|t| t.into_os_string().into_vec())
    })
}

/// The entry for `child` of the open folder `dir`, at `source` on the host: looked up
/// relative to the folder, not through its whole path again.
fn child_entry(
    dir: &nix::dir::Dir,
    child: &[u8],
    source: &Path,
    name: &[u8],
    owner: &Owner,
    mtime: u64,
) -> Result<Option<Entry>> {
    use nix::fcntl::{AtFlags, readlinkat};
    use nix::sys::stat::fstatat;
    let child_os = OsStr::from_bytes(child);
    let st = fstatat(dir, child_os, AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_err(|e| Error::io(source, e.into()))?;
    let stat = Stat {
        format: st.st_mode & libc_ifmt::S_IFMT,
        mode: st.st_mode & 0o7777,
        size: u64::try_from(st.st_size).unwrap_or(0),
        rdev: st.st_rdev,
    };
    entry_from(&stat, source, name, owner, mtime, || {
        readlinkat(dir, child_os)
            .map(OsString::into_vec)
            .map_err(io::Error::from)
    })
}

fn entry_from(
    stat: &Stat,
    source: &Path,
    name: &[u8],
    owner: &Owner,
    mtime: u64,
    read_link: impl FnOnce() -> io::Result<Vec<u8>>,
) -> Result<Option<Entry>> {
    use libc_ifmt::{S_IFDIR, S_IFLNK, S_IFREG};
    let kind = match stat.format {
        S_IFDIR => EntryKind::Directory,
        S_IFLNK => EntryKind::Symlink(read_link().map_err(|e| Error::io(source, e))?),
        S_IFREG => EntryKind::File {
            source: source.to_owned(),
            size: stat.size,
        },
        _ => match special_kind(stat) {
            Some(kind) => kind,
            None => return Ok(None),
        },
    };
    let mut member = name.to_vec();
    if kind == EntryKind::Directory {
        member.push(b'/');
    }
    Ok(Some(Entry {
        name: member,
        kind,
        mode: stat.mode,
        owner: owner.clone(),
        mtime,
    }))
}

/// Calls `f` with the entry of the object at `source` and, for a directory, of everything
/// below it (symlinks never followed), named `name`, `name/child`, … (folders with a
/// trailing `/`), in the byte order of their full paths, as buildImage appends a store
/// closure: `-` (0x2D) sorts before `/` (0x2F), so `a-b/x` comes before `a/x`, which is not
/// tree order. Sockets are skipped.
///
/// Nothing is collected: the entries of a child folder form one contiguous run in that
/// order, placed as if named `child/`, so each folder's listing is sorted on its own and
/// memory grows with the depth of the tree, not its size.
pub fn for_each_by_path<E: From<Error>>(
    source: &Path,
    name: &[u8],
    owner: &Owner,
    mtime: u64,
    f: &mut dyn FnMut(&Entry) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    let Some(entry) = entry_at(source, name, owner, mtime)? else {
        return Ok(());
    };
    f(&entry)?;
    if entry.kind == EntryKind::Directory {
        walk_by_path(source, name, owner, mtime, f)?;
    }
    Ok(())
}

/// The contents of folder `source` (named `name`) for [`for_each_by_path`].
fn walk_by_path<E: From<Error>>(
    source: &Path,
    name: &[u8],
    owner: &Owner,
    mtime: u64,
    f: &mut dyn FnMut(&Entry) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    // One item for each child's own entry (key: its name) and one for each child folder's
    // contents (key: its name and `/`).
    use nix::fcntl::OFlag;
    // Listed and looked up through one descriptor, not followed if it became a symlink.
    let io_err = |e: nix::Error| Error::io(source, e.into());
    let mut dir = nix::dir::Dir::open(
        source,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(io_err)?;
    let mut children = Vec::new();
    for item in dir.iter() {
        let child = item.map_err(io_err)?.file_name().to_bytes().to_vec();
        if child != b"." && child != b".." {
            children.push(child);
        }
    }
    // One item for each child's own entry (key: its name) and one for each child folder's
    // contents (key: its name and `/`), sorted once by key.
    let mut items: Vec<(Vec<u8>, Option<Entry>, PathBuf)> = Vec::new();
    for child in children {
        let path = source.join(OsStr::from_bytes(&child));
        let mut child_name = name.to_vec();
        child_name.push(b'/');
        child_name.extend_from_slice(&child);
        let Some(entry) = child_entry(&dir, &child, &path, &child_name, owner, mtime)? else {
            continue;
        };
        if entry.kind == EntryKind::Directory {
            let mut key = child.clone();
            key.push(b'/');
            items.push((key, None, path.clone()));
        }
        items.push((child, Some(entry), path));
    }
    // Closed before going deeper: one open folder at a time, however deep the tree.
    drop(dir);
    items.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    for (key, entry, path) in items {
        if let Some(entry) = entry {
            f(&entry)?;
        } else {
            let mut child_name = name.to_vec();
            child_name.push(b'/');
            child_name.extend_from_slice(&key[..key.len() - 1]);
            walk_by_path(&path, &child_name, owner, mtime, f)?;
        }
    }
    Ok(())
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

    #[test]
    fn upper_dirs_give_whiteouts_opaque_markers_and_real_owners() {
        let root = nix::unistd::geteuid().is_root();
        let dir = tempfile::tempdir().unwrap();
        let up = dir.path();
        fs::create_dir(up.join("etc")).unwrap();
        fs::write(up.join("etc/owned"), b"x").unwrap();
        symlink("owned", up.join("etc/link")).unwrap();
        fs::create_dir(up.join("opaque")).unwrap();
        let marked = xattr::set(up.join("opaque"), "user.overlay.opaque", b"y").is_ok();
        fs::create_dir(up.join("plain")).unwrap();
        xattr::set(up.join("plain"), "user.overlay.opaque", b"n").ok();
        if root {
            mknod(
                &up.join("etc/gone"),
                SFlag::S_IFCHR,
                Mode::empty(),
                nix::sys::stat::makedev(0, 0),
            )
            .unwrap();
            lchown(up.join("etc/owned"), Some(1000), Some(1001)).unwrap();
            lchown(up.join("etc/link"), Some(5), Some(6)).unwrap();
        }
        let me = (
            u64::from(nix::unistd::geteuid().as_raw()),
            u64::from(nix::unistd::getegid().as_raw()),
        );
        let options = UpperOptions {
            root_uid: me.0,
            root_gid: me.1,
        };
        let tree = Tree::from_upper(up, &options, &mut Warnings::default()).unwrap();
        let entries = tree.entries(&Owner::numeric(9, 9), 0);
        let shown: Vec<(String, u64, u64)> = entries
            .iter()
            .map(|e| {
                (
                    String::from_utf8_lossy(&e.name).into_owned(),
                    e.owner.uid,
                    e.owner.gid,
                )
            })
            .collect();
        let mut expected = vec![("./".to_owned(), 0, 0), ("./etc/".to_owned(), 0, 0)];
        if root {
            expected.push(("./etc/.wh.gone".to_owned(), 0, 0));
            expected.push(("./etc/link".to_owned(), 5, 6));
            expected.push(("./etc/owned".to_owned(), 1000, 1001));
        } else {
            expected.push(("./etc/link".to_owned(), 0, 0));
            expected.push(("./etc/owned".to_owned(), 0, 0));
        }
        expected.push(("./opaque/".to_owned(), 0, 0));
        if marked {
            expected.push(("./opaque/.wh..wh..opq".to_owned(), 0, 0));
        }
        expected.push(("./plain/".to_owned(), 0, 0));
        assert_eq!(shown, expected);
        for e in &entries {
            if e.name.ends_with(b".wh.gone") || e.name.ends_with(OPAQUE_MARKER) {
                assert_eq!(e.kind, EntryKind::Data(Vec::new()));
                assert_eq!(e.mode, 0o644);
            }
        }
        assert_eq!(entries[0].owner.uname, "root");
    }
}
