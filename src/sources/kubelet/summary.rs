//! Kubelet `/stats/summary` parsing.
