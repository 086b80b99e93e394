//! The commands of the binary, one module each.

pub mod build;
pub mod cache;
pub mod common;
pub mod completions;
pub mod layered;
pub mod nix_build;
