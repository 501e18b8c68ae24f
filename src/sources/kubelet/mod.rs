//! The kubelet Summary API.
mod lenient;
pub mod summary;
