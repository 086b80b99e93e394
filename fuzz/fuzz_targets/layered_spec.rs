//! Fuzz target `layered_spec`: arbitrary bytes as the SPEC of `build-layered` and
//! `stream-layered`. The parser, the request's checks and the spec's `layeringPipeline`
//! applied to a small graph must answer with a value or an error, never a panic, and no
//! store path may land in two layers (see `buildimage_cli::fuzzing::layered_spec`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| buildimage_cli::fuzzing::layered_spec(data));
