//! Safe output files, shared by `quantize` and `ferrolm synth`: the file is written under a fresh
//! temporary name beside the target and renamed over it only when complete. Dropping an
//! unfinished [`AtomicOutput`] (an error, a cancellation) removes the temporary file, so a failed
//! run leaves neither a half-written file nor a replaced one.
//!
//! The target must be a regular file or absent: `--force` never replaces a device node, a FIFO or
//! a directory (`quantize m.gguf /dev/null Q8_0 -f` as root would otherwise replace /dev/null).
//! The temporary file is created with `O_CREAT | O_EXCL` (and `O_NOFOLLOW`), so a symlink planted
//! at its name is never followed.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Why an output file cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("{0} already exists (use --force to overwrite)")]
    OutputExists(PathBuf),
    #[error("the output {0} is the input file")]
    OutputIsInput(PathBuf),
    #[error("the output {path} is {kind}, not a regular file: refusing to replace it")]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error("cannot write the output in {dir}")]
    Unwritable {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("interrupted; no output was written")]
    Cancelled,
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A file being written under a temporary name; [`AtomicOutput::commit`] renames it over the target.
pub struct AtomicOutput {
    tmp: PathBuf,
    target: PathBuf,
    file: Option<File>,
}

/// What a path that exists but is not a regular file is, for messages.
fn kind_of(ft: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return "a FIFO";
        }
        if ft.is_char_device() {
            return "a character device";
        }
        if ft.is_block_device() {
            return "a block device";
        }
        if ft.is_socket() {
            return "a socket";
        }
    }
    if ft.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

impl AtomicOutput {
    /// Check the target and create the temporary file next to it. `input`, when given, must not
    /// be the target. Fails if the target exists and `force` is false, if it exists and is not a
    /// regular file (followed through symlinks), or if the directory is not writable.
    pub fn create(
        target: &Path,
        input: Option<&Path>,
        force: bool,
    ) -> Result<AtomicOutput, OutputError> {
        if let Some(input) = input {
            if let (Ok(a), Ok(b)) = (std::fs::canonicalize(target), std::fs::canonicalize(input)) {
                if a == b {
                    return Err(OutputError::OutputIsInput(target.to_path_buf()));
                }
            }
        }
        if let Ok(m) = std::fs::metadata(target) {
            if m.is_dir() {
                return Err(OutputError::Unwritable {
                    dir: target.to_path_buf(),
                    source: std::io::Error::other("the output path is a directory"),
                });
            }
            if !m.is_file() {
                return Err(OutputError::NotRegular {
                    path: target.to_path_buf(),
                    kind: kind_of(&m.file_type()),
                });
            }
        }
        if std::fs::symlink_metadata(target).is_ok() && !force {
            return Err(OutputError::OutputExists(target.to_path_buf()));
        }
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "out.gguf".into());
        // pid + a per-process counter: two runs, or two outputs of one run, never share a name.
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let tmp = dir.join(format!(
            ".{name}.{}-{}.part",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.custom_flags(libc::O_NOFOLLOW).mode(0o644);
        }
        let file = opts.open(&tmp).map_err(|source| OutputError::Unwritable {
            dir: dir.clone(),
            source,
        })?;
        Ok(AtomicOutput {
            tmp,
            target: target.to_path_buf(),
            file: Some(file),
        })
    }

    /// The open temporary file.
    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("file taken only by commit")
    }

    /// The temporary file's path.
    pub fn tmp_path(&self) -> &Path {
        &self.tmp
    }

    /// Flush to disk and rename over the target, unless a signal caught by
    /// [`cancel_on_signals`] came first (then [`OutputError::Cancelled`] and no output).
    pub fn commit(mut self) -> Result<(), OutputError> {
        let f = self.file.take().expect("commit once");
        f.sync_all().map_err(|source| OutputError::Io {
            path: self.tmp.clone(),
            source,
        })?;
        drop(f);
        // A SIGINT/SIGTERM taken by `cancel_on_signals` during the sync: the output is not
        // wanted any more.
        if CANCEL.load(Ordering::SeqCst) {
            return Err(OutputError::Cancelled);
        }
        // The target may have become a device or FIFO since `create`: check once more.
        if let Ok(m) = std::fs::metadata(&self.target) {
            if !m.is_file() {
                return Err(OutputError::NotRegular {
                    path: self.target.clone(),
                    kind: kind_of(&m.file_type()),
                });
            }
        }
        std::fs::rename(&self.tmp, &self.target).map_err(|source| OutputError::Io {
            path: self.target.clone(),
            source,
        })?;
        self.tmp = PathBuf::new();
        Ok(())
    }
}

impl Drop for AtomicOutput {
    fn drop(&mut self) {
        self.file.take();
        if !self.tmp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

static CANCEL: AtomicBool = AtomicBool::new(false);

#[cfg(unix)]
extern "C" fn on_signal(_: libc::c_int) {
    CANCEL.store(true, Ordering::SeqCst);
}

/// For command-line tools that write files: SIGINT, SIGTERM and SIGHUP set the returned flag
/// instead of killing the process, so the writer stops at its next check and its temporary file
/// is removed. Poll the flag between units of work.
pub fn cancel_on_signals() -> &'static AtomicBool {
    #[cfg(unix)]
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
    &CANCEL
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ferrolm-output-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn commit_replaces_and_drop_removes() {
        let d = scratch("commit");
        let t = d.join("out.gguf");
        std::fs::write(&t, b"old").unwrap();
        assert!(matches!(
            AtomicOutput::create(&t, None, false),
            Err(OutputError::OutputExists(_))
        ));
        let mut o = AtomicOutput::create(&t, None, true).unwrap();
        std::io::Write::write_all(o.file(), b"new").unwrap();
        let tmp = o.tmp_path().to_path_buf();
        drop(o);
        assert!(!tmp.exists());
        assert_eq!(std::fs::read(&t).unwrap(), b"old");
        let mut o = AtomicOutput::create(&t, None, true).unwrap();
        std::io::Write::write_all(o.file(), b"new").unwrap();
        o.commit().unwrap();
        assert_eq!(std::fs::read(&t).unwrap(), b"new");
        // A signal taken by cancel_on_signals before the rename: no output, the old one kept.
        // (In this test, not one of its own: the flag is process-wide.)
        let mut o = AtomicOutput::create(&t, None, true).unwrap();
        std::io::Write::write_all(o.file(), b"newer").unwrap();
        let tmp = o.tmp_path().to_path_buf();
        CANCEL.store(true, Ordering::SeqCst);
        let r = o.commit();
        CANCEL.store(false, Ordering::SeqCst);
        assert!(matches!(r, Err(OutputError::Cancelled)), "{r:?}");
        assert!(!tmp.exists());
        assert_eq!(std::fs::read(&t).unwrap(), b"new");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[cfg(unix)]
    #[test]
    fn force_refuses_fifo_and_device() {
        let d = scratch("fifo");
        let fifo = d.join("pipe");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo reads a NUL-terminated path we own.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = AtomicOutput::create(&fifo, None, true).err().unwrap();
        assert!(
            matches!(e, OutputError::NotRegular { kind: "a FIFO", .. }),
            "{e}"
        );
        let link = d.join("null-link");
        std::os::unix::fs::symlink("/dev/null", &link).unwrap();
        let e = AtomicOutput::create(&link, None, true).err().unwrap();
        assert!(
            matches!(
                e,
                OutputError::NotRegular {
                    kind: "a character device",
                    ..
                }
            ),
            "{e}"
        );
        let e = AtomicOutput::create(Path::new("/dev/null"), None, true)
            .err()
            .unwrap();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        // Nothing was created beside them.
        let n = std::fs::read_dir(&d).unwrap().count();
        assert_eq!(n, 2);
        let _ = std::fs::remove_dir_all(&d);
    }
}
