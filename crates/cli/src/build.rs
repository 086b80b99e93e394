//! `buildimage build`: parse, plan, stage when a script needs it, stream, commit.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use buildimage_archive::{
    BaseFs, BaseImage, Compressed, ImageSpec, Select, Tag, merge_base_config, write_image,
};
use buildimage_layer::{CopyOptions, DEFAULT_MTIME, Owner, Tree, UpperOptions, Warnings, stage};

use buildimage_nixdb::StorePath;

use crate::BuildArgs;
use crate::closure;
use crate::output::Output;
use crate::signals::Signals;
use crate::spec::{self, Created, Spec};

/// Builds the image that `args` describe.
pub fn run(args: &BuildArgs, signals: &Signals, user_umask: u32) -> Result<()> {
    if args.json && args.out.as_deref() == Some(Path::new("-")) {
        bail!("--json prints to standard output, which -o - already uses for the image");
    }
    let (text, base_dir) = read_spec(&args.spec)?;
    let parsed = spec::parse(&text, &base_dir)?;
    for warning in &parsed.warnings {
        eprintln!("warning: {warning}");
    }
    let spec = parsed.spec;
    refuse_unsupported(&spec)?;
    let mut phases = Phases::from_env();

    let name = spec.name.to_lowercase();
    spec::validate_reference(&name, spec.tag.as_deref().unwrap_or("latest"))?;
    let mtime = source_date_epoch()?;
    let dest = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(spec::default_output_name(&spec.name, spec.compressor)));
    let output = Output::open(&dest, 0o666 & !user_umask)?;

    // The base image: read once into a private scratch folder, checked, merged view built.
    let base = match &spec.from_image {
        Some(path) => {
            let select = Select {
                name: spec.from_image_name.as_deref(),
                tag: spec.from_image_tag.as_deref(),
            };
            let (base, notes) =
                BaseImage::open_with(path, select, &std::env::temp_dir(), Some(signals.flag()))
                    .with_context(|| format!("Key `fromImage`: cannot use {}", path.display()))?;
            for note in notes {
                eprintln!("warning: {note}");
            }
            Some(base)
        }
        None => None,
    };
    let base_fs = match &base {
        Some(b) => b
            .filesystem()
            .context("Key `fromImage`: cannot read the base image's layers")?,
        None => BaseFs::new(),
    };
    signals.check()?;
    phases.end("read fromImage");

    // Plan the layer: copy every item, later ones winning.
    let options = CopyOptions {
        keep_dirlinks: spec.keep_contents_dirlinks,
        store_root: args.store.clone(),
    };
    let mut tree = Tree::new();
    let mut warnings = Warnings::default();
    for item in &spec.copy_to_root {
        let host = host_path(item, &args.store);
        tree.copy_from(&host, &options, &mut warnings)
            .with_context(|| format!("Key `copyToRoot`: cannot copy {}", item.display()))?;
    }
    tree.make_root_writable();
    phases.end("plan copyToRoot");

    let closure_info = args
        .closure_info
        .as_deref()
        .or(spec.closure_info.as_deref());
    let mut store = closure::open_store(&args.store, closure_info)?;
    // The database files must live until the layer is written, since entries point to them.
    let _database = if spec.include_nix_db {
        let scratch = Scratch::new("buildimage-nixdb.")?;
        let known = add_database(&mut tree, &spec, store.as_ref(), scratch.path(), mtime)?;
        // What was scanned and hashed for the database is not scanned again for the layer.
        store = store.map(|s| s.with_path_infos(known.iter().cloned()));
        Some(scratch)
    } else {
        None
    };
    signals.check()?;

    // Scripts need real files to run in: stage the tree, run, plan again from the result.
    // The staging folder must live until the layer is written, since entries point into it.
    let staging = if let Some(script) = &spec.run_as_root {
        Some(run_as_root(
            &mut tree,
            script,
            &spec,
            base.as_ref(),
            &args.store,
            signals,
            &mut warnings,
        )?)
    } else if spec.extra_commands.is_empty() {
        None
    } else {
        let staging = Scratch::new("buildimage-stage.")?;
        stage::materialize(&tree, staging.path())
            .context("Staging the layer for `extraCommands` failed")?;
        signals.check()?;
        crate::script::run(
            "extraCommands",
            &spec.extra_commands,
            staging.path(),
            signals,
        )?;
        tree = Tree::from_dir(staging.path(), &mut warnings)
            .context("Reading the layer back after `extraCommands` failed")?;
        Some(staging)
    };
    for warning in &warnings.0 {
        eprintln!("warning: {warning}");
    }
    signals.check()?;

    let config = merge_base_config(
        spec.config.as_ref(),
        base.as_ref()
            .and_then(|b| b.config.get("config"))
            .and_then(Value::as_object),
        spec.inherit_config,
    );
    phases.end("includeNixDB and extraCommands");
    // In root mode the owners are the real ones the script left (recorded in the tree);
    // `uid` and `gid` apply to pure mode only, as in nixpkgs.
    let owner = if spec.run_as_root.is_some() {
        Owner::root()
    } else {
        Owner::numeric(spec.uid.into(), spec.gid.into())
    };
    let entries = tree.entries(&owner, mtime);
    // The layer's runtime closure: every store path its files or its config name, and
    // everything those reference.
    let closure = match &store {
        Some(store) => {
            let config_json = serde_json::to_vec(&config)?;
            let roots = closure::find_roots(store, &tree, &[&config_json])
                .context("Scanning the layer for store paths failed")?;
            let closure = store
                .closure(&roots)
                .context("Computing the closure of the layer failed")?;
            Some((store, closure))
        }
        None => None,
    };
    let store_paths: Vec<String> = closure
        .iter()
        .flat_map(|(_, c)| c.paths().map(|p| p.as_str().to_owned()))
        .collect();
    let layer = closure::Layer::new(
        entries,
        closure.as_ref().map(|(s, c)| (*s, c)),
        &tree,
        &base_fs,
        mtime,
    );
    phases.end("find the store closure");
    signals.check()?;
    let created = match &spec.created {
        Created::Fixed(text) => text.clone(),
        Created::Now => spec::now_rfc3339(unix_now()),
    };
    let auto_tag = |config_digest: &str| auto_tag(&name, config_digest);
    let image = ImageSpec {
        name: name.clone(),
        tag: spec.tag.clone().map_or(Tag::Auto(&auto_tag), Tag::Fixed),
        config,
        architecture: spec.architecture.clone().unwrap_or_else(host_architecture),
        created,
        mtime,
        base: base.as_ref(),
    };
    let shown = output.dest();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let stream =
        Compressed::new(output, spec.compressor, threads).context("Cannot start the compressor")?;
    let (stream, summary) = write_image(stream, &image, &layer, Some(signals.flag()))
        .with_context(|| format!("Writing {} failed", shown.display()))?;
    drop(staging);
    let output = stream
        .finish()
        .with_context(|| format!("Writing {} failed", shown.display()))?;
    phases.end("write the archive");
    signals.check()?;
    output.commit()?;
    phases.end("commit");

    eprintln!(
        "buildimage: wrote {} ({}:{}, image ID sha256:{})",
        shown.display(),
        name,
        summary.tag,
        summary.config_digest
    );
    if args.json {
        let out_path = if shown == Path::new("-") {
            shown
        } else {
            std::path::absolute(&shown).unwrap_or(shown)
        };
        let info = json!({
            "imageName": name,
            "imageTag": summary.tag,
            "outPath": out_path,
            "layer": {
                "id": summary.layer_id,
                "diffId": summary.layer.diff_id_string(),
                "size": summary.layer.size,
                "checksum": summary.layer.tarsum,
            },
            "configDigest": format!("sha256:{}", summary.config_digest),
            "compressor": spec.compressor.as_str(),
            "storePaths": store_paths,
            "buildArgs": spec.build_args,
        });
        println!("{}", serde_json::to_string_pretty(&info)?);
    }
    Ok(())
}

/// Reads the spec and returns its text and the folder its relative paths start from.
fn read_spec(path: &Path) -> Result<(String, PathBuf)> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("Cannot read the spec from standard input")?;
        return Ok((text, std::env::current_dir()?));
    }
    let text = fs_err::read_to_string(path).context("Cannot read the spec")?;
    let dir = std::path::absolute(path)?
        .parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_owned);
    Ok((text, dir))
}

/// Keys that only mean something together with another one.
fn refuse_unsupported(spec: &Spec) -> Result<()> {
    if spec.run_as_root_shell.is_some() && spec.run_as_root.is_none() {
        bail!("Key `runAsRootShell` needs `runAsRoot`: there is no script to run");
    }
    if spec.inherit_config && spec.from_image.is_none() {
        bail!("Key `inheritConfig` needs `fromImage`: there is no base config to inherit");
    }
    Ok(())
}

/// Root mode: the base layers extracted as the overlay's lower folders, `copyToRoot` staged
/// as its upper folder, `runAsRoot` run as root in namespaces over it, then `extraCommands`
/// in the upper folder, which is read back (deletions as whiteouts, real owners) as the
/// layer. Returns the scratch folder holding it.
fn run_as_root(
    tree: &mut Tree,
    script: &str,
    spec: &Spec,
    base: Option<&BaseImage>,
    store_root: &Path,
    signals: &Signals,
    warnings: &mut Warnings,
) -> Result<Scratch> {
    let scratch = Scratch::new("buildimage-root.")?;
    let mut lower = Vec::new();
    if let Some(base) = base {
        // The base's layers in order, each once (the last occurrence counts, as nixpkgs).
        let mut seen = BTreeSet::new();
        let mut layers = Vec::new();
        for layer in base.layers.iter().rev() {
            if seen.insert(layer.diff_id) {
                layers.push(layer);
            }
        }
        layers.reverse();
        for (i, layer) in layers.iter().enumerate() {
            let dir = scratch.path().join(format!("lower-{i}"));
            fs_err::create_dir(&dir)?;
            let extracted =
                buildimage_sandbox::extract_layer(&layer.path, &dir).with_context(|| {
                    format!("Key `fromImage`: cannot extract layer {}", layer.member)
                })?;
            for name in extracted.skipped_devices_outside_dev() {
                warnings.0.push(format!(
                    "Key `fromImage`: device node {} of layer {} is not visible to \
                     `runAsRoot`: only root can create device nodes (the image keeps it)",
                    String::from_utf8_lossy(name),
                    layer.member
                ));
            }
            lower.push(dir);
            signals.check()?;
        }
    }
    let upper = scratch.path().join("upper");
    fs_err::create_dir(&upper)?;
    stage::materialize(tree, &upper).context("Staging copyToRoot for `runAsRoot` failed")?;
    let store = store_root.join("nix/store");
    let request = buildimage_sandbox::RootRun {
        lower,
        upper: upper.clone(),
        work: scratch.path().join("work"),
        script: script.to_owned(),
        shell: spec.run_as_root_shell.clone(),
        store: store.is_dir().then_some(store),
    };
    signals.check()?;
    let result = buildimage_sandbox::run_as_root_interruptible(
        &request,
        Path::new("/proc/self/exe"),
        signals.flag(),
    );
    signals.check()?;
    result.context("Key `runAsRoot`")?;
    if !spec.extra_commands.is_empty() {
        crate::script::run("extraCommands", &spec.extra_commands, &upper, signals)?;
    }
    let (root_uid, root_gid) = buildimage_sandbox::host_root_ids();
    *tree = Tree::from_upper(&upper, &UpperOptions { root_uid, root_gid }, warnings)
        .context("Reading the layer back after `runAsRoot` failed")?;
    Ok(scratch)
}

/// `includeNixDB`: a database of the closure of `copyToRoot` in the layer, with GC roots
/// for the items that are store paths. Items that are plain folders contribute the store
/// paths their contents name. Returns that closure.
fn add_database(
    tree: &mut Tree,
    spec: &Spec,
    store: Option<&buildimage_nixdb::Store>,
    dir: &Path,
    mtime: u64,
) -> Result<buildimage_nixdb::Closure> {
    let gcroots: Vec<StorePath> = spec
        .copy_to_root
        .iter()
        .filter_map(|item| {
            item.to_str()
                .and_then(|s| StorePath::new(s.trim_end_matches('/')).ok())
        })
        .collect();
    let closure = match store {
        Some(store) => {
            let mut roots: BTreeSet<StorePath> = spec
                .copy_to_root
                .iter()
                .filter_map(|item| item.to_str().and_then(StorePath::prefix_of))
                .collect();
            roots.extend(
                closure::find_roots(store, tree, &[])
                    .context("Scanning copyToRoot for store paths failed")?,
            );
            let roots: Vec<StorePath> = roots.into_iter().collect();
            store
                .closure_with_nar_info(&roots)
                .context("Key `includeNixDB`: computing the closure of copyToRoot failed")?
        }
        None => buildimage_nixdb::Closure::default(),
    };
    closure::add_nix_db(tree, &closure, &gcroots, dir, mtime)?;
    Ok(closure)
}

/// Where a spec path is read from: store paths from the `--store` folder, others as they are.
fn host_path(path: &Path, store_root: &Path) -> PathBuf {
    match path.strip_prefix("/nix/store") {
        Ok(rest) => store_root.join("nix/store").join(rest),
        Err(_) => path.to_owned(),
    }
}

/// Modification time of every tar entry: `SOURCE_DATE_EPOCH`, or 1980-01-01.
fn source_date_epoch() -> Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(text) if !text.is_empty() => text.trim().parse::<u64>().with_context(|| {
            format!("SOURCE_DATE_EPOCH must be a non-negative integer of seconds, got {text:?}")
        }),
        _ => Ok(DEFAULT_MTIME),
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The automatic tag: 32 nix32 characters, like the hash part of the store path nixpkgs
/// would use, derived from the name and the image ID so that the same content always gets
/// the same tag and other content another.
fn auto_tag(name: &str, config_digest: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"buildimage auto tag\0");
    h.update(name.as_bytes());
    h.update(b"\0");
    h.update(config_digest.as_bytes());
    let folded = buildimage_nixdb::nix32::compress_hash(&h.finalize(), 20);
    buildimage_nixdb::nix32::encode(&folded)
}

/// The host's architecture in Go's naming, as nixpkgs' default.
fn host_architecture() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        "mips64" if cfg!(target_endian = "little") => "mips64le",
        "mips" if cfg!(target_endian = "little") => "mipsle",
        "loongarch64" => "loong64",
        other => other,
    };
    arch.to_owned()
}

/// A temporary folder (staging, the database being written); removed with everything in
/// it, read-only store folders included, when dropped: on success, error or interruption.
struct Scratch(tempfile::TempDir);

impl Scratch {
    fn new(prefix: &str) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .context("Cannot create a temporary folder")?;
        Ok(Scratch(dir))
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = stage::remove_tree(self.0.path()) {
            eprintln!("warning: cannot remove a temporary folder: {e}");
        }
    }
}

/// Wall time and peak memory after each step, printed on standard error when
/// `BUILDIMAGE_TIMINGS` is set: how docs/performance.md breaks a build down.
struct Phases {
    last: Option<std::time::Instant>,
}

impl Phases {
    fn from_env() -> Self {
        Phases {
            last: std::env::var_os("BUILDIMAGE_TIMINGS").map(|_| std::time::Instant::now()),
        }
    }

    fn end(&mut self, what: &str) {
        if let Some(last) = self.last.as_mut() {
            let now = std::time::Instant::now();
            // The peak resident set so far, as the kernel counts it.
            let peak = std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("VmHWM:"))
                        .map(|l| l.trim_start_matches("VmHWM:").trim().to_owned())
                })
                .unwrap_or_default();
            eprintln!(
                "timing: {what}: {:.3} s (peak RSS so far {peak})",
                (now - *last).as_secs_f64()
            );
            *last = now;
        }
    }
}
