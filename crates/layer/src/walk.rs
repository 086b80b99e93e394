//! Walking a host folder in the orders store paths are packed in: the byte order of full
//! paths (`buildImage`'s closure) and tree order (`streamLayeredImage`'s store layers).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::entry::{Entry, EntryKind, Owner};
use crate::error::Error;
use crate::stat::{child_entry, entry_at};

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
    walk_from(source, name, owner, mtime, b'/', f)
}

/// Calls `f` like [`for_each_by_path`], but in tree order: each folder's contents right
/// after it, siblings in the byte order of their names (`a`, what `a` holds, then `a-b`),
/// as Python's `sorted(path.rglob("*"))` lists a store path for nixpkgs'
/// `streamLayeredImage`.
pub fn for_each_in_tree<E: From<Error>>(
    source: &Path,
    name: &[u8],
    owner: &Owner,
    mtime: u64,
    f: &mut dyn FnMut(&Entry) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    // NUL sorts before every byte a name may hold: a folder's contents come right after
    // its own entry and before any sibling whose name extends it.
    walk_from(source, name, owner, mtime, 0, f)
}

/// The entry of `source` and, for a folder, its contents, placed after the entries whose
/// names sort before `name` + `separator`.
fn walk_from<E: From<Error>>(
    source: &Path,
    name: &[u8],
    owner: &Owner,
    mtime: u64,
    separator: u8,
    f: &mut dyn FnMut(&Entry) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    let Some(entry) = entry_at(source, name, owner, mtime)? else {
        return Ok(());
    };
    f(&entry)?;
    if entry.kind == EntryKind::Directory {
        walk_folder(source, name, owner, mtime, separator, f)?;
    }
    Ok(())
}

/// The contents of folder `source` (named `name`).
fn walk_folder<E: From<Error>>(
    source: &Path,
    name: &[u8],
    owner: &Owner,
    mtime: u64,
    separator: u8,
    f: &mut dyn FnMut(&Entry) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    use nix::fcntl::OFlag;
    // Listed and looked up through one descriptor, not followed if it became a symlink.
    let io_err = |e: nix::Error| Error::io("list", source, e.into());
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
    // contents (key: its name and the separator), sorted once by key.
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
            key.push(separator);
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
            walk_folder(&path, &child_name, owner, mtime, separator, f)?;
        }
    }
    Ok(())
}
