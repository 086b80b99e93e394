//! Staging on the host: writing a planned tree out as real files (for scripts that must run
//! in the layer's root before it is packed), and the scratch folders that hold such files.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use nix::sys::stat::{Mode, SFlag, makedev, mknod};
use nix::unistd::mkfifo;

use crate::entry::EntryKind;
use crate::error::{Error, Result};
use crate::tree::{Dir, Node, Tree};

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
                fs::create_dir(&path).map_err(|e| Error::io("create", &path, e))?;
                set_mode(&path, 0o700)?;
                write_dir(d, &path)?;
                set_mode(&path, d.mode)?;
            }
            Node::File { source, mode, .. } => {
                // Writing the copy fails far more often (a full disk) than reading the source.
                fs::copy(source, &path).map_err(|e| Error::io("write", &path, e))?;
                set_mode(&path, *mode)?;
            }
            Node::Symlink { target, .. } => {
                symlink(OsStr::from_bytes(target), &path)
                    .map_err(|e| Error::io("create", &path, e))?;
            }
            Node::Special {
                kind: EntryKind::Data(data),
                mode,
            } => {
                fs::write(&path, data).map_err(|e| Error::io("write", &path, e))?;
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
                made.map_err(|e| Error::io("create", &path, e.into()))?;
                set_mode(&path, *mode)?;
            }
        }
    }
    Ok(())
}

/// Sets permission bits on a host path.
pub(crate) fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io("set the mode of", path, e))
}

/// Deletes a staged tree, first making its directories writable (store directories are
/// read-only, and a script or overlayfs may have made others so). Symlinks are never
/// followed.
pub fn remove_tree(path: &Path) -> Result<()> {
    fn unlock(dir: &Path) -> Result<()> {
        let md = fs::symlink_metadata(dir).map_err(|e| Error::io("inspect", dir, e))?;
        if !md.is_dir() {
            return Ok(());
        }
        set_mode(dir, 0o700)?;
        for item in fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))? {
            let item = item.map_err(|e| Error::io("list", dir, e))?;
            if item
                .file_type()
                .map_err(|e| Error::io("inspect", item.path(), e))?
                .is_dir()
            {
                unlock(&item.path())?;
            }
        }
        Ok(())
    }
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("inspect", path, e)),
        Ok(_) => {}
    }
    unlock(path)?;
    fs::remove_dir_all(path).map_err(|e| Error::io("remove", path, e))
}

/// A private temporary folder (staging, extracted base layers, a database being written),
/// removed with everything in it, read-only folders included, when dropped: on success,
/// error or interruption alike.
///
/// Dropping removes it silently; call [`ScratchDir::remove`] to learn whether that worked.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
    removed: bool,
}

impl ScratchDir {
    /// A new folder named `PREFIX…` in `parent`.
    pub fn new_in(parent: &Path, prefix: &str) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(parent)
            .map_err(|e| Error::io("create a temporary folder in", parent, e))?;
        Ok(ScratchDir {
            path: dir.keep(),
            removed: false,
        })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `rel` inside the folder.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path.join(rel)
    }

    /// Removes the folder now, reporting failure.
    pub fn remove(mut self) -> Result<()> {
        self.removed = true;
        remove_tree(&self.path)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if !self.removed {
            let _ = remove_tree(&self.path);
        }
    }
}
