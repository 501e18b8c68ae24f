//! Kubernetes API objects.
