//! Saving and restoring a context's tokens and KV cache (`ferrolm run --prompt-cache FILE`,
//! `ferrolm_state_save` / `ferrolm_state_load`), so a long prompt is evaluated once.
//!
//! File layout (little-endian):
//! ```text
//! magic "FRLMKV\0\x01" | u64 model fingerprint | u32 cache type | u32 value layout (0 transposed,
//! 1 rows) | u32 n_layer | u32 n_head_kv | u32 head_dim | u32 flags (1: logits follow the
//! tokens) | u64 n_tokens | n_tokens x u32 token ids | [n_vocab x f32 the last token's logits] |
//! the cache's bytes for positions 0..n_tokens (per layer, K then V, per head: rows, or per
//! dimension for transposed values) | u64 checksum of everything before
//! ```
//! A file is checked before it is used: the model (fingerprint), the cache's type, layout and
//! shape, the size the header implies against the file's real size, the token ids, the checksum.
//! Saving writes a temporary file next to the target and renames it, so a failed save never
//! leaves a partial or replaced file.

use std::io::{Read, Write};
use std::path::Path;

use crate::kv_cache::{KvCache, KvType};
use crate::model::{Context, Model};

const MAGIC: [u8; 8] = *b"FRLMKV\0\x01";
const HEADER: usize = 8 + 8 + 4 * 6 + 8;

/// Why a state file cannot be saved or loaded.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a ferrolm state file")]
    NotState { path: String },
    #[error("{path} was saved for another model (or another version of this model's file)")]
    OtherModel { path: String },
    #[error("{path} holds a {found} cache; this context's is {want}")]
    Layout {
        path: String,
        found: String,
        want: String,
    },
    #[error("{path} holds {n_tokens} tokens; this context has {n_ctx} positions")]
    TooLong {
        path: String,
        n_tokens: u64,
        n_ctx: usize,
    },
    #[error("{path} is {found} bytes; its header says {want}")]
    Size { path: String, found: u64, want: u64 },
    #[error("{path}: token id {id} is out of range (vocabulary of {n_vocab})")]
    BadToken {
        path: String,
        id: u32,
        n_vocab: usize,
    },
    #[error("{path}: checksum mismatch (the file is damaged)")]
    Checksum { path: String },
}

/// FNV-1a over 64-bit little-endian words (a byte tail is padded with zeros when finished).
struct Hasher {
    h: u64,
    tail: [u8; 8],
    n_tail: usize,
}

impl Hasher {
    fn new() -> Hasher {
        Hasher {
            h: 0xcbf2_9ce4_8422_2325,
            tail: [0; 8],
            n_tail: 0,
        }
    }

    #[inline]
    fn word(&mut self, w: u64) {
        self.h = (self.h ^ w).wrapping_mul(0x0000_0100_0000_01b3);
    }

    fn update(&mut self, mut b: &[u8]) {
        if self.n_tail > 0 {
            let k = (8 - self.n_tail).min(b.len());
            self.tail[self.n_tail..self.n_tail + k].copy_from_slice(&b[..k]);
            self.n_tail += k;
            b = &b[k..];
            if self.n_tail < 8 {
                return;
            }
            self.word(u64::from_le_bytes(self.tail));
            self.n_tail = 0;
        }
        let mut words = b.chunks_exact(8);
        for w in &mut words {
            self.word(u64::from_le_bytes(w.try_into().expect("8 bytes")));
        }
        let r = words.remainder();
        self.tail[..r.len()].copy_from_slice(r);
        self.n_tail = r.len();
    }

    fn finish(mut self) -> u64 {
        if self.n_tail > 0 {
            self.tail[self.n_tail..].fill(0);
            self.word(u64::from_le_bytes(self.tail));
            self.word(self.n_tail as u64);
        }
        self.h
    }
}

/// A fingerprint of the model file: its header, metadata and tensor table, its size, and 64
/// samples of 4 KiB spread over the tensor data (a fine-tune of the same shape differs there).
pub fn model_fingerprint(model: &Model) -> u64 {
    let g = model.gguf();
    let bytes = g.bytes();
    let data = (g.data_offset() as usize).min(bytes.len());
    let mut h = Hasher::new();
    h.update(&(bytes.len() as u64).to_le_bytes());
    h.update(&bytes[..data.min(16 << 20)]);
    let body = &bytes[data..];
    if !body.is_empty() {
        for i in 0..64 {
            let at = body.len() / 64 * i;
            h.update(&body[at..(at + 4096).min(body.len())]);
        }
    }
    h.finish()
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn type_code(t: KvType) -> u32 {
    match t {
        KvType::F32 => 0,
        KvType::F16 => 1,
        // ggml's type ids.
        t => t.ggml().id(),
    }
}

fn layout_name(ty: u32, rows: u32) -> String {
    let t = KvType::ALL
        .into_iter()
        .find(|&t| type_code(t) == ty)
        .map_or("unknown", |t| t.name());
    format!(
        "{t} ({} values)",
        if rows == 1 {
            "row-major, -fa on"
        } else {
            "transposed"
        }
    )
}

/// What [`Context::state_load`] restored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// The ids of the positions now in the sequence's cache.
    pub tokens: Vec<u32>,
    /// The file had the last token's logits and they are now [`Context::logits`] (sequence 0):
    /// generation can continue without evaluating anything.
    pub logits: bool,
}

fn header(model: &Model, kv: &KvCache, n_tokens: usize, flags: u32) -> [u8; HEADER] {
    let c = model.config();
    let mut h = [0u8; HEADER];
    h[..8].copy_from_slice(&MAGIC);
    h[8..16].copy_from_slice(&model_fingerprint(model).to_le_bytes());
    let fields = [
        type_code(kv.ty()),
        (!kv.v_transposed() && !kv.ty().is_quantized()) as u32,
        c.n_layer as u32,
        c.n_head_kv as u32,
        c.head_dim as u32,
        flags,
    ];
    for (i, f) in fields.iter().enumerate() {
        h[16 + 4 * i..20 + 4 * i].copy_from_slice(&f.to_le_bytes());
    }
    h[40..48].copy_from_slice(&(n_tokens as u64).to_le_bytes());
    h
}

impl Context {
    /// Writes sequence `seq`'s cache, its token ids and, when given, the last token's `logits`
    /// (so that a restored context continues without evaluating anything, exactly as this one
    /// does) to `path`, through a temporary file renamed over it.
    pub fn state_save(
        &self,
        seq: usize,
        logits: Option<&[f32]>,
        path: &Path,
    ) -> Result<(), StateError> {
        let tokens = self.seq_tokens(seq);
        let logits = logits.filter(|l| l.len() == self.model().config().n_vocab);
        let n = tokens.len();
        let kv = self.seq_kv(seq);
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let tmp = dir.unwrap_or(Path::new(".")).join(format!(
            ".{}.tmp{}",
            name.unwrap_or_default(),
            std::process::id()
        ));
        let write = || -> std::io::Result<()> {
            let f = std::fs::File::create(&tmp)?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
            let mut h = Hasher::new();
            let mut put = |w: &mut std::io::BufWriter<std::fs::File>, b: &[u8]| {
                h.update(b);
                w.write_all(b)
            };
            put(
                &mut w,
                &header(self.model(), kv, n, logits.is_some() as u32),
            )?;
            for t in tokens {
                put(&mut w, &t.to_le_bytes())?;
            }
            for l in logits.unwrap_or(&[]) {
                put(&mut w, &l.to_le_bytes())?;
            }
            let mut res = Ok(());
            kv.for_each_span(n, |b| {
                if res.is_ok() {
                    res = put(&mut w, b);
                }
            });
            res?;
            let sum = h.finish();
            w.write_all(&sum.to_le_bytes())?;
            let f = w.into_inner().map_err(|e| e.into_error())?;
            f.sync_all()?;
            Ok(())
        };
        if let Err(e) = write().and_then(|_| std::fs::rename(&tmp, path)) {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(path)(e));
        }
        Ok(())
    }

    /// Restores sequence `seq` from a file written by [`Context::state_save`]: its cache, and for
    /// sequence 0 the saved logits. On any error the sequence is left empty.
    pub fn state_load(&mut self, seq: usize, path: &Path) -> Result<Loaded, StateError> {
        let p = || path.display().to_string();
        let meta = std::fs::metadata(path).map_err(io(path))?;
        if !meta.is_file() {
            return Err(StateError::NotState { path: p() });
        }
        let mut f = std::fs::File::open(path).map_err(io(path))?;
        let mut head = [0u8; HEADER];
        if meta.len() < HEADER as u64 + 8 {
            return Err(StateError::NotState { path: p() });
        }
        f.read_exact(&mut head).map_err(io(path))?;
        if head[..8] != MAGIC {
            return Err(StateError::NotState { path: p() });
        }
        let u32_at = |i: usize| u32::from_le_bytes(head[i..i + 4].try_into().expect("4 bytes"));
        let fp = u64::from_le_bytes(head[8..16].try_into().expect("8 bytes"));
        let n = u64::from_le_bytes(head[40..48].try_into().expect("8 bytes"));
        if fp != model_fingerprint(self.model()) {
            return Err(StateError::OtherModel { path: p() });
        }
        let flags = u32_at(36);
        if flags > 1 {
            return Err(StateError::NotState { path: p() });
        }
        let want = header(self.model(), self.seq_kv(seq), 0, flags);
        if head[16..40] != want[16..40] {
            return Err(StateError::Layout {
                path: p(),
                found: layout_name(u32_at(16), u32_at(20)),
                want: layout_name(
                    u32::from_le_bytes(want[16..20].try_into().expect("4")),
                    u32::from_le_bytes(want[20..24].try_into().expect("4")),
                ),
            });
        }
        if n > self.n_ctx() as u64 {
            return Err(StateError::TooLong {
                path: p(),
                n_tokens: n,
                n_ctx: self.n_ctx(),
            });
        }
        let n = n as usize;
        let kv_bytes = self.seq_kv(seq).span_bytes(n);
        let n_vocab = self.model().config().n_vocab;
        let logit_bytes = if flags == 1 { 4 * n_vocab as u64 } else { 0 };
        let size = HEADER as u64 + 4 * n as u64 + logit_bytes + kv_bytes as u64 + 8;
        if meta.len() != size {
            return Err(StateError::Size {
                path: p(),
                found: meta.len(),
                want: size,
            });
        }
        let mut r = std::io::BufReader::with_capacity(1 << 20, f);
        let mut h = Hasher::new();
        h.update(&head);
        let mut ids = vec![0u8; 4 * n];
        r.read_exact(&mut ids).map_err(io(path))?;
        h.update(&ids);
        let mut logits = vec![0u8; logit_bytes as usize];
        r.read_exact(&mut logits).map_err(io(path))?;
        h.update(&logits);
        let tokens: Vec<u32> = ids
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        if let Some(&id) = tokens.iter().find(|&&t| t as usize >= n_vocab) {
            return Err(StateError::BadToken {
                path: p(),
                id,
                n_vocab,
            });
        }
        // The cache is overwritten from here: empty until the checksum has been verified.
        self.seq_truncate(seq, 0);
        let mut res = Ok(());
        self.seq_kv_mut(seq).for_each_span_mut(n, |b| {
            if res.is_ok() {
                res = r.read_exact(b);
                h.update(b);
            }
        });
        res.map_err(io(path))?;
        let mut sum = [0u8; 8];
        r.read_exact(&mut sum).map_err(io(path))?;
        if u64::from_le_bytes(sum) != h.finish() {
            return Err(StateError::Checksum { path: p() });
        }
        self.seq_restore(seq, &tokens);
        let restored = flags == 1 && seq == 0;
        if restored {
            let l: Vec<f32> = logits
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
                .collect();
            self.set_logits(&l);
        }
        Ok(Loaded {
            tokens,
            logits: restored,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Hasher;

    #[test]
    fn hasher_does_not_depend_on_how_bytes_are_split() {
        let data: Vec<u8> = (0..100u8).collect();
        let mut a = Hasher::new();
        a.update(&data);
        let mut b = Hasher::new();
        for c in data.chunks(3) {
            b.update(c);
        }
        assert_eq!(a.finish(), b.finish());
        let mut c = Hasher::new();
        c.update(&data[..99]);
        let mut d = Hasher::new();
        d.update(&data[..98]);
        assert_ne!(c.finish(), d.finish());
    }
}
