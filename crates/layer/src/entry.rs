//! Planned tar entries: everything the writer needs, decided before any byte is written.

use std::borrow::Cow;
use std::path::PathBuf;

/// What kind of object an entry is, with the data that kind carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory. Its member name ends in `/`.
    Directory,
    /// A regular file whose bytes are read from `source` while the layer is written.
    File {
        /// Where the bytes come from.
        source: PathBuf,
        /// The size planned for it; a different size at packing time is an error.
        size: u64,
    },
    /// A regular file whose bytes are held in memory (generated files such as a database).
    Data(Vec<u8>),
    /// A symbolic link with its raw target.
    Symlink(Vec<u8>),
    /// A named pipe.
    Fifo,
    /// A character device.
    CharDevice {
        /// Device major number.
        major: u32,
        /// Device minor number.
        minor: u32,
    },
    /// A block device.
    BlockDevice {
        /// Device major number.
        major: u32,
        /// Device minor number.
        minor: u32,
    },
}

impl EntryKind {
    /// The number of content bytes this entry has in a tar stream.
    pub fn content_size(&self) -> u64 {
        match self {
            EntryKind::File { size, .. } => *size,
            EntryKind::Data(data) => data.len() as u64,
            _ => 0,
        }
    }

    /// The tar type flag of this kind.
    pub fn typeflag(&self) -> u8 {
        match self {
            EntryKind::File { .. } | EntryKind::Data(_) => b'0',
            EntryKind::Symlink(_) => b'2',
            EntryKind::CharDevice { .. } => b'3',
            EntryKind::BlockDevice { .. } => b'4',
            EntryKind::Directory => b'5',
            EntryKind::Fifo => b'6',
        }
    }
}

/// Owner of an entry, numeric ids and the names written beside them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Owner {
    /// User id.
    pub uid: u64,
    /// Group id.
    pub gid: u64,
    /// User name (`root` for 0, empty otherwise; see [`Owner::numeric`]). Borrowed for
    /// those two, so that the entries of a large layer do not each own a copy.
    pub uname: Cow<'static, str>,
    /// Group name.
    pub gname: Cow<'static, str>,
}

impl Owner {
    /// The owner policy of buildimage: `root` names id 0, every other id has an empty name.
    ///
    /// GNU tar asks the build machine's user database; an image must be the same on every
    /// machine, so buildimage never does.
    pub fn numeric(uid: u64, gid: u64) -> Self {
        let name = |id: u64| Cow::Borrowed(if id == 0 { "root" } else { "" });
        Owner {
            uid,
            gid,
            uname: name(uid),
            gname: name(gid),
        }
    }

    /// Owner 0:0, `root`/`root`.
    pub fn root() -> Self {
        Owner::numeric(0, 0)
    }
}

/// One planned tar member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The raw member name, exactly as written (`./bin/`, `nix/store/…`).
    pub name: Vec<u8>,
    /// The kind and its data.
    pub kind: EntryKind,
    /// Permission bits including setuid, setgid and sticky (`0o7777` at most).
    pub mode: u32,
    /// Owner written into the header.
    pub owner: Owner,
    /// Modification time in seconds since the epoch.
    pub mtime: u64,
}

impl Entry {
    /// The number of bytes this entry takes in a tar stream, long-name headers and padding included.
    pub fn tar_size(&self) -> u64 {
        crate::header::entry_tar_size(self)
    }
}
