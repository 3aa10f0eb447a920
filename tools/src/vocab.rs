//! Tokenizer metadata from a Hugging Face checkpoint, written as `convert_hf_to_gguf.py` writes
//! it: `tokenizer.json` (byte-level BPE, `_set_vocab_gpt2`) or `tokenizer.model` (SentencePiece,
//! `_set_vocab_sentencepiece`), then gguf-py's `SpecialVocab` (merges, special token ids,
//! `add_*_token`, chat template).
//!
//! The BPE pre-tokenizer name (`tokenizer.ggml.pre`) is recognized as llama.cpp recognizes it: the
//! sha256 of the token ids of a fixed check text, looked up in the converter's table. The ids come
//! from ferrolm's own tokenizer, tried with each pre-tokenizer it implements; a name is accepted
//! only when its ids hash to that same name's entry.

use std::path::Path;

use ferrolm::gguf::{Gguf, GgufWriter, OwnedValue, ValueType};
use ferrolm::tokenizer::Tokenizer;
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

use crate::error::QuantizeError;
use crate::hf::read_json;

const NORMAL: i32 = 1;
const UNKNOWN: i32 = 2;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;
const BYTE: i32 = 6;

/// convert_hf_to_gguf.py's `chktxt`.
const CHECK_TEXT: &str = "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u{200d}🌫️ (multiple emojis concatenated) ✅ 🦙🦙 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ ------======= нещо на Български ''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, 'RE you sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL";

/// (chkhsh, name) from `get_vocab_base_pre`, for the pre-tokenizers ferrolm implements.
const PRE_HASHES: &[(&str, &str)] = &[
    (
        "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249",
        "smollm",
    ),
    (
        "e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea",
        "qwen2",
    ),
    // Qwen3 (the converter's reference: Qwen3-Embedding-0.6B).
    (
        "d4540891389ea895b53b399da6ac824becc30f2fba0e9ddbb98f92e55ca0e97c",
        "qwen2",
    ),
    (
        "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5",
        "llama-bpe",
    ),
    (
        "3ce83efda5659b07b1ad37ca97ca5797ea4285d9b9ab0dc679e4a720c9da7454",
        "gpt-2",
    ),
    (
        "35d91631860c815f952d711435f48d356ebac988362536bed955d43bfa436e34",
        "starcoder",
    ),
    (
        "6221ad2852e85ce96f791f476e0b390cf9b474c9e3d1362f53a24a06dc8220ff",
        "refact",
    ),
    (
        "9c2227e4dd922002fb81bde4fc02b0483ca4f12911410dee2255e4987644e3f8",
        "command-r",
    ),
    (
        "32d85c31273f8019248f2559fed492d929ea28b17e51d81d3bb36fff23ca72b3",
        "stablelm2",
    ),
    (
        "a8594e3edff7c29c003940395316294b2c623e09894deebbc65f33f1515df79e",
        "dbrx",
    ),
    (
        "c136ed14d01c2745d4f60a9596ae66800e2b61fa45643e72436041855ad4089d",
        "smaug-bpe",
    ),
    (
        "b6dc8df998e1cfbdc4eac8243701a65afe638679230920b50d6f17d81c098166",
        "mpt",
    ),
    (
        "7b3e7548e4308f52a76e8229e4e6cc831195d0d1df43aed21ac6c93da05fec5f",
        "codeshell",
    ),
    (
        "4e2b24cc4770243d65a2c9ec19770a72f08cffc161adbb73fcbb6b7dd45a0aae",
        "exaone",
    ),
];

/// The special-token kinds gguf-py's SpecialVocab looks for, in its order, with their GGUF keys.
const SPECIAL_TYPES: [(&str, &str); 7] = [
    ("bos", "tokenizer.ggml.bos_token_id"),
    ("eos", "tokenizer.ggml.eos_token_id"),
    ("unk", "tokenizer.ggml.unknown_token_id"),
    ("sep", "tokenizer.ggml.seperator_token_id"),
    ("pad", "tokenizer.ggml.padding_token_id"),
    ("cls", "tokenizer.ggml.cls_token_id"),
    ("mask", "tokenizer.ggml.mask_token_id"),
];

type Kv = Vec<(String, OwnedValue)>;

fn tok_err(path: &Path, what: impl std::fmt::Display) -> QuantizeError {
    QuantizeError::Tokenizer(format!("{}: {what}", path.display()))
}

fn looks_special(t: &str) -> bool {
    matches!(t, "<pad>" | "<mask>" | "<2mass>" | "[@BOS@]")
        || (t.starts_with("<|") && t.ends_with("|>") && t.len() >= 4)
        || (t.starts_with("<｜") && t.ends_with("｜>"))
        || (t.starts_with("<unused") && t.ends_with('>'))
}

fn i32_array(v: &[i32]) -> OwnedValue {
    OwnedValue::Array(
        ValueType::I32,
        v.iter().map(|&x| OwnedValue::I32(x)).collect(),
    )
}

/// The tokenizer keys for the checkpoint in `dir`, in the converter's order.
/// `vocab_size`: config.json's `vocab_size` (or the embedding's rows); `arch`: the GGUF
/// architecture name (llama, qwen2, qwen3, gemma3, phi3, smollm3), which picks the model class's
/// `set_vocab`.
pub fn tokenizer_metadata(dir: &Path, vocab_size: u64, arch: &str) -> Result<Kv, QuantizeError> {
    let spm = dir.join("tokenizer.model");
    let tc = dir.join("tokenizer_config.json");
    let tc_json = if tc.exists() {
        Some(read_json(&tc)?)
    } else {
        None
    };
    // Phi3MiniModel.set_vocab: a GPT2Tokenizer (Phi-4) is byte-level BPE, anything else its own
    // SentencePiece variant.
    let phi3_spm = arch == "phi3"
        && tc_json
            .as_ref()
            .and_then(|t| t.get("tokenizer_class"))
            .and_then(|c| c.as_str())
            != Some("GPT2Tokenizer");
    let llama_like = arch == "llama" || arch == "smollm3";
    let mut kv = Kv::new();
    let is_spm = spm.exists();
    if phi3_spm && !is_spm {
        return Err(QuantizeError::Tokenizer(format!(
            "{}: a Phi-3 checkpoint without a GPT2Tokenizer needs tokenizer.model",
            dir.display()
        )));
    }
    kv.extend(if is_spm {
        sentencepiece(dir, &spm, vocab_size, phi3_spm)?
    } else {
        let tj = dir.join("tokenizer.json");
        if !tj.exists() {
            return Err(QuantizeError::Tokenizer(format!(
                "{}: neither tokenizer.model nor tokenizer.json",
                dir.display()
            )));
        }
        gpt2(dir, &tj, vocab_size)?
    });
    if llama_like {
        // LlamaModel.set_vocab: the tokenizer config's add_prefix_space (where the reference
        // converter of tools/tests/data/convert/ puts it: after the vocabulary's keys).
        if let Some(v) = tc_json
            .as_ref()
            .and_then(|t| t.get("add_prefix_space"))
            .and_then(|v| v.as_bool())
        {
            set(
                &mut kv,
                "tokenizer.ggml.add_space_prefix",
                OwnedValue::Bool(v),
            );
        }
    }
    if llama_like && vocab_size == 49152 {
        // LlamaModel.set_vocab: "Apply to granite small models only".
        set(
            &mut kv,
            "tokenizer.ggml.add_bos_token",
            OwnedValue::Bool(false),
        );
    }
    if arch == "gemma3" && is_spm {
        set(
            &mut kv,
            "tokenizer.ggml.add_space_prefix",
            OwnedValue::Bool(false),
        );
    }
    Ok(kv)
}

fn set(kv: &mut Kv, key: &str, v: OwnedValue) {
    match kv.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = v,
        None => kv.push((key.to_string(), v)),
    }
}

/// One added token of tokenizer.json.
struct Added {
    id: u64,
    content: String,
    special: bool,
}

fn gpt2(dir: &Path, path: &Path, vocab_size: u64) -> Result<Kv, QuantizeError> {
    let tj = read_json(path)?;
    let model = tj
        .get("model")
        .ok_or_else(|| tok_err(path, "no \"model\""))?;
    let ty = model.get("type").and_then(|t| t.as_str()).unwrap_or("");
    if ty != "BPE" {
        return Err(tok_err(
            path,
            format!("model type {ty:?} is not supported without tokenizer.model (expected BPE)"),
        ));
    }
    if model
        .get("byte_fallback")
        .and_then(|b| b.as_bool())
        .unwrap_or(false)
    {
        return Err(tok_err(
            path,
            "a byte-fallback BPE (Llama 2 style) needs its tokenizer.model",
        ));
    }
    let vocab = model
        .get("vocab")
        .and_then(|v| v.as_object())
        .ok_or_else(|| tok_err(path, "no model.vocab"))?;
    let mut rev: Vec<Option<String>> = vec![None; vocab_size as usize];
    let put = |rev: &mut Vec<Option<String>>, id: u64, tok: &str| -> Result<(), QuantizeError> {
        if id >= vocab_size {
            return Err(tok_err(
                path,
                format!("token {tok:?} has id {id}, not below the vocabulary size {vocab_size}"),
            ));
        }
        rev[id as usize] = Some(tok.to_string());
        Ok(())
    };
    for (tok, id) in vocab {
        let id = id
            .as_u64()
            .ok_or_else(|| tok_err(path, format!("token {tok:?}: bad id")))?;
        put(&mut rev, id, tok)?;
    }
    let mut added = Vec::new();
    for a in tj
        .get("added_tokens")
        .and_then(|a| a.as_array())
        .map(|a| a.as_slice())
        .unwrap_or(&[])
    {
        let (Some(id), Some(content)) = (
            a.get("id").and_then(|i| i.as_u64()),
            a.get("content").and_then(|c| c.as_str()),
        ) else {
            return Err(tok_err(path, "an added token without id or content"));
        };
        put(&mut rev, id, content)?;
        added.push(Added {
            id,
            content: content.to_string(),
            special: a.get("special").and_then(|s| s.as_bool()).unwrap_or(false),
        });
    }
    let mut tokens = Vec::with_capacity(vocab_size as usize);
    let mut types = Vec::with_capacity(vocab_size as usize);
    for (i, t) in rev.into_iter().enumerate() {
        match t {
            None => {
                tokens.push(format!("[PAD{i}]"));
                types.push(UNUSED);
            }
            Some(t) => {
                if let Some(a) = added.iter().find(|a| a.content == t) {
                    let special = added
                        .iter()
                        .find(|b| b.id == i as u64)
                        .map(|b| b.special)
                        .unwrap_or(a.special);
                    if special || looks_special(&t) {
                        types.push(CONTROL);
                        tokens.push(t);
                    } else {
                        types.push(USER_DEFINED);
                        tokens.push(t.replace('\u{2581}', " "));
                    }
                } else {
                    types.push(NORMAL);
                    tokens.push(t);
                }
            }
        }
    }
    let merges: Vec<String> = match model.get("merges").and_then(|m| m.as_array()) {
        None => Vec::new(),
        Some(m) => m
            .iter()
            .map(|e| match e {
                Json::String(s) => Ok(s.clone()),
                Json::Array(p) if p.len() == 2 => {
                    let enc = |s: &Json| {
                        s.as_str().map(|s| {
                            s.chars()
                                .map(|c| if c == ' ' { '\u{120}' } else { c })
                                .collect::<String>()
                        })
                    };
                    match (enc(&p[0]), enc(&p[1])) {
                        (Some(a), Some(b)) => Ok(format!("{a} {b}")),
                        _ => Err(tok_err(path, "bad merge entry")),
                    }
                }
                _ => Err(tok_err(path, "bad merge entry")),
            })
            .collect::<Result<_, _>>()?,
    };

    let special = SpecialVocab::load(dir, &tj, &added, None)?;
    let pre = recognize_pre(&tokens, &types, &merges, &special)?;

    let mut kv: Kv = vec![
        (
            "tokenizer.ggml.model".into(),
            OwnedValue::Str("gpt2".into()),
        ),
        (
            "tokenizer.ggml.pre".into(),
            OwnedValue::Str(pre.to_string()),
        ),
        (
            "tokenizer.ggml.tokens".into(),
            OwnedValue::str_array(&tokens),
        ),
        ("tokenizer.ggml.token_type".into(), i32_array(&types)),
    ];
    if !merges.is_empty() {
        kv.push((
            "tokenizer.ggml.merges".into(),
            OwnedValue::str_array(&merges),
        ));
    }
    special.append(&mut kv);
    Ok(kv)
}

/// gguf-py's SpecialVocab: special token ids (first source wins: tokenizer_config.json's tokens
/// matched against tokenizer.json's added tokens, then config.json's `*_token_id`), `add_*_token`
/// flags and the chat template.
struct SpecialVocab {
    ids: Vec<(&'static str, u32)>,
    add: Vec<(&'static str, bool)>,
    chat_template: Option<Json>,
}

impl SpecialVocab {
    fn load(
        dir: &Path,
        tokenizer_json: &Json,
        added: &[Added],
        n_vocab: Option<u64>,
    ) -> Result<SpecialVocab, QuantizeError> {
        let mut sv = SpecialVocab {
            ids: Vec::new(),
            add: Vec::new(),
            chat_template: None,
        };
        let tc_path = dir.join("tokenizer_config.json");
        let tc = if tc_path.exists() {
            Some(read_json(&tc_path)?)
        } else {
            None
        };
        let content = |typ: &str| -> Option<String> {
            match tc.as_ref()?.get(format!("{typ}_token"))? {
                Json::String(s) => Some(s.clone()),
                Json::Object(o) => o.get("content")?.as_str().map(|s| s.to_string()),
                _ => None,
            }
        };
        // TemplateProcessing post-processors say whether BOS/EOS are added.
        if let Some(pp) = tokenizer_json.get("post_processor") {
            let list = pp
                .get("processors")
                .and_then(|p| p.as_array())
                .cloned()
                .unwrap_or_else(|| vec![pp.clone()]);
            for p in list {
                if p.get("type").and_then(|t| t.as_str()) != Some("TemplateProcessing") {
                    continue;
                }
                let single = p
                    .get("single")
                    .and_then(|s| s.as_array())
                    .cloned()
                    .unwrap_or_default();
                if single.len() > 1 {
                    let sid = |j: &Json| {
                        j.get("SpecialToken")
                            .and_then(|s| s.get("id"))
                            .and_then(|s| s.as_str())
                            .map(str::to_string)
                    };
                    if let Some(first) = sid(&single[0]) {
                        sv.set_add("bos", Some(first) == content("bos"));
                    }
                    if let Some(last) = sid(&single[single.len() - 1]) {
                        sv.set_add("eos", Some(last) == content("eos"));
                    }
                }
            }
        }
        if let Some(tc) = &tc {
            if let Some(t @ (Json::String(_) | Json::Array(_))) = tc.get("chat_template") {
                sv.chat_template = Some(t.clone());
            }
            for (typ, _) in SPECIAL_TYPES {
                if let Some(b) = tc.get(format!("add_{typ}_token")).and_then(|b| b.as_bool()) {
                    sv.set_add(typ, b);
                }
                if let Some(c) = content(typ) {
                    if let Some(a) = added.iter().find(|a| a.content == c) {
                        sv.set_id(typ, a.id, n_vocab);
                    }
                }
            }
        }
        let cfg_path = dir.join("config.json");
        if cfg_path.exists() {
            let cfg = read_json(&cfg_path)?;
            for (typ, _) in SPECIAL_TYPES {
                if let Some(id) = cfg.get(format!("{typ}_token_id")).and_then(|v| v.as_u64()) {
                    sv.set_id(typ, id, n_vocab);
                }
            }
        }
        Ok(sv)
    }

    fn set_add(&mut self, typ: &'static str, v: bool) {
        let typ = SPECIAL_TYPES
            .iter()
            .find(|(t, _)| *t == typ)
            .map(|(t, _)| *t)
            .unwrap_or("bos");
        match self.add.iter_mut().find(|(t, _)| *t == typ) {
            Some(s) => s.1 = v,
            None => self.add.push((typ, v)),
        }
    }

    fn set_id(&mut self, typ: &str, id: u64, n_vocab: Option<u64>) {
        if n_vocab.is_some_and(|n| id >= n) || id > u32::MAX as u64 {
            return;
        }
        let Some(&(t, _)) = SPECIAL_TYPES.iter().find(|(t, _)| *t == typ) else {
            return;
        };
        if !self.ids.iter().any(|(k, _)| *k == t) {
            self.ids.push((t, id as u32));
        }
    }

    fn append(&self, kv: &mut Kv) {
        for (typ, id) in &self.ids {
            let key = SPECIAL_TYPES
                .iter()
                .find(|(t, _)| t == typ)
                .map(|(_, k)| *k)
                .unwrap_or_default();
            kv.push((key.to_string(), OwnedValue::U32(*id)));
        }
        for (typ, v) in &self.add {
            kv.push((
                format!("tokenizer.ggml.add_{typ}_token"),
                OwnedValue::Bool(*v),
            ));
        }
        match &self.chat_template {
            Some(Json::String(s)) => {
                kv.push(("tokenizer.chat_template".into(), OwnedValue::Str(s.clone())))
            }
            Some(Json::Array(list)) => {
                let mut names = Vec::new();
                for t in list {
                    let (Some(name), Some(tpl)) = (
                        t.get("name").and_then(|n| n.as_str()),
                        t.get("template").and_then(|n| n.as_str()),
                    ) else {
                        continue;
                    };
                    if name == "default" {
                        kv.push((
                            "tokenizer.chat_template".into(),
                            OwnedValue::Str(tpl.to_string()),
                        ));
                    } else {
                        kv.push((
                            format!("tokenizer.chat_template.{name}"),
                            OwnedValue::Str(tpl.to_string()),
                        ));
                        names.push(name.to_string());
                    }
                }
                if !names.is_empty() {
                    kv.push((
                        "tokenizer.chat_templates".into(),
                        OwnedValue::str_array(&names),
                    ));
                }
            }
            _ => {}
        }
    }

    fn id_of(&self, typ: &str) -> Option<u32> {
        self.ids.iter().find(|(t, _)| *t == typ).map(|(_, i)| *i)
    }

    fn add_of(&self, typ: &str) -> Option<bool> {
        self.add.iter().find(|(t, _)| *t == typ).map(|(_, v)| *v)
    }
}

/// Python's `str(list_of_ints)`.
fn py_list(ids: &[u32]) -> String {
    let mut s = String::from("[");
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&id.to_string());
    }
    s.push(']');
    s
}

/// The pre-tokenizer name llama.cpp's converter would write for this vocabulary.
fn recognize_pre(
    tokens: &[String],
    types: &[i32],
    merges: &[String],
    special: &SpecialVocab,
) -> Result<&'static str, QuantizeError> {
    let mut base = GgufWriter::new();
    base.set("tokenizer.ggml.model", OwnedValue::Str("gpt2".into()));
    base.set("tokenizer.ggml.tokens", OwnedValue::str_array(tokens));
    base.set("tokenizer.ggml.token_type", i32_array(types));
    base.set("tokenizer.ggml.merges", OwnedValue::str_array(merges));
    if let Some(b) = special.id_of("bos") {
        base.set("tokenizer.ggml.bos_token_id", OwnedValue::U32(b));
    }
    if let Some(e) = special.id_of("eos") {
        base.set("tokenizer.ggml.eos_token_id", OwnedValue::U32(e));
    }
    let mut tried = Vec::new();
    for (i, &(_, name)) in PRE_HASHES.iter().enumerate() {
        if PRE_HASHES[..i].iter().any(|&(_, n)| n == name) {
            continue;
        }
        let mut w = base.clone();
        w.set("tokenizer.ggml.pre", OwnedValue::Str(name.into()));
        if let Some(b) = special.add_of("bos") {
            w.set("tokenizer.ggml.add_bos_token", OwnedValue::Bool(b));
        }
        let bytes = w.write_all(Vec::new(), &[]).map_err(|e| {
            QuantizeError::Tokenizer(format!(
                "building a check vocabulary: {}",
                ferrolm::error_chain(&e)
            ))
        })?;
        let g = Gguf::from_bytes(&bytes).map_err(|e| {
            QuantizeError::Tokenizer(format!("check vocabulary: {}", ferrolm::error_chain(&e)))
        })?;
        let tok = match Tokenizer::from_gguf(&g) {
            Ok(t) => t,
            Err(_) => continue,
        };
        let ids = tok.encode(CHECK_TEXT, true, false);
        let hash = format!("{:x}", Sha256::digest(py_list(&ids).as_bytes()));
        if PRE_HASHES.iter().any(|&(h, n)| h == hash && n == name) {
            return Ok(name);
        }
        tried.push(format!("{name}: {}", &hash[..16]));
    }
    Err(QuantizeError::Tokenizer(format!(
        "the BPE pre-tokenizer was not recognized (none of the known check-text hashes matched; tried {})",
        tried.join(", ")
    )))
}

// ------------------------------------------------------------------ SentencePiece

/// A minimal protobuf reader for sentencepiece's ModelProto.
struct Pb<'a> {
    b: &'a [u8],
    pos: usize,
}

enum Field<'a> {
    Varint(u64),
    Fixed32(u32),
    Fixed64,
    Bytes(&'a [u8]),
}

impl<'a> Pb<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.b.get(self.pos)?;
            self.pos += 1;
            v |= ((byte & 0x7f) as u64) << shift;
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn next(&mut self) -> Option<Result<(u64, Field<'a>), ()>> {
        if self.pos >= self.b.len() {
            return None;
        }
        let Some(key) = self.varint() else {
            return Some(Err(()));
        };
        let f = match key & 7 {
            0 => self.varint().map(Field::Varint),
            1 => self.take(8).map(|_| Field::Fixed64),
            2 => self
                .varint()
                .and_then(|n| usize::try_from(n).ok())
                .and_then(|n| self.take(n))
                .map(Field::Bytes),
            5 => self
                .take(4)
                .map(|b| Field::Fixed32(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
            _ => None,
        };
        Some(f.map(|f| (key >> 3, f)).ok_or(()))
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.b.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
}

/// `_set_vocab_sentencepiece`, or with `phi3` Phi3MiniModel's variant of it (added tokens taken
/// as they are, without the special-looking test or the U+2581 replacement, and tokenizer.json's
/// added tokens applied last).
fn sentencepiece(
    dir: &Path,
    path: &Path,
    vocab_size: u64,
    phi3: bool,
) -> Result<Kv, QuantizeError> {
    let bytes = crate::hf::read_input(path)?;
    let bad = || {
        tok_err(
            path,
            "not a valid sentencepiece model (protobuf parse error)",
        )
    };
    let mut pieces: Vec<(String, f32, i32)> = Vec::new();
    let mut pb = Pb { b: &bytes, pos: 0 };
    while let Some(f) = pb.next() {
        if let (1, Field::Bytes(msg)) = f.map_err(|_| bad())? {
            let (mut piece, mut score, mut ty) = (String::new(), 0f32, NORMAL);
            let mut p = Pb { b: msg, pos: 0 };
            while let Some(g) = p.next() {
                match g.map_err(|_| bad())? {
                    (1, Field::Bytes(s)) => {
                        piece = String::from_utf8(s.to_vec()).map_err(|_| bad())?
                    }
                    (2, Field::Fixed32(x)) => score = f32::from_bits(x),
                    (3, Field::Varint(t)) => ty = t as i32,
                    _ => {}
                }
            }
            pieces.push((piece, score, ty));
        }
    }
    if pieces.is_empty() {
        return Err(bad());
    }
    let n = vocab_size.max(pieces.len() as u64) as usize;
    let mut tokens: Vec<String> = (0..n).map(|i| format!("[PAD{i}]")).collect();
    let mut scores = vec![-10000f32; n];
    let mut types = vec![UNUSED; n];
    for (i, (piece, score, ty)) in pieces.into_iter().enumerate() {
        tokens[i] = piece;
        scores[i] = score;
        types[i] = match ty {
            UNKNOWN => UNKNOWN,
            CONTROL => CONTROL,
            UNUSED => UNUSED,
            BYTE => BYTE,
            _ => NORMAL,
        };
    }
    let added_path = dir.join("added_tokens.json");
    if added_path.exists() {
        if let Some(obj) = read_json(&added_path)?.as_object() {
            for (tok, id) in obj {
                if let Some(id) = id.as_u64().filter(|&i| i < n as u64) {
                    tokens[id as usize] = tok.clone();
                    scores[id as usize] = -1000.0;
                    types[id as usize] = USER_DEFINED;
                }
            }
        }
    }
    let tc_path = dir.join("tokenizer_config.json");
    let mut added = Vec::new();
    if tc_path.exists() {
        let tc = read_json(&tc_path)?;
        if let Some(dec) = tc.get("added_tokens_decoder").and_then(|d| d.as_object()) {
            for (id, data) in dec {
                let (Ok(id), Some(content)) = (
                    id.parse::<usize>(),
                    data.get("content").and_then(|c| c.as_str()),
                ) else {
                    continue;
                };
                if id >= n {
                    continue;
                }
                let special = data
                    .get("special")
                    .and_then(|s| s.as_bool())
                    .unwrap_or(false);
                if special || (!phi3 && looks_special(content)) {
                    types[id] = CONTROL;
                    tokens[id] = content.to_string();
                } else if phi3 {
                    types[id] = USER_DEFINED;
                    tokens[id] = content.to_string();
                } else {
                    types[id] = USER_DEFINED;
                    tokens[id] = content.replace('\u{2581}', " ");
                }
                scores[id] = -1000.0;
                added.push(Added {
                    id: id as u64,
                    content: content.to_string(),
                    special,
                });
            }
        }
    }
    let tj_path = dir.join("tokenizer.json");
    let tj = if tj_path.exists() {
        read_json(&tj_path)?
    } else {
        Json::Null
    };
    for a in tj
        .get("added_tokens")
        .and_then(|a| a.as_array())
        .map(|a| a.as_slice())
        .unwrap_or(&[])
    {
        if let (Some(id), Some(c)) = (
            a.get("id").and_then(|i| i.as_u64()),
            a.get("content").and_then(|c| c.as_str()),
        ) {
            if phi3 && id < n as u64 {
                let special = a.get("special").and_then(|s| s.as_bool()).unwrap_or(false);
                tokens[id as usize] = c.to_string();
                scores[id as usize] = -1000.0;
                types[id as usize] = if special { CONTROL } else { USER_DEFINED };
            }
            added.push(Added {
                id,
                content: c.to_string(),
                special: false,
            });
        }
    }
    let special = SpecialVocab::load(dir, &tj, &added, Some(n as u64))?;
    let mut kv: Kv = vec![
        (
            "tokenizer.ggml.model".into(),
            OwnedValue::Str("llama".into()),
        ),
        (
            "tokenizer.ggml.pre".into(),
            OwnedValue::Str("default".into()),
        ),
        (
            "tokenizer.ggml.tokens".into(),
            OwnedValue::str_array(&tokens),
        ),
        (
            "tokenizer.ggml.scores".into(),
            OwnedValue::Array(
                ValueType::F32,
                scores.iter().map(|&s| OwnedValue::F32(s)).collect(),
            ),
        ),
        ("tokenizer.ggml.token_type".into(), i32_array(&types)),
    ];
    special.append(&mut kv);
    Ok(kv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_list_format() {
        assert_eq!(py_list(&[]), "[]");
        assert_eq!(py_list(&[1, 22, 333]), "[1, 22, 333]");
    }

    #[test]
    fn special_looking_tokens() {
        assert!(looks_special("<|im_start|>"));
        assert!(looks_special("<unused12>"));
        assert!(!looks_special("<tool_call>"));
    }

    #[test]
    fn protobuf_pieces() {
        // ModelProto { pieces: [{piece: "a", score: 0.5, type: 2}] }
        let mut piece = vec![0x0a, 1, b'a', 0x15];
        piece.extend_from_slice(&0.5f32.to_le_bytes());
        piece.extend_from_slice(&[0x18, 2]);
        let mut model = vec![0x0a, piece.len() as u8];
        model.extend_from_slice(&piece);
        let mut pb = Pb { b: &model, pos: 0 };
        let Some(Ok((1, Field::Bytes(m)))) = pb.next() else {
            panic!("no piece")
        };
        assert_eq!(m, &piece[..]);
        assert!(pb.next().is_none());
    }
}
