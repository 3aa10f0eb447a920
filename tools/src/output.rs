//! Safe output: the file is written under a temporary name in the target directory and renamed
//! over the target only when complete. Dropping an unfinished [`TempOutput`] (an error, or a
//! cancellation) removes the temporary file.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::error::QuantizeError;

pub struct TempOutput {
    tmp: PathBuf,
    target: PathBuf,
    file: Option<File>,
}

impl TempOutput {
    /// Check the target and create the temporary file next to it.
    /// Fails if the target exists and `force` is false, or the directory is not writable.
    pub fn create(target: &Path, input: &Path, force: bool) -> Result<TempOutput, QuantizeError> {
        if let (Ok(a), Ok(b)) = (std::fs::canonicalize(target), std::fs::canonicalize(input)) {
            if a == b {
                return Err(QuantizeError::OutputIsInput(target.to_path_buf()));
            }
        }
        if target.is_dir() {
            return Err(QuantizeError::Unwritable {
                dir: target.to_path_buf(),
                source: std::io::Error::other("the output path is a directory"),
            });
        }
        if target.exists() && !force {
            return Err(QuantizeError::OutputExists(target.to_path_buf()));
        }
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "out.gguf".into());
        let tmp = dir.join(format!(".{name}.{}.part", std::process::id()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|source| QuantizeError::Unwritable {
                dir: dir.clone(),
                source,
            })?;
        Ok(TempOutput {
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

    /// Flush to disk and rename over the target.
    pub fn commit(mut self) -> Result<(), QuantizeError> {
        let f = self.file.take().expect("commit once");
        f.sync_all().map_err(|e| QuantizeError::io(&self.tmp, e))?;
        drop(f);
        std::fs::rename(&self.tmp, &self.target).map_err(|e| QuantizeError::io(&self.target, e))?;
        self.tmp = PathBuf::new();
        Ok(())
    }
}

impl Drop for TempOutput {
    fn drop(&mut self) {
        self.file.take();
        if !self.tmp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
