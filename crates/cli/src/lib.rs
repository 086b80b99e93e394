//! The library half of the `buildimage` command: the command line, the SPEC parser, the
//! resolution of a spec into a pipeline request, and the entry points that the fuzz
//! targets (`fuzz/` at the workspace root) and their corpus regression test share.
//!
//! The binary `buildimage` (`src/main.rs`) wires these to `buildimage-pipeline`; they are a
//! library so that they can be fuzzed and tested without running the binary, and so that
//! `cargo xtask man` can render the command line.
//!
//! ```
//! use std::path::Path;
//! use buildimage_cli::spec;
//!
//! let parsed = spec::parse(r#"{"name": "hello", "copyToRoot": "root"}"#, Path::new("/specs"))
//!     .expect("a valid spec");
//! assert_eq!(parsed.spec.copy_to_root, [Path::new("/specs/root")]);
//! assert_eq!(
//!     spec::default_output_name(&parsed.spec.name, parsed.spec.compressor),
//!     "docker-image-hello.tar.gz"
//! );
//! let err = spec::parse(r#"{"name": "hello", "uid": -1}"#, Path::new("/")).unwrap_err();
//! assert!(err.to_string().starts_with("Key `uid`: expected"));
//! ```
//!
//! # Determinism
//!
//! Parsing is a pure function of the SPEC text and the folder relative paths start from:
//! no clock, no environment, no file system (see [`spec`]). Resolving ([`request`]) takes
//! the environment and the clock as explicit arguments.

pub mod args;
pub mod destination;
pub mod fuzzing;
pub mod request;
pub mod spec;
