//! Whole-model hot paths on the real SmolLM2: one decode step with the KV cache filled to 16, 512
//! and 2048 positions (the growth over the 16-position step is attention), and a 64-token prefill.
//! Throughput is in tokens. Skipped with a message when the model has not been fetched.

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ferrolm::model::{Context, ContextParams, Logits, Model};

fn model() -> Option<Arc<Model>> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !p.exists() {
        eprintln!(
            "SKIP: {} not found (run scripts/fetch-models.sh)",
            p.display()
        );
        return None;
    }
    Some(Arc::new(Model::load(&p).expect("load SmolLM2")))
}

fn ids(n: usize) -> Vec<u32> {
    (0..n as u32).map(|i| (i * 7919 + 13) % 49152).collect()
}

fn decode(c: &mut Criterion) {
    let Some(model) = model() else { return };
    let mut g = c.benchmark_group("smollm2_decode_step");
    g.sample_size(20)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(1));
    for threads in [1usize, 2] {
        for fill in [16usize, 512, 2048] {
            let mut ctx = Context::new(
                Arc::clone(&model),
                ContextParams {
                    n_ctx: fill + 64,
                    n_threads: threads,
                    ..Default::default()
                },
            )
            .unwrap();
            ctx.eval(&ids(fill), Logits::None).unwrap();
            g.bench_function(format!("t{threads}/pos{fill}"), |b| {
                b.iter(|| {
                    // Decode one token at position `fill`, then rewind so every iteration is the same.
                    ctx.eval(&[42], Logits::Last).unwrap();
                    ctx.truncate(fill);
                })
            });
        }
    }
    g.finish();

    let mut g = c.benchmark_group("smollm2_prefill");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(64));
    for threads in [1usize, 2] {
        let mut ctx = Context::new(
            Arc::clone(&model),
            ContextParams {
                n_ctx: 128,
                n_threads: threads,
                ..Default::default()
            },
        )
        .unwrap();
        let prompt = ids(64);
        g.bench_function(format!("t{threads}/pp64"), |b| {
            b.iter(|| {
                ctx.reset();
                ctx.eval(&prompt, Logits::Last).unwrap();
            })
        });
    }
    g.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
