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
//! The whiteout rules themselves live in [`overlay`], and [`read`] is the bounded tar reader
//! that everything reading untrusted layers uses.
//!
//! The crate also holds what every stage of a build shares: [`Cancel`], the flag that stops
//! long work on SIGINT or SIGTERM, and [`ScratchDir`], a temporary folder removed with
//! everything in it.
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

mod cancel;
mod entry;
mod error;
mod header;
pub mod overlay;
mod plan;
pub mod read;
pub mod stage;
mod stat;
mod tree;
mod walk;
mod writer;

pub use cancel::{Cancel, Interrupted};
pub use entry::{Entry, EntryKind, Owner};
pub use error::{Error, Result};
pub use header::{BLOCK, RECORD, archive_size, encode as encode_header, pad_to_block};
pub use plan::{LayerEntries, Plan, planned_size};
pub use stage::ScratchDir;
pub use tree::{
    CopyOptions, Dir, Node, Recorded, Recordings, Tree, UpperOptions, Warnings, resolve_host,
};
pub use walk::{for_each_by_path, for_each_in_tree};
pub use writer::{LayerDigest, LayerWriter};

/// Modification time of every entry when `SOURCE_DATE_EPOCH` is not set: 1980-01-01, the
/// stdenv default.
pub const DEFAULT_MTIME: u64 = 315_532_800;
