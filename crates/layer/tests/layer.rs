//! Integration tests of buildimage-layer: GNU tar and rsync as oracles, determinism.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use buildimage_layer::{
    CopyOptions, Entry, EntryKind, Error, LayerWriter, Owner, Tree, Warnings, planned_size,
};
use proptest::prelude::*;

const MTIME: u64 = 315_532_800;

fn require(tool: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{tool} is needed by this test: apt-get install {package} (cargo xtask ci does this)"
    );
}

fn pack(entries: &[Entry]) -> Vec<u8> {
    let mut writer = LayerWriter::new(Vec::new());
    writer.append_all(entries).unwrap();
    let (bytes, digest) = writer.finish().unwrap();
    assert_eq!(bytes.len() as u64, digest.size);
    assert_eq!(digest.size, planned_size(entries));
    bytes
}

fn plan(sources: &[&Path], options: &CopyOptions) -> (Tree, Warnings) {
    let mut tree = Tree::new();
    let mut warnings = Warnings::default();
    for s in sources {
        tree.copy_from(s, options, &mut warnings).unwrap();
    }
    (tree, warnings)
}

fn keep_links() -> CopyOptions {
    CopyOptions {
        keep_dirlinks: true,
        ..CopyOptions::default()
    }
}

fn write(path: &Path, data: &[u8], mode: u32) {
    fs::write(path, data).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// A tree with every kind of object GNU tar stores.
fn oracle_tree(root: &Path) {
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::create_dir_all(root.join("empty")).unwrap();
    fs::create_dir_all(root.join("a/deep/nested/dir")).unwrap();
    write(&root.join("bin/busybox"), b"\x7fELF pretend", 0o755);
    write(&root.join("bin/suid"), b"setuid", 0o4755);
    write(&root.join("bin/sgid"), b"setgid", 0o2711);
    write(&root.join("readonly"), b"ro", 0o444);
    write(&root.join("Zempty"), b"", 0o644);
    write(&root.join("doc"), b"doc\n", 0o600);
    fs::set_permissions(root.join("empty"), fs::Permissions::from_mode(0o1777)).unwrap();
    symlink("busybox", root.join("bin/sh")).unwrap();
    symlink("/nowhere/at/all", root.join("dangling")).unwrap();
    symlink("t".repeat(100), root.join("link100")).unwrap();
    symlink("t".repeat(101), root.join("link101")).unwrap();
    symlink("loop2", root.join("loop1")).unwrap();
    symlink("loop1", root.join("loop2")).unwrap();
    fs::hard_link(root.join("bin/busybox"), root.join("bin/hardlink")).unwrap();
    let long = root.join("a/deep/nested/dir").join("n".repeat(200));
    write(&long, &vec![b'x'; 5000], 0o644);
    // 98 + "./" = 100 bytes: the longest name that needs no long-name header.
    write(&root.join("m".repeat(98)), b"edge", 0o644);
    write(&root.join("m".repeat(99)), b"edge+1", 0o644);
    write(
        &root.join(OsStr::from_bytes(b"not-utf8-\xff\xfe")),
        b"latin",
        0o644,
    );
    write(&root.join("a/z"), &vec![7u8; 512], 0o644);
    // Larger than the writer's 1 MiB batches, so that it spans three of them.
    let large: Vec<u8> = (0..(5 << 19) + 3).map(|i: u32| (i % 251) as u8).collect();
    write(&root.join("a/large"), &large, 0o644);
    write(&root.join("a/y"), &vec![7u8; 513], 0o644);
    nix::unistd::mkfifo(
        &root.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
}

/// Device nodes for the oracle tree: only root can make them.
fn oracle_devices(root: &Path) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root to make device nodes (cargo xtask ci runs as root)"
    );
    nix::sys::stat::mknod(
        &root.join("null"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .unwrap();
    nix::sys::stat::mknod(
        &root.join("loopdev"),
        nix::sys::stat::SFlag::S_IFBLK,
        nix::sys::stat::Mode::from_bits_truncate(0o660),
        nix::sys::stat::makedev(7, 300),
    )
    .unwrap();
}

fn gnu_tar(dir: &Path) -> Vec<u8> {
    require("tar", "tar");
    let out = Command::new("tar")
        .args([
            "-C",
            dir.to_str().unwrap(),
            "--hard-dereference",
            "--sort=name",
            "--mtime=@315532800",
            "--owner=0",
            "--group=0",
            "--format=gnu",
            "-cf",
            "-",
            ".",
        ])
        .env("LC_ALL", "C")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Packs `src` and GNU tar's archive of it and compares them byte for byte.
fn assert_equals_gnu_tar(src: &Path) {
    let (tree, _) = plan(&[src], &keep_links());
    let ours = pack(&tree.entries(&Owner::root(), MTIME));
    let theirs = gnu_tar(src);
    assert_eq!(ours.len(), theirs.len(), "archive sizes differ");
    if let Some(at) = ours.iter().zip(&theirs).position(|(a, b)| a != b) {
        panic!(
            "first difference at byte {at} (block {}): ours {:?} theirs {:?}",
            at / 512,
            String::from_utf8_lossy(&ours[at / 512 * 512..at / 512 * 512 + 512]),
            String::from_utf8_lossy(&theirs[at / 512 * 512..at / 512 * 512 + 512])
        );
    }
}

#[test]
fn bytes_equal_gnu_tar() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    oracle_tree(&src);
    assert_equals_gnu_tar(&src);
}

#[test]
fn bytes_of_device_nodes_equal_gnu_tar_as_root() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    oracle_tree(&src);
    oracle_devices(&src);
    assert_equals_gnu_tar(&src);
}

#[test]
fn owner_policy_names_only_root() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("f"), b"x").unwrap();
    let (tree, _) = plan(&[dir.path()], &keep_links());
    let bytes = pack(&tree.entries(&Owner::numeric(1000, 0), MTIME));
    let mut archive = tar::Archive::new(bytes.as_slice());
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        let h = entry.header();
        assert_eq!(h.uid().unwrap(), 1000);
        assert_eq!(h.gid().unwrap(), 0);
        assert_eq!(h.username().unwrap(), Some(""));
        assert_eq!(h.groupname().unwrap(), Some("root"));
    }
}

/// Runs rsync as buildImage does and reads the result back as it is.
fn rsync_oracle(sources: &[&Path], flag: &str, work: &Path) -> Tree {
    require("rsync", "rsync");
    let layer = work.join("rsync-layer");
    fs::create_dir(&layer).unwrap();
    for s in sources {
        let status = Command::new("rsync")
            .arg(format!("-a{flag}"))
            .arg(format!("{}/", s.display()))
            .arg(format!("{}/", layer.display()))
            .status()
            .unwrap();
        assert!(status.success());
    }
    Tree::from_dir(&layer, &mut Warnings::default()).unwrap()
}

/// Same tree shape and metadata; sources differ (rsync made copies), so compare entries
/// without their source paths.
fn shape(tree: &Tree) -> Vec<(Vec<u8>, u8, u32, Vec<u8>)> {
    tree.entries(&Owner::root(), MTIME)
        .into_iter()
        .map(|e| {
            let data = match &e.kind {
                EntryKind::File { source, .. } => fs::read(source).unwrap(),
                EntryKind::Symlink(t) => t.clone(),
                _ => Vec::new(),
            };
            (e.name, e.kind.typeflag(), e.mode, data)
        })
        .collect()
}

fn rsync_sources(work: &Path) -> (PathBuf, PathBuf) {
    let one = work.join("one");
    let two = work.join("two");
    fs::create_dir_all(one.join("pkg/bin")).unwrap();
    fs::create_dir_all(one.join("etc")).unwrap();
    write(&one.join("pkg/bin/hello"), b"hello v1", 0o555);
    write(&one.join("etc/shared"), b"from one", 0o644);
    symlink("pkg/bin", one.join("bin")).unwrap();
    symlink("pkg/bin/hello", one.join("hello")).unwrap();
    symlink("missing", one.join("dangling")).unwrap();
    fs::set_permissions(one.join("pkg"), fs::Permissions::from_mode(0o555)).unwrap();
    fs::create_dir_all(two.join("etc")).unwrap();
    fs::create_dir_all(two.join("bin")).unwrap();
    write(&two.join("etc/shared"), b"from two!", 0o600);
    write(&two.join("etc/only-two"), b"2", 0o644);
    write(&two.join("bin/extra"), b"extra", 0o755);
    fs::set_permissions(two.join("etc"), fs::Permissions::from_mode(0o750)).unwrap();
    fs::set_permissions(&two, fs::Permissions::from_mode(0o555)).unwrap();
    (one, two)
}

#[test]
fn copy_dirlinks_matches_rsync_k() {
    let work = tempfile::tempdir().unwrap();
    let (one, two) = rsync_sources(work.path());
    let (ours, _) = plan(&[&one, &two], &CopyOptions::default());
    let theirs = rsync_oracle(&[&one, &two], "k", work.path());
    assert_eq!(shape(&ours), shape(&theirs));
    assert!(matches!(
        ours.get(b"bin"),
        Some(buildimage_layer::Node::Dir(_))
    ));
}

#[test]
fn keep_dirlinks_matches_rsync_big_k() {
    let work = tempfile::tempdir().unwrap();
    let (one, two) = rsync_sources(work.path());
    let (ours, _) = plan(&[&one, &two], &keep_links());
    let theirs = rsync_oracle(&[&one, &two], "K", work.path());
    assert_eq!(shape(&ours), shape(&theirs));
    // The later `bin/extra` went through the `bin` symlink into `pkg/bin`.
    assert!(ours.get(b"pkg/bin/extra").is_some());
    assert!(matches!(
        ours.get(b"bin"),
        Some(buildimage_layer::Node::Symlink { .. })
    ));
}

#[test]
fn store_symlinks_resolve_in_the_given_store() {
    let work = tempfile::tempdir().unwrap();
    let store_root = work.path().join("store");
    let pkg = store_root.join("nix/store/00bgd045z0d4icpbc2yyz4gx48ak44la-pkg");
    fs::create_dir_all(pkg.join("bin")).unwrap();
    write(&pkg.join("bin/tool"), b"tool", 0o555);
    let root = work.path().join("root");
    fs::create_dir(&root).unwrap();
    symlink(
        "/nix/store/00bgd045z0d4icpbc2yyz4gx48ak44la-pkg/bin",
        root.join("bin"),
    )
    .unwrap();
    symlink("/etc", root.join("etc")).unwrap();
    let options = CopyOptions {
        keep_dirlinks: false,
        store_root: store_root.clone(),
    };
    let (tree, _) = plan(&[&root], &options);
    assert!(matches!(
        tree.get(b"bin/tool"),
        Some(buildimage_layer::Node::File { .. })
    ));
    // Absolute links outside the store are never followed on the build machine.
    assert!(matches!(
        tree.get(b"etc"),
        Some(buildimage_layer::Node::Symlink { .. })
    ));
}

#[test]
fn directory_loops_are_an_error() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    fs::create_dir_all(root.join("a")).unwrap();
    symlink("..", root.join("a/up")).unwrap();
    let mut tree = Tree::new();
    let err = tree
        .copy_from(&root, &CopyOptions::default(), &mut Warnings::default())
        .unwrap_err();
    assert!(matches!(err, Error::Loop { .. }), "{err}");
    assert!(err.to_string().contains("a/up"), "{err}");
}

#[test]
fn sockets_are_skipped_with_a_warning() {
    let work = tempfile::tempdir().unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(work.path().join("sock")).unwrap();
    fs::write(work.path().join("file"), b"x").unwrap();
    let (tree, warnings) = plan(&[work.path()], &CopyOptions::default());
    assert!(tree.get(b"sock").is_none());
    assert!(tree.get(b"file").is_some());
    assert_eq!(warnings.0.len(), 1);
    assert!(warnings.0[0].contains("socket"), "{:?}", warnings.0);
}

#[test]
fn a_file_is_not_a_source_directory() {
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("file");
    fs::write(&file, b"x").unwrap();
    let err = Tree::new()
        .copy_from(&file, &CopyOptions::default(), &mut Warnings::default())
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("expected a directory, found a regular file"),
        "{err}"
    );
}

#[test]
fn a_file_that_grows_while_packing_is_an_error() {
    let work = tempfile::tempdir().unwrap();
    let f = work.path().join("grows");
    fs::write(&f, b"1234").unwrap();
    let (tree, _) = plan(&[work.path()], &CopyOptions::default());
    let entries = tree.entries(&Owner::root(), MTIME);
    fs::write(&f, b"123456789").unwrap();
    let mut writer = LayerWriter::new(Vec::new());
    let err = writer.append_all(&entries).unwrap_err();
    assert!(matches!(err, Error::Changed { planned: 4, .. }), "{err}");
    fs::write(&f, b"12").unwrap();
    let mut writer = LayerWriter::new(Vec::new());
    let err = writer.append_all(&entries).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Changed {
                planned: 4,
                found: 2,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_large_file_that_changes_while_packing_is_an_error() {
    let work = tempfile::tempdir().unwrap();
    let f = work.path().join("large");
    let size = 3 << 20;
    fs::write(&f, vec![1u8; size]).unwrap();
    let (tree, _) = plan(&[work.path()], &CopyOptions::default());
    let entries = tree.entries(&Owner::root(), MTIME);
    for (now, found) in [(size + 1, size as u64 + 1), (2 << 20, 2 << 20)] {
        fs::write(&f, vec![1u8; now]).unwrap();
        let mut writer = LayerWriter::new(Vec::new());
        let err = writer.append_all(&entries).unwrap_err();
        assert!(
            matches!(err, Error::Changed { planned, found: f, .. } if planned == size as u64 && f == found),
            "{err}"
        );
    }
}

#[test]
fn staging_round_trips() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir(&src).unwrap();
    oracle_tree(&src);
    fs::set_permissions(src.join("a"), fs::Permissions::from_mode(0o555)).unwrap();
    let (tree, _) = plan(&[&src], &keep_links());
    let stage = work.path().join("stage");
    fs::create_dir(&stage).unwrap();
    buildimage_layer::stage::materialize(&tree, &stage).unwrap();
    let again = Tree::from_dir(&stage, &mut Warnings::default()).unwrap();
    assert_eq!(shape(&tree), shape(&again));
    buildimage_layer::stage::remove_tree(&stage).unwrap();
    assert!(!stage.exists());
}

// --- determinism -----------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Spec {
    File(Vec<u8>, u32),
    Dir(u32),
    Link(String),
}

fn tree_spec() -> impl Strategy<Value = Vec<(String, Spec)>> {
    let name = "[a-c]{1,2}(/[a-c]{1,2}){0,2}";
    let spec = prop_oneof![
        (
            proptest::collection::vec(any::<u8>(), 0..700),
            prop_oneof![Just(0o644u32), Just(0o755), Just(0o4755), Just(0o400)]
        )
            .prop_map(|(d, m)| Spec::File(d, m)),
        prop_oneof![Just(0o755u32), Just(0o700), Just(0o1777)].prop_map(Spec::Dir),
        // Relative targets that stay inside the tree (a `..` could reach the folder that
        // holds the tree, which differs between the two copies compared).
        prop_oneof!["[a-c]{1,2}(/[a-c]{1,2}){0,2}", Just(".".to_owned())].prop_map(Spec::Link),
    ];
    proptest::collection::vec((name, spec), 1..25)
}

/// Creates the tree described by `spec` in `order`, with the given mtimes, under `umask`.
fn create(root: &Path, spec: &[(String, Spec)], order: &[usize], mtimes: &[i64]) {
    fs::create_dir_all(root).unwrap();
    let mut made: Vec<(PathBuf, u32)> = Vec::new();
    for (i, &k) in order.iter().enumerate() {
        let (name, s) = &spec[k];
        let path = root.join(name);
        // Skip names that collide with an earlier object's parent chain.
        if path.ancestors().skip(1).any(|a| a.exists() && !a.is_dir())
            || fs::symlink_metadata(&path).is_ok()
        {
            continue;
        }
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        match s {
            Spec::File(d, m) => {
                fs::write(&path, d).unwrap();
                made.push((path.clone(), *m));
            }
            Spec::Dir(m) => {
                fs::create_dir(&path).unwrap();
                made.push((path.clone(), *m));
            }
            Spec::Link(t) => symlink(t, &path).unwrap(),
        }
        let t = filetime(mtimes[i % mtimes.len()]);
        let _ = nix::sys::stat::lutimes(&path, &t, &t);
    }
    // Folders made on the way to a named object get the umask's mode: give them a fixed one.
    for dir in walk_dirs(root) {
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    }
    for (p, m) in made.iter().rev() {
        fs::set_permissions(p, fs::Permissions::from_mode(*m)).unwrap();
    }
}

fn walk_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for item in fs::read_dir(dir).unwrap() {
        let item = item.unwrap();
        if item.file_type().unwrap().is_dir() {
            out.push(item.path());
            out.extend(walk_dirs(&item.path()));
        }
    }
    out
}

fn filetime(secs: i64) -> nix::sys::time::TimeVal {
    nix::sys::time::TimeVal::new(secs, 0)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn same_tree_same_bytes(
        spec in tree_spec(),
        seed in any::<u64>(),
        mtimes_a in proptest::collection::vec(0i64..2_000_000_000, 1..5),
        mtimes_b in proptest::collection::vec(0i64..2_000_000_000, 1..5),
    ) {
        // Only the first occurrence of a name counts: make the spec canonical so both
        // orders create the same objects.
        let mut seen = std::collections::BTreeSet::new();
        let spec: Vec<_> = spec.into_iter().filter(|(n, _)| seen.insert(n.clone())).collect();
        // A name that is another's prefix would make creation order matter; drop those.
        let names: Vec<String> = spec.iter().map(|(n, _)| n.clone()).collect();
        let spec: Vec<_> = spec
            .into_iter()
            .filter(|(n, s)| matches!(s, Spec::Dir(_)) || !names.iter().any(|m| m.starts_with(&format!("{n}/"))))
            .collect();
        let forward: Vec<usize> = (0..spec.len()).collect();
        let mut shuffled = forward.clone();
        let mut x = seed | 1;
        for i in (1..shuffled.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            shuffled.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let work = tempfile::tempdir().unwrap();
        let a = work.path().join("a");
        let b = work.path().join("b");
        // Parents must exist before children in either order: create dirs first.
        let dirs_first = |order: &[usize]| -> Vec<usize> {
            let mut o: Vec<usize> = order.iter().copied().filter(|&k| matches!(spec[k].1, Spec::Dir(_))).collect();
            o.sort_by_key(|&k| spec[k].0.matches('/').count());
            o.extend(order.iter().copied().filter(|&k| !matches!(spec[k].1, Spec::Dir(_))));
            o
        };
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
        create(&a, &spec, &dirs_first(&forward), &mtimes_a);
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
        create(&b, &spec, &dirs_first(&shuffled), &mtimes_b);
        nix::sys::stat::umask(old);
        fs::set_permissions(&a, fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(&b, fs::Permissions::from_mode(0o755)).unwrap();
        let pack_dir = |d: &Path| {
            let mut tree = Tree::new();
            // Random links may form loops, which `-k` must report the same way every time.
            match tree.copy_from(d, &CopyOptions::default(), &mut Warnings::default()) {
                Ok(()) => {
                    tree.make_root_writable();
                    pack(&tree.entries(&Owner::numeric(1000, 100), MTIME))
                }
                Err(e) => e.to_string().replace(d.to_str().unwrap(), "").into_bytes(),
            }
        };
        let (one, two) = (pack_dir(&a), pack_dir(&b));
        prop_assert!(one == two, "archives differ: {} vs {} bytes", one.len(), two.len());
    }
}
