//! `ferrolm::chat` templates (both models' own, ChatML, Hugging Face Jinja idioms). The `ferrolm
//! chat` command end to end is tested in `cli/tests/chat.rs`.

use ferrolm::chat::{
    reusable_prefix, strftime_utc, ChatError, ChatTemplate, Message, CHATML_TEMPLATE,
};
use ferrolm::gguf::{Gguf, GgufWriter, OwnedValue};

mod common;

const SMOL: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const QWEN: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";
const QUESTION: &str = "What is the capital of France?";
/// llama.cpp's built-in ChatML for one user message with the generation prompt.
const LLAMACPP_CHATML: &str =
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n";

fn template_of(file: &str) -> Option<ChatTemplate> {
    let path = common::model(file)?;
    let g = Gguf::open(&path).unwrap();
    Some(ChatTemplate::from_gguf(&g).unwrap())
}

#[test]
fn chatml_fallback_renders_as_llamacpp() {
    let t = ChatTemplate::chatml();
    assert!(t.is_fallback());
    assert_eq!(
        t.render(&[Message::user(QUESTION)], true).unwrap(),
        LLAMACPP_CHATML
    );
    assert_eq!(
        t.render(&[Message::system("Be brief."), Message::user("Hi"), Message::assistant("Hello!"), Message::user("Bye")], false).unwrap(),
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n"
    );
}

#[test]
fn file_without_template_gets_chatml() {
    let mut w = GgufWriter::new();
    w.set("general.architecture", OwnedValue::Str("llama".into()));
    w.set(
        "tokenizer.ggml.tokens",
        OwnedValue::str_array(["<unk>", "<s>", "</s>"]),
    );
    w.set("tokenizer.ggml.bos_token_id", OwnedValue::U32(1));
    w.set("tokenizer.ggml.eos_token_id", OwnedValue::U32(2));
    let bytes = w.write_all(Vec::new(), &[]).unwrap();
    let g = Gguf::from_bytes(&bytes).unwrap();
    let t = ChatTemplate::from_gguf(&g).unwrap();
    assert!(t.is_fallback());
    assert_eq!((t.bos_token(), t.eos_token()), ("<s>", "</s>"));
    assert_eq!(
        t.render(&[Message::user(QUESTION)], true).unwrap(),
        LLAMACPP_CHATML
    );
}

#[test]
fn template_of_wrong_type_is_an_error() {
    let mut w = GgufWriter::new();
    w.set("general.architecture", OwnedValue::Str("llama".into()));
    w.set("tokenizer.chat_template", OwnedValue::U32(7));
    let bytes = w.write_all(Vec::new(), &[]).unwrap();
    let g = Gguf::from_bytes(&bytes).unwrap();
    let e = ChatTemplate::from_gguf(&g).unwrap_err();
    assert!(matches!(e, ChatError::Metadata(_)), "{e:?}");
    assert!(e.to_string().contains("tokenizer.chat_template"), "{e}");
}

#[test]
fn smollm2_template() {
    let Some(t) = template_of(SMOL) else { return };
    assert!(!t.is_fallback());
    assert_eq!(
        (t.bos_token(), t.eos_token()),
        ("<|im_start|>", "<|im_end|>")
    );
    // With a system message: exactly llama.cpp's ChatML.
    let sys = Message::system("You are a helpful assistant.");
    assert_eq!(
        t.render(&[sys.clone(), Message::user(QUESTION)], true)
            .unwrap(),
        format!("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{LLAMACPP_CHATML}")
    );
    // Without one, the template adds its default system message.
    assert_eq!(
        t.render(&[Message::user(QUESTION)], true).unwrap(),
        format!("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n{LLAMACPP_CHATML}")
    );
    // Two turns, and no generation prompt.
    let conv = [
        sys,
        Message::user("Hi"),
        Message::assistant("Hello!"),
        Message::user("Bye"),
    ];
    assert_eq!(
        t.render(&conv, false).unwrap(),
        ChatTemplate::chatml().render(&conv, false).unwrap(),
        "SmolLM2's template is ChatML once a system message is given"
    );
}

#[test]
fn qwen_template() {
    let Some(t) = template_of(QWEN) else { return };
    assert!(!t.is_fallback());
    assert_eq!(t.eos_token(), "<|im_end|>");
    // The default system message of Qwen2.5's template, then llama.cpp's ChatML.
    assert_eq!(
        t.render(&[Message::user(QUESTION)], true).unwrap(),
        format!("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n{LLAMACPP_CHATML}")
    );
    let conv = [
        Message::system("Answer in French."),
        Message::user("Hi"),
        Message::assistant("Bonjour !"),
        Message::user(QUESTION),
    ];
    assert_eq!(
        t.render(&conv, true).unwrap(),
        "<|im_start|>system\nAnswer in French.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nBonjour !<|im_end|>\n\
         <|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    );
    assert_eq!(
        t.render(&conv, true).unwrap(),
        ChatTemplate::chatml().render(&conv, true).unwrap()
    );
}

/// Jinja as Hugging Face templates write it: Python string methods, trim/lstrip_blocks,
/// namespace(), loop controls, bos_token, raise_exception, strftime_now, tojson.
#[test]
fn hugging_face_idioms() {
    let src = r#"{{ bos_token }}
{%- set ns = namespace(sys='') %}
{%- for m in messages %}
    {%- if m.role == 'system' %}
        {%- set ns.sys = m['content'].strip() %}
        {%- continue %}
    {%- endif %}
    {%- if m.content.startswith('STOP') %}{% break %}{% endif %}
[{{ m.role.upper() }}|{{ ns.sys }}] {{ m.content | trim }}{{ eos_token }}
{%- endfor %}
{% if add_generation_prompt %}
[ASSISTANT]
{% endif %}"#;
    let t = ChatTemplate::new(src, "<s>", "</s>").unwrap();
    let msgs = [
        Message::system("  terse  "),
        Message::user(" hello "),
        Message::assistant("hi"),
        Message::user("STOP here"),
        Message::user("x"),
    ];
    assert_eq!(
        t.render(&msgs, true).unwrap(),
        "<s>[USER|terse] hello</s>[ASSISTANT|terse] hi</s>[ASSISTANT]\n"
    );

    // raise_exception is its own error, with the template's message.
    let t = ChatTemplate::new(
        "{% if messages[0].role != 'user' %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}ok",
        "",
        "",
    )
    .unwrap();
    assert_eq!(t.render(&[Message::user("a")], false).unwrap(), "ok");
    match t.render(&[Message::assistant("a")], false) {
        Err(ChatError::Raised(m)) => assert_eq!(
            m,
            "Conversation roles must alternate user/assistant/user/assistant/..."
        ),
        other => panic!("expected Raised, got {other:?}"),
    }

    // strftime_now formats today's date (UTC).
    let t = ChatTemplate::new("{{ strftime_now('%Y-%m-%d') }}", "", "").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let got = t.render(&[], false).unwrap();
    let (before, after) = (
        strftime_utc("%Y-%m-%d", now - 5),
        strftime_utc("%Y-%m-%d", now + 5),
    );
    assert!(got == before || got == after, "{got} vs {before}");

    // tojson as Python's json.dumps: ", " and ": ", insertion order, no HTML escaping.
    let t = ChatTemplate::new(
        "{{ {'name': 'f<x>', 'b': [1, 2.5, true, none], 'a': 'é'} | tojson }}|{{ {'b': 1, 'a': {}} | tojson(sort_keys=true) }}|{{ ['é'] | tojson(ensure_ascii=true) }}|{{ {'a': [1, {'b': []}]} | tojson(indent=2) }}",
        "",
        "",
    )
    .unwrap();
    assert_eq!(
        t.render(&[], false).unwrap(),
        "{\"name\": \"f<x>\", \"b\": [1, 2.5, true, null], \"a\": \"é\"}|{\"a\": {}, \"b\": 1}|[\"\\u00e9\"]|{\n  \"a\": [\n    1,\n    {\n      \"b\": []\n    }\n  ]\n}"
    );

    // Dict methods from pycompat.
    let t = ChatTemplate::new("{% for k, v in {'x': 1, 'y': 2}.items() %}{{ k }}={{ v }};{% endfor %}{{ {'x': 1}.get('z', 'none') }}", "", "").unwrap();
    assert_eq!(t.render(&[], false).unwrap(), "x=1;y=2;none");
}

#[test]
fn bad_templates_are_errors() {
    let e = ChatTemplate::new("{% for m in messages %}{{ m.content }}", "", "").unwrap_err();
    assert!(matches!(e, ChatError::Syntax(_)), "{e:?}");
    let t = ChatTemplate::new("{{ messages[0].content + 1 }}", "", "").unwrap();
    let e = t.render(&[Message::user("a")], false).unwrap_err();
    assert!(matches!(e, ChatError::Render(_)), "{e:?}");
    // A runaway template stops at the instruction budget instead of running for hours.
    let t = ChatTemplate::new("{% for a in range(10000) %}{% for b in range(10000) %}{% for c in range(10000) %}{% endfor %}{% endfor %}{% endfor %}", "", "")
        .unwrap();
    let e = t.render(&[], false).unwrap_err();
    assert!(matches!(e, ChatError::Render(_)), "{e:?}");
    // The fallback source compiles on its own.
    ChatTemplate::new(CHATML_TEMPLATE, "", "").unwrap();
}

#[test]
fn strftime_matches_c() {
    // 2024-07-26 13:25:09 UTC, a Friday; 2000-02-29 00:00:00 UTC, a Tuesday.
    assert_eq!(strftime_utc("%d %b %Y", 1_722_000_309), "26 Jul 2024");
    assert_eq!(
        strftime_utc("%A %B %e %H:%M:%S %j %I%p %y %u %w %%", 1_722_000_309),
        "Friday July 26 13:25:09 208 01PM 24 5 5 %"
    );
    assert_eq!(
        strftime_utc("%F %T %a %Q", 951_782_400),
        "2000-02-29 00:00:00 Tue %Q"
    );
    assert_eq!(strftime_utc("%F", -1), "1969-12-31");
    assert_eq!(
        strftime_utc("%c|%D|%R|%C", 1_722_000_309),
        "Fri Jul 26 13:25:09 2024|07/26/24|13:25|20"
    );
}

#[test]
fn reusable_prefix_keeps_the_last_token_to_evaluate() {
    assert_eq!(reusable_prefix(&[], &[1, 2, 3]), 0);
    assert_eq!(reusable_prefix(&[1, 2, 9, 9], &[1, 2, 3]), 2);
    assert_eq!(reusable_prefix(&[1, 2, 3], &[1, 2, 3, 4, 5]), 3);
    // The whole prompt is cached: its last token is evaluated again for fresh logits.
    assert_eq!(reusable_prefix(&[1, 2, 3, 4], &[1, 2, 3]), 2);
    assert_eq!(reusable_prefix(&[1], &[]), 0);
}
