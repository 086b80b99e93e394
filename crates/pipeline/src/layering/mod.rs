//! Which store paths share a layer: nixpkgs' layering of a closure, the popularity
//! contest ([`popularity`]) cut by the layer budget, or a `layeringPipeline` of steps
//! ([`steps`]).
//!
//! The same references graph always gives the same layers, in the same order, as
//! nixpkgs' `flatten-references-graph` gives them for that graph: images built from the
//! same nixpkgs then share their store layers in registries and on hosts.

pub mod graph;
pub mod popularity;
pub mod steps;

pub use graph::Graph;
pub use steps::{Pipeline, StepError};

#[cfg(test)]
mod tests;
