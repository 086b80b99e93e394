//! Fuzz target `base_image`: arbitrary bytes as a `fromImage` archive, opened and merged
//! in a private scratch folder. No panic, nothing written outside the scratch folder,
//! nothing left after it, no more kept than the archive plus the limit on decompressed
//! bytes (see `buildimage_cli::fuzzing::base_image`); memory and input size are bounded by
//! the `-rss_limit_mb` and `-max_len` that `cargo xtask fuzz` passes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| buildimage_cli::fuzzing::base_image(data));
