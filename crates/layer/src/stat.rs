//! What an entry needs to know of a host object, from `lstat` or `fstatat`: its type, its
//! permission bits, its size and, for device nodes, its numbers.

use std::ffi::{OsStr, OsString};
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use nix::sys::stat::{SFlag, major, minor};

use crate::entry::{Entry, EntryKind, Owner};
use crate::error::{Error, Result};
use crate::tree::Node;

/// What a source is, for messages: `a regular file`, `a symlink`, …
pub(crate) fn file_kind_name(md: &Metadata) -> &'static str {
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

/// The metadata of the folder at `path`, the path followed if it is a symlink and
/// `follow`; an error that names `shown` and what is there instead when it is no folder.
pub(crate) fn folder_metadata(path: &Path, shown: &Path, follow: bool) -> Result<Metadata> {
    let read = |path: &Path| {
        if follow {
            fs::metadata(path)
        } else {
            fs::symlink_metadata(path)
        }
        .map_err(|e| Error::io("read", shown, e))
    };
    let md = read(path)?;
    if md.is_dir() {
        return Ok(md);
    }
    let found = fs::symlink_metadata(path).map_or("missing", |lmd| file_kind_name(&lmd));
    Err(Error::NotADirectory {
        path: shown.to_owned(),
        found,
    })
}

/// The node of a host object that is no folder: a symlink (with its target as it is), a
/// regular file, a fifo or a device node; `None` for a socket, which is skipped with a
/// warning (sockets cannot be stored in a layer).
pub(crate) fn leaf_node(
    path: &Path,
    md: &Metadata,
    warnings: &mut crate::tree::Warnings,
) -> Result<Option<Node>> {
    if md.file_type().is_symlink() {
        let target = fs::read_link(path).map_err(|e| Error::io("read the link", path, e))?;
        return Ok(Some(Node::Symlink {
            target: target.into_os_string().into_vec(),
            mode: md.mode() & 0o7777,
        }));
    }
    let node = file_or_special(path, md);
    if node.is_none() {
        warnings.0.push(format!(
            "skipping socket {} (sockets cannot be stored in a layer)",
            path.display()
        ));
    }
    Ok(node)
}

/// The node of a regular file, fifo or device node at `path` (whose `lstat` is `md`);
/// `None` for a socket. Folders and symlinks are the callers' business.
pub(crate) fn file_or_special(path: &Path, md: &Metadata) -> Option<Node> {
    let stat = Stat::from(md);
    if stat.format == SFlag::S_IFREG {
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
    // Device numbers in a tar header are at most 21 bits of octal: larger ones do not
    // occur on Linux (12-bit majors, 20-bit minors).
    let (major, minor) = (major(stat.rdev) as u32, minor(stat.rdev) as u32);
    match stat.format {
        SFlag::S_IFIFO => Some(EntryKind::Fifo),
        SFlag::S_IFCHR => Some(EntryKind::CharDevice { major, minor }),
        SFlag::S_IFBLK => Some(EntryKind::BlockDevice { major, minor }),
        _ => None,
    }
}

/// What an entry needs to know of an object, from `lstat` or `fstatat`.
struct Stat {
    /// The file type bits of `st_mode`.
    format: SFlag,
    /// Permission bits with setuid, setgid and sticky.
    mode: u32,
    size: u64,
    rdev: u64,
}

impl Stat {
    fn new(st_mode: u32, size: u64, rdev: u64) -> Self {
        Stat {
            format: SFlag::from_bits_truncate(st_mode) & SFlag::S_IFMT,
            mode: st_mode & 0o7777,
            size,
            rdev,
        }
    }
}

impl From<&fs::Metadata> for Stat {
    fn from(md: &fs::Metadata) -> Self {
        Stat::new(md.mode(), md.len(), md.rdev())
    }
}

/// The entry for the object at `source` (not followed), named `name`, or `None` for a
/// socket.
pub(crate) fn entry_at(
    source: &Path,
    name: &[u8],
    owner: &Owner,
    mtime: u64,
) -> Result<Option<Entry>> {
    let md = fs::symlink_metadata(source).map_err(|e| Error::io("inspect", source, e))?;
    entry_from(&Stat::from(&md), source, name, owner, mtime, || {
        fs::read_link(source).map(|t| t.into_os_string().into_vec())
    })
}

/// The entry for `child` of the open folder `dir`, at `source` on the host: looked up
/// relative to the folder, not through its whole path again.
pub(crate) fn child_entry(
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
        .map_err(|e| Error::io("inspect", source, e.into()))?;
    let stat = Stat::new(
        st.st_mode,
        u64::try_from(st.st_size).unwrap_or(0),
        st.st_rdev,
    );
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
    let kind = match stat.format {
        SFlag::S_IFDIR => EntryKind::Directory,
        SFlag::S_IFLNK => {
            EntryKind::Symlink(read_link().map_err(|e| Error::io("read the link", source, e))?)
        }
        SFlag::S_IFREG => EntryKind::File {
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
