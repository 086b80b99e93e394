//! `buildimage build-layered` and `buildimage stream-layered`: a layered image, as nixpkgs'
//! `buildLayeredImage` and `streamLayeredImage` make it.

use std::path::PathBuf;

use anyhow::Result;
use serde_json::json;

use buildimage_archive::{Compressor, Layout};
use buildimage_cli::args::LayeredArgs;
use buildimage_cli::request;
use buildimage_cli::spec::layered::{self, Function, LayeredSpec};
use buildimage_nixdb::StorePath;
use buildimage_pipeline::{BuiltLayered, build_layered};

use buildimage_cli::destination::Dest;

use super::common::{
    Sent, Writing, blob_fields, context, parse_dest, print_report, print_warnings, read_spec,
    refuse_json_on_stdout, sending,
};
use crate::keys::InputNames;
use crate::progress::Progress;
use crate::signals::Signals;

/// Builds the layered image that `args` describe, for `function`.
pub fn run(
    args: &LayeredArgs,
    function: Function,
    quiet: bool,
    signals: &Signals,
    user_umask: u32,
) -> Result<()> {
    let (text, base_dir) = read_spec(&args.spec)?;
    let parsed = layered::parse(&text, &base_dir, function)?;
    let spec = parsed.spec;
    let dest = parse_dest(args.out.as_deref(), || match function {
        Function::Build => PathBuf::from(layered::default_output_name(&spec.name, spec.compressor)),
        Function::Stream => PathBuf::from("-"),
    })?;
    refuse_json_on_stdout(args.json, &dest)?;
    let names = InputNames {
        closure_info_flag: args.source.closure_info.is_some(),
        destination: sending(&dest),
    };
    let progress = Progress::new(quiet, &names);
    print_warnings(&progress, &parsed.warnings);
    let request = request::build_layered(&spec, &context(&args.source, &args.base))?;
    request.check().map_err(|e| names.error(e))?;

    let compressor = layer_compressor(function, &dest, spec.compressor);
    let writing = Writing {
        dest: &dest,
        options: &args.dest,
        user_umask,
        compressor,
        layout: Layout::Layered,
        quiet,
        signals,
        progress: &progress,
        names: &names,
        scripts: &args.scripts,
    };
    let (built, sent) = writing.run(
        |env, dest| build_layered(&request, env, dest),
        |built: &BuiltLayered| (&built.name, &built.summary),
    )?;
    if args.json {
        print_json(&dest, &sent, compressor, &spec, &built)?;
    }
    Ok(())
}

/// The compressor of a layered build: the spec's; a stream has none of its own and writes
/// a plain archive, but its layers are gzip-compressed in a destination of blobs (an OCI
/// layout, a registry), as registries expect them.
fn layer_compressor(function: Function, dest: &Dest, spec: Compressor) -> Compressor {
    match (function, dest) {
        (Function::Stream, Dest::Oci { .. } | Dest::OciArchive { .. } | Dest::Registry(_)) => {
            Compressor::Gz
        }
        _ => spec,
    }
}

/// `--json`: the image and each of its layers.
fn print_json(
    dest: &Dest,
    sent: &Sent,
    compressor: Compressor,
    spec: &LayeredSpec,
    built: &BuiltLayered,
) -> Result<()> {
    let layers: Vec<serde_json::Value> = built
        .summary
        .layers
        .iter()
        .zip(&built.layers)
        .map(|(record, report)| {
            let mut layer = json!({
                "diffId": record.diff_id_string(),
                "size": record.size,
                "kind": report.kind.as_str(),
            });
            blob_fields(record, &mut layer);
            if !report.store_paths.is_empty() {
                layer["storePaths"] = json!(
                    report
                        .store_paths
                        .iter()
                        .map(StorePath::as_str)
                        .collect::<Vec<_>>()
                );
            }
            layer
        })
        .collect();
    print_report(
        &built.name,
        &built.summary,
        dest,
        sent,
        compressor,
        &spec.build_args,
        json!({ "layers": layers }),
    )
}
