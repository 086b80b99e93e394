//! `buildimage build`: read the spec, resolve it, open the output, run the pipeline,
//! commit the image, report.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde_json::json;

use buildimage_archive::Layout;
use buildimage_cli::args::BuildArgs;
use buildimage_cli::{request, spec};
use buildimage_nixdb::StorePath;
use buildimage_pipeline::{Built, build_image};

use buildimage_cli::destination::Dest;

use super::common::{
    Sent, Writing, blob_fields, context, parse_dest, print_report, print_warnings, read_spec,
    refuse_json_on_stdout, sending,
};
use crate::keys::InputNames;
use crate::progress::Progress;
use crate::signals::Signals;

/// Builds the image that `args` describe.
pub fn run(args: &BuildArgs, quiet: bool, signals: &Signals, user_umask: u32) -> Result<()> {
    let (text, base_dir) = read_spec(&args.spec)?;
    let parsed = spec::parse(&text, &base_dir)?;
    let spec = parsed.spec;
    let dest = parse_dest(args.out.as_deref(), || {
        PathBuf::from(spec::default_output_name(&spec.name, spec.compressor))
    })?;
    refuse_json_on_stdout(args.json, &dest)?;
    let names = InputNames {
        closure_info_flag: args.source.closure_info.is_some(),
        destination: sending(&dest),
    };
    let progress = Progress::new(quiet, &names);
    print_warnings(&progress, &parsed.warnings);
    let request = request::build_image(&spec, &context(&args.source, &args.base))?;
    // What can fail before any work fails before the output is touched.
    request.check().map_err(|e| names.error(e))?;

    let writing = Writing {
        dest: &dest,
        options: &args.dest,
        user_umask,
        compressor: spec.compressor,
        layout: Layout::Legacy,
        quiet,
        signals,
        progress: &progress,
        names: &names,
        scripts: &args.scripts,
    };
    let (built, sent) = writing.run(
        |env, dest| build_image(&request, env, dest),
        |built: &Built| (&built.name, &built.summary),
    )?;
    if args.json {
        print_json(&dest, &sent, &spec, &built)?;
    }
    Ok(())
}

/// `--json`: the passthru information of nixpkgs' buildImage, and more.
fn print_json(dest: &Dest, sent: &Sent, spec: &spec::Spec, built: &Built) -> Result<()> {
    let layer = built
        .summary
        .layers
        .last()
        .context("the image has no layer")?;
    let mut layer_json = json!({
        "id": layer.id,
        "diffId": layer.diff_id_string(),
        "size": layer.size,
        "checksum": layer.tarsum,
    });
    blob_fields(layer, &mut layer_json);
    let fields = json!({
        "layer": layer_json,
        "storePaths": built.store_paths.iter().map(StorePath::as_str).collect::<Vec<_>>(),
    });
    print_report(
        &built.name,
        &built.summary,
        dest,
        sent,
        spec.compressor,
        &spec.build_args,
        fields,
    )
}
