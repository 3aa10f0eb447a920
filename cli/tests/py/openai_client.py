"""The official `openai` Python client against `ferrolm serve` (run by cli/tests/serve.rs).

Usage: openai_client.py BASE_URL MODEL_ID QUESTION PROMPT
Prints one JSON object: the greedy chat answer (whole and streamed), usage counts, the greedy
text completion (whole and streamed), the model list, the status of a request for an
unknown model (an openai.BadRequestError) and of one beyond the context, and structured outputs
(response_format json_schema and json_object; a schema the server refuses).
"""
import json
import sys

import openai

base, model, question, prompt = sys.argv[1:5]
client = openai.OpenAI(base_url=base, api_key="not-needed", max_retries=0, timeout=300)
out = {}

msgs = [{"role": "user", "content": question}]
r = client.chat.completions.create(model=model, messages=msgs, temperature=0, max_tokens=40)
out["chat"] = r.choices[0].message.content
out["chat_finish"] = r.choices[0].finish_reason
out["chat_usage"] = {"prompt": r.usage.prompt_tokens, "completion": r.usage.completion_tokens,
                     "total": r.usage.total_tokens}

parts, usage = [], None
for chunk in client.chat.completions.create(model=model, messages=msgs, temperature=0, max_tokens=40,
                                            stream=True, stream_options={"include_usage": True}):
    if chunk.choices and chunk.choices[0].delta.content:
        parts.append(chunk.choices[0].delta.content)
    if chunk.usage is not None:
        usage = {"prompt": chunk.usage.prompt_tokens, "completion": chunk.usage.completion_tokens,
                 "total": chunk.usage.total_tokens}
out["chat_stream"] = "".join(parts)
out["chat_stream_usage"] = usage

r = client.completions.create(model=model, prompt=prompt, temperature=0, max_tokens=24)
out["completion"] = r.choices[0].text
out["completion_stream"] = "".join(
    c.choices[0].text for c in client.completions.create(model=model, prompt=prompt, temperature=0,
                                                         max_tokens=24, stream=True) if c.choices)
out["models"] = [m.id for m in client.models.list().data]

try:
    client.chat.completions.create(model="no-such-model", messages=msgs, max_tokens=4)
    out["unknown_model"] = "accepted"
except openai.BadRequestError as e:
    out["unknown_model"] = e.status_code
try:
    client.chat.completions.create(model=model, messages=msgs, max_tokens=1_000_000)
    out["too_long"] = "accepted"
except openai.BadRequestError as e:
    out["too_long"] = e.status_code

# Structured output: response_format json_schema at temperature 0.8 (3 requests), json_object, and
# a schema the server cannot use (400).
schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20},
                                            "population": {"type": "integer", "minimum": 0}},
          "required": ["city", "population"], "additionalProperties": False}
out["structured"] = []
for seed in (1, 2, 3):
    r = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Name a big city and its population."}],
        temperature=0.8, seed=seed, max_tokens=80,
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema}})
    out["structured"].append(r.choices[0].message.content)
r = client.chat.completions.create(model=model, messages=msgs, temperature=0.8, seed=5, max_tokens=80,
                                   response_format={"type": "json_object"})
out["json_object"] = r.choices[0].message.content
try:
    client.chat.completions.create(
        model=model, messages=msgs, max_tokens=4,
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"not": {}}}})
    out["bad_schema"] = "accepted"
except openai.BadRequestError as e:
    out["bad_schema"] = e.status_code

print(json.dumps(out))
