//! Several sequences in one forward pass (`Context::eval_seqs`, what `ferrolm serve`'s continuous
//! batching runs on): each sequence's logits are bit-identical to evaluating it alone, whether
//! its tokens share a batch with other sequences' prompts or decode steps; bad batches are
//! refused without touching any sequence.

use std::sync::Arc;

use ferrolm::model::{Context, ContextParams, Logits, Model, ModelError, SeqBatch};
use ferrolm::tokenizer::Tokenizer;

mod common;

const PROMPTS: [&str; 3] = [
    "The capital of France is",
    "Once upon a time, there was a little robot who",
    "def fibonacci(n):",
];
const STEPS: usize = 6;

/// Greedy decoding of `prompt` alone: the logits after the prompt and after each of STEPS tokens.
fn alone(model: &Arc<Model>, params: &ContextParams, prompt: &[u32]) -> Vec<Vec<f32>> {
    let mut ctx = Context::new(Arc::clone(model), params.clone()).unwrap();
    ctx.eval(prompt, Logits::Last).unwrap();
    let mut out = vec![ctx.logits().to_vec()];
    for _ in 0..STEPS {
        let id = common::argmax(ctx.logits());
        ctx.eval(&[id], Logits::Last).unwrap();
        out.push(ctx.logits().to_vec());
    }
    out
}

fn check(model_file: &str, flash_attn: bool) {
    let Some(path) = common::model(model_file) else {
        return;
    };
    let model = Arc::new(Model::load(&path).unwrap());
    let tok = Tokenizer::from_gguf(model.gguf()).unwrap();
    let params = ContextParams {
        n_ctx: 128,
        n_threads: 2,
        flash_attn,
        ..Default::default()
    };
    let prompts: Vec<Vec<u32>> = PROMPTS.iter().map(|p| tok.encode(p, true, true)).collect();
    let want: Vec<Vec<Vec<f32>>> = prompts.iter().map(|p| alone(&model, &params, p)).collect();

    let mut ctx = Context::new(
        Arc::clone(&model),
        ContextParams {
            n_seq: 3,
            ..params.clone()
        },
    )
    .unwrap();
    // Sequences 0 and 1 start together; sequence 2's prompt arrives two steps later and is
    // evaluated in the same batch as the others' decode steps. Each step feeds every running
    // sequence its own greedy token.
    let mut step = [0usize; 3];
    let mut next = [0u32; 3];
    let mut started = [false; 3];
    for round in 0..STEPS + 3 {
        let mut parts: Vec<SeqBatch> = Vec::new();
        for seq in 0..3 {
            let start_round = if seq == 2 { 2 } else { 0 };
            if round < start_round || step[seq] > STEPS {
                continue;
            }
            let tokens: &[u32] = if !started[seq] {
                &prompts[seq]
            } else {
                std::slice::from_ref(&next[seq])
            };
            parts.push(SeqBatch {
                seq,
                tokens,
                logits: true,
            });
        }
        if parts.is_empty() {
            break;
        }
        let seqs: Vec<usize> = parts.iter().map(|p| p.seq).collect();
        ctx.eval_seqs(&parts).unwrap();
        for seq in seqs {
            started[seq] = true;
            let got = ctx.seq_logits(seq).expect("logits were asked for");
            let w = &want[seq][step[seq]];
            assert!(
                got == &w[..],
                "{model_file}: sequence {seq} step {}: logits differ from the sequence alone \
                 (max |d| {})",
                step[seq],
                got.iter()
                    .zip(w)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max)
            );
            next[seq] = common::argmax(got);
            step[seq] += 1;
        }
    }
    assert_eq!(step, [STEPS + 1; 3], "{model_file}: every sequence ran");
    for (seq, p) in prompts.iter().enumerate() {
        assert_eq!(
            ctx.seq_n_past(seq),
            p.len() + STEPS,
            "{model_file}: seq {seq}"
        );
    }
}

#[test]
fn smollm2_sequences_batched_equal_alone() {
    check("SmolLM2-135M-Instruct.Q4_1.gguf", false);
}

#[test]
fn qwen_sequences_batched_equal_alone() {
    check("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", false);
}

#[test]
fn gemma3_sequences_batched_equal_alone_flash() {
    check("gemma-3-270m-q4_k_m.gguf", true);
}

#[test]
fn bad_batches_are_refused_untouched() {
    let Some(path) = common::model("SmolLM2-135M-Instruct.Q4_1.gguf") else {
        return;
    };
    let model = Arc::new(Model::load(&path).unwrap());
    let mut ctx = Context::new(
        model,
        ContextParams {
            n_ctx: 16,
            n_batch: 8,
            n_seq: 2,
            n_threads: 1,
            ..Default::default()
        },
    )
    .unwrap();
    ctx.eval_seqs(&[SeqBatch {
        seq: 1,
        tokens: &[1, 2, 3],
        logits: false,
    }])
    .unwrap();
    assert_eq!((ctx.seq_n_past(0), ctx.seq_n_past(1)), (0, 3));
    assert!(ctx.seq_logits(1).is_none(), "no logits were asked for");
    let part = |seq, tokens| SeqBatch {
        seq,
        tokens,
        logits: true,
    };
    let cases: Vec<(Vec<SeqBatch>, &str)> = vec![
        (vec![], "0 tokens"),
        (vec![part(0, &[1; 9])], "9 tokens"),
        (vec![part(2, &[1])], "sequence 2"),
        (vec![part(0, &[1]), part(0, &[2])], "appears twice"),
        (vec![part(0, &[1]), part(1, &[])], "has no tokens"),
        (vec![part(0, &[1]), part(1, &[99_999])], "99999"),
    ];
    for (batch, what) in cases {
        let err = ctx.eval_seqs(&batch).unwrap_err();
        assert!(err.to_string().contains(what), "{what}: {err}");
        assert_eq!((ctx.seq_n_past(0), ctx.seq_n_past(1)), (0, 3), "{what}");
    }
    // Sequence 1 then holds 11 of its 16 positions: 6 more tokens do not fit.
    ctx.eval_seqs(&[part(1, &[5; 8])]).unwrap();
    let err = ctx.eval_seqs(&[part(1, &[5; 6])]).unwrap_err();
    assert!(matches!(err, ModelError::ContextFull { .. }), "{err}");
    assert!(
        Context::new(
            Arc::clone(ctx.model()),
            ContextParams {
                n_seq: 0,
                ..Default::default()
            }
        )
        .is_err(),
        "0 sequences"
    );
}
