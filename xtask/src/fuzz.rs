//! `cargo xtask fuzz [SECONDS]`: runs each cargo-fuzz target of `fuzz/` for a bounded
//! time (default 60 s each), installing cargo-fuzz first if it is missing.
//!
//! Each target starts from its seeds (`fuzz/seeds/<target>/`, made by `fuzz/make-seeds.sh`)
//! and its corpus (`fuzz/corpus/<target>/`), with a dictionary of the tokens its input
//! format holds (`fuzz/<target>.dict`). New inputs that reach new code are kept in the
//! corpus, which is then minimised (`cargo fuzz cmin`) so that what is committed stays
//! small; the `faults::fuzz_corpus` tests of every `cargo test` replay seeds and corpus.
//! Inputs that crash, run out of memory or time out go to `fuzz/artifacts/<target>/` (not
//! committed) and make this command fail once every target has run. libFuzzer's output
//! goes to `fuzz/target/logs/<target>.log`; the summary at the end gives each target's
//! run time, executions and corpus sizes.
//!
//! `cargo xtask ci` runs the same targets for [`CI_SECONDS`] each ([`fuzz_ci`]), from the
//! committed corpus and seeds, leaving both as they are: what it finds new goes to a
//! scratch folder under `fuzz/target/`, and no minimisation runs. A crash fails CI.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::header;
use crate::process::{self, Group};

/// Seconds per target when none are given.
pub const DEFAULT_SECONDS: u64 = 60;

/// Seconds per target in `cargo xtask ci`: enough to replay the corpus and try some
/// thousands of new inputs, short enough that five targets add a few minutes.
pub const CI_SECONDS: u64 = 30;

/// One fuzz target and the libFuzzer limits it runs under.
struct Target {
    name: &'static str,
    /// The largest input tried, in bytes.
    max_len: u32,
    /// Seconds one input may take before it counts as a hang.
    timeout: u32,
}

const TARGETS: &[Target] = &[
    // A SPEC is a few hundred bytes; 16 KiB leaves room for long strings and deep nesting.
    Target {
        name: "spec",
        max_len: 16 << 10,
        timeout: 10,
    },
    // The largest seed (two layers, uncompressed) is 40 KiB.
    Target {
        name: "base_image",
        max_len: 64 << 10,
        timeout: 20,
    },
    // As `spec`; a layeringPipeline is a few hundred bytes of it.
    Target {
        name: "layered_spec",
        max_len: 16 << 10,
        timeout: 10,
    },
    // An index of a few hundred images is tens of KiB; each input writes a layout.
    Target {
        name: "oci_index",
        max_len: 64 << 10,
        timeout: 10,
    },
    // A header is a line; 4 KiB is more than any registry sends.
    Target {
        name: "challenge",
        max_len: 4 << 10,
        timeout: 5,
    },
];

/// The memory one run may use: the reader's limits must keep it well below this.
const RSS_LIMIT_MB: u32 = 512;

/// What one target's run did.
struct Outcome {
    name: &'static str,
    seconds: f64,
    executions: Option<u64>,
    corpus_before: usize,
    corpus_after: usize,
    corpus_minimised: usize,
    artifacts: Vec<String>,
    /// Whether the run and the minimisation succeeded.
    ok: bool,
    /// The run's exit status, or what failed.
    status: String,
}

/// Runs every target for `seconds` each, adding what it finds to the committed corpus and
/// minimising it.
pub fn fuzz(root: &Path, seconds: u64) -> Result<()> {
    run(root, seconds, Mode::Extend)
}

/// Runs every target for `seconds` each from the committed corpus and seeds, changing
/// neither: for CI.
pub fn fuzz_ci(root: &Path, seconds: u64) -> Result<()> {
    run(root, seconds, Mode::Check)
}

/// What happens to the committed corpus.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// New inputs are added to it, then it is minimised.
    Extend,
    /// It is only read; new inputs go to a scratch folder.
    Check,
}

fn run(root: &Path, seconds: u64, mode: Mode) -> Result<()> {
    let dir = root.join("fuzz");
    ensure_cargo_fuzz()?;
    let logs = dir.join("target/logs");
    fs::create_dir_all(&logs).with_context(|| format!("Cannot create {}", logs.display()))?;
    let mut outcomes = Vec::new();
    for target in TARGETS {
        header(&format!(
            "cargo +nightly fuzz run {} ({seconds} s, -rss_limit_mb={RSS_LIMIT_MB}, -max_len={})",
            target.name, target.max_len
        ));
        let corpus = dir.join("corpus").join(target.name);
        fs::create_dir_all(&corpus)
            .with_context(|| format!("Cannot create {}", corpus.display()))?;
        // libFuzzer writes new inputs into the first folder it is given.
        let new_inputs = match mode {
            Mode::Extend => corpus.clone(),
            Mode::Check => {
                let scratch = dir.join("target/ci-corpus").join(target.name);
                let _ = fs::remove_dir_all(&scratch);
                fs::create_dir_all(&scratch)
                    .with_context(|| format!("Cannot create {}", scratch.display()))?;
                scratch
            }
        };
        let artifacts = dir.join("artifacts").join(target.name);
        let corpus_before = count(&corpus);
        let artifacts_before = list(&artifacts);
        let log = logs.join(format!("{}.log", target.name));
        eprintln!("libFuzzer output: {}", log.display());
        let limits = [
            format!("-rss_limit_mb={RSS_LIMIT_MB}"),
            format!("-malloc_limit_mb={RSS_LIMIT_MB}"),
            format!("-max_len={}", target.max_len),
            format!("-timeout={}", target.timeout),
        ];
        let mut cmd = nightly_cargo();
        cmd.current_dir(&dir)
            .args(["fuzz", "run", target.name])
            // CI runs without AddressSanitizer: the targets are safe Rust, coverage guidance
            // stays, and the build (the C of zstd and SQLite included) takes a fraction of
            // the time. `cargo xtask fuzz` keeps it for longer, searching runs.
            .args(
                (mode == Mode::Check)
                    .then_some(["--sanitizer", "none"])
                    .into_iter()
                    .flatten(),
            )
            // New inputs go to the first folder only: the seeds stay as they are.
            .arg(&new_inputs)
            .args((mode == Mode::Check).then_some(&corpus))
            .arg(dir.join("seeds").join(target.name))
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .args(&limits)
            .arg(prefixed(
                "-dict=",
                &dir.join(format!("{}.dict", target.name)),
            ))
            .arg("-print_final_stats=1")
            .stdout(Stdio::null())
            .stderr(
                fs::File::create(&log)
                    .with_context(|| format!("Cannot create {}", log.display()))?,
            );
        let start = Instant::now();
        let status = process::run(&mut cmd, Group::Own)?;
        let seconds_run = start.elapsed().as_secs_f64();
        let text = fs::read_to_string(&log).unwrap_or_default();
        let new_artifacts: Vec<String> = list(&artifacts)
            .into_iter()
            .filter(|a| !artifacts_before.contains(a))
            .collect();
        let corpus_after = match mode {
            Mode::Extend => count(&corpus),
            Mode::Check => count(&corpus) + count(&new_inputs),
        };
        let mut ok = status.success();
        let mut result = process::describe(status);
        if ok && mode == Mode::Extend {
            // Keep only the inputs that add coverage: what is committed stays small.
            let mut cmin = nightly_cargo();
            cmin.current_dir(&dir)
                .args(["fuzz", "cmin", target.name])
                .arg(&corpus)
                .arg("--")
                .args(&limits)
                .stdout(Stdio::null())
                .stderr(fs::File::options().append(true).open(&log)?);
            // A failed minimisation is reported with the others, after every target ran.
            if let Err(err) = process::run_checked(&mut cmin, Group::Own) {
                ok = false;
                result = format!("cmin failed: {err:#}");
            }
        } else if !ok {
            // The end of the log holds the crash report.
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            for line in tail.into_iter().rev() {
                eprintln!("    {line}");
            }
        }
        outcomes.push(Outcome {
            name: target.name,
            seconds: seconds_run,
            executions: stat(&text, "stat::number_of_executed_units:"),
            corpus_before,
            corpus_after,
            corpus_minimised: count(&corpus),
            artifacts: new_artifacts,
            ok,
            status: result,
        });
    }

    header("summary");
    eprintln!("target       wall s   executions   corpus: before -> after -> minimised   result");
    for o in &outcomes {
        eprintln!(
            "{:<12} {:>6.0}   {:>10}   {:>14} -> {:>5} -> {:<9}   {}",
            o.name,
            o.seconds,
            o.executions.map_or("?".to_owned(), |n| n.to_string()),
            o.corpus_before,
            o.corpus_after,
            o.corpus_minimised,
            if o.artifacts.is_empty() {
                o.status.clone()
            } else {
                format!("{}: {}", o.status, o.artifacts.join(", "))
            }
        );
    }
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|o| !o.artifacts.is_empty() || !o.ok)
        .map(|o| o.name)
        .collect();
    if !failed.is_empty() {
        bail!(
            "fuzz target(s) {} found a problem: the inputs are in fuzz/artifacts/; \
             reproduce with `cargo +nightly fuzz run TARGET ARTIFACT` in fuzz/",
            failed.join(", ")
        );
    }
    if mode == Mode::Extend {
        eprintln!("new corpus entries are in fuzz/corpus/: commit them, `cargo test` replays them");
    }
    Ok(())
}

/// `cargo +nightly`, with the toolchain choices of the `cargo xtask` that runs us removed:
/// rustup's `+nightly` must decide which cargo and rustc run.
fn nightly_cargo() -> Command {
    let mut cmd = Command::new("cargo");
    cmd.arg("+nightly");
    for var in [
        "RUSTUP_TOOLCHAIN",
        "CARGO",
        "RUSTC",
        "RUSTDOC",
        "RUSTC_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Installs cargo-fuzz when `cargo +nightly fuzz` does not run; fails with what to do
/// when the nightly toolchain itself is missing.
fn ensure_cargo_fuzz() -> Result<()> {
    let runs = |args: &[&str]| {
        nightly_cargo()
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !runs(&["--version"]) {
        bail!(
            "cargo-fuzz needs the nightly toolchain: rustup toolchain install nightly --profile minimal"
        );
    }
    if runs(&["fuzz", "--version"]) {
        return Ok(());
    }
    header("cargo install cargo-fuzz --locked");
    let mut install = nightly_cargo();
    install.args(["install", "cargo-fuzz", "--locked"]);
    process::run_checked(&mut install, Group::Own)
}

/// The number of files in `dir` (0 if it does not exist).
fn count(dir: &Path) -> usize {
    list(dir).len()
}

/// The file names in `dir`, sorted (none if it does not exist).
fn list(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The number after `key` on the last line of libFuzzer's output that starts with it.
fn stat(log: &str, key: &str) -> Option<u64> {
    log.lines()
        .rev()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.trim().parse().ok())
}

/// `prefix` followed by `path`, as one argument.
fn prefixed(prefix: &str, path: &Path) -> std::ffi::OsString {
    let mut arg = std::ffi::OsString::from(prefix);
    arg.push(path);
    arg
}
