//! The kubelet Summary API.
pub(crate) mod lenient;
pub mod summary;
