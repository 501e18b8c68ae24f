//! The metrics graph.
