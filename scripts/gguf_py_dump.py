#!/usr/bin/env python3
"""Dump a GGUF file as JSON, read by gguf-py's GGUFReader (the reference Python reader, gguf==0.19.0).

Used by tests/gguf_py.rs to check that ferrolm's reader and writer agree with gguf-py.

    scripts/gguf_py_dump.py FILE [--hash all|none]

Output (one JSON object on stdout):
  gguf_py_version, alignment,
  metadata: [{key, type, value[, elem_type][, contents]}] in file order, without gguf-py's
            GGUF.version / GGUF.tensor_count / GGUF.kv_count pseudo-fields.
            `value` is decoded from the field's raw parts (nested arrays kept nested);
            `contents` is gguf-py's own ReaderField.contents() for values that are not nested arrays.
  tensors:  [{name, type, shape (ne0 first), n_elements, n_bytes, data_offset[, sha256]}] in file order.
Exit status 2 when gguf is not importable (the caller skips), 1 when the file does not parse.
"""
import hashlib
import json
import sys

try:
    import gguf
    from gguf import GGUFReader, GGUFValueType
except ImportError as e:  # the caller turns this into a skip
    print(f"gguf-py not available: {e}", file=sys.stderr)
    sys.exit(2)


def decode(parts, i, vtype):
    """Decode one value of `vtype` starting at parts[i]; return (value, next index)."""
    if vtype == GGUFValueType.STRING:
        # parts: length, bytes
        return bytes(parts[i + 1]).decode("utf-8"), i + 2
    if vtype == GGUFValueType.ARRAY:
        elem = GGUFValueType(int(parts[i][0]))
        n = int(parts[i + 1][0])
        i += 2
        out = []
        for _ in range(n):
            v, i = decode(parts, i, elem)
            out.append(v)
        return {"elem_type": elem.name, "items": out}, i
    v = parts[i].tolist()[0]
    if vtype == GGUFValueType.BOOL:
        v = bool(v)
    return v, i + 1


def plain(v):
    """Arrays as plain nested lists."""
    if isinstance(v, dict):
        return [plain(x) for x in v["items"]]
    return v


def main():
    args = sys.argv[1:]
    if not args:
        print(__doc__, file=sys.stderr)
        sys.exit(64)
    path = args[0]
    hash_data = not ("--hash" in args and args[args.index("--hash") + 1] == "none")
    try:
        r = GGUFReader(path, "r")
    except Exception as e:  # noqa: BLE001 - any parse failure is reported the same way
        print(f"gguf-py cannot read {path}: {e}", file=sys.stderr)
        sys.exit(1)

    meta = []
    for name, field in r.fields.items():
        if name.startswith("GGUF."):
            continue
        # parts: key length, key bytes, value type, then the value's own parts.
        vtype = GGUFValueType(int(field.parts[2][0]))
        value, end = decode(field.parts, 3, vtype)
        assert end == len(field.parts), f"{name}: decoded {end} of {len(field.parts)} parts"
        entry = {"key": name, "type": vtype.name, "value": plain(value)}
        if vtype == GGUFValueType.ARRAY:
            entry["elem_type"] = value["elem_type"]
            if value["elem_type"] != "ARRAY":
                entry["contents"] = field.contents()
        else:
            entry["contents"] = field.contents()
        meta.append(entry)

    tensors = []
    for t in r.tensors:
        e = {
            "name": t.name,
            "type": t.tensor_type.name,
            "shape": [int(d) for d in t.shape],
            "n_elements": int(t.n_elements),
            "n_bytes": int(t.n_bytes),
            "data_offset": int(t.data_offset),
        }
        if hash_data:
            e["sha256"] = hashlib.sha256(t.data.tobytes()).hexdigest()
        tensors.append(e)

    try:
        from importlib.metadata import version
        gv = version("gguf")
    except Exception:  # noqa: BLE001
        gv = getattr(gguf, "__version__", "unknown")
    json.dump({"gguf_py_version": gv, "alignment": int(r.alignment), "metadata": meta, "tensors": tensors},
              sys.stdout, ensure_ascii=False)
    print()


if __name__ == "__main__":
    main()
