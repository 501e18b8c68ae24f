//! One collector per `--state_dir`: an exclusive `flock` on `<state_dir>/lock`, held for the
//! life of the process and released by the kernel however it ends. Two collectors sharing a
//! directory would overwrite each other's checkpoint; the second is refused at start instead.
//! The holder writes its pid into the file so the refusal can name it.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

const LOCK_FILE: &str = "lock";

#[derive(Debug, thiserror::Error)]
pub enum StateLockError {
    #[error("state dir {}: {source}", dir.display())]
    Dir {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("state dir {} is in use by another heapster{}; each collector needs its own --state_dir",
        dir.display(), holder.map(|pid| format!(" (pid {pid})")).unwrap_or_default())]
    Held { dir: PathBuf, holder: Option<u32> },
}

/// The lock on a state directory, held until dropped.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

impl StateLock {
    /// Creates `dir` if needed and takes its lock, or says who holds it.
    pub fn acquire(dir: &Path) -> Result<StateLock, StateLockError> {
        let failed = |source| StateLockError::Dir { dir: dir.to_path_buf(), source };
        fs::create_dir_all(dir).map_err(failed)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(LOCK_FILE))
            .map_err(failed)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(StateLockError::Held { dir: dir.to_path_buf(), holder: holder(&mut file) });
            }
            Err(TryLockError::Error(e)) => return Err(failed(e)),
        }
        // Ours now: a pid left by a holder that died is replaced.
        file.set_len(0).map_err(failed)?;
        file.rewind().map_err(failed)?;
        file.write_all(format!("{}\n", std::process::id()).as_bytes()).map_err(failed)?;
        Ok(StateLock { _file: file })
    }
}

/// The pid the holder wrote, if it has written it yet.
fn holder(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        let first = StateLock::acquire(&dir).unwrap();
        match StateLock::acquire(&dir) {
            Err(StateLockError::Held { dir: held, holder }) => {
                assert_eq!(held, dir);
                assert_eq!(holder, Some(std::process::id()));
            }
            other => panic!("a second lock on one directory: {other:?}"),
        }
        let message = StateLock::acquire(&dir).unwrap_err().to_string();
        assert!(message.contains(&dir.display().to_string()), "{message}");
        assert!(message.contains(&format!("pid {}", std::process::id())), "{message}");
        drop(first);
        // Released: the next one gets it, over the pid left in the file.
        StateLock::acquire(&dir).unwrap();
    }
}
