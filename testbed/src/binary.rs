//! The `heapster-testbed` binary, for the tests and benchmarks of the collector: cargo names
//! only a package's own binaries to its tests (`CARGO_BIN_EXE_*`), and the collector's tests
//! start `synth` and `fixture-server` as processes of their own.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Overrides the binary (another build, say), as `BENCH_HEAPSTER` does for the collector.
pub const BINARY_ENV: &str = "HEAPSTER_TESTBED_BIN";

#[derive(Debug, Clone, thiserror::Error)]
pub enum BinaryError {
    #[error("cannot tell where this build's target directory is: {0}")]
    NoTargetDir(String),
    #[error("`{command}` failed: {reason}")]
    Build { command: String, reason: String },
}

/// The test-bed binary of this build's profile (beside the running test's target directory),
/// brought up to date once per process with `cargo build -p heapster-testbed`.
pub fn testbed_binary() -> Result<PathBuf, BinaryError> {
    static BINARY: OnceLock<Result<PathBuf, BinaryError>> = OnceLock::new();
    BINARY
        .get_or_init(|| match std::env::var_os(BINARY_ENV) {
            Some(path) => Ok(PathBuf::from(path)),
            None => build(),
        })
        .clone()
}

fn build() -> Result<PathBuf, BinaryError> {
    let exe = std::env::current_exe().map_err(|e| BinaryError::NoTargetDir(e.to_string()))?;
    let profile_dir = profile_dir(&exe).ok_or_else(|| BinaryError::NoTargetDir(exe.display().to_string()))?;
    let target_dir =
        profile_dir.parent().ok_or_else(|| BinaryError::NoTargetDir(exe.display().to_string()))?;
    let profile = profile_dir.file_name().and_then(|n| n.to_str()).unwrap_or("debug");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.args(["build", "--quiet", "-p", "heapster-testbed", "--bin", "heapster-testbed"]);
    command.arg("--manifest-path").arg(&manifest).arg("--target-dir").arg(target_dir);
    match profile {
        "debug" => {}
        // `cargo bench` writes to release/ too, with the bench profile.
        "release" => {
            command.arg("--release");
        }
        other => {
            command.args(["--profile", other]);
        }
    }
    let shown = format!("{command:?}");
    let status =
        command.status().map_err(|e| BinaryError::Build { command: shown.clone(), reason: e.to_string() })?;
    if !status.success() {
        return Err(BinaryError::Build { command: shown, reason: status.to_string() });
    }
    Ok(profile_dir.join(format!("heapster-testbed{}", std::env::consts::EXE_SUFFIX)))
}

/// `target/<profile>` from a test's `target/<profile>/deps/<name>-<hash>` or a binary's
/// `target/<profile>/<name>`.
fn profile_dir(exe: &Path) -> Option<&Path> {
    let dir = exe.parent()?;
    if dir.file_name().is_some_and(|n| n == "deps") { dir.parent() } else { Some(dir) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_binary_lives_in_deps_of_its_profile() {
        let exe = Path::new("/w/target/debug/deps/google_sinks-0123");
        assert_eq!(profile_dir(exe), Some(Path::new("/w/target/debug")));
        let exe = Path::new("/w/target/profiling/heapster");
        assert_eq!(profile_dir(exe), Some(Path::new("/w/target/profiling")));
    }
}
