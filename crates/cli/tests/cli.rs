//! End-to-end tests of the `buildimage` command and of the consumers that read its
//! archives. One test binary; each area is a module below `tests/`.

mod harness;

mod build;

mod docker;

mod nix;

mod nix_functions;

mod base;

mod faults;

mod root;

mod golden;

mod layered;
