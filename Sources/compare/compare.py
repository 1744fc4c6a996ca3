#!/usr/bin/env python3
"""The lab's kernels beside PyTorch's on the same shapes (`make compare`).

Per shape, K rounds, each round timing torch (SDPA and a plain unfused
attention, or a materialized reference selective scan, forward, backward and
forward+backward) and then the lab (`kernel-lab attention|scan --json`, fused
and unfused, forward and backward) back to back, so that every ratio compares
two measurements taken seconds apart on the same cores. Reports medians over
the rounds (each round's figure is the median of its timed calls) and the
median of the per-round ratios. Checks numerics once per shape at a small
size (`kernel-lab run` on .npy files against a float64 torch reference).

Writes OUT/compare.md, OUT/compare.json (its "peers" are what
`kernel-lab roofline --peers` reads) and OUT/compare/suite.json (the same
shapes as a roofline suite, so the lab's points on that chart match).
Needs torch and numpy (the Makefile's .venv-compare); nothing else in the lab does.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError as error:  # the venv is the Makefile's job
    sys.exit(f"compare.py: {error}; run it with the venv's python (make compare-venv makes .venv-compare)")

SCHEMA = "kernellab-compare/1"

# Tolerance of the numerics check: max |x - ref| / max |ref| against float64.
# fp32 attention at L <= 256 lands near 1e-6, its gradients near 1e-5.
TOLERANCE = 2e-4


# ----------------------------------------------------------------- shapes ---

@dataclass(frozen=True)
class AttentionShape:
    batch: int
    heads: int
    seq: int
    head_dim: int
    causal: bool = False

    kernel = "attention"

    @property
    def label(self) -> str:
        """The roofline suite's default label (RooflineCase.defaultLabel)."""
        parts = ["attn", f"L{self.seq}"]
        if self.head_dim != 64:
            parts.append(f"d{self.head_dim}")
        if self.batch != 1 or self.heads != 8:
            parts.append(f"B{self.batch}H{self.heads}")
        if self.causal:
            parts.append("causal")
        return " ".join(parts)

    def lab_args(self) -> list[str]:
        args = ["--batch", str(self.batch), "--heads", str(self.heads), "--seq", str(self.seq),
                "--head-dim", str(self.head_dim)]
        return args + (["--causal"] if self.causal else [])

    def fields(self) -> dict:
        return {"batch": self.batch, "heads": self.heads, "seq": self.seq, "kv_seq": self.seq,
                "head_dim": self.head_dim, "causal": self.causal}

    def forward_flops(self) -> float:
        """FlashAttention's convention, as kl_attn_cost: 4 B H Lq Lk d, halved when causal."""
        flops = 4.0 * self.batch * self.heads * self.seq * self.seq * self.head_dim
        return flops / 2 if self.causal else flops


@dataclass(frozen=True)
class ScanShape:
    batch: int
    channels: int
    seq: int
    state: int

    kernel = "scan"

    @property
    def label(self) -> str:
        parts = ["scan", f"D{self.channels}", f"L{self.seq}"]
        if self.state != 16:
            parts.append(f"N{self.state}")
        if self.batch != 1:
            parts.append(f"B{self.batch}")
        return " ".join(parts)

    def lab_args(self) -> list[str]:
        return ["--batch", str(self.batch), "--channels", str(self.channels), "--seq", str(self.seq),
                "--state", str(self.state)]

    def fields(self) -> dict:
        return {"batch": self.batch, "channels": self.channels, "seq": self.seq, "state": self.state, "groups": 1}


# The shapes of the lab's attention report (Makefile: attention-report) and scan report.
DEFAULT_SHAPES = {
    "L1024": AttentionShape(1, 8, 1024, 64),
    "L4096": AttentionShape(1, 8, 4096, 64),
    "L4096-causal": AttentionShape(1, 8, 4096, 64, causal=True),
    "L4096-d128": AttentionShape(1, 8, 4096, 128),
    "scan": ScanShape(1, 1024, 4096, 16),
}
# Seconds, for testing the tooling.
QUICK_SHAPES = {
    "L128": AttentionShape(1, 2, 128, 32),
    "L256-causal": AttentionShape(1, 2, 256, 32, causal=True),
    "scan": ScanShape(1, 64, 256, 16),
}


# ------------------------------------------------------------- the peers ---

def attention_unfused(q, k, v, causal: bool, mask=None):
    """Plain attention as a model would write it: every (L, L) tensor materialized."""
    scores = q @ k.transpose(-2, -1) * (1.0 / math.sqrt(q.shape[-1]))
    if causal:
        scores = scores.masked_fill(mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def causal_mask(seq: int, device=None):
    """True above the diagonal: the keys a query must not see (Lq = Lk)."""
    return torch.ones(seq, seq, dtype=torch.bool, device=device).triu(1)


def scan_reference(u, delta, A, B, C, D, z, delta_bias):
    """The selective scan in the reference formulation of Mamba-1, with the
    (B, D, L, N) tensors materialized: delta' = softplus(delta + delta_bias),
    deltaA = exp(delta' A), deltaB_u = delta' B u, a loop over L for the
    state, y = sum_n(h C) + D u, out = y * silu(z). B and C are (B, N, L).
    Returns (out, last state).

    The steps are taken with unbind, not by indexing decay[:, :, t] as
    selective_scan_ref does: on the CPU the backward of each such index
    materializes a zero (B, D, L, N) gradient, O(L^2) in all (67 s at
    D = 1024, L = 1024, about 18 min at L = 4096, measured), where unbind's
    backward is one stack. The forward and what it materializes are the same."""
    dt = F.softplus(delta + delta_bias[:, None])                         # (b, d, l)
    decay = torch.exp(dt[..., None] * A[None, :, None, :])               # (b, d, l, n)
    drive = (dt * u)[..., None] * B.transpose(1, 2)[:, None, :, :]       # (b, d, l, n)
    h = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    ys = []
    for decay_t, drive_t, c_t in zip(decay.unbind(2), drive.unbind(2), C.unbind(2)):
        h = decay_t * h + drive_t
        ys.append((h * c_t[:, None, :]).sum(-1))
    y = torch.stack(ys, dim=-1) + D[:, None] * u
    return y * F.silu(z), h


# --------------------------------------------------------------- timing ---

def timed(fn: Callable[[], object], warmup: int, repeats: int) -> list[float]:
    """Seconds of `repeats` calls after `warmup` untimed ones (torch's CPU
    ops are synchronous, so the wall clock is the call)."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def run_lab(lab: str, args: list[str]) -> dict:
    """Runs kernel-lab and returns its JSON; a failure is an error naming the command."""
    command = [lab] + args
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"compare.py: `{shlex.join(command)}` failed ({result.returncode}): {result.stderr.strip()}")
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError as error:
        raise SystemExit(f"compare.py: `{shlex.join(command)}` printed no JSON: {error}")


@dataclass
class Series:
    """One implementation at one pass: its per-round medians."""
    rounds: list[float] = field(default_factory=list)
    samples: list[float] = field(default_factory=list)

    def add(self, samples: list[float]) -> None:
        self.rounds.append(statistics.median(samples))
        self.samples += samples

    def add_median(self, median: float) -> None:
        self.rounds.append(median)

    @property
    def median(self) -> float:
        return statistics.median(self.rounds)


PASSES = ["forward", "backward", "forward+backward"]


class Comparison:
    """The series of one shape: impl -> pass -> Series, and the in-run
    references (the lab's OpenBLAS sgemm, torch's mm) per round."""

    def __init__(self, shape, impls: list[str]):
        self.shape = shape
        self.series = {impl: {p: Series() for p in PASSES} for impl in impls}
        self.sgemm_gflops: list[float] = []
        self.torch_mm_gflops: list[float] = []
        self.flops: dict[str, float] = {}

    def record_lab(self, report: dict) -> None:
        by = {(r["impl"], r["pass"]): r for r in report["results"]}
        for impl in ("fused", "unfused"):
            forward, backward = by[(impl, "forward")], by[(impl, "backward")]
            name = f"lab-{impl}"
            self.series[name]["forward"].add_median(forward["median_seconds"])
            self.series[name]["backward"].add_median(backward["median_seconds"])
            # A training step: the forward, then the backward given its outputs.
            self.series[name]["forward+backward"].add_median(forward["median_seconds"] + backward["median_seconds"])
            self.flops.setdefault("forward", forward["flops"])
            self.flops.setdefault("backward", backward["flops"])
        self.flops["forward+backward"] = self.flops["forward"] + self.flops["backward"]
        self.sgemm_gflops.append(report["sgemm_gflops"])

    def ratio(self, numerator: str, denominator: str, pass_: str) -> float:
        """Median over rounds of time(numerator) / time(denominator): how many
        times faster `denominator` is, each round's two figures measured
        back to back."""
        a = self.series[numerator][pass_].rounds
        b = self.series[denominator][pass_].rounds
        return statistics.median(x / y for x, y in zip(a, b))


def torch_mm_gflops(n: int, warmup: int, repeats: int) -> float:
    """torch's own n x n float32 matmul (its BLAS), the torch side's sgemm."""
    a, b = torch.rand(n, n), torch.rand(n, n)
    return 2.0 * n ** 3 / statistics.median(timed(lambda: torch.mm(a, b), warmup, repeats)) / 1e9


def compare_attention(shape: AttentionShape, opts, generator) -> Comparison:
    comparison = Comparison(shape, ["lab-fused", "lab-unfused", "torch-sdpa", "torch-unfused"])
    dims = (shape.batch, shape.heads, shape.seq, shape.head_dim)
    q, k, v, dout = (torch.randn(dims, generator=generator) for _ in range(4))
    mask = causal_mask(shape.seq) if shape.causal else None
    peers = {
        "torch-sdpa": lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=shape.causal),
        "torch-unfused": lambda q, k, v: attention_unfused(q, k, v, shape.causal, mask),
    }
    lab_args = ["attention"] + shape.lab_args() + common_lab_args(opts)
    for round_index in range(opts.rounds):
        comparison.torch_mm_gflops.append(torch_mm_gflops(opts.sgemm_size, opts.warmup, opts.repeats))
        for name, attend in peers.items():
            measure_autograd(comparison.series[name], attend, (q, k, v), dout, opts)
        comparison.record_lab(run_lab(opts.lab, lab_args))
        progress(f"{shape.label}: round {round_index + 1}/{opts.rounds}")
    for pass_ in PASSES:
        expected = shape.forward_flops() * {"forward": 1, "backward": 2.5, "forward+backward": 3.5}[pass_]
        if abs(comparison.flops[pass_] / expected - 1) > 1e-9:
            raise SystemExit(f"compare.py: kernel-lab's {pass_} FLOPs {comparison.flops[pass_]} for {shape.label} "
                             f"differ from the convention's {expected}")
    return comparison


def measure_autograd(series: dict, fn, inputs: tuple, dout, opts) -> None:
    """Forward (no autograd), backward alone (on a retained graph, as the lab
    times its backward given the forward's outputs) and forward+backward
    (`out.backward(dout)` after a fresh forward), one round each."""
    with torch.inference_mode():
        series["forward"].add(timed(lambda: fn(*inputs), opts.warmup, opts.repeats))
    leaves = [x.detach().clone().requires_grad_() for x in inputs]
    out = fn(*leaves)
    outs = out if isinstance(out, tuple) else (out,)
    series["backward"].add(timed(
        lambda: torch.autograd.grad(outs[0], leaves, dout, retain_graph=True), opts.warmup, opts.repeats))
    del out, outs  # frees the retained graph before the next measurement

    def step():
        for leaf in leaves:
            leaf.grad = None
        result = fn(*leaves)
        (result[0] if isinstance(result, tuple) else result).backward(dout)

    series["forward+backward"].add(timed(step, opts.warmup, opts.repeats))


def scan_inputs(shape: ScanShape, generator, dtype=torch.float32) -> dict:
    """Mamba's defaults, as the lab's scan benchmark: A = -(1..N) per channel,
    D = 1, z present, delta_bias log-uniform in [1e-3, 1e-1], softplus on."""
    b, d, l, n = shape.batch, shape.channels, shape.seq, shape.state

    def uniform(*dims, low=-1.0, high=1.0):
        return (torch.rand(dims, generator=generator) * (high - low) + low).to(dtype)

    return {
        "u": uniform(b, d, l), "delta": uniform(b, d, l, low=-3.0, high=1.0),
        "A": (-torch.arange(1, n + 1, dtype=dtype)).repeat(d, 1),
        "B": uniform(b, n, l), "C": uniform(b, n, l),
        "D": torch.ones(d, dtype=dtype), "z": uniform(b, d, l),
        "delta_bias": uniform(d, low=math.log(1e-3), high=math.log(1e-1)),
    }


SCAN_ORDER = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"]


def compare_scan(shape: ScanShape, opts, generator) -> Comparison:
    comparison = Comparison(shape, ["lab-fused", "lab-unfused", "torch-scan-ref"])
    inputs = scan_inputs(shape, generator)
    dout = torch.randn((shape.batch, shape.channels, shape.seq), generator=generator)
    lab_args = ["scan"] + shape.lab_args() + common_lab_args(opts)
    for round_index in range(opts.rounds):
        comparison.torch_mm_gflops.append(torch_mm_gflops(opts.sgemm_size, opts.warmup, opts.repeats))
        measure_autograd(comparison.series["torch-scan-ref"], scan_reference,
                         tuple(inputs[name] for name in SCAN_ORDER), dout, opts)
        comparison.record_lab(run_lab(opts.lab, lab_args))
        progress(f"{shape.label}: round {round_index + 1}/{opts.rounds}")
    return comparison


def common_lab_args(opts) -> list[str]:
    return ["--threads", str(opts.threads), "--pass", "both", "--impl", "both", "--repeats", str(opts.repeats),
            "--warmup", str(opts.warmup), "--sgemm-size", str(opts.sgemm_size), "--json"]


# ------------------------------------------------------------- numerics ---

def max_relative(x, ref) -> float:
    """max |x - ref| / max |ref|: the error relative to the tensor's scale."""
    x = x.detach() if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
    x, ref = x.to(torch.float64), ref.detach().to(torch.float64)
    scale = ref.abs().max().item()
    return (x - ref).abs().max().item() / (scale if scale > 0 else 1.0)


def save_npy(directory: str, name: str, tensor) -> str:
    path = os.path.join(directory, name + ".npy")
    np.save(path, np.ascontiguousarray(tensor.detach().to(torch.float32).numpy()))
    return path


def check_attention(shape: AttentionShape, opts, generator) -> list[dict]:
    """Lab fused and unfused, and torch SDPA, against a float64 torch
    reference at a small L: the output and dq, dk, dv."""
    small = AttentionShape(shape.batch, shape.heads, min(shape.seq, opts.numerics_seq), shape.head_dim, shape.causal)
    dims = (small.batch, small.heads, small.seq, small.head_dim)
    q, k, v, dout = (torch.randn(dims, generator=generator) for _ in range(4))
    leaves64 = [x.to(torch.float64).requires_grad_() for x in (q, k, v)]
    mask = causal_mask(small.seq) if small.causal else None
    ref = attention_unfused(*leaves64, small.causal, mask)
    ref_grads = torch.autograd.grad(ref, leaves64, dout.to(torch.float64))
    names = ["out", "dq", "dk", "dv"]
    refs = dict(zip(names, [ref, *ref_grads]))

    leaves = [x.clone().requires_grad_() for x in (q, k, v)]
    sdpa = F.scaled_dot_product_attention(*leaves, is_causal=small.causal)
    sdpa_grads = torch.autograd.grad(sdpa, leaves, dout)
    rows = [numerics_row(shape, small.label, "torch-sdpa", dict(zip(names, [sdpa, *sdpa_grads])), refs)]
    with tempfile.TemporaryDirectory(prefix="kernellab-compare-") as tmp:
        files = {name: save_npy(tmp, name, x) for name, x in zip(["q", "k", "v", "do"], [q, k, v, dout])}
        for impl in ("fused", "unfused"):
            grads = os.path.join(tmp, f"grads-{impl}")
            out = os.path.join(tmp, f"out-{impl}.npy")
            args = ["run", "attention", "--q", files["q"], "--k", files["k"], "--v", files["v"], "--impl", impl,
                    "--threads", str(opts.threads), "--out", out, "--grad-out", files["do"], "--grads-dir", grads]
            run_tool(opts.lab, args + (["--causal"] if small.causal else []))
            got = {"out": np.load(out)} | {name: np.load(os.path.join(grads, name + ".npy")) for name in names[1:]}
            rows.append(numerics_row(shape, small.label, f"lab-{impl}", got, refs))
    return rows


def check_scan(shape: ScanShape, opts, generator) -> list[dict]:
    """Lab fused and unfused against the float64 reference scan at a small
    size: out and every input's gradient."""
    small = ScanShape(shape.batch, min(shape.channels, 64), min(shape.seq, opts.numerics_seq), shape.state)
    inputs = scan_inputs(small, generator)
    dout = torch.randn((small.batch, small.channels, small.seq), generator=generator)
    leaves64 = [inputs[name].to(torch.float64).requires_grad_() for name in SCAN_ORDER]
    ref, _ = scan_reference(*leaves64)
    ref_grads = torch.autograd.grad(ref, leaves64, dout.to(torch.float64))
    grad_names = ["d" + name for name in SCAN_ORDER]
    refs = {"out": ref} | dict(zip(grad_names, ref_grads))

    leaves = [inputs[name].clone().requires_grad_() for name in SCAN_ORDER]
    out32, _ = scan_reference(*leaves)
    grads32 = torch.autograd.grad(out32, leaves, dout)
    rows = [numerics_row(shape, small.label, "torch-scan-ref", {"out": out32} | dict(zip(grad_names, grads32)), refs)]
    with tempfile.TemporaryDirectory(prefix="kernellab-compare-") as tmp:
        files = {name: save_npy(tmp, name, inputs[name]) for name in SCAN_ORDER}
        files["dout"] = save_npy(tmp, "dout", dout)
        for impl in ("fused", "unfused"):
            grads = os.path.join(tmp, f"grads-{impl}")
            out = os.path.join(tmp, f"out-{impl}.npy")
            args = ["run", "scan", "--u", files["u"], "--delta", files["delta"], "--A", files["A"],
                    "--B", files["B"], "--C", files["C"], "--D", files["D"], "--z", files["z"],
                    "--delta-bias", files["delta_bias"], "--softplus", "--impl", impl,
                    "--threads", str(opts.threads), "--out", out, "--grad-out", files["dout"], "--grads-dir", grads]
            run_tool(opts.lab, args)
            got = {"out": np.load(out)} | {name: np.load(os.path.join(grads, name + ".npy")) for name in grad_names}
            rows.append(numerics_row(shape, small.label, f"lab-{impl}", got, refs))
    return rows


def numerics_row(shape, small_label: str, impl: str, got: dict, refs: dict) -> dict:
    errors = {name: max_relative(got[name], refs[name]) for name in refs}
    output = errors["out"]
    gradient = max(value for name, value in errors.items() if name != "out")
    return {"label": shape.label, "checked_at": small_label, "impl": impl, "out_error": output,
            "grad_error": gradient, "errors": errors, "tolerance": TOLERANCE,
            "ok": output <= TOLERANCE and gradient <= TOLERANCE}


def run_tool(lab: str, args: list[str]) -> None:
    command = [lab] + args
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"compare.py: `{shlex.join(command)}` failed ({result.returncode}): {result.stderr.strip()}")


# -------------------------------------------------------------- reports ---

def peers_of(comparison: Comparison, threads: int) -> list[dict]:
    """The torch measurements as roofline peers: forward and backward (the
    roofline's passes), each with the lab cost model that stands in for its
    bytes: the fused model for SDPA (a fused CPU flash kernel), the unfused
    one for the materialized peers."""
    shape = comparison.shape
    peers = []
    for name, passes in comparison.series.items():
        if not name.startswith("torch-"):
            continue
        for pass_ in ("forward", "backward"):
            series = passes[pass_]
            peers.append({
                "name": name, "kernel": shape.kernel, "label": shape.label, "pass": pass_,
                "model": "fused" if name == "torch-sdpa" else "unfused",
                **shape.fields(), "threads": threads,
                "median_seconds": series.median, "min_seconds": min(series.samples),
                "repeats": len(series.samples), "flops": comparison.flops[pass_],
            })
    return peers


def comparison_record(comparison: Comparison) -> dict:
    impls = {}
    sgemm = statistics.median(comparison.sgemm_gflops)
    mm = statistics.median(comparison.torch_mm_gflops)
    for impl, passes in comparison.series.items():
        impls[impl] = {}
        for pass_, series in passes.items():
            gflops = comparison.flops[pass_] / series.median / 1e9
            impls[impl][pass_] = {"median_seconds": series.median, "round_medians": series.rounds,
                                  "gflops": gflops, "fraction_of_sgemm": gflops / sgemm,
                                  "fraction_of_torch_mm": gflops / mm}
    ratios = {}
    peers = [name for name in comparison.series if name.startswith("torch-")]
    for pass_ in PASSES:
        ratios[pass_] = {f"lab-fused_over_{peer}": comparison.ratio(peer, "lab-fused", pass_) for peer in peers}
        ratios[pass_]["lab-fused_over_lab-unfused"] = comparison.ratio("lab-unfused", "lab-fused", pass_)
    return {"label": comparison.shape.label, "kernel": comparison.shape.kernel, **comparison.shape.fields(),
            "flops": comparison.flops, "sgemm_gflops": sgemm, "sgemm_gflops_rounds": comparison.sgemm_gflops,
            "torch_mm_gflops": mm, "torch_mm_gflops_rounds": comparison.torch_mm_gflops,
            "impls": impls, "ratios": ratios}


def markdown(document: dict) -> str:
    torch_info, machine, settings = document["torch"], document["machine"], document["settings"]
    threads = document["threads"]
    lines = [
        "# KernelLab beside PyTorch",
        "",
        f"Generated {document['date']} by `{settings['command']}`.",
        "",
        "| | |", "|---|---|",
        f"| machine | {machine.get('cpu_model', '?')}, {machine.get('cpu_count', '?')} logical CPUs, "
        f"lab ISA {machine.get('isa', '?')} (supported: {', '.join(machine.get('supported_isas', []))}) |",
        f"| lab BLAS | {machine.get('blas_config', '?')} |",
        f"| torch | {torch_info['version']} ({torch_info['blas']}), CPU capability {torch_info['cpu_capability']}, "
        f"SDPA backend {torch_info['sdpa_backend']} |",
        f"| threads | {threads} (torch.set_num_threads({threads}), interop {torch_info['interop_threads']}; "
        f"kernel-lab --threads {threads}) |",
        f"| rounds | {settings['rounds']} per shape: torch then the lab, back to back; "
        f"{settings['warmup']} warm-up + {settings['repeats']} timed calls per measurement |",
        f"| python | {settings['python']} |",
        "",
        "Times are medians over the rounds of each round's median call. Ratios are "
        "medians of per-round ratios (both sides of a ratio measured seconds apart), "
        "read as *how many times faster the lab's fused kernel is* (above 1: the lab is "
        "faster). GFLOP/s use the lab's FLOP counts for every implementation (attention: "
        "4·B·H·L²·d forward, halved when causal, backward 2.5x, forward+backward 3.5x; "
        "scan: the lab's `kl_scan_cost`, forward+backward = forward + backward), so a "
        "GFLOP/s ratio is a speed ratio. *of sgemm* divides by the lab's OpenBLAS sgemm "
        f"(n = {settings['sgemm_size']}) timed in each round with the same threads; *of torch mm* "
        "by torch's own matmul of the same size. The lab's backward is timed alone, given "
        "its forward's outputs (lse; the fused scan's saved chunk states), and its "
        "forward+backward is their sum; torch's backward is timed alone on a retained "
        "graph, its forward+backward as `out.backward(dout)` after a fresh forward, its "
        "forward under `torch.inference_mode()`.",
        "",
        "## Summary",
        "",
    ]
    rows = [["shape", "pass", "lab fused GFLOP/s", "peer GFLOP/s", "fused / peer", "fused / torch unfused",
             "fused / lab unfused", "lab fused of sgemm", "peer of sgemm", "peer of torch mm"]]
    for record in document["comparisons"]:
        peer = "torch-sdpa" if record["kernel"] == "attention" else "torch-scan-ref"
        for pass_ in PASSES:
            fused, other = record["impls"]["lab-fused"][pass_], record["impls"][peer][pass_]
            ratios = record["ratios"][pass_]
            unfused_torch = ratios.get("lab-fused_over_torch-unfused")
            rows.append([f"{record['label']} ({peer})", pass_, f"{fused['gflops']:.1f}", f"{other['gflops']:.1f}",
                         f"{ratios['lab-fused_over_' + peer]:.2f}x",
                         f"{unfused_torch:.2f}x" if unfused_torch is not None else "-",
                         f"{ratios['lab-fused_over_lab-unfused']:.2f}x",
                         f"{fused['fraction_of_sgemm']:.3f}", f"{other['fraction_of_sgemm']:.3f}",
                         f"{other['fraction_of_torch_mm']:.3f}"])
    lines += table(rows, right=set(range(2, 10)))
    lines += ["", "## Per shape", ""]
    for record in document["comparisons"]:
        lines += [f"### {record['label']}", "",
                  f"sgemm (OpenBLAS, lab) {record['sgemm_gflops']:.1f} GFLOP/s, torch mm {record['torch_mm_gflops']:.1f} GFLOP/s "
                  "(medians of the rounds).", ""]
        rows = [["impl", "pass", "ms", "GFLOP/s", "of sgemm", "of torch mm", "round medians ms"]]
        for impl, passes in record["impls"].items():
            for pass_ in PASSES:
                entry = passes[pass_]
                rows.append([impl, pass_, f"{entry['median_seconds'] * 1e3:.3f}", f"{entry['gflops']:.1f}",
                             f"{entry['fraction_of_sgemm']:.3f}", f"{entry['fraction_of_torch_mm']:.3f}",
                             ", ".join(f"{x * 1e3:.3f}" for x in entry["round_medians"])])
        lines += table(rows, right={2, 3, 4, 5})
        lines.append("")
    lines += ["## Numerics", "",
              f"Once per shape at a small size (the same B, H, d and mask; L at most {settings['numerics_seq']}; "
              "the scan at D at most 64): each implementation against a float64 torch reference "
              "(the unfused attention, the reference scan), as max |x - ref| / max |ref| over the "
              f"output and over every gradient; tolerance {TOLERANCE:g}.", ""]
    rows = [["shape", "checked at", "impl", "out error", "max gradient error", "within tolerance"]]
    for row in document["numerics"]:
        rows.append([row["label"], row["checked_at"], row["impl"], f"{row['out_error']:.2e}", f"{row['grad_error']:.2e}",
                     "yes" if row["ok"] else "**no**"])
    if len(rows) > 1:
        lines += table(rows, right={3, 4})
        verdict = all(row["ok"] for row in document["numerics"])
        lines += ["", "All within tolerance." if verdict else "**Some results are outside the tolerance.**"]
    else:
        lines.append("Skipped (--no-numerics).")
    out = settings["out"]
    lines += ["", "## Roofline", "",
              f"`kernel-lab roofline --suite {out}/compare/suite.json --peers {out}/compare.json --threads {threads} "
              f"--out {out}/compare` (the last step of `make compare`) places the torch measurements on the lab's "
              f"roofline as peers ({out}/compare/roofline.html), beside the lab's kernels on the same shapes, "
              "measured again by that step. The peers' bytes are the lab's cost models for the same shape (fused "
              "for SDPA, unfused for the materialized peers): an estimate, not a measurement of torch's traffic.", ""]
    return "\n".join(lines)


def table(rows: list[list[str]], right: set[int]) -> list[str]:
    header = rows[0]
    out = ["| " + " | ".join(header) + " |",
           "|" + "".join("---:|" if i in right else "---|" for i in range(len(header)))]
    out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows[1:]]
    return out


def write_whole(path: str, text: str) -> None:
    """Temporary file in the same directory, flushed, then renamed."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def suite_document(shapes, opts) -> dict:
    cases = []
    for shape in shapes:
        case = {"kernel": shape.kernel, "impl": "both", "pass": "both", "label": shape.label} | shape.fields()
        if shape.kernel == "attention":
            case.pop("kv_seq")
        else:
            case.pop("groups")
        cases.append(case)
    return {"name": "compare", "warmup": opts.warmup, "repeats": opts.repeats,
            "description": "the shapes of make compare; the torch peers come from compare.json", "cases": cases}


def torch_info(threads: int) -> dict:
    config = torch.__config__.show()
    blas = next((part.split("=", 1)[1] for part in config.replace(",", " ").split() if part.startswith("BLAS_INFO=")), "?")
    probe = torch.zeros(1, 1, 8, 8)
    try:  # private API: which fused kernel SDPA dispatches to for these inputs
        from torch.nn.attention import SDPBackend
        choice = int(torch._fused_sdp_choice(probe, probe, probe))
        names = {int(getattr(SDPBackend, n)): n.lower() for n in dir(SDPBackend) if n.isupper()}
        backend = names.get(choice, str(choice))
    except Exception:  # noqa: BLE001 - informational only
        backend = "unknown"
    return {"version": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "blas": blas, "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
            "sdpa_backend": backend, "numpy": np.__version__}


def progress(text: str) -> None:
    print(f"compare: {text}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ main ---

def parse_args(argv: list[str]):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lab", default=".build/release/kernel-lab", help="the kernel-lab binary")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads and kernel-lab --threads (default 1)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of (torch, lab) per shape (default 3; --quick 2)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per measurement and round (default 3; --quick 2)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls before each measurement (default 1)")
    parser.add_argument("--sgemm-size", type=int, default=None, help="n of the in-run sgemm and torch mm (default 2048; --quick 256)")
    parser.add_argument("--quick", action="store_true", help="tiny shapes, to test the tooling in seconds")
    parser.add_argument("--shapes", default=None,
                        help="comma-separated subset of the shapes: " + ", ".join(DEFAULT_SHAPES) + " (--quick: " + ", ".join(QUICK_SHAPES) + ")")
    parser.add_argument("--numerics-seq", type=int, default=256, help="L of the numerics check (default 256)")
    parser.add_argument("--no-numerics", action="store_true", help="skip the numerics check")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    parser.add_argument("--out", default="reports", help="directory of compare.md, compare.json and compare/suite.json")
    opts = parser.parse_args(argv)
    opts.rounds = opts.rounds if opts.rounds is not None else (2 if opts.quick else 3)
    opts.repeats = opts.repeats if opts.repeats is not None else (2 if opts.quick else 3)
    opts.sgemm_size = opts.sgemm_size if opts.sgemm_size is not None else (256 if opts.quick else 2048)
    for name in ("threads", "rounds", "repeats", "sgemm_size", "numerics_seq"):
        if getattr(opts, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(opts, name)}")
    if opts.warmup < 0:
        parser.error(f"--warmup must be at least 0, got {opts.warmup}")
    table_ = QUICK_SHAPES if opts.quick else DEFAULT_SHAPES
    names = opts.shapes.split(",") if opts.shapes else list(table_)
    unknown = [name for name in names if name not in table_]
    if unknown or not names:
        parser.error(f"--shapes: unknown {', '.join(unknown) or '(empty)'}; expected some of {', '.join(table_)}")
    opts.shape_list = [table_[name] for name in names]
    if not os.access(opts.lab, os.X_OK):
        parser.error(f"--lab: '{opts.lab}' is not an executable (make release builds it)")
    return opts


def main(argv: list[str]) -> int:
    opts = parse_args(argv)
    # Before any parallel work: intra-op threads as asked, one interop thread.
    torch.set_num_threads(opts.threads)
    torch.set_num_interop_threads(1)
    generator = torch.Generator().manual_seed(opts.seed)
    machine = run_lab(opts.lab, ["info", "--json"])
    info = torch_info(opts.threads)
    progress(f"torch {info['version']} ({info['cpu_capability']}, {info['blas']}), {opts.threads} thread(s), "
             f"{opts.rounds} round(s) x {opts.repeats} call(s)")

    comparisons, numerics = [], []
    for shape in opts.shape_list:
        compare = compare_attention if shape.kernel == "attention" else compare_scan
        comparisons.append(compare(shape, opts, generator))
        if not opts.no_numerics:
            check = check_attention if shape.kernel == "attention" else check_scan
            numerics += check(shape, opts, generator)
        gc.collect()  # the next shape's tensors need the memory

    command = "compare.py " + shlex.join(argv)
    document = {
        "schema": SCHEMA,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "threads": opts.threads,
        "source": f"torch {info['version']}",
        "torch": info,
        "machine": machine,
        "settings": {"rounds": opts.rounds, "repeats": opts.repeats, "warmup": opts.warmup,
                     "sgemm_size": opts.sgemm_size, "numerics_seq": opts.numerics_seq, "seed": opts.seed,
                     "command": command, "python": platform.python_version(), "out": opts.out},
        "comparisons": [comparison_record(c) for c in comparisons],
        "numerics": numerics,
        "peers": [peer for c in comparisons for peer in peers_of(c, opts.threads)],
    }
    write_whole(os.path.join(opts.out, "compare.json"), json.dumps(document, indent=2, sort_keys=True) + "\n")
    write_whole(os.path.join(opts.out, "compare.md"), markdown(document) + "\n")
    write_whole(os.path.join(opts.out, "compare", "suite.json"),
                json.dumps(suite_document(opts.shape_list, opts), indent=2) + "\n")

    # The summary table's rows, for the terminal.
    width = max(len(record["label"]) for record in document["comparisons"])
    for record in document["comparisons"]:
        peer = "torch-sdpa" if record["kernel"] == "attention" else "torch-scan-ref"
        for pass_ in PASSES:
            ratio = record["ratios"][pass_][f"lab-fused_over_{peer}"]
            fused = record["impls"]["lab-fused"][pass_]["gflops"]
            other = record["impls"][peer][pass_]["gflops"]
            print(f"{record['label']:<{width}}  {pass_:<16}  lab fused {fused:7.1f} GFLOP/s  {peer:<14} {other:7.1f}  "
                  f"lab fused / {peer.removeprefix('torch-')} {ratio:6.2f}x")
    failed = [row for row in numerics if not row["ok"]]
    if numerics:
        print(f"numerics: {len(numerics) - len(failed)} of {len(numerics)} within {TOLERANCE:g}"
              + ("" if not failed else ": " + ", ".join(f"{r['label']} {r['impl']}" for r in failed)))
    print(f"wrote {os.path.join(opts.out, 'compare.md')}, {os.path.join(opts.out, 'compare.json')}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
