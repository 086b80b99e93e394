//! A streaming tar reader with bounded memory, for archives nobody vouches for.
//!
//! Headers are decoded by the `tar` crate's [`tar::Header`]; the framing (long names, PAX
//! records, sparse headers, padding) is done here because `tar::Archive` reads GNU long
//! names and PAX records into memory whatever their size, and a few compressed bytes can
//! declare gigabytes of them. Here every extension record is capped at
//! [`MAX_EXTENSION`] bytes, and member data is never held in memory.
//!
//! The rules follow Go's `archive/tar`, which `docker load`, skopeo and podman use: PAX
//! `path`, `linkpath` and `size` override the header, GNU `L`/`K` records set the names,
//! global PAX headers are ignored, and header-only types (links, devices, directories,
//! fifos) have no data whatever their size field says.

use std::io::{self, BufRead, BufReader, Read};

use tar::Header;

/// Size of a tar block.
use buildimage_layer::BLOCK;

/// The largest GNU long-name record or PAX header accepted. Linux paths are at most 4 KiB;
/// real PAX headers (with xattrs) stay well below this.
pub(crate) const MAX_EXTENSION: u64 = 1 << 20;

/// The largest member size accepted: Go's reader keeps sizes in an `int64` and refuses
/// larger ones, and so does this one, so that no size arithmetic can overflow.
const MAX_SIZE: u64 = i64::MAX as u64;

/// The most GNU sparse extension blocks accepted after one header (21 extents each).
const MAX_SPARSE_BLOCKS: u32 = 65_536;

/// Offset of the `isextended` flag in a GNU sparse extension block (21 extents of 24 bytes).
const EXT_ISEXTENDED: usize = 504;

/// A byte source that can also skip forward cheaply.
pub(crate) trait Source: Read {
    /// Skips `n` bytes; fewer than `n` left is an [`io::ErrorKind::UnexpectedEof`] error.
    fn skip(&mut self, n: u64) -> io::Result<()>;
}

/// A plain stream: skipping reads and discards.
pub(crate) struct Stream<R>(pub R);

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
pub(crate) struct FileSource {
    file: BufReader<fs_err::File>,
    pos: u64,
    len: u64,
}

impl FileSource {
    /// Reads `file` from its start.
    pub(crate) fn new(file: fs_err::File) -> io::Result<Self> {
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
pub(crate) enum Kind {
    /// Regular file (also contiguous and GNU sparse files).
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Hard link to an earlier member.
    HardLink,
    /// Device or fifo.
    Other,
    /// A type this reader does not know (GNU volume labels, dump directories, …).
    Unknown,
}

/// One member's header, extensions applied.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    /// The raw name, as stored.
    pub name: Vec<u8>,
    /// The raw link target (symlinks and hard links), else empty.
    pub link: Vec<u8>,
    /// The kind.
    pub kind: Kind,
    /// Permission bits, `0o7777` at most.
    pub mode: u32,
}

/// PAX overrides for the next member.
#[derive(Default)]
struct Pax {
    path: Option<Vec<u8>>,
    linkpath: Option<Vec<u8>>,
    size: Option<u64>,
}

/// Reads members one after the other; data not copied out is skipped.
pub(crate) struct TarReader<S> {
    src: S,
    /// Data bytes of the current member not read yet.
    remaining: u64,
    /// Padding after the current member's data.
    pad: u64,
    /// Whether a stream that ends without an end-of-archive block is an error.
    strict_end: bool,
    done: bool,
}

impl<S: Source> TarReader<S> {
    /// Reads from `src`. With `strict_end`, the archive must end with a zero block, so an
    /// archive cut off between two members counts as truncated.
    pub(crate) fn new(src: S, strict_end: bool) -> Self {
        TarReader {
            src,
            remaining: 0,
            pad: 0,
            strict_end,
            done: false,
        }
    }

    /// The source, positioned after the end-of-archive block once [`Self::next_member`] returned
    /// `None`.
    pub(crate) fn into_inner(self) -> S {
        self.src
    }

    /// The next member, or `None` at the end of the archive.
    pub(crate) fn next_member(&mut self) -> io::Result<Option<Member>> {
        if self.done {
            return Ok(None);
        }
        // Two skips, not one of the sum: a member's size may be up to `MAX_SIZE`.
        self.src.skip(self.remaining)?;
        self.src.skip(self.pad)?;
        self.remaining = 0;
        self.pad = 0;

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
            let mode = header.mode().map_err(|e| invalid(&e.to_string()))? & 0o7777;
            let (kind, header_only) = match header.as_bytes()[156] {
                b'0' | 0 | b'7' | b'S' => (Kind::File, false),
                b'5' => (Kind::Dir, true),
                b'2' => (Kind::Symlink, true),
                b'1' => (Kind::HardLink, true),
                b'3' | b'4' | b'6' => (Kind::Other, true),
                _ => (Kind::Unknown, false),
            };
            if header.as_bytes()[156] == b'S' {
                self.skip_sparse_blocks(&header)?;
            }
            let size = if header_only {
                0
            } else {
                pax.size.unwrap_or(stored)
            };
            self.remaining = size;
            self.pad = padding(size);
            return Ok(Some(Member {
                name,
                link,
                kind,
                mode,
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

    /// Old GNU sparse files may continue their extent list in extra blocks after the header.
    fn skip_sparse_blocks(&mut self, header: &Header) -> io::Result<()> {
        let Some(gnu) = header.as_gnu() else {
            return Ok(());
        };
        let mut more = gnu.is_extended();
        let mut blocks = 0;
        let mut block = [0u8; BLOCK as usize];
        while more {
            blocks += 1;
            if blocks > MAX_SPARSE_BLOCKS {
                return Err(invalid("too many sparse extension blocks"));
            }
            if !read_block(&mut self.src, &mut block)? {
                return Err(eof());
            }
            more = block[EXT_ISEXTENDED] == 1;
        }
        Ok(())
    }
}

/// Reading a `TarReader` reads the current member's data; data left unread is skipped by
/// the next [`TarReader::next_member`].
impl<S: Source> Read for TarReader<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
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

/// Whether `block` looks like the first block of a tar archive: a header with a valid
/// checksum, or the zero block of an empty archive.
pub(crate) fn is_tar_start(block: &[u8]) -> bool {
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
pub(crate) fn peek<R: Read>(reader: &mut BufReader<R>, n: usize) -> io::Result<Vec<u8>> {
    // `fill_buf` returns what one read gave, which can be short; a buffer that small is
    // only ever seen at the very end of a file, where short is right.
    let buf = reader.fill_buf()?;
    Ok(buf[..buf.len().min(n)].to_vec())
}

fn padding(size: u64) -> u64 {
    buildimage_layer::pad_to_block(size) - size
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

fn cut_nul(mut bytes: Vec<u8>) -> Vec<u8> {
    if let Some(end) = bytes.iter().position(|&b| b == 0) {
        bytes.truncate(end);
    }
    bytes
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
                let size = std::str::from_utf8(value)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .filter(|&size| size <= MAX_SIZE)
                    .ok_or_else(|| invalid("PAX size is not a number in range"))?;
                pax.size = Some(size);
            }
            // GNU sparse formats 0.1 and 1.0 keep the real name here.
            b"GNU.sparse.name" => sparse_name = Some(value.to_vec()),
            _ => {}
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
    fn detects_tar_start() {
        assert!(is_tar_start(&gnu_archive()));
        assert!(is_tar_start(&[0; 1024]));
        assert!(!is_tar_start(b"\x1f\x8b\x08\0"));
    }
}
