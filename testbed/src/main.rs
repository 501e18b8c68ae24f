use std::process::ExitCode;

use clap::Parser;
use heapster_testbed::cli::{Cli, Command};
use heapster_testbed::{fixture_server, synth};

fn main() -> ExitCode {
    let cli = Cli::parse();
    heapster::logging::init(cli.log_format);

    match cli.command {
        Command::Synth(args) => match synth::synth(&args.spec(), &args.out) {
            Ok(report) => {
                eprintln!("heapster: wrote {}: {report:?}", args.out.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("heapster: synth: {e}");
                ExitCode::FAILURE
            }
        },
        Command::FixtureServer(args) => {
            let mut config = fixture_server::FixtureConfig::new(&args.scenario, &args.tls_dir);
            config.listen = args.listen;
            config.token = args.token;
            config.google_listen = args.google;
            match fixture_server::serve_forever(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("heapster: fixture-server: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
