//! GGUF v2/v3: a hardened, zero-copy reader over a memory map, and a streaming writer.
//!
//! The reader parses the header, metadata and tensor infos into small index structures that point
//! into the mapped bytes; strings, arrays and tensor data are borrowed views. Every length, count
//! and offset is checked against the bytes left with checked u64 arithmetic, and no allocation is
//! sized by a count read from the file before the bytes backing it are known to exist.

mod error;
mod reader;
mod value;
mod writer;

pub use error::GgufError;
pub use reader::{Gguf, TensorInfo, TensorView};
pub use value::{ArrayRef, OwnedValue, Value, ValueType};
pub use writer::{GgufWriter, TensorSpec};

/// "GGUF" as the first four bytes of the file.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Default `general.alignment`.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Longest string (key or value) accepted: 256 MiB. Chat templates and tokens are far smaller.
pub const MAX_STRING_LEN: u64 = 256 << 20;
/// Longest key accepted.
pub const MAX_KEY_LEN: u64 = 64 << 10;
/// Deepest nesting of arrays inside arrays.
pub const MAX_ARRAY_DEPTH: u32 = 4;
/// Most dimensions a tensor may have (ggml's GGML_MAX_DIMS).
pub const MAX_DIMS: u32 = 4;

/// Open `path` for reading only if it is a regular file: opened non-blocking (a FIFO does not
/// block the open) and checked with fstat before a byte is read, so a FIFO, a device such as
/// `/dev/zero` or a directory is an error that says so instead of a hang or an endless read.
pub fn open_regular(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_NONBLOCK);
    }
    let file = opts.open(path)?;
    let ft = file.metadata()?.file_type();
    if !ft.is_file() {
        let what = if ft.is_dir() {
            "is a directory"
        } else {
            "is not a regular file (a FIFO, socket or device)"
        };
        return Err(std::io::Error::other(what));
    }
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: fcntl on a descriptor we own; clearing O_NONBLOCK only changes how later
        // reads wait (a regular file never blocks anyway).
        unsafe {
            let fd = file.as_raw_fd();
            let fl = libc::fcntl(fd, libc::F_GETFL);
            if fl >= 0 {
                libc::fcntl(fd, libc::F_SETFL, fl & !libc::O_NONBLOCK);
            }
        }
    }
    Ok(file)
}
