//! Safe extraction of a layer tar into an overlay lower directory.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{
    FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt, lchown, symlink,
};
use std::path::{Path, PathBuf};

use nix::fcntl::AT_FDCWD;
use nix::sys::stat::{Mode, SFlag, UtimensatFlags, makedev, mknod, utimensat};
use nix::sys::time::TimeSpec;
use nix::unistd::{geteuid, mkfifo};

use buildimage_layer::overlay::{self, Marker, OPAQUE_XATTR_TRUSTED, OPAQUE_XATTR_USER};
use buildimage_layer::read::{FileSource, Kind, Member, TarReader};

use crate::error::{Error, Result};

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
    let tar_err = |e| Error::Tar {
        path: tar_path.to_owned(),
        source: e,
    };
    let file = File::open(tar_path).map_err(|e| Error::io("open", tar_path, e))?;
    let mut reader = TarReader::new(FileSource::new(file).map_err(tar_err)?, false);
    fs::create_dir_all(dest).map_err(|e| Error::io("create", dest, e))?;
    let mut ex = Extractor {
        tar: tar_path,
        dest,
        privileged: geteuid().is_root(),
        userxattr: crate::needs_userxattr(),
        dirs: BTreeMap::new(),
        extracted: Extracted::default(),
        skipped: BTreeSet::new(),
        buffer: vec![0u8; 256 * 1024],
    };
    while let Some(member) = reader.next_member().map_err(tar_err)? {
        ex.entry(&member, &mut reader)?;
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

/// Why copying a member's data failed.
enum Copy {
    Read(io::Error),
    Write(io::Error),
}

/// Copies a member's data into its file, telling read errors from write errors. Whole
/// 4 KiB blocks of zeros become holes: a GNU sparse member (which reads as its whole
/// length, holes as zeros) or a file of zeros takes the disk what it holds, not its
/// length, so a small layer cannot fill `TMPDIR` through one.
fn copy_data(
    from: &mut impl io::Read,
    to: &mut File,
    buf: &mut [u8],
) -> std::result::Result<(), Copy> {
    use std::io::{Seek as _, SeekFrom, Write as _};
    const BLOCK: usize = 4096;
    const ZEROS: [u8; BLOCK] = [0; BLOCK];
    let mut length: u64 = 0;
    let mut pending: u64 = 0;
    loop {
        let n = match from.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Copy::Read(e)),
        };
        for block in buf[..n].chunks(BLOCK) {
            // A comparison of slices is one memcmp.
            if block.len() == BLOCK && block == ZEROS {
                pending += BLOCK as u64;
            } else {
                if pending > 0 {
                    let skip =
                        i64::try_from(pending).map_err(|e| Copy::Write(io::Error::other(e)))?;
                    to.seek(SeekFrom::Current(skip)).map_err(Copy::Write)?;
                    pending = 0;
                }
                to.write_all(block).map_err(Copy::Write)?;
            }
            length += block.len() as u64;
        }
    }
    if pending > 0 {
        to.set_len(length).map_err(Copy::Write)?;
    }
    Ok(())
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
    /// The copy buffer, one for every file of the layer.
    buffer: Vec<u8>,
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
            OPAQUE_XATTR_USER
        } else {
            OPAQUE_XATTR_TRUSTED
        }
    }

    fn set_opaque(&self, dir: &Path) -> Result<()> {
        xattr::set(dir, self.opaque_xattr(), b"y").map_err(|e| Error::io("mark as opaque", dir, e))
    }

    fn entry(&mut self, member: &Member, data: &mut impl io::Read) -> Result<()> {
        if member.kind == Kind::Unknown {
            // GNU volume labels and the like: no object of the layer.
            return Ok(());
        }
        let raw = &member.name;
        let Some(parts) = components(raw) else {
            return Err(self.hostile(raw, "the name leaves the layer through `..`"));
        };
        let meta = self.meta(member)?;
        let Some((name, parents)) = parts.split_last() else {
            // `./`: the layer's root folder.
            if member.kind == Kind::Dir {
                self.dirs.insert(self.dest.to_owned(), meta);
            }
            return Ok(());
        };
        let parent = self.parents(parents, raw, true)?;
        match overlay::classify(name) {
            Marker::Opaque => return self.set_opaque(&parent),
            Marker::Metadata => return Ok(()),
            Marker::BadWhiteout => {
                return Err(self.hostile(raw, "a whiteout of no name, `.` or `..`"));
            }
            Marker::Whiteout(hidden) => {
                return self.whiteout(&parent.join(OsStr::from_bytes(hidden)));
            }
            Marker::Plain => {}
        }
        let path = parent.join(OsStr::from_bytes(name));
        let existing = fs::symlink_metadata(&path).ok();
        if member.kind == Kind::Dir {
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
        let link_source = if member.kind == Kind::HardLink {
            if member.link.is_empty() {
                return Err(self.hostile(raw, "a hard link without a target"));
            }
            let source = self.link_source(&member.link, raw)?;
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
            return fs::hard_link(&source, &path).map_err(|e| Error::io("link", &path, e));
        }
        match member.kind {
            Kind::File => {
                let mut out = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(|e| Error::io("create", &path, e))?;
                copy_data(data, &mut out, &mut self.buffer).map_err(|e| match e {
                    Copy::Read(source) => Error::Tar {
                        path: self.tar.to_owned(),
                        source,
                    },
                    Copy::Write(source) => Error::io("write", &path, source),
                })?;
            }
            Kind::Symlink => {
                if member.link.is_empty() {
                    return Err(self.hostile(raw, "a symlink without a target"));
                }
                symlink(OsStr::from_bytes(&member.link), &path)
                    .map_err(|e| Error::io("create", &path, e))?;
            }
            Kind::CharDevice { major, minor } | Kind::BlockDevice { major, minor } => {
                if !self.privileged {
                    return self.skip_device(parts.join(&b'/'), path);
                }
                let sflag = if matches!(member.kind, Kind::CharDevice { .. }) {
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
                .map_err(|e| Error::io("create", &path, e.into()))?;
            }
            Kind::Fifo => {
                mkfifo(&path, Mode::empty()).map_err(|e| Error::io("create", &path, e.into()))?;
            }
            Kind::Dir | Kind::HardLink | Kind::Unknown => return Ok(()),
        }
        self.apply(&path, &meta, member.kind == Kind::Symlink)
    }

    /// Owner, mode, time and extended attributes from the member's header.
    fn meta(&self, member: &Member) -> Result<Meta> {
        let id = |what: &str, id: u64| {
            u32::try_from(id)
                .map_err(|_| self.hostile(&member.name, format!("{what} {id} is out of range")))
        };
        Ok(Meta {
            mode: member.mode,
            uid: id("uid", member.uid)?,
            gid: id("gid", member.gid)?,
            mtime: member.mtime,
            xattrs: member
                .xattrs
                .iter()
                .filter(|(name, _)| !overlay::is_overlay_xattr(name))
                .cloned()
                .collect(),
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
                Err(e) => return Err(Error::io("inspect", &cur, e)),
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
            Err(e) => Err(Error::io("inspect", &source, e)),
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
            Err(e) => return Err(Error::io("create", &path, e.into())),
        }
        self.skipped.insert(path);
        Ok(())
    }

    fn whiteout(&self, path: &Path) -> Result<()> {
        match fs::symlink_metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                mknod(path, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
                    .map_err(|e| Error::io("create", path, e.into()))
            }
            // The same layer made a folder of that name: it replaces the lower one.
            Ok(md) if md.is_dir() => self.set_opaque(path),
            // Anything else of this layer already hides the lower object.
            Ok(_) => Ok(()),
            Err(e) => Err(Error::io("inspect", path, e)),
        }
    }

    fn mkdir(path: &Path) -> Result<()> {
        fs::create_dir(path).map_err(|e| Error::io("create", path, e))?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o755))
            .map_err(|e| Error::io("set the mode of", path, e))
    }

    /// Removes what is at `path` (a folder with its contents), never following symlinks.
    fn remove(&mut self, path: &Path) -> Result<()> {
        let md = fs::symlink_metadata(path).map_err(|e| Error::io("inspect", path, e))?;
        if md.is_dir() {
            // Folders of this layer get their final modes only at the end, so they are
            // still writable here; what was planned for them goes with them.
            self.dirs.retain(|dir, _| !dir.starts_with(path));
            fs::remove_dir_all(path).map_err(|e| Error::io("remove", path, e))
        } else {
            fs::remove_file(path).map_err(|e| Error::io("remove", path, e))
        }
    }

    /// Applies owner, mode, extended attributes and time, in that order: `chown` clears
    /// setuid bits and file capabilities.
    fn apply(&self, path: &Path, meta: &Meta, is_symlink: bool) -> Result<()> {
        if self.privileged {
            lchown(path, Some(meta.uid), Some(meta.gid))
                .map_err(|e| Error::io("change the owner of", path, e))?;
        }
        if !is_symlink {
            fs::set_permissions(path, fs::Permissions::from_mode(meta.mode))
                .map_err(|e| Error::io("set the mode of", path, e))?;
        }
        for (name, value) in &meta.xattrs {
            match xattr::set(path, name, value) {
                Ok(()) => {}
                // The file system cannot store it, or (without root) the name space is
                // closed to us: the script sees the file without it.
                Err(e) if e.raw_os_error() == Some(nix::libc::EOPNOTSUPP) => {}
                Err(_) if !self.privileged => {}
                Err(e) => return Err(Error::io("set an extended attribute of", path, e)),
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
        .map_err(|e| Error::io("set the time of", path, e.into()))
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
