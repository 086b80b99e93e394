//! `buildimage build-layered` and `buildimage stream-layered`: a layered image, as nixpkgs'
//! `buildLayeredImage` and `streamLayeredImage` make it.

use std::path::PathBuf;

use anyhow::Result;
use serde_json::json;

use buildimage_archive::Layout;
use buildimage_cli::args::LayeredArgs;
use buildimage_cli::request;
use buildimage_cli::spec::layered::{self, Function, LayeredSpec};
use buildimage_nixdb::StorePath;
use buildimage_pipeline::{BuiltLayered, build_layered};

use super::common::{
    Writing, context, print_report, print_warnings, read_spec, refuse_json_on_stdout,
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
    let dest = args.out.clone().unwrap_or_else(|| match function {
        Function::Build => PathBuf::from(layered::default_output_name(&spec.name, spec.compressor)),
        Function::Stream => PathBuf::from("-"),
    });
    refuse_json_on_stdout(args.json, &dest)?;
    let names = InputNames {
        closure_info_flag: args.source.closure_info.is_some(),
        destination: dest.display().to_string(),
    };
    let progress = Progress::new(quiet, &names);
    print_warnings(&progress, &parsed.warnings);
    let request = request::build_layered(&spec, &context(&args.source))?;
    request.check().map_err(|e| names.error(e))?;

    let writing = Writing {
        dest: &dest,
        user_umask,
        compressor: spec.compressor,
        layout: Layout::Layered,
        quiet,
        signals,
        progress: &progress,
        names: &names,
    };
    let (built, out_path) = writing.run(
        |env, dest| build_layered(&request, env, dest),
        |built: &BuiltLayered| (&built.name, &built.summary),
    )?;
    if args.json {
        print_json(&out_path, &spec, &built)?;
    }
    Ok(())
}

/// `--json`: the image and each of its layers.
fn print_json(out_path: &std::path::Path, spec: &LayeredSpec, built: &BuiltLayered) -> Result<()> {
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
        out_path,
        spec.compressor,
        &spec.build_args,
        json!({ "layers": layers }),
    )
}
