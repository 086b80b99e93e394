//! `cargo xtask example [busybox|layered]`: the example images, built with the release
//! binary into `target/example/`, then loaded into a private `dockerd` and run.
//!
//! - `busybox` (the default) builds `examples/busybox/spec.json` with `buildimage build`.
//! - `layered` builds the store paths of `examples/layered/default.nix` with Debian's
//!   `nix-build` into a chroot store (`target/example/store`, never the machine's `/nix`),
//!   evaluates its `spec` with `nix-instantiate --eval --json` (the buildLayeredImage
//!   arguments, store paths included), builds that with `buildimage build-layered`, and
//!   shows `docker history` of the result.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Result, bail};

use crate::dockerd::{self, PrivateDockerd};
use crate::process::{self, Group};
use crate::{apt, build_release, header};

/// How long one build step may take before the example gives up.
const STEP_TIMEOUT: Duration = Duration::from_mins(5);

/// Settings for the Nix commands: no host configuration, no build users, no binary cache,
/// and the sandbox (Nix 2.8 builds into a chroot store only there) with Debian's static
/// busybox as its `/bin/sh`.
const NIX_CONFIG: &str = "build-users-group =\nsubstituters =\nsandbox = true\n\
                          sandbox-paths = /bin/sh=/bin/busybox /bin/busybox\n";

/// `cargo xtask example busybox`.
pub fn busybox(root: &Path) -> Result<ExitCode> {
    header("install what the example needs (apt-get)");
    apt::ensure_installed(&["busybox-static", "docker.io", "ca-certificates"])?;
    let binary = build_release(root)?;
    let out_dir = out_dir(root)?;
    let image = out_dir.join("docker-image-busybox.tar.gz");
    let spec = root.join("examples/busybox/spec.json");
    header("buildimage build examples/busybox/spec.json");
    buildimage(
        &binary,
        &[
            "build".as_ref(),
            spec.as_os_str(),
            "-o".as_ref(),
            image.as_os_str(),
            "--json".as_ref(),
        ],
    )?;
    let name = "buildimage-example/busybox:latest";
    in_docker(
        &image,
        &[
            &["run", "--rm", "--pull", "never", "--network", "none", name],
            &[
                "image",
                "inspect",
                "--format",
                "{{json .Config.Cmd}} {{.Created}} {{.Architecture}}",
                name,
            ],
        ],
        name,
    )
}

/// `cargo xtask example layered`.
pub fn layered(root: &Path) -> Result<ExitCode> {
    header("install what the example needs (apt-get)");
    apt::ensure_installed(&["busybox-static", "docker.io", "ca-certificates", "nix-bin"])?;
    let binary = build_release(root)?;
    let out_dir = out_dir(root)?;
    let store = out_dir.join("store");
    let expression = root.join("examples/layered");

    header("nix-build examples/layered -A packages (into the chroot store target/example/store)");
    let mut build = nix(&out_dir, "nix-build");
    build
        .arg("--store")
        .arg(chroot(&store))
        .arg(&expression)
        .args(["-A", "packages", "--no-out-link"]);
    process::run_checked(&mut build, Group::Own)?;

    header("nix-instantiate --eval --strict --json examples/layered -A spec");
    let mut eval = nix(&out_dir, "nix-instantiate");
    eval.arg("--store")
        .arg(chroot(&store))
        .args(["--eval", "--strict", "--json"])
        .arg(&expression)
        .args(["-A", "spec"]);
    let output = process::output_with_timeout(&mut eval, STEP_TIMEOUT)?;
    if !output.status.success() {
        bail!(
            "nix-instantiate failed ({}): {}",
            process::describe(output.status),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let value: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let spec_text = serde_json::to_string_pretty(&value)? + "\n";
    let spec = out_dir.join("hello-layered.json");
    std::fs::write(&spec, &spec_text)?;
    println!("{spec_text}");

    let image = out_dir.join("hello-layered.tar.gz");
    header(
        "buildimage build-layered target/example/hello-layered.json --store target/example/store",
    );
    buildimage(
        &binary,
        &[
            "build-layered".as_ref(),
            spec.as_os_str(),
            "--store".as_ref(),
            store.as_os_str(),
            "-o".as_ref(),
            image.as_os_str(),
            "--json".as_ref(),
        ],
    )?;
    let name = "buildimage-example/hello-layered:latest";
    in_docker(
        &image,
        &[
            &["run", "--rm", "--pull", "never", "--network", "none", name],
            &[
                "history",
                "--no-trunc",
                "--format",
                "table {{.Size}}\t{{.Comment}}",
                name,
            ],
        ],
        name,
    )
}

/// `target/example/`, created.
fn out_dir(root: &Path) -> Result<PathBuf> {
    let dir = root.join("target/example");
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// `local?root=DIR`: the chroot store at `dir`.
fn chroot(dir: &Path) -> String {
    format!("local?root={}", dir.display())
}

/// A Nix command with [`NIX_CONFIG`] and nothing from the caller's configuration.
fn nix(out_dir: &Path, tool: &str) -> Command {
    let mut cmd = Command::new(tool);
    cmd.env("NIX_CONF_DIR", "/nonexistent/buildimage-example")
        .env("NIX_CONFIG", NIX_CONFIG)
        .env("XDG_CACHE_HOME", out_dir.join("cache"))
        .env_remove("NIX_REMOTE")
        .env_remove("NIX_PATH");
    cmd
}

/// Runs the release binary with `args`, its progress on standard error and its `--json`
/// report on standard output.
fn buildimage(binary: &Path, args: &[&std::ffi::OsStr]) -> Result<()> {
    let mut cmd = Command::new(binary);
    cmd.args(args);
    let output = process::output_with_timeout(&mut cmd, STEP_TIMEOUT)?;
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    if !output.status.success() {
        bail!("buildimage failed ({})", process::describe(output.status));
    }
    print!("{}", String::from_utf8_lossy(&output.stdout));
    Ok(())
}

/// Starts a private `dockerd`, loads `image`, runs each `docker` command line of `steps`,
/// removes the image `name` and stops the daemon, whatever happened.
fn in_docker(image: &Path, steps: &[&[&str]], name: &str) -> Result<ExitCode> {
    header("start private dockerd");
    let mut daemon = PrivateDockerd::start()?;
    let host = daemon.host();
    let docker = |args: &[&str]| -> Result<()> {
        let mut cmd = dockerd::docker(&host);
        cmd.args(args).stdout(Stdio::inherit());
        eprintln!("==> docker {}", args.join(" "));
        process::run_checked(&mut cmd, Group::Own)
    };
    let image_arg = image.to_string_lossy().into_owned();
    let shown = docker(&["load", "-i", &image_arg])
        .and_then(|()| steps.iter().try_for_each(|args| docker(args)))
        .and_then(|()| docker(&["rmi", name]));
    header("stop private dockerd");
    let stopped = daemon.stop();
    shown?;
    stopped?;
    eprintln!("==> the image is at {}", image.display());
    Ok(ExitCode::SUCCESS)
}
