#!/usr/bin/env python3
"""Independent safetensors code for lowbit, using only the standard library (json, struct, zlib).

Not lowbit's reader: a second implementation of the spec, to check interoperability and to write
the fuzz seed corpus.
  python3 fuzz/safetensors_tool.py check FILE...   parse FILE with json+struct, verify layout and
                                                   lowbit's checksums, print a summary; exit 1 if bad
  python3 fuzz/safetensors_tool.py seeds DIR       write valid and near-valid seed files to DIR
"""
import json
import struct
import sys
import zlib

SIZES = {"F32": 4, "I32": 4, "I8": 1, "U8": 1}
FMT = {"F32": "f", "I32": "i", "I8": "b", "U8": "B"}


def header_crc(meta_text, table):
    """header_crc32 as include/lowbit/io.h specifies: netstring pieces, tensors in data order."""
    def piece(s):
        b = s.encode()
        return str(len(b)).encode() + b":" + b + b","
    blob = piece(meta_text)
    for name, dtype, shape in table:
        blob += piece(name) + piece(dtype) + piece(",".join(str(d) for d in shape))
    return "%08x" % (zlib.crc32(blob) & 0xFFFFFFFF)


def check(path):
    blob = open(path, "rb").read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = blob[8:8 + n]
    data = blob[8 + n:]
    assert header[:1] == b"{", "header must start with {"
    assert header.rstrip(b" ").endswith(b"}"), "padding must be spaces"
    h = json.loads(header)
    md = h.pop("__metadata__")
    assert all(isinstance(v, str) for v in md.values()), "metadata values must be strings"
    assert md["format_version"] == "1"
    crc = "%08x" % (zlib.crc32(data) & 0xFFFFFFFF)
    assert md["crc32"] == crc, "crc32 %s != %s" % (md["crc32"], crc)
    meta = json.loads(md["lowbit"])
    table = sorted(h.items(), key=lambda kv: tuple(kv[1]["data_offsets"]))
    hcrc = header_crc(md["lowbit"], [(k, t["dtype"], t["shape"]) for k, t in table])
    assert md["header_crc32"] == hcrc, "header_crc32 %s != %s" % (md["header_crc32"], hcrc)
    cursor = 0
    print("%s: header %d bytes (data at offset %d, %s), data %d bytes, crc32 %s and header_crc32 %s ok, "
          "lowbit meta keys %s"
          % (path, n, 8 + n, "8-aligned" if (8 + n) % 8 == 0 else "UNALIGNED", len(data), crc, hcrc,
             sorted(meta) if isinstance(meta, dict) else type(meta).__name__))
    for name, t in table:
        b, e = t["data_offsets"]
        numel = 1
        for d in t["shape"]:
            assert isinstance(d, int) and d >= 0
            numel *= d
        assert b == cursor, "%s: hole or overlap at %d" % (name, b)
        assert e - b == numel * SIZES[t["dtype"]], "%s: size mismatch" % name
        vals = struct.unpack("<%d%s" % (numel, FMT[t["dtype"]]), data[b:e])
        print("  %-24s %-4s shape %-14s [%d, %d) first %s" % (name, t["dtype"], t["shape"], b, e, list(vals[:4])))
        cursor = e
    assert cursor == len(data), "trailing bytes"


def build(tensors, meta, crc=None, pad=True, extra_data=b""):
    """tensors: list of (name, dtype, shape, values) or (name, header_dict, raw_bytes)."""
    header, data = {}, b""
    for t in tensors:
        if isinstance(t[1], dict):
            name, info, raw = t
            header[name] = info
            data += raw
            continue
        name, dtype, shape, values = t
        raw = struct.pack("<%d%s" % (len(values), FMT[dtype]), *values)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    data += extra_data
    meta_text = json.dumps(meta)
    table = sorted(header.items(), key=lambda kv: tuple(kv[1]["data_offsets"]))
    md = {"format_version": "1", "lowbit": meta_text,
          "crc32": crc if crc is not None else "%08x" % (zlib.crc32(data) & 0xFFFFFFFF),
          "header_crc32": header_crc(meta_text, [(k, t["dtype"], t["shape"]) for k, t in table])}
    text = json.dumps(dict([("__metadata__", md)] + list(header.items())), separators=(",", ":")).encode()
    if pad:
        text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + data


def seeds(outdir):
    import os
    os.makedirs(outdir, exist_ok=True)
    meta = {"arch": "lenet5", "layers": [{"name": "conv1", "scale": 0.0123, "zero_point": -3, "bits": 8}]}
    files = {
        "valid_empty": build([], None),
        "valid_scalar": build([("s", "F32", [], [42.0])], {}),
        "valid_all_dtypes": build([("w", "F32", [2, 3], [1.5, -0.0, 3, 4, 5, 6]), ("q", "I8", [4], [-128, -1, 0, 127]),
                                   ("u", "U8", [1, 2], [0, 255]), ("b", "I32", [2], [-2**31, 2**31 - 1]),
                                   ("e0", "I8", [0], []), ("e1", "F32", [2, 0, 3], [])], meta),
        "valid_unpadded": build([("x", "U8", [3], [1, 2, 3])], {"k": [1, 2, {"n": None}], "z": 1}, pad=False),
        "bad_crc": build([("x", "I32", [2], [1, 2])], {}, crc="00000000"),
        "bad_trailing": build([("x", "I8", [1], [1])], {}, extra_data=b"zz"),
        "bad_hole": build([("a", {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}, b"\x01\x02"),
                           ("b", {"dtype": "U8", "shape": [1], "data_offsets": [2, 3]}, b"\x03")], {}),
        "bad_overlap": build([("a", {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}, b"\x01\x02"),
                              ("b", {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}, b"")], {}),
        "bad_dtype": build([("a", {"dtype": "F16", "shape": [1], "data_offsets": [0, 2]}, b"\x00\x3c")], {}),
        "bad_shape": build([("a", {"dtype": "I8", "shape": [-1], "data_offsets": [0, 1]}, b"\x00")], {}),
    }
    full = files["valid_all_dtypes"]
    files["bad_truncated"] = full[:len(full) - 3]
    files["bad_header_len"] = struct.pack("<Q", 1 << 40) + full[8:]
    for name, blob in files.items():
        with open(os.path.join(outdir, name + ".safetensors"), "wb") as f:
            f.write(blob)
    print("wrote %d seeds to %s" % (len(files), outdir))


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "check":
        bad = 0
        for p in sys.argv[2:]:
            try:
                check(p)
            except (AssertionError, KeyError, ValueError, struct.error) as e:
                print("%s: REJECTED: %r" % (p, e))
                bad = 1
        sys.exit(bad)
    if len(sys.argv) == 3 and sys.argv[1] == "seeds":
        seeds(sys.argv[2])
        sys.exit(0)
    print(__doc__)
    sys.exit(2)
