//! A full disk, on a 4 MiB tmpfs: under OUT, or under `TMPDIR` where `extraCommands`
//! stages the layer and `fromImage` unpacks the base. The build fails with the system's
//! "No space left on device" and the path concerned, and frees what it wrote.

use std::fs;
use std::path::Path;

use serde_json::{Value, json};

use buildimage_test_support::{
    Buildimage, ROOT_APPLETS, TestDir, assert_nothing_mounted, busybox_root, mkdir, names, stderr,
    write,
};

use super::{Tmpfs, noise, test_dir};

/// Size of the tmpfs: smaller than any image below.
const DISK: &str = "4m";

/// Size of the source file: more than [`DISK`] holds, compressed or not.
const SOURCE_SIZE: usize = 6 << 20;

/// The message of `ENOSPC`.
const ENOSPC: &str = "No space left on device";

/// A source tree `root/` with one incompressible file larger than the tmpfs.
fn big_source(scratch: &TestDir) {
    mkdir(&scratch.join("root"), 0o755);
    write(&scratch.join("root/noise"), &noise(SOURCE_SIZE, 1), 0o644);
}

/// Builds `spec` with `-o out` and the given `TMPDIR`, expects the failure, and returns
/// the line of standard error that starts with `error: `.
fn build_fails(scratch: &TestDir, spec: &Value, out: &Path, tmpdir: Option<&Path>) -> String {
    let spec_path = scratch.spec(spec);
    let mut cmd = Buildimage::new();
    cmd.cwd(scratch.path());
    cmd.build(&spec_path).out(out);
    if let Some(tmpdir) = tmpdir {
        cmd.env("TMPDIR", tmpdir);
    }
    let output = cmd.run_err();
    let stderr = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(output.stdout.is_empty(), "nothing on standard output");
    stderr
        .lines()
        .find(|line| line.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line:\n{stderr}"))
        .to_owned()
}

/// Builds `spec` into `out/image.tar` with `TMPDIR` on a fresh tmpfs of `size`, expects
/// the failure, checks that it left nothing (an empty `TMPDIR`, no output, no mount in any
/// process, as `runAsRoot`'s overlay could leave) and returns its `error: ` line.
fn fails_with_tmpdir_of(scratch: &TestDir, spec: &Value, size: &str) -> String {
    let out = scratch.join("out");
    fs::create_dir_all(&out).expect("create out/");
    let tmp = Tmpfs::mount(size);
    let error = build_fails(scratch, spec, &out.join("image.tar"), Some(tmp.path()));
    assert_eq!(
        names(tmp.path()),
        Vec::<String>::new(),
        "TMPDIR is empty: {error}"
    );
    assert_eq!(names(&out), Vec::<String>::new(), "no output: {error}");
    assert_nothing_mounted(tmp.path());
    assert_nothing_mounted(scratch.path());
    error
}

#[test]
fn full_output_disk_fails_naming_the_output_and_leaves_nothing() {
    let scratch = test_dir();
    big_source(&scratch);
    for compressor in ["none", "gz", "zstd"] {
        let disk = Tmpfs::mount(DISK);
        let out = disk.join("image.tar");
        let spec = json!({
            "name": "full", "tag": "t", "copyToRoot": "root", "compressor": compressor,
        });
        let error = build_fails(&scratch, &spec, &out, None);
        assert!(
            error.contains(&out.display().to_string()) && error.contains(ENOSPC),
            "{compressor}: the error names the output and the cause: {error}"
        );
        assert_eq!(
            names(disk.path()),
            Vec::<String>::new(),
            "{compressor}: no image and no temporary file on the full disk"
        );

        // An image already at OUT is left exactly as it was.
        write(&out, b"the previous image", 0o644);
        let error = build_fails(&scratch, &spec, &out, None);
        assert!(error.contains(ENOSPC), "{compressor}: {error}");
        assert_eq!(names(disk.path()), ["image.tar"], "{compressor}");
        assert_eq!(
            fs::read(&out).expect("read OUT"),
            b"the previous image",
            "{compressor}: the previous image is untouched"
        );
    }
}

#[test]
fn full_disk_under_an_oci_layout_leaves_the_layout_as_it_was() {
    let scratch = test_dir();
    mkdir(&scratch.join("small"), 0o755);
    write(&scratch.join("small/file"), b"a small image", 0o644);
    big_source(&scratch);
    for (transport, compressor) in [("oci", "none"), ("oci", "zstd"), ("oci-archive", "gz")] {
        let disk = Tmpfs::mount(DISK);
        let layout = disk.join("layout");
        // A first, small image fits.
        let small = json!({ "name": "small", "tag": "one", "copyToRoot": "small", "compressor": compressor });
        let spec_path = scratch.spec(&small);
        let dest = format!("{transport}:{}", layout.display());
        Buildimage::new()
            .cwd(scratch.path())
            .build(&spec_path)
            .out(&dest)
            .arg("--no-cache")
            .run_ok();
        let before = listing_of(disk.path());
        // The second does not: the error names the cause, and the layout (or archive) is
        // as the first build left it, with no partial blob or temporary file.
        let big =
            json!({ "name": "full", "tag": "two", "copyToRoot": "root", "compressor": compressor });
        let spec_path = scratch.spec(&big);
        let output = Buildimage::new()
            .cwd(scratch.path())
            .build(&spec_path)
            .out(&dest)
            .arg("--no-cache")
            .run_err();
        let error = stderr(&output);
        assert!(error.contains(ENOSPC), "{transport} {compressor}: {error}");
        assert_eq!(
            listing_of(disk.path()),
            before,
            "{transport} {compressor}: {error}"
        );
    }
}

/// Every path below `dir` with its size, sorted.
fn listing_of(dir: &Path) -> Vec<(String, u64)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(folder) = stack.pop() {
        for entry in fs::read_dir(&folder).expect("read a folder") {
            let entry = entry.expect("a folder entry");
            let md = entry.metadata().expect("stat");
            if md.is_dir() {
                stack.push(entry.path());
            }
            let rel = entry
                .path()
                .strip_prefix(dir)
                .unwrap()
                .display()
                .to_string();
            found.push((rel, if md.is_dir() { 0 } else { md.len() }));
        }
    }
    found.sort();
    found
}

#[test]
fn full_tmpdir_fails_staging_for_extra_commands_and_leaves_nothing() {
    let scratch = test_dir();
    big_source(&scratch);
    let spec = json!({
        "name": "staging", "tag": "t", "copyToRoot": "root", "compressor": "none",
        "extraCommands": "touch made-by-the-script",
    });
    let error = fails_with_tmpdir_of(&scratch, &spec, DISK);
    // The path named is the file being copied (`stage::materialize` reports the source of
    // a failed copy, whichever side failed), not the staging folder.
    assert!(
        error.contains("Key `extraCommands`: Staging the layer failed") && error.contains(ENOSPC),
        "the error says staging failed and why: {error}"
    );
}

#[test]
fn extra_commands_that_fill_tmpdir_fail_and_leave_nothing() {
    let scratch = test_dir();
    mkdir(&scratch.join("root"), 0o755);
    write(&scratch.join("root/small"), b"small", 0o644);
    let spec = json!({
        "name": "script-fills", "tag": "t", "copyToRoot": "root", "compressor": "none",
        "extraCommands": "head -c 8388608 /dev/zero > big",
    });
    let error = fails_with_tmpdir_of(&scratch, &spec, DISK);
    assert!(
        error.contains("Key `extraCommands`: The script failed with exit status 1"),
        "{error}"
    );
}

/// Builds the folder `root` as a base image at `file`.
fn base_of(scratch: &TestDir, root: &str, compressor: &str, file: &str) {
    Buildimage::new()
        .cwd(scratch.path())
        .build(scratch.spec(&json!({
            "name": "base", "tag": "t", "copyToRoot": root, "compressor": compressor,
        })))
        .out(scratch.join(file))
        .run_ok();
}

#[test]
fn full_tmpdir_fails_unpacking_from_image_and_leaves_nothing() {
    let scratch = test_dir();
    big_source(&scratch);
    base_of(&scratch, "root", "gz", "base.tar.gz");
    let spec = json!({
        "name": "on-base", "tag": "t", "fromImage": "base.tar.gz", "compressor": "none",
    });
    let error = fails_with_tmpdir_of(&scratch, &spec, DISK);
    assert!(
        error.contains("fromImage") && error.contains(ENOSPC),
        "the error names the key and the cause: {error}"
    );
}

// `runAsRoot` writes to `TMPDIR` in three places: the extracted base layers (the overlay's
// lower folders), the staged `copyToRoot` (its upper folder), and whatever the script
// writes there.

#[test]
fn full_tmpdir_fails_staging_for_run_as_root_and_leaves_nothing() {
    let scratch = test_dir();
    big_source(&scratch);
    busybox_root(&scratch.join("bb"), &ROOT_APPLETS);
    let spec = json!({
        "name": "root-staging", "tag": "t", "copyToRoot": ["bb", "root"],
        "compressor": "none", "runAsRoot": "touch /made-by-the-script",
    });
    let error = fails_with_tmpdir_of(&scratch, &spec, DISK);
    assert!(
        error.contains("Key `runAsRoot`: Staging the copied folders failed")
            && error.contains(ENOSPC),
        "the error says staging failed and why: {error}"
    );
}

#[test]
fn run_as_root_that_fills_tmpdir_fails_and_leaves_nothing() {
    let scratch = test_dir();
    busybox_root(&scratch.join("bb"), &ROOT_APPLETS);
    // Three copies of the 2 MB busybox do not fit beside the staged one on 4 MiB.
    let spec = json!({
        "name": "root-fills", "tag": "t", "copyToRoot": "bb", "compressor": "none",
        "runAsRoot": "cat /bin/busybox /bin/busybox /bin/busybox > /big",
    });
    let error = fails_with_tmpdir_of(&scratch, &spec, DISK);
    // The script fails on the full disk, or is stopped first when the free space falls
    // below the reserve (whichever the 50 ms watch sees first).
    assert!(
        error.contains("runAsRoot")
            && (error.contains("exit status 1") || error.contains("had less than")),
        "the error names the script and why it stopped: {error}"
    );
}

#[test]
fn full_tmpdir_fails_extracting_base_layers_for_run_as_root_and_leaves_nothing() {
    let scratch = test_dir();
    busybox_root(&scratch.join("bb"), &ROOT_APPLETS);
    write(&scratch.join("bb/noise"), &noise(3 << 20, 2), 0o644);
    base_of(&scratch, "bb", "none", "base.tar");
    let spec = json!({
        "name": "root-lower", "tag": "t", "fromImage": "base.tar", "compressor": "none",
        "runAsRoot": "touch /made-by-the-script",
    });
    // Room for the base's layer (5 MB) once, not twice: reading the base succeeds, and
    // extracting its layer as the overlay's lower folder runs out of space.
    let error = fails_with_tmpdir_of(&scratch, &spec, "8m");
    assert!(
        error.contains("Key `fromImage`: Cannot extract layer") && error.contains(ENOSPC),
        "the error names the key, the layer and the cause: {error}"
    );
}
