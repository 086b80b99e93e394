//! Records the git revision the binary is built from, for `buildimage --version`.

use std::process::Command;

fn main() {
    let revision = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .is_some_and(|out| !out.stdout.is_empty());
    let shown = match revision {
        Some(rev) if dirty => format!("git {rev}, modified"),
        Some(rev) => format!("git {rev}"),
        // A source tarball without its history.
        None => "no git revision".to_owned(),
    };
    println!("cargo:rustc-env=BUILDIMAGE_GIT_REVISION={shown}");
    // Rebuilt when HEAD moves (a commit, a checkout) or the index changes.
    for path in ["../../.git/HEAD", "../../.git/index"] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
