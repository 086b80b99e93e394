//! Linking the files of folders into the tree, as nixpkgs' `symlinkJoin` does with
//! `lndir`: folders become real folders, merged; every other object becomes a symlink to
//! where it lies in the image (a symlink is copied as it is); the first folder to provide
//! a name keeps it.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::{Dir, Node, Tree, Warnings, sorted_children};
use crate::error::{Error, Result};
use crate::stat::folder_metadata;

/// Mode of the folders the links go in: `mkdir` under the umask 022 of a Nix build.
const LINK_DIR_MODE: u32 = 0o755;

/// Mode of a symlink on Linux.
const SYMLINK_MODE: u32 = 0o777;

/// Folder names `lndir` leaves out (version control data).
const SKIPPED_DIRS: [&[u8]; 6] = [b"BitKeeper", b"RCS", b"SCCS", b"CVS", b"CVS.adm", b".svn"];

impl Tree {
    /// Links the contents of the host folder `source`, found at `image_path` inside the
    /// image (a store path), into the root of the tree, as `lndir -silent SOURCE OUT`:
    ///
    /// - a folder becomes a real folder (mode 0755) when the tree has nothing of that name,
    ///   and is merged into a folder already there; a symlink or file already there wins;
    /// - any other object becomes a symlink to `image_path/<its path>`, unless the tree
    ///   already has that name (the first folder linked wins); a symlink of `source` is
    ///   copied with its own target instead;
    /// - names ending in `~`, and folders named `BitKeeper`, `RCS`, `SCCS`, `CVS`,
    ///   `CVS.adm` or `.svn`, are left out, as `lndir` leaves them out.
    ///
    /// `source` itself is followed if it is a symlink; nothing below it is.
    pub fn link_from(
        &mut self,
        source: &Path,
        image_path: &[u8],
        warnings: &mut Warnings,
    ) -> Result<()> {
        folder_metadata(source, source, true)?;
        let mut prefix = image_path.to_vec();
        link_dir(&mut self.root, source, &mut prefix, warnings)
    }
}

fn link_dir(
    dir: &mut Dir,
    source: &Path,
    prefix: &mut Vec<u8>,
    warnings: &mut Warnings,
) -> Result<()> {
    for (name, path) in sorted_children(source)? {
        if name.ends_with(b"~") {
            continue;
        }
        let md = fs::symlink_metadata(&path).map_err(|e| Error::io("inspect", &path, e))?;
        let len = prefix.len();
        prefix.push(b'/');
        prefix.extend_from_slice(&name);
        if md.is_dir() {
            if !SKIPPED_DIRS.contains(&name.as_slice()) {
                match dir.children.entry(name) {
                    Entry::Vacant(slot) => {
                        if let Node::Dir(child) = slot.insert(Node::Dir(Dir {
                            mode: LINK_DIR_MODE,
                            children: BTreeMap::new(),
                        })) {
                            link_dir(child, &path, prefix, warnings)?;
                        }
                    }
                    Entry::Occupied(mut slot) => {
                        if let Node::Dir(child) = slot.get_mut() {
                            link_dir(child, &path, prefix, warnings)?;
                        } else {
                            warnings.0.push(format!(
                                "{} is not linked: an earlier folder has a file of that name",
                                path.display()
                            ));
                        }
                    }
                }
            }
        } else if let Entry::Vacant(slot) = dir.children.entry(name) {
            let target = if md.file_type().is_symlink() {
                fs::read_link(&path)
                    .map_err(|e| Error::io("read the link", &path, e))?
                    .as_os_str()
                    .as_bytes()
                    .to_vec()
            } else {
                prefix.clone()
            };
            slot.insert(Node::Symlink {
                target,
                mode: SYMLINK_MODE,
            });
        }
        prefix.truncate(len);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;
    use crate::entry::Owner;

    fn lines(tree: &Tree) -> Vec<String> {
        tree.entries(&Owner::root(), 0)
            .iter()
            .map(|e| {
                let name = String::from_utf8_lossy(&e.name).into_owned();
                match &e.kind {
                    crate::EntryKind::Symlink(t) => {
                        format!("{name} -> {}", String::from_utf8_lossy(t))
                    }
                    _ => format!("{name} {:o}", e.mode),
                }
            })
            .collect()
    }

    #[test]
    fn folders_merge_files_link_and_the_first_item_wins() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        for p in [
            a.join("bin"),
            a.join("share/doc"),
            b.join("bin"),
            b.join("lib/.svn"),
            b.join("CVS"),
        ] {
            fs::create_dir_all(p).unwrap();
        }
        fs::write(a.join("bin/hello"), "a").unwrap();
        fs::write(b.join("bin/hello"), "b").unwrap();
        fs::write(b.join("bin/other"), "b").unwrap();
        fs::write(b.join("bin/backup~"), "b").unwrap();
        symlink("hello", b.join("bin/hi")).unwrap();
        fs::write(b.join("share"), "a file where a folder is").unwrap();
        let mut tree = Tree::new();
        let mut warnings = Warnings::default();
        tree.link_from(&a, b"/nix/store/aaa-a", &mut warnings)
            .unwrap();
        tree.link_from(&b, b"/nix/store/bbb-b", &mut warnings)
            .unwrap();
        assert_eq!(
            lines(&tree),
            [
                "./ 755",
                "./bin/ 755",
                "./bin/hello -> /nix/store/aaa-a/bin/hello",
                "./bin/hi -> hello",
                "./bin/other -> /nix/store/bbb-b/bin/other",
                "./lib/ 755",
                "./share/ 755",
                "./share/doc/ 755",
            ]
        );
        assert!(warnings.0.is_empty(), "{:?}", warnings.0);
    }

    #[test]
    fn a_source_that_is_no_folder_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        fs::write(&file, "").unwrap();
        let err = Tree::new()
            .link_from(&file, b"/nix/store/x", &mut Warnings::default())
            .unwrap_err();
        assert!(matches!(err, Error::NotADirectory { .. }), "{err}");
    }
}
