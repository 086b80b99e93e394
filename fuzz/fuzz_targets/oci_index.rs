//! Fuzz target `oci_index`: arbitrary bytes as the `index.json` of an OCI layout that an
//! image is added to (`-o oci:DIR`). An error, or an index that lists the image once and
//! keeps every other entry (see `buildimage_cli::fuzzing::oci_index`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| buildimage_cli::fuzzing::oci_index(data));
