//! Copying source folders into the tree with the semantics of `rsync -a` and `-k`/`-K`.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{self, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use super::{Dir, Node, Tree, Warnings, sorted_children};
use crate::error::{Error, Result};
use crate::stat::{folder_metadata, leaf_node};

/// How many symlinks a path may pass through before it counts as a loop (Linux's limit).
const MAX_HOPS: usize = 40;

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

impl Tree {
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
        let md = folder_metadata(&real, source, true)?;
        self.root.mode = md.mode() & 0o7777;
        let mut stack = vec![(md.dev(), md.ino())];
        let mut copier = Copier {
            options,
            warnings,
            stack: &mut stack,
        };
        copier.merge(&mut self.root, &[], &real)
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
            let md = fs::symlink_metadata(&path).map_err(|e| Error::io("inspect", &path, e))?;
            let ft = md.file_type();
            if ft.is_dir() {
                self.merge_dir(root, at, name, &path, &path, &md)?;
                continue;
            }
            // rsync -k: a symlink to a folder is copied as the folder.
            if ft.is_symlink()
                && !self.options.keep_dirlinks
                && let Some(real) = resolve_host(&path, &self.options.store_root)
                && let Ok(tmd) = fs::metadata(&real)
                && tmd.is_dir()
            {
                self.merge_dir(root, at, name, &path, &real, &tmd)?;
                continue;
            }
            let Some(node) = leaf_node(&path, &md, self.warnings)? else {
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
