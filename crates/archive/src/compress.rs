//! Compression of the whole archive, as buildImage's `compressor` argument selects.

use std::io::{self, Write};

use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, sync_channel};

use flate2::{Compress, Compression, FlushCompress, Status};

/// The `compressor` of a buildImage spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compressor {
    /// `"none"`: a plain `.tar`.
    None,
    /// `"gz"`, the nixpkgs default: `.tar.gz`, level 6.
    #[default]
    Gz,
    /// `"zstd"`: `.tar.zst`, level 3.
    Zstd,
}

impl Compressor {
    /// The compressor a spec names (`"none"`, `"gz"`, `"zstd"`), if any.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "none" => Some(Self::None),
            "gz" => Some(Self::Gz),
            "zstd" => Some(Self::Zstd),
            _ => None,
        }
    }

    /// The spec's spelling: `"none"`, `"gz"` or `"zstd"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gz => "gz",
            Self::Zstd => "zstd",
        }
    }

    /// The suffix after `.tar`: `""`, `".gz"` or `".zst"`.
    pub fn extension(self) -> &'static str {
        match self {
            Self::None => "",
            Self::Gz => ".gz",
            Self::Zstd => ".zst",
        }
    }
}

/// A writer that compresses into `W`.
pub enum Compressed<W: Write> {
    /// No compression.
    Plain(W),
    /// gzip, compressed in parallel blocks.
    Gz(ParallelGz<W>),
    /// zstd.
    Zstd(zstd::Encoder<'static, W>),
}

impl<W: Write> Compressed<W> {
    /// Wraps `out` in the compressor. `threads` is the number of gzip or zstd workers; the
    /// output is the same for any value of 1 or more.
    pub fn new(out: W, compressor: Compressor, threads: u32) -> io::Result<Self> {
        Ok(match compressor {
            Compressor::None => Compressed::Plain(out),
            Compressor::Gz => Compressed::Gz(ParallelGz::new(out, threads)?),
            Compressor::Zstd => {
                let mut enc = zstd::Encoder::new(out, 3)?;
                enc.include_checksum(true)?;
                // zstd's output depends on whether workers are used at all, not on how many.
                enc.multithread(threads.max(1))?;
                // Jobs of 2 MiB instead of the default (8 MiB at level 3): memory stays small
                // (each worker holds a job and its window; 54 MiB peak on the large corpus
                // instead of 69 MiB with 4 MiB jobs) for up to about 1% in size.
                enc.set_parameter(zstd::stream::raw::CParameter::JobSize(ZSTD_JOB))?;
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

/// Input bytes per zstd job.
const ZSTD_JOB: u32 = 2 << 20;

/// Input bytes per deflate block. Blocks are cut at fixed offsets, so the output does not
/// depend on how many threads compress them.
const GZ_BLOCK: usize = 1 << 20;
/// Bytes of the previous block given to the next one as its dictionary (deflate's window).
const GZ_DICT: usize = 32 * 1024;
/// The gzip level, as pigz's and gzip's default.
const GZ_LEVEL: u32 = 6;

/// A gzip stream compressed in parallel, as pigz does: the input is cut into 1 MiB blocks,
/// each deflated on a worker with the previous block's last 32 KiB as its dictionary and
/// ended with a sync flush (the last with the final block), and the pieces are written in
/// order as one deflate stream behind a gzip header with no name and time 0.
///
/// The bytes depend only on the input, never on the number of workers or their timing.
pub struct ParallelGz<W: Write> {
    out: W,
    block: Vec<u8>,
    dict: Vec<u8>,
    crc: crc32fast::Hasher,
    len: u64,
    pending: VecDeque<Receiver<io::Result<Vec<u8>>>>,
    max_pending: usize,
    pool: rayon::ThreadPool,
}

impl<W: Write> ParallelGz<W> {
    /// Starts a stream into `out` with `threads` workers (at least one).
    pub fn new(mut out: W, threads: u32) -> io::Result<Self> {
        // ID1 ID2, deflate, no flags, mtime 0, XFL 0, OS 3 (Unix): what `gzip -n` writes
        // apart from XFL.
        out.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3])?;
        let threads = threads.max(1) as usize;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("gzip-{i}"))
            .build()
            .map_err(io::Error::other)?;
        Ok(ParallelGz {
            out,
            block: Vec::with_capacity(GZ_BLOCK),
            dict: Vec::new(),
            crc: crc32fast::Hasher::new(),
            len: 0,
            pending: VecDeque::new(),
            max_pending: 2 * threads,
            pool,
        })
    }

    /// Hands the current block to a worker.
    fn submit(&mut self, last: bool) -> io::Result<()> {
        let input = std::mem::replace(&mut self.block, Vec::with_capacity(GZ_BLOCK));
        let dict = std::mem::take(&mut self.dict);
        if !last {
            self.dict = input[input.len().saturating_sub(GZ_DICT)..].to_vec();
        }
        let (tx, rx) = sync_channel(1);
        self.pool.spawn(move || {
            let _ = tx.send(deflate_block(&input, &dict, last));
        });
        self.pending.push_back(rx);
        while self.pending.len() > self.max_pending {
            self.write_oldest()?;
        }
        Ok(())
    }

    fn write_oldest(&mut self) -> io::Result<()> {
        if let Some(rx) = self.pending.pop_front() {
            let piece = rx
                .recv()
                .map_err(|_| io::Error::other("a gzip worker stopped"))??;
            self.out.write_all(&piece)?;
        }
        Ok(())
    }

    /// Ends the stream (final block, CRC-32 and length) and returns the destination.
    pub fn finish(mut self) -> io::Result<W> {
        self.submit(true)?;
        while !self.pending.is_empty() {
            self.write_oldest()?;
        }
        let crc = std::mem::take(&mut self.crc).finalize();
        self.out.write_all(&crc.to_le_bytes())?;
        // ISIZE is the length modulo 2^32.
        self.out.write_all(&(self.len as u32).to_le_bytes())?;
        Ok(self.out)
    }
}

impl<W: Write> Write for ParallelGz<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(GZ_BLOCK - self.block.len());
        self.block.extend_from_slice(&buf[..n]);
        self.crc.update(&buf[..n]);
        self.len += n as u64;
        if self.block.len() == GZ_BLOCK {
            self.submit(false)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // A flush must not cut a block early (that would change the bytes): nothing to do
        // until the stream is finished.
        Ok(())
    }
}

/// Deflates one block: raw deflate at level 6 with `dict` as the preset window, ended with
/// a sync flush, or as the final block.
fn deflate_block(input: &[u8], dict: &[u8], last: bool) -> io::Result<Vec<u8>> {
    let mut z = Compress::new(Compression::new(GZ_LEVEL), false);
    if !dict.is_empty() {
        z.set_dictionary(dict).map_err(io::Error::other)?;
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut out = Vec::with_capacity(input.len() / 2 + 1024);
    loop {
        let consumed = usize::try_from(z.total_in()).unwrap_or(usize::MAX);
        let status = z
            .compress_vec(&input[consumed..], &mut out, flush)
            .map_err(io::Error::other)?;
        let done = usize::try_from(z.total_in()).unwrap_or(usize::MAX) == input.len();
        match status {
            Status::StreamEnd => break,
            Status::Ok | Status::BufError if done && !last && out.len() < out.capacity() => break,
            _ => out.reserve(out.capacity().max(64 * 1024)),
        }
    }
    Ok(out)
}
