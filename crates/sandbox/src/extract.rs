//! Safe extraction of a layer tar into an overlay lower directory.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{
    FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt, lchown, symlink,
};
use std::path::{Path, PathBuf};

use nix::fcntl::AT_FDCWD;
use nix::sys::stat::{Mode, SFlag, UtimensatFlags, makedev, mknod, utimensat};
use nix::sys::time::TimeSpec;
use nix::unistd::{geteuid, mkfifo};
use tar::EntryType;

use crate::error::{Error, Result};

/// The prefix of an OCI whiteout file.
const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// The OCI opaque-directory marker.
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
/// Names starting with this are whiteout metadata of aufs (`.wh..wh.plnk`, …), not whiteouts.
const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
/// The PAX record prefix GNU tar and Docker use for extended attributes.
const PAX_XATTR: &str = "SCHILY.xattr.";

/// Extracts the plain (uncompressed) layer tar `tar_path` into `dest` (created if missing),
/// in the form overlayfs wants for a lower directory.
///
/// - Nothing is ever written outside `dest`: leading `/` are dropped, a name with a `..`
///   component is refused, every parent folder is checked without following symlinks (an
///   entry that passes through a symlink or a file is refused), existing objects at an
///   entry's own name are replaced, never followed, and hard links may only point at
///   files already extracted into `dest`.
/// - Owners (numeric ids), modes with setuid, setgid and sticky bits, modification times
///   and extended attributes (`SCHILY.xattr.*`; overlayfs' own `*.overlay.*` attributes
///   are dropped) are kept when running as root. Device nodes need root: without it they
///   are left out (a whiteout takes their place, hiding lower layers' objects there too)
///   and listed in [`Extracted::skipped_devices`], as Docker leaves them out in a user
///   namespace; so are hard links to them.
/// - OCI whiteouts become overlayfs ones: `.wh.NAME` a character device 0/0 `NAME`, and
///   `.wh..wh..opq` the attribute `trusted.overlay.opaque=y` on its folder
///   (`user.overlay.opaque` without root, for an overlay mounted with `userxattr`). A
///   directory of the layer that replaces a whiteout of the same layer becomes opaque.
///
/// A hostile entry is an [`Error::Hostile`]; entries extracted before it stay in `dest`.
pub fn extract_layer(tar_path: &Path, dest: &Path) -> Result<Extracted> {
    let file = File::open(tar_path).map_err(|e| Error::io(tar_path, e))?;
    fs::create_dir_all(dest).map_err(|e| Error::io(dest, e))?;
    let mut ex = Extractor {
        tar: tar_path,
        dest,
        privileged: geteuid().is_root(),
        userxattr: crate::needs_userxattr(),
        dirs: BTreeMap::new(),
        extracted: Extracted::default(),
        skipped: BTreeSet::new(),
    };
    let mut archive = tar::Archive::new(BufReader::new(file));
    let tar_err = |e| Error::Tar {
        path: tar_path.to_owned(),
        source: e,
    };
    for entry in archive.entries().map_err(tar_err)? {
        let mut entry = entry.map_err(tar_err)?;
        ex.entry(&mut entry)?;
    }
    ex.finish()
}

/// What [`extract_layer`] could not recreate, for the caller to report.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Extracted {
    /// The device nodes left out (only root can create them), as paths relative to the
    /// layer's root (`etc/null`).
    pub skipped_devices: Vec<Vec<u8>>,
}

impl Extracted {
    /// The skipped device nodes that a `runAsRoot` script would have seen: those outside
    /// `/dev`, which the sandbox replaces with a fresh one in any case.
    pub fn skipped_devices_outside_dev(&self) -> impl Iterator<Item = &[u8]> {
        self.skipped_devices
            .iter()
            .map(Vec::as_slice)
            .filter(|path| *path != b"dev" && !path.starts_with(b"dev/"))
    }
}

/// The metadata applied to an object once it exists.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    xattrs: Vec<(String, Vec<u8>)>,
}

struct Extractor<'a> {
    tar: &'a Path,
    dest: &'a Path,
    privileged: bool,
    /// Opaque folders are marked with `user.overlay.opaque` (for an overlay mounted with
    /// `userxattr`) rather than `trusted.overlay.opaque`.
    userxattr: bool,
    /// Folders whose metadata is applied at the end, so read-only ones can be filled; a
    /// later entry for the same folder wins.
    dirs: BTreeMap<PathBuf, Meta>,
    extracted: Extracted,
    /// Where skipped device nodes would have been, for hard links to them.
    skipped: BTreeSet<PathBuf>,
}

/// Splits a tar name into its components, without empty ones and `.`; `None` when a
/// component is `..`.
fn components(raw: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return None,
            _ => out.push(part),
        }
    }
    Some(out)
}

fn is_whiteout_device(md: &fs::Metadata) -> bool {
    md.file_type().is_char_device() && md.rdev() == 0
}

impl Extractor<'_> {
    fn hostile(&self, entry: &[u8], reason: impl Into<String>) -> Error {
        Error::Hostile {
            path: self.tar.to_owned(),
            entry: String::from_utf8_lossy(entry).into_owned(),
            reason: reason.into(),
        }
    }

    fn opaque_xattr(&self) -> &'static str {
        if self.userxattr {
            "user.overlay.opaque"
        } else {
            "trusted.overlay.opaque"
        }
    }

    fn set_opaque(&self, dir: &Path) -> Result<()> {
        xattr::set(dir, self.opaque_xattr(), b"y").map_err(|e| Error::io(dir, e))
    }

    fn entry<R: io::Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let raw = entry.path_bytes().into_owned();
        let Some(parts) = components(&raw) else {
            return Err(self.hostile(&raw, "the name leaves the layer through `..`"));
        };
        let meta = self.meta(entry, &raw)?;
        let Some((name, parents)) = parts.split_last() else {
            // `./`: the layer's root folder.
            if kind == EntryType::Directory {
                self.dirs.insert(self.dest.to_owned(), meta);
            }
            return Ok(());
        };
        let parent = self.parents(parents, &raw, true)?;
        if *name == OPAQUE_MARKER {
            return self.set_opaque(&parent);
        }
        if name.starts_with(WHITEOUT_META_PREFIX) {
            return Ok(());
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            if matches!(hidden, b"" | b"." | b"..") {
                return Err(self.hostile(&raw, "a whiteout of no name, `.` or `..`"));
            }
            return self.whiteout(&parent.join(OsStr::from_bytes(hidden)));
        }
        let path = parent.join(OsStr::from_bytes(name));
        let existing = fs::symlink_metadata(&path).ok();
        if kind == EntryType::Directory {
            match existing {
                Some(md) if md.is_dir() => {}
                Some(md) => {
                    self.remove(&path)?;
                    Self::mkdir(&path)?;
                    if is_whiteout_device(&md) {
                        // The layer deletes the lower folder and makes a new one.
                        self.set_opaque(&path)?;
                    }
                }
                None => Self::mkdir(&path)?,
            }
            self.dirs.insert(path, meta);
            return Ok(());
        }
        let link_source = if kind == EntryType::Link {
            let target = entry
                .link_name_bytes()
                .ok_or_else(|| self.hostile(&raw, "a hard link without a target"))?;
            let source = self.link_source(&target, &raw)?;
            if source == path {
                return Ok(());
            }
            Some(source)
        } else {
            None
        };
        if existing.is_some() {
            self.remove(&path)?;
        }
        if let Some(source) = link_source {
            if self.skipped.contains(&source) {
                return self.skip_device(parts.join(&b'/'), path);
            }
            // A hard link shares the metadata of its target: nothing more to apply.
            return fs::hard_link(&source, &path).map_err(|e| Error::io(&path, e));
        }
        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let mut out = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(|e| Error::io(&path, e))?;
                io::copy(entry, &mut out).map_err(|e| Error::Tar {
                    path: self.tar.to_owned(),
                    source: e,
                })?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.hostile(&raw, "a symlink without a target"))?;
                symlink(OsStr::from_bytes(&target), &path).map_err(|e| Error::io(&path, e))?;
            }
            EntryType::Char | EntryType::Block => {
                if !self.privileged {
                    return self.skip_device(parts.join(&b'/'), path);
                }
                let major = entry.header().device_major().ok().flatten().unwrap_or(0);
                let minor = entry.header().device_minor().ok().flatten().unwrap_or(0);
                let sflag = if kind == EntryType::Char {
                    SFlag::S_IFCHR
                } else {
                    SFlag::S_IFBLK
                };
                mknod(
                    &path,
                    sflag,
                    Mode::empty(),
                    makedev(u64::from(major), u64::from(minor)),
                )
                .map_err(|e| Error::io(&path, e.into()))?;
            }
            EntryType::Fifo => {
                mkfifo(&path, Mode::empty()).map_err(|e| Error::io(&path, e.into()))?;
            }
            _ => return Ok(()),
        }
        self.apply(&path, &meta, kind == EntryType::Symlink)
    }

    /// Reads owner, mode, time and extended attributes from the entry's header.
    fn meta<R: io::Read>(&self, entry: &mut tar::Entry<'_, R>, raw: &[u8]) -> Result<Meta> {
        let header = entry.header();
        let bad = |what: &str| self.hostile(raw, format!("unreadable {what} field"));
        let mode = header.mode().map_err(|_| bad("mode"))? & 0o7777;
        let uid = header.uid().map_err(|_| bad("uid"))?;
        let gid = header.gid().map_err(|_| bad("gid"))?;
        let mtime = header.mtime().map_err(|_| bad("mtime"))?;
        let uid = u32::try_from(uid).map_err(|_| bad("uid"))?;
        let gid = u32::try_from(gid).map_err(|_| bad("gid"))?;
        let mut xattrs = Vec::new();
        if let Some(pax) = entry.pax_extensions().map_err(|e| Error::Tar {
            path: self.tar.to_owned(),
            source: e,
        })? {
            for ext in pax {
                let ext = ext.map_err(|e| Error::Tar {
                    path: self.tar.to_owned(),
                    source: e,
                })?;
                if let Ok(key) = ext.key()
                    && let Some(name) = key.strip_prefix(PAX_XATTR)
                    && !name.starts_with("trusted.overlay.")
                    && !name.starts_with("user.overlay.")
                {
                    xattrs.push((name.to_owned(), ext.value_bytes().to_vec()));
                }
            }
        }
        Ok(Meta {
            mode,
            uid,
            gid,
            mtime: i64::try_from(mtime).unwrap_or(i64::MAX),
            xattrs,
        })
    }

    /// Walks `parts` below `dest` without following symlinks, creating missing folders
    /// (mode 0755) when `create` is set. A whiteout device in the way becomes an opaque
    /// folder: the layer deletes the lower folder and fills a new one.
    fn parents(&mut self, parts: &[&[u8]], raw: &[u8], create: bool) -> Result<PathBuf> {
        let mut cur = self.dest.to_owned();
        for part in parts {
            cur.push(OsStr::from_bytes(part));
            match fs::symlink_metadata(&cur) {
                Ok(md) if md.is_dir() => {}
                Ok(md) if create && is_whiteout_device(&md) => {
                    self.remove(&cur)?;
                    Self::mkdir(&cur)?;
                    self.set_opaque(&cur)?;
                }
                Ok(md) => {
                    let what = if md.file_type().is_symlink() {
                        "the symlink"
                    } else {
                        "the non-folder"
                    };
                    return Err(self.hostile(
                        raw,
                        format!(
                            "the name passes through {what} `{}`",
                            cur.strip_prefix(self.dest).unwrap_or(&cur).display()
                        ),
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => Self::mkdir(&cur)?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(self.hostile(raw, "the hard link's target is not in the layer"));
                }
                Err(e) => return Err(Error::io(&cur, e)),
            }
        }
        Ok(cur)
    }

    /// The existing, non-folder object a hard link named `target` points at.
    fn link_source(&mut self, target: &[u8], raw: &[u8]) -> Result<PathBuf> {
        let Some(parts) = components(target) else {
            return Err(self.hostile(raw, "the hard link's target leaves the layer through `..`"));
        };
        let Some((name, parents)) = parts.split_last() else {
            return Err(self.hostile(raw, "the hard link points at the layer's root"));
        };
        let source = self
            .parents(parents, raw, false)?
            .join(OsStr::from_bytes(name));
        match fs::symlink_metadata(&source) {
            Ok(md) if md.is_dir() => Err(self.hostile(raw, "the hard link points at a folder")),
            Ok(_) => Ok(source),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(self.hostile(raw, "the hard link's target is not in the layer"))
            }
            Err(e) => Err(Error::io(&source, e)),
        }
    }

    /// Leaves out a device node that only root could create, as moby's archive code does in
    /// a user namespace. There the path is then absent; in an overlay, absent is a whiteout
    /// (which any user may create), so that an object of a lower layer at that path stays
    /// hidden too. Kernels before 5.8 refuse even that; the path is then merely empty.
    fn skip_device(&mut self, relative: Vec<u8>, path: PathBuf) -> Result<()> {
        self.extracted.skipped_devices.push(relative);
        match mknod(&path, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0)) {
            Ok(()) | Err(nix::errno::Errno::EPERM) => {}
            Err(e) => return Err(Error::io(&path, e.into())),
        }
        self.skipped.insert(path);
        Ok(())
    }

    fn whiteout(&self, path: &Path) -> Result<()> {
        match fs::symlink_metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                mknod(path, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
                    .map_err(|e| Error::io(path, e.into()))
            }
            // The same layer made a folder of that name: it replaces the lower one.
            Ok(md) if md.is_dir() => self.set_opaque(path),
            // Anything else of this layer already hides the lower object.
            Ok(_) => Ok(()),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    fn mkdir(path: &Path) -> Result<()> {
        fs::create_dir(path).map_err(|e| Error::io(path, e))?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).map_err(|e| Error::io(path, e))
    }

    /// Removes what is at `path` (a folder with its contents), never following symlinks.
    fn remove(&mut self, path: &Path) -> Result<()> {
        let md = fs::symlink_metadata(path).map_err(|e| Error::io(path, e))?;
        if md.is_dir() {
            // Folders of this layer get their final modes only at the end, so they are
            // still writable here; what was planned for them goes with them.
            self.dirs.retain(|dir, _| !dir.starts_with(path));
            fs::remove_dir_all(path).map_err(|e| Error::io(path, e))
        } else {
            fs::remove_file(path).map_err(|e| Error::io(path, e))
        }
    }

    /// Applies owner, mode, extended attributes and time, in that order: `chown` clears
    /// setuid bits and file capabilities.
    fn apply(&self, path: &Path, meta: &Meta, is_symlink: bool) -> Result<()> {
        if self.privileged {
            lchown(path, Some(meta.uid), Some(meta.gid)).map_err(|e| Error::io(path, e))?;
        }
        if !is_symlink {
            fs::set_permissions(path, fs::Permissions::from_mode(meta.mode))
                .map_err(|e| Error::io(path, e))?;
        }
        for (name, value) in &meta.xattrs {
            match xattr::set(path, name, value) {
                Ok(()) => {}
                // The file system cannot store it, or (without root) the name space is
                // closed to us: the script sees the file without it.
                Err(e) if e.raw_os_error() == Some(nix::libc::EOPNOTSUPP) => {}
                Err(_) if !self.privileged => {}
                Err(e) => return Err(Error::io(path, e)),
            }
        }
        let time = TimeSpec::new(meta.mtime, 0);
        utimensat(
            AT_FDCWD,
            path,
            &time,
            &time,
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(|e| Error::io(path, e.into()))
    }

    /// Applies the folders' metadata, children before their parents.
    fn finish(self) -> Result<Extracted> {
        for (path, meta) in self.dirs.iter().rev() {
            self.apply(path, meta, false)?;
        }
        Ok(self.extracted)
    }
}

#[cfg(test)]
mod tests {
    use super::components;

    #[test]
    fn names_lose_slashes_and_dots_but_never_climb() {
        let parts = |raw: &[u8]| components(raw).map(|p| p.concat());
        assert_eq!(
            components(b"/abs//x/./y/"),
            Some(vec![&b"abs"[..], b"x", b"y"])
        );
        assert_eq!(components(b"./"), Some(vec![]));
        assert_eq!(parts(b"a/../b"), None);
        assert_eq!(parts(b"../x"), None);
        assert_eq!(parts(b"..."), Some(b"...".to_vec()));
    }
}
