use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Parser;
use heapster::cli::{Cli, Command};
use heapster::state_lock::StateLockError;
use heapster::{run, synth};

fn main() -> ExitCode {
    let cli = Cli::parse();
    heapster::logging::init(cli.log_format);

    match cli.command {
        Some(Command::Synth(args)) => {
            let spec = match (args.small, args.events_scenario, args.nodes, args.pods_per_node) {
                (true, _, _, _) => synth::SynthSpec::small(),
                (_, true, _, _) => synth::SynthSpec::events_scenario(),
                (_, _, Some(nodes), Some(pods)) => {
                    synth::SynthSpec { seed: args.seed, ..synth::SynthSpec::new(nodes, pods, args.windows) }
                }
                // clap requires --nodes and --pods-per-node otherwise.
                _ => synth::SynthSpec::small(),
            };
            match synth::synth(&spec, &args.out) {
                Ok(report) => {
                    eprintln!("heapster: wrote {}: {report:?}", args.out.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("heapster: synth: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::FixtureServer(args)) => {
            let mut config = heapster::fixture_server::FixtureConfig::new(&args.scenario, &args.tls_dir);
            config.listen = args.listen;
            config.token = args.token;
            config.google_listen = args.google;
            match heapster::fixture_server::serve_forever(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("heapster: fixture-server: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::Record(args)) => match heapster::record::record(&args) {
            Ok(report) => {
                eprintln!("heapster: recorded {} windows into {}", report.windows, args.out.display());
                ExitCode::SUCCESS
            }
            Err(heapster::record::RecordError::Config(e)) => {
                eprintln!("heapster: error: {e}");
                ExitCode::from(2)
            }
            Err(e) => {
                eprintln!("heapster: record: {e}");
                ExitCode::FAILURE
            }
        },
        None => {
            let config = match cli.collect.to_config() {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("heapster: error: {e}");
                    return ExitCode::from(2);
                }
            };
            let stop = Arc::new(AtomicBool::new(false));
            match run::run(config, stop.clone()) {
                Ok(report) => {
                    let failed = report.sinks.iter().any(|(_, s)| s.errors.load(Ordering::Relaxed) > 0);
                    tracing::info!(
                        windows = report.stats.windows.load(Ordering::Relaxed),
                        metric_sets = report.stats.metric_sets.load(Ordering::Relaxed),
                        events_exported = report.events.exported.load(Ordering::Relaxed),
                        event_duplicates = report.events.duplicates.load(Ordering::Relaxed),
                        events_evicted = report.events.evicted_ttl.load(Ordering::Relaxed)
                            + report.events.evicted_full.load(Ordering::Relaxed),
                        elapsed = ?report.elapsed,
                        "done"
                    );
                    if let Some(traffic) = &report.traffic {
                        tracing::info!(
                            bytes_sent = traffic.sent.load(Ordering::Relaxed),
                            bytes_received = traffic.received.load(Ordering::Relaxed),
                            "exchanged with the other processes"
                        );
                    }
                    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
                }
                Err(e) => {
                    eprintln!("heapster: {e}");
                    // Another collector owns the state dir, or a sink cannot start (bad
                    // credentials, say): the operator's to fix, like a bad flag.
                    let usage = matches!(e, run::RunError::StateDir(StateLockError::Held { .. }))
                        || matches!(e, run::RunError::Sink { .. });
                    if usage { ExitCode::from(2) } else { ExitCode::FAILURE }
                }
            }
        }
    }
}
