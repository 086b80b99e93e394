//! The commands of the binary, one module each.

pub mod build;
mod common;
pub mod completions;
pub mod layered;
