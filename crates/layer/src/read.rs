//! A streaming tar reader with bounded memory, for archives nobody vouches for: base image
//! archives, their layers, and the layers the sandbox extracts.
//!
//! Headers are decoded by the `tar` crate's [`tar::Header`]; the framing (long names, PAX
//! records, sparse headers, padding) is done here because `tar::Archive` reads GNU long
//! names and PAX records into memory whatever their size, and a few compressed bytes can
//! declare gigabytes of them. Here every extension record is capped at
//! [`MAX_EXTENSION`] bytes, and member data is never held in memory.
//!
//! The rules follow Go's `archive/tar`, which `docker load`, skopeo and podman use: PAX
//! `path`, `linkpath`, `size`, `uid`, `gid` and `mtime` override the header, GNU `L`/`K`
//! records set the names, global PAX headers are ignored, and header-only types (links,
//! devices, directories, fifos) have no data whatever their size field says. Old GNU
//! sparse members (type `S`) read as the whole file, holes as zeros.
//!
//! ```
//! use buildimage_layer::read::{Kind, Stream, TarReader};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut builder = tar::Builder::new(Vec::new());
//! let mut header = tar::Header::new_gnu();
//! header.set_size(5);
//! header.set_mode(0o644);
//! builder.append_data(&mut header, "hello", &b"world"[..])?;
//! let bytes = builder.into_inner()?;
//!
//! let mut reader = TarReader::new(Stream(&bytes[..]), true);
//! let member = reader.next_member()?.expect("one member");
//! assert_eq!((member.name.as_slice(), member.kind, member.size), (&b"hello"[..], Kind::File, 5));
//! let mut data = Vec::new();
//! std::io::copy(&mut reader, &mut data)?;
//! assert_eq!(data, b"world");
//! assert!(reader.next_member()?.is_none());
//! # Ok(())
//! # }
//! ```

use std::io::{self, BufRead, BufReader, Read};

use tar::Header;

use crate::header::BLOCK;

/// The largest GNU long-name record or PAX header accepted. Linux paths are at most 4 KiB;
/// real PAX headers (with xattrs) stay well below this.
pub const MAX_EXTENSION: u64 = 1 << 20;

/// The largest member size accepted: Go's reader keeps sizes in an `int64` and refuses
/// larger ones, and so does this one, so that no size arithmetic can overflow.
const MAX_SIZE: u64 = i64::MAX as u64;

/// The most GNU sparse extension blocks accepted after one header (21 extents each).
const MAX_SPARSE_BLOCKS: u32 = 65_536;

/// Offset of the `isextended` flag in a GNU sparse extension block (21 extents of 24 bytes).
const EXT_ISEXTENDED: usize = 504;

/// The PAX record prefix GNU tar and Docker use for extended attributes.
const PAX_XATTR: &[u8] = b"SCHILY.xattr.";

/// A byte source that can also skip forward cheaply.
pub trait Source: Read {
    /// Skips `n` bytes; fewer than `n` left is an [`io::ErrorKind::UnexpectedEof`] error.
    fn skip(&mut self, n: u64) -> io::Result<()>;
}

/// A plain stream: skipping reads and discards.
pub struct Stream<R>(pub R);

impl<R: Read> Read for Stream<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl<R: Read> Source for Stream<R> {
    fn skip(&mut self, n: u64) -> io::Result<()> {
        let skipped = io::copy(&mut (&mut self.0).take(n), &mut io::sink())?;
        if skipped < n {
            return Err(eof());
        }
        Ok(())
    }
}

/// A file of known length: skipping seeks, and seeking past the end is an error (a seek
/// alone would not notice that the file ends early).
pub struct FileSource {
    file: BufReader<std::fs::File>,
    pos: u64,
    len: u64,
}

impl FileSource {
    /// Reads `file` from its start.
    pub fn new(file: std::fs::File) -> io::Result<Self> {
        let len = file.metadata()?.len();
        Ok(FileSource {
            file: BufReader::with_capacity(1 << 16, file),
            pos: 0,
            len,
        })
    }
}

impl Read for FileSource {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Source for FileSource {
    fn skip(&mut self, n: u64) -> io::Result<()> {
        if n > self.len.saturating_sub(self.pos) {
            return Err(eof());
        }
        // In range: `n` is at most the file's length, which fits an i64.
        self.file
            .seek_relative(i64::try_from(n).map_err(|_| eof())?)?;
        self.pos += n;
        Ok(())
    }
}

/// What a member is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Regular file (also contiguous and GNU sparse files).
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Hard link to an earlier member.
    HardLink,
    /// Character device.
    CharDevice {
        /// Device major number.
        major: u32,
        /// Device minor number.
        minor: u32,
    },
    /// Block device.
    BlockDevice {
        /// Device major number.
        major: u32,
        /// Device minor number.
        minor: u32,
    },
    /// Named pipe.
    Fifo,
    /// A type this reader does not know (GNU volume labels, dump directories, …).
    Unknown,
}

/// One member's header, extensions applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The raw name, as stored.
    pub name: Vec<u8>,
    /// The raw link target (symlinks and hard links), else empty.
    pub link: Vec<u8>,
    /// The kind.
    pub kind: Kind,
    /// Permission bits, `0o7777` at most.
    pub mode: u32,
    /// Numeric owner.
    pub uid: u64,
    /// Numeric group.
    pub gid: u64,
    /// Modification time, whole seconds since the epoch.
    pub mtime: i64,
    /// Extended attributes (`SCHILY.xattr.NAME` PAX records), in the order given.
    pub xattrs: Vec<(String, Vec<u8>)>,
    /// The bytes reading the member yields (for a sparse file, its whole length).
    pub size: u64,
}

/// PAX overrides for the next member.
#[derive(Default)]
struct Pax {
    path: Option<Vec<u8>>,
    linkpath: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<u64>,
    gid: Option<u64>,
    mtime: Option<i64>,
    xattrs: Vec<(String, Vec<u8>)>,
}

/// The data extents of an old GNU sparse member: (offset in the file, length), in order.
struct Sparse {
    extents: Vec<(u64, u64)>,
    /// The next extent to read.
    next: usize,
    /// Position in the whole file.
    pos: u64,
    /// The whole file's length.
    real_size: u64,
}

/// Reads members one after the other; data not copied out is skipped.
pub struct TarReader<S> {
    src: S,
    /// Data bytes of the current member not read yet, as stored.
    remaining: u64,
    /// Padding after the current member's data.
    pad: u64,
    /// How the stored bytes spread over the file, for a sparse member.
    sparse: Option<Sparse>,
    /// Whether a stream that ends without an end-of-archive block is an error.
    strict_end: bool,
    done: bool,
}

impl<S: Source> TarReader<S> {
    /// Reads from `src`. With `strict_end`, the archive must end with a zero block, so an
    /// archive cut off between two members counts as truncated.
    pub fn new(src: S, strict_end: bool) -> Self {
        TarReader {
            src,
            remaining: 0,
            pad: 0,
            sparse: None,
            strict_end,
            done: false,
        }
    }

    /// The source, positioned after the end-of-archive block once [`Self::next_member`] returned
    /// `None`.
    pub fn into_inner(self) -> S {
        self.src
    }

    /// The next member, or `None` at the end of the archive.
    pub fn next_member(&mut self) -> io::Result<Option<Member>> {
        if self.done {
            return Ok(None);
        }
        // Two skips, not one of the sum: a member's size may be up to `MAX_SIZE`.
        self.src.skip(self.remaining)?;
        self.src.skip(self.pad)?;
        self.remaining = 0;
        self.pad = 0;
        self.sparse = None;

        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        let mut pax: Option<Pax> = None;
        loop {
            let mut header = Header::new_old();
            let pending = long_name.is_some() || long_link.is_some() || pax.is_some();
            if !read_block(&mut self.src, header.as_mut_bytes())? {
                if self.strict_end || pending {
                    return Err(eof());
                }
                self.done = true;
                return Ok(None);
            }
            if header.as_bytes().iter().all(|&b| b == 0) {
                if pending {
                    return Err(invalid("extension header without a member"));
                }
                self.done = true;
                return Ok(None);
            }
            check_sum(&header)?;
            let stored = header.entry_size().map_err(|e| invalid(&e.to_string()))?;
            if stored > MAX_SIZE {
                return Err(invalid(&format!("member size {stored} is out of range")));
            }
            match header.as_bytes()[156] {
                b'L' => {
                    long_name = Some(cut_nul(self.extension(stored)?));
                    continue;
                }
                b'K' => {
                    long_link = Some(cut_nul(self.extension(stored)?));
                    continue;
                }
                b'x' | b'X' => {
                    pax = Some(parse_pax(&self.extension(stored)?)?);
                    continue;
                }
                // Global PAX headers hold defaults that docker ignores too.
                b'g' => {
                    self.skip_padded(stored)?;
                    continue;
                }
                _ => {}
            }
            let pax = pax.unwrap_or_default();
            let name = pax
                .path
                .or(long_name)
                .unwrap_or_else(|| header.path_bytes().into_owned());
            let link = pax
                .linkpath
                .or(long_link)
                .or_else(|| header.link_name_bytes().map(std::borrow::Cow::into_owned))
                .unwrap_or_default();
            let bytes = header.as_bytes();
            let field = |what: &str, range: std::ops::Range<usize>| {
                parse_numeric(&bytes[range])
                    .ok_or_else(|| invalid(&format!("unreadable {what} field")))
            };
            let mode = (field("mode", 100..108)? & 0o7777) as u32;
            let uid = match pax.uid {
                Some(uid) => uid,
                None => field("uid", 108..116)?,
            };
            let gid = match pax.gid {
                Some(gid) => gid,
                None => field("gid", 116..124)?,
            };
            let mtime = match pax.mtime {
                Some(mtime) => mtime,
                None => i64::try_from(field("mtime", 136..148)?)
                    .map_err(|_| invalid("unreadable mtime field"))?,
            };
            let device = || -> io::Result<(u32, u32)> {
                let number = |what: &str, range| {
                    u32::try_from(field(what, range)?)
                        .map_err(|_| invalid(&format!("unreadable {what} field")))
                };
                Ok((
                    number("device major", 329..337)?,
                    number("device minor", 337..345)?,
                ))
            };
            let typeflag = header.as_bytes()[156];
            let (kind, header_only) = match typeflag {
                b'0' | 0 | b'7' | b'S' => (Kind::File, false),
                b'5' => (Kind::Dir, true),
                b'2' => (Kind::Symlink, true),
                b'1' => (Kind::HardLink, true),
                b'3' => {
                    let (major, minor) = device()?;
                    (Kind::CharDevice { major, minor }, true)
                }
                b'4' => {
                    let (major, minor) = device()?;
                    (Kind::BlockDevice { major, minor }, true)
                }
                b'6' => (Kind::Fifo, true),
                _ => (Kind::Unknown, false),
            };
            let stored = if header_only {
                0
            } else {
                pax.size.unwrap_or(stored)
            };
            let mut size = stored;
            if typeflag == b'S' {
                let sparse = self.sparse_map(&header, stored)?;
                size = sparse.real_size;
                self.sparse = Some(sparse);
            }
            self.remaining = stored;
            self.pad = padding(stored);
            return Ok(Some(Member {
                name,
                link,
                kind,
                mode,
                uid,
                gid,
                mtime,
                xattrs: pax.xattrs,
                size,
            }));
        }
    }

    /// Reads an extension record of `size` bytes (and its padding) into memory.
    fn extension(&mut self, size: u64) -> io::Result<Vec<u8>> {
        if size > MAX_EXTENSION {
            return Err(invalid(&format!(
                "extension header of {size} bytes (at most {MAX_EXTENSION} accepted)"
            )));
        }
        let mut data = vec![0; size as usize];
        self.src.read_exact(&mut data)?;
        self.src.skip(padding(size))?;
        Ok(data)
    }

    fn skip_padded(&mut self, size: u64) -> io::Result<()> {
        self.src.skip(size)?;
        self.src.skip(padding(size))
    }

    /// The extents of an old GNU sparse member: four in the header, 21 in each extension
    /// block that follows it while the `isextended` flag is set. They must lie in order,
    /// inside the file, and add up to the `stored` bytes.
    fn sparse_map(&mut self, header: &Header, stored: u64) -> io::Result<Sparse> {
        let bad = || invalid("malformed sparse map");
        let Some(gnu) = header.as_gnu() else {
            return Err(bad());
        };
        let real_size = gnu.real_size().map_err(|_| bad())?;
        let mut extents = Vec::new();
        let mut push = |block: &tar::GnuSparseHeader| -> io::Result<()> {
            if !block.is_empty() {
                extents.push((
                    block.offset().map_err(|_| bad())?,
                    block.length().map_err(|_| bad())?,
                ));
            }
            Ok(())
        };
        for block in &gnu.sparse {
            push(block)?;
        }
        let mut more = gnu.is_extended();
        let mut blocks = 0;
        while more {
            blocks += 1;
            if blocks > MAX_SPARSE_BLOCKS {
                return Err(invalid("too many sparse extension blocks"));
            }
            let mut ext = tar::GnuExtSparseHeader::new();
            if !read_block(&mut self.src, ext.as_mut_bytes())? {
                return Err(eof());
            }
            for block in &ext.sparse {
                push(block)?;
            }
            more = ext.as_bytes()[EXT_ISEXTENDED] == 1;
        }
        let mut end = 0u64;
        let mut total = 0u64;
        for &(offset, len) in &extents {
            let stop = offset.checked_add(len).ok_or_else(bad)?;
            if offset < end || stop > real_size {
                return Err(bad());
            }
            end = stop;
            total = total.checked_add(len).ok_or_else(bad)?;
        }
        if total != stored || real_size > MAX_SIZE {
            return Err(bad());
        }
        Ok(Sparse {
            extents,
            next: 0,
            pos: 0,
            real_size,
        })
    }

    /// Reads stored data of the current member.
    fn read_stored(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.src.read(&mut buf[..want])?;
        if n == 0 {
            return Err(eof());
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Reading a `TarReader` reads the current member's data (a sparse file whole, holes as
/// zeros); data left unread is skipped by the next [`TarReader::next_member`].
impl<S: Source> Read for TarReader<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(sparse) = self.sparse.as_mut() else {
            return self.read_stored(buf);
        };
        if buf.is_empty() || sparse.pos >= sparse.real_size {
            return Ok(0);
        }
        let (hole_end, in_extent) = match sparse.extents.get(sparse.next) {
            Some(&(offset, len)) if sparse.pos >= offset => (offset + len, true),
            Some(&(offset, _)) => (offset, false),
            None => (sparse.real_size, false),
        };
        let want = buf
            .len()
            .min(usize::try_from(hole_end - sparse.pos).unwrap_or(usize::MAX));
        if !in_extent {
            buf[..want].fill(0);
            sparse.pos += want as u64;
            return Ok(want);
        }
        let n = self.read_stored(&mut buf[..want])?;
        let sparse = self.sparse.as_mut().expect("a sparse member");
        sparse.pos += n as u64;
        if sparse.pos == hole_end {
            sparse.next += 1;
        }
        Ok(n)
    }
}

/// Whether `block` looks like the first block of a tar archive: a header with a valid
/// checksum, or the zero block of an empty archive.
pub fn is_tar_start(block: &[u8]) -> bool {
    if block.len() < BLOCK as usize {
        return false;
    }
    let block = &block[..BLOCK as usize];
    if block.iter().all(|&b| b == 0) {
        return true;
    }
    let mut header = Header::new_old();
    header.as_mut_bytes().copy_from_slice(block);
    check_sum(&header).is_ok()
}

/// Peeks at the first bytes of `reader` without consuming them (up to `n`, fewer only at
/// the end of the input).
pub fn peek<R: Read>(reader: &mut BufReader<R>, n: usize) -> io::Result<Vec<u8>> {
    // `fill_buf` returns what one read gave, which can be short; a buffer that small is
    // only ever seen at the very end of a file, where short is right.
    let buf = reader.fill_buf()?;
    Ok(buf[..buf.len().min(n)].to_vec())
}

fn padding(size: u64) -> u64 {
    crate::header::pad_to_block(size) - size
}

/// Reads one block; `false` at a clean end of input, an error if the block is partial.
fn read_block<R: Read>(src: &mut R, block: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < block.len() {
        match src.read(&mut block[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(eof()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// POSIX sums the header bytes as unsigned, some old tars as signed; Go accepts both.
fn check_sum(header: &Header) -> io::Result<()> {
    let stored = header
        .cksum()
        .map_err(|_| invalid("header checksum is not a number"))?;
    let bytes = header.as_bytes();
    let (mut unsigned, mut signed) = (0u32, 0i32);
    for (i, &b) in bytes.iter().enumerate() {
        // The checksum field itself counts as eight spaces.
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += u32::from(b);
        signed += i32::from(b.cast_signed());
    }
    if stored == unsigned || i64::from(stored) == i64::from(signed) {
        Ok(())
    } else {
        Err(invalid("header checksum mismatch"))
    }
}

/// A numeric header field as Go's reader takes it: octal digits between optional spaces and
/// NULs (an empty field is 0), or GNU's base-256 form (first byte 0x80, big-endian value in
/// the rest). `None` for anything else, negative base-256 values included.
fn parse_numeric(field: &[u8]) -> Option<u64> {
    match field.split_first() {
        Some((0x80, rest)) => rest.iter().try_fold(0u64, |value, &b| {
            Some(value.checked_mul(256)? | u64::from(b))
        }),
        Some((first, _)) if first & 0x80 != 0 => None,
        _ => {
            let pad = |b: &u8| *b == b' ' || *b == 0;
            let start = field.iter().position(|b| !pad(b)).unwrap_or(field.len());
            let end = field.iter().rposition(|b| !pad(b)).map_or(start, |i| i + 1);
            field[start..end]
                .iter()
                .try_fold(0u64, |value, &b| match b {
                    b'0'..=b'7' => value.checked_mul(8)?.checked_add(u64::from(b - b'0')),
                    _ => None,
                })
        }
    }
}

fn cut_nul(mut bytes: Vec<u8>) -> Vec<u8> {
    if let Some(end) = bytes.iter().position(|&b| b == 0) {
        bytes.truncate(end);
    }
    bytes
}

/// A decimal PAX number; `mtime` may have a fraction, which is dropped.
fn pax_number<T: std::str::FromStr>(value: &[u8], key: &str) -> io::Result<T> {
    let text = std::str::from_utf8(value).ok();
    let whole = text.map(|t| t.split_once('.').map_or(t, |(w, _)| w));
    whole
        .and_then(|w| w.parse().ok())
        .ok_or_else(|| invalid(&format!("PAX {key} is not a number in range")))
}

/// Parses PAX records: `<length> <key>=<value>\n`, the length counting the whole record.
/// Values may hold any byte, newlines included.
fn parse_pax(mut data: &[u8]) -> io::Result<Pax> {
    let mut pax = Pax::default();
    let mut sparse_name = None;
    // Some writers pad the record block with NULs.
    while !data.is_empty() && data[0] != 0 {
        let bad = || invalid("malformed PAX record");
        let space = data.iter().position(|&b| b == b' ').ok_or_else(bad)?;
        let len: usize = std::str::from_utf8(&data[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(bad)?;
        if len <= space + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err(bad());
        }
        let record = &data[space + 1..len - 1];
        let eq = record.iter().position(|&b| b == b'=').ok_or_else(bad)?;
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        match key {
            b"path" => pax.path = Some(value.to_vec()),
            b"linkpath" => pax.linkpath = Some(value.to_vec()),
            b"size" => {
                let size: u64 = pax_number(value, "size")?;
                if size > MAX_SIZE {
                    return Err(invalid("PAX size is not a number in range"));
                }
                pax.size = Some(size);
            }
            b"uid" => pax.uid = Some(pax_number(value, "uid")?),
            b"gid" => pax.gid = Some(pax_number(value, "gid")?),
            b"mtime" => pax.mtime = Some(pax_number(value, "mtime")?),
            // GNU sparse formats 0.1 and 1.0 keep the real name here.
            b"GNU.sparse.name" => sparse_name = Some(value.to_vec()),
            _ => {
                if let Some(name) = key.strip_prefix(PAX_XATTR)
                    && let Ok(name) = std::str::from_utf8(name)
                {
                    pax.xattrs.push((name.to_owned(), value.to_vec()));
                }
            }
        }
        data = &data[len..];
    }
    if sparse_name.is_some() {
        pax.path = sparse_name;
    }
    Ok(pax)
}

fn eof() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "unexpected end of data")
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(bytes: &[u8], strict: bool) -> io::Result<Vec<(Member, Vec<u8>)>> {
        let mut reader = TarReader::new(Stream(bytes), strict);
        let mut out = Vec::new();
        while let Some(m) = reader.next_member()? {
            let mut data = Vec::new();
            io::copy(&mut reader, &mut data)?;
            out.push((m, data));
        }
        Ok(out)
    }

    fn gnu_archive() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let long = format!("{}/file", "d".repeat(150));
        let mut h = Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        b.append_data(&mut h, &long, &b"abc"[..]).unwrap();
        let mut h = Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, "link", "x".repeat(200)).unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn gnu_long_names_and_links() {
        let got = members(&gnu_archive(), true).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0.name.len(), 155);
        assert_eq!(got[0].0.kind, Kind::File);
        assert_eq!(got[0].0.mode, 0o644);
        assert_eq!(got[0].1, b"abc");
        assert_eq!(got[1].0.kind, Kind::Symlink);
        assert_eq!(got[1].0.link, "x".repeat(200).as_bytes());
    }

    #[test]
    fn pax_names_may_hold_newlines() {
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([("path", &b"/nix/store/a\nb c"[..])])
            .unwrap();
        let mut h = Header::new_ustar();
        h.set_size(1);
        h.set_mode(0o444);
        b.append_data(&mut h, "placeholder", &b"z"[..]).unwrap();
        let got = members(&b.into_inner().unwrap(), true).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0.name, b"/nix/store/a\nb c");
        assert_eq!(got[0].1, b"z");
    }

    #[test]
    fn oversized_long_name_is_refused_without_reading_it() {
        let mut h = Header::new_gnu();
        h.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
        h.set_entry_type(tar::EntryType::GNULongName);
        h.set_size(1 << 40);
        h.set_cksum();
        let err = members(h.as_bytes(), true).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn missing_end_block_is_truncation_only_when_strict() {
        let mut bytes = gnu_archive();
        let end = bytes.len() - bytes.iter().rev().take_while(|&&b| b == 0).count();
        bytes.truncate(end.next_multiple_of(512));
        assert_eq!(
            members(&bytes, true).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        assert_eq!(members(&bytes, false).unwrap().len(), 2);
    }

    /// A ustar header for `name` of type `kind` whose size field holds `size_field`.
    fn raw_header(name: &[u8], kind: u8, size_field: &[u8; 12]) -> Header {
        let mut h = Header::new_ustar();
        h.as_mut_bytes()[..name.len()].copy_from_slice(name);
        h.set_mode(0o644);
        h.as_mut_bytes()[124..136].copy_from_slice(size_field);
        h.as_mut_bytes()[156] = kind;
        h.set_cksum();
        h
    }

    /// A member whose size is near `u64::MAX` (base-256 in the header, or a PAX `size`)
    /// made skipping its data and padding overflow: a panic in debug builds, a wrong
    /// position in release builds. Found while fuzzing the reader; the archives are
    /// `fuzz/seeds/base_image/regression-huge-size-*`.
    #[test]
    fn huge_member_size_is_an_error_not_an_overflow() {
        let mut huge = [0xff; 12];
        huge[0] = 0x80;
        for kind in [b'0', b'V'] {
            let mut bytes = raw_header(b"m", kind, &huge).as_bytes().to_vec();
            bytes.extend_from_slice(&[0; 1024]);
            let err = members(&bytes, true).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        }

        for size in ["18446744073709551615", "9223372036854775808"] {
            let mut b = tar::Builder::new(Vec::new());
            b.append_pax_extensions([("size", size.as_bytes())])
                .unwrap();
            let mut bytes = b.into_inner().unwrap();
            bytes.extend_from_slice(raw_header(b"m", b'0', b"00000000000\0").as_bytes());
            bytes.extend_from_slice(&[0; 1024]);
            let err = members(&bytes, true).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        }
    }

    /// The largest size accepted skips cleanly to a truncation error: no overflow.
    #[test]
    fn largest_member_size_is_truncation() {
        let mut field = [0u8; 12];
        field[0] = 0x80;
        field[4..].copy_from_slice(&MAX_SIZE.to_be_bytes());
        for kind in [b'0', b'V', b'3'] {
            let mut bytes = raw_header(b"m", kind, &field).as_bytes().to_vec();
            bytes.extend_from_slice(&[0; 1024]);
            let mut reader = TarReader::new(Stream(&bytes[..]), true);
            assert!(reader.next_member().unwrap().is_some());
            match reader.next_member() {
                // A device has no data whatever its size field says: the archive ends.
                Ok(None) if kind == b'3' => {}
                Err(err) if kind != b'3' => {
                    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
                }
                other => panic!("kind {}: {other:?}", char::from(kind)),
            }
        }
    }

    #[test]
    fn numeric_fields_as_go_reads_them() {
        assert_eq!(parse_numeric(b"0000644\0"), Some(0o644));
        assert_eq!(parse_numeric(b" 644 \0\0"), Some(0o644));
        assert_eq!(parse_numeric(b"\0\0\0\0\0\0\0\0"), Some(0));
        assert_eq!(parse_numeric(b"        "), Some(0));
        assert_eq!(parse_numeric(b"6 4\0"), None);
        assert_eq!(parse_numeric(b"0009\0"), None);
        let mut big = [0u8; 12];
        big[0] = 0x80;
        big[4..].copy_from_slice(&(8u64 << 30).to_be_bytes());
        assert_eq!(parse_numeric(&big), Some(8 << 30));
        assert_eq!(parse_numeric(&[0xff; 8]), None);
    }

    /// An old GNU sparse member reads as the whole file, holes as zeros; what follows it
    /// is read as usual.
    #[test]
    fn gnu_sparse_members_read_whole() {
        // A 10,000-byte file with "abc" at 0 and "xyz" at 9,997.
        let mut h = Header::new_gnu();
        h.set_entry_type(tar::EntryType::GNUSparse);
        h.set_mode(0o600);
        h.set_size(6);
        {
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name[..6].copy_from_slice(b"sparse");
            gnu.realsize.copy_from_slice(b"00000023420\0");
            gnu.sparse[0].offset.copy_from_slice(b"00000000000\0");
            gnu.sparse[0].numbytes.copy_from_slice(b"00000000003\0");
            gnu.sparse[1].offset.copy_from_slice(b"00000023415\0");
            gnu.sparse[1].numbytes.copy_from_slice(b"00000000003\0");
        }
        h.set_cksum();
        let mut bytes = h.as_bytes().to_vec();
        let mut data = b"abcxyz".to_vec();
        data.resize(512, 0);
        bytes.extend_from_slice(&data);
        let mut b = tar::Builder::new(Vec::new());
        let mut next = Header::new_gnu();
        next.set_size(2);
        next.set_mode(0o644);
        b.append_data(&mut next, "after", &b"ok"[..]).unwrap();
        bytes.extend_from_slice(&b.into_inner().unwrap());

        let got = members(&bytes, true).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].0.kind, got[0].0.size), (Kind::File, 10_000));
        let mut expected = vec![0u8; 10_000];
        expected[..3].copy_from_slice(b"abc");
        expected[9_997..].copy_from_slice(b"xyz");
        assert_eq!(got[0].1, expected);
        assert_eq!(
            (got[1].0.name.as_slice(), got[1].1.as_slice()),
            (&b"after"[..], &b"ok"[..])
        );
    }

    #[test]
    fn pax_owner_time_and_xattrs_override_the_header() {
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([
            ("uid", &b"4294967296"[..]),
            ("gid", b"7"),
            ("mtime", b"1234567890.5"),
            ("SCHILY.xattr.user.note", b"a\0b"),
        ])
        .unwrap();
        let mut h = Header::new_ustar();
        h.set_size(0);
        h.set_mode(0o4755);
        h.set_uid(1);
        b.append_data(&mut h, "f", &b""[..]).unwrap();
        let got = members(&b.into_inner().unwrap(), true).unwrap();
        let m = &got[0].0;
        assert_eq!(
            (m.uid, m.gid, m.mtime, m.mode),
            (1 << 32, 7, 1_234_567_890, 0o4755)
        );
        assert_eq!(m.xattrs, [("user.note".to_owned(), b"a\0b".to_vec())]);
    }

    #[test]
    fn detects_tar_start() {
        assert!(is_tar_start(&gnu_archive()));
        assert!(is_tar_start(&[0; 1024]));
        assert!(!is_tar_start(b"\x1f\x8b\x08\0"));
    }
}
