//! Running real Nix (Debian's `nix-bin`, Nix 2.8) against chroot stores, never the
//! machine's `/nix`: `nix-build` and `nix-store` with `--store local?root=DIR` and a
//! configuration of their own.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::fs::{require_tool, run_ok};

/// Settings for every Nix command: no host configuration, no build users (we are root and
/// need no `nixbld` group), no binary cache (no network), and the sandbox on, because Nix 2.8
/// builds into a chroot store only in the sandbox. Busybox is the sandbox's `/bin/sh`, and
/// is also visible at `/bin/busybox` for the derivation that copies it into the store.
pub const NIX_CONFIG: &str = "build-users-group =\nsubstituters =\nsandbox = true\n\
                          sandbox-paths = /bin/sh=/bin/busybox /bin/busybox\n";

/// The name part of `/nix/store/<32 hash characters>-<name>`.
pub fn store_name(path: &str) -> &str {
    path.strip_prefix("/nix/store/")
        .and_then(|base| base.get(33..))
        .unwrap_or_else(|| panic!("not a store path: {path:?}"))
}

/// The base name `<hash>-<name>` of a store path.
pub fn base_name(path: &str) -> &str {
    path.strip_prefix("/nix/store/")
        .unwrap_or_else(|| panic!("not a store path: {path:?}"))
}

/// Where the store rooted at `root` keeps `path`.
pub fn host_path(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// `local?root=DIR`: the chroot store at `root`.
pub fn chroot(root: &Path) -> String {
    format!("local?root={}", root.display())
}

/// A Nix command with this module's configuration, and nothing from the caller's.
pub fn nix(tool: &str) -> Command {
    require_tool(tool, "nix-bin");
    let mut cmd = Command::new(tool);
    cmd.env("NIX_CONF_DIR", "/nonexistent/buildimage-cli-nix-tests")
        .env("NIX_CONFIG", NIX_CONFIG)
        .env_remove("NIX_REMOTE")
        .env_remove("NIX_PATH")
        .stdin(Stdio::null());
    cmd
}

/// `nix-store --store local?root=ROOT`.
pub fn nix_store(root: &Path) -> Command {
    let mut cmd = nix("nix-store");
    cmd.arg("--store").arg(chroot(root));
    cmd
}

/// Copies a store: `FROM/nix/store` to `TO/nix/store`, and with `with_db` the database
/// files (`db.sqlite`, `schema`) but not Nix's lock and reserve files.
pub fn copy_store(from: &Path, to: &Path, with_db: bool) {
    fs::create_dir_all(to.join("nix"))
        .unwrap_or_else(|err| panic!("cannot create {}: {err}", to.display()));
    copy_tree(&from.join("nix/store"), &to.join("nix/store"));
    if with_db {
        let db = to.join("nix/var/nix/db");
        fs::create_dir_all(&db)
            .unwrap_or_else(|err| panic!("cannot create {}: {err}", db.display()));
        for file in ["db.sqlite", "schema"] {
            copy_tree(&from.join("nix/var/nix/db").join(file), &db.join(file));
        }
    }
}

/// `cp -a FROM TO`: modes, owners, symlinks and times as they are.
pub fn copy_tree(from: &Path, to: &Path) {
    run_ok(Command::new("cp").arg("-a").arg(from).arg(to));
}

/// Standard output as text.
pub fn stdout(output: Output) -> String {
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// `sqlite3 DB SQL`, its output without the last newline.
pub fn sqlite(db: &Path, sql: &str) -> String {
    require_tool("sqlite3", "sqlite3");
    let out = stdout(run_ok(Command::new("sqlite3").arg(db).arg(sql)));
    out.strip_suffix('\n').unwrap_or(&out).to_owned()
}

/// A chroot store that `nix-build` filled, kept for the life of the test process.
#[derive(Debug)]
pub struct BuiltStore {
    /// The folder that holds the store and the expression: `/tmp/<prefix><pid>.XXXXXX`.
    pub dir: PathBuf,
    /// The chroot store's root: `DIR/store`, with the database Nix wrote.
    pub root: PathBuf,
    /// What `nix-build` printed: one store path per output, in its order.
    pub outputs: Vec<String>,
    /// Whether the machine had a `/nix` before the store was built.
    host_nix: bool,
}

impl BuiltStore {
    /// Builds `expression` (a Nix file whose value is an attribute set of derivations) into
    /// a fresh chroot store, with `files` (name, contents) next to it for the expression to
    /// name as `./NAME`. The folder is named `/tmp/<prefix><pid>.XXXXXX` and is never
    /// removed by this process (fixtures live in `static`s, which are never dropped); the
    /// next process with the same prefix removes the folders of processes that have ended.
    pub fn build(prefix: &str, expression: &str, files: &[(&str, &[u8])]) -> BuiltStore {
        require_tool("nix-build", "nix-bin");
        require_tool("nix-store", "nix-bin");
        assert!(
            Path::new("/bin/busybox").is_file(),
            "/bin/busybox is missing; the Nix sandbox needs it as /bin/sh: \
             apt-get install busybox-static"
        );
        crate::fs::require_root(
            "a Nix fixture (Nix 2.8 builds into a chroot store only in its sandbox)",
        );
        let host_nix = Path::new("/nix").exists();
        remove_stale(prefix);
        let dir = tempfile::Builder::new()
            .prefix(&format!("{prefix}{}.", std::process::id()))
            .tempdir_in("/tmp")
            .unwrap_or_else(|err| panic!("cannot create a temporary directory: {err}"))
            .keep();
        let root = dir.join("store");
        let nix_file = dir.join("fixture.nix");
        crate::fs::write(&nix_file, expression.as_bytes(), 0o644);
        for (name, contents) in files {
            crate::fs::write(&dir.join(name), contents, 0o644);
        }
        let built = stdout(run_ok(
            nix("nix-build")
                .arg("--store")
                .arg(chroot(&root))
                .arg(&nix_file)
                .arg("--no-out-link")
                .env("XDG_CACHE_HOME", dir.join("cache")),
        ));
        let store = BuiltStore {
            dir,
            root,
            outputs: built.lines().map(str::to_owned).collect(),
            host_nix,
        };
        store.assert_host_nix_untouched();
        store
    }

    /// The output whose store-path name is `name`.
    pub fn output(&self, name: &str) -> &str {
        self.outputs
            .iter()
            .find(|path| store_name(path) == name)
            .unwrap_or_else(|| panic!("nix-build printed no {name}: {:?}", self.outputs))
    }

    /// Panics if the machine's `/nix` appeared: a Nix command escaped its chroot store.
    pub fn assert_host_nix_untouched(&self) {
        assert!(
            self.host_nix || !Path::new("/nix").exists(),
            "the machine's /nix appeared: a Nix command escaped its chroot store"
        );
    }
}

/// Removes the `/tmp/<prefix><pid>.*` folders of test processes that have ended: fixtures
/// that live in `static`s, which are never dropped, are named so.
pub fn remove_stale(prefix: &str) {
    let Ok(entries) = fs::read_dir("/tmp") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix))
            .and_then(|rest| rest.split_once('.'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            // Best effort: another run may be removing it at the same time.
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}
