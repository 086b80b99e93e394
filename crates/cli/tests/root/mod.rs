//! End-to-end tests of root mode (`runAsRoot`): images built by the real binary, whose
//! script runs as root in `buildimage_sandbox`'s namespaces over an overlay of the base
//! layers, then read back with the `tar` crate, loaded, inspected and run by a private
//! Docker daemon ([`buildimage_test_support::docker`]), or unpacked by skopeo and umoci.
//!
//! Image roots hold Debian's static busybox with the applets the scripts need, so the
//! sandbox finds `/bin/sh`, `rm`, `chown`, `mknod` and friends inside the image. Every build
//! runs with a private `TMPDIR` that must be empty again, with nothing mounted below the
//! test's folder, when the binary exits, whether it succeeded, failed or was interrupted.
//!
//! As in the `docker` module, each test builds its archives before it takes the Docker
//! handle, and every loaded image is removed again (image guards).
//!
//! Run with `cargo xtask dockerd -- cargo test -p buildimage-cli --test cli root` (as root:
//! the sandbox, `mknod` and umoci need it).

mod failures;
mod files;
mod hostile;
mod isolation;
mod scenarios;
mod unprivileged;

use std::fs;
use std::path::Path;

use buildimage_test_support::{
    Buildimage, Built, Member, ROOT_APPLETS, TestDir, assert_nothing_mounted, busybox_root, chmod,
    names, require_root, require_tool, static_busybox, write,
};
use serde_json::Value;

/// A test's folder: specs, image roots, archives, a fake store, and the private `TMPDIR`
/// (`tmp/`) of its builds.
pub struct Case {
    dir: TestDir,
}

impl std::ops::Deref for Case {
    type Target = TestDir;
    fn deref(&self) -> &TestDir {
        &self.dir
    }
}

impl Case {
    /// A fresh folder; panics unless the tests run as root.
    pub fn new() -> Case {
        require_tool("busybox", "busybox-static");
        require_root(
            "the root-mode tests (the sandbox needs root for chown, setuid bits and mknod)",
        );
        Case {
            dir: TestDir::new("bi-root."),
        }
    }

    /// `buildimage` in the folder, with the private `TMPDIR` and no `SOURCE_DATE_EPOCH`.
    pub fn buildimage(&self) -> Buildimage {
        let mut cmd = Buildimage::new();
        cmd.cwd(self.path()).tmpdir(&self.tmp());
        cmd
    }

    /// `buildimage build NAME.json -o NAME.tar [--store STORE] --json`, which must succeed
    /// and leave `TMPDIR` empty and nothing mounted.
    pub fn build(&self, name: &str, spec: &Value, store: Option<&Path>) -> Built {
        self.build_with(self.buildimage(), name, spec, store)
    }

    /// [`Case::build`] with `cmd` as the `buildimage` to run.
    pub fn build_with(
        &self,
        mut cmd: Buildimage,
        name: &str,
        spec: &Value,
        store: Option<&Path>,
    ) -> Built {
        let spec = self.spec_named(name, spec);
        cmd.build(&spec).out(self.join(format!("{name}.tar")));
        if let Some(store) = store {
            cmd.store(store);
        }
        let built = cmd.json();
        self.assert_clean();
        built
    }

    /// `buildimage build NAME.json -o out/NAME.tar [--store STORE]`, which must fail and leave
    /// no output (not even a temporary one), an empty `TMPDIR` and nothing mounted. Returns
    /// its standard error.
    pub fn build_fails(&self, name: &str, spec: &Value, store: Option<&Path>) -> String {
        let spec = self.spec_named(name, spec);
        let out_dir = self.join("out");
        fs::create_dir_all(&out_dir).expect("create out/");
        let mut cmd = self.buildimage();
        cmd.build(&spec).out(out_dir.join(format!("{name}.tar")));
        if let Some(store) = store {
            cmd.store(store);
        }
        let output = cmd.run_err();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(
            names(&out_dir),
            Vec::<String>::new(),
            "a failed build leaves no output file:\n{stderr}"
        );
        self.assert_clean();
        stderr
    }

    /// `TMPDIR` is empty and no process has anything mounted below the folder.
    pub fn assert_clean(&self) {
        self.assert_tmp_empty();
        assert_nothing_mounted(self.path());
    }
}

/// Builds `NAME.tar`, a pure-mode busybox image (no compression) to use as `fromImage`:
/// a busybox root with [`ROOT_APPLETS`], after `extra` added to it, and `config`.
pub fn base_image(case: &Case, name: &str, config: &Value, extra: impl FnOnce(&Path)) -> Built {
    let root = busybox_root(&case.join(format!("{name}-root")), &ROOT_APPLETS);
    extra(&root);
    case.build(
        name,
        &serde_json::json!({
            "name": format!("buildimage-test/{name}"),
            "tag": "latest",
            "copyToRoot": format!("{name}-root"),
            "config": config,
            "compressor": "none",
        }),
        None,
    )
}

/// The names of `members`, in archive order.
pub fn member_names(members: &[Member]) -> Vec<String> {
    members.iter().map(Member::name).collect()
}

/// Makes the fake store path `STORE/nix/store/<hash>-<name>` (`hash`: 32 characters of
/// Nix's base-32 alphabet), read-only as in a real store. When `busybox_links` is not empty
/// it holds `bin/busybox` with those links to it in `bin/`; `files` adds (path below the
/// store path, contents, mode). Returns the store path (`/nix/store/...`).
pub fn store_path(
    store: &Path,
    hash: &str,
    name: &str,
    busybox_links: &[&str],
    files: &[(&str, &[u8], u32)],
) -> String {
    let path = format!("/nix/store/{hash}-{name}");
    let host = store.join(path.trim_start_matches('/'));
    fs::create_dir_all(host.join("bin"))
        .unwrap_or_else(|err| panic!("cannot create {}: {err}", host.display()));
    if !busybox_links.is_empty() {
        write(&host.join("bin/busybox"), &static_busybox(), 0o555);
        for link in busybox_links {
            buildimage_test_support::ln_s("busybox", &host.join("bin").join(link));
        }
    }
    for (rel, data, mode) in files {
        write(&host.join(rel), data, *mode);
    }
    chmod(&host.join("bin"), 0o555);
    chmod(&host, 0o555);
    path
}
