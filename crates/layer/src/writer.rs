//! Streams planned entries into a tar, hashing as it writes.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

use crate::entry::{Entry, EntryKind};
use crate::error::{Error, Result};
use crate::header::{self, BLOCK};

/// Size of the buffer used to copy file contents.
const CHUNK: usize = 256 * 1024;

/// What a finished layer is known by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerDigest {
    /// SHA-256 of the whole tar stream: the layer's `diff_id` without the `sha256:` prefix.
    pub diff_id: [u8; 32],
    /// moby's tarsum v1 of the stream (`tarsum.v1+sha256:<hex>`).
    pub tarsum: String,
    /// Length of the stream in bytes.
    pub size: u64,
}

impl LayerDigest {
    /// The diff id in the form image configs use: `sha256:<hex>`.
    pub fn diff_id_string(&self) -> String {
        format!("sha256:{}", hex(&self.diff_id))
    }
}

/// Lower-case hex of some bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Chunks in flight between the writer and its tarsum thread: bounds the memory used.
const IN_FLIGHT: usize = 8;

/// What the writer tells its tarsum thread.
enum Tarsum {
    /// A new entry, its header fields already hashed.
    Begin(Sha256),
    /// Content bytes of the current entry.
    Data(Chunk),
    /// The current entry is complete.
    End,
}

/// A piece of the stream, shared by the threads that hash it.
type Chunk = Arc<Vec<u8>>;

/// Hashes entries for the tarsum on its own thread, so that it overlaps with the stream's
/// SHA-256, compression and writing: each digest costs as much as reading the files.
struct TarsumThread {
    tx: SyncSender<Tarsum>,
    /// Buffers the thread is done with, for reuse: fresh 256 KiB buffers cost a page fault
    /// per page.
    spare: Receiver<Vec<u8>>,
    handle: JoinHandle<Vec<String>>,
}

impl TarsumThread {
    fn start() -> Self {
        let (tx, rx) = sync_channel::<Tarsum>(IN_FLIGHT);
        let (back, spare) = sync_channel::<Vec<u8>>(IN_FLIGHT + 2);
        let handle = std::thread::Builder::new()
            .name("tarsum".into())
            .spawn(move || {
                let mut sums = Vec::new();
                let mut current: Option<Sha256> = None;
                for msg in rx {
                    match msg {
                        Tarsum::Begin(h) => current = Some(h),
                        Tarsum::Data(chunk) => {
                            if let Some(h) = current.as_mut() {
                                h.update(chunk.as_slice());
                            }
                            if let Ok(buf) = Arc::try_unwrap(chunk) {
                                let _ = back.try_send(buf);
                            }
                        }
                        Tarsum::End => {
                            if let Some(h) = current.take() {
                                sums.push(hex(&h.finalize()));
                            }
                        }
                    }
                }
                sums
            })
            .expect("spawning a thread only fails when the system is out of resources");
        TarsumThread { tx, spare, handle }
    }

    /// A buffer of `CHUNK` bytes for the next chunk: a returned one, or a new one.
    fn buffer(&self) -> Vec<u8> {
        let mut buf = self.spare.try_recv().unwrap_or_default();
        buf.resize(CHUNK, 0);
        buf
    }

    fn send(&self, msg: Tarsum) {
        // The thread only stops when the sender is dropped, so sending cannot fail.
        let _ = self.tx.send(msg);
    }

    fn finish(self) -> Vec<String> {
        drop(self.tx);
        self.handle
            .join()
            .expect("the tarsum thread does not panic")
    }
}

/// Writes a layer tar from planned entries, computing its diff id and tarsum on the way.
///
/// Generic over the destination, as tar-rs's `Builder` is; [`LayerWriter::finish`] hands it back.
/// The tarsum is computed on a second thread; the output does not depend on it.
pub struct LayerWriter<W: Write> {
    out: W,
    stream: Sha256,
    written: u64,
    tarsum: TarsumThread,
    header: Vec<u8>,
    cancel: Option<Arc<AtomicBool>>,
}

impl<W: Write> LayerWriter<W> {
    /// A writer that streams into `out`.
    pub fn new(out: W) -> Self {
        LayerWriter {
            out,
            stream: Sha256::new(),
            written: 0,
            tarsum: TarsumThread::start(),
            header: Vec::with_capacity(4 * BLOCK as usize),
            cancel: None,
        }
    }

    /// Makes the writer stop with [`Error::Interrupted`] as soon as `flag` is set.
    pub fn cancel_on(&mut self, flag: Arc<AtomicBool>) -> &mut Self {
        self.cancel = Some(flag);
        self
    }

    fn check_cancel(&self) -> Result<()> {
        match &self.cancel {
            Some(flag) if flag.load(Ordering::Relaxed) => Err(Error::Interrupted),
            _ => Ok(()),
        }
    }

    fn emit(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream.update(bytes);
        self.out.write_all(bytes).map_err(Error::Write)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self, content: u64) -> Result<()> {
        let zeros = (header::pad_to_block(content) - content) as usize;
        if zeros > 0 {
            self.emit(&[0u8; BLOCK as usize][..zeros])?;
        }
        Ok(())
    }

    /// Writes every entry of `entries`, in order.
    pub fn append_all<'a>(&mut self, entries: impl IntoIterator<Item = &'a Entry>) -> Result<()> {
        for entry in entries {
            self.append(entry)?;
        }
        Ok(())
    }

    /// Writes one entry: its headers, then its content read from the source.
    pub fn append(&mut self, entry: &Entry) -> Result<()> {
        self.check_cancel()?;
        let mut header = std::mem::take(&mut self.header);
        header.clear();
        header::encode(entry, &mut header);
        let emitted = self.emit(&header);
        self.header = header;
        emitted?;

        let mut sum = tarsum_header(entry);
        match &entry.kind {
            EntryKind::File { source, size } => {
                self.tarsum.send(Tarsum::Begin(sum));
                let copied = self.copy_file(source, *size);
                self.tarsum.send(Tarsum::End);
                copied?;
                self.pad(*size)?;
            }
            EntryKind::Data(data) => {
                sum.update(data);
                self.tarsum.send(Tarsum::Begin(sum));
                self.tarsum.send(Tarsum::End);
                self.emit(data)?;
                self.pad(data.len() as u64)?;
            }
            _ => {
                self.tarsum.send(Tarsum::Begin(sum));
                self.tarsum.send(Tarsum::End);
            }
        }
        Ok(())
    }

    /// Streams exactly `size` bytes of `source`; a file that is shorter or longer than
    /// planned is an error, never a corrupt layer.
    fn copy_file(&mut self, source: &std::path::Path, size: u64) -> Result<()> {
        let mut file = std::fs::File::open(source).map_err(|e| Error::io(source, e))?;
        let mut left = size;
        while left > 0 {
            self.check_cancel()?;
            let want = usize::try_from(left).map_or(CHUNK, |l| l.min(CHUNK));
            let mut buf = self.tarsum.buffer();
            let n = read_some(&mut file, &mut buf[..want], source)?;
            buf.truncate(n);
            if n == 0 {
                return Err(Error::Changed {
                    path: source.to_owned(),
                    planned: size,
                    found: size - left,
                });
            }
            let chunk = Arc::new(buf);
            self.emit(&chunk)?;
            self.tarsum.send(Tarsum::Data(chunk));
            left -= n as u64;
        }
        let mut probe = [0u8; 1];
        if read_some(&mut file, &mut probe, source)? != 0 {
            let found = file.metadata().map_or(size + 1, |m| m.len());
            return Err(Error::Changed {
                path: source.to_owned(),
                planned: size,
                found: found.max(size + 1),
            });
        }
        Ok(())
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Ends the archive (two zero blocks, then zeros up to a whole 10 240-byte record) and
    /// returns the destination with the layer's digests.
    pub fn finish(mut self) -> Result<(W, LayerDigest)> {
        let end = header::archive_size(self.written) - self.written;
        let zeros = vec![0u8; end as usize];
        self.emit(&zeros)?;
        self.out.flush().map_err(Error::Write)?;
        let mut entry_sums = self.tarsum.finish();
        entry_sums.sort_unstable();
        let mut total = Sha256::new();
        for s in &entry_sums {
            total.update(s.as_bytes());
        }
        let digest = LayerDigest {
            diff_id: self.stream.finalize().into(),
            tarsum: format!("tarsum.v1+sha256:{}", hex(&total.finalize())),
            size: self.written,
        };
        Ok((self.out, digest))
    }
}

fn read_some(file: &mut std::fs::File, buf: &mut [u8], path: &std::path::Path) -> Result<usize> {
    loop {
        match file.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
}

/// The header part of an entry's tarsum v1: `key` + `value` for name, mode, uid, gid, size,
/// typeflag, linkname, uname, gname, devmajor and devminor (no mtime; uname and gname with
/// empty values), as moby hashes them.
fn tarsum_header(entry: &Entry) -> Sha256 {
    let (major, minor) = match entry.kind {
        EntryKind::CharDevice { major, minor } | EntryKind::BlockDevice { major, minor } => {
            (major, minor)
        }
        _ => (0, 0),
    };
    let link: &[u8] = match &entry.kind {
        EntryKind::Symlink(target) => target,
        _ => b"",
    };
    let mut h = Sha256::new();
    h.update(b"name");
    h.update(&entry.name);
    h.update(
        format!(
            "mode{}uid{}gid{}size{}typeflag{}",
            entry.mode & 0o7777,
            entry.owner.uid,
            entry.owner.gid,
            entry.kind.content_size(),
            char::from(entry.kind.typeflag())
        )
        .as_bytes(),
    );
    h.update(b"linkname");
    h.update(link);
    // moby hashes `uname` and `gname` with empty values, "to be compatible with versions
    // before go 1.10"; nixpkgs' tarsum tool is built from that code.
    h.update(b"unamegname");
    h.update(format!("devmajor{major}devminor{minor}").as_bytes());
    h
}
