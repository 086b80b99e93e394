//! `cargo xtask bench [small|large]`: buildimage against the reference pipeline of nixpkgs
//! (`shared/bench/nixpkgs-buildimage.sh`) on the benchmark corpus
//! (`shared/bench/make-corpus.py`), alternating runs, for each compressor.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::process::{self, Group};
use crate::{apt, header};

/// What the reference pipeline and the peak-memory measurement need.
const PACKAGES: &[&str] = &["rsync", "pigz", "jq", "zstd", "tar", "time", "python3"];

/// One row of the table: a compressor, and how buildimage finds the closure.
struct Row {
    label: String,
    ours: Vec<f64>,
    reference: Vec<f64>,
    ratios: Vec<f64>,
    rss_kib: Vec<u64>,
    our_size: u64,
    ref_size: u64,
}

impl Row {
    fn new(label: String) -> Self {
        Row {
            label,
            ours: Vec::new(),
            reference: Vec::new(),
            ratios: Vec::new(),
            rss_kib: Vec::new(),
            our_size: 0,
            ref_size: 0,
        }
    }
}

/// Runs the benchmark for `size` (`small` or `large`) and prints a Markdown table.
pub fn bench(root: &Path, size: &str) -> Result<()> {
    if size != "small" && size != "large" {
        bail!("unknown corpus size {size:?}: use small or large");
    }
    let shared = shared_dir(root)?;
    header("install what the reference pipeline needs (apt-get)");
    apt::ensure_installed(PACKAGES)?;
    let binary = crate::build_release(root)?;

    let work = root.join("target/bench");
    let corpus = work.join(format!("corpus-{size}"));
    header(&format!("corpus {}", corpus.display()));
    let top = make_corpus(&shared, &corpus, size)?;
    let top_name = top
        .file_name()
        .context("corpus top path")?
        .to_string_lossy()
        .into_owned();
    register(&corpus, &top_name)?;
    let without_db = view_without_db(&work, size, &corpus)?;
    let runs = if size == "small" { 5 } else { 3 };
    let mut rows = Vec::new();
    for compressor in ["none", "gz", "zstd"] {
        header(&format!("{compressor}: {runs} runs each, alternating"));
        let spec = work.join(format!("spec-{compressor}.json"));
        std::fs::write(
            &spec,
            format!(
                r#"{{"name":"bench","tag":"latest","copyToRoot":"/nix/store/{top_name}","compressor":"{compressor}"}}"#
            ),
        )?;
        let ext = match compressor {
            "gz" => ".gz",
            "zstd" => ".zst",
            _ => "",
        };
        // Every compressor with the database; `none` also without, where the closure is
        // found by reading every file once more (the reference is told the closure).
        let mut stores = vec![(compressor.to_owned(), corpus.clone())];
        if compressor == "none" {
            stores.push((format!("{compressor}, no database"), without_db.clone()));
        }
        let ours_out = work.join(format!("buildimage.tar{ext}"));
        let ref_out = work.join(format!("reference.tar{ext}"));
        let time_file = work.join("time.txt");
        let mut these: Vec<Row> = stores.iter().map(|(l, _)| Row::new(l.clone())).collect();
        // One warm-up of each (page cache, first-run effects), then counted rounds.
        for run in 0..=runs {
            let mut ours_secs = Vec::new();
            for (_, store) in &stores {
                let _ = std::fs::remove_file(&ours_out);
                let mut ours = Command::new("/usr/bin/time");
                ours.arg("-f")
                    .arg("%M")
                    .arg("-o")
                    .arg(&time_file)
                    .arg(&binary)
                    .arg("build")
                    .arg(&spec)
                    .arg("--store")
                    .arg(store)
                    .arg("-o")
                    .arg(&ours_out);
                let secs = timed(&mut ours)?;
                let rss: u64 = std::fs::read_to_string(&time_file)?
                    .lines()
                    .last()
                    .unwrap_or("0")
                    .trim()
                    .parse()
                    .unwrap_or(0);
                ours_secs.push((secs, rss, std::fs::metadata(&ours_out)?.len()));
            }
            let _ = std::fs::remove_file(&ref_out);
            let mut reference = Command::new("bash");
            reference
                .arg(shared.join("bench/nixpkgs-buildimage.sh"))
                .arg(&corpus)
                .arg(&ref_out)
                .arg(compressor)
                .arg(&top);
            let ref_secs = timed(&mut reference)?;
            if run == 0 {
                continue;
            }
            for (row, (secs, rss, out_size)) in these.iter_mut().zip(ours_secs) {
                eprintln!(
                    "  run {run}: buildimage ({}) {secs:.3} s ({rss} KiB), reference {ref_secs:.3} s",
                    row.label
                );
                row.ours.push(secs);
                row.reference.push(ref_secs);
                row.ratios.push(secs / ref_secs);
                row.rss_kib.push(rss);
                row.our_size = out_size;
            }
        }
        let ref_size = std::fs::metadata(&ref_out)?.len();
        for row in &mut these {
            row.ref_size = ref_size;
        }
        rows.extend(these);
    }
    print!("{}", table(size, runs, &rows));
    Ok(())
}

/// Registers the corpus's store paths in a Nix database at `nix/var/nix/db`, as Nix does
/// for every path it builds or substitutes: the references are found by scanning, once, as
/// Nix finds them after a build. A database made for another top path (the corpus was
/// made again) is made again.
fn register(corpus: &Path, top_name: &str) -> Result<()> {
    use buildimage_nixdb::{Store, StorePath, write_db};
    let db = corpus.join("nix/var/nix/db");
    let stamp = db.join("bench-top-path");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == top_name) {
        return Ok(());
    }
    header(&format!("register the corpus in {}", db.display()));
    let _ = std::fs::remove_dir_all(&db);
    let store = Store::open_without_db(corpus)?;
    let top = StorePath::from_base_name(top_name)?;
    let closure = store.closure_with_nar_info(&[top])?;
    let temp = corpus.join("nix/var/nix/db.partial");
    let _ = std::fs::remove_dir_all(&temp);
    std::fs::create_dir_all(&temp)?;
    write_db(&temp, closure.as_slice(), 1)?;
    std::fs::write(temp.join("bench-top-path"), top_name)?;
    std::fs::rename(&temp, &db)?;
    eprintln!("{} store paths registered", closure.len());
    Ok(())
}

/// The corpus's store without its database: `nix/store` is a link to the corpus's.
fn view_without_db(work: &Path, size: &str, corpus: &Path) -> Result<PathBuf> {
    let view = work.join(format!("corpus-{size}-no-db"));
    let link = view.join("nix/store");
    if std::fs::symlink_metadata(&link).is_err() {
        std::fs::create_dir_all(view.join("nix"))?;
        std::os::unix::fs::symlink(corpus.join("nix/store"), &link)?;
    }
    Ok(view)
}

/// `shared/` beside the checkout (where CI and developers have it), or `BUILDIMAGE_SHARED`.
fn shared_dir(root: &Path) -> Result<PathBuf> {
    let dir =
        std::env::var_os("BUILDIMAGE_SHARED").map_or_else(|| root.join("../shared"), PathBuf::from);
    if !dir.join("bench/make-corpus.py").exists() {
        bail!(
            "the benchmark corpus script is not at {}: set BUILDIMAGE_SHARED to the folder \
             holding bench/make-corpus.py and bench/nixpkgs-buildimage.sh",
            dir.join("bench/make-corpus.py").display()
        );
    }
    Ok(dir)
}

/// Makes the corpus when missing (the script skips what exists) and returns its top path.
fn make_corpus(shared: &Path, corpus: &Path, size: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(corpus)?;
    let mut cmd = Command::new("python3");
    cmd.arg(shared.join("bench/make-corpus.py"))
        .arg(corpus)
        .arg(size);
    let out = process::output_with_timeout(&mut cmd, Duration::from_mins(20))?;
    if !out.status.success() {
        bail!(
            "make-corpus.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let top = String::from_utf8(out.stdout)?.trim().to_owned();
    Ok(PathBuf::from(top))
}

/// Runs `cmd` to completion, its output discarded, and returns its wall time in seconds.
fn timed(cmd: &mut Command) -> Result<f64> {
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let start = Instant::now();
    let status = process::run(cmd, Group::Own)?;
    let secs = start.elapsed().as_secs_f64();
    if !status.success() {
        bail!(
            "{} failed ({})",
            process::display(cmd),
            process::describe(status)
        );
    }
    Ok(secs)
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        f64::midpoint(v[n / 2 - 1], v[n / 2])
    }
}

// Sizes and memory figures are far below 2^52: the float conversions are exact enough.
#[allow(clippy::cast_precision_loss)]
fn table(size: &str, runs: usize, rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\ncorpus {size}, {runs} alternating runs each after one warm-up, {} cores\n",
        std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
    );
    let _ = writeln!(
        out,
        "| compressor | buildimage median s | reference median s | ratio (median of pairs) | buildimage size | reference size | size ratio | buildimage peak RSS |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for r in rows {
        let rss = r.rss_kib.iter().copied().max().unwrap_or(0);
        let _ = writeln!(
            out,
            "| {} | {:.3} | {:.3} | {:.3} | {} | {} | {:.4} | {:.1} MiB |",
            r.label,
            median(&r.ours),
            median(&r.reference),
            median(&r.ratios),
            r.our_size,
            r.ref_size,
            r.our_size as f64 / r.ref_size as f64,
            rss as f64 / 1024.0
        );
    }
    out
}
