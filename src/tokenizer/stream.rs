//! Streaming detokenizer: turns token ids into text as they are generated.

use super::Tokenizer;

/// Turns a stream of token ids into text. Bytes of a UTF-8 character split across tokens (an
/// emoji made of byte tokens, say) are held until the character is complete; invalid sequences
/// become U+FFFD. Never panics, whatever the ids.
///
/// Unlike [`Tokenizer::decode`], no leading space is removed and no space clean-up is applied:
/// each token's piece is emitted as it is (llama.cpp's `common_token_to_piece` streaming).
#[derive(Debug, Default, Clone)]
pub struct StreamDecoder {
    /// Bytes not yet emitted: at most an incomplete UTF-8 sequence (< 4 bytes) between calls.
    pending: Vec<u8>,
    /// Text returned by the last call.
    out: String,
}

impl StreamDecoder {
    pub fn new() -> StreamDecoder {
        StreamDecoder::default()
    }

    /// Add a token; returns the text that became complete (possibly empty).
    /// `special` renders control tokens as their text.
    pub fn push(&mut self, tok: &Tokenizer, id: u32, special: bool) -> &str {
        let piece = tok.token_to_piece(id, special);
        self.push_bytes(piece)
    }

    /// Add raw bytes; returns the text that became complete (possibly empty).
    pub fn push_bytes(&mut self, bytes: &[u8]) -> &str {
        self.out.clear();
        self.pending.extend_from_slice(bytes);
        let mut start = 0;
        loop {
            match std::str::from_utf8(&self.pending[start..]) {
                Ok(s) => {
                    self.out.push_str(s);
                    start = self.pending.len();
                    break;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // `from_utf8` just said these bytes are valid, so this never falls back.
                    self.out.push_str(
                        std::str::from_utf8(&self.pending[start..start + valid]).unwrap_or(""),
                    );
                    start += valid;
                    match e.error_len() {
                        // Invalid sequence: replace it and go on.
                        Some(n) => {
                            self.out.push('\u{FFFD}');
                            start += n;
                        }
                        // Incomplete sequence at the end: keep it for the next token.
                        None => break,
                    }
                }
            }
        }
        self.pending.drain(..start);
        &self.out
    }

    /// End of stream: whatever is held (an incomplete sequence) becomes U+FFFD.
    pub fn flush(&mut self) -> &str {
        self.out.clear();
        if !self.pending.is_empty() {
            self.out.push_str(&String::from_utf8_lossy(&self.pending));
            self.pending.clear();
        }
        &self.out
    }

    /// Forget held bytes (start a new stream).
    pub fn reset(&mut self) {
        self.pending.clear();
        self.out.clear();
    }

    /// Whether bytes of an incomplete character are held.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }
}
