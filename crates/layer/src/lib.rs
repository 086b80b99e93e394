//! Placeholder crate root, filled in by the first commit that gives it code.
