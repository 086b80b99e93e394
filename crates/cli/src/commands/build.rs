//! `buildimage build`: read the spec, resolve it, open the output, run the pipeline,
//! commit the image, report.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::json;

use buildimage_archive::{Compressed, Counting, DockerArchive, Layout, Output};
use buildimage_cli::args::BuildArgs;
use buildimage_cli::request::{self, Context as RequestContext};
use buildimage_cli::spec;
use buildimage_nixdb::StorePath;
use buildimage_pipeline::{Built, Env, build_image};

use crate::keys::InputNames;
use crate::progress::Progress;
use crate::report;
use crate::signals::Signals;

/// Builds the image that `args` describe.
pub fn run(args: &BuildArgs, quiet: bool, signals: &Signals, user_umask: u32) -> Result<()> {
    if args.json && args.out.as_deref() == Some(Path::new("-")) {
        bail!("--json prints to standard output, which -o - already uses for the image");
    }
    let (text, base_dir) = read_spec(&args.spec)?;
    let parsed = spec::parse(&text, &base_dir)?;
    let spec = parsed.spec;
    let dest = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(spec::default_output_name(&spec.name, spec.compressor)));
    let names = InputNames {
        closure_info_flag: args.closure_info.is_some(),
        destination: dest.display().to_string(),
    };
    let progress = Progress::new(quiet, &names);
    for warning in &parsed.warnings {
        progress.println(&format!("warning: {warning}"));
    }
    let request = request::build_image(
        &spec,
        &RequestContext {
            source_date_epoch: std::env::var("SOURCE_DATE_EPOCH").ok(),
            now: unix_now(),
            store: args.store.clone(),
            closure_info: args.closure_info.clone(),
        },
    )?;
    // What can fail before any work fails before the output is touched.
    request.check().map_err(|e| names.error(e))?;

    let output = Output::open(&dest, 0o666 & !user_umask)?;
    let shown = output.dest();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let stream = Compressed::new(Counting::new(output), spec.compressor, threads)
        .context("Cannot start the compressor")?;
    let mut archive = DockerArchive::new(stream, Layout::Legacy);
    let env = Env::new(signals.cancel(), &progress);
    let built = build_image(&request, &env, &mut archive).map_err(|e| names.error(e))?;
    let written = || format!("Writing {} failed", shown.display());
    let counted = archive
        .into_inner()
        .with_context(written)?
        .finish()
        .with_context(written)?;
    let size = counted.count();
    if signals.received().is_some() {
        bail!("Interrupted");
    }
    counted.into_inner().commit()?;
    progress.finish();

    if !quiet {
        report::summary(&progress, &shown, &built, size);
    }
    if args.json {
        print_json(&shown, &spec, &built)?;
    }
    Ok(())
}

/// `--json`: the passthru information of nixpkgs' buildImage, and more.
fn print_json(shown: &Path, spec: &spec::Spec, built: &Built) -> Result<()> {
    let out_path = if shown == Path::new("-") {
        shown.to_owned()
    } else {
        std::path::absolute(shown).unwrap_or_else(|_| shown.to_owned())
    };
    let layer = built
        .summary
        .layers
        .last()
        .context("the image has no layer")?;
    let info = json!({
        "imageName": built.name,
        "imageTag": built.summary.tag,
        "outPath": out_path,
        "layer": {
            "id": layer.id,
            "diffId": layer.diff_id_string(),
            "size": layer.size,
            "checksum": layer.tarsum,
        },
        "configDigest": format!("sha256:{}", built.summary.config_digest),
        "compressor": spec.compressor.as_str(),
        "storePaths": built.store_paths.iter().map(StorePath::as_str).collect::<Vec<_>>(),
        "buildArgs": spec.build_args,
    });
    println!("{}", serde_json::to_string_pretty(&info)?);
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
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("Cannot read the spec {}", path.display()))?;
    let dir = std::path::absolute(path)?
        .parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_owned);
    Ok((text, dir))
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
