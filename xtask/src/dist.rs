//! `cargo xtask dist`: the `buildimage` binary for a Nix store, at
//! `target/dist/bin/buildimage`, and the check that `flake.nix` parses.
//!
//! The binary is linked statically against glibc, so that it runs on any Linux of the
//! same architecture with no dynamic loader and no shared libraries: added to a Nix store
//! (`nix-store --add`), it is a derivation builder whose closure is that one file. It is
//! glibc rather than musl because only the glibc target is installed here and no musl
//! one can be fetched. Host names still resolve (`docker://` destinations): static glibc
//! has the `files` and `dns` name services built in (with Debian 12's glibc 2.36, no
//! `libnss_*.so` is opened).
//!
//! The build uses its own target folder (`target/dist-build`) and the `dist` profile
//! (release, without debug information or symbols), so that its flags do not invalidate
//! the cache of ordinary builds.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::process::{self, Group};
use crate::{cargo, header};

/// How long `rustc -vV`, `ldd` and `buildimage --version` may take.
const QUICK: Duration = Duration::from_mins(1);

/// What glibc's `ldd` prints (on standard error, with exit status 1) for an executable
/// that has no dynamic section at all: the non-PIE static binary [`RUSTFLAGS`] asks for.
/// A static-pie binary (`crt-static` alone) gets "statically linked" and status 0
/// instead: it needs no loader either, but keeps a dynamic section to relocate itself at
/// start-up. CI requires the form with no dynamic section at all, so only this wording
/// passes: a change of RUSTFLAGS that brings back static-pie (or dynamic) linking fails.
const LDD_STATIC: &str = "not a dynamic executable";

/// `crt-static` links glibc statically; on a `-linux-gnu` target that alone gives a
/// static-pie binary, and `relocation-model=static` makes it a plain static executable
/// (no dynamic section, fixed load address: acceptable for a build tool, which gives up
/// only the address randomisation of its own code, not of its stack, heap or mappings).
/// Passed with an explicit `--target`, these flags reach only the target's code, never
/// build scripts or proc macros, which must stay dynamic to be loaded by cargo and rustc.
const RUSTFLAGS: &str = "-C target-feature=+crt-static -C relocation-model=static";

/// Builds the static binary, installs it at `target/dist/bin/buildimage`, checks that
/// `ldd` finds it static and that it runs; returns its path.
pub(crate) fn dist(root: &Path) -> Result<PathBuf> {
    let start = Instant::now();
    let triple = host_triple(root)?;
    let target_dir = root.join("target/dist-build");
    let mut build = cargo(
        root,
        &[
            "build",
            "--locked",
            "--profile",
            "dist",
            "-p",
            "buildimage-cli",
            "--target",
            &triple,
        ],
    );
    build.arg("--target-dir").arg(&target_dir);
    // RUSTFLAGS replaces every rustflags setting of cargo's configuration, but not
    // CARGO_ENCODED_RUSTFLAGS, which comes first: drop it, so the flags are exactly ours.
    build
        .env("RUSTFLAGS", RUSTFLAGS)
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    header(&format!(
        "RUSTFLAGS=\"{RUSTFLAGS}\" {}",
        process::display(&build)
    ));
    process::run_checked(&mut build, Group::Own)?;
    let built = target_dir.join(&triple).join("dist/buildimage");

    let dest = root.join("target/dist/bin/buildimage");
    install(&built, &dest)?;

    header(&format!("ldd {}", dest.display()));
    check_static(&dest)?;
    eprintln!("{LDD_STATIC}: it needs no dynamic loader");

    header(&format!("{} --version", dest.display()));
    let version = smoke_test(&dest)?;
    eprintln!("{version}");

    let size = fs_err::metadata(&dest)?.len();
    #[expect(clippy::cast_precision_loss, reason = "a size shown to one decimal")]
    let mib = size as f64 / 1024.0 / 1024.0;
    eprintln!(
        "==> {}: {size} bytes ({mib:.1} MiB), static, built in {:.1} s",
        dest.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(dest)
}

/// The host's target triple, from `rustc -vV`; only `*-linux-gnu` hosts are supported,
/// since the static link relies on glibc's static libraries.
fn host_triple(root: &Path) -> Result<String> {
    // The rustc cargo will use: `RUSTC` if set, else the one on PATH (through rustup's
    // proxy, which reads the toolchain file from the current folder).
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let mut cmd = Command::new(rustc);
    cmd.arg("-vV").current_dir(root);
    let output = process::output_with_timeout(&mut cmd, QUICK)?;
    if !output.status.success() {
        bail!(
            "{} failed ({}): {}",
            process::display(&cmd),
            process::describe(output.status),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let triple = stdout
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .with_context(|| format!("{} printed no `host:` line", process::display(&cmd)))?;
    if !triple.ends_with("-linux-gnu") {
        bail!(
            "cargo xtask dist links glibc statically and needs a *-linux-gnu host; this is {triple}"
        );
    }
    Ok(triple.to_owned())
}

/// Copies `built` to `dest` under a temporary name in `dest`'s folder, then renames it:
/// `dest` is never a partly written file, and a running copy of the old one is not
/// disturbed.
fn install(built: &Path, dest: &Path) -> Result<()> {
    let dir = dest
        .parent()
        .context("the destination has a parent folder")?;
    fs_err::create_dir_all(dir)?;
    let temp = tempfile::Builder::new()
        .prefix(".buildimage.")
        .tempfile_in(dir)
        .with_context(|| format!("Cannot create a temporary file in {}", dir.display()))?;
    // `copy` also gives the copy the source's permissions (executable).
    fs_err::copy(built, temp.path())?;
    // Close our descriptor before anything runs the file: executing a file that is open
    // for writing fails with ETXTBSY.
    let (file, path) = temp.into_parts();
    drop(file);
    path.persist(dest)
        .with_context(|| format!("Cannot rename the new binary to {}", dest.display()))?;
    Ok(())
}

/// Fails unless `ldd` says exactly [`LDD_STATIC`] about `binary`.
fn check_static(binary: &Path) -> Result<()> {
    let mut cmd = Command::new("ldd");
    // ldd's messages are translated; compare the untranslated one.
    cmd.arg(binary).env("LC_ALL", "C");
    let output = process::output_with_timeout(&mut cmd, QUICK)?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.code() == Some(1) && stdout.trim().is_empty() && stderr.trim() == LDD_STATIC {
        return Ok(());
    }
    bail!(
        "{} is not a fully static executable: ldd exited with {} and said {:?}; \
         expected exit status 1 and {LDD_STATIC:?}. A dynamically linked (or static-pie) \
         binary cannot be relied on as a Nix builder: check RUSTFLAGS in xtask/src/dist.rs",
        binary.display(),
        process::describe(output.status),
        format!("{}{}", stdout.trim(), stderr.trim()),
    )
}

/// Runs `binary --version` and returns what it printed, failing unless it names buildimage.
fn smoke_test(binary: &Path) -> Result<String> {
    let mut cmd = Command::new(binary);
    cmd.arg("--version");
    let output = process::output_with_timeout(&mut cmd, QUICK)?;
    let stdout = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !output.status.success() || !stdout.starts_with("buildimage ") {
        bail!(
            "{} --version failed ({}), printing {stdout:?} and {:?}",
            binary.display(),
            process::describe(output.status),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(stdout)
}

/// Fails unless `flake.nix` parses, with Debian's `nix-instantiate --parse`. Nothing is
/// evaluated or fetched (nixpkgs is not available offline): this catches syntax errors.
pub(crate) fn parse_flake(root: &Path) -> Result<()> {
    let mut cmd = Command::new("nix-instantiate");
    cmd.args(["--store", "dummy://", "--parse", "flake.nix"])
        .current_dir(root)
        // No configuration of the host's, no warning about the missing `nixbld` group,
        // no search path; the dummy store keeps the machine's /nix untouched.
        .env("NIX_CONF_DIR", "/nonexistent")
        .env("NIX_CONFIG", "build-users-group =")
        .env_remove("NIX_PATH")
        .env_remove("NIX_REMOTE")
        // The parsed expression, printed back, is of no interest; errors go to stderr.
        .stdout(Stdio::null());
    process::run_checked(&mut cmd, Group::Own)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn check_static_rejects_a_dynamic_executable() {
        // /bin/sh is dynamically linked on Debian: the check must not pass on ldd's mere
        // success, nor on any wording other than LDD_STATIC.
        let err = check_static(Path::new("/bin/sh")).unwrap_err().to_string();
        assert!(err.contains("is not a fully static executable"), "{err}");
        assert!(err.contains("libc.so"), "{err}");
    }

    #[test]
    fn install_replaces_the_destination_whole_and_keeps_it_executable() {
        let dir = tempfile::tempdir().unwrap();
        let built = dir.path().join("built");
        fs_err::write(&built, b"new").unwrap();
        fs_err::set_permissions(&built, std::fs::Permissions::from_mode(0o755)).unwrap();
        let dest = dir.path().join("dist/bin/buildimage");
        fs_err::create_dir_all(dest.parent().unwrap()).unwrap();
        fs_err::write(&dest, b"old").unwrap();

        install(&built, &dest).unwrap();

        assert_eq!(fs_err::read(&dest).unwrap(), b"new");
        let mode = fs_err::metadata(&dest).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        // No temporary file is left beside it.
        let names: Vec<_> = fs_err::read_dir(dest.parent().unwrap())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, ["buildimage"]);
    }
}
