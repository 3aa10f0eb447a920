//! The text commands end to end: `run` streams exactly the generated text, `eval`/`tokenize`/
//! `detokenize` agree with the library and llama.cpp, `perplexity` is within 1% of
//! llama-perplexity, and bad input gets one line on stderr and a non-zero exit.

use std::process::{Command, Output};

#[path = "../../tests/common/mod.rs"]
mod common;

fn ferrolm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferrolm"))
        .args(args)
        .output()
        .expect("run ferrolm")
}

/// A release build of `ferrolm` (built here once per run, in this test's target directory): the
/// perplexity test evaluates ~60k tokens, which the test profile's debug assertions make ~10x slower.
fn release_ferrolm() -> &'static std::path::Path {
    static BIN: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_ferrolm"))
            .parent()
            .expect("binary directory");
        let target_dir = bin_dir.parent().expect("target directory");
        common::release_build(target_dir).join(format!("ferrolm{}", std::env::consts::EXE_SUFFIX))
    })
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// A failed command: non-zero exit, exactly one stderr line, starting with "error:" and naming `what`.
fn assert_one_line_error(o: &Output, what: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success(),
        "expected failure, got success; stderr: {err}"
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines.iter().any(|l| l.contains(what))
            && (lines.len() == 1 || lines[0].starts_with("error:")),
        "stderr should be one line naming '{what}', got: {err}"
    );
}

#[test]
fn run_greedy_prints_exactly_llamacpps_text() {
    let Some(m) = common::model("SmolLM2-135M-Instruct.Q4_1.gguf") else {
        return;
    };
    let m = m.to_str().unwrap();
    // llama.cpp's greedy continuation (tests/data/generate): the first 8 tokens are far from ties.
    let golden =
        std::fs::read_to_string(common::data("generate/SmolLM2-135M-Instruct.Q4_1.jsonl")).unwrap();
    let row: serde_json::Value = serde_json::from_str(golden.lines().next().unwrap()).unwrap();
    let prompt = row["prompt"].as_str().unwrap();
    let ids: Vec<String> = row["generated_ids"].as_array().unwrap()[..8]
        .iter()
        .map(|v| v.to_string())
        .collect();
    let want = stdout(&ferrolm(&["detokenize", "-m", m, "--ids", &ids.join(",")]));
    let o = ferrolm(&[
        "run", "-m", m, "-p", prompt, "-n", "8", "--temp", "0", "-t", "2",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // detokenize prints the text and a newline; run prints the text and ends it with one newline.
    assert_eq!(
        stdout(&o),
        want,
        "run's stdout must be exactly the generated text and one newline"
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("tokens/s") && err.contains("load:"),
        "stats on stderr: {err}"
    );
    // --echo prints the prompt first; a seed makes sampling reproducible.
    let o = ferrolm(&[
        "run", "-m", m, "-p", prompt, "-n", "8", "--temp", "0", "--echo",
    ]);
    assert_eq!(stdout(&o), format!("{prompt}{want}"));
    let a = ferrolm(&[
        "run", "-m", m, "-p", "Hello", "-n", "12", "--seed", "5", "--temp", "1.0",
    ]);
    let b = ferrolm(&[
        "run", "-m", m, "-p", "Hello", "-n", "12", "--seed", "5", "--temp", "1.0",
    ]);
    assert_eq!(stdout(&a), stdout(&b));
}

#[test]
fn eval_json_and_tokenize_agree_with_llamacpp() {
    let Some(m) = common::model("SmolLM2-135M-Instruct.Q4_1.gguf") else {
        return;
    };
    let m = m.to_str().unwrap();
    let o = ferrolm(&[
        "tokenize",
        "-m",
        m,
        "-p",
        "The capital of France is",
        "--json",
    ]);
    assert_eq!(stdout(&o).trim(), "[504,3575,282,4649,314]");
    let o = ferrolm(&[
        "tokenize",
        "-m",
        m,
        "-p",
        "<|im_start|>user",
        "--json",
        "--parse-special",
    ]);
    assert_eq!(stdout(&o).trim(), "[1,4093]");
    let o = ferrolm(&["detokenize", "-m", m, "--ids", "504,3575,282,4649,314"]);
    assert_eq!(stdout(&o), "The capital of France is\n");
    let o = ferrolm(&[
        "eval",
        "-m",
        m,
        "-p",
        "The capital of France is",
        "--top",
        "3",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let pos = v["positions"].as_array().unwrap();
    assert_eq!(pos.len(), 5);
    // llama.cpp's argmax at each position (tests/data/logits).
    let argmax: Vec<u64> = pos.iter().map(|p| p["argmax"].as_u64().unwrap()).collect();
    assert_eq!(argmax, [29, 282, 260, 314, 7042]);
    assert_eq!(pos[0]["top"].as_array().unwrap().len(), 3);
    let o = ferrolm(&["eval", "-m", m, "--ids", "504,3575"]);
    assert!(o.status.success());
    assert_eq!(stdout(&o).lines().count(), 2);
}

#[test]
fn bad_input_is_one_line_and_nonzero() {
    let dir = std::env::temp_dir().join(format!("ferrolm-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let not_gguf = dir.join("not.gguf");
    std::fs::write(&not_gguf, b"this is not a model").unwrap();
    let missing = dir.join("missing.gguf");
    let (ng, mi) = (not_gguf.to_str().unwrap(), missing.to_str().unwrap());
    assert_one_line_error(&ferrolm(&["run", "-m", mi, "-p", "hi"]), "missing.gguf");
    assert_one_line_error(&ferrolm(&["run", "-m", ng, "-p", "hi"]), "not a GGUF file");
    assert_one_line_error(
        &ferrolm(&["eval", "-m", ng, "--ids", "1"]),
        "not a GGUF file",
    );
    assert_one_line_error(
        &ferrolm(&["perplexity", "-m", mi, "-f", ng]),
        "missing.gguf",
    );
    let truncated = dir.join("trunc.gguf");
    let Some(m) = common::model("SmolLM2-135M-Instruct.Q4_1.gguf") else {
        return;
    };
    let bytes = std::fs::read(&m).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    assert_one_line_error(
        &ferrolm(&["run", "-m", truncated.to_str().unwrap(), "-p", "hi"]),
        "outside the file",
    );
    let m = m.to_str().unwrap();
    // A prompt longer than the context.
    let long = "word ".repeat(100);
    assert_one_line_error(
        &ferrolm(&["run", "-m", m, "-c", "16", "-p", &long]),
        "context",
    );
    // Bad flag values.
    for args in [
        vec!["run", "-m", m, "-p", "hi", "--temp", "-1"],
        vec!["run", "-m", m, "-p", "hi", "--top-p", "2"],
        vec!["run", "-m", m, "-p", "hi", "-n", "-5"],
        vec!["run", "-m", m, "-p", "hi", "--cache-type", "q4"],
        vec!["run", "-m", m, "-p", "hi", "--no-such-flag"],
        vec!["eval", "-m", m, "--ids", "1,x"],
        vec!["bench", "-m", m, "-o", "xml"],
    ] {
        let o = ferrolm(&args);
        assert!(!o.status.success(), "{args:?} should fail");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("error"),
            "{args:?}"
        );
    }
    assert_one_line_error(
        &ferrolm(&["eval", "-m", m, "--ids", "99999999"]),
        "out of range",
    );
    assert_one_line_error(
        &ferrolm(&["detokenize", "-m", m, "--ids", "99999999"]),
        "out of range",
    );
    // A prompt file that is not UTF-8.
    let bad_utf8 = dir.join("bad.txt");
    std::fs::write(&bad_utf8, b"caf\xe9 au lait").unwrap();
    assert_one_line_error(
        &ferrolm(&["run", "-m", m, "-f", bad_utf8.to_str().unwrap()]),
        "UTF-8",
    );
    assert_one_line_error(
        &ferrolm(&["perplexity", "-m", m, "-f", bad_utf8.to_str().unwrap()]),
        "UTF-8",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `ferrolm perplexity` within 1% of llama-perplexity for every model in perplexity.json that is
/// present (the two real models; the requantized variants once `quantize` has made them). The
/// shipped SmolLM2 Q4_1 is scored over the whole text (20 chunks); the others over their first
/// `SHORT_CHUNKS` chunks (`--chunks`), compared with llama.cpp's running perplexity at that chunk,
/// which keeps the test near a minute (all six in full take ~3 minutes; all within 0.31%).
#[test]
fn perplexity_within_one_percent_of_llamacpp() {
    let golden: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::data("perplexity/perplexity.json")).unwrap(),
    )
    .unwrap();
    let text = common::data("perplexity/brown-excerpt.txt");
    let mut checked = 0;
    for r in golden["results"].as_array().unwrap() {
        let file = r["model_file"].as_str().unwrap();
        let Some(m) = common::model(file) else {
            continue;
        };
        const SHORT_CHUNKS: usize = 4;
        let full = file == "SmolLM2-135M-Instruct.Q4_1.gguf";
        let n_chunks = if full {
            r["n_chunks"].as_u64().unwrap() as usize
        } else {
            SHORT_CHUNKS
        };
        let o = Command::new(release_ferrolm())
            .args([
                "perplexity",
                "-m",
                m.to_str().unwrap(),
                "-f",
                text.to_str().unwrap(),
                "-c",
                "512",
                "--chunks",
                &n_chunks.to_string(),
            ])
            .output()
            .expect("run ferrolm perplexity");
        assert!(
            o.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let out = stdout(&o);
        let line = out
            .lines()
            .find(|l| l.starts_with("Final estimate: PPL = "))
            .expect("final line");
        let ppl: f64 = line["Final estimate: PPL = ".len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let want = r["running_ppl"][n_chunks - 1].as_f64().unwrap();
        let rel = (ppl - want).abs() / want;
        eprintln!(
            "{file}: PPL {ppl:.4}, llama.cpp {want:.4} ({:+.2}%) over {n_chunks} chunks",
            100.0 * (ppl - want) / want
        );
        assert!(
            rel <= 0.01,
            "{file}: PPL {ppl} vs llama.cpp {want}: {:.2}% apart",
            100.0 * rel
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(&format!("{n_chunks} chunks")), "{file}: {err}");
        checked += 1;
    }
    assert!(checked > 0 || common::model("SmolLM2-135M-Instruct.Q4_1.gguf").is_none());
}

/// Gemma 3 270M: `ferrolm perplexity` within 1% of llama-perplexity of October 2026
/// (`tests/data/gemma3/perplexity.json`) at -c 512 and at -c 1024, whose chunks run past the
/// 512-position sliding window; with `-fa on`, as llama.cpp computed it. Each chunk starts with
/// BOS (the model adds one), as llama-perplexity does. The suite compares the running PPL after 8
/// chunks of 512 and 3 of 1024 with llama.cpp's after as many; `FERROLM_TEST_FULL_PPL=1` runs the
/// whole text (20 and 10 chunks, about 3x longer) against the final figures.
#[test]
fn gemma3_perplexity_within_one_percent_of_llamacpp() {
    let Some(m) = common::model("gemma-3-270m-q4_k_m.gguf") else {
        return;
    };
    let golden: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::data("gemma3/perplexity.json")).unwrap(),
    )
    .unwrap();
    let full = std::env::var_os("FERROLM_TEST_FULL_PPL").is_some_and(|v| v == "1");
    let text = common::data("perplexity/brown-excerpt.txt");
    for r in golden["results"].as_array().unwrap() {
        let cmd = r["command"].as_str().unwrap();
        let c = cmd.split(" -c ").nth(1).unwrap().split(' ').next().unwrap();
        let running = r["running_ppl"].as_array().unwrap();
        let (chunks, want) = if full {
            (running.len(), r["ppl"].as_f64().unwrap())
        } else {
            let k = if c == "512" { 8 } else { 3 };
            (k, running[k - 1].as_f64().unwrap())
        };
        let o = Command::new(release_ferrolm())
            .args(["perplexity", "-m", m.to_str().unwrap(), "-f"])
            .arg(&text)
            .args(["-c", c, "-fa", "on", "--chunks", &chunks.to_string()])
            .output()
            .expect("run ferrolm perplexity");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let out = stdout(&o);
        let line = out
            .lines()
            .find(|l| l.starts_with("Final estimate: PPL = "))
            .expect("final line");
        let ppl: f64 = line["Final estimate: PPL = ".len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let rel = (ppl - want).abs() / want;
        eprintln!(
            "gemma3 -c {c}, {chunks} chunks: PPL {ppl:.4}, llama.cpp {want:.4} ({:+.2}%)",
            100.0 * (ppl - want) / want
        );
        assert!(rel <= 0.01, "gemma3 -c {c}: PPL {ppl} vs llama.cpp {want}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(&format!("{chunks} chunks")), "{err}");
    }
}

/// `run --prompt-cache FILE`: the first run evaluates the whole prompt and writes the file; a run
/// with the same prompt evaluates nothing (the file has the logits), one with a longer prompt
/// reuses the shared part; the text is the same as without the cache every time (greedy). A damaged file is
/// ignored with a note, then rewritten.
#[test]
fn prompt_cache_reuses_the_prefix_and_changes_nothing() {
    let Some(m) = common::model("SmolLM2-135M-Instruct.Q4_1.gguf") else {
        return;
    };
    let ms = m.to_str().unwrap();
    let dir = std::env::temp_dir().join(format!("ferrolm-pcache-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cache = dir.join("prompt.cache");
    let cs = cache.to_str().unwrap();
    let p1 = "You are a poet. Write two lines about the sea and the wind.";
    let p2 = "You are a poet. Write two lines about the sea and the mountains.";
    let run = |p: &str, with_cache: bool| {
        let mut a = vec![
            "run", "-m", ms, "-p", p, "--temp", "0", "-n", "16", "-t", "2",
        ];
        if with_cache {
            a.extend(["--prompt-cache", cs]);
        }
        let o = ferrolm(&a);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        let reused = err
            .lines()
            .find_map(|l| l.strip_prefix("prompt cache: reused "))
            .map(|r| {
                let mut w = r.split_whitespace();
                let a: usize = w.next().unwrap().parse().unwrap();
                let b: usize = w.nth(1).unwrap().parse().unwrap();
                (a, b)
            });
        (stdout(&o), reused, err)
    };
    let (plain1, none, _) = run(p1, false);
    assert!(none.is_none());
    let (out, reused, _) = run(p1, true);
    assert_eq!(out, plain1);
    let (r, n) = reused.unwrap();
    assert_eq!(r, 0, "first run: nothing to reuse");
    assert!(cache.is_file());
    let (out, reused, _) = run(p1, true);
    assert_eq!(out, plain1, "same prompt from the cache");
    assert_eq!(
        reused,
        Some((n, n)),
        "the whole prompt and its logits reused"
    );
    let (plain2, _, _) = run(p2, false);
    let (out, reused, _) = run(p2, true);
    assert_eq!(out, plain2, "longer prompt from the cache");
    let (r2, n2) = reused.unwrap();
    assert!(
        r2 > n / 2 && r2 < n2,
        "reused {r2} of {n2} (first prompt {n})"
    );
    // Damage the file: ignored with a note, the text unchanged.
    let mut b = std::fs::read(&cache).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 1;
    std::fs::write(&cache, &b).unwrap();
    let (out, reused, err) = run(p2, true);
    assert_eq!(out, plain2);
    assert_eq!(reused.unwrap().0, 0);
    assert!(err.contains("checksum"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `ferrolm bench -d` (llama-bench's depth): each test is measured again after that many tokens
/// are in the cache, named as llama-bench names it, with the cache type and flash setting in the
/// JSON.
#[test]
fn bench_measures_at_depth() {
    let Some(m) = common::model("SmolLM2-135M-Instruct.Q4_1.gguf") else {
        return;
    };
    let m = m.to_str().unwrap();
    let o = ferrolm(&[
        "bench",
        "-m",
        m,
        "-p",
        "8",
        "-n",
        "4",
        "-d",
        "0,40",
        "-t",
        "1",
        "-r",
        "1",
        "--no-bandwidth",
        "--cache-type",
        "q4_0",
        "-o",
        "json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let tests = v["tests"].as_array().unwrap();
    let got: Vec<(u64, u64, u64)> = tests
        .iter()
        .map(|t| {
            assert_eq!(t["type_k"], "q4_0");
            assert!(t["avg_ts"].as_f64().unwrap() > 0.0);
            (
                t["n_prompt"].as_u64().unwrap(),
                t["n_gen"].as_u64().unwrap(),
                t["n_depth"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, [(8, 0, 0), (0, 4, 0), (8, 0, 40), (0, 4, 40)]);
    let o = ferrolm(&[
        "bench",
        "-m",
        m,
        "-p",
        "0",
        "-n",
        "2",
        "-d",
        "16",
        "-t",
        "1",
        "-r",
        "1",
        "--no-bandwidth",
    ]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("| tg2 @ d16 |"));
    // Under a grammar: its share of the steps and the cost of a full mask are reported.
    let choice = common::root().join("grammars/choice.gbnf");
    let o = ferrolm(&[
        "bench",
        "-m",
        m,
        "-p",
        "0",
        "-n",
        "4",
        "-t",
        "1",
        "-r",
        "1",
        "--no-bandwidth",
        "-o",
        "json",
        "--grammar-file",
        choice.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let g = &v["summary"]["grammar"][0];
    assert_eq!(g["n_vocab"], 49152, "{v}");
    assert!(g["full_mask_us"].as_f64().unwrap() > 0.0 && g["n_gen"].as_u64().unwrap() >= 1);
}

/// `--grammar` / `--grammar-file`: the output follows the grammar at any temperature and ends
/// where it can end; a bad grammar is a one-line error with its line and column.
#[test]
fn run_follows_a_grammar() {
    let Some(m) = common::model("SmolLM2-135M-Instruct.Q4_1.gguf") else {
        return;
    };
    let m = m.to_str().unwrap();
    for seed in ["1", "2", "3"] {
        let o = ferrolm(&[
            "run",
            "-m",
            m,
            "-p",
            "Is the sky blue? Answer:",
            "--temp",
            "1.5",
            "-s",
            seed,
            "-n",
            "20",
            "--grammar",
            r#"root ::= " " ("yes" | "no" | "maybe") "." "#,
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let out = String::from_utf8_lossy(&o.stdout);
        let answer = out.trim_end_matches('\n');
        assert!(
            [" yes.", " no.", " maybe."].contains(&answer),
            "seed {seed}: {out:?}"
        );
    }
    // A list from the shipped grammar: every line a "- " item.
    let list = common::root().join("grammars/list.gbnf");
    let o = ferrolm(&[
        "run",
        "-m",
        m,
        "-p",
        "Three fruits:\n",
        "--temp",
        "0.8",
        "-s",
        "4",
        "-n",
        "30",
        "--grammar-file",
        list.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    for line in out.lines().filter(|l| !l.is_empty()) {
        assert!(line.starts_with("- "), "{out:?}");
    }
    assert_one_line_error(
        &ferrolm(&[
            "run",
            "-m",
            m,
            "-p",
            "hi",
            "--grammar",
            "root ::= \"a\"\nx ::= [a-",
        ]),
        "line 2, column 7",
    );
    assert_one_line_error(
        &ferrolm(&[
            "run",
            "-m",
            m,
            "-p",
            "hi",
            "--grammar-file",
            "/nonexistent.gbnf",
        ]),
        "/nonexistent.gbnf",
    );
}

/// `--json-schema` / `-j`: at temperature 0.8 every output parses as JSON and fits the schema;
/// an unsupported keyword is a one-line error naming it.
#[test]
fn run_follows_a_json_schema() {
    let Some(m) = common::model("SmolLM2-135M-Instruct.Q4_1.gguf") else {
        return;
    };
    let m = m.to_str().unwrap();
    let schema = r#"{"type": "object", "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 12},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "pets": {"type": "array", "items": {"enum": ["cat", "dog"]}, "maxItems": 2}},
        "required": ["name", "age"]}"#;
    for seed in ["1", "2", "3", "4"] {
        let o = ferrolm(&[
            "run",
            "-m",
            m,
            "-p",
            "A person, as JSON:",
            "--temp",
            "0.8",
            "-s",
            seed,
            "-n",
            "120",
            "-j",
            schema,
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let out = String::from_utf8_lossy(&o.stdout);
        let v: serde_json::Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("seed {seed}: not JSON ({e}): {out:?}"));
        let name = v["name"].as_str().unwrap_or_else(|| panic!("{out}"));
        assert!((1..=12).contains(&name.chars().count()), "{out}");
        let age = v["age"].as_i64().unwrap_or_else(|| panic!("{out}"));
        assert!((0..=120).contains(&age), "{out}");
        if let Some(p) = v.get("pets") {
            let p = p.as_array().unwrap();
            assert!(
                p.len() <= 2 && p.iter().all(|x| x == "cat" || x == "dog"),
                "{out}"
            );
        }
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert!(
            keys.iter()
                .all(|k| ["name", "age", "pets"].contains(&k.as_str())),
            "{out}"
        );
    }
    assert_one_line_error(
        &ferrolm(&[
            "run",
            "-m",
            m,
            "-p",
            "hi",
            "-j",
            r#"{"type": "string", "contentEncoding": "x"}"#,
        ]),
        "keyword 'contentEncoding' is not supported",
    );
    assert_one_line_error(
        &ferrolm(&["run", "-m", m, "-p", "hi", "-j", "{"]),
        "not JSON",
    );
}
