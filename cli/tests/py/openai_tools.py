"""A tool call round trip with the official `openai` client against `ferrolm serve` (run by
cli/tests/serve.rs with Qwen2.5, whose chat template describes tools).

Usage: openai_tools.py BASE_URL MODEL_ID
Prints one JSON object: the forced call (tool_choice required), the call streamed, the answer
after the tool's result, and the call forced by name.
"""
import json
import sys

import openai

base, model = sys.argv[1:3]
client = openai.OpenAI(base_url=base, api_key="not-needed", max_retries=0, timeout=300)
tools = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40}},
                       "required": ["city"]},
    },
}, {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Adds two integers.",
        "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                       "required": ["a", "b"]},
    },
}]
out = {}
msgs = [{"role": "user", "content": "What is the weather like in Paris today?"}]
r = client.chat.completions.create(model=model, messages=msgs, tools=tools, tool_choice="required",
                                   temperature=0, max_tokens=60)
m = r.choices[0].message
out["finish"] = r.choices[0].finish_reason
out["calls"] = [{"id": c.id, "name": c.function.name, "arguments": c.function.arguments} for c in m.tool_calls or []]

calls, finish = {}, None
for chunk in client.chat.completions.create(model=model, messages=msgs, tools=tools, tool_choice="required",
                                            temperature=0, max_tokens=60, stream=True):
    if not chunk.choices:
        continue
    d = chunk.choices[0].delta
    for c in d.tool_calls or []:
        calls.setdefault(c.index, {"name": "", "arguments": ""})
        if c.function.name:
            calls[c.index]["name"] += c.function.name
        if c.function.arguments:
            calls[c.index]["arguments"] += c.function.arguments
    finish = chunk.choices[0].finish_reason or finish
out["stream_calls"] = [calls[i] for i in sorted(calls)]
out["stream_finish"] = finish

# The round trip: the call, the tool's result, then the model's answer.
call = m.tool_calls[0]
msgs2 = msgs + [
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": call.id, "type": "function", "function": {"name": call.function.name,
                                                          "arguments": call.function.arguments}}]},
    {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temperature_c": 21, "sky": "sunny"})},
]
r = client.chat.completions.create(model=model, messages=msgs2, tools=tools, temperature=0, max_tokens=40)
out["answer"] = r.choices[0].message.content
out["answer_finish"] = r.choices[0].finish_reason

r = client.chat.completions.create(
    model=model, messages=[{"role": "user", "content": "What is 2 plus 3?"}], tools=tools,
    tool_choice={"type": "function", "function": {"name": "add"}}, temperature=0, max_tokens=40)
c = r.choices[0].message.tool_calls[0]
out["named"] = {"name": c.function.name, "arguments": c.function.arguments}
print(json.dumps(out))
