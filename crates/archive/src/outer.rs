//! The outer tar of a docker-archive: read-only members owned by root.

use std::io::{self, Write};

use buildimage_layer::{BLOCK, Entry, EntryKind, Owner, archive_size, encode_header, pad_to_block};

use crate::error::{Error, Result};

/// Mode of directories in the outer tar: buildImage makes the image folder read-only.
const DIR_MODE: u32 = 0o555;
/// Mode of files in the outer tar.
const FILE_MODE: u32 = 0o444;

/// Counts the bytes that pass through to `W`.
pub struct Counting<W> {
    inner: W,
    count: u64,
}

impl<W> Counting<W> {
    /// Counts what is written to `inner`.
    pub fn new(inner: W) -> Self {
        Counting { inner, count: 0 }
    }

    /// The bytes written so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The writer.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.inner.write_all(buf)?;
        self.count += buf.len() as u64;
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes the outer tar member by member.
pub struct OuterTar<W: Write> {
    out: Counting<W>,
    mtime: u64,
    header: Vec<u8>,
}

impl<W: Write> OuterTar<W> {
    /// Starts an archive whose members all get modification time `mtime`.
    pub fn new(out: W, mtime: u64) -> Self {
        OuterTar {
            out: Counting {
                inner: out,
                count: 0,
            },
            mtime,
            header: Vec::with_capacity(4 * BLOCK as usize),
        }
    }

    fn entry(&self, name: &str, kind: EntryKind, mode: u32) -> Entry {
        Entry {
            name: name.as_bytes().to_vec(),
            kind,
            mode,
            owner: Owner::root(),
            mtime: self.mtime,
        }
    }

    fn header(&mut self, entry: &Entry) -> Result<()> {
        self.header.clear();
        encode_header(entry, &mut self.header);
        self.out.write_all(&self.header).map_err(Error::Write)
    }

    fn pad(&mut self, size: u64) -> Result<()> {
        let zeros = (pad_to_block(size) - size) as usize;
        self.out
            .write_all(&[0u8; BLOCK as usize][..zeros])
            .map_err(Error::Write)
    }

    /// A directory member (`name` ends in `/`).
    pub fn dir(&mut self, name: &str) -> Result<()> {
        let entry = self.entry(name, EntryKind::Directory, DIR_MODE);
        self.header(&entry)
    }

    /// A file member held in memory.
    pub fn file(&mut self, name: &str, data: &[u8]) -> Result<()> {
        self.stream(name, data.len() as u64, |out| {
            out.write_all(data).map_err(Error::Write)
        })
    }

    /// A file member of `size` bytes written by `fill` into the archive stream; `fill` must
    /// write exactly `size` bytes.
    pub fn stream<T>(
        &mut self,
        name: &str,
        size: u64,
        fill: impl FnOnce(&mut Counting<W>) -> Result<T>,
    ) -> Result<T> {
        let entry = self.entry(
            name,
            EntryKind::File {
                source: std::path::PathBuf::new(),
                size,
            },
            FILE_MODE,
        );
        self.header(&entry)?;
        let start = self.out.count;
        let value = fill(&mut self.out)?;
        let written = self.out.count - start;
        if written != size {
            return Err(Error::LayerSize {
                name: name.to_owned(),
                planned: size,
                written,
            });
        }
        self.pad(size)?;
        Ok(value)
    }

    /// Ends the archive and returns the destination, unflushed: flushing a compressor in
    /// the middle of its stream would change its bytes, so the caller finishes it.
    pub fn finish(mut self) -> Result<W> {
        let end = archive_size(self.out.count) - self.out.count;
        self.out
            .write_all(&vec![0u8; end as usize])
            .map_err(Error::Write)?;
        Ok(self.out.inner)
    }
}
