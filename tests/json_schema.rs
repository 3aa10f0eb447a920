//! Output constrained by JSON Schemas is always valid: for the 20 schemas of
//! tests/data/json_schema/schemas.json (nested objects, arrays, tuples, enums, consts, refs,
//! anyOf/oneOf, formats, patterns, integer ranges), generations at temperature 0.8 with SmolLM2
//! and Qwen2.5-coder all parse and validate against their schema with Python's `jsonschema`
//! (Draft 2020-12; installed by scripts/test.sh). The suite runs 1 generation per schema and
//! model (seeds differ by schema); `FERROLM_SCHEMA_GENS=20` runs the 20 (about nine
//! minutes more).

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;

use ferrolm::generate::{generate, GenOptions};
use ferrolm::grammar::{schema_to_gbnf, Constraint, Grammar, TokenTable};
use ferrolm::model::{Context, ContextParams, Model};
use ferrolm::sampler::{Sampler, SamplerParams, StopMatcher};
use ferrolm::tokenizer::Tokenizer;
use serde_json::{json, Value};

/// Generates `n` texts per schema with `model`; returns (schema, text) pairs.
fn generate_all(model: &str, schemas: &[Value], n: usize) -> Option<Vec<Value>> {
    let path = common::model(model)?;
    let model = Arc::new(Model::load(&path).unwrap());
    let tok = Tokenizer::from_gguf(model.gguf()).unwrap();
    let table = Arc::new(TokenTable::new(&tok));
    let mut ctx = Context::new(
        Arc::clone(&model),
        ContextParams {
            n_ctx: 1024,
            n_threads: 2,
            ..Default::default()
        },
    )
    .unwrap();
    let mut out = Vec::new();
    for (si, schema) in schemas.iter().enumerate() {
        let g = Arc::new(Grammar::parse(&schema_to_gbnf(schema).unwrap()).unwrap());
        let prompt = format!("A JSON value that fits this JSON Schema: {schema}\nJSON: ");
        let ids = tok.encode(&prompt, true, false);
        for k in 0..n {
            ctx.reset();
            let mut sampler = Sampler::new(
                SamplerParams {
                    temp: 0.8,
                    seed: (si * 100 + k) as u64,
                    ..Default::default()
                },
                tok.n_vocab(),
            );
            sampler.set_grammar(Some(Constraint::new(Arc::clone(&g), Arc::clone(&table))));
            let mut text = String::new();
            let opts = GenOptions {
                n_predict: Some(400),
                ..Default::default()
            };
            let stats = generate(
                &mut ctx,
                &tok,
                &mut sampler,
                &mut StopMatcher::new(Vec::<String>::new()),
                &ids,
                &opts,
                |_, t| {
                    text.push_str(t);
                    true
                },
            )
            .unwrap();
            assert!(
                stats.n_gen < 400,
                "schema {si} seed {k}: no end after 400 tokens: {text:?}"
            );
            out.push(json!({"schema": schema, "text": text}));
        }
    }
    Some(out)
}

#[test]
fn constrained_generations_validate_against_their_schemas() {
    let schemas: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(common::data("json_schema/schemas.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(schemas.len(), 20);
    let has_validator = Command::new("python3")
        .args(["-c", "import jsonschema"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        has_validator || std::env::var_os("FERROLM_TEST_NO_JSONSCHEMA").is_some(),
        "python3 cannot import jsonschema: run scripts/test.sh (it installs it), or set \
         FERROLM_TEST_NO_JSONSCHEMA=1 to skip this test"
    );
    if !has_validator {
        return;
    }
    let n: usize = std::env::var("FERROLM_SCHEMA_GENS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    for model in [
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    ] {
        let Some(cases) = generate_all(model, &schemas, n) else {
            continue;
        };
        let mut child = Command::new("python3")
            .arg(common::root().join("tests/py/validate_json.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(Value::Array(cases.clone()).to_string().as_bytes())
            .unwrap();
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success());
        let r: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(r["checked"], cases.len());
        assert_eq!(r["failures"], json!([]), "{model}: {r}");
        eprintln!("{model}: {} generations, all valid", cases.len());
    }
}
