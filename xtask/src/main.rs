//! Project automation for the buildimage workspace, run as `cargo xtask <command>`.
//!
//! - `cargo xtask ci` installs the tools the end-to-end tests drive (via `apt-get`, only
//!   what is missing), then runs the format check, the `flake.nix` parse check, clippy,
//!   the static `dist` build with its checks, all tests against a private `dockerd`, the
//!   documentation build, and each fuzz target for 30 s (fmt and clippy cover `fuzz/`
//!   too). `.ci/run` calls it.
//! - `cargo xtask dockerd -- CMD ARGS...` starts the same private `dockerd`, runs `CMD`
//!   with `BUILDIMAGE_TEST_DOCKER_HOST` pointing at it, and stops it again, so a developer
//!   can run single end-to-end tests:
//!   `cargo xtask dockerd -- cargo test -p buildimage-cli docker`.
//!
//! - `cargo xtask example [busybox|layered]` builds an example image (`examples/busybox`
//!   with `build`, or `examples/layered` with Nix and `build-layered`) with the release
//!   binary, then loads it into a private `dockerd` and runs it: the main job, end to end
//!   (see [`example`]).
//!
//! - `cargo xtask golden` rewrites the golden artefacts of `crates/cli/tests/golden/` by
//!   running the golden tests with `BUILDIMAGE_UPDATE_GOLDEN=1` (see [`golden`]).
//!
//! - `cargo xtask fuzz [SECONDS]` runs each fuzz target of `fuzz/` (the SPEC parsers, the
//!   base image reader, OCI index updates, `WWW-Authenticate` parsing) for SECONDS
//!   (default 60), keeping new corpus entries.
//!
//! - `cargo xtask man` renders the man pages of `buildimage` into `target/man/`.
//!
//! - `cargo xtask dist` builds `target/dist/bin/buildimage`, statically linked so that it
//!   runs as a Nix derivation's builder on any Linux of its architecture, and checks it
//!   with `ldd` and `--version` (see [`dist`]).
//!
//! Every child runs under [`process::run`], which makes sure `SIGINT`, `SIGTERM` and
//! `SIGHUP` reach it; the private daemon is stopped, unmounted and deleted on every way out,
//! including those signals.

mod apt;
mod bench;
mod bench_push;
mod dist;
mod dockerd;
mod example;
mod fuzz;
mod golden;
mod man;
mod process;

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Result, bail};

use crate::dockerd::PrivateDockerd;
use crate::process::{Group, Interrupted};

/// The environment variable through which tests find the private daemon.
const DOCKER_HOST_VAR: &str = "BUILDIMAGE_TEST_DOCKER_HOST";

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  ci                          install missing test tools (apt-get), then run fmt --check,
                              nix-instantiate --parse flake.nix, clippy -D warnings, the
                              dist build and its checks, all tests with a private dockerd,
                              docs, and each fuzz target for 30 s on the committed corpus
  dockerd [--] CMD [ARGS...]  start a private dockerd, run CMD with
                              BUILDIMAGE_TEST_DOCKER_HOST set to its socket, then stop it;
                              e.g. cargo xtask dockerd -- cargo test -p buildimage-cli docker
  example [busybox|layered]   busybox (default): build examples/busybox/spec.json with the
                              release binary into target/example/, load it into a private
                              dockerd, run it; layered: nix-build examples/layered into a
                              chroot store, build-layered its spec, load, show
                              docker history, run it
  bench [small|large|many]    time buildimage against nixpkgs' reference pipelines on a
                              benchmark corpus (../shared/bench): build for none, gz and
                              zstd (small, large), stream-layered and build-layered (all)
  bench destinations [SIZE]   push to a local registry (cold, and warm after one changed
                              file) and load into a private dockerd, against stream-layered
                              + skopeo copy / docker load (default corpus: large)
  fuzz [SECONDS]              run each cargo-fuzz target in fuzz/ for SECONDS (default 60),
                              installing cargo-fuzz if missing; new corpus entries are kept
                              in fuzz/corpus/, crashes go to fuzz/artifacts/
  dist                        build target/dist/bin/buildimage, statically linked (glibc)
                              for use as a Nix builder; check it with ldd and --version,
                              print its path
  man                         write the man pages of buildimage and its commands into
                              target/man/ (view with man -l target/man/buildimage.1)
  golden                      rewrite the golden files of crates/cli/tests/golden/ by running
                              the golden tests with BUILDIMAGE_UPDATE_GOLDEN=1 (as root)
  help                        show this text
";

fn main() -> ExitCode {
    if let Err(err) = process::install_signal_watcher() {
        eprintln!("error: {err:#}");
        return ExitCode::FAILURE;
    }
    let args: Vec<OsString> = env::args_os().skip(1).collect();
    let command = args.first().and_then(|a| a.to_str());
    let rest = args.get(1..).unwrap_or_default();
    let result = match command {
        Some("ci") if rest.is_empty() => ci(),
        Some("dockerd") => with_dockerd(rest),
        Some("example") if rest.len() <= 1 => match rest.first().and_then(|a| a.to_str()) {
            None | Some("busybox") => example::busybox(workspace_root()),
            Some("layered") => example::layered(workspace_root()),
            Some(other) => {
                eprintln!("error: unknown example {other:?}: busybox or layered\n\n{USAGE}");
                Ok(ExitCode::from(2))
            }
        },
        Some("bench") if rest.first().and_then(|a| a.to_str()) == Some("destinations") => {
            let size = rest.get(1).and_then(|a| a.to_str()).unwrap_or("large");
            bench_push::bench(workspace_root(), size).map(|()| ExitCode::SUCCESS)
        }
        Some("bench") if rest.len() <= 1 => {
            let size = rest.first().and_then(|a| a.to_str()).unwrap_or("small");
            bench::bench(workspace_root(), size).map(|()| ExitCode::SUCCESS)
        }
        Some("fuzz") if rest.len() <= 1 => {
            let seconds = match rest.first() {
                None => Some(fuzz::DEFAULT_SECONDS),
                Some(arg) => arg.to_str().and_then(|a| a.parse().ok()).filter(|&n| n > 0),
            };
            if let Some(seconds) = seconds {
                fuzz::fuzz(workspace_root(), seconds).map(|()| ExitCode::SUCCESS)
            } else {
                eprintln!("error: SECONDS must be a positive whole number\n\n{USAGE}");
                Ok(ExitCode::from(2))
            }
        }
        Some("dist") if rest.is_empty() => dist::dist(workspace_root()).map(|path| {
            println!("{}", path.display());
            ExitCode::SUCCESS
        }),
        Some("man") if rest.is_empty() => {
            man::man(&workspace_root().join("target/man")).map(|pages| {
                for page in pages {
                    eprintln!("==> wrote {}", page.display());
                }
                ExitCode::SUCCESS
            })
        }
        Some("golden") if rest.is_empty() => {
            golden::golden(workspace_root()).map(|()| ExitCode::SUCCESS)
        }
        Some("help" | "-h" | "--help") => {
            print!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        _ => {
            let shown: Vec<_> = args.iter().map(|a| a.to_string_lossy()).collect();
            eprintln!("error: unknown command: {}\n\n{USAGE}", shown.join(" "));
            Ok(ExitCode::from(2))
        }
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            match err.downcast_ref::<Interrupted>() {
                Some(interrupted) => interrupted.exit_code(),
                None => ExitCode::FAILURE,
            }
        }
    }
}

/// `cargo xtask ci`: every check CI runs, failing fast, with timing.
fn ci() -> Result<ExitCode> {
    let start = Instant::now();
    let result = ci_steps();
    let secs = start.elapsed().as_secs_f64();
    match &result {
        Ok(()) => eprintln!("==> ci passed in {secs:.1} s"),
        Err(_) => eprintln!("==> ci FAILED after {secs:.1} s"),
    }
    result.map(|()| ExitCode::SUCCESS)
}

fn ci_steps() -> Result<()> {
    let root = workspace_root();

    header("install missing test tools (apt-get)");
    apt::ensure_installed(apt::PACKAGES)?;

    header("cargo fmt --all -- --check");
    cargo_step(root, &["fmt", "--all", "--", "--check"], None)?;
    // fuzz/ is a workspace of its own, which `--all` does not reach.
    header("cargo fmt --manifest-path fuzz/Cargo.toml --all -- --check");
    cargo_step(
        root,
        &[
            "fmt",
            "--manifest-path",
            "fuzz/Cargo.toml",
            "--all",
            "--",
            "--check",
        ],
        None,
    )?;

    header("nix-instantiate --parse flake.nix");
    dist::parse_flake(root)?;

    header("cargo clippy --workspace --all-targets --locked -- -D warnings");
    cargo_step(
        root,
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ],
        None,
    )?;

    // The fuzz targets build with the stable toolchain too (only running them needs
    // nightly), so they are linted like the rest.
    header("cargo clippy --manifest-path fuzz/Cargo.toml --all-targets --locked -- -D warnings");
    cargo_step(
        root,
        &[
            "clippy",
            "--manifest-path",
            "fuzz/Cargo.toml",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ],
        None,
    )?;

    // The static binary a Nix store gets (about two minutes from scratch): built once
    // here, before the tests, so that a later step can use the returned path.
    dist::dist(root)?;

    header("start private dockerd");
    let mut daemon = PrivateDockerd::start()?;

    header(&format!(
        "cargo test --workspace --locked   ({DOCKER_HOST_VAR}={})",
        daemon.host()
    ));
    let tests = cargo_step(root, &["test", "--workspace", "--locked"], Some(&daemon));

    // The documentation build does not need the daemon: stop it as soon as the tests end,
    // whatever their outcome. (Drop would also stop it, but could not report errors.)
    header("stop private dockerd");
    let stopped = daemon.stop();
    tests?;
    stopped?;

    header("RUSTDOCFLAGS=\"-D warnings\" cargo doc --workspace --no-deps --locked");
    let mut doc = cargo(root, &["doc", "--workspace", "--no-deps", "--locked"]);
    doc.env("RUSTDOCFLAGS", "-D warnings");
    process::run_checked(&mut doc, Group::Own)?;

    // Each target for a short, bounded time from the committed corpus and seeds, which
    // stay as they are; a crash, leak, timeout or out-of-memory fails CI.
    let start = Instant::now();
    let fuzzed = fuzz::fuzz_ci(root, fuzz::CI_SECONDS);
    eprintln!(
        "==> fuzzing took {:.1} s (cargo-fuzz install if needed, nightly build, runs)",
        start.elapsed().as_secs_f64()
    );
    fuzzed
}

/// `cargo xtask dockerd [--] CMD ARGS...`: run one command next to a private daemon.
fn with_dockerd(args: &[OsString]) -> Result<ExitCode> {
    let args = match args.split_first() {
        Some((first, rest)) if first == "--" => rest,
        _ => args,
    };
    let Some((program, program_args)) = args.split_first() else {
        bail!("missing command\n\n{USAGE}");
    };
    header("start private dockerd");
    let mut daemon = PrivateDockerd::start()?;
    let mut cmd = Command::new(program);
    cmd.args(program_args).env(DOCKER_HOST_VAR, daemon.host());
    eprintln!(
        "==> {} ({DOCKER_HOST_VAR}={})",
        process::display(&cmd),
        daemon.host()
    );
    // The command stays in the terminal's process group so that it can be interactive
    // and receives Ctrl-C from the terminal itself.
    let status = process::run(&mut cmd, Group::Shared);
    header("stop private dockerd");
    let stopped = daemon.stop();
    let status = status?;
    stopped?;
    Ok(process::exit_code(status))
}

/// `cargo build --release -p buildimage-cli`; returns the binary's path.
pub(crate) fn build_release(root: &Path) -> Result<PathBuf> {
    header("cargo build --release -p buildimage-cli");
    cargo_step(
        root,
        &["build", "--release", "--locked", "-p", "buildimage-cli"],
        None,
    )?;
    // Cargo puts it under CARGO_TARGET_DIR when that is set (relative to the root).
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), |dir| root.join(dir));
    Ok(target.join("release/buildimage"))
}

/// Runs `cargo ARGS` in the workspace root, with the private daemon's socket if given.
pub(crate) fn cargo_step(
    root: &Path,
    args: &[&str],
    daemon: Option<&PrivateDockerd>,
) -> Result<()> {
    let mut cmd = cargo(root, args);
    if let Some(daemon) = daemon {
        cmd.env(DOCKER_HOST_VAR, daemon.host());
    }
    process::run_checked(&mut cmd, Group::Own)
}

pub(crate) fn cargo(root: &Path, args: &[&str]) -> Command {
    // `cargo run` tells us which cargo it is; use the same one (and toolchain).
    let program = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(root);
    cmd
}

pub(crate) fn header(title: &str) {
    eprintln!("==> {title}");
}

/// The workspace root: the parent of this crate's manifest directory.
fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
}
