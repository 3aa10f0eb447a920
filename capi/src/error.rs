//! Errors on their way to C: statuses with messages, the per-thread last error, and the guards
//! that keep panics from unwinding into C.

use std::cell::RefCell;
use std::ffi::CString;
use std::panic::{catch_unwind, AssertUnwindSafe};

use ferrolm::gguf::GgufError;
use ferrolm::model::ModelError;
use ferrolm::tokenizer::TokenizerError;

use crate::types::*;

/// A failure on its way to C: the status and the message.
pub(crate) struct Error {
    pub(crate) status: ferrolm_status,
    pub(crate) msg: String,
}

pub(crate) type Res<T> = Result<T, Error>;

pub(crate) fn err<T>(status: ferrolm_status, msg: impl Into<String>) -> Res<T> {
    Err(Error {
        status,
        msg: msg.into(),
    })
}

pub(crate) fn gguf_status(e: &GgufError) -> ferrolm_status {
    match e {
        GgufError::Io { .. } | GgufError::WriteIo(_) => FERROLM_IO,
        GgufError::UnsupportedVersion(_) | GgufError::UnknownTensorType { .. } => {
            FERROLM_UNSUPPORTED
        }
        _ => FERROLM_FORMAT,
    }
}

impl From<GgufError> for Error {
    fn from(e: GgufError) -> Error {
        Error {
            status: gguf_status(&e),
            msg: ferrolm::error_chain(&e),
        }
    }
}

impl From<ModelError> for Error {
    fn from(e: ModelError) -> Error {
        let status = match &e {
            ModelError::Gguf(g) => gguf_status(g),
            ModelError::UnsupportedArch { .. }
            | ModelError::RopeScalingType { .. }
            | ModelError::PartialRotary { .. }
            | ModelError::UnsupportedType { .. } => FERROLM_UNSUPPORTED,
            ModelError::RopeScalingFactor { .. }
            | ModelError::HeadsDoNotDivide { .. }
            | ModelError::LayerOutOfRange { .. }
            | ModelError::VocabMismatch { .. }
            | ModelError::SpecialTokenOutOfRange { .. }
            | ModelError::ZeroSize { .. }
            | ModelError::KvHeads { .. }
            | ModelError::HeadDim { .. }
            | ModelError::OutOfRange { .. }
            | ModelError::Implausible { .. }
            | ModelError::MissingTensor(_)
            | ModelError::BadShape { .. }
            | ModelError::Misaligned { .. }
            | ModelError::BadMetadata { .. } => FERROLM_FORMAT,
            ModelError::ContextFull { .. } => FERROLM_CONTEXT_FULL,
            ModelError::BadToken { .. } => FERROLM_INVALID_TOKEN,
            ModelError::ContextTooLong { .. }
            | ModelError::TooManyThreads { .. }
            | ModelError::BadSeqCount { .. }
            | ModelError::BadBatch { .. }
            | ModelError::NotEmpty { .. }
            | ModelError::KvCache(_) => FERROLM_INVALID_ARGUMENT,
            ModelError::EmptyPrompt => FERROLM_NO_LOGITS,
        };
        Error {
            status,
            msg: ferrolm::error_chain(&e),
        }
    }
}

impl From<TokenizerError> for Error {
    fn from(e: TokenizerError) -> Error {
        let status = match &e {
            TokenizerError::Gguf(g) => gguf_status(g),
            TokenizerError::UnsupportedModel(_)
            | TokenizerError::UnsupportedPreTokenizer(_)
            | TokenizerError::VocabTooLarge(_) => FERROLM_UNSUPPORTED,
            _ => FERROLM_FORMAT,
        };
        Error {
            status,
            msg: format!("tokenizer: {}", ferrolm::error_chain(&e)),
        }
    }
}

thread_local! {
    /// Message of the last failed call on this thread.
    pub(crate) static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

/// A C string of `msg` (an interior NUL, impossible in our messages, is shown as `\0`).
pub(crate) fn c_string(msg: &str) -> CString {
    CString::new(msg.replace('\0', "\\0")).unwrap_or_default()
}

pub(crate) fn set_last_error(msg: &str) {
    let c = c_string(msg);
    // During thread teardown the slot may be gone; the status still tells the caller.
    let _ = LAST_ERROR.try_with(|e| *e.borrow_mut() = Some(c));
}

pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    let what = p
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| p.downcast_ref::<String>().map(|s| s.as_str()))
        .unwrap_or("unknown panic");
    format!("internal error (panic): {what}")
}

/// Run an entry point: failures and panics become a status, with the message stored per thread.
pub(crate) fn guard(f: impl FnOnce() -> Res<()>) -> ferrolm_status {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => FERROLM_OK,
        Ok(Err(e)) => {
            set_last_error(&e.msg);
            e.status
        }
        Err(p) => {
            set_last_error(&panic_message(&*p));
            FERROLM_PANIC
        }
    }
}

/// Run an entry point on a context: as `guard`, and the message is also kept by the context.
pub(crate) fn guard_ctx(
    ctx: *mut ferrolm_context,
    f: impl FnOnce(&mut ferrolm_context) -> Res<()>,
) -> ferrolm_status {
    if ctx.is_null() {
        set_last_error("ctx is NULL");
        return FERROLM_NULL_POINTER;
    }
    // SAFETY: the caller passes a live context from ferrolm_context_new and uses it from one
    // thread at a time (documented on every function), so this is the only reference to it.
    let c = unsafe { &mut *ctx };
    if c.poisoned {
        let msg =
            "this context is unusable after an internal error (panic) in an earlier call; free it";
        set_last_error(msg);
        c.error = Some(c_string(msg));
        return FERROLM_PANIC;
    }
    c.error = None;
    let r = catch_unwind(AssertUnwindSafe(|| f(&mut *c)));
    let (status, msg) = match r {
        Ok(Ok(())) => return FERROLM_OK,
        Ok(Err(e)) => (e.status, e.msg),
        Err(p) => {
            c.poisoned = true;
            (FERROLM_PANIC, panic_message(&*p))
        }
    };
    set_last_error(&msg);
    c.error = Some(c_string(&msg));
    status
}

/// Run an entry point that returns a plain value; `fallback` on a panic.
pub(crate) fn guard_value<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(p) => {
            set_last_error(&panic_message(&*p));
            fallback
        }
    }
}
