//! The library half of the `buildimage` command: the SPEC parser, and the entry points that
//! the fuzz targets (`fuzz/` at the workspace root) and their corpus regression test share.
//!
//! The binary `buildimage` (`src/main.rs`) wires these to the other crates; the parser is
//! a library so that it can be fuzzed and tested without running the binary.
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
//! no clock, no environment, no file system (see [`spec`]).

pub mod fuzzing;
pub mod spec;
