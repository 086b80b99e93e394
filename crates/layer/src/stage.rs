//! Staging: writing a planned tree out as real files, for scripts (`extraCommands`) that
//! must run in the layer's root before it is packed.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use nix::sys::stat::{Mode, SFlag, makedev, mknod};
use nix::unistd::mkfifo;

use crate::entry::EntryKind;
use crate::error::{Error, Result};
use crate::tree::{Dir, Node, Tree, set_mode};

/// Writes `tree` into the existing, empty directory `dest`: directories, file copies,
/// in-memory files, symlinks, fifos and device nodes (device nodes need root), with the
/// planned modes. Owners are not set: everything belongs to the caller.
///
/// Directory modes are applied after their contents are written, so read-only directories
/// (0555 store paths) can be filled.
pub fn materialize(tree: &Tree, dest: &Path) -> Result<()> {
    write_dir(&tree.root, dest)?;
    set_mode(dest, tree.root.mode)
}

fn write_dir(dir: &Dir, dest: &Path) -> Result<()> {
    for (name, node) in &dir.children {
        let path = dest.join(OsStr::from_bytes(name));
        match node {
            Node::Dir(d) => {
                fs::create_dir(&path).map_err(|e| Error::io(&path, e))?;
                set_mode(&path, 0o700)?;
                write_dir(d, &path)?;
                set_mode(&path, d.mode)?;
            }
            Node::File { source, mode, .. } => {
                // Writing the copy fails far more often (a full disk) than reading the source.
                fs::copy(source, &path).map_err(|e| Error::io(&path, e))?;
                set_mode(&path, *mode)?;
            }
            Node::Symlink { target, .. } => {
                symlink(OsStr::from_bytes(target), &path).map_err(|e| Error::io(&path, e))?;
            }
            Node::Special {
                kind: EntryKind::Data(data),
                mode,
            } => {
                fs::write(&path, data).map_err(|e| Error::io(&path, e))?;
                set_mode(&path, *mode)?;
            }
            Node::Special { kind, mode } => {
                let perm = Mode::from_bits_truncate(*mode);
                let made = match kind {
                    EntryKind::Fifo => mkfifo(&path, perm),
                    EntryKind::CharDevice { major, minor } => mknod(
                        &path,
                        SFlag::S_IFCHR,
                        perm,
                        makedev(u64::from(*major), u64::from(*minor)),
                    ),
                    EntryKind::BlockDevice { major, minor } => mknod(
                        &path,
                        SFlag::S_IFBLK,
                        perm,
                        makedev(u64::from(*major), u64::from(*minor)),
                    ),
                    _ => unreachable!("special nodes are fifos, devices and in-memory files"),
                };
                made.map_err(|e| Error::io(&path, e.into()))?;
                set_mode(&path, *mode)?;
            }
        }
    }
    Ok(())
}

/// Deletes a staged tree, first making its directories writable (store directories are
/// read-only, and a script may have made others so). Symlinks are never followed.
pub fn remove_tree(path: &Path) -> Result<()> {
    fn unlock(dir: &Path) -> Result<()> {
        let md = fs::symlink_metadata(dir).map_err(|e| Error::io(dir, e))?;
        if !md.is_dir() {
            return Ok(());
        }
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(dir, e))?;
        for item in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let item = item.map_err(|e| Error::io(dir, e))?;
            if item
                .file_type()
                .map_err(|e| Error::io(item.path(), e))?
                .is_dir()
            {
                unlock(&item.path())?;
            }
        }
        Ok(())
    }
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(path, e)),
        Ok(_) => {}
    }
    unlock(path)?;
    fs::remove_dir_all(path).map_err(|e| Error::io(path, e))
}
