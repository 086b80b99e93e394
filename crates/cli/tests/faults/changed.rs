//! A source file that changes between the plan and the write: the layer's size and
//! headers come from the plan, so the build must stop with "changed size" rather than
//! write a tar whose header lies about its data.
//!
//! The window is made wide on purpose: a 1 GiB sparse file sorts before the victim, so the
//! victim is read about a gigabyte after the first byte of the image is written. The test
//! changes it as soon as the temporary output file grows, which happens only once the plan
//! is complete.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;

use buildimage_test_support::{Buildimage, mkdir, names, wait_for, write};

use super::{leftovers, test_dir};

/// Size of the sparse file written before the victim.
const SPARSE_SIZE: u64 = 1 << 30;

/// Size of the victim when planned.
const VICTIM_SIZE: usize = 64 << 10;

/// How long the build may take to start writing.
const START_TIMEOUT: Duration = Duration::from_mins(1);

/// Builds a tree of `a-sparse` and `z-victim`, applies `change` to the victim once the
/// output starts to grow, and checks that the build fails with "changed size" naming the
/// victim, and leaves nothing.
fn change_during_write(change: impl FnOnce(&Path)) -> String {
    let scratch = test_dir();
    let root = scratch.join("root");
    mkdir(&root, 0o755);
    File::create(root.join("a-sparse"))
        .and_then(|f| f.set_len(SPARSE_SIZE))
        .expect("create a sparse file");
    let victim = root.join("z-victim");
    write(&victim, &vec![b'v'; VICTIM_SIZE], 0o644);
    let out_dir = scratch.join("out");
    mkdir(&out_dir, 0o755);
    let spec = scratch.spec(&json!({
        "name": "changing", "tag": "t", "copyToRoot": "root", "compressor": "none",
    }));
    let child = Buildimage::new()
        .cwd(scratch.path())
        .build(&spec)
        .out(out_dir.join("image.tar"))
        .spawn(Stdio::null(), Stdio::piped());
    wait_for("a growing temporary output file", START_TIMEOUT, || {
        fs::read_dir(&out_dir)
            .expect("list the output folder")
            .any(|e| e.expect("an entry").metadata().is_ok_and(|m| m.len() > 0))
    });
    change(&victim);
    let output = child.wait_with_output().expect("wait for buildimage");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let error = stderr
        .lines()
        .find(|line| line.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line:\n{stderr}"))
        .to_owned();
    assert!(
        error.contains("changed size") && error.contains(&victim.display().to_string()),
        "the error names the file and says it changed size: {error}"
    );
    assert_eq!(names(&out_dir), Vec::<String>::new(), "no output");
    assert_eq!(leftovers(&out_dir), Vec::<String>::new());
    error
}

#[test]
fn source_file_that_grows_after_the_plan_fails_with_changed_size() {
    let error = change_during_write(|victim| {
        let mut file = OpenOptions::new()
            .append(true)
            .open(victim)
            .expect("open the victim");
        file.write_all(b"more").expect("append");
    });
    assert!(
        error.contains(&format!("planned {VICTIM_SIZE} bytes")),
        "{error}"
    );
}

#[test]
fn source_file_truncated_after_the_plan_fails_with_changed_size() {
    let error = change_during_write(|victim| {
        File::options()
            .write(true)
            .open(victim)
            .and_then(|f| f.set_len(10))
            .expect("truncate the victim");
    });
    assert!(
        error.contains(&format!("planned {VICTIM_SIZE} bytes, found 10")),
        "{error}"
    );
}

#[test]
fn source_file_replaced_after_the_plan_fails_with_changed_size() {
    change_during_write(|victim| {
        let new = victim.with_extension("new");
        fs::write(&new, b"a different, shorter file").expect("write the replacement");
        fs::rename(&new, victim).expect("replace the victim");
    });
}
