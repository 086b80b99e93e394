//! Tests of the test harness itself (`support`): a docker-archive built by hand, without
//! any buildimage code, must load and run in Docker and unpack with skopeo and umoci.
//! When these fail, the environment or the harness is broken, not buildimage.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

use crate::support;
use crate::support::sha256_hex;

/// Debian's statically linked busybox (package busybox-static): runs in an image that
/// has nothing else.
const BUSYBOX: &str = "/bin/busybox";

/// The command the hand-made image runs by default, and its output.
const CMD: [&str; 3] = ["/bin/busybox", "echo", "ok"];

/// A scratch directory holding one hand-made legacy docker-archive.
struct Fixture {
    dir: tempfile::TempDir,
    /// The plain `.tar` archive.
    archive: PathBuf,
    /// The layer's `diff_id`, `sha256:…`.
    diff_id: String,
}

impl Fixture {
    /// Writes `harness.tar`: a legacy docker-archive (`manifest.json`, `repositories`,
    /// `<sha256>.json`, `<layer id>/{VERSION,json,layer.tar}`) whose one layer holds
    /// `bin/busybox` and `bin/sh -> busybox`, tagged `repo_tag`.
    fn new(repo_tag: &str) -> Fixture {
        support::require_tool("busybox", "busybox-static");
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let layer = layer_tar();
        let layer_hex = sha256_hex(&layer);
        let diff_id = format!("sha256:{layer_hex}");

        let config = serde_json::json!({
            "architecture": docker_arch(),
            "os": "linux",
            "created": "1970-01-01T00:00:01Z",
            "config": { "Cmd": CMD, "Env": ["PATH=/bin"] },
            "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        });
        let config = serde_json::to_vec(&config).expect("serialise config");
        let config_name = format!("{}.json", sha256_hex(&config));
        let (repo, tag) = repo_tag.rsplit_once(':').expect("repo_tag is NAME:TAG");
        let manifest = serde_json::json!([{
            "Config": config_name,
            "RepoTags": [repo_tag],
            "Layers": [format!("{layer_hex}/layer.tar")],
        }]);
        let repositories = serde_json::json!({ repo: { tag: layer_hex } });
        let layer_json = serde_json::json!({ "id": layer_hex });

        let archive = dir.path().join("harness.tar");
        let mut builder = tar::Builder::new(fs::File::create(&archive).expect("create archive"));
        builder.mode(tar::HeaderMode::Deterministic);
        builder.follow_symlinks(false);
        append_dir(&mut builder, &format!("{layer_hex}/"));
        append_file(&mut builder, &format!("{layer_hex}/VERSION"), b"1.0", 0o644);
        append_file(
            &mut builder,
            &format!("{layer_hex}/json"),
            &serde_json::to_vec(&layer_json).expect("serialise layer json"),
            0o644,
        );
        append_file(
            &mut builder,
            &format!("{layer_hex}/layer.tar"),
            &layer,
            0o644,
        );
        append_file(&mut builder, &config_name, &config, 0o644);
        append_file(
            &mut builder,
            "manifest.json",
            &serde_json::to_vec(&manifest).expect("serialise manifest"),
            0o644,
        );
        append_file(
            &mut builder,
            "repositories",
            &serde_json::to_vec(&repositories).expect("serialise repositories"),
            0o644,
        );
        builder.into_inner().expect("finish archive");
        Fixture {
            dir,
            archive,
            diff_id,
        }
    }

    /// The archive compressed as a whole with `gzip -n`, as `harness.tar.gz`.
    fn gzip(&self) -> PathBuf {
        self.compress("gzip", "gzip", &["-n", "-c"], "harness.tar.gz")
    }

    /// The archive compressed as a whole with `zstd`, as `harness.tar.zst`.
    fn zstd(&self) -> PathBuf {
        self.compress("zstd", "zstd", &["-q", "-c"], "harness.tar.zst")
    }

    fn compress(&self, tool: &str, package: &str, args: &[&str], name: &str) -> PathBuf {
        support::require_tool(tool, package);
        let out = self.dir.path().join(name);
        let file = fs::File::create(&out).expect("create compressed archive");
        support::run_ok(
            Command::new(tool)
                .args(args)
                .arg(&self.archive)
                .stdout(file),
        );
        out
    }
}

/// The layer: `bin/`, `bin/busybox` (a copy of the host's, mode 0755) and
/// `bin/sh -> busybox`, owned by root, mtime 1.
fn layer_tar() -> Vec<u8> {
    let busybox = fs::read(BUSYBOX).expect("read /bin/busybox");
    let mut builder = tar::Builder::new(Vec::new());
    builder.mode(tar::HeaderMode::Deterministic);
    builder.follow_symlinks(false);
    append_dir(&mut builder, "bin/");
    append_file(&mut builder, "bin/busybox", &busybox, 0o755);
    let mut header = header(tar::EntryType::Symlink, 0o777, 0);
    builder
        .append_link(&mut header, "bin/sh", "busybox")
        .expect("append symlink");
    builder.into_inner().expect("finish layer")
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(1);
    header.set_size(size);
    header
}

fn append_dir<W: std::io::Write>(builder: &mut tar::Builder<W>, path: &str) {
    let mut header = header(tar::EntryType::Directory, 0o755, 0);
    builder
        .append_data(&mut header, path, std::io::empty())
        .expect("append directory");
}

fn append_file<W: std::io::Write>(
    builder: &mut tar::Builder<W>,
    path: &str,
    data: &[u8],
    mode: u32,
) {
    let mut header = header(tar::EntryType::Regular, mode, data.len() as u64);
    builder
        .append_data(&mut header, path, data)
        .expect("append file");
}

/// The host architecture in Docker's (GOARCH) spelling.
fn docker_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

#[test]
fn docker_loads_runs_and_removes_a_handmade_archive() {
    let fixture = Fixture::new("buildimage-test/harness:plain");
    let docker = support::docker();
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
    let docker = support::docker();
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
    let busybox = fs::read(BUSYBOX).expect("read /bin/busybox");
    for archive in [fixture.archive.clone(), fixture.gzip(), fixture.zstd()] {
        let unpacked = support::unpack_oci(&archive);
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
    support::run_ok(Command::new("mkfifo").arg(root.join("a/fifo")));

    let find = support::run_ok(Command::new("sh").current_dir(root).args([
        "-c",
        r"find . -printf '%M %U:%G %n %p %l\n' | LC_ALL=C sort -k4",
    ]));
    let find = String::from_utf8(find.stdout).expect("find prints UTF-8 here");
    let find: Vec<&str> = find.lines().map(str::trim_end).collect();
    assert_eq!(support::listing(root), find);
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
    support::require_tool("no-such-tool-xyz", "no-such-package");
}

#[test]
#[should_panic(
    expected = "tests that need Docker run under `cargo xtask ci`, or `cargo xtask dockerd -- cargo test ...`"
)]
fn docker_host_unset_says_how_to_run() {
    support::docker_host(None);
}
