//! The test bed's command line: `synth` writes a scenario, `fixture-server` serves one.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use heapster::cli::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "heapster-testbed",
    version,
    about = "heapster's test bed: synthetic clusters and emulated Kubernetes and Google servers"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// How log lines on stderr look: text (colour only on a terminal) or json (one object a line).
    #[arg(long = "log_format", value_name = "FORMAT", value_enum, default_value = "text", global = true)]
    pub log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a synthetic scenario (for replay and benchmarks).
    Synth(SynthArgs),
    /// Serve a scenario as a kube-apiserver and kubelets on loopback.
    FixtureServer(FixtureServerArgs),
}

#[derive(Debug, Args)]
pub struct FixtureServerArgs {
    /// The scenario directory to serve.
    #[arg(long, value_name = "DIR")]
    pub scenario: PathBuf,
    /// The API server's HTTPS address.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:6443")]
    pub listen: std::net::SocketAddr,
    /// The bearer token clients must present (none: no authentication).
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Where the CA certificate and a kubeconfig for clients are written.
    #[arg(long = "tls-dir", value_name = "DIR", default_value = ".tmp/fixture-tls")]
    pub tls_dir: PathBuf,
    /// Also serve Google's metadata server, token endpoint, Cloud Monitoring and Cloud Logging
    /// here (plain HTTP); a service-account key for it is written under the TLS dir.
    #[arg(long, value_name = "ADDR")]
    pub google: Option<std::net::SocketAddr>,
}

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Write the bundled `fixtures/small` scenario instead of a sized one.
    #[arg(long, conflicts_with_all = ["nodes", "pods_per_node", "events_scenario"])]
    pub small: bool,
    /// Write the bundled `fixtures/events` scenario (an event timeline).
    #[arg(long = "events-scenario", conflicts_with_all = ["nodes", "pods_per_node"])]
    pub events_scenario: bool,
    /// How many nodes the cluster has.
    #[arg(long, value_name = "N", required_unless_present_any = ["small", "events_scenario"])]
    pub nodes: Option<usize>,
    /// How many pods run on each node.
    #[arg(long = "pods-per-node", value_name = "P", required_unless_present_any = ["small", "events_scenario"])]
    pub pods_per_node: Option<usize>,
    /// How many windows to write.
    #[arg(long, value_name = "W", default_value_t = 5)]
    pub windows: usize,
    /// The scenario directory to write.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The random seed: the same seed writes the same scenario.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

impl SynthArgs {
    /// The spec these flags ask for.
    pub fn spec(&self) -> crate::synth::SynthSpec {
        use crate::synth::SynthSpec;
        match (self.small, self.events_scenario, self.nodes, self.pods_per_node) {
            (true, _, _, _) => SynthSpec::small(),
            (_, true, _, _) => SynthSpec::events_scenario(),
            (_, _, Some(nodes), Some(pods)) => {
                SynthSpec { seed: self.seed, ..SynthSpec::new(nodes, pods, self.windows) }
            }
            // clap requires --nodes and --pods-per-node otherwise.
            _ => SynthSpec::small(),
        }
    }
}
