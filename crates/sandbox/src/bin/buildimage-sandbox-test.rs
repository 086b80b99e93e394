//! A tiny binary for the sandbox's tests: it dispatches `__sandbox` the way the
//! `buildimage` binary does, and `run REQUEST.json` calls `run_as_root` with itself, so the
//! tests can signal a caller that is a separate process.

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use buildimage_layer::Cancel;
use buildimage_sandbox::{RootRun, SANDBOX_COMMAND, run_as_root, sandbox_main};

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == SANDBOX_COMMAND) {
        return sandbox_main(&args);
    }
    if args.len() == 3 && args[1] == "run" {
        let text = match std::fs::read(&args[2]) {
            Ok(text) => text,
            Err(e) => {
                eprintln!("error: {}: {e}", Path::new(&args[2]).display());
                return ExitCode::FAILURE;
            }
        };
        let req: RootRun = match serde_json::from_slice(&text) {
            Ok(req) => req,
            Err(e) => {
                eprintln!("error: bad request: {e}");
                return ExitCode::FAILURE;
            }
        };
        return match run_as_root(&req, Path::new("/proc/self/exe"), &Cancel::new()) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    eprintln!("usage: buildimage-sandbox-test run REQUEST.json | __sandbox …");
    ExitCode::FAILURE
}
