//! Compression of the whole archive, as buildImage's `compressor` argument selects.

use std::io::{self, Write};

use flate2::{Compression, GzBuilder, write::GzEncoder};

/// The `compressor` of a buildImage spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compressor {
    /// A plain tar.
    None,
    /// gzip, level 6 (the default).
    Gz,
    /// zstd, level 3.
    Zstd,
}

/// A writer that compresses into `W`.
pub enum Compressed<W: Write> {
    /// No compression.
    Plain(W),
    /// gzip.
    Gz(GzEncoder<W>),
    /// zstd.
    Zstd(zstd::Encoder<'static, W>),
}

impl<W: Write> Compressed<W> {
    /// Wraps `out` in the compressor. `threads` is the number of zstd workers; the output is
    /// the same for any value of 1 or more.
    pub fn new(out: W, compressor: Compressor, threads: u32) -> io::Result<Self> {
        Ok(match compressor {
            Compressor::None => Compressed::Plain(out),
            // No file name and a zero time stamp, as `pigz -n` and `gzip -n` write.
            Compressor::Gz => {
                Compressed::Gz(GzBuilder::new().mtime(0).write(out, Compression::new(6)))
            }
            Compressor::Zstd => {
                let mut enc = zstd::Encoder::new(out, 3)?;
                enc.include_checksum(true)?;
                // zstd's output depends on whether workers are used at all, not on how many.
                enc.multithread(threads.max(1))?;
                Compressed::Zstd(enc)
            }
        })
    }

    /// Ends the compressed stream and returns the destination.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Compressed::Plain(w) => Ok(w),
            Compressed::Gz(enc) => enc.finish(),
            Compressed::Zstd(enc) => enc.finish(),
        }
    }
}

impl<W: Write> Write for Compressed<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressed::Plain(w) => w.write(buf),
            Compressed::Gz(w) => w.write(buf),
            Compressed::Zstd(w) => w.write(buf),
        }
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Compressed::Plain(w) => w.write_all(buf),
            Compressed::Gz(w) => w.write_all(buf),
            Compressed::Zstd(w) => w.write_all(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressed::Plain(w) => w.flush(),
            Compressed::Gz(w) => w.flush(),
            Compressed::Zstd(w) => w.flush(),
        }
    }
}
