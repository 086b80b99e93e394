//! `extraCommands` (docs/formats.md §1.6): run in the layer root, their files
//! packed, their failure a failed build that leaves nothing behind.

use serde_json::json;

use super::{build_in, test_dir};
use buildimage_test_support::{Buildimage, Image, chmod, mkdir, names, stderr, write};

#[test]
fn extra_commands_run_in_the_layer_root_and_their_files_are_packed() {
    let scratch = test_dir();
    let root = scratch.join("root");
    mkdir(&root, 0o755);
    mkdir(&root.join("etc"), 0o755);
    write(&root.join("etc/greeting"), b"hello", 0o644);
    // Relative paths, as nixpkgs scripts are written; double quotes and parentheses as in
    // the runAsRootExtraCommands regression test.
    let script = r#"mkdir -p data/sub
echo "(extraCommand)" > extraCommands
cat etc/greeting > data/copy
ln -s ../etc/greeting data/sub/link
rm etc/greeting
pwd > data/pwd"#;
    let (image, _) = build_in(
        &scratch,
        &json!({
            "name": "extra", "tag": "t", "copyToRoot": "root", "compressor": "none",
            "extraCommands": script,
        }),
    );
    assert_eq!(
        image.layer_listing(),
        [
            "d 0775 0:0 root/root ./",
            "d 0755 0:0 root/root ./data/",
            "- 0644 0:0 root/root ./data/copy",
            "- 0644 0:0 root/root ./data/pwd",
            "d 0755 0:0 root/root ./data/sub/",
            "l 0777 0:0 root/root ./data/sub/link -> ../etc/greeting",
            "d 0755 0:0 root/root ./etc/",
            "- 0644 0:0 root/root ./extraCommands",
        ]
    );
    assert_eq!(image.layer_file("./extraCommands"), b"(extraCommand)\n");
    assert_eq!(image.layer_file("./data/copy"), b"hello");
    // The script ran in a staging folder, not in the source or the caller's folder.
    let pwd = String::from_utf8(image.layer_file("./data/pwd")).expect("UTF-8 pwd");
    assert!(
        !pwd.starts_with(&*scratch.path().to_string_lossy()),
        "{pwd}"
    );
    assert!(
        root.join("etc/greeting").is_file(),
        "the source is untouched"
    );
    assert!(!scratch.join("data").exists());
}

#[test]
fn failing_extra_commands_fail_the_build_and_leave_nothing_behind() {
    let scratch = test_dir();
    let tmpdir = scratch.join("tmp");
    mkdir(&tmpdir, 0o700);
    let out_dir = scratch.join("out");
    mkdir(&out_dir, 0o755);
    // Read-only folders, as copied from the store, must not stop the staging cleanup.
    let root = scratch.join("root");
    mkdir(&root.join("ro"), 0o755);
    write(&root.join("ro/file"), b"read-only", 0o444);
    chmod(&root.join("ro"), 0o555);
    chmod(&root, 0o555);
    let spec_path = scratch.spec(&json!({
        "name": "failing", "tag": "t", "copyToRoot": "root",
        "extraCommands": "mkdir made\necho 'custom failure message' >&2\nexit 3\necho not-reached > late",
    }));
    let output = Buildimage::new()
        .cwd(scratch.path())
        .env("TMPDIR", &tmpdir)
        .build(&spec_path)
        .out(out_dir.join("image.tar.gz"))
        .run_err();
    let stderr = stderr(&output);
    assert!(
        stderr.contains("custom failure message"),
        "the script's stderr: {stderr}"
    );
    let error = stderr
        .lines()
        .find(|line| line.starts_with("error:"))
        .unwrap_or_else(|| panic!("an error line: {stderr}"));
    assert!(error.contains("extraCommands"), "{error}");
    assert!(error.contains("exit status 3"), "{error}");
    assert!(output.stdout.is_empty());
    assert!(names(&out_dir).is_empty(), "{:?}", names(&out_dir));
    assert!(
        names(&tmpdir).is_empty(),
        "no buildimage-stage.* left: {:?}",
        names(&tmpdir)
    );
}

#[test]
fn extra_commands_files_get_umask_022_modes_under_a_strict_caller_umask() {
    let scratch = test_dir();
    let spec_path = scratch.spec(&json!({
        "name": "umask", "tag": "t", "compressor": "none",
        "extraCommands": "mkdir -p dir/sub; echo x > dir/file; touch top; umask",
    }));
    let out = scratch.join("image.tar");
    let output = Buildimage::new()
        .cwd(scratch.path())
        .umask("077")
        .build(&spec_path)
        .out(&out)
        .run_ok();
    assert_eq!(
        Image::open(&out).layer_listing(),
        [
            "d 0775 0:0 root/root ./",
            "d 0755 0:0 root/root ./dir/",
            "- 0644 0:0 root/root ./dir/file",
            "d 0755 0:0 root/root ./dir/sub/",
            "- 0644 0:0 root/root ./top",
        ]
    );
    // The script's output (here `umask`) goes to standard error.
    assert!(stderr(&output).contains("0022"), "{}", stderr(&output));
}

#[test]
fn extra_commands_stdout_stays_out_of_the_image_stream() {
    let scratch = test_dir();
    let marker = "MARKER-FROM-EXTRA-COMMANDS";
    let spec_path = scratch.spec(&json!({
        "name": "stdout", "tag": "t", "compressor": "none",
        "extraCommands": format!("echo {marker}; printf '%s' {marker} > file"),
    }));
    let output = Buildimage::new()
        .cwd(scratch.path())
        .build(&spec_path)
        .out("-")
        .run_ok();
    let image = Image::from_bytes(&output.stdout);
    assert_eq!(image.layer_file("./file"), marker.as_bytes());
    // The marker appears in the stream once: inside the layer file, not as loose text.
    let hits = output
        .stdout
        .windows(marker.len())
        .filter(|w| *w == marker.as_bytes())
        .count();
    assert_eq!(hits, 1);
    assert!(stderr(&output).contains(marker), "{}", stderr(&output));
    // The stream is exactly an archive: whole 10 240-byte records.
    assert_eq!(output.stdout.len() % 10_240, 0);
}
