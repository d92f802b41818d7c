#!/usr/bin/env python3
"""The `repro bench` workload in PyTorch + transformers, printing the same fields.

Same model shape (random init), batch, sequence length (all tokens real), dropout on, AdamW
(eps 1e-6, no weight decay) with global-norm clipping at 1.0, the same methods. Each
(method) cell runs in its own process so its peak RSS is its own. Run by hand:

    python3 scripts/bench_pytorch.py --model models/all-MiniLM-L6-v2 --batch-size 32 --seq-len 128
    python3 scripts/bench_pytorch.py --shape bert-base-cased
    python3 scripts/bench_pytorch.py --device cuda          # on a GPU (scripts/gpu_check.sh)
    python3 scripts/bench_pytorch.py --span --seq-len 384 --batch-size 8   # SQuAD's QA head

`--span` benches BertForQuestionAnswering (start/end positions as targets), `repro bench --span`'s
workload.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

from reference_methods import trainable

SHAPES = {
    "bert-base-cased": dict(vocab_size=28996, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                            intermediate_size=3072),
    "bert-large-cased": dict(vocab_size=28996, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                             intermediate_size=4096),
}


def forward_flops(c, batch, seq):
    h, i, l = c.hidden_size, c.intermediate_size, c.num_hidden_layers
    tokens = batch * seq
    per_layer = 2 * tokens * (4 * h * h + 2 * h * i) + 4 * batch * seq * seq * h
    return l * per_layer + 2 * batch * h * h


def one(args):
    import torch
    from transformers import BertConfig, BertForQuestionAnswering, BertForSequenceClassification

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.shape:
        cfg = BertConfig(**SHAPES[args.shape], num_labels=2)
        name = args.shape
    else:
        cfg = BertConfig.from_pretrained(args.model, num_labels=2)
        name = os.path.basename(os.path.normpath(args.model))
    cfg.attn_implementation = "eager"
    cfg._attn_implementation = "eager"  # transformers 5 reads this one
    dev = torch.device(args.device)
    model = (BertForQuestionAnswering if args.span else BertForSequenceClassification)(cfg).to(dev)
    for n, p in model.named_parameters():
        p.requires_grad = trainable(args.method, n)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, eps=1e-6, weight_decay=0.0)
    model.train()
    b, s = args.batch_size, args.seq_len
    ids = (1 + (torch.arange(b * s) * 7919) % (cfg.vocab_size - 1)).reshape(b, s).to(dev)
    mask = torch.ones(b, s, dtype=torch.long, device=dev)
    if args.span:
        start = ((torch.arange(b) * 37) % s).to(dev)
        targets = dict(start_positions=start, end_positions=torch.clamp(start + 3, max=s - 1))
    else:
        targets = dict(labels=(torch.arange(b) % 2).to(dev))
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    times = []
    for step in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        out = model(input_ids=ids, attention_mask=mask, **targets)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sync()
        if step >= args.warmup:
            times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    med = times[len(times) // 2]
    gflop = forward_flops(cfg, b, s) * (3 if args.method == "full_ft" else 2) / 1e9
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if dev.type == "cuda":  # device memory is what matters there
        rss = torch.cuda.max_memory_allocated() / 2**20
    row = dict(shape=name, head="span" if args.span else "pooler", backend=f"pytorch-{torch.__version__}-{dev.type}", method=args.method, batch_size=b, seq_len=s,
               threads=torch.get_num_threads(), steps=args.steps, ms_per_step_median=med, ms_per_step_min=times[0],
               examples_per_second=b / (med / 1000), peak_rss_mib=rss,
               gflop_per_step=gflop, gflops_per_second=gflop / (med / 1000),
               trainable_params=sum(p.numel() for p in params))
    # the backend's own matmul rate on the model's largest product, [b*s, H] x [H, I], the better
    # of the flat and the batched form, as repro bench measures it
    m, k, n = b * s, cfg.hidden_size, cfg.intermediate_size
    x, w = torch.randn(m, k, device=dev), torch.randn(k, n, device=dev)

    def median_seconds(product):
        ts = []
        for _ in range(6):
            t0 = time.perf_counter()
            product()
            sync()
            ts.append(time.perf_counter() - t0)
        ts = sorted(ts[1:])
        return ts[len(ts) // 2]

    best = min(median_seconds(lambda: torch.mm(x, w)),
               median_seconds(lambda: torch.matmul(x.view(b, s, k), w.view(1, k, n))))
    row["matmul_gflops_per_second"] = 2 * m * k * n / best / 1e9
    print(json.dumps(row))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/all-MiniLM-L6-v2")
    ap.add_argument("--shape", choices=sorted(SHAPES))
    ap.add_argument("--methods", default="full_ft,bitfit,b_q+b_m2")
    ap.add_argument("--method")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--device", default="cpu", help="cpu or cuda (peak memory: RSS on cpu, max allocated on cuda)")
    ap.add_argument("--span", action="store_true", help="BertForQuestionAnswering (SQuAD) instead of the classifier")
    ap.add_argument("--json")
    ap.add_argument("--one", action="store_true")
    args = ap.parse_args()
    if args.one:
        return one(args)
    rows = []
    for m in args.methods.split(","):
        cmd = [sys.executable, __file__, "--one", "--method", m] + [
            f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
            if k in ("model", "shape", "batch_size", "seq_len", "steps", "warmup", "threads", "device") and v is not None]
        cmd += ["--span"] if args.span else []
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        rows.append(json.loads(out))
    print(f"{'shape':<16} {'backend':<16} {'method':<10} {'batch':>5} {'seq':>4} {'ms/step':>11} {'ex/s':>9} "
          f"{'GFLOP/s':>9} {'% matmul':>12} {'RSS MiB':>8} {'trainable':>9}")
    for r in rows:
        share = f"{100 * r['gflops_per_second'] / r['matmul_gflops_per_second']:.0f}% of {r['matmul_gflops_per_second']:.0f}"
        print(f"{r['shape']:<16} {r['backend']:<16} {r['method']:<10} {r['batch_size']:>5} {r['seq_len']:>4} "
              f"{r['ms_per_step_median']:>11.0f} {r['examples_per_second']:>9.2f} {r['gflops_per_second']:>9.1f} "
              f"{share:>12} {r['peak_rss_mib']:>8.0f} {r['trainable_params']:>9}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
