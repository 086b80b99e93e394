//! `buildimage nix-build FUNCTION`: the builder of the Nix functions in `nix/default.nix`.
//!
//! Nix runs it in its build sandbox with the derivation's structured attributes in
//! `.attrs.json`: `spec` (the function's arguments, derivations turned into store paths),
//! `outputs` (the output paths) and `closure` (what the derivation's
//! `exportReferencesGraph` made of every store path in `spec`: path, NAR hash and size,
//! references). The closure becomes a `registration` listing (the spec's `closureInfo`),
//! so the build needs no Nix database; a `tag` left out or `null` becomes the hash part of
//! `$out` (of `$conf` for a stream), as dockerTools does, so the Nix side knows it before
//! the build. Then:
//!
//! - `build`, `build-layered`: the command of that name runs as a child with `-o $out
//!   --store / --no-cache`, so its messages are the command line's; its scripts find the
//!   `bin` folders of the image's `contents` / `copyToRoot` on `PATH` (a Nix build has no
//!   other tools). `$layer` of `build` gets the `layer` object of its `--json` report.
//! - `stream-layered`: the spec is checked as `stream-layered` would check it, then
//!   `$conf/spec.json` and `$conf/registration` are written, and `$out` is that spec under
//!   the line `#!<this binary> stream-layered`: an executable that streams the image
//!   (`streamLayeredImage`), and takes `stream-layered`'s options (`$out -o oci:dir`).

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value};

use buildimage_cli::args::{NixBuildArgs, NixFunction};
use buildimage_cli::request;
use buildimage_cli::spec::layered::{self, Function};
use buildimage_nixdb::{PathInfo, StorePath, hash, registration};

use super::common::context;

/// The name of the structured attributes file Nix writes into the build folder.
const ATTRS_FILE: &str = ".attrs.json";

/// Builds the outputs of the derivation whose structured attributes `args` point to.
pub fn run(args: &NixBuildArgs) -> Result<()> {
    let attrs_path = attrs_file(args.attrs.as_deref())?;
    let text = fs::read(&attrs_path).with_context(|| {
        format!(
            "Cannot read the structured attributes {}",
            attrs_path.display()
        )
    })?;
    let attrs: Map<String, Value> = serde_json::from_slice(&text).with_context(|| {
        format!(
            "{} is not a JSON object of structured attributes",
            attrs_path.display()
        )
    })?;
    let work = attrs_path
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_owned);
    let out = output(&attrs, "out")?;
    let mut spec = match attrs.get("spec") {
        Some(Value::Object(spec)) => spec.clone(),
        _ => bail!(
            "{}: `spec` is not an object of arguments",
            attrs_path.display()
        ),
    };
    if spec.get("tag").is_none_or(Value::is_null) {
        // As dockerTools: the hash part of the image, or of the stream's `conf` (the
        // stream names it, so it cannot name the stream).
        let named = match args.function {
            NixFunction::StreamLayered => output(&attrs, "conf")?,
            _ => out.clone(),
        };
        let hash = StorePath::new(&named)
            .with_context(|| format!("The output {named} is not a store path"))?
            .hash_part()
            .to_owned();
        spec.insert("tag".to_owned(), Value::String(hash));
    }
    let listing = closure_listing(&attrs).context("Cannot read the derivation's closure")?;
    let exe = std::env::current_exe().context("Cannot find this binary's own path")?;

    let command = match args.function {
        NixFunction::Build => "build",
        NixFunction::BuildLayered => "build-layered",
        NixFunction::StreamLayered => {
            let conf = PathBuf::from(output(&attrs, "conf")?);
            fs::create_dir(&conf).with_context(|| format!("Cannot create {}", conf.display()))?;
            let closure = conf.join("registration");
            write(&closure, listing.as_bytes(), 0o444)?;
            spec.insert("closureInfo".to_owned(), path_value(&closure));
            let text = serde_json::to_string_pretty(&spec)?;
            check_stream(&text, &conf)?;
            write(&conf.join("spec.json"), text.as_bytes(), 0o444)?;
            let script = format!("#!{} stream-layered\n{text}\n", exe.display());
            write(Path::new(&out), script.as_bytes(), 0o555)?;
            return Ok(());
        }
    };
    let closure = work.join("buildimage-closure");
    write(&closure, listing.as_bytes(), 0o644)?;
    spec.insert("closureInfo".to_owned(), path_value(&closure));
    let spec_file = work.join("buildimage-spec.json");
    write(&spec_file, &serde_json::to_vec_pretty(&spec)?, 0o644)?;
    // The command itself, as a child: its messages are the command line's, and the
    // scripts it runs get a `PATH` of their own.
    let mut child = Command::new(&exe);
    child
        .arg(command)
        .arg(&spec_file)
        .args(["-o", &out, "--store", "/", "--no-cache", "--json"])
        .env("PATH", script_path(&spec))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let done = child
        .spawn()
        .and_then(std::process::Child::wait_with_output)
        .with_context(|| format!("Cannot run {}", exe.display()))?;
    if !done.status.success() {
        bail!("buildimage {command} failed ({})", done.status);
    }
    if args.function == NixFunction::Build {
        let report: Value = serde_json::from_slice(&done.stdout)
            .context("buildimage build printed no JSON report")?;
        let layer = output(&attrs, "layer")?;
        write(
            Path::new(&layer),
            &serde_json::to_vec_pretty(&report["layer"])?,
            0o444,
        )?;
    }
    Ok(())
}

/// `PATH` for the scripts (`extraCommands`, `fakeRootCommands`): the `bin` folders of the
/// store paths in `contents` and `copyToRoot`, in their order, then the builder's own
/// `PATH` unless it is Nix's placeholder. A Nix build has no tools but its inputs, and
/// without nixpkgs' stdenv the image's own packages are what a script can call.
fn script_path(spec: &Map<String, Value>) -> OsString {
    let mut dirs: Vec<PathBuf> = ["contents", "copyToRoot"]
        .iter()
        .filter_map(|key| spec.get(*key))
        .flat_map(|value| match value {
            Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
            Value::String(one) => vec![one.as_str()],
            _ => Vec::new(),
        })
        .map(|path| Path::new(path).join("bin"))
        .filter(|bin| bin.is_dir())
        .collect();
    if let Some(own) = std::env::var_os("PATH").filter(|p| p != "/path-not-set") {
        dirs.extend(std::env::split_paths(&own));
    }
    std::env::join_paths(dirs).unwrap_or_default()
}

/// The structured attributes file: `--attrs`, else the first that exists of
/// `$NIX_ATTRS_JSON_FILE` (Nix 2.8 sets it to the path outside its sandbox, which the
/// builder cannot see), `$NIX_BUILD_TOP/.attrs.json` and `./.attrs.json`.
fn attrs_file(given: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = given {
        return Ok(path.to_owned());
    }
    let candidates: Vec<PathBuf> = [
        std::env::var_os("NIX_ATTRS_JSON_FILE").map(PathBuf::from),
        std::env::var_os("NIX_BUILD_TOP").map(|top| PathBuf::from(top).join(ATTRS_FILE)),
        Some(PathBuf::from(ATTRS_FILE)),
    ]
    .into_iter()
    .flatten()
    .collect();
    match candidates.iter().find(|path| path.is_file()) {
        Some(path) => Ok(path.clone()),
        None => bail!(
            "No structured attributes: none of {} exists (give --attrs PATH); `buildimage \
             nix-build` is the builder of the Nix functions in nix/default.nix",
            candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The path of the derivation's output `name`.
fn output(attrs: &Map<String, Value>, name: &str) -> Result<String> {
    attrs
        .get("outputs")
        .and_then(|outputs| outputs.get(name))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .with_context(|| format!("The derivation has no output `{name}`"))
}

/// The `registration` listing of what `exportReferencesGraph.closure` exported: one
/// object per store path with `path`, `narHash`, `narSize` and `references`.
fn closure_listing(attrs: &Map<String, Value>) -> Result<String> {
    let entries = match attrs.get("closure") {
        None | Some(Value::Null) => return Ok(String::new()),
        Some(Value::Array(entries)) => entries,
        Some(_) => bail!("`closure` is not a list of path informations"),
    };
    let mut infos = Vec::with_capacity(entries.len());
    for entry in entries {
        let field = |key: &str| {
            entry
                .get(key)
                .with_context(|| format!("an entry of `closure` has no `{key}`: {entry}"))
        };
        let path = field("path")?.as_str().context("`path` is not a string")?;
        let mut info = PathInfo::new(StorePath::new(path)?);
        let nar_hash = field("narHash")?
            .as_str()
            .context("`narHash` is not a string")?;
        info.nar_hash = Some(hash::parse_sha256(nar_hash)?);
        info.nar_size = Some(
            field("narSize")?
                .as_u64()
                .context("`narSize` is not a number")?,
        );
        for reference in field("references")?
            .as_array()
            .context("`references` is not a list")?
        {
            let reference = reference.as_str().context("a reference is not a string")?;
            info.references.insert(StorePath::new(reference)?);
        }
        infos.push(info);
    }
    Ok(registration::registration(&infos)?)
}

/// Fails now, in the build, for a spec that `stream-layered` would refuse when `$out`
/// runs: the same parse, the same checks, the same messages.
fn check_stream(text: &str, conf: &Path) -> Result<()> {
    let parsed = layered::parse(text, conf, Function::Stream)?;
    for warning in &parsed.warnings {
        eprintln!("warning: {warning}");
    }
    let source = buildimage_cli::args::StoreArgs {
        store: PathBuf::from("/"),
        closure_info: None,
    };
    let base = buildimage_cli::args::BaseArgs {
        max_base_size: None,
    };
    let request = request::build_layered(&parsed.spec, &context(&source, &base))?;
    let names = crate::keys::InputNames {
        closure_info_flag: false,
        destination: "Writing standard output".to_owned(),
    };
    request.check().map_err(|e| names.error(e))?;
    Ok(())
}

/// A path as a JSON string (store paths and Nix's build folder are UTF-8).
fn path_value(path: &Path) -> Value {
    Value::String(path.to_string_lossy().into_owned())
}

/// Writes `bytes` to `path` with `mode`.
fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    fs::write(path, bytes).with_context(|| format!("Cannot write {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("Cannot set the mode of {}", path.display()))
}
