//! Deterministic layer tarballs from a planned file tree.
//!
//! A layer is built in two steps. First a [`Tree`] is planned: source directories are merged
//! into it with the semantics of `rsync -a` (and `-k` or `-K`), and it is flattened into a
//! sorted list of [`Entry`] values that say everything about each tar member (name, kind,
//! mode, owner, size, source) before a single byte is written. Then a [`LayerWriter`]
//! streams the entries into any [`std::io::Write`], hashing as it goes, and hands back the
//! destination with the layer's [`LayerDigest`] (diff id, tarsum, size).
//!
//! For `runAsRoot`, [`Tree::from_upper`] reads the overlay's upper folder after the script
//! ran: every node keeps its real owner ([`Tree::owners`]), deletions become OCI whiteouts
//! (`.wh.NAME`) and opaque folders get a `.wh..wh..opq` entry, written before their siblings.
//!
//! ```
//! use buildimage_layer::{CopyOptions, LayerWriter, Owner, Tree, Warnings};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let src = tempfile::tempdir()?;
//! std::fs::create_dir(src.path().join("bin"))?;
//! std::fs::write(src.path().join("bin/hello"), b"#!/bin/sh\necho hello\n")?;
//!
//! let mut tree = Tree::new();
//! tree.copy_from(src.path(), &CopyOptions::default(), &mut Warnings::default())?;
//! tree.make_root_writable();
//! let entries = tree.entries(&Owner::root(), 315_532_800);
//! let planned: u64 = buildimage_layer::archive_size(entries.iter().map(|e| e.tar_size()).sum());
//!
//! let mut writer = LayerWriter::new(Vec::new());
//! writer.append_all(&entries)?;
//! let (bytes, digest) = writer.finish()?;
//! assert_eq!(bytes.len() as u64, planned);
//! assert_eq!(digest.size, planned);
//! # Ok(())
//! # }
//! ```
//!
//! # Determinism
//!
//! The bytes depend only on the planned entries: directory listings are sorted by the raw
//! bytes of the names, every header is written in GNU tar 1.34's `--format=gnu` layout
//! (long names through `././@LongLink`, sizes and ids beyond the octal fields in base-256),
//! modification times, owners and names come from the plan, never from the files, and the
//! archive is padded to GNU tar's 10 240-byte records. The same tree created in another
//! order, with other times, under another umask, gives the same bytes.

mod entry;
mod error;
mod header;
pub mod stage;
mod tree;
mod writer;

pub use entry::{Entry, EntryKind, Owner};
pub use error::{Error, Result};
pub use header::{BLOCK, RECORD, archive_size, encode as encode_header, pad_to_block};
pub use tree::{
    CopyOptions, Dir, Node, OPAQUE_MARKER, Tree, UpperOptions, WHITEOUT_PREFIX, Warnings,
    for_each_by_path, resolve_host,
};
pub use writer::{LayerDigest, LayerWriter, hex};

/// Modification time of every entry when `SOURCE_DATE_EPOCH` is not set: 1980-01-01, the
/// stdenv default.
pub const DEFAULT_MTIME: u64 = 315_532_800;

/// The size of the tar stream that writing `entries` produces.
pub fn planned_size<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> u64 {
    archive_size(entries.into_iter().map(Entry::tar_size).sum())
}

/// What a plan adds up to, entry by entry: the layer's size ([`planned_size`]) and a
/// digest of every header field (names, kinds, modes, owners, sizes, link targets, device
/// numbers, times) and of the bytes of in-memory entries, but not of the contents of files,
/// which are only read when the layer is written.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    members: u64,
    hasher: sha2::Sha256,
    header: Vec<u8>,
}

impl Plan {
    /// Counts one entry.
    pub fn add(&mut self, entry: &Entry) {
        use sha2::Digest;
        self.members += entry.tar_size();
        self.header.clear();
        encode_header(entry, &mut self.header);
        self.hasher.update(&self.header);
        if let EntryKind::Data(data) = &entry.kind {
            self.hasher.update(data);
        }
    }

    /// The size of the tar stream of the entries counted so far.
    pub fn size(&self) -> u64 {
        archive_size(self.members)
    }

    /// The digest of the entries counted so far.
    pub fn digest(&self) -> [u8; 32] {
        use sha2::Digest;
        self.hasher.clone().finalize().into()
    }
}
