#!/usr/bin/env python3
"""Generate pretokenize_cases.jsonl: random strings split the way llama.cpp's
unicode_regex_split does (each regex splits every segment into matches and gaps), computed with
the `regex` module (PCRE-like: leftmost match, ordered alternation, backtracking, lookahead).

Characters are drawn from a pool restricted to code points whose class (letter, number,
punctuation, whitespace, other) agrees between Unicode 15.1 (llama.cpp's tables, via
unicodedata2) and the `regex` module's own Unicode data.

    python3 -m pip install regex unicodedata2==15.1.0
    python3 gen_pretokenize_cases.py > pretokenize_cases.jsonl
"""
import json
import random

import regex
import unicodedata2 as ud

GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
LLAMA3 = (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+"
          r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2 = LLAMA3.replace(r"\p{N}{1,3}", r"\p{N}")
PRE = {
    "gpt-2": [GPT2],
    "smollm": [r"\p{N}", GPT2],
    "llama-bpe": [LLAMA3],
    "qwen2": [QWEN2],
    "default": [r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"],
    "falcon": [r"[\p{P}\$\+<=>\^~\|`]+", GPT2, r"[0-9][0-9][0-9]"],
    "bloom": [r" ?[^(\s|.,!?…。，、।۔،)]+"],
    "viking": [r" ?[^(\s|.,!?…。，、।۔،)]+", r"\p{N}"],
}
WS = set(range(0x09, 0x0E)) | set(range(0x2000, 0x200B)) | {
    0x20, 0x85, 0xA0, 0x1680, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000}


def cls_151(c):
    cp = ord(c)
    if cp in WS:
        return "ws"
    k = ud.category(c)[0]
    return {"L": "L", "N": "N", "P": "P"}.get(k, "O")


def cls_re(c):
    if regex.match(r"\s", c):
        return "ws"
    for k in "LNP":
        if regex.match(r"\p{%s}" % k, c):
            return k
    return "O"


def split(text, patterns):
    segs = [text]
    for pat in patterns:
        out = []
        for s in segs:
            pos = 0
            for m in regex.finditer(pat, s):
                if m.start() > pos:
                    out.append(s[pos:m.start()])
                if m.end() > m.start():
                    out.append(m.group())
                pos = m.end()
            if pos < len(s):
                out.append(s[pos:])
        segs = out
    return segs


def main():
    rng = random.Random(20250229)
    pool = list("abcXYZ sStTmMdDlLrReEvV'''  \t\n\r\n0123456789.,!?;:-_()[]{}<>=+$^~|`@#%&*/\\\"")
    pool += list("éßÆЖжΩ中文日本語한국어اعربيहिन्दीไทย²³½٣٤Ⅻ①…。，、।۔،")
    pool += ["\u0301", "\u0308", "\u200b", "\u200d", "\ufeff", "\u00a0", "\u3000", "\u2009", "\u0085",
             "\u000b", "\u000c", "\u001f", "\u00ad", "\ufffd", "\ue000", "😀", "👍🏽", "🇫🇷", "❤️",
             "€", "©", "“", "”", "¿", "¡", "。", "、", "—", "…", "𝐀", "𝟙"]
    pool = [c for c in pool if all(cls_151(x) == cls_re(x) for x in c)]
    words = ["hello", " world", "don't", "I'LL", "they're", "it's", "  ", "\n\n", " \n ", "123456",
             "3.14", "x=1", "<b>", "é", "ﬁ", "naïve", "e\u0301", "  x", "\t\tfoo", "\r\n"]
    cases = []
    for i in range(400):
        n = rng.randint(0, 24)
        parts = [rng.choice(words) if rng.random() < 0.3 else rng.choice(pool) for _ in range(n)]
        cases.append("".join(parts))
    for text in cases:
        for pre, pats in PRE.items():
            print(json.dumps({"pre": pre, "text": text, "words": split(text, pats)}, ensure_ascii=False))


if __name__ == "__main__":
    main()
