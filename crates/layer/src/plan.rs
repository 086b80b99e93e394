//! Plans of layers: the entries of a layer produced in order as often as needed, and what a
//! plan adds up to before a byte is written.

use sha2::{Digest, Sha256};

use crate::entry::{Entry, EntryKind};
use crate::error::Result;
use crate::header::{archive_size, encode as encode_header};

/// The planned entries of a layer, produced in order as often as the writer needs them:
/// once to plan (size and digest), once to write. A large store closure can so be listed
/// path by path instead of being held in memory whole.
pub trait LayerEntries {
    /// Calls `f` with every entry, in order.
    fn each(&self, f: &mut dyn FnMut(&Entry) -> Result<()>) -> Result<()>;

    /// How many leading entries the layer's tarsum covers: all of them (`None`) unless the
    /// layer has a part that nixpkgs appends after taking it, the store closure.
    fn checksummed(&self) -> Option<usize> {
        None
    }

    /// A digest that names the layer's bytes without listing it, for a layer that is a
    /// pure function of inputs that never change (the store paths of a store layer) and
    /// of how it is packed; `None` for a layer that must be read to be known.
    fn key(&self) -> Option<[u8; 32]> {
        None
    }
}

impl LayerEntries for [Entry] {
    fn each(&self, f: &mut dyn FnMut(&Entry) -> Result<()>) -> Result<()> {
        self.iter().try_for_each(f)
    }
}

impl LayerEntries for Vec<Entry> {
    fn each(&self, f: &mut dyn FnMut(&Entry) -> Result<()>) -> Result<()> {
        self.iter().try_for_each(f)
    }
}

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
    hasher: Sha256,
    header: Vec<u8>,
}

impl Plan {
    /// The plan of every entry of `layer`.
    pub fn of(layer: &dyn LayerEntries) -> Result<Plan> {
        let mut plan = Plan::default();
        layer.each(&mut |entry| {
            plan.add(entry);
            Ok(())
        })?;
        Ok(plan)
    }

    /// Counts one entry.
    pub fn add(&mut self, entry: &Entry) {
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
        self.hasher.clone().finalize().into()
    }
}
