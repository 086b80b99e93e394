//! Tests of the test harness itself (`buildimage_test_support`): a docker-archive built
//! by hand with [`BaseImage`], without any buildimage code, must load and run in Docker
//! and unpack with skopeo and umoci. When these fail, the environment or the harness is
//! broken, not buildimage.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

use buildimage_test_support::{
    BaseImage, Member, TestDir, diff_id, docker, docker_host, gzip, listing, require_tool, run_ok,
    static_busybox, unpack_oci, write_tar, zstd_compress,
};

/// The command the hand-made image runs by default, and its output.
const CMD: [&str; 3] = ["/bin/busybox", "echo", "ok"];

/// A test folder holding one hand-made legacy docker-archive.
struct Fixture {
    dir: TestDir,
    /// The plain `.tar` archive.
    archive: PathBuf,
    /// The layer's `diff_id`, `sha256:…`.
    diff_id: String,
}

impl Fixture {
    /// Writes `harness.tar`: a legacy docker-archive (`manifest.json`, `repositories`,
    /// `<sha256>.json`, `<layer id>/{VERSION,json,layer.tar}`) whose one layer holds
    /// `bin/busybox` (a copy of the host's, mode 0755) and `bin/sh -> busybox`, tagged
    /// `repo_tag`.
    fn new(repo_tag: &str) -> Fixture {
        let dir = TestDir::new("bi-harness.");
        let layer = write_tar(
            &[
                Member::dir("bin/", 0o755),
                Member::file("bin/busybox", static_busybox(), 0o755),
                Member::symlink("bin/sh", "busybox"),
            ],
            false,
        );
        let diff_id = diff_id(&layer);
        let archive = dir.join("harness.tar");
        BaseImage::new(repo_tag)
            .layer(layer)
            .config(serde_json::json!({
                "created": "1970-01-01T00:00:01Z",
                "config": { "Cmd": CMD, "Env": ["PATH=/bin"] },
            }))
            .save(&archive);
        Fixture {
            dir,
            archive,
            diff_id,
        }
    }

    /// The archive compressed as a whole with gzip, as `harness.tar.gz`.
    fn gzip(&self) -> PathBuf {
        self.compressed("harness.tar.gz", gzip)
    }

    /// The archive compressed as a whole with zstd, as `harness.tar.zst`.
    fn zstd(&self) -> PathBuf {
        self.compressed("harness.tar.zst", zstd_compress)
    }

    fn compressed(&self, name: &str, compress: fn(&[u8]) -> Vec<u8>) -> PathBuf {
        let out = self.dir.join(name);
        let plain = fs::read(&self.archive).expect("read harness.tar");
        fs::write(&out, compress(&plain)).expect("write the compressed archive");
        out
    }
}

#[test]
fn docker_loads_runs_and_removes_a_handmade_archive() {
    let fixture = Fixture::new("buildimage-test/harness:plain");
    let docker = docker();
    let image = docker.load_guarded(&fixture.archive);
    assert_eq!(image.name(), "buildimage-test/harness:plain");

    let run = docker.run(image.name(), &CMD);
    assert_eq!(run.assert_success(), "ok\n");
    // The image's own Cmd, and an unprivileged user, through the extra flags.
    let run = docker.run_with(image.name(), &["--user", "1000:1000"], &[]);
    assert_eq!(run.assert_success(), "ok\n");
    let run = docker.run(image.name(), &["/bin/sh", "-c", "exit 3"]);
    assert_eq!(run.status.code(), Some(3), "{run:?}");

    assert_eq!(
        docker.inspect(image.name(), "{{json .Config.Cmd}}"),
        r#"["/bin/busybox","echo","ok"]"#
    );
    assert_eq!(
        docker.inspect(image.name(), "{{json .RootFS.Layers}}"),
        format!(r#"["{}"]"#, fixture.diff_id)
    );

    drop(image);
    assert!(
        !docker.has_image("buildimage-test/harness:plain"),
        "the guard removes the image"
    );
}

#[test]
fn docker_loads_gzip_and_zstd_archives() {
    let fixture = Fixture::new("buildimage-test/harness:compressed");
    let docker = docker();
    for archive in [fixture.gzip(), fixture.zstd()] {
        let image = docker.load_guarded(&archive);
        assert_eq!(image.name(), "buildimage-test/harness:compressed");
        let run = docker.run(image.name(), &CMD);
        assert_eq!(run.assert_success(), "ok\n", "{}", archive.display());
    }
    assert!(!docker.has_image("buildimage-test/harness:compressed"));
}

#[test]
fn skopeo_and_umoci_unpack_plain_gzip_and_zstd_archives() {
    let fixture = Fixture::new("buildimage-test/harness:oci");
    let busybox = static_busybox();
    for archive in [fixture.archive.clone(), fixture.gzip(), fixture.zstd()] {
        let unpacked = unpack_oci(&archive);
        let listing = unpacked.listing();
        let (root, entries) = listing.split_first().expect("a non-empty listing");
        // umoci creates the root directory itself, with its own mode.
        assert!(
            root.starts_with('d') && root.ends_with(" 0:0 3 ."),
            "{root}"
        );
        assert_eq!(
            entries,
            [
                "drwxr-xr-x 0:0 2 ./bin",
                "-rwxr-xr-x 0:0 1 ./bin/busybox",
                "lrwxrwxrwx 0:0 1 ./bin/sh busybox",
            ],
            "{}",
            archive.display()
        );
        assert_eq!(
            fs::read(unpacked.rootfs().join("bin/busybox")).expect("read unpacked busybox"),
            busybox
        );
        let config = unpacked.config_json();
        assert_eq!(config["process"]["args"], serde_json::json!(CMD));
        assert!(unpacked.oci_layout().join("index.json").is_file());
    }
}

#[test]
fn listing_matches_find() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let root = dir.path();
    let mkdir = |path: &str, mode: u32| {
        let path = root.join(path);
        fs::create_dir(&path).expect("mkdir");
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
    };
    let write = |path: &str, mode: u32| {
        let path = root.join(path);
        fs::write(&path, path.to_string_lossy().as_bytes()).expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
    };
    mkdir("a", 0o755);
    mkdir("a-b", 0o700);
    mkdir("tmp", 0o1777);
    mkdir("sticky-no-x", 0o1776);
    write("a/suid", 0o4755);
    write("a/sgid-no-x", 0o2644);
    write("a/suid-no-x", 0o4644);
    write("a-b/plain", 0o640);
    fs::hard_link(root.join("a/suid"), root.join("a/hardlink")).expect("hard link");
    std::os::unix::fs::symlink("../a/suid", root.join("a-b/link")).expect("symlink");
    std::os::unix::fs::symlink("dangling", root.join("dangling")).expect("symlink");
    run_ok(Command::new("mkfifo").arg(root.join("a/fifo")));

    let find = run_ok(Command::new("sh").current_dir(root).args([
        "-c",
        r"find . -printf '%M %U:%G %n %p %l\n' | LC_ALL=C sort -k4",
    ]));
    let find = String::from_utf8(find.stdout).expect("find prints UTF-8 here");
    let find: Vec<&str> = find.lines().map(str::trim_end).collect();
    assert_eq!(listing(root), find);
    assert!(find.iter().any(|line| line.starts_with("-rwsr-xr-x ")));
    assert!(find.iter().any(|line| line.starts_with("drwxrwxrwt ")));
    assert!(find.iter().any(|line| line.starts_with("drwxrwxrwT ")));
    assert!(find.iter().any(|line| line.starts_with("-rw-r-Sr-- ")));
    assert!(find.iter().any(|line| line.starts_with("prw-")));
}

#[test]
#[should_panic(
    expected = "`no-such-tool-xyz` not found in PATH: install it with apt-get install \
                no-such-package (cargo xtask ci does this)"
)]
fn require_tool_names_the_package() {
    require_tool("no-such-tool-xyz", "no-such-package");
}

#[test]
#[should_panic(
    expected = "tests that need Docker run under `cargo xtask ci`, or `cargo xtask dockerd -- cargo test ...`"
)]
fn docker_host_unset_says_how_to_run() {
    docker_host(None);
}
