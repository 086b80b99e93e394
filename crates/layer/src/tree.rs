//! The layer's file tree, merged from source directories with rsync `-a` semantics.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{self, Metadata};
use std::os::unix::ffi::OsStrExt;
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
    /// Any other kept object: fifo or device node.
    Special {
        /// The kind (never `Directory`, `File`, `Data` or `Symlink`).
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
}

impl Default for Tree {
    fn default() -> Self {
        Tree {
            root: Dir {
                mode: 0o755,
                children: BTreeMap::new(),
            },
        }
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

    /// Flattens the tree into tar entries in GNU tar `--sort=name` order: each directory
    /// before its children, children in byte order, names starting with `./`.
    pub fn entries(&self, owner: &Owner, mtime: u64) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut name = b"./".to_vec();
        out.push(Entry {
            name: name.clone(),
            kind: EntryKind::Directory,
            mode: self.root.mode,
            owner: owner.clone(),
            mtime,
        });
        flatten(&self.root, &mut name, owner, mtime, &mut out);
        out
    }

    /// Visits every regular file of the tree with its layer path (without `./`).
    pub fn for_each_file(&self, mut f: impl FnMut(&[u8], &Path)) {
        fn walk(dir: &Dir, prefix: &mut Vec<u8>, f: &mut dyn FnMut(&[u8], &Path)) {
            for (name, node) in &dir.children {
                let len = prefix.len();
                if len > 0 {
                    prefix.push(b'/');
                }
                prefix.extend_from_slice(name);
                match node {
                    Node::Dir(d) => walk(d, prefix, f),
                    Node::File { source, .. } => f(prefix, source),
                    _ => {}
                }
                prefix.truncate(len);
            }
        }
        walk(&self.root, &mut Vec::new(), &mut f);
    }

    /// Puts `node` at `path` (components without `./`), replacing what was there and
    /// creating missing parent directories with mode `dir_mode`. A parent that exists but
    /// is not a directory is replaced by one.
    pub fn insert(&mut self, path: &[u8], node: Node, dir_mode: u32) {
        let parts: Vec<&[u8]> = path
            .split(|&b| b == b'/')
            .filter(|p| !p.is_empty())
            .collect();
        let Some((last, parents)) = parts.split_last() else {
            return;
        };
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

    /// Visits every symlink of the tree with its layer path (without `./`) and raw target.
    pub fn for_each_symlink(&self, mut f: impl FnMut(&[u8], &[u8])) {
        fn walk(dir: &Dir, prefix: &mut Vec<u8>, f: &mut dyn FnMut(&[u8], &[u8])) {
            for (name, node) in &dir.children {
                let len = prefix.len();
                if len > 0 {
                    prefix.push(b'/');
                }
                prefix.extend_from_slice(name);
                match node {
                    Node::Dir(d) => walk(d, prefix, f),
                    Node::Symlink { target, .. } => f(prefix, target),
                    _ => {}
                }
                prefix.truncate(len);
            }
        }
        walk(&self.root, &mut Vec::new(), &mut f);
    }

    /// Every path of the tree (without `./`, no trailing `/`), in tree order.
    pub fn paths(&self) -> Vec<Vec<u8>> {
        fn walk(dir: &Dir, prefix: &mut Vec<u8>, out: &mut Vec<Vec<u8>>) {
            for (name, node) in &dir.children {
                let len = prefix.len();
                if len > 0 {
                    prefix.push(b'/');
                }
                prefix.extend_from_slice(name);
                out.push(prefix.clone());
                if let Node::Dir(d) = node {
                    walk(d, prefix, out);
                }
                prefix.truncate(len);
            }
        }
        let mut out = Vec::new();
        walk(&self.root, &mut Vec::new(), &mut out);
        out
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

fn flatten(dir: &Dir, name: &mut Vec<u8>, owner: &Owner, mtime: u64, out: &mut Vec<Entry>) {
    for (child, node) in &dir.children {
        let len = name.len();
        name.extend_from_slice(child);
        let (kind, mode) = match node {
            Node::Dir(_) => {
                name.push(b'/');
                (EntryKind::Directory, None)
            }
            Node::File { source, size, mode } => (
                EntryKind::File {
                    source: source.clone(),
                    size: *size,
                },
                Some(*mode),
            ),
            Node::Symlink { target, mode } => (EntryKind::Symlink(target.clone()), Some(*mode)),
            Node::Special { kind, mode } => (kind.clone(), Some(*mode)),
        };
        let mode = match node {
            Node::Dir(d) => d.mode,
            _ => mode.unwrap_or(0),
        };
        out.push(Entry {
            name: name.clone(),
            kind,
            mode,
            owner: owner.clone(),
            mtime,
        });
        if let Node::Dir(d) = node {
            flatten(d, name, owner, mtime, out);
        }
        name.truncate(len);
    }
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
            } else if ft.is_file() {
                Node::File {
                    source: path,
                    size: md.len(),
                    mode,
                }
            } else if ft.is_fifo() {
                Node::Special {
                    kind: EntryKind::Fifo,
                    mode,
                }
            } else if ft.is_char_device() || ft.is_block_device() {
                let (major, minor) = split_dev(md.rdev());
                let kind = if ft.is_char_device() {
                    EntryKind::CharDevice { major, minor }
                } else {
                    EntryKind::BlockDevice { major, minor }
                };
                Node::Special { kind, mode }
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

/// Lists the object at `source` and, for a directory, everything below it (symlinks never
/// followed), as entries named `name`, `name/child`, … (directories with a trailing `/`),
/// sorted by the byte order of their full paths, as buildImage appends a store closure:
/// `-` (0x2D) sorts before `/` (0x2F), so this is not tree order. Sockets are skipped.
pub fn listing_entries(
    source: &Path,
    name: &[u8],
    owner: &Owner,
    mtime: u64,
    out: &mut Vec<(Vec<u8>, Entry)>,
) -> Result<()> {
    let md = fs::symlink_metadata(source).map_err(|e| Error::io(source, e))?;
    let ft = md.file_type();
    let mode = md.mode() & 0o7777;
    let kind = if ft.is_dir() {
        EntryKind::Directory
    } else if ft.is_symlink() {
        let target = fs::read_link(source).map_err(|e| Error::io(source, e))?;
        EntryKind::Symlink(target.as_os_str().as_bytes().to_vec())
    } else if ft.is_file() {
        EntryKind::File {
            source: source.to_owned(),
            size: md.len(),
        }
    } else if ft.is_fifo() {
        EntryKind::Fifo
    } else if ft.is_char_device() || ft.is_block_device() {
        let (major, minor) = split_dev(md.rdev());
        if ft.is_char_device() {
            EntryKind::CharDevice { major, minor }
        } else {
            EntryKind::BlockDevice { major, minor }
        }
    } else {
        return Ok(());
    };
    let mut member = name.to_vec();
    if kind == EntryKind::Directory {
        member.push(b'/');
    }
    out.push((
        name.to_vec(),
        Entry {
            name: member,
            kind: kind.clone(),
            mode,
            owner: owner.clone(),
            mtime,
        },
    ));
    if kind == EntryKind::Directory {
        for (child, path) in sorted_children(source)? {
            let mut child_name = name.to_vec();
            child_name.push(b'/');
            child_name.extend_from_slice(&child);
            listing_entries(&path, &child_name, owner, mtime, out)?;
        }
    }
    Ok(())
}
