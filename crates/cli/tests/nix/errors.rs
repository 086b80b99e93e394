//! Store errors a user can act on: each names the path at fault, and a failed build leaves
//! no image behind.

use std::ffi::OsStr;
use std::fs;

use serde_json::json;

use super::{DEP, ROOT, build_fails, copy_store, fixture, scratch};

/// A store path with a well-formed hash part that no store here holds.
const MISSING: &str = "/nix/store/00bgd045z0d4icpbc2yyz4gx48ak44la-missing-1.0";

fn spec(copy_to_root: &str) -> serde_json::Value {
    json!({
        "name": "nix-errors",
        "tag": "1",
        "copyToRoot": copy_to_root,
        "includeNixDB": true,
        "compressor": "none",
    })
}

#[test]
fn missing_closure_info_file_is_an_error_naming_it() {
    let fx = fixture();
    let dir = scratch();
    for listing in [
        dir.path().join("no-such-closure-info"),
        dir.path().join("no-such-folder/registration"),
    ] {
        let stderr = build_fails(
            dir.path(),
            "image",
            &spec(fx.path(ROOT)),
            &fx.store,
            &[OsStr::new("--closure-info"), listing.as_os_str()],
        );
        assert!(
            stderr.contains(&*listing.to_string_lossy()),
            "the error must name {}:\n{stderr}",
            listing.display()
        );
    }
}

#[test]
fn copy_to_root_store_path_missing_from_the_store_is_an_error_naming_it() {
    let fx = fixture();
    let dir = scratch();
    for store in [&fx.store, &fx.hidden] {
        let stderr = build_fails(dir.path(), "image", &spec(MISSING), store, &[]);
        assert!(
            stderr.contains(MISSING),
            "the error must name {MISSING}:\n{stderr}"
        );
        assert!(
            stderr.contains("copyToRoot"),
            "the error must name the key:\n{stderr}"
        );
    }
}

#[test]
fn closure_member_missing_from_the_store_is_an_error_naming_it() {
    // The database says hello references hello-dep, but hello-dep is gone from the disk:
    // the image would be incomplete.
    let fx = fixture();
    let dir = scratch();
    let store = dir.path().join("store");
    copy_store(&fx.store, &store, true);
    let dep = fx.path(DEP);
    fs::remove_dir_all(super::host_path(&store, dep)).expect("remove hello-dep from the copy");
    let stderr = build_fails(dir.path(), "image", &spec(fx.path(ROOT)), &store, &[]);
    assert!(stderr.contains(dep), "the error must name {dep}:\n{stderr}");
}
