//! Member names as raw bytes, and the outer archive's own namespace of members and links.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// How many links one lookup may follow before it counts as a loop (Linux's limit).
const MAX_HOPS: usize = 40;

/// How many path components one lookup may walk, links included.
const MAX_STEPS: usize = 4096;

/// Cleans a raw member name: drops empty and `.` components (so a leading `./` or `/` and a
/// trailing `/`) and folds `..` into its parent. `None` if `..` climbs above the root.
/// Every other byte is kept as it is; the root is the empty name.
pub(crate) fn clean(name: &[u8]) -> Option<Vec<u8>> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in name.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                parts.pop()?;
            }
            _ => parts.push(part),
        }
    }
    Some(parts.join(&b'/'))
}

/// A member name for messages.
pub(crate) fn show(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

/// A regular file member saved in the scratch folder.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    /// The scratch file.
    pub path: PathBuf,
    /// Its size.
    pub size: u64,
}

/// What a cleaned member name stands for.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    /// A regular file.
    File(Stored),
    /// A directory (or anything else without content).
    Dir,
    /// A symlink with its raw target, relative to the link's folder unless absolute.
    Symlink(Vec<u8>),
    /// A hard link with its raw target, an archive path.
    HardLink(Vec<u8>),
}

/// Why a lookup failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// No regular file at the end of the path.
    Missing,
    /// Too many links, or too long a walk.
    Loop,
}

/// The members of the outer archive by cleaned name; a later member replaces an earlier one.
#[derive(Debug, Default)]
pub(crate) struct Namespace {
    pub nodes: BTreeMap<Vec<u8>, Node>,
}

impl Namespace {
    /// The regular file `name` leads to, following symlinks and hard links inside the
    /// archive only: a link target never reaches the host's file system.
    pub(crate) fn resolve(&self, name: &[u8]) -> Result<&Stored, Lookup> {
        // Components still to walk, last first, borrowed from `name` or from link targets.
        let mut pending: Vec<&[u8]> = name.split(|&b| b == b'/').rev().collect();
        let mut key: Vec<u8> = Vec::new();
        // Length of `key` before each component pushed.
        let mut marks: Vec<usize> = Vec::new();
        let (mut hops, mut steps) = (0, 0);
        while let Some(part) = pending.pop() {
            steps += 1;
            if steps > MAX_STEPS {
                return Err(Lookup::Loop);
            }
            match part {
                b"" | b"." => continue,
                b".." => {
                    // Above the root stays at the root, as on a real file system.
                    if let Some(mark) = marks.pop() {
                        key.truncate(mark);
                    }
                    continue;
                }
                _ => {}
            }
            marks.push(key.len());
            if !key.is_empty() {
                key.push(b'/');
            }
            key.extend_from_slice(part);
            let target = match self.nodes.get(&key) {
                Some(Node::Symlink(target)) => {
                    // Relative to the link's folder, or to the archive root if absolute.
                    let mark = marks.pop().unwrap_or(0);
                    key.truncate(mark);
                    if target.starts_with(b"/") {
                        key.clear();
                        marks.clear();
                    }
                    target
                }
                Some(Node::HardLink(target)) => {
                    if !pending.iter().all(|p| matches!(*p, b"" | b".")) {
                        return Err(Lookup::Missing);
                    }
                    key.clear();
                    marks.clear();
                    target
                }
                Some(Node::File(_)) if !pending.iter().all(|p| matches!(*p, b"" | b".")) => {
                    return Err(Lookup::Missing);
                }
                _ => continue,
            };
            hops += 1;
            if hops > MAX_HOPS {
                return Err(Lookup::Loop);
            }
            pending.extend(target.split(|&b| b == b'/').rev());
        }
        match self.nodes.get(&key) {
            Some(Node::File(stored)) => Ok(stored),
            _ => Err(Lookup::Missing),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(n: u64) -> Node {
        Node::File(Stored {
            path: PathBuf::from(format!("m{n}")),
            size: n,
        })
    }

    #[test]
    fn clean_names() {
        assert_eq!(clean(b"./a/b/").unwrap(), b"a/b");
        assert_eq!(clean(b"/abs").unwrap(), b"abs");
        assert_eq!(clean(b"a//b/./c").unwrap(), b"a/b/c");
        assert_eq!(clean(b"a/../b").unwrap(), b"b");
        assert_eq!(clean(b"./").unwrap(), b"");
        assert_eq!(clean(b"a b\n\"c\\"), Some(b"a b\n\"c\\".to_vec()));
        assert!(clean(b"../../etc/passwd").is_none());
    }

    #[test]
    fn links_resolve_inside_the_archive() {
        let mut ns = Namespace::default();
        ns.nodes.insert(b"one".to_vec(), Node::Dir);
        ns.nodes.insert(b"one/layer.tar".to_vec(), file(1));
        ns.nodes.insert(
            b"two/layer.tar".to_vec(),
            Node::Symlink(b"../one/layer.tar".to_vec()),
        );
        ns.nodes.insert(
            b"hard".to_vec(),
            Node::HardLink(b"./two/layer.tar".to_vec()),
        );
        ns.nodes
            .insert(b"abs".to_vec(), Node::Symlink(b"/etc/passwd".to_vec()));
        ns.nodes
            .insert(b"dirlink".to_vec(), Node::Symlink(b"one".to_vec()));
        ns.nodes.insert(
            b"up".to_vec(),
            Node::Symlink(b"../../../one/layer.tar".to_vec()),
        );
        ns.nodes
            .insert(b"loop".to_vec(), Node::Symlink(b"loop".to_vec()));
        assert_eq!(ns.resolve(b"two/layer.tar").unwrap().size, 1);
        assert_eq!(ns.resolve(b"./hard").unwrap().size, 1);
        assert_eq!(ns.resolve(b"dirlink/layer.tar").unwrap().size, 1);
        assert_eq!(ns.resolve(b"up").unwrap().size, 1);
        assert_eq!(ns.resolve(b"abs").unwrap_err(), Lookup::Missing);
        assert_eq!(ns.resolve(b"loop").unwrap_err(), Lookup::Loop);
        assert_eq!(ns.resolve(b"one/layer.tar/x").unwrap_err(), Lookup::Missing);
    }
}
