#!/usr/bin/env python3
"""PyTorch eager peer of `kernel-lab train-bench`: the same model, the same step.

Builds the lab's model in PyTorch from the layer pattern (A: pre-norm
transformer block with LayerNorm, fused QKV with bias, GPT-NeoX partial RoPE,
causal SDPA, GELU-tanh MLP; M: Mamba-1 block with RMSNorm, in_proj, causal
depthwise conv, x_proj, dt_proj, a selective scan in pure PyTorch; L: an LSTM
layer), tied embeddings, a final norm (LayerNorm if the model has attention,
else RMSNorm). The scan is a log-step parallel scan with a hand-written
backward (the reverse recurrence by the same scan), so autograd keeps only
its inputs and states, in the manner of mambapy; it is not mambapy itself.
A step is forward, cross-entropy over every position, backward,
clip_grad_norm_(1.0) and AdamW, on one random batch. Prints one JSON object.

With --impl mambapy (an all-Mamba pattern only) the blocks are mambapy's own
(PyPI `mambapy`: a pure-PyTorch Mamba-1 with a parallel scan, `pscan=True`),
between the same embedding, final RMSNorm and tied head: the issue's
reference point for the lab's Mamba.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def rope_tables(T: int, rot: int, base: float):
    inv = base ** (-torch.arange(0, rot, 2, dtype=torch.float32) / rot)
    ang = torch.arange(T, dtype=torch.float32)[:, None] * inv[None, :]
    return ang.cos(), ang.sin()


def apply_rope(x, cos, sin, rot):
    half = rot // 2
    a, b, rest = x[..., :half], x[..., half:rot], x[..., rot:]
    return torch.cat([a * cos - b * sin, b * cos + a * sin, rest], -1)


class Attention(nn.Module):
    def __init__(self, D, H, rot, mlp):
        super().__init__()
        self.H, self.rot = H, rot
        self.ln1, self.ln2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.qkv, self.out = nn.Linear(D, 3 * D), nn.Linear(D, D)
        self.fc, self.proj = nn.Linear(D, mlp * D), nn.Linear(mlp * D, D)

    def forward(self, x, cos, sin):
        B, T, D = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(B, T, 3, self.H, D // self.H).permute(2, 0, 3, 1, 4)
        q, k = apply_rope(q, cos, sin, self.rot), apply_rope(k, cos, sin, self.rot)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        h = x + self.out(o.transpose(1, 2).reshape(B, T, D))
        return h + self.proj(F.gelu(self.fc(self.ln2(h)), approximate="tanh"))


def log_step_scan(a, b):
    """h_t = a_t h_{t-1} + b_t along dim 1 (h_{-1} = 0), in log2(T) passes."""
    T, off = a.shape[1], 1
    a, b = a.clone(), b.clone()
    while off < T:
        b[:, off:] = b[:, off:] + a[:, off:] * b[:, :-off].clone()
        a[:, off:] = a[:, off:] * a[:, :-off].clone()
        off *= 2
    return b


class ParallelScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b):
        with torch.no_grad():
            h = log_step_scan(a, b)
        ctx.save_for_backward(a, h)
        return h

    @staticmethod
    def backward(ctx, gh):
        a, h = ctx.saved_tensors
        # g_t = gh_t + a_{t+1} g_{t+1}: the same recurrence, reversed in time.
        a_next = torch.cat([a[:, 1:], torch.zeros_like(a[:, :1])], 1)
        g = log_step_scan(a_next.flip(1), gh.flip(1)).flip(1)
        h_prev = torch.cat([torch.zeros_like(h[:, :1]), h[:, :-1]], 1)
        return g * h_prev, g


class Mamba(nn.Module):
    def __init__(self, D, N, expand, K, R):
        super().__init__()
        Di = expand * D
        self.Di, self.N, self.R, self.K = Di, N, R, K
        self.norm = nn.RMSNorm(D, eps=1e-5)
        self.in_proj = nn.Linear(D, 2 * Di, bias=False)
        self.conv = nn.Conv1d(Di, Di, K, groups=Di, padding=K - 1)
        self.x_proj = nn.Linear(Di, R + 2 * N, bias=False)
        self.dt_proj = nn.Linear(R, Di)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, N + 1, dtype=torch.float32)).repeat(Di, 1))
        self.Dskip = nn.Parameter(torch.ones(Di))
        self.out_proj = nn.Linear(Di, D, bias=False)

    def forward(self, x):
        B, T, _ = x.shape
        xz = self.in_proj(self.norm(x))
        u, z = xz.chunk(2, -1)
        u = F.silu(self.conv(u.transpose(1, 2))[..., :T].transpose(1, 2))
        dt, Bm, Cm = self.x_proj(u).split([self.R, self.N, self.N], -1)
        delta = F.softplus(self.dt_proj(dt))                              # (B, T, Di)
        A = -torch.exp(self.A_log)                                        # (Di, N)
        a = torch.exp(delta[..., None] * A)                               # (B, T, Di, N)
        b = (delta * u)[..., None] * Bm[:, :, None, :]
        h = ParallelScan.apply(a, b)
        y = (h * Cm[:, :, None, :]).sum(-1) + self.Dskip * u
        return x + self.out_proj(y * F.silu(z))


class LSTM(nn.Module):
    def __init__(self, D):
        super().__init__()
        self.lstm = nn.LSTM(D, D, batch_first=True)

    def forward(self, x):
        return self.lstm(x)[0]


class Model(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.emb = nn.Embedding(a.vocab, a.d_model)
        hd = a.d_model // a.heads
        self.rot = max(2, hd // 4 // 2 * 2)
        R = a.dt_rank or math.ceil(a.d_model / 16)
        blocks = []
        for kind in a.pattern:
            if kind == "A":
                blocks.append(Attention(a.d_model, a.heads, self.rot, 4))
            elif kind == "M":
                blocks.append(Mamba(a.d_model, a.d_state, a.expand, a.conv, R))
            else:
                blocks.append(LSTM(a.d_model))
        self.blocks = nn.ModuleList(blocks)
        self.final = nn.LayerNorm(a.d_model) if "A" in a.pattern else nn.RMSNorm(a.d_model, eps=1e-5)
        cos, sin = rope_tables(a.seq, self.rot, 10000.0)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def forward(self, ids):
        x = self.emb(ids)
        for block in self.blocks:
            x = block(x, self.cos, self.sin) if isinstance(block, Attention) else block(x)
        return self.final(x) @ self.emb.weight.t()


class MambapyModel(nn.Module):
    """mambapy's Mamba stack (its residual blocks with RMSNorm) between the lab's embedding and head."""

    def __init__(self, a):
        super().__init__()
        from mambapy.mamba import Mamba as MambapyMamba, MambaConfig
        self.emb = nn.Embedding(a.vocab, a.d_model)
        config = MambaConfig(d_model=a.d_model, n_layers=len(a.pattern), d_state=a.d_state, expand_factor=a.expand,
                             d_conv=a.conv, dt_rank=a.dt_rank or math.ceil(a.d_model / 16), pscan=True)
        self.mamba = MambapyMamba(config)
        self.final = nn.RMSNorm(a.d_model, eps=1e-5)

    def forward(self, ids):
        return self.final(self.mamba(self.emb(ids))) @ self.emb.weight.t()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--pattern", required=True)
    p.add_argument("--impl", choices=["torch", "mambapy"], default="torch")
    for name, default in [("vocab", 32), ("d-model", 256), ("heads", 8), ("d-state", 16), ("expand", 2), ("conv", 4), ("dt-rank", 0),
                          ("batch", 16), ("seq", 256), ("threads", 1), ("warmup", 2), ("repeats", 5)]:
        p.add_argument("--" + name, type=int, default=default)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    extra = {}
    if a.impl == "mambapy":
        if set(a.pattern) != {"M"}:
            raise SystemExit("--impl mambapy needs an all-Mamba pattern, got " + a.pattern)
        try:
            import importlib.metadata
            extra["mambapy"] = importlib.metadata.version("mambapy")
        except Exception:
            raise SystemExit("mambapy is not installed in this Python (make mambapy-venv)")
        model = MambapyModel(a)
    else:
        model = Model(a)
    decayed = [q for q in model.parameters() if q.dim() >= 2]
    rest = [q for q in model.parameters() if q.dim() < 2]
    opt = torch.optim.AdamW([{"params": decayed, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}], lr=1e-4)
    ids = torch.randint(0, a.vocab, (a.batch, a.seq))
    targets = torch.roll(ids.flatten(), -1).view(a.batch, a.seq)

    def step():
        opt.zero_grad(set_to_none=False)
        loss = F.cross_entropy(model(ids).reshape(-1, a.vocab), targets.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    for _ in range(a.warmup):
        step()
    times = []
    for _ in range(a.repeats):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    median = statistics.median(times)
    print(json.dumps({
        "impl": a.impl, **extra,
        "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": a.threads,
        "pattern": a.pattern, "parameters": sum(q.numel() for q in model.parameters()),
        "step_median_s": median, "step_seconds": times, "tokens_per_s": a.batch * a.seq / median,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }))


if __name__ == "__main__":
    main()
