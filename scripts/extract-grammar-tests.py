#!/usr/bin/env python3
"""Extracts llama.cpp's grammar test cases into JSON test data for ferrolm's own tests.

Usage: scripts/extract-grammar-tests.py LLAMA_CPP_DIR OUT_DIR

Reads LLAMA_CPP_DIR/tests/test-grammar-integration.cpp and tests/test-grammar-parser.cpp (the
llama.cpp inside PyPI's llama-cpp-python 0.3.36 sdist, vendor/llama.cpp) and writes:
- OUT_DIR/llamacpp-integration.json: [{"desc", "kind": "grammar"|"schema", "text", "root",
  "pass": [...], "fail": [...]}] from every test_grammar / test_schema call, and
  {"kind": "grammar-fails", "text"} for the grammars that must not build; strings are lists of
  pieces, each {"text": ...} or {"token": id} (llama.cpp's token(id) markers);
- OUT_DIR/llamacpp-parser.json: [{"text", "symbols": [[name, id], ...], "rules": [[type, value],
  ...]}] from every verify_parsing call and {"text", "fails": true} from every verify_failure.

Only the test inputs and expectations are taken (data, not code). Not run by the test suite: the
JSON files are committed; rerun this to refresh them from another llama.cpp.
"""
import json
import re
import sys


class Src:
    def __init__(self, text):
        self.s = text
        self.i = 0

    def ws(self):
        while self.i < len(self.s):
            if self.s.startswith("//", self.i):
                self.i = self.s.index("\n", self.i)
            elif self.s.startswith("/*", self.i):
                self.i = self.s.index("*/", self.i) + 2
            elif self.s[self.i].isspace():
                self.i += 1
            else:
                break

    def peek(self, t):
        self.ws()
        return self.s.startswith(t, self.i)

    def eat(self, t):
        self.ws()
        if not self.s.startswith(t, self.i):
            raise ValueError(f"expected {t!r} at {self.s[self.i:self.i + 60]!r}")
        self.i += len(t)

    def string_lit(self):
        """One C++ string literal (raw or escaped) as bytes."""
        self.ws()
        if self.s.startswith('R"', self.i):
            j = self.s.index("(", self.i)
            delim = self.s[self.i + 2:j]
            end = self.s.index(")" + delim + '"', j)
            out = self.s[j + 1:end].encode()
            self.i = end + len(delim) + 2
            return out
        self.eat('"')
        out = bytearray()
        while self.s[self.i] != '"':
            c = self.s[self.i]
            if c == "\\":
                n = self.s[self.i + 1]
                simple = {"n": b"\n", "t": b"\t", "r": b"\r", "\\": b"\\", '"': b'"', "'": b"'", "0": b"\0"}
                if n in simple:
                    out += simple[n]
                    self.i += 2
                elif n == "x":
                    m = re.match(r"[0-9a-fA-F]+", self.s[self.i + 2:])
                    out.append(int(m.group(0), 16) & 0xFF)
                    self.i += 2 + len(m.group(0))
                elif n in "uU":
                    k = 4 if n == "u" else 8
                    out += chr(int(self.s[self.i + 2:self.i + 2 + k], 16)).encode()
                    self.i += 2 + k
                else:
                    raise ValueError(f"escape \\{n}")
            else:
                out += c.encode()
                self.i += 1
        self.i += 1
        return bytes(out)

    def char_lit(self):
        self.eat("'")
        c = self.s[self.i]
        if c == "\\":
            n = self.s[self.i + 1]
            v = {"n": 10, "t": 9, "r": 13, "\\": 92, "'": 39, '"': 34, "0": 0}[n]
            self.i += 2
        else:
            v = ord(c)
            self.i += 1
        self.eat("'")
        return v

    def term(self):
        """A string-valued term: a literal (adjacent ones concatenated), token(N) or std::string
        of those. Returns a list of pieces."""
        self.ws()
        if self.peek("token("):
            self.eat("token(")
            m = re.match(r"\s*(\d+)\s*\)", self.s[self.i:])
            self.i += m.end()
            return [{"token": int(m.group(1))}]
        if self.peek("std::string("):
            self.eat("std::string(")
            v = self.expr()
            self.eat(")")
            return v
        b = b""
        while self.peek('"') or self.peek('R"'):
            b += self.string_lit()
        return [{"text": b.decode("utf-8", errors="surrogateescape")}]

    def expr(self):
        pieces = self.term()
        while self.peek("+"):
            self.eat("+")
            pieces += self.term()
        # Merge adjacent text pieces.
        out = []
        for p in pieces:
            if out and "text" in p and "text" in out[-1]:
                out[-1] = {"text": out[-1]["text"] + p["text"]}
            else:
                out.append(p)
        return out

    def str_list(self):
        self.eat("{")
        items = []
        while not self.peek("}"):
            items.append(self.expr())
            if self.peek(","):
                self.eat(",")
        self.eat("}")
        return items

    def text(self):
        v = self.expr()
        assert len(v) == 1 and "text" in v[0], v
        return v[0]["text"]


def calls(src, name):
    """Start offsets just after `name(` for each call (not definitions)."""
    for m in re.finditer(r"(?<![\w:])" + re.escape(name) + r"\(", src):
        line_start = src.rfind("\n", 0, m.start()) + 1
        # Statements only (not definitions, not mentions inside strings).
        if not re.fullmatch(r"\s*(assert\(\s*)?", src[line_start:m.start()]):
            continue
        yield m.end()


def integration(path):
    src = open(path, encoding="utf-8").read()
    out = []
    for kind, fn in (("grammar", "test_grammar"), ("schema", "test_schema")):
        for at in calls(src, fn):
            p = Src(src)
            p.i = at
            desc = p.text()
            p.eat(",")
            text = p.text()
            p.eat(",")
            passing = p.str_list()
            p.eat(",")
            failing = p.str_list()
            out.append({"desc": desc, "kind": kind, "text": text, "root": "root",
                        "pass": passing, "fail": failing})
    def variable(name, before):
        """The string a `name = <literal>;` definition before offset `before` holds."""
        ms = list(re.finditer(r"\b" + re.escape(name) + r"\s*=\s*", src[:before]))
        p = Src(src)
        p.i = ms[-1].end()
        return p.text()

    for at in calls(src, "test_build_grammar_fails"):
        p = Src(src)
        p.i = at
        p.ws()
        m = re.match(r"\w+", src[p.i:])
        text = variable(m.group(0), at) if m else p.text()
        out.append({"kind": "grammar-fails", "text": text})
    # Custom roots: build_grammar_with_root(VAR, "name"), expected to fail for "nonexistent" and
    # for "root" when the grammar has no rule named root.
    for m in re.finditer(r'build_grammar_with_root\(\s*(\w+)\s*,\s*"(\w+)"\s*\)', src):
        if "return" in src[src.rfind("\n", 0, m.start()):m.start()]:
            continue
        text = variable(m.group(1), m.start())
        var = re.search(r"(\w+)\s*=\s*$", src[src.rfind("\n", 0, m.start()):m.start()])
        builds = var is not None and "success" in var.group(1)
        out.append({"kind": "root", "text": text, "root": m.group(2), "builds": builds})
    return out


def parser(path):
    src = open(path, encoding="utf-8").read()
    out = []
    for at in calls(src, "verify_failure"):
        p = Src(src)
        p.i = at
        out.append({"text": p.text(), "fails": True})
    for at in calls(src, "verify_parsing"):
        p = Src(src)
        p.i = at
        text = p.text()
        p.eat(",")
        p.eat("{")
        symbols = []
        while not p.peek("}"):
            p.eat("{")
            name = p.text()
            p.eat(",")
            m = re.match(r"\s*(\d+)", p.s[p.i:])
            p.i += m.end()
            p.eat("}")
            symbols.append([name, int(m.group(1))])
            if p.peek(","):
                p.eat(",")
        p.eat("}")
        p.eat(",")
        p.eat("{")
        rules = []
        while not p.peek("}"):
            p.eat("{")
            m = re.match(r"\s*LLAMA_GRETYPE_(\w+)\s*,", p.s[p.i:])
            p.i += m.end()
            p.ws()
            if p.peek("'"):
                v = p.char_lit()
            else:
                m2 = re.match(r"\s*(\d+)", p.s[p.i:])
                p.i += m2.end()
                v = int(m2.group(1))
            p.eat("}")
            rules.append([m.group(1), v])
            if p.peek(","):
                p.eat(",")
        p.eat("}")
        out.append({"text": text, "symbols": symbols, "rules": rules})
    return out


def main():
    root, out_dir = sys.argv[1], sys.argv[2]
    for name, data in (
        ("llamacpp-integration.json", integration(f"{root}/tests/test-grammar-integration.cpp")),
        ("llamacpp-parser.json", parser(f"{root}/tests/test-grammar-parser.cpp")),
    ):
        with open(f"{out_dir}/{name}", "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False, indent=1)
            f.write("\n")
        print(f"{name}: {len(data)} cases")


if __name__ == "__main__":
    main()
