//! Records the git revision the binary is built from, for `buildimage --version`.

use std::process::Command;

/// `git ARGS` without taking the index lock (a build must not rewrite the index it
/// watches), its output when it succeeds.
fn git(args: &[&str]) -> Option<String> {
    Command::new("git")
        .arg("--no-optional-locks")
        .args(args)
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|s| s.trim_end().to_owned())
}

fn main() {
    let revision = git(&["rev-parse", "--short=12", "HEAD"]).filter(|s| !s.is_empty());
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|out| !out.is_empty());
    let shown = match revision {
        Some(rev) if dirty => format!("git {rev}, modified"),
        Some(rev) => format!("git {rev}"),
        // A source tarball without its history.
        None => "no git revision".to_owned(),
    };
    println!("cargo:rustc-env=BUILDIMAGE_GIT_REVISION={shown}");
    // Rebuilt when HEAD moves (a checkout), the branch it names moves (a commit, loose or
    // packed), or the index changes (staging). Asking git for the paths works in a
    // worktree too, where `.git` is a file. An edit that is not staged is not seen.
    let mut watched = vec![
        "HEAD".to_owned(),
        "index".to_owned(),
        "packed-refs".to_owned(),
    ];
    watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", &name])
            && std::path::Path::new(&path).exists()
        {
            let path = std::path::absolute(&path).unwrap_or_else(|_| path.into());
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
