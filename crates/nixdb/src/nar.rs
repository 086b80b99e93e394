//! NAR (Nix archive) serialisation of a file-system object, streamed.
//!
//! A NAR records exactly what Nix considers the content of a store path: the tree shape,
//! entry names, regular file contents, the owner-execute bit and symlink targets. Nothing
//! else (no other mode bits, owners, times or extended attributes). [`dump`] writes the
//! bytes `nix-store --dump` writes; [`hash_path`] computes `narHash` and `narSize` without
//! keeping more than one read buffer of the input in memory.
//!
//! Rules, as in Nix's `archive.cc`:
//!
//! - the type comes from `lstat`; symlinks are never followed;
//! - a regular file is executable when `S_IXUSR` is set;
//! - directory entries are sorted by the raw bytes of their names (`Zempty` before `doc`),
//!   which may be any bytes, UTF-8 or not;
//! - FIFOs, sockets and device files are an error ("has an unsupported type");
//! - a file that changes size while it is read is an error, never a truncated NAR.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use buildimage_nixdb::{hash, nar};
//!
//! let dir = tempfile::tempdir()?;
//! let file = dir.path().join("greeting");
//! std::fs::write(&file, "hello world\n")?;
//!
//! let mut bytes = Vec::new();
//! assert_eq!(nar::dump(&file, &mut bytes)?, 128);
//! let info = nar::hash_path(&file)?;
//! assert_eq!(info.nar_size, 128);
//! assert_eq!(
//!     hash::format(&info.nar_hash, hash::HashForm::Nix32),
//!     "sha256:00zns3gj9hwz2a4b0i07y7nmxybq59lh24bl3xsxblcl6333mjil"
//! );
//! # Ok(())
//! # }
//! ```

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Size of the read buffer and of the write buffer in front of the sink.
const BUF_SIZE: usize = 128 * 1024;

/// The NAR hash and size of a file-system object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NarInfo {
    /// SHA-256 of the NAR bytes.
    pub nar_hash: [u8; 32],
    /// Length of the NAR in bytes.
    pub nar_size: u64,
}

/// Writes the NAR of the file-system object at `path` to `out`; returns the number of bytes.
///
/// The bytes are identical to `nix-store --dump path`. `out` receives large writes (the
/// function buffers internally), so it need not be buffered.
pub fn dump<W: Write + ?Sized>(path: &Path, out: &mut W) -> Result<u64> {
    let mut counter = Counter {
        inner: out,
        count: 0,
    };
    write_nar(path, &mut counter)?;
    Ok(counter.count)
}

/// Computes the `narHash` and `narSize` of the object at `path` in one streaming pass.
pub fn hash_path(path: &Path) -> Result<NarInfo> {
    let mut sink = NarHasher::default();
    write_nar(path, &mut sink)?;
    Ok(sink.finish())
}

/// A [`Write`] sink that hashes and counts the bytes written to it.
///
/// Feed it a NAR (by [`dump`] or otherwise) and [`finish`](NarHasher::finish) gives the
/// [`NarInfo`]. Writing never fails.
#[derive(Default, Clone)]
pub struct NarHasher {
    hasher: Sha256,
    size: u64,
}

impl NarHasher {
    /// The SHA-256 and length of everything written so far.
    pub fn finish(self) -> NarInfo {
        NarInfo {
            nar_hash: self.hasher.finalize().into(),
            nar_size: self.size,
        }
    }
}

impl Write for NarHasher {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hasher.update(buf);
        self.size += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Counts what passes through to `inner`.
struct Counter<'a, W: Write + ?Sized> {
    inner: &'a mut W,
    count: u64,
}

impl<W: Write + ?Sized> Write for Counter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Serialises `root` into `sink` through a write buffer, then flushes it.
pub(crate) fn write_nar<W: Write + ?Sized>(root: &Path, sink: &mut W) -> Result<()> {
    let mut writer = NarWriter {
        out: BufWriter::with_capacity(BUF_SIZE, sink),
        buf: vec![0; BUF_SIZE],
        root,
    };
    writer.str(b"nix-archive-1")?;
    writer.object(root)?;
    writer.out.flush().map_err(|e| writer.write_error(e))
}

/// The recursive serialiser. Read errors name the object read; write errors name `root`.
struct NarWriter<'a, W: Write> {
    out: W,
    /// Read buffer for file contents, allocated once per NAR.
    buf: Vec<u8>,
    root: &'a Path,
}

impl<W: Write> NarWriter<'_, W> {
    fn write_error(&self, source: io::Error) -> Error {
        Error::NarWrite {
            path: self.root.to_owned(),
            source,
        }
    }

    fn raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes).map_err(|e| self.write_error(e))
    }

    /// The length as a little-endian u64.
    fn len(&mut self, len: u64) -> Result<()> {
        self.raw(&len.to_le_bytes())
    }

    /// Zero bytes up to the next multiple of 8 after `len` bytes of string.
    fn pad(&mut self, len: u64) -> Result<()> {
        let pad = (8 - len % 8) % 8;
        self.raw(&[0u8; 8][..pad as usize])
    }

    /// A NAR string: length, bytes, padding.
    fn str(&mut self, s: &[u8]) -> Result<()> {
        self.len(s.len() as u64)?;
        self.raw(s)?;
        self.pad(s.len() as u64)
    }

    fn object(&mut self, path: &Path) -> Result<()> {
        let meta =
            fs::symlink_metadata(path).map_err(|e| Error::io("read the metadata of", path, e))?;
        let kind = meta.file_type();
        self.str(b"(")?;
        if kind.is_file() {
            self.str(b"type")?;
            self.str(b"regular")?;
            if meta.permissions().mode() & 0o100 != 0 {
                self.str(b"executable")?;
                self.str(b"")?;
            }
            self.str(b"contents")?;
            self.contents(path, meta.len())?;
        } else if kind.is_symlink() {
            let target = fs::read_link(path).map_err(|e| Error::io("read the symlink", path, e))?;
            self.str(b"type")?;
            self.str(b"symlink")?;
            self.str(b"target")?;
            self.str(target.as_os_str().as_bytes())?;
        } else if kind.is_dir() {
            self.str(b"type")?;
            self.str(b"directory")?;
            for name in sorted_entries(path)? {
                self.str(b"entry")?;
                self.str(b"(")?;
                self.str(b"name")?;
                self.str(name.as_bytes())?;
                self.str(b"node")?;
                self.object(&path.join(&name))?;
                self.str(b")")?;
            }
        } else {
            return Err(Error::UnsupportedType {
                path: path.to_owned(),
            });
        }
        self.str(b")")
    }

    /// Streams exactly `size` bytes of the file, framed as a NAR string.
    ///
    /// The length goes out before the contents, so a file that grows or shrinks while it is
    /// read would give a corrupt NAR; both cases are errors instead.
    fn contents(&mut self, path: &Path, size: u64) -> Result<()> {
        let changed = || Error::FileChanged {
            path: path.to_owned(),
            expected: size,
        };
        let mut file = File::open(path).map_err(|e| Error::io("open", path, e))?;
        self.len(size)?;
        let mut left = size;
        while left > 0 {
            let want = usize::try_from(left).map_or(self.buf.len(), |l| l.min(self.buf.len()));
            let n = read_some(&mut file, &mut self.buf[..want], path)?;
            if n == 0 {
                return Err(changed());
            }
            self.out
                .write_all(&self.buf[..n])
                .map_err(|e| Error::NarWrite {
                    path: self.root.to_owned(),
                    source: e,
                })?;
            left -= n as u64;
        }
        if read_some(&mut file, &mut self.buf[..1], path)? != 0 {
            return Err(changed());
        }
        self.pad(size)
    }
}

/// One `read`, retried on `EINTR`.
fn read_some(file: &mut File, buf: &mut [u8], path: &Path) -> Result<usize> {
    loop {
        match file.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("read", path, e)),
        }
    }
}

/// The entry names of a directory, sorted by raw bytes.
pub(crate) fn sorted_entries(dir: &Path) -> Result<Vec<OsString>> {
    let list_error = |e| Error::io("list the directory", dir, e);
    let mut names = fs::read_dir(dir)
        .map_err(list_error)?
        .map(|entry| entry.map(|e| e.file_name()).map_err(list_error))
        .collect::<Result<Vec<_>>>()?;
    names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{HashForm, format};
    use std::os::unix::fs::symlink;

    fn nar_of(path: &Path) -> Vec<u8> {
        let mut out = Vec::new();
        let n = dump(path, &mut out).unwrap();
        assert_eq!(n, out.len() as u64);
        out
    }

    fn info(path: &Path) -> (u64, String) {
        let info = hash_path(path).unwrap();
        let bytes = nar_of(path);
        assert_eq!(info.nar_size, bytes.len() as u64);
        assert_eq!(info.nar_hash, <[u8; 32]>::from(Sha256::digest(&bytes)));
        (info.nar_size, format(&info.nar_hash, HashForm::Nix32))
    }

    fn set_mode(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    /// `nix-store --dump` of a file holding `hello world\n`, docs/formats.md §7.3.
    #[test]
    fn hello_world_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, "hello world\n").unwrap();
        let mut want = Vec::new();
        for (len, s) in [
            (13, &b"nix-archive-1\0\0\0"[..]),
            (1, b"(\0\0\0\0\0\0\0"),
            (4, b"type\0\0\0\0"),
            (7, b"regular\0"),
            (8, b"contents"),
            (12, b"hello world\n\0\0\0\0"),
            (1, b")\0\0\0\0\0\0\0"),
        ] {
            want.extend_from_slice(&u64::to_le_bytes(len));
            want.extend_from_slice(s);
        }
        assert_eq!(want.len(), 128);
        assert_eq!(nar_of(&file), want);
    }

    /// The narHash and narSize table of docs/formats.md §7.4.
    #[test]
    fn known_nar_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        fs::write(p("hello"), "hello world\n").unwrap();
        fs::write(p("empty"), "").unwrap();
        fs::write(p("eight"), "12345678").unwrap();
        fs::write(p("exec"), "").unwrap();
        set_mode(&p("exec"), 0o755);
        fs::create_dir(p("dir")).unwrap();
        symlink(
            "/nix/store/h4lyvgdxy8acvyss6p8ps7ji50n6yw0d-hello-dep-1.0",
            p("link"),
        )
        .unwrap();
        let cases = [
            (
                "hello",
                128,
                "00zns3gj9hwz2a4b0i07y7nmxybq59lh24bl3xsxblcl6333mjil",
            ),
            (
                "empty",
                112,
                "0ip26j2h11n1kgkz36rl4akv694yz65hr72q4kv4b3lxcbi65b3p",
            ),
            (
                "eight",
                120,
                "0g7mwcdnivpkvcv7aydv8b9a4qp0nc3daxhdl95fciv488ik5mi2",
            ),
            (
                "exec",
                144,
                "146m62fh059g7arnrjh6a7yh4q879r36fsm4a5c4dbd6ja2hpq1l",
            ),
            (
                "dir",
                96,
                "0sjjj9z1dhilhpc8pq4154czrb79z9cm044jvn75kxcjv6v5l2m5",
            ),
            (
                "link",
                176,
                "0hm79qadnhgkqphnig6k037rhq90jd1asblpr4y3kqkfyd69kwya",
            ),
        ];
        for (name, size, hash) in cases {
            assert_eq!(info(&p(name)), (size, format!("sha256:{hash}")), "{name}");
        }
    }

    #[test]
    fn only_owner_execute_counts() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        fs::write(&f, "x").unwrap();
        set_mode(&f, 0o644);
        let plain = nar_of(&f);
        set_mode(&f, 0o455);
        assert_eq!(nar_of(&f), plain, "group/other execute bits are ignored");
        set_mode(&f, 0o500);
        assert_ne!(nar_of(&f), plain);
    }

    #[test]
    fn unsupported_type_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("sub/sock");
        fs::create_dir(dir.path().join("sub")).unwrap();
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let err = dump(dir.path(), &mut io::sink()).unwrap_err();
        assert!(matches!(err, Error::UnsupportedType { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            format!("{} has an unsupported type", sock.display())
        );
    }

    /// Files in /proc report size 0 but have contents: the regression case for a file that
    /// changes size while it is read.
    #[test]
    fn file_that_grows_while_read_is_an_error() {
        let err = hash_path(Path::new("/proc/self/status")).unwrap_err();
        assert!(
            matches!(err, Error::FileChanged { expected: 0, .. }),
            "{err}"
        );
    }

    #[test]
    fn missing_path_is_an_io_error_naming_it() {
        let err = hash_path(Path::new("/nonexistent/x")).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/x"), "{err}");
    }

    #[test]
    fn large_file_streams_in_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("big");
        let data: Vec<u8> = (0..(3 * BUF_SIZE + 5)).map(|i| (i % 251) as u8).collect();
        fs::write(&f, &data).unwrap();
        let bytes = nar_of(&f);
        assert_eq!(bytes.len(), 112 + data.len() + 3);
        assert_eq!(&bytes[96..96 + data.len()], &data[..]);
    }

    struct FailingWriter;

    impl Write for FailingWriter {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::other("disk full"))
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn write_errors_name_the_dumped_path() {
        let dir = tempfile::tempdir().unwrap();
        let err = dump(dir.path(), &mut FailingWriter).unwrap_err();
        assert!(matches!(err, Error::NarWrite { .. }), "{err}");
    }
}
