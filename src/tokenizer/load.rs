//! Building a [`Tokenizer`] from a GGUF file's metadata: the vocabulary, the model (SentencePiece
//! or BPE with its merges and pre-tokenizer), the special tokens and the rendered pieces.

use super::*;

/// Special-token id keys, as llama.cpp names them.
const KEY_BOS: &str = "tokenizer.ggml.bos_token_id";
const KEY_EOS: &str = "tokenizer.ggml.eos_token_id";
const KEY_EOT: &str = "tokenizer.ggml.eot_token_id";
const KEY_EOM: &str = "tokenizer.ggml.eom_token_id";
const KEY_UNK: &str = "tokenizer.ggml.unknown_token_id";
const KEY_PAD: &str = "tokenizer.ggml.padding_token_id";
const KEY_FIM_PAD: &str = "tokenizer.ggml.fim_pad_token_id";
const KEY_FIM_REP: &str = "tokenizer.ggml.fim_rep_token_id";
const KEY_FIM_SEP: &str = "tokenizer.ggml.fim_sep_token_id";

fn opt_bool(g: &Gguf, key: &str) -> Result<Option<bool>, GgufError> {
    match g.get(key) {
        None => Ok(None),
        Some(_) => g.get_bool(key).map(Some),
    }
}

fn opt_u32(g: &Gguf, key: &str) -> Result<Option<u32>, GgufError> {
    match g.get(key) {
        None => Ok(None),
        Some(_) => g.get_u32(key).map(Some),
    }
}

// The lists below are llama.cpp's of October 2026 (llama-cpp-python 0.3.36's vendor/llama.cpp,
// `llama_vocab::impl::load`): tokens found by their text, made CONTROL.

/// llama.cpp's EOT auto-detection list (tokens by text).
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>"];
const FIM_REP_TEXTS: &[&str] = &[
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];
/// Tokens that end generation, by text (llama.cpp's `special_eog_ids` rule).
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

impl Tokenizer {
    /// Build the tokenizer from a GGUF file's metadata.
    pub fn from_gguf(g: &Gguf) -> Result<Tokenizer, TokenizerError> {
        let model_name = g.get_str("tokenizer.ggml.model")?;
        let pre_name = match g.get("tokenizer.ggml.pre") {
            None => None,
            Some(_) => Some(g.get_str("tokenizer.ggml.pre")?),
        };
        let is_spm = match model_name {
            "llama" => true,
            "gpt2" => false,
            other => return Err(TokenizerError::UnsupportedModel(other.to_string())),
        };

        // --- vocabulary ---
        const KEY_TOKENS: &str = "tokenizer.ggml.tokens";
        let tokens = g.get_array(KEY_TOKENS)?;
        if tokens.elem_type() != ValueType::String {
            return Err(TokenizerError::WrongElementType {
                key: KEY_TOKENS,
                expected: "STRING",
                found: tokens.elem_type().name(),
            });
        }
        let n_vocab = tokens.len();
        if n_vocab == 0 {
            return Err(TokenizerError::EmptyVocab);
        }
        if n_vocab > i32::MAX as usize {
            return Err(TokenizerError::VocabTooLarge(n_vocab));
        }

        const KEY_SCORES: &str = "tokenizer.ggml.scores";
        let scores = match g.get(KEY_SCORES) {
            None => vec![0.0; n_vocab],
            Some(_) => {
                let v = g.get_array(KEY_SCORES)?.to_f32_vec(KEY_SCORES)?;
                if v.len() < n_vocab {
                    return Err(TokenizerError::TooShort {
                        key: KEY_SCORES,
                        have: v.len(),
                        n_vocab,
                    });
                }
                v
            }
        };
        const KEY_TYPES: &str = "tokenizer.ggml.token_type";
        let types: Vec<TokenType> = match g.get(KEY_TYPES) {
            None => vec![TokenType::Normal; n_vocab],
            Some(_) => {
                let v = g.get_array(KEY_TYPES)?.to_i32_vec(KEY_TYPES)?;
                if v.len() < n_vocab {
                    return Err(TokenizerError::TooShort {
                        key: KEY_TYPES,
                        have: v.len(),
                        n_vocab,
                    });
                }
                v.into_iter()
                    .take(n_vocab)
                    .map(TokenType::from_i32)
                    .collect()
            }
        };

        // Offsets into the text arena are u32; the raw array (texts plus length prefixes) bounds it.
        if tokens.raw_bytes().len() > MAX_TABLE_BYTES {
            return Err(TokenizerError::TooLarge {
                what: "the token texts",
                bytes: tokens.raw_bytes().len(),
            });
        }
        let mut vocab = Vocab::with_capacity(n_vocab, tokens.raw_bytes().len());
        for (i, t) in tokens.strings().enumerate() {
            let pushed = if t.is_empty() {
                vocab.push(&format!("[EMPTY_{i}]"))
            } else {
                vocab.push(t)
            };
            if let Err(first) = pushed {
                return Err(TokenizerError::DuplicateToken {
                    text: t.to_string(),
                    first,
                    second: i as u32,
                });
            }
        }
        if vocab.len() != n_vocab {
            // strings() yields every element of a STRING array; a short read means a bad file.
            return Err(TokenizerError::TooShort {
                key: KEY_TOKENS,
                have: vocab.len(),
                n_vocab,
            });
        }
        let mut attrs: Vec<u16> = types.iter().map(|&t| attr_of(t)).collect();

        // --- model type, flags and default special tokens (llama.cpp `load`) ---
        let in_range = |id: u32| (id as usize) < n_vocab;
        let (mut bos, mut eos, mut unk) = if is_spm {
            (Some(1), Some(2), Some(0))
        } else {
            (Some(11), Some(11), None)
        };
        let mut add_bos;
        let mut add_eos = false;
        let mut add_space_prefix;
        let mut clean_spaces;
        let model = if is_spm {
            add_bos = true;
            add_space_prefix = true;
            clean_spaces = false;
            let mut byte_tokens = Box::new([None; 256]);
            for (b, slot) in byte_tokens.iter_mut().enumerate() {
                // llama.cpp's byte_to_token: "<0xNN>", else the byte as a one-char string (only
                // ASCII can be a vocabulary string).
                let hex = format!("<0x{b:02X}>");
                let mut buf = [0u8; 4];
                *slot = vocab.find(&hex).or_else(|| {
                    (b < 128)
                        .then(|| vocab.find((b as u8 as char).encode_utf8(&mut buf)))
                        .flatten()
                });
            }
            let chunkable = (0..n_vocab as u32).all(|id| {
                let t = vocab.text(id);
                let mut prev_other = false;
                t.chars().all(|c| {
                    let ok = !(c == '\u{2581}' && prev_other);
                    prev_other = c != '\u{2581}';
                    ok
                })
            });
            Model::Spm {
                byte_tokens,
                chunkable,
            }
        } else {
            add_bos = false;
            add_space_prefix = false;
            clean_spaces = true;
            let name = pre_name.unwrap_or("default");
            let pre = PreTokenizer::from_name(name)
                .ok_or_else(|| TokenizerError::UnsupportedPreTokenizer(name.to_string()))?;
            let mut ignore_merges = false;
            match name {
                "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "pixtral" => {
                    ignore_merges = true;
                    add_bos = true;
                }
                "qwen2" | "deepseek-r1-qwen" | "smollm" | "command-r" | "poro-chat" | "viking" => {
                    clean_spaces = false
                }
                _ => {}
            }
            if matches!(name, "chatglm-bpe" | "glm4") {
                bos = None;
            }
            const KEY_MERGES: &str = "tokenizer.ggml.merges";
            let merges = g.get_array(KEY_MERGES)?;
            if merges.elem_type() != ValueType::String {
                return Err(TokenizerError::WrongElementType {
                    key: KEY_MERGES,
                    expected: "STRING",
                    found: merges.elem_type().name(),
                });
            }
            // Virtual ids (merge results outside the vocabulary) follow the vocabulary in u32.
            if merges.len() > (u32::MAX as usize - n_vocab) / 3 {
                return Err(TokenizerError::TooLarge {
                    what: "the merge table",
                    bytes: merges.raw_bytes().len(),
                });
            }
            let lookup = |s: &str| vocab.find(s);
            Model::Bpe(Box::new(Bpe::new(
                pre,
                ignore_merges,
                n_vocab as u32,
                merges.strings(),
                lookup,
            )))
        };
        if let Some(v) = opt_bool(g, "tokenizer.ggml.add_space_prefix")? {
            add_space_prefix = v;
        }

        // Special ids from the file: out-of-range defaults are dropped; out-of-range file values
        // keep the default (as llama.cpp, which only warns).
        let special = |default: Option<u32>, key: &str| -> Result<Option<u32>, GgufError> {
            let default = default.filter(|&id| in_range(id));
            Ok(match opt_u32(g, key)? {
                Some(id) if in_range(id) => Some(id),
                _ => default,
            })
        };
        bos = special(bos, KEY_BOS)?;
        eos = special(eos, KEY_EOS)?;
        let mut eot = special(None, KEY_EOT)?;
        let mut eom = special(None, KEY_EOM)?;
        unk = special(unk, KEY_UNK)?;
        let pad = special(None, KEY_PAD)?;
        let mut fim_pad = special(None, KEY_FIM_PAD)?;
        let mut fim_rep = special(None, KEY_FIM_REP)?;
        let mut fim_sep = special(None, KEY_FIM_SEP)?;

        if let Some(v) = opt_bool(g, "tokenizer.ggml.add_bos_token")? {
            add_bos = v;
        }
        if let Some(v) = opt_bool(g, "tokenizer.ggml.add_eos_token")? {
            add_eos = v;
        }
        if add_bos && bos.is_none() {
            return Err(TokenizerError::MissingSpecialToken {
                flag: "tokenizer.ggml.add_bos_token",
                id_key: KEY_BOS,
            });
        }
        if add_eos && eos.is_none() {
            return Err(TokenizerError::MissingSpecialToken {
                flag: "tokenizer.ggml.add_eos_token",
                id_key: KEY_EOS,
            });
        }

        // Auto-detect EOT / EOM / FIM tokens by text; such tokens become CONTROL.
        let detect = |slot: &mut Option<u32>, names: &[&str], attrs: &mut Vec<u16>| {
            if slot.is_some() {
                return;
            }
            // llama.cpp walks an unordered map; we take the lowest id for determinism.
            let found = names.iter().filter_map(|n| vocab.find(n)).min();
            if let Some(id) = found {
                *slot = Some(id);
                attrs[id as usize] |= ATTR_CONTROL;
            }
        };
        detect(&mut eot, EOT_TEXTS, &mut attrs);
        detect(&mut eom, &["<|eom_id|>"], &mut attrs);
        detect(&mut fim_pad, FIM_PAD_TEXTS, &mut attrs);
        detect(&mut fim_rep, FIM_REP_TEXTS, &mut attrs);
        detect(&mut fim_sep, FIM_SEP_TEXTS, &mut attrs);
        for (i, a) in attrs.iter_mut().enumerate() {
            // Control tokens named "unused" are unused (still CONTROL, so still matched).
            if *a & ATTR_CONTROL != 0 && vocab.text(i as u32).contains("unused") {
                *a |= ATTR_UNUSED;
            }
        }

        let mut eog: Vec<u32> = [fim_pad, fim_rep, fim_sep].into_iter().flatten().collect();
        for name in EOG_TEXTS {
            if let Some(id) = vocab.find(name) {
                eog.push(id);
                attrs[id as usize] |= ATTR_CONTROL;
            }
        }
        eog.extend([eos, eot, eom].into_iter().flatten());
        eog.sort_unstable();
        eog.dedup();

        // Special tokens cache: longest text first (stable: ties by id).
        let mut specials: Vec<u32> = (0..n_vocab as u32)
            .filter(|&id| {
                attrs[id as usize] & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN) != 0
            })
            .collect();
        specials.sort_by_key(|&id| std::cmp::Reverse(vocab.text(id).len()));

        let mut tok = Tokenizer {
            model,
            vocab,
            scores,
            attrs,
            types,
            pieces: Vec::new(),
            piece_off: Vec::new(),
            specials,
            eog,
            bos,
            eos,
            eot,
            unk,
            pad,
            add_bos,
            add_eos,
            add_space_prefix,
            clean_spaces,
        };
        tok.build_pieces()?;
        Ok(tok)
    }

    /// Fill the `token_to_piece(special = true)` cache.
    fn build_pieces(&mut self) -> Result<(), TokenizerError> {
        let mut pieces = Vec::with_capacity(self.vocab.len() * 6);
        let mut off = Vec::with_capacity(self.vocab.len() + 1);
        off.push(0u32);
        for id in 0..self.vocab.len() {
            self.render_piece(id, &mut pieces);
            // (Undecodable BPE tokens expand quadratically, as in llama.cpp: keep that bounded.)
            if pieces.len() > MAX_TABLE_BYTES {
                return Err(TokenizerError::TooLarge {
                    what: "the decoded token pieces",
                    bytes: pieces.len(),
                });
            }
            off.push(pieces.len() as u32);
        }
        self.pieces = pieces;
        self.piece_off = off;
        Ok(())
    }

    /// llama.cpp's `token_to_piece(special = true)` for one token.
    fn render_piece(&self, id: usize, out: &mut Vec<u8>) {
        let attr = self.attrs[id];
        let text = self.vocab.text(id as u32);
        if attr & (ATTR_UNKNOWN | ATTR_CONTROL | ATTR_USER_DEFINED) != 0 {
            out.extend_from_slice(text.as_bytes());
        } else if attr & ATTR_NORMAL != 0 {
            match self.model {
                Model::Spm { .. } => {
                    // Unescape U+2581 to a space.
                    let mut rest = text;
                    while let Some(p) = rest.find('\u{2581}') {
                        out.extend_from_slice(&rest.as_bytes()[..p]);
                        out.push(b' ');
                        rest = &rest[p + '\u{2581}'.len_utf8()..];
                    }
                    out.extend_from_slice(rest.as_bytes());
                }
                Model::Bpe(_) => {
                    // GPT-2 byte decoding (`llama_decode_text`).
                    for c in text.chars() {
                        match unicode::cp_to_byte(c as u32) {
                            Some(b) => out.push(b),
                            None => {
                                out.extend_from_slice(b"[UNK_BYTE_0x");
                                let mut buf = [0u8; 4];
                                for b in c.encode_utf8(&mut buf).bytes() {
                                    out.extend_from_slice(format!("{b:02x}").as_bytes());
                                }
                                out.extend_from_slice(text.as_bytes());
                                out.push(b']');
                            }
                        }
                    }
                }
            }
        } else if attr & ATTR_BYTE != 0 {
            // "<0xNN>" -> byte NN (strtol on the two hex digits; garbage gives 0 like strtol).
            let hex = text.get(3..5).unwrap_or("");
            out.push(u8::from_str_radix(hex, 16).unwrap_or(0));
        }
        // UNUSED and UNDEFINED tokens render as nothing.
    }
}
