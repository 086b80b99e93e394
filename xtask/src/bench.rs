//! `cargo xtask bench [small|large|many]`: buildimage against the reference pipelines of
//! nixpkgs on a benchmark corpus (`shared/bench/make-corpus.py`), alternating runs:
//! `build` against `shared/bench/nixpkgs-buildimage.sh` for each compressor, and
//! `stream-layered`/`build-layered` against `shared/bench/stream-layered-reference.py`
//! (nixpkgs' stream method) alone and piped through pigz and zstd; and the floor rows:
//! each compressed build against the standalone compressor (`pigz -6 -p<cores>`,
//! `zstd -3 -T<cores>`) alone on buildimage's own uncompressed output.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::process::{self, Group};
use crate::{apt, header};

/// What the reference pipeline and the peak-memory measurement need.
const PACKAGES: &[&str] = &["rsync", "pigz", "jq", "zstd", "tar", "time", "python3"];

/// One row of the table: one way of building the image with buildimage, against the
/// reference that does the same job.
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

/// A command line to time, made afresh for every run.
type MakeCommand<'a> = Box<dyn Fn() -> Command + 'a>;

/// One comparison: a reference command and the buildimage variants timed against it
/// (each a row), with the files they write.
struct Case<'a> {
    title: String,
    ours: Vec<(String, MakeCommand<'a>)>,
    ours_out: PathBuf,
    reference: MakeCommand<'a>,
    ref_out: PathBuf,
}

/// The corpora `cargo xtask bench` knows, and the rows each gets.
const SIZES: [&str; 3] = ["small", "large", "many"];

/// Runs the benchmark for `size` (see [`SIZES`]) and prints a Markdown table.
///
/// `small` and `large` get the `build` rows (buildImage against nixpkgs' pipeline, every
/// compressor) and the layered rows; `many`, the closure-shaped corpus of about 700 store
/// paths, only the layered rows (`stream-layered` against nixpkgs' stream method, and
/// `build-layered` against that method piped through pigz and zstd).
pub fn bench(root: &Path, size: &str) -> Result<()> {
    let Prepared {
        shared,
        binary,
        corpus,
        top,
        top_name,
    } = prepare(root, size, PACKAGES)?;
    let work = root.join("target/bench");
    let runs = if size == "small" { 5 } else { 3 };
    let time_file = work.join("time.txt");
    let env = Bench {
        binary: &binary,
        work: &work,
        shared: &shared,
        corpus: &corpus,
        time_file: &time_file,
    };
    let mut cases = Vec::new();
    if size != "many" {
        let without_db = view_without_db(&work, size, &corpus)?;
        for compressor in ["none", "gz", "zstd"] {
            cases.push(env.build_case(compressor, &top, &top_name, &without_db)?);
        }
        let plain = env.uncompressed("build", &env.build_spec("none", &top_name)?)?;
        for compressor in ["gz", "zstd"] {
            let spec = env.build_spec(compressor, &top_name)?;
            let out = work.join(format!("buildimage.tar{}", extension(compressor)));
            let command = env.ours("build", &spec, &corpus, &out);
            cases.push(env.floor_case(compressor, "build", command, out, &plain));
        }
    }
    cases.push(env.stream_layered_case(&top_name)?);
    for compressor in ["gz", "zstd"] {
        cases.push(env.build_layered_case(compressor, &top_name)?);
    }
    // Per-layer compression: an OCI layout of the layered image against the standalone
    // compressor on its layers, concatenated (the uncompressed layered archive: the layers
    // and a few KB of metadata).
    let layers = env.uncompressed("stream-layered", &env.layered_spec(&top_name, None)?)?;
    for compressor in ["gz", "zstd"] {
        let spec = env.layered_spec(&top_name, Some(compressor))?;
        let out = work.join(format!("buildimage-oci-{compressor}"));
        let command = env.ours_oci(&spec, &out);
        cases.push(env.floor_case(compressor, "build-layered -o oci:", command, out, &layers));
    }
    let mut rows = Vec::new();
    for case in &cases {
        header(&format!("{}: {runs} runs each, alternating", case.title));
        rows.extend(measure(case, runs, &time_file)?);
    }
    print!("{}", table(size, runs, &rows));
    Ok(())
}

/// A benchmark corpus made and registered, and the release binary to time.
pub(crate) struct Prepared {
    /// `shared/` with the corpus script and the reference pipelines.
    pub shared: PathBuf,
    /// The release `buildimage`.
    pub binary: PathBuf,
    /// The corpus's store root (`target/bench/corpus-SIZE`).
    pub corpus: PathBuf,
    /// Its top store path.
    pub top: PathBuf,
    /// The top path's base name.
    pub top_name: String,
}

/// Checks `size`, installs `packages`, builds the release binary, and makes and registers
/// the corpus `size` (once; later runs reuse it).
pub(crate) fn prepare(root: &Path, size: &str, packages: &[&str]) -> Result<Prepared> {
    if !SIZES.contains(&size) {
        bail!("unknown corpus size {size:?}: use small, large or many");
    }
    let shared = shared_dir(root)?;
    header("install what the benchmark needs (apt-get)");
    apt::ensure_installed(packages)?;
    let binary = crate::build_release(root)?;
    let corpus = root.join(format!("target/bench/corpus-{size}"));
    header(&format!("corpus {}", corpus.display()));
    let top = make_corpus(&shared, &corpus, size)?;
    let top_name = top
        .file_name()
        .context("corpus top path")?
        .to_string_lossy()
        .into_owned();
    register(&corpus, &top_name)?;
    Ok(Prepared {
        shared,
        binary,
        corpus,
        top,
        top_name,
    })
}

/// What every case needs.
struct Bench<'a> {
    binary: &'a Path,
    work: &'a Path,
    shared: &'a Path,
    corpus: &'a Path,
    time_file: &'a Path,
}

impl<'a> Bench<'a> {
    /// `buildimage SUBCOMMAND SPEC --store STORE -o OUT` under GNU time, which writes the
    /// peak RSS to the time file.
    fn ours(&self, subcommand: &'a str, spec: &Path, store: &Path, out: &Path) -> MakeCommand<'a> {
        let (binary, time_file) = (self.binary, self.time_file);
        let (spec, store, out) = (spec.to_owned(), store.to_owned(), out.to_owned());
        Box::new(move || {
            let mut cmd = Command::new("/usr/bin/time");
            cmd.arg("-f")
                .arg("%M")
                .arg("-o")
                .arg(time_file)
                .arg(binary)
                .arg(subcommand)
                .arg(&spec)
                .arg("--store")
                .arg(&store)
                .arg("-o")
                .arg(&out);
            cmd
        })
    }

    /// `build-layered SPEC --store CORPUS -o oci:OUT --no-cache` under GNU time: every
    /// layer compressed and written into a fresh layout.
    fn ours_oci(&self, spec: &Path, out: &Path) -> MakeCommand<'a> {
        let (binary, time_file, corpus) = (self.binary, self.time_file, self.corpus);
        let (spec, out) = (spec.to_owned(), out.to_owned());
        Box::new(move || {
            let mut cmd = Command::new("/usr/bin/time");
            cmd.arg("-f")
                .arg("%M")
                .arg("-o")
                .arg(time_file)
                .arg(binary)
                .arg("build-layered")
                .arg(&spec)
                .arg("--store")
                .arg(corpus)
                .arg("--no-cache")
                .arg("-o")
                .arg(format!("oci:{}", out.display()));
            cmd
        })
    }

    /// buildimage's uncompressed output of `subcommand SPEC`, written once, as the input
    /// of the floor rows.
    fn uncompressed(&self, subcommand: &str, spec: &Path) -> Result<PathBuf> {
        let out = self.work.join(format!("floor-{subcommand}.tar"));
        let mut cmd = Command::new(self.binary);
        cmd.arg(subcommand)
            .arg(spec)
            .arg("--store")
            .arg(self.corpus)
            .arg("-o")
            .arg(&out);
        timed(&mut cmd)?;
        Ok(out)
    }

    /// A row of `compressor` against its floor: the standalone compressor, on all cores, on
    /// `input` (buildimage's own uncompressed output of the same image).
    fn floor_case(
        &self,
        compressor: &str,
        what: &str,
        command: MakeCommand<'a>,
        ours_out: PathBuf,
        input: &Path,
    ) -> Case<'a> {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let tool = if compressor == "gz" {
            format!("pigz -6 -p{cores}")
        } else {
            format!("zstd -q -3 -T{cores}")
        };
        let ref_out = self.work.join(format!("floor-{compressor}.out"));
        let line = format!(
            "{tool} -c {} > {}",
            shell_quote(input),
            shell_quote(&ref_out)
        );
        Case {
            title: format!("{what}, {compressor} against {tool} alone"),
            ours: vec![(format!("{what}, {compressor} / {tool} alone"), command)],
            ours_out,
            reference: Box::new(move || {
                let mut cmd = Command::new("bash");
                cmd.args(["-o", "pipefail", "-c", &line]);
                cmd
            }),
            ref_out,
        }
    }

    /// The `build` spec of the corpus's top path with `compressor`.
    fn build_spec(&self, compressor: &str, top_name: &str) -> Result<PathBuf> {
        self.spec(
            &format!("spec-{compressor}.json"),
            &format!(
                r#"{{"name":"bench","tag":"latest","copyToRoot":"/nix/store/{top_name}","compressor":"{compressor}"}}"#
            ),
        )
    }

    /// A spec file in the work folder.
    fn spec(&self, name: &str, json: &str) -> Result<PathBuf> {
        let spec = self.work.join(name);
        std::fs::write(&spec, json)?;
        Ok(spec)
    }

    /// `build` with `compressor` (and, for `none`, also on the store without its
    /// database) against `nixpkgs-buildimage.sh`.
    fn build_case(
        &self,
        compressor: &str,
        top: &Path,
        top_name: &str,
        without_db: &Path,
    ) -> Result<Case<'a>> {
        let spec = self.build_spec(compressor, top_name)?;
        let ext = extension(compressor);
        let ours_out = self.work.join(format!("buildimage.tar{ext}"));
        let ref_out = self.work.join(format!("reference.tar{ext}"));
        // Every compressor with the database; `none` also without, where the closure is
        // found by reading every file once more (the reference is told the closure).
        let mut stores = vec![(compressor.to_owned(), self.corpus.to_owned())];
        if compressor == "none" {
            stores.push((format!("{compressor}, no database"), without_db.to_owned()));
        }
        let ours = stores
            .into_iter()
            .map(|(label, store)| {
                let command = self.ours("build", &spec, &store, &ours_out);
                (format!("build, {label}"), command)
            })
            .collect();
        let (script, corpus, out) = (
            self.shared.join("bench/nixpkgs-buildimage.sh"),
            self.corpus.to_owned(),
            ref_out.clone(),
        );
        let (compressor, top) = (compressor.to_owned(), top.to_owned());
        Ok(Case {
            title: format!("build, {compressor}"),
            ours,
            ours_out,
            reference: Box::new(move || {
                let mut cmd = Command::new("bash");
                cmd.arg(&script)
                    .arg(&corpus)
                    .arg(&out)
                    .arg(&compressor)
                    .arg(&top);
                cmd
            }),
            ref_out,
        })
    }

    /// The layered spec: the corpus's top path as `contents`, 100 layers.
    fn layered_spec(&self, top_name: &str, compressor: Option<&str>) -> Result<PathBuf> {
        let name = format!("spec-layered-{}.json", compressor.unwrap_or("stream"));
        let compressor = compressor.map_or(String::new(), |c| format!(r#","compressor":"{c}""#));
        self.spec(
            &name,
            &format!(
                r#"{{"name":"bench","tag":"layered","contents":["/nix/store/{top_name}"],"maxLayers":{MAX_LAYERS}{compressor}}}"#
            ),
        )
    }

    /// `stream-layered` against `stream-layered-reference.py`, both into a file.
    fn stream_layered_case(&self, top_name: &str) -> Result<Case<'a>> {
        let spec = self.layered_spec(top_name, None)?;
        let ours_out = self.work.join("buildimage-layered.tar");
        let command = self.ours("stream-layered", &spec, self.corpus, &ours_out);
        let ref_out = self.work.join("reference-layered.tar");
        Ok(Case {
            title: "stream-layered".to_owned(),
            ours: vec![("stream-layered, none".to_owned(), command)],
            ours_out,
            reference: self.reference_stream(None, &ref_out),
            ref_out,
        })
    }

    /// `build-layered` with `compressor` against the stream method piped through the
    /// standalone compressor (`pigz`, `zstd -T0`, their default levels).
    fn build_layered_case(&self, compressor: &str, top_name: &str) -> Result<Case<'a>> {
        let spec = self.layered_spec(top_name, Some(compressor))?;
        let filter = if compressor == "gz" {
            "pigz"
        } else {
            "zstd -q -T0"
        };
        let ext = extension(compressor);
        let ours_out = self.work.join(format!("buildimage-layered.tar{ext}"));
        let command = self.ours("build-layered", &spec, self.corpus, &ours_out);
        let ref_out = self.work.join(format!("reference-layered.tar{ext}"));
        Ok(Case {
            title: format!("build-layered, {compressor}"),
            ours: vec![(format!("build-layered, {compressor}"), command)],
            ours_out,
            reference: self.reference_stream(Some(filter), &ref_out),
            ref_out,
        })
    }

    /// `stream-layered-reference.py CORPUS 100 [| FILTER] > OUT`.
    fn reference_stream(&self, filter: Option<&str>, out: &Path) -> MakeCommand<'a> {
        let script = self.shared.join("bench/stream-layered-reference.py");
        let line = format!(
            "python3 {} {} {MAX_LAYERS}{} > {}",
            shell_quote(&script),
            shell_quote(self.corpus),
            filter.map_or(String::new(), |f| format!(" | {f}")),
            shell_quote(out)
        );
        Box::new(move || {
            let mut cmd = Command::new("bash");
            cmd.args(["-o", "pipefail", "-c", &line]);
            cmd
        })
    }
}

/// The suffix a compressor adds to `.tar`.
fn extension(compressor: &str) -> &'static str {
    match compressor {
        "gz" => ".gz",
        "zstd" => ".zst",
        _ => "",
    }
}

/// The layer budget of the layered rows, nixpkgs' default.
const MAX_LAYERS: u32 = 100;

/// The peak RSS in KiB that GNU time (`-f %M -o FILE`) wrote last into `time_file`; 0
/// when it wrote none.
pub(crate) fn peak_rss(time_file: &Path) -> u64 {
    std::fs::read_to_string(time_file)
        .ok()
        .and_then(|t| t.lines().last().and_then(|l| l.trim().parse().ok()))
        .unwrap_or(0)
}

/// A path for `bash -c`.
pub(crate) fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

/// Runs one warm-up round (page cache, first-run effects), then `runs` counted rounds,
/// each running every variant of ours and then the reference; returns one row per variant.
fn measure(case: &Case<'_>, runs: usize, time_file: &Path) -> Result<Vec<Row>> {
    let mut rows: Vec<Row> = case.ours.iter().map(|(l, _)| Row::new(l.clone())).collect();
    for run in 0..=runs {
        let mut ours = Vec::new();
        for (_, make) in &case.ours {
            remove(&case.ours_out);
            let secs = timed(&mut make())?;
            let rss = peak_rss(time_file);
            ours.push((secs, rss, output_size(&case.ours_out)?));
        }
        let _ = std::fs::remove_file(&case.ref_out);
        let ref_secs = timed(&mut (case.reference)())?;
        if run == 0 {
            continue;
        }
        for (row, (secs, rss, out_size)) in rows.iter_mut().zip(ours) {
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
    let ref_size = std::fs::metadata(&case.ref_out)?.len();
    for row in &mut rows {
        row.ref_size = ref_size;
    }
    Ok(rows)
}

/// Removes an output of an earlier run: a file, or a folder (an OCI layout).
fn remove(path: &Path) {
    if path.is_dir() {
        let _ = std::fs::remove_dir_all(path);
    } else {
        let _ = std::fs::remove_file(path);
    }
}

/// The size of an output: a file's, or the bytes of every file in a folder.
fn output_size(path: &Path) -> Result<u64> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_dir() {
        return Ok(meta.len());
    }
    let mut total = 0;
    for entry in std::fs::read_dir(path)? {
        total += output_size(&entry?.path())?;
    }
    Ok(total)
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
pub(crate) fn timed(cmd: &mut Command) -> Result<f64> {
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

pub(crate) fn median(values: &[f64]) -> f64 {
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

/// The line above a benchmark table: corpus, rounds, cores.
pub(crate) fn table_title(size: &str, runs: usize) -> String {
    format!(
        "\ncorpus {size}, {runs} alternating runs each after one warm-up, {} cores\n\n",
        std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
    )
}

// Sizes and memory figures are far below 2^52: the float conversions are exact enough.
#[allow(clippy::cast_precision_loss)]
fn table(size: &str, runs: usize, rows: &[Row]) -> String {
    let mut out = table_title(size, runs);
    let _ = writeln!(
        out,
        "| row | buildimage median s | reference median s | ratio (median of pairs) | buildimage size | reference size | size ratio | buildimage peak RSS |"
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
