//! One tar member type, one reader, one writer, and whole-archive decompression.
//!
//! [`Member`] is what the reader returns and what the writer takes, so a test can read an
//! archive, change it and write it again. The writer sets every header field from the
//! member (owner, names, mode, time) and nothing from the machine, so the bytes depend on
//! the members alone.

use std::fmt::Write as _;
use std::io::{Read, Write};

pub use ::tar::EntryType;

use sha2::{Digest, Sha256};

use crate::EPOCH_1980;
use crate::fs::{hex, sha256_hex};

/// One member of a tar archive, its content in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The full name (GNU long names and PAX `path` resolved), raw bytes.
    pub name: Vec<u8>,
    /// The type flag.
    pub kind: EntryType,
    /// Permission bits with setuid, setgid and sticky.
    pub mode: u32,
    /// Numeric owner.
    pub uid: u64,
    /// Numeric group.
    pub gid: u64,
    /// Owner name, raw bytes (empty when the header has none).
    pub uname: Vec<u8>,
    /// Group name, raw bytes.
    pub gname: Vec<u8>,
    /// Modification time, seconds since the epoch.
    pub mtime: u64,
    /// The target of a symlink or hard link.
    pub link: Option<Vec<u8>>,
    /// Major and minor number of a character or block device.
    pub device: Option<(u32, u32)>,
    /// The content of a regular file.
    pub data: Vec<u8>,
    /// Whether the header has the GNU magic `ustar  \0` (else ustar or another format).
    pub gnu: bool,
}

impl Member {
    fn new(name: impl AsRef<[u8]>, kind: EntryType, mode: u32) -> Member {
        Member {
            name: name.as_ref().to_vec(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            uname: Vec::new(),
            gname: Vec::new(),
            mtime: EPOCH_1980,
            link: None,
            device: None,
            data: Vec::new(),
            gnu: false,
        }
    }

    /// A regular file, owned 0:0 without names, dated 1980-01-01.
    pub fn file(name: impl AsRef<[u8]>, data: impl Into<Vec<u8>>, mode: u32) -> Member {
        Member {
            data: data.into(),
            ..Member::new(name, EntryType::Regular, mode)
        }
    }

    /// A directory (name it with a trailing `/`, as tar does).
    pub fn dir(name: impl AsRef<[u8]>, mode: u32) -> Member {
        Member::new(name, EntryType::Directory, mode)
    }

    /// A symbolic link, mode 0777.
    pub fn symlink(name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> Member {
        Member {
            link: Some(target.as_ref().to_vec()),
            ..Member::new(name, EntryType::Symlink, 0o777)
        }
    }

    /// A hard link to the earlier member `target`.
    pub fn hard_link(name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> Member {
        Member {
            link: Some(target.as_ref().to_vec()),
            ..Member::new(name, EntryType::Link, 0o644)
        }
    }

    /// A fifo.
    pub fn fifo(name: impl AsRef<[u8]>, mode: u32) -> Member {
        Member::new(name, EntryType::Fifo, mode)
    }

    /// A character device `major:minor`.
    pub fn char_device(name: impl AsRef<[u8]>, mode: u32, major: u32, minor: u32) -> Member {
        Member {
            device: Some((major, minor)),
            ..Member::new(name, EntryType::Char, mode)
        }
    }

    /// A block device `major:minor`.
    pub fn block_device(name: impl AsRef<[u8]>, mode: u32, major: u32, minor: u32) -> Member {
        Member {
            device: Some((major, minor)),
            ..Member::new(name, EntryType::Block, mode)
        }
    }

    /// The whiteout that deletes `path` (`dir/name`) of the layers below: an empty file
    /// `dir/.wh.name`.
    pub fn whiteout(path: &str) -> Member {
        let name = match path.rsplit_once('/') {
            Some((dir, name)) => format!("{dir}/.wh.{name}"),
            None => format!(".wh.{path}"),
        };
        Member::file(name, Vec::new(), 0o644)
    }

    /// The marker that hides everything the layers below have in the folder `dir`
    /// (`dir/.wh..wh..opq`).
    pub fn opaque(dir: &str) -> Member {
        Member::file(
            format!("{}/.wh..wh..opq", dir.trim_end_matches('/')),
            Vec::new(),
            0o644,
        )
    }

    /// The member with owner `uid:gid`.
    #[must_use]
    pub fn owner(mut self, uid: u64, gid: u64) -> Member {
        self.uid = uid;
        self.gid = gid;
        self
    }

    /// The member with the owner and group names `uname` and `gname`.
    #[must_use]
    pub fn names(mut self, uname: &str, gname: &str) -> Member {
        self.uname = uname.as_bytes().to_vec();
        self.gname = gname.as_bytes().to_vec();
        self
    }

    /// The member dated `mtime`.
    #[must_use]
    pub fn mtime(mut self, mtime: u64) -> Member {
        self.mtime = mtime;
        self
    }

    /// The name, non-ASCII bytes escaped as `\xNN`.
    pub fn name(&self) -> String {
        self.name.escape_ascii().to_string()
    }

    /// The link target, non-ASCII bytes escaped as `\xNN`.
    pub fn target(&self) -> Option<String> {
        self.link
            .as_ref()
            .map(|link| link.escape_ascii().to_string())
    }

    /// The owner name, lossily decoded.
    pub fn uname(&self) -> String {
        String::from_utf8_lossy(&self.uname).into_owned()
    }

    /// One line describing the member, for listings:
    /// `d 0775 0:0 root/root ./`, `- 0644 1000:100 / ./f`, `l 0777 0:0 root/root ./l -> t`,
    /// `c 0666 0:0 / ./null 1,3`. Kinds: `d`, `-`, `l`, `h` (hard link), `p`, `c`, `b`.
    pub fn line(&self) -> String {
        let kind = match self.kind {
            EntryType::Directory => 'd',
            EntryType::Regular => '-',
            EntryType::Symlink => 'l',
            EntryType::Link => 'h',
            EntryType::Fifo => 'p',
            EntryType::Char => 'c',
            EntryType::Block => 'b',
            _ => '?',
        };
        let mut line = format!(
            "{kind} {:04o} {}:{} {}/{} {}",
            self.mode,
            self.uid,
            self.gid,
            self.uname.escape_ascii(),
            self.gname.escape_ascii(),
            self.name()
        );
        if let Some(link) = &self.link {
            let _ = write!(line, " -> {}", link.escape_ascii());
        }
        if let Some((major, minor)) = self.device {
            let _ = write!(line, " {major},{minor}");
        }
        line
    }
}

/// Reads every member of a plain tar.
pub fn read_tar(bytes: &[u8]) -> Vec<Member> {
    let mut archive = ::tar::Archive::new(bytes);
    let mut members = Vec::new();
    for entry in archive.entries().expect("read tar entries") {
        let mut entry = entry.expect("read a tar entry");
        let header = entry.header();
        let kind = header.entry_type();
        let link = matches!(kind, EntryType::Symlink | EntryType::Link)
            .then(|| entry.link_name_bytes().map(std::borrow::Cow::into_owned))
            .flatten();
        let device = matches!(kind, EntryType::Char | EntryType::Block).then(|| {
            (
                header.device_major().ok().flatten().unwrap_or(0),
                header.device_minor().ok().flatten().unwrap_or(0),
            )
        });
        let mut member = Member {
            name: entry.path_bytes().into_owned(),
            kind,
            mode: header.mode().expect("tar mode"),
            uid: header.uid().expect("tar uid"),
            gid: header.gid().expect("tar gid"),
            uname: header.username_bytes().unwrap_or_default().to_vec(),
            gname: header.groupname_bytes().unwrap_or_default().to_vec(),
            mtime: header.mtime().expect("tar mtime"),
            link,
            device,
            data: Vec::new(),
            gnu: header.as_gnu().is_some(),
        };
        entry
            .read_to_end(&mut member.data)
            .expect("read a tar entry's content");
        members.push(member);
    }
    members
}

/// The member of `members` called `name` (`./a/b`, `manifest.json`).
pub fn member<'a>(members: &'a [Member], name: &str) -> &'a Member {
    members
        .iter()
        .find(|m| m.name == name.as_bytes())
        .unwrap_or_else(|| {
            let names: Vec<String> = members.iter().map(Member::name).collect();
            panic!("no member {name} among {names:?}")
        })
}

/// The plain tar inside `bytes`, which may be gzip or zstd compressed (told by magic).
pub fn decompress(bytes: &[u8]) -> Vec<u8> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut plain = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut plain)
            .expect("gunzip the archive");
        plain
    } else if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        zstd::decode_all(bytes).expect("unzstd the archive")
    } else {
        bytes.to_vec()
    }
}

/// `members` as a plain ustar archive; see [`TarWriter`]. With `pax`, every member gets a
/// PAX header.
pub fn write_tar(members: &[Member], pax: bool) -> Vec<u8> {
    let mut writer = TarWriter::new(Vec::new()).pax(pax);
    for member in members {
        writer.append(member);
    }
    writer.finish()
}

/// Writes tar members as ustar headers, every field from the [`Member`]: names and link
/// targets as raw bytes (even `../x` or `/abs`, which the `tar` crate's own setters
/// refuse), owner, names, mode, time, device numbers.
///
/// A name or link target longer than ustar's 100 bytes gets a PAX extended header with
/// `path` (and `linkpath`); with [`TarWriter::pax`] every member gets one, as Python's
/// `tarfile` in PAX format (nixpkgs' `streamLayeredImage`) writes. Generic over the
/// destination, so a large layer can be streamed into a compressor.
pub struct TarWriter<W: Write> {
    builder: ::tar::Builder<W>,
    pax: bool,
}

impl<W: Write> TarWriter<W> {
    /// A writer into `out`.
    pub fn new(out: W) -> TarWriter<W> {
        TarWriter {
            builder: ::tar::Builder::new(out),
            pax: false,
        }
    }

    /// Whether every member gets a PAX header with its `path`.
    #[must_use]
    pub fn pax(mut self, pax: bool) -> TarWriter<W> {
        self.pax = pax;
        self
    }

    /// Appends `member`.
    pub fn append(&mut self, member: &Member) -> &mut TarWriter<W> {
        let size = member.data.len() as u64;
        self.append_from(member, size, member.data.as_slice())
    }

    /// Appends `member` with `size` bytes of content read from `data` instead of
    /// `member.data`: a large file that need not be held in memory.
    pub fn append_from(
        &mut self,
        member: &Member,
        size: u64,
        data: impl Read,
    ) -> &mut TarWriter<W> {
        let link = member.link.as_deref().unwrap_or_default();
        if self.pax || member.name.len() > 100 || link.len() > 100 {
            let mut records: Vec<(&str, &[u8])> = vec![("path", &member.name)];
            if !link.is_empty() {
                records.push(("linkpath", link));
            }
            self.builder
                .append_pax_extensions(records)
                .expect("write a PAX header");
        }
        let mut header = ::tar::Header::new_ustar();
        header.set_entry_type(member.kind);
        header.set_mode(member.mode);
        header.set_uid(member.uid);
        header.set_gid(member.gid);
        header.set_mtime(member.mtime);
        header.set_size(size);
        header
            .set_username(std::str::from_utf8(&member.uname).expect("a UTF-8 owner name"))
            .expect("set the owner name");
        header
            .set_groupname(std::str::from_utf8(&member.gname).expect("a UTF-8 group name"))
            .expect("set the group name");
        if let Some((major, minor)) = member.device {
            header
                .set_device_major(major)
                .expect("set the major number");
            header
                .set_device_minor(minor)
                .expect("set the minor number");
        }
        // The ustar name field is the first 100 bytes of the header; set by hand so that
        // any bytes go in. A longer name is cut here and given whole by the PAX header.
        let name = &member.name[..member.name.len().min(100)];
        header.as_mut_bytes()[..100].fill(0);
        header.as_mut_bytes()[..name.len()].copy_from_slice(name);
        if !link.is_empty() {
            header
                .set_link_name_literal(&link[..link.len().min(100)])
                .expect("set the link name");
        }
        header.set_cksum();
        self.builder
            .append(&header, data)
            .expect("write a tar member");
        self
    }

    /// Appends a directory; see [`Member::dir`].
    pub fn dir(&mut self, name: impl AsRef<[u8]>, mode: u32) -> &mut TarWriter<W> {
        self.append(&Member::dir(name, mode))
    }

    /// Appends a regular file; see [`Member::file`].
    pub fn file(&mut self, name: impl AsRef<[u8]>, data: &[u8], mode: u32) -> &mut TarWriter<W> {
        self.append(&Member::file(name, data, mode))
    }

    /// Appends a symbolic link; see [`Member::symlink`].
    pub fn symlink(
        &mut self,
        name: impl AsRef<[u8]>,
        target: impl AsRef<[u8]>,
    ) -> &mut TarWriter<W> {
        self.append(&Member::symlink(name, target))
    }

    /// Ends the archive (two zero blocks) and hands the destination back.
    pub fn finish(self) -> W {
        self.builder.into_inner().expect("finish the tar")
    }
}

/// moby's tarsum v1 (docs/formats.md §2) of `members`, written from moby's `pkg/tarsum`
/// rather than from buildimage's code, as an oracle: per entry, SHA-256 of `key` + `value`
/// for name, mode, uid, gid, size, typeflag, linkname, uname, gname, devmajor, devminor,
/// then the content; the sorted hex digests hashed together. moby's `encodeHeader` writes
/// the uname and gname keys with empty values ("to be compatible with versions before go
/// 1.10"); `with_names` hashes the values instead, the mistake a test wants to name.
pub fn tarsum(members: &[Member], with_names: bool) -> String {
    let mut sums: Vec<String> = members
        .iter()
        .map(|m| {
            let mut h = Sha256::new();
            h.update(b"name");
            h.update(&m.name);
            h.update(
                format!(
                    "mode{}uid{}gid{}size{}typeflag{}",
                    m.mode,
                    m.uid,
                    m.gid,
                    m.data.len(),
                    char::from(m.kind.as_byte())
                )
                .as_bytes(),
            );
            h.update(b"linkname");
            h.update(m.link.as_deref().unwrap_or_default());
            h.update(b"uname");
            if with_names {
                h.update(&m.uname);
            }
            h.update(b"gname");
            if with_names {
                h.update(&m.gname);
            }
            let (major, minor) = m.device.unwrap_or((0, 0));
            h.update(format!("devmajor{major}devminor{minor}").as_bytes());
            h.update(&m.data);
            hex(&h.finalize())
        })
        .collect();
    sums.sort();
    format!("tarsum.v1+sha256:{}", sha256_hex(sums.concat().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::{Member, read_tar, write_tar};

    /// What the writer writes, the reader reads back, for every kind, long and non-UTF-8
    /// names included, with and without PAX headers.
    #[test]
    fn members_of_every_kind_round_trip() {
        let long = format!("{}/{}", "d".repeat(80), "n".repeat(80));
        let members = vec![
            Member::dir("dir/", 0o2775).owner(1000, 100).mtime(7),
            Member::file("dir/file", "content", 0o4755).names("root", "wheel"),
            Member::file(b"caf\xe9".as_slice(), "", 0o600),
            Member::file(&long, "long", 0o644),
            Member::symlink("link", &long),
            Member::hard_link("hard", "dir/file"),
            Member::fifo("fifo", 0o620),
            Member::char_device("null", 0o666, 1, 3),
            Member::block_device("loop0", 0o660, 7, 0),
            Member::whiteout("dir/gone"),
            Member::opaque("dir/"),
        ];
        for pax in [false, true] {
            let read = read_tar(&write_tar(&members, pax));
            assert_eq!(read, members, "pax {pax}");
        }
        assert_eq!(Member::whiteout("dir/gone").name, b"dir/.wh.gone");
        assert_eq!(Member::opaque("dir/").name, b"dir/.wh..wh..opq");
        assert_eq!(
            Member::char_device("./null", 0o666, 1, 3).line(),
            "c 0666 0:0 / ./null 1,3"
        );
    }
}
