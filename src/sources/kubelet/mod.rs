//! The kubelet Summary API.
pub mod summary;
