//! Streams planned entries into a tar, hashing as it writes.
//!
//! The stream is assembled in batches of [`BATCH`] bytes (headers, file contents read
//! straight into the batch, padding). Each full batch is shared with two hashing threads —
//! one for the SHA-256 of the stream (the diff id), one for the per-entry tarsum — while the
//! calling thread writes it out and fills the next one. Batching many small files into one
//! hand-off keeps the threads busy instead of waking each other per file.

use std::io::{self, Read, Write};
use std::ops::Range;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use data_encoding::HEXLOWER;
use sha2::{Digest, Sha256};

use crate::cancel::Cancel;
use crate::entry::{Entry, EntryKind};
use crate::error::{Error, Result};
use crate::header::{self, BLOCK};

/// Bytes of the stream per batch: large enough that hand-offs are rare, small enough that
/// the batches in flight stay a few MiB.
const BATCH: usize = 1 << 20;

/// Batches queued for each hashing thread: bounds the memory used.
const IN_FLIGHT: usize = 3;

/// What a finished layer is known by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerDigest {
    /// SHA-256 of the whole tar stream: the layer's `diff_id` without the `sha256:` prefix.
    pub diff_id: [u8; 32],
    /// moby's tarsum v1 (`tarsum.v1+sha256:<hex>`) of the stream's entries, or of those
    /// before [`LayerWriter::end_checksum`] when it was called; `None` from a writer made
    /// with [`LayerWriter::without_tarsum`].
    pub tarsum: Option<String>,
    /// Length of the stream in bytes.
    pub size: u64,
}

impl LayerDigest {
    /// The diff id in the form image configs use: `sha256:<hex>`.
    pub fn diff_id_string(&self) -> String {
        format!("sha256:{}", HEXLOWER.encode(&self.diff_id))
    }
}

/// What the tarsum thread does with a batch, in order.
enum Op {
    /// A new entry starts, its header fields already hashed.
    Begin(Box<Sha256>),
    /// Content bytes of the current entry, at this range of the batch.
    Content(Range<usize>),
    /// The current entry is complete.
    End,
}

/// A piece of the stream and the tarsum's view of it.
struct Batch {
    /// Always [`BATCH`] bytes long (zeroed once, when allocated); `used` of them are stream.
    bytes: Vec<u8>,
    used: usize,
    ops: Vec<Op>,
}

impl Batch {
    fn new() -> Self {
        Batch {
            bytes: vec![0; BATCH],
            used: 0,
            ops: Vec::new(),
        }
    }

    fn stream(&self) -> &[u8] {
        &self.bytes[..self.used]
    }

    fn room(&self) -> usize {
        BATCH - self.used
    }
}

/// Hands a batch back for reuse once its last holder is done with it.
fn recycle(batch: Arc<Batch>, spare: &SyncSender<Batch>) {
    if let Some(mut batch) = Arc::into_inner(batch) {
        batch.used = 0;
        batch.ops.clear();
        // A full queue means enough spares already exist: this one is freed.
        let _ = spare.try_send(batch);
    }
}

/// What a hashing thread does with the batches, in order, and what it yields at the end.
trait Consumer: Send + 'static {
    type Output: Send + 'static;
    fn consume(&mut self, batch: &Batch);
    fn finish(self) -> Self::Output;
}

/// The diff id: SHA-256 of every byte of the stream.
struct StreamHash(Sha256);

impl Consumer for StreamHash {
    type Output = [u8; 32];
    fn consume(&mut self, batch: &Batch) {
        self.0.update(batch.stream());
    }
    fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

/// The tarsum: one SHA-256 per entry (header fields, then content), as hex.
#[derive(Default)]
struct EntryHashes {
    sums: Vec<String>,
    current: Option<Box<Sha256>>,
}

impl Consumer for EntryHashes {
    type Output = Vec<String>;
    fn consume(&mut self, batch: &Batch) {
        for op in &batch.ops {
            match op {
                Op::Begin(h) => self.current = Some(h.clone()),
                Op::Content(range) => {
                    if let Some(h) = self.current.as_mut() {
                        h.update(&batch.bytes[range.clone()]);
                    }
                }
                Op::End => {
                    if let Some(h) = self.current.take() {
                        self.sums.push(HEXLOWER.encode(&h.finalize()));
                    }
                }
            }
        }
    }
    fn finish(self) -> Vec<String> {
        self.sums
    }
}

/// A thread that runs a [`Consumer`] over every batch it is sent.
struct Worker<T> {
    tx: SyncSender<Arc<Batch>>,
    handle: JoinHandle<T>,
}

impl<T: Send + 'static> Worker<T> {
    fn start<C: Consumer<Output = T>>(
        name: &str,
        spare: SyncSender<Batch>,
        mut consumer: C,
    ) -> Self {
        let (tx, rx) = sync_channel::<Arc<Batch>>(IN_FLIGHT);
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                for batch in rx {
                    consumer.consume(&batch);
                    recycle(batch, &spare);
                }
                consumer.finish()
            })
            .expect("spawning a thread only fails when the system is out of resources");
        Worker { tx, handle }
    }

    fn send(&self, batch: Arc<Batch>) {
        // The thread only stops when the sender is dropped, so sending cannot fail.
        let _ = self.tx.send(batch);
    }

    fn finish(self) -> T {
        drop(self.tx);
        self.handle.join().expect("a hashing thread does not panic")
    }
}

/// Writes a layer tar from planned entries, computing its diff id and tarsum on the way.
///
/// Generic over the destination, as tar-rs's `Builder` is; [`LayerWriter::finish`] hands it back.
/// The destination is written on the calling thread, in batches of 1 MiB; both digests are
/// computed on threads of their own. The output does not depend on them.
pub struct LayerWriter<W: Write> {
    out: W,
    written: u64,
    batch: Batch,
    spare: Receiver<Batch>,
    back: SyncSender<Batch>,
    diff_id: Worker<[u8; 32]>,
    /// The tarsum's thread, unless the destination has no use for a tarsum.
    tarsum: Option<Worker<Vec<String>>>,
    header: Vec<u8>,
    /// Whether the entries appended now count in the tarsum.
    checksummed: bool,
    cancel: Option<Cancel>,
}

impl<W: Write> LayerWriter<W> {
    /// A writer that streams into `out` and computes the diff id and the tarsum.
    pub fn new(out: W) -> Self {
        Self::with_tarsum(out, true)
    }

    /// A writer that computes the diff id only: a layer needs a tarsum only for the legacy
    /// `json` of the docker-archive that `buildImage` writes, and it costs a second
    /// SHA-256 over every byte.
    pub fn without_tarsum(out: W) -> Self {
        Self::with_tarsum(out, false)
    }

    fn with_tarsum(out: W, tarsum: bool) -> Self {
        // Room for about every batch that can be in flight to come back (queued for or held
        // by either thread, being written); a spare that finds the queue full is freed.
        let (back, spare) = sync_channel::<Batch>(2 * IN_FLIGHT + 2);
        LayerWriter {
            out,
            written: 0,
            batch: Batch::new(),
            spare,
            diff_id: Worker::start("diff-id", back.clone(), StreamHash(Sha256::new())),
            tarsum: tarsum.then(|| Worker::start("tarsum", back.clone(), EntryHashes::default())),
            back,
            header: Vec::with_capacity(4 * BLOCK as usize),
            checksummed: tarsum,
            cancel: None,
        }
    }

    /// Leaves the entries appended from now on out of the tarsum. nixpkgs takes the
    /// layer's `checksum` before it appends the store closure; a writer told where the
    /// closure starts gives the same value, and does not hash the closure twice.
    pub fn end_checksum(&mut self) -> &mut Self {
        self.checksummed = false;
        self
    }

    /// Makes the writer stop with [`Error::Interrupted`] as soon as `cancel` is set.
    pub fn cancel_on(&mut self, cancel: Cancel) -> &mut Self {
        self.cancel = Some(cancel);
        self
    }

    fn check_cancel(&self) -> Result<()> {
        match &self.cancel {
            Some(cancel) => Ok(cancel.check()?),
            None => Ok(()),
        }
    }

    /// Hands the current batch to the hashing threads and writes it out.
    fn ship(&mut self) -> Result<()> {
        if self.batch.used == 0 && self.batch.ops.is_empty() {
            return Ok(());
        }
        let next = self.spare.try_recv().unwrap_or_else(|_| Batch::new());
        let batch = Arc::new(std::mem::replace(&mut self.batch, next));
        self.diff_id.send(Arc::clone(&batch));
        if let Some(tarsum) = &self.tarsum
            && !batch.ops.is_empty()
        {
            tarsum.send(Arc::clone(&batch));
        }
        let written = self.out.write_all(batch.stream()).map_err(Error::Write);
        recycle(batch, &self.back);
        written
    }

    /// Appends stream bytes that are not entry content (headers, padding, the end).
    fn emit(&mut self, mut bytes: &[u8]) -> Result<()> {
        while !bytes.is_empty() {
            if self.batch.room() == 0 {
                self.ship()?;
            }
            let n = bytes.len().min(self.batch.room());
            let at = self.batch.used;
            self.batch.bytes[at..at + n].copy_from_slice(&bytes[..n]);
            self.batch.used += n;
            self.written += n as u64;
            bytes = &bytes[n..];
        }
        Ok(())
    }

    /// Appends content bytes of the current entry: stream bytes the tarsum hashes too.
    fn emit_content(&mut self, bytes: &[u8]) -> Result<()> {
        let mut rest = bytes;
        while !rest.is_empty() {
            if self.batch.room() == 0 {
                self.ship()?;
            }
            let start = self.batch.used;
            let n = rest.len().min(self.batch.room());
            self.emit(&rest[..n])?;
            if self.checksummed {
                self.batch.ops.push(Op::Content(start..start + n));
            }
            rest = &rest[n..];
        }
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

        if self.checksummed {
            self.batch
                .ops
                .push(Op::Begin(Box::new(tarsum_header(entry))));
        }
        match &entry.kind {
            EntryKind::File { source, size } => {
                self.copy_file(source, *size)?;
                self.pad(*size)?;
            }
            EntryKind::Data(data) => {
                self.emit_content(data)?;
                self.pad(data.len() as u64)?;
            }
            _ => {}
        }
        if self.checksummed {
            self.batch.ops.push(Op::End);
        }
        Ok(())
    }

    /// Streams exactly `size` bytes of `source`, read straight into the batch; a file that
    /// is shorter or longer than planned is an error, never a corrupt layer.
    fn copy_file(&mut self, source: &std::path::Path, size: u64) -> Result<()> {
        let mut file = std::fs::File::open(source).map_err(|e| Error::io("open", source, e))?;
        let changed = |found: u64| Error::Changed {
            path: source.to_owned(),
            planned: size,
            found,
        };
        let mut left = size;
        // Whether a read already asked for more than was left and met the end of the file.
        let mut end_seen = false;
        while left > 0 {
            self.check_cancel()?;
            if self.batch.room() == 0 {
                self.ship()?;
            }
            let room = self.batch.room();
            // Ask for one byte more than planned when there is room: a read that returns
            // exactly what is left then also shows the file ends there (a regular file
            // reads short only at its end; should a file system read short elsewhere, the
            // layer still holds exactly the planned bytes, never a torn entry).
            let want = usize::try_from(left.saturating_add(1)).map_or(room, |l| l.min(room));
            let at = self.batch.used;
            let n = read_some(&mut file, &mut self.batch.bytes[at..at + want], source)?;
            if n == 0 {
                return Err(changed(size - left));
            }
            if n as u64 > left {
                let found = file.metadata().map_or(size + 1, |m| m.len());
                return Err(changed(found.max(size + 1)));
            }
            end_seen = n < want;
            if self.checksummed {
                self.batch.ops.push(Op::Content(at..at + n));
            }
            self.batch.used += n;
            self.written += n as u64;
            left -= n as u64;
        }
        if !end_seen {
            let mut probe = [0u8; 1];
            if read_some(&mut file, &mut probe, source)? != 0 {
                let found = file.metadata().map_or(size + 1, |m| m.len());
                return Err(changed(found.max(size + 1)));
            }
        }
        Ok(())
    }

    /// Ends the archive (two zero blocks, then zeros up to a whole 10 240-byte record) and
    /// returns the destination with the layer's digests.
    pub fn finish(mut self) -> Result<(W, LayerDigest)> {
        let end = header::archive_size(self.written) - self.written;
        let zeros = vec![0u8; end as usize];
        self.emit(&zeros)?;
        self.ship()?;
        self.out.flush().map_err(Error::Write)?;
        let diff_id = self.diff_id.finish();
        let tarsum = self.tarsum.map(|worker| {
            let mut entry_sums = worker.finish();
            entry_sums.sort_unstable();
            let mut total = Sha256::new();
            for s in &entry_sums {
                total.update(s.as_bytes());
            }
            format!("tarsum.v1+sha256:{}", HEXLOWER.encode(&total.finalize()))
        });
        let digest = LayerDigest {
            diff_id,
            tarsum,
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
            Err(e) => return Err(Error::io("read", path, e)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Owner;

    fn data(name: &str, bytes: Vec<u8>) -> Entry {
        Entry {
            name: name.as_bytes().to_vec(),
            kind: EntryKind::Data(bytes),
            mode: 0o644,
            owner: Owner::root(),
            mtime: 1,
        }
    }

    fn dir(name: &str) -> Entry {
        Entry {
            kind: EntryKind::Directory,
            mode: 0o755,
            ..data(name, Vec::new())
        }
    }

    fn pack(entries: &[Entry], checksummed: usize) -> (Vec<u8>, LayerDigest) {
        let mut writer = LayerWriter::new(Vec::new());
        for (i, entry) in entries.iter().enumerate() {
            if i == checksummed {
                writer.end_checksum();
            }
            writer.append(entry).unwrap();
        }
        writer.finish().unwrap()
    }

    /// The tarsum written out the slow way: one digest per entry, sorted, hashed.
    fn tarsum_of(entries: &[Entry]) -> String {
        let mut sums: Vec<String> = entries
            .iter()
            .map(|e| {
                let mut h = tarsum_header(e);
                if let EntryKind::Data(bytes) = &e.kind {
                    h.update(bytes);
                }
                HEXLOWER.encode(&h.finalize())
            })
            .collect();
        sums.sort();
        format!(
            "tarsum.v1+sha256:{}",
            HEXLOWER.encode(&Sha256::digest(sums.concat()))
        )
    }

    /// Contents that straddle batches: bigger than one, exactly one, and many small ones.
    fn entries() -> Vec<Entry> {
        let pattern = |len: usize, seed: u8| {
            (0..len)
                .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
                .collect()
        };
        let mut entries = vec![
            dir("./"),
            data("./big", pattern(2 * BATCH + BATCH / 2 + 7, 1)),
            data("./exact", pattern(BATCH, 2)),
        ];
        entries.extend((0..300).map(|i| data(&format!("./small{i:03}"), pattern(i * 97, 3))));
        entries.push(data("./tail", pattern(BATCH - 512, 4)));
        entries
    }

    #[test]
    fn digests_match_the_bytes_written_across_batches() {
        let entries = entries();
        let (out, digest) = pack(&entries, usize::MAX);
        assert_eq!(digest.size, out.len() as u64);
        assert_eq!(digest.diff_id, <[u8; 32]>::from(Sha256::digest(&out)));
        assert_eq!(digest.tarsum.unwrap(), tarsum_of(&entries));
        let planned: u64 = entries.iter().map(Entry::tar_size).sum();
        assert_eq!(out.len() as u64, header::archive_size(planned));
    }

    #[test]
    fn a_writer_without_tarsum_writes_the_same_stream() {
        let entries = entries();
        let (all, digest) = pack(&entries, usize::MAX);
        let mut writer = LayerWriter::without_tarsum(Vec::new());
        writer.append_all(&entries).unwrap();
        let (out, plain) = writer.finish().unwrap();
        assert_eq!(out, all);
        assert_eq!((plain.diff_id, plain.size), (digest.diff_id, digest.size));
        assert_eq!(plain.tarsum, None);
    }

    #[test]
    fn end_checksum_leaves_the_later_entries_out_of_the_tarsum_only() {
        let entries = entries();
        let (all, _) = pack(&entries, usize::MAX);
        let (out, digest) = pack(&entries, 2);
        assert_eq!(out, all, "the stream does not depend on the checksum");
        assert_eq!(digest.tarsum.unwrap(), tarsum_of(&entries[..2]));
        let (_, none) = pack(&entries, 0);
        assert_eq!(none.tarsum.unwrap(), tarsum_of(&[]));
    }
}
