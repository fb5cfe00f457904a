#!/usr/bin/env python3
"""PyTorch CPU baseline for one VGG19 neural-style-transfer iteration.

Network: VGG19 features up to relu5_1 (13 convs, conv3x3 pad 1 + ReLU),
2x2/stride-2 pooling between blocks (avg by default, --pooling max).
Weights random (He init), float32, requires_grad=False.

Loss (x = image being optimised, [1,3,S,S], requires_grad=True):
  0.5 * sum((F_relu4_2(x) - P)^2)
  + 1e3 * sum_l (1/5) * sum((G_l(x) - A_l)^2) / (4 C_l^2 (H_l W_l)^2)
  with G = F F^T (C x C), l in relu1_1, relu2_1, relu3_1, relu4_1, relu5_1.

Measurements (2 warm-ups, then --runs timed runs each):
  forward : torch.no_grad() forward up to relu5_1
  fwd+bwd : forward + loss + torch.autograd.grad(loss, x)
GFLOP/s is computed from the MIN time, counting 2*H*W*Cin*Cout*9 per conv over
conv1_1..conv5_1 (forward) and twice that for fwd+bwd.

peak_rss_mib is ru_maxrss of the whole process (import, setup and every
measurement run in it); use --only fwd / --only iter to get a per-kind peak.

Output lines (grep-able):
  torch <ver> size S threads T pooling P: forward min A s median B s G GFLOP/s
  torch <ver> size S threads T pooling P: fwd+bwd min A s median B s G GFLOP/s
  peak_rss_mib N only <kind> size S
"""
import argparse
import resource
import statistics
import time

import torch
import torch.nn.functional as F

# (name, cin, cout) per block; pooling happens after each block except the last.
BLOCKS = [
    [("conv1_1", 3, 64), ("conv1_2", 64, 64)],
    [("conv2_1", 64, 128), ("conv2_2", 128, 128)],
    [("conv3_1", 128, 256), ("conv3_2", 256, 256), ("conv3_3", 256, 256), ("conv3_4", 256, 256)],
    [("conv4_1", 256, 512), ("conv4_2", 512, 512), ("conv4_3", 512, 512), ("conv4_4", 512, 512)],
    [("conv5_1", 512, 512)],
]
STYLE_LAYERS = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
CONTENT_LAYER = "relu4_2"
NEEDED = set(STYLE_LAYERS) | {CONTENT_LAYER}
STYLE_WEIGHT = 1e3
CONTENT_WEIGHT = 0.5  # the 0.5 in 0.5 * sum((F - P)^2)


def make_weights(gen):
    params = {}
    for block in BLOCKS:
        for name, cin, cout in block:
            w = torch.empty(cout, cin, 3, 3)
            # He (Kaiming) normal init, fan_in, gain sqrt(2)
            std = (2.0 / (cin * 9)) ** 0.5
            w.normal_(0.0, std, generator=gen)
            b = torch.zeros(cout)
            params[name] = (w.requires_grad_(False), b.requires_grad_(False))
    return params


def features(x, params, pooling):
    """Returns dict of the needed activations (relu1_1..relu5_1, relu4_2)."""
    out = {}
    h = x
    for bi, block in enumerate(BLOCKS):
        if bi > 0:
            h = F.avg_pool2d(h, 2, 2) if pooling == "avg" else F.max_pool2d(h, 2, 2)
        for name, _, _ in block:
            w, b = params[name]
            h = F.relu(F.conv2d(h, w, b, stride=1, padding=1))
            rname = "relu" + name[4:]
            if rname in NEEDED:
                out[rname] = h
    return out


def gram(f):
    # f: [1, C, H, W] -> [C, C]
    c = f.shape[1]
    m = f.reshape(c, -1)
    return m @ m.t()


def loss_fn(feats, content_target, style_targets):
    content = CONTENT_WEIGHT * ((feats[CONTENT_LAYER] - content_target) ** 2).sum()
    style = 0.0
    for l in STYLE_LAYERS:
        f = feats[l]
        c, hw = f.shape[1], f.shape[2] * f.shape[3]
        g = gram(f)
        style = style + (1.0 / len(STYLE_LAYERS)) * ((g - style_targets[l]) ** 2).sum() / (
            4.0 * c * c * float(hw) ** 2
        )
    return content + STYLE_WEIGHT * style


def conv_flops(size):
    total = 0
    s = size
    for bi, block in enumerate(BLOCKS):
        if bi > 0:
            s //= 2
        for _, cin, cout in block:
            total += 2 * s * s * cin * cout * 9
    return total


def timeit(fn, warmup, runs):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    print("# times " + " ".join(f"{t:.3f}" for t in ts), flush=True)
    return min(ts), statistics.median(ts)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pooling", choices=["avg", "max"], default="avg")
    ap.add_argument("--only", choices=["fwd", "iter"], default=None,
                    help="run only one measurement kind (so peak_rss_mib belongs to it)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu",
                    help="torch device: cpu (default) or cuda (cuDNN; for bench/gpu_device.sh)")
    ap.add_argument("--lbfgs", type=int, default=0,
                    help="also time a whole run of this many L-BFGS iterations (torch.optim.LBFGS, "
                         "strong-Wolfe line search, history 100) from the content image")
    args = ap.parse_args()
    assert args.size % 16 == 0, "--size must be a multiple of 16"

    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(args.seed)
    params = make_weights(gen)
    dev = torch.device(args.device)
    params = {k: (w.to(dev), b.to(dev)) for k, (w, b) in params.items()}
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    S = args.size
    x = torch.randn(1, 3, S, S, generator=gen).to(dev).requires_grad_(True)
    gflop_fwd = conv_flops(S) / 1e9
    where = f"device {torch.cuda.get_device_name(dev)}" if dev.type == "cuda" else f"threads {args.threads}"
    prefix = f"torch {torch.__version__} size {S} {where} pooling {args.pooling}:"
    print(f"# torch {torch.__version__} num_threads {torch.get_num_threads()} "
          f"cpu_capability {torch.backends.cpu.get_cpu_capability()} "
          f"conv GFLOP fwd {gflop_fwd:.3f} fwd+bwd {2 * gflop_fwd:.3f}", flush=True)

    base_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"# rss_after_import_and_setup_mib {base_kib / 1024:.0f}", flush=True)

    do_fwd = args.only in (None, "fwd")
    do_iter = args.only in (None, "iter")

    if do_fwd:
        def fwd():
            with torch.no_grad():
                out = features(x, params, args.pooling)
            sync()
            return out
        tmin, tmed = timeit(fwd, args.warmup, args.runs)
        print(f"{prefix} forward min {tmin:.3f} s median {tmed:.3f} s "
              f"{gflop_fwd / tmin:.1f} GFLOP/s", flush=True)

    if do_iter:
        with torch.no_grad():
            content_img = torch.randn(1, 3, S, S, generator=gen).to(dev)
            style_img = torch.randn(1, 3, S, S, generator=gen).to(dev)
            content_target = features(content_img, params, args.pooling)[CONTENT_LAYER].clone()
            sf = features(style_img, params, args.pooling)
            style_targets = {l: gram(sf[l]) for l in STYLE_LAYERS}
            del sf, style_img

        state = {}

        def it():
            feats = features(x, params, args.pooling)
            loss = loss_fn(feats, content_target, style_targets)
            (g,) = torch.autograd.grad(loss, x)
            state["loss"], state["gnorm"] = loss.item(), g.norm().item()
            return g

        tmin, tmed = timeit(it, args.warmup, args.runs)
        print(f"# loss {state['loss']:.6g} grad_norm {state['gnorm']:.6g}", flush=True)
        print(f"{prefix} fwd+bwd min {tmin:.3f} s median {tmed:.3f} s "
              f"{2 * gflop_fwd / tmin:.1f} GFLOP/s", flush=True)

        if args.lbfgs > 0:
            # The seed's loop: L-BFGS over the pixels from the content image, as Gatys et al.
            img = content_img.clone().requires_grad_(True)
            opt = torch.optim.LBFGS([img], max_iter=args.lbfgs, history_size=100,
                                    line_search_fn="strong_wolfe", tolerance_grad=0.0,
                                    tolerance_change=0.0)

            def closure():
                opt.zero_grad()
                loss = loss_fn(features(img, params, args.pooling), content_target, style_targets)
                loss.backward()
                return loss

            sync()
            t0 = time.perf_counter()
            opt.step(closure)
            sync()
            t = time.perf_counter() - t0
            evals = opt.state[opt._params[0]]["func_evals"]
            print(f"{prefix} lbfgs {args.lbfgs} iterations {t:.2f} s ({evals} evaluations)",
                  flush=True)

    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(f"peak_rss_mib {peak_kib / 1024:.0f} only {args.only or 'both'} size {S}", flush=True)


if __name__ == "__main__":
    main()
