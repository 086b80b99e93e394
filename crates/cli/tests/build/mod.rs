//! End-to-end tests of `buildimage build` in pure mode that need no Docker: they drive the
//! real binary and read the archives it writes back with the `tar` crate.
//!
//! Each area has its own module: the archive layout, the layer's content, `extraCommands`,
//! the outputs (`-o`, `--json`), errors, determinism and interruption. Source trees get
//! explicit modes (so the test runner's umask never leaks into an expectation); the
//! helpers are those of `buildimage_test_support`.

mod content;
mod determinism;
mod errors;
mod extra_commands;
mod help;
mod interrupt;
mod layout;
mod outputs;

use buildimage_test_support::{Buildimage, Image, Output, TestDir};
use serde_json::Value;

/// A fresh test folder for this module.
fn test_dir() -> TestDir {
    TestDir::new("bi-build.")
}

/// Builds `spec` in `dir` (as `spec.json`, `-o image.tar`, compressor none unless the spec
/// says otherwise) and returns the image and the command's output.
fn build_in(dir: &TestDir, spec: &Value) -> (Image, Output) {
    let spec_path = dir.spec(spec);
    let out = dir.join("image.tar");
    let output = Buildimage::new()
        .cwd(dir.path())
        .build(&spec_path)
        .out(&out)
        .run_ok();
    (Image::open(&out), output)
}
