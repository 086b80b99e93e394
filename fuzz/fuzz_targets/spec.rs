//! Fuzz target `spec`: arbitrary bytes as the SPEC text. The parser, the reference
//! grammar and the default output name must answer every input with a value or an
//! error, never a panic (see `buildimage_cli::fuzzing::spec`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| buildimage_cli::fuzzing::spec(data));
