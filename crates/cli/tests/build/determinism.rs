//! Identical inputs give identical bytes, whatever the machine's state (docs/formats.md
//! §13.2); the automatic tag and `created = "now"` (§4.8).

use std::fs::{self, File};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::test_dir;
use buildimage_test_support::{
    Buildimage, DEFAULT_CREATED, Image, TestDir, chmod, ln_s, mkdir, require_tool, run_ok, write,
};

/// What a test tree holds, parents before children: `(path, mode, content)`, where a
/// content of `None` is a folder and a path starting with `@` is a symlink whose
/// "content" is its target.
const TREE: &[(&str, u32, Option<&str>)] = &[
    ("bin", 0o555, None),
    ("bin/tool", 0o555, Some("#!/bin/sh\necho tool\n")),
    ("etc", 0o755, None),
    ("etc/Zeta", 0o644, Some("Z")),
    ("etc/alpha", 0o600, Some("a")),
    ("etc/beta.d", 0o750, None),
    ("etc/beta.d/conf", 0o640, Some("conf")),
    ("etc/beta-x", 0o644, Some("b")),
    ("@etc/link", 0o777, Some("alpha")),
    ("share", 0o755, None),
    ("share/\u{e9}t\u{e9}", 0o644, Some("summer")),
    ("share/empty", 0o755, None),
];

/// Creates [`TREE`] under `root`, in forward or reverse order, then gives every entry the
/// modification time `base + index` and its mode.
fn make_tree(root: &Path, reverse: bool, base: u64) {
    mkdir(root, 0o755);
    let order: Vec<usize> = if reverse {
        (0..TREE.len()).rev().collect()
    } else {
        (0..TREE.len()).collect()
    };
    for &index in &order {
        let (path, _, content) = TREE[index];
        if let Some(link) = path.strip_prefix('@') {
            let at = root.join(link);
            fs::create_dir_all(at.parent().expect("a parent")).expect("mkdir -p");
            ln_s(content.expect("a link target"), &at);
            continue;
        }
        let at = root.join(path);
        match content {
            None => fs::create_dir_all(&at).expect("mkdir -p"),
            Some(text) => {
                fs::create_dir_all(at.parent().expect("a parent")).expect("mkdir -p");
                fs::write(&at, text).expect("write");
            }
        }
    }
    // Times and modes last: creating children changes a folder's time, and a read-only
    // folder takes no children. Deepest first.
    for &index in order.iter().rev() {
        let (path, _, _) = TREE[index];
        if path.starts_with('@') {
            continue;
        }
        let at = root.join(path);
        let time = UNIX_EPOCH + Duration::from_secs(base + index as u64);
        File::open(&at)
            .and_then(|f| f.set_modified(time))
            .unwrap_or_else(|err| panic!("set the time of {}: {err}", at.display()));
    }
    for (path, mode, _) in TREE.iter().rev() {
        if !path.starts_with('@') {
            chmod(&root.join(path), *mode);
        }
    }
}

/// A spec whose script output depends on the locale, the time zone and the umask, unless
/// buildimage fixes them as a Nix build does.
fn spec(compressor: &str) -> Value {
    json!({
        "name": "determinism",
        "copyToRoot": ["tree"],
        "compressor": compressor,
        "uid": 1000,
        "gid": 100,
        "config": { "Cmd": ["/bin/tool"], "Env": ["PATH=/bin"] },
        "extraCommands": "mkdir -p var/log\nls -a etc > var/log/listing\ndate -d @0 '+%c %Z' > var/log/epoch\ntouch var/log/touched",
    })
}

/// The first CPU this process may run on, for `taskset`.
fn first_cpu() -> String {
    let status = fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let list = status
        .lines()
        .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
        .expect("Cpus_allowed_list in /proc/self/status");
    list.trim()
        .split([',', '-'])
        .next()
        .expect("a CPU")
        .to_owned()
}

#[test]
fn same_inputs_give_identical_bytes_for_every_compressor() {
    require_tool("taskset", "util-linux");
    let first = test_dir();
    let second = test_dir();
    make_tree(&first.join("tree"), false, 1_000_000_000);
    make_tree(&second.join("tree"), true, 1_600_000_000);
    for compressor in ["none", "gz", "zstd"] {
        let spec_first = first.spec(&spec(compressor));
        let spec_second = second.spec(&spec(compressor));
        let out_first = first.join(format!("image-{compressor}"));
        let out_second = second.join(format!("image-{compressor}"));
        Buildimage::new()
            .cwd(first.path())
            .umask("022")
            .env("TZ", "UTC")
            .env("LC_ALL", "C")
            .build(&spec_first)
            .out(&out_first)
            .run_ok();
        // Another umask, time zone, locale and number of cores.
        let bin = Buildimage::bin();
        run_ok(
            Command::new("taskset")
                .current_dir(second.path())
                .env_remove("SOURCE_DATE_EPOCH")
                .env("TZ", "Pacific/Chatham")
                .env("LC_ALL", "en_US.UTF-8")
                .env("LANG", "de_DE.UTF-8")
                .arg("-c")
                .arg(first_cpu())
                .arg("sh")
                .arg("-c")
                .arg("umask 077; exec \"$0\" \"$@\"")
                .arg(&bin)
                .arg("build")
                .arg(&spec_second)
                .arg("-o")
                .arg(&out_second),
        );
        let bytes_first = fs::read(&out_first).expect("read the first image");
        let bytes_second = fs::read(&out_second).expect("read the second image");
        let image = Image::from_bytes(&bytes_first);
        assert!(
            bytes_first == bytes_second,
            "{compressor}: the two builds differ\nfirst layer:\n{:#?}\nsecond layer:\n{:#?}",
            image.layer_listing(),
            Image::from_bytes(&bytes_second).layer_listing()
        );
        if compressor == "none" {
            assert_eq!(
                image.layer_file("./var/log/listing"),
                b".\n..\nZeta\nalpha\nbeta-x\nbeta.d\nlink\n"
            );
            assert_eq!(
                image.layer_file("./var/log/epoch"),
                b"Thu Jan  1 00:00:00 1970 UTC\n"
            );
            assert!(
                image
                    .layer_listing()
                    .contains(&"- 0644 1000:100 / ./var/log/touched".to_owned()),
                "{:?}",
                image.layer_listing()
            );
        }
    }
}

/// Builds the spec in `scratch` and returns the tag from `--json` after checking that the
/// archive carries the same one.
fn auto_tag(scratch: &TestDir) -> String {
    let spec_path = scratch.spec(&json!({ "name": "Auto/Tag", "copyToRoot": "root" }));
    let output = Buildimage::new()
        .cwd(scratch.path())
        .build(&spec_path)
        .out("image.tar.gz")
        .arg("--json")
        .run_ok();
    let info: Value = serde_json::from_slice(&output.stdout).expect("--json prints JSON");
    let tag = info["imageTag"].as_str().expect("imageTag").to_owned();
    let image = Image::open(&scratch.join("image.tar.gz"));
    assert_eq!(
        image.manifest()[0]["RepoTags"],
        json!([format!("auto/tag:{tag}")])
    );
    let repositories: Value =
        serde_json::from_str(image.text("repositories")).expect("repositories is JSON");
    assert_eq!(repositories["auto/tag"][&tag], image.layer_id().as_str());
    tag
}

#[test]
fn automatic_tag_is_nix32_stable_and_follows_the_content() {
    let scratch = test_dir();
    let root = scratch.join("root");
    mkdir(&root, 0o755);
    write(&root.join("file"), b"version 1", 0o644);
    let tag = auto_tag(&scratch);
    assert_eq!(tag.len(), 32, "{tag}");
    assert!(
        tag.chars()
            .all(|c| "0123456789abcdfghijklmnpqrsvwxyz".contains(c)),
        "nix32 alphabet: {tag}"
    );
    assert_eq!(
        auto_tag(&scratch),
        tag,
        "the same content gives the same tag"
    );
    // Same size, same time: only the bytes differ.
    write(&root.join("file"), b"version 2", 0o644);
    let other = auto_tag(&scratch);
    assert_ne!(other, tag, "other content gives another tag");
    write(&root.join("file"), b"version 1", 0o644);
    assert_eq!(auto_tag(&scratch), tag);
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Seconds since the epoch of `YYYY-MM-DDTHH:MM:SS+00:00`, or a panic naming the format.
fn parse_now(text: &str) -> i64 {
    let bytes = text.as_bytes();
    let shape_ok = bytes.len() == 25
        && text.ends_with("+00:00")
        && bytes.iter().take(19).enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            10 => *b == b'T',
            13 | 16 => *b == b':',
            _ => b.is_ascii_digit(),
        });
    assert!(
        shape_ok,
        "created {text:?} is not YYYY-MM-DDTHH:MM:SS+00:00"
    );
    let num = |range: std::ops::Range<usize>| -> i64 { text[range].parse().expect("digits") };
    let days = days_from_civil(num(0..4), num(5..7), num(8..10));
    days * 86_400 + num(11..13) * 3600 + num(14..16) * 60 + num(17..19)
}

fn unix_now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs();
    i64::try_from(secs).expect("a clock before 2^63")
}

#[test]
fn created_now_is_the_build_time_in_utc_with_an_offset() {
    assert_eq!(parse_now("1970-01-01T00:00:01+00:00"), 1);
    assert_eq!(parse_now("2024-02-29T12:34:56+00:00"), 1_709_210_096);
    let scratch = test_dir();
    let spec_path = scratch.spec(&json!({ "name": "now", "tag": "t", "created": "now" }));
    let before = unix_now();
    Buildimage::new()
        .cwd(scratch.path())
        .env("TZ", "Asia/Kathmandu")
        .build(&spec_path)
        .out("image.tar.gz")
        .run_ok();
    let after = unix_now();
    let image = Image::open(&scratch.join("image.tar.gz"));
    let config = image.config();
    let created = config["created"].as_str().expect("created");
    assert_ne!(created, DEFAULT_CREATED);
    let at = parse_now(created);
    assert!(
        (before..=after).contains(&at),
        "{created} is not between {before} and {after}"
    );
    assert_eq!(config["history"], json!([{ "created": created }]));
    assert_eq!(image.layer_json()["created"], created);
}
