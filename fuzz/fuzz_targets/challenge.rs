//! Fuzz target `challenge`: arbitrary bytes as a registry's `WWW-Authenticate` header,
//! parsed into challenges without a panic (see `buildimage_cli::fuzzing::challenge`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| buildimage_cli::fuzzing::challenge(data));
