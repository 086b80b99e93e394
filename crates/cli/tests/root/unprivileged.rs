//! runAsRoot run by an ordinary user: a user namespace maps the caller to root, so the
//! script can do everything but give files to other owners, and says so when it tries.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use serde_json::json;

use super::{Case, busybox_root, names, top_layer};
use crate::docker::ImageArchive;
use crate::support;

/// The nobody user of Debian: no home, no groups, no privileges.
const NOBODY: &str = "65534";

/// `buildimage` run as `nobody` (through `setpriv`, from util-linux), from a copy of the
/// binary that `nobody` can read, in a case folder it may write.
fn as_nobody(case: &Case) -> assert_cmd::Command {
    support::require_tool("setpriv", "util-linux");
    let copy = case.join("buildimage");
    fs::copy(assert_cmd::cargo::cargo_bin("buildimage"), &copy).expect("copy the binary");
    for (path, mode) in [
        (case.path().to_owned(), 0o777),
        (case.tmp(), 0o777),
        (copy.clone(), 0o755),
    ] {
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
    }
    let mut cmd = assert_cmd::Command::new("setpriv");
    cmd.current_dir(case.path())
        .env("TMPDIR", case.tmp())
        .env_remove("SOURCE_DATE_EPOCH")
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
        ])
        .arg(&copy);
    cmd
}

#[test]
fn an_ordinary_user_runs_run_as_root_in_a_user_namespace() {
    let case = Case::new();
    busybox_root(&case.join("root"));
    let built = case.build_with(
        as_nobody(&case),
        "nobody",
        &json!({
            "name": "nobody", "tag": "t", "copyToRoot": "root", "compressor": "none",
            "runAsRoot": "mkdir -p /data && echo hi > /data/f && chmod 4755 /data/f",
        }),
        None,
    );
    let layer = top_layer(&ImageArchive::read(&built.archive));
    let f = layer
        .iter()
        .find(|m| m.path == "./data/f")
        .unwrap_or_else(|| panic!("no ./data/f in {:?}", names(&layer)));
    // Files the mapped root made are root's in the image, setuid bit included.
    assert_eq!((f.uid, f.gid, f.mode), (0, 0, 0o4755));
}

#[test]
fn an_ordinary_user_is_told_that_run_as_root_cannot_give_files_away() {
    let case = Case::new();
    busybox_root(&case.join("root"));
    let spec = case.spec(
        "chown",
        &json!({
            "name": "chown", "tag": "t", "copyToRoot": "root", "compressor": "none",
            "runAsRoot": "mkdir -p /data && chown 1000:1000 /data",
        }),
    );
    let output = as_nobody(&case)
        .arg("build")
        .arg(&spec)
        .arg("-o")
        .arg(case.join("chown.tar"))
        .output()
        .expect("start buildimage");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the chown must fail:\n{stderr}");
    assert!(
        stderr.contains("can only own files as root") && stderr.contains("runAsRoot"),
        "the error says why:\n{stderr}"
    );
    assert!(!case.join("chown.tar").exists(), "no output");
    case.assert_clean();
}
