//! The merged file system of a base image's layers, whiteouts applied.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;

use super::names::{clean, show};
use buildimage_layer::overlay::{self, Marker};
use buildimage_layer::read::{self as tarfile, FileSource, TarReader};

use crate::error::{Error, Result};

/// Mode of a folder that a layer implies (a member `a/b` without a member `a/`): Docker
/// creates such folders with 0755 when it applies the layer.
const IMPLIED_DIR_MODE: u32 = 0o755;

/// The type of a path in a [`BaseFs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A symbolic link.
    Symlink,
    /// A hard link to another member of its layer.
    HardLink,
    /// A device node or a fifo.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Node {
    kind: Kind,
    mode: u32,
}

/// The paths present in a base image once its layers are applied in order: what a
/// container made from it would see, for de-duplicating the new layer against it.
///
/// Paths are raw bytes, cleaned of a leading `./` or `/`, a trailing `/`, empty and `.`
/// components; nothing else is changed, so names with white space, quotes or newlines are
/// kept exactly. Whiteout files (`.wh.NAME`, `.wh..wh..opq`) are applied and never count
/// as paths. The root folder is always present and never counted.
#[derive(Debug, Clone, Default)]
pub struct BaseFs {
    nodes: BTreeMap<Vec<u8>, Node>,
    root_mode: Option<u32>,
    /// Bytes of member names read from all layers applied so far.
    name_bytes: u64,
}

/// What one layer does, in the order a layer is applied.
#[derive(Default)]
struct LayerChanges {
    /// `.wh.NAME`: the path to delete with everything below it.
    whiteouts: Vec<Vec<u8>>,
    /// `.wh..wh..opq`: folders whose lower contents are hidden.
    opaque: Vec<Vec<u8>>,
    /// Everything else, in archive order.
    adds: Vec<(Vec<u8>, Node)>,
    /// Parents of whiteout files, which Docker creates too.
    parents: Vec<Vec<u8>>,
}

impl BaseFs {
    /// An empty file system.
    pub fn new() -> Self {
        BaseFs::default()
    }

    /// Applies the layer tar at `file` (uncompressed) on top; `layer` names it in errors.
    ///
    /// As the OCI layer specification says, whiteouts hide only what lower layers hold, so
    /// the layer's own members survive its whiteouts whatever their order.
    pub fn apply_layer(&mut self, file: &Path, layer: &str) -> Result<()> {
        let changes = read_changes(file, layer, &mut self.name_bytes)?;
        for path in &changes.whiteouts {
            self.remove_tree(path);
        }
        for dir in &changes.opaque {
            self.remove_below(dir);
        }
        for parent in &changes.parents {
            self.make_parents(parent);
        }
        for (path, node) in changes.adds {
            if path.is_empty() {
                if node.kind == Kind::Dir {
                    self.root_mode = Some(node.mode);
                }
                continue;
            }
            self.make_parents(&path);
            if node.kind != Kind::Dir {
                // A file replaces a folder of a lower layer with all it held.
                self.remove_below(&path);
            }
            self.nodes.insert(path, node);
        }
        Ok(())
    }

    /// Whether `path` exists (the root always does).
    pub fn contains(&self, path: &[u8]) -> bool {
        match clean(path) {
            Some(p) if p.is_empty() => true,
            Some(p) => self.nodes.contains_key(&p),
            None => false,
        }
    }

    /// Whether `path` is a directory (the root is).
    pub fn is_dir(&self, path: &[u8]) -> bool {
        match clean(path) {
            Some(p) if p.is_empty() => true,
            Some(p) => self.nodes.get(&p).is_some_and(|n| n.kind == Kind::Dir),
            None => false,
        }
    }

    /// The type of `path`, if it exists (`Dir` for the root).
    pub fn kind(&self, path: &[u8]) -> Option<Kind> {
        match clean(path)? {
            p if p.is_empty() => Some(Kind::Dir),
            p => self.nodes.get(&p).map(|n| n.kind),
        }
    }

    /// The permission bits (`0o7777` at most) of `path`: from the topmost layer's member,
    /// or 0755 for a folder only implied by the members below it. For the root, the mode of
    /// the topmost `./` member, if any layer has one.
    pub fn mode(&self, path: &[u8]) -> Option<u32> {
        match clean(path)? {
            p if p.is_empty() => self.root_mode,
            p => self.nodes.get(&p).map(|n| n.mode),
        }
    }

    /// The number of paths, the root not counted.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there is no path besides the root.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Every path with its type, sorted by raw bytes.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], Kind)> {
        self.nodes.iter().map(|(p, n)| (p.as_slice(), n.kind))
    }

    /// Removes `path` and everything below it.
    fn remove_tree(&mut self, path: &[u8]) {
        self.nodes.remove(path);
        self.remove_below(path);
    }

    /// Removes everything below `dir` (everything, for the root), keeping `dir`.
    fn remove_below(&mut self, dir: &[u8]) {
        if dir.is_empty() {
            self.nodes.clear();
            return;
        }
        // Paths below `dir` are exactly those from `dir/` up to `dir0`: `0` follows `/`.
        let mut start = dir.to_vec();
        start.push(b'/');
        let mut end = dir.to_vec();
        end.push(b'/' + 1);
        let below: Vec<Vec<u8>> = self
            .nodes
            .range::<[u8], _>((Bound::Included(&start[..]), Bound::Excluded(&end[..])))
            .map(|(path, _)| path.clone())
            .collect();
        for path in below {
            self.nodes.remove(&path);
        }
    }

    /// Creates the folders above `path` that are missing; a non-folder in their place is
    /// replaced, as extracting the layer would.
    fn make_parents(&mut self, path: &[u8]) {
        let mut end = 0;
        while let Some(slash) = path[end..].iter().position(|&b| b == b'/') {
            end += slash;
            let parent = &path[..end];
            match self.nodes.get(parent) {
                Some(n) if n.kind == Kind::Dir => {}
                Some(_) => {
                    self.remove_below(parent);
                    self.nodes.insert(parent.to_vec(), implied_dir());
                }
                None => {
                    self.nodes.insert(parent.to_vec(), implied_dir());
                }
            }
            end += 1;
        }
    }
}

fn implied_dir() -> Node {
    Node {
        kind: Kind::Dir,
        mode: IMPLIED_DIR_MODE,
    }
}

/// Reads a layer's members into the changes it makes, without touching their data.
/// `name_bytes` counts the bytes of names read, over all layers.
fn read_changes(file: &Path, layer: &str, name_bytes: &mut u64) -> Result<LayerChanges> {
    let read_err = |source: std::io::Error| super::layer_error(layer, source);
    let src = FileSource::new(std::fs::File::open(file).map_err(read_err)?).map_err(read_err)?;
    // Go's reader, like docker's, accepts a layer without end-of-archive blocks.
    let mut tar = TarReader::new(src, false);
    let mut changes = LayerChanges::default();
    let mut count: u64 = 0;
    while let Some(member) = tar.next_member().map_err(read_err)? {
        count += 1;
        if count > super::MAX_LAYER_MEMBERS {
            return Err(Error::BaseLimit {
                what: format!("layer {layer}"),
                limit: super::MAX_LAYER_MEMBERS,
                items: "members",
            });
        }
        *name_bytes += member.name.len() as u64;
        if *name_bytes > super::MAX_LAYER_NAME_BYTES {
            return Err(Error::BaseLimit {
                what: format!("layer {layer}"),
                limit: super::MAX_LAYER_NAME_BYTES,
                items: "bytes of member names",
            });
        }
        let path = clean(&member.name).ok_or_else(|| Error::BaseInvalid {
            what: format!("layer {layer}"),
            reason: format!("member {} leaves the root", show(&member.name)),
        })?;
        let (parent, base) = match path.iter().rposition(|&b| b == b'/') {
            Some(i) => (&path[..i], &path[i + 1..]),
            None => (&path[..0], &path[..]),
        };
        match overlay::classify(base) {
            Marker::Opaque => {
                changes.opaque.push(parent.to_vec());
                changes.parents.push(path.clone());
                continue;
            }
            Marker::Metadata | Marker::BadWhiteout => continue,
            Marker::Whiteout(name) => {
                let mut target = parent.to_vec();
                if !target.is_empty() {
                    target.push(b'/');
                }
                target.extend_from_slice(name);
                changes.whiteouts.push(target);
                changes.parents.push(path.clone());
                continue;
            }
            Marker::Plain => {}
        }
        let kind = match member.kind {
            tarfile::Kind::Dir => Kind::Dir,
            tarfile::Kind::File => Kind::File,
            tarfile::Kind::Symlink => Kind::Symlink,
            tarfile::Kind::HardLink => Kind::HardLink,
            tarfile::Kind::CharDevice { .. }
            | tarfile::Kind::BlockDevice { .. }
            | tarfile::Kind::Fifo => Kind::Other,
            // Docker refuses to apply such members; they are no paths of the image.
            tarfile::Kind::Unknown => continue,
        };
        changes.adds.push((
            path,
            Node {
                kind,
                mode: member.mode,
            },
        ));
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The limit on names is for all layers together: a base image of many layers, each
    /// under the limit, could otherwise hold the limit many times over in memory.
    #[test]
    fn names_of_all_layers_count_against_one_limit() {
        let dir = tempfile::tempdir().unwrap();
        let layer = dir.path().join("layer.tar");
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_mode(0o644);
        b.append_data(&mut h, "0123456789", &b""[..]).unwrap();
        std::fs::write(&layer, b.into_inner().unwrap()).unwrap();

        // Ten bytes of name per layer: the first fits, the second goes over.
        let mut used = super::super::MAX_LAYER_NAME_BYTES - 15;
        read_changes(&layer, "first", &mut used).unwrap();
        match read_changes(&layer, "second", &mut used) {
            Err(Error::BaseLimit { what, items, .. }) => {
                assert_eq!(
                    (what.as_str(), items),
                    ("layer second", "bytes of member names")
                );
            }
            Err(other) => panic!("{other:?}"),
            Ok(_) => panic!("the second layer went over the limit"),
        }
    }
}
