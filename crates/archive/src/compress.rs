//! Compression, as buildImage's `compressor` argument selects: of the whole archive
//! ([`Compressed`]) and of each layer of an image stored as blobs.
//!
//! Both compressors cut the stream into blocks at fixed offsets and compress every block on
//! its own, on a pool of [`Workers`] that several streams can share: a gzip stream is a
//! series of gzip members of 1 MiB of input each (deflated by libdeflate at level 6), a zstd
//! stream a series of frames of 8 MiB each (level 3, with checksums). Every decoder reads a
//! series of members or frames as one stream (gzip, pigz, Go's `compress/gzip` and
//! `klauspost/compress`, zstd, flate2's `MultiGzDecoder`).
//!
//! # Determinism
//!
//! A block's bytes depend on its input alone, and blocks are cut at fixed offsets, so the
//! compressed bytes are the same for any number of workers (1 or more) and any timing.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};

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

/// A pool of compression workers. Cloning it shares the pool: the layers of one image are
/// compressed on one pool, so that several small layers are compressed at once and a large
/// one spreads over every worker.
#[derive(Clone)]
pub struct Workers(Arc<rayon::ThreadPool>);

impl Workers {
    /// A pool of `threads` workers (at least one).
    pub fn new(threads: u32) -> io::Result<Self> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1) as usize)
            .thread_name(|i| format!("compress-{i}"))
            .build()
            .map_err(io::Error::other)?;
        Ok(Workers(Arc::new(pool)))
    }

    /// How many workers the pool has.
    pub fn count(&self) -> usize {
        self.0.current_num_threads()
    }
}

/// A writer that compresses into `W`.
pub enum Compressed<W: Write> {
    /// No compression.
    Plain(W),
    /// gzip or zstd, compressed in blocks on a pool of workers.
    Blocks(Blocks<W>),
}

impl<W: Write> Compressed<W> {
    /// Wraps `out` in the compressor, with a pool of its own of `threads` workers; the
    /// output is the same for any value of 1 or more.
    pub fn new(out: W, compressor: Compressor, threads: u32) -> io::Result<Self> {
        Ok(match compressor {
            Compressor::None => Compressed::Plain(out),
            _ => Compressed::Blocks(Blocks::new(out, compressor, &Workers::new(threads)?)),
        })
    }

    /// Wraps `out` in the compressor, compressing on `workers`.
    pub fn with_workers(out: W, compressor: Compressor, workers: &Workers) -> Self {
        match compressor {
            Compressor::None => Compressed::Plain(out),
            _ => Compressed::Blocks(Blocks::new(out, compressor, workers)),
        }
    }

    /// Ends the compressed stream and returns the destination.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Compressed::Plain(w) => Ok(w),
            Compressed::Blocks(b) => b.finish(),
        }
    }
}

impl<W: Write> Write for Compressed<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressed::Plain(w) => w.write(buf),
            Compressed::Blocks(w) => w.write(buf),
        }
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Compressed::Plain(w) => w.write_all(buf),
            Compressed::Blocks(w) => w.write_all(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressed::Plain(w) => w.flush(),
            Compressed::Blocks(w) => w.flush(),
        }
    }
}

/// Input bytes per gzip member. pigz's blocks are 128 KiB with the previous 32 KiB as
/// dictionary; libdeflate takes no dictionary, and at 1 MiB the members without one are
/// still smaller than pigz's output (0.4 % on the small benchmark corpus).
const GZ_BLOCK: usize = 1 << 20;
/// The gzip level, as pigz's and gzip's default.
const GZ_LEVEL: i32 = 6;
/// Input bytes per zstd frame. Frames do not see each other's data: at 4 MiB the output
/// was 1.3 % larger than `zstd -3 -T2`'s on the small benchmark corpus, at 8 MiB 0.8 %.
const ZSTD_BLOCK: usize = 8 << 20;
/// The zstd level, as the zstd command's default.
const ZSTD_LEVEL: i32 = 3;

/// Bytes per write of a compressed block into the destination. One write of a whole
/// block (3 MiB of zstd output) made the kernel copy it at about 0.6 GB/s, 85 ms of CPU
/// for the small benchmark corpus; in pieces that go through the destination's own buffer
/// the same bytes took 6 ms.
const WRITE_CHUNK: usize = 128 << 10;

/// The block size of a compressor that compresses.
fn block_size(compressor: Compressor) -> usize {
    match compressor {
        Compressor::Zstd => ZSTD_BLOCK,
        _ => GZ_BLOCK,
    }
}

/// A compressed stream cut into blocks at fixed offsets, each compressed on a worker and
/// written out in order (see the module's documentation).
pub struct Blocks<W: Write> {
    out: W,
    compressor: Compressor,
    block: Vec<u8>,
    size: usize,
    pending: Pending,
    /// Blocks submitted and not yet written out: bounds memory.
    max_pending: usize,
    /// Input buffers back from the workers, for the next blocks: a fresh 8 MiB buffer
    /// costs its pages again.
    spare: Vec<Vec<u8>>,
    /// Whether a block was submitted: an empty stream is still one (empty) member or frame.
    started: bool,
    /// The bytes still to come, when the caller knows them: buffers are made to fit.
    expected: Option<u64>,
    workers: Workers,
}

impl<W: Write> Blocks<W> {
    /// A stream into `out` compressed by `compressor` (gz or zstd) on `workers`.
    pub fn new(out: W, compressor: Compressor, workers: &Workers) -> Self {
        assert!(
            compressor != Compressor::None,
            "blocks of nothing to compress"
        );
        let size = block_size(compressor);
        // gzip's blocks are small: two per worker keep every worker busy. zstd's are 8 MiB:
        // one per worker (and the one being filled) keeps memory under 64 MiB.
        let max_pending = match compressor {
            Compressor::Zstd => workers.count(),
            _ => 2 * workers.count(),
        };
        Blocks {
            out,
            compressor,
            block: Vec::new(),
            size,
            pending: Pending::default(),
            max_pending,
            spare: Vec::new(),
            started: false,
            expected: None,
            workers: workers.clone(),
        }
    }

    /// Lets any number of blocks wait, for a stream of `len` bytes (small, and bounded by
    /// the caller) that is finished with [`Blocks::into_pending`]: its buffers are no
    /// larger than its input.
    #[must_use]
    pub fn unbounded(mut self, len: u64) -> Self {
        self.max_pending = usize::MAX;
        self.expected = Some(len);
        self
    }

    /// Hands the current block to a worker.
    fn submit(&mut self) -> io::Result<()> {
        // The next block's buffer is taken when its first byte comes, after the wait
        // below: one buffer fewer is alive at once.
        let mut input = std::mem::take(&mut self.block);
        self.started = true;
        let (tx, rx) = sync_channel(1);
        let compressor = self.compressor;
        self.workers.0.spawn(move || {
            let out = compress_block(compressor, &input);
            input.clear();
            let _ = tx.send(out.map(|out| (out, input)));
        });
        self.pending.0.push_back(rx);
        while self.pending.0.len() > self.max_pending {
            if let Some(input) = self.pending.write_oldest(&mut self.out)? {
                self.spare.push(input);
            }
        }
        Ok(())
    }

    /// Submits the last block (an empty one for an empty stream).
    fn submit_last(&mut self) -> io::Result<()> {
        if !self.block.is_empty() || !self.started {
            self.submit()?;
        }
        Ok(())
    }

    /// Ends the stream and returns the destination once every block is written.
    pub fn finish(mut self) -> io::Result<W> {
        self.submit_last()?;
        self.pending.write_to(&mut self.out)?;
        Ok(self.out)
    }

    /// Ends the stream without waiting for the blocks still being compressed: returns the
    /// destination (holding what was written so far) and those blocks, to be written
    /// after it with [`Pending::write_to`].
    pub fn into_pending(mut self) -> io::Result<(W, Pending)> {
        self.submit_last()?;
        Ok((self.out, self.pending))
    }
}

impl<W: Write> Write for Blocks<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.block.capacity() == 0 {
            self.block = self.spare.pop().unwrap_or_default();
            let fits = self
                .expected
                .map_or(self.size, |left| self.size.min(left.max(1) as usize));
            self.block.reserve_exact(fits);
        }
        let n = buf.len().min(self.size - self.block.len());
        self.block.extend_from_slice(&buf[..n]);
        if let Some(left) = &mut self.expected {
            *left = left.saturating_sub(n as u64);
        }
        if self.block.len() == self.size {
            self.submit()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // A flush must not cut a block early (that would change the bytes): nothing to do
        // until the stream is finished.
        Ok(())
    }
}

/// A compressed block, and its input buffer (emptied) for reuse.
type Done = io::Result<(Vec<u8>, Vec<u8>)>;

/// Compressed blocks of a stream not yet written out, oldest first.
#[derive(Default)]
pub struct Pending(VecDeque<Receiver<Done>>);

impl Pending {
    /// Waits for the oldest block and writes it; returns its input buffer.
    fn write_oldest(&mut self, out: &mut impl Write) -> io::Result<Option<Vec<u8>>> {
        let Some(rx) = self.0.pop_front() else {
            return Ok(None);
        };
        let (piece, input) = rx
            .recv()
            .map_err(|_| io::Error::other("a compression worker stopped"))??;
        for chunk in piece.chunks(WRITE_CHUNK) {
            out.write_all(chunk)?;
        }
        Ok(Some(input))
    }

    /// Waits for each block in turn and writes it into `out`.
    pub fn write_to(mut self, mut out: impl Write) -> io::Result<()> {
        while !self.0.is_empty() {
            self.write_oldest(&mut out)?;
        }
        Ok(())
    }
}

thread_local! {
    /// Each worker's compressors, kept between blocks: their tables are allocated once.
    /// A compressor's output does not depend on what it compressed before.
    static GZ: RefCell<Option<libdeflater::Compressor>> = const { RefCell::new(None) };
    static ZSTD: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
}

/// Compresses one block: a whole gzip member (no name, time 0) or a whole zstd frame (with
/// its content size and checksum).
fn compress_block(compressor: Compressor, input: &[u8]) -> io::Result<Vec<u8>> {
    match compressor {
        Compressor::Gz => GZ.with_borrow_mut(|slot| {
            let gz = slot.get_or_insert_with(|| {
                libdeflater::Compressor::new(
                    libdeflater::CompressionLvl::new(GZ_LEVEL).expect("6 is a valid level"),
                )
            });
            let mut out = vec![0; gz.gzip_compress_bound(input.len())];
            let n = gz
                .gzip_compress(input, &mut out)
                .map_err(io::Error::other)?;
            out.truncate(n);
            Ok(out)
        }),
        Compressor::Zstd => ZSTD.with_borrow_mut(|slot| {
            if slot.is_none() {
                let mut zstd = zstd::bulk::Compressor::new(ZSTD_LEVEL)?;
                zstd.include_checksum(true)?;
                *slot = Some(zstd);
            }
            let zstd = slot.as_mut().expect("made above");
            // Room for the worst case is allocated; what the frame does not use is given
            // back while it waits to be written.
            let mut out = zstd.compress(input)?;
            out.shrink_to_fit();
            Ok(out)
        }),
        Compressor::None => Ok(input.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    /// Input that compresses, but not to nothing: text with a counter, over several blocks.
    fn input(len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 64);
        let mut i = 0u64;
        while out.len() < len {
            out.extend_from_slice(format!("line {i} of {}\n", i * 7919 % 1000).as_bytes());
            i += 1;
        }
        out.truncate(len);
        out
    }

    fn compress(data: &[u8], compressor: Compressor, threads: u32) -> Vec<u8> {
        let mut c = Compressed::new(Vec::new(), compressor, threads).unwrap();
        // Writes of odd sizes: the blocks are cut at fixed offsets whatever the writes.
        for piece in data.chunks(100_003) {
            c.write_all(piece).unwrap();
        }
        c.finish().unwrap()
    }

    fn decompress(bytes: &[u8], compressor: Compressor) -> Vec<u8> {
        let mut out = Vec::new();
        match compressor {
            Compressor::Gz => {
                flate2::read::MultiGzDecoder::new(bytes)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Compressor::Zstd => {
                zstd::stream::read::Decoder::new(bytes)
                    .unwrap()
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Compressor::None => out.extend_from_slice(bytes),
        }
        out
    }

    #[test]
    fn the_bytes_are_the_same_for_1_2_and_4_workers() {
        let data = input(ZSTD_BLOCK * 2 + 12_345);
        for compressor in [Compressor::Gz, Compressor::Zstd] {
            let one = compress(&data, compressor, 1);
            assert_eq!(compress(&data, compressor, 2), one, "{compressor:?}");
            assert_eq!(compress(&data, compressor, 4), one, "{compressor:?}");
            assert_eq!(decompress(&one, compressor), data, "{compressor:?}");
        }
    }

    #[test]
    fn an_empty_stream_is_a_valid_empty_member_or_frame() {
        for compressor in [Compressor::Gz, Compressor::Zstd] {
            let bytes = compress(&[], compressor, 2);
            assert!(!bytes.is_empty());
            assert!(decompress(&bytes, compressor).is_empty(), "{compressor:?}");
        }
    }

    #[test]
    fn streams_sharing_workers_give_the_bytes_of_streams_alone() {
        let data = input(3 * GZ_BLOCK + 7);
        for compressor in [Compressor::Gz, Compressor::Zstd] {
            let alone = compress(&data, compressor, 1);
            let workers = Workers::new(2).unwrap();
            let mut streams: Vec<_> = (0..3)
                .map(|_| Blocks::new(Vec::new(), compressor, &workers).unbounded(data.len() as u64))
                .collect();
            for piece in data.chunks(65_536) {
                for s in &mut streams {
                    s.write_all(piece).unwrap();
                }
            }
            for s in streams {
                let (mut out, pending) = s.into_pending().unwrap();
                pending.write_to(&mut out).unwrap();
                assert_eq!(out, alone, "{compressor:?}");
            }
        }
    }
}
