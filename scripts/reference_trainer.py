#!/usr/bin/env python3
"""Independent PyTorch reference trainer: BitFit / full fine-tuning of a BERT checkpoint on GLUE,
following the BitFit reference code (benzakenelad/BitFit, run_glue.py + glue_evaluator.py), as a
judge beside the Rust harness. Offline: nothing is downloaded.

What it does (see shared/paper/README.md): transformers' BertForSequenceClassification (eager
attention) with every encoder tensor from <model>/model.safetensors and a fresh classifier
(N(0, initializer_range) weight, zero bias, seeded by the run seed); only the tensors of the method
train (scripts/reference_methods.py: full_ft, bitfit, frozen, bias subsets such as b_q+b_m2;
rand_uniform and rand_row_col through gradient masks, masked before clipping);
transformers-4.2.1's AdamW (betas 0.9/0.999, eps 1e-6 added to sqrt(v) before the bias correction,
weight decay 0; class ReferenceAdamW below), constant lr, clip_grad_norm_ 1.0 over
the trainable tensors, dropout on, batch 8, a seeded shuffle each epoch, cross-entropy (MSE for
STS-B); after every epoch train (unless --no-eval-train) and dev are scored in eval mode, batch 64,
with the harness's metrics (fractions, not x100). GLUE TSV columns and label orders mirror
src/data.rs; batches pad to their longest member (the harness's default) unless
--pad-to-max-length (the reference code's padding).

--train-size N takes a numpy-seeded (--data-seed) random subset of train; it is NOT the Rust
harness's subset (that one uses Rust's StdRng). --eval-size N keeps the first N dev rows.

Usage (from the repository root):
  python3 scripts/reference_trainer.py --task RTE --method bitfit --lr 1e-3 --seed 0 --out r.json
  python3 scripts/reference_trainer.py --run RTE:bitfit:1e-3:0 --run RTE:full_ft:2e-5:0 --out-dir DIR
  python3 scripts/reference_trainer.py --grid "task=RTE,MRPC;methods=bitfit:1e-3,full_ft:2e-5;seeds=0,1,2" \
      --out-dir DIR            # one JSON per run: DIR/<task>[-<train size>]_<method>_<lr>_<seed>.json
--check-frozen asserts that every non-trainable tensor is bit-identical after training; --help lists the rest.
Needs torch, transformers (tested: 5.17 with torch 2.11), tokenizers, safetensors, numpy, scipy, scikit-learn.
"""
import argparse
import copy
import json
import math
import os
import random
import sys
import tempfile
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_methods import bias_kind, gradient_masks, trainable  # noqa: E402

# ---------------------------------------------------------------- GLUE TSV (mirrors src/data.rs)
BINARY, NLI2 = ["0", "1"], ["entailment", "not_entailment"]
# task: (text_a column, text_b column, label column, labels in output-unit order ([] = regression),
#        metrics with the headline first). CoLA train/dev have no header: columns by index.
TASKS = {
    "CoLA": (3, None, 1, BINARY, ["mcc", "accuracy"]),
    "SST-2": ("sentence", None, "label", BINARY, ["accuracy"]),
    "MRPC": ("#1 String", "#2 String", "Quality", BINARY, ["f1", "accuracy"]),
    "STS-B": ("sentence1", "sentence2", "score", [], ["spearman", "pearson"]),
    "QQP": ("question1", "question2", "is_duplicate", BINARY, ["f1", "accuracy"]),
    "QNLI": ("question", "sentence", "label", NLI2, ["accuracy"]),
    "RTE": ("sentence1", "sentence2", "label", NLI2, ["accuracy"]),
    "WNLI": ("sentence1", "sentence2", "label", BINARY, ["accuracy"]),
}


def task_name(s):
    norm = lambda x: x.lower().replace("-", "").replace("_", "")  # noqa: E731
    for t in TASKS:
        if norm(t) == norm(s):
            return t
    raise SystemExit(f"unknown task {s!r}; valid: {', '.join(TASKS)} (MNLI is not supported here)")


def read_tsv(task, path):
    """[(text_a, text_b or None, label)] of one GLUE TSV file: quoting off, plain tab split, BOM
    stripped, empty lines skipped, labels parsed as the Rust reader does."""
    col_a, col_b, col_label, labels, _ = TASKS[task]
    with open(path, encoding="utf-8", newline="") as f:  # newline="": split on \n only, as Rust
        text = f.read().removeprefix("\ufeff")
    lines = [ln[:-1] if ln.endswith("\r") else ln for ln in text.split("\n")]
    if task != "CoLA":
        cols = [c.strip() for c in lines.pop(0).split("\t")]

        def find(name):
            if name not in cols:
                raise SystemExit(f"{path}: header has no column {name!r} (columns: {cols}); is this {task}?")
            return cols.index(name)

        col_a, col_b, col_label = find(col_a), (find(col_b) if col_b else None), find(col_label)
    needed = max(c for c in (col_a, col_b, col_label) if c is not None) + 1
    out = []
    for i, ln in enumerate(lines, start=1 if task == "CoLA" else 2):
        if not ln:
            continue
        f = ln.split("\t")
        if len(f) < needed:
            if task == "QQP":
                continue  # HF's QqpProcessor skips QQP's malformed rows
            raise SystemExit(f"{path}:{i}: {len(f)} columns, expected at least {needed}")
        raw = f[col_label].strip()
        if not labels:
            y = float(np.float32(float(raw)))  # the harness parses STS-B scores as f32
        elif raw in labels:
            y = labels.index(raw)
        else:
            raise SystemExit(f"{path}:{i}: label {raw!r} is not one of {labels} for {task}")
        out.append((f[col_a], f[col_b] if col_b is not None else None, y))
    return out


def load_task(task, args, tok):
    """Train and dev examples of a task, tokenised: {split: (encodings, labels)}."""
    root = os.path.join(args.data, task)
    train = read_tsv(task, os.path.join(root, "train.tsv"))
    if args.train_indices:  # the harness's own subset: `repro data TASK --subset N --data-seed S`
        train = [train[i] for i in args.train_index_list]
    elif args.train_size is not None and args.train_size < len(train):
        keep = np.sort(np.random.RandomState(args.data_seed).permutation(len(train))[: args.train_size])
        train = [train[i] for i in keep]
    dev = read_tsv(task, os.path.join(root, "dev.tsv"))[: args.eval_size]
    out = {}
    for split, ex in (("train", train), ("dev", dev)):
        encs = tok.encode_batch([(a, b) if b is not None else a for a, b, _ in ex])
        out[split] = ([(e.ids, e.type_ids) for e in encs], [y for _, _, y in ex])
    return out


def load_tokenizer(model_dir, max_length):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.enable_truncation(max_length, stride=0, strategy="longest_first", direction="right")
    tok.no_padding()
    return tok


def collate(items, pad_id, pad_to, device):
    """input_ids, token_type_ids, attention_mask of a batch padded to its longest member (or pad_to)."""
    length = max([len(ids) for ids, _ in items] + [pad_to or 0])
    ids = torch.full((len(items), length), pad_id, dtype=torch.long)
    tt = torch.zeros((len(items), length), dtype=torch.long)
    mask = torch.zeros((len(items), length), dtype=torch.long)
    for r, (i, t) in enumerate(items):
        ids[r, : len(i)], tt[r, : len(t)], mask[r, : len(i)] = torch.tensor(i), torch.tensor(t), 1
    return ids.to(device), tt.to(device), mask.to(device)


# ---------------------------------------------------------------- model
def load_base(model_dir):
    """BertForSequenceClassification with every encoder tensor from model.safetensors (checked)."""
    from safetensors.torch import load_file
    from transformers import BertConfig, BertForSequenceClassification

    with open(os.path.join(model_dir, "config.json")) as f:
        config = BertConfig(**{k: v for k, v in json.load(f).items() if k != "architectures"})
    config._attn_implementation = "eager"
    model = BertForSequenceClassification(config)
    sd = load_file(os.path.join(model_dir, "model.safetensors"))
    sd = {(k if k.startswith("bert.") else "bert." + k): v for k, v in sd.items() if not k.startswith("classifier.")}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    unexpected = [k for k in unexpected if not k.endswith(".position_ids")]  # a buffer old checkpoints saved
    missing = [k for k in missing if not k.startswith("classifier.")]
    if missing or unexpected:
        raise SystemExit(f"{model_dir}: checkpoint does not match BERT: missing {missing}, unexpected {unexpected}")
    impl = getattr(model.config, "_attn_implementation", None)
    if impl not in (None, "eager"):
        raise SystemExit(f"attention implementation is {impl!r}, not eager")
    return model


def make_model(base, num_labels, seed):
    model = copy.deepcopy(base)
    torch.manual_seed(seed)
    model.classifier = torch.nn.Linear(model.config.hidden_size, num_labels)
    torch.nn.init.normal_(model.classifier.weight, 0.0, model.config.initializer_range)
    torch.nn.init.zeros_(model.classifier.bias)
    model.num_labels = model.config.num_labels = num_labels
    return model


# ---------------------------------------------------------------- metrics (as src/metrics.rs)
def score(task, labels, preds):
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    y, p, m = np.asarray(labels), np.asarray(preds), {}
    for name in TASKS[task][4]:
        if name in ("pearson", "spearman"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                v = (pearsonr if name == "pearson" else spearmanr)(p, y)[0] if len(y) >= 2 else 0.0
            m[name] = 0.0 if not np.isfinite(v) else float(v)  # the harness: 0 when undefined
        elif name == "accuracy":
            m[name] = float(accuracy_score(y, p))
        elif name == "f1":
            m[name] = float(f1_score(y, p, pos_label=1, average="binary", zero_division=0))
        else:
            m[name] = float(matthews_corrcoef(y, p))
    if TASKS[task][3]:
        m["pred_majority_share"] = float(np.bincount(p).max() / max(len(p), 1)) if len(p) else 0.0
    else:
        m["pred_std"] = float(np.std(p)) if len(p) else 0.0
    return m


@torch.no_grad()
def evaluate(model, task, split, pad_id, pad_to, device):
    model.eval()
    encs, labels = split
    outs = []
    for s in range(0, len(encs), 64):
        ids, tt, mask = collate(encs[s : s + 64], pad_id, pad_to, device)
        outs.append(model(input_ids=ids, token_type_ids=tt, attention_mask=mask).logits.float().cpu())
    logits = torch.cat(outs) if outs else torch.zeros(0, 1)
    preds = logits.view(-1).double().numpy() if not TASKS[task][3] else logits.argmax(1).numpy()
    return score(task, labels, preds)


# ---------------------------------------------------------------- one run
class ReferenceAdamW(torch.optim.Optimizer):
    """transformers 4.2.1's AdamW, the reference code's optimizer (torch.optim.AdamW differs: it
    adds eps after the bias correction). Weight decay 0, so the decoupled decay term is omitted."""

    def __init__(self, params, lr, betas=(0.9, 0.999), eps=1e-6):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if not st:
                    st["step"], st["m"], st["v"] = 0, torch.zeros_like(p), torch.zeros_like(p)
                st["step"] += 1
                st["m"].mul_(b1).add_(p.grad, alpha=1.0 - b1)
                st["v"].mul_(b2).addcmul_(p.grad, p.grad, value=1.0 - b2)
                denom = st["v"].sqrt().add_(group["eps"])
                step_size = group["lr"] * math.sqrt(1.0 - b2 ** st["step"]) / (1.0 - b1 ** st["step"])
                p.addcdiv_(st["m"], denom, value=-step_size)


def run_one(base, data, task, method, lr, seed, args, device, pad_id):
    t_start = time.time()
    random.seed(seed)
    np.random.seed(seed)
    labels_list = TASKS[task][3]
    regression = not labels_list
    model = make_model(base, 1 if regression else len(labels_list), seed).to(device)
    torch.manual_seed(seed)  # dropout stream
    for name, p in model.named_parameters():
        p.requires_grad_(trainable(method, name))
    params = [p for p in model.parameters() if p.requires_grad]
    # rand_uniform, rand_row_col: gradients masked before clipping, as the reference does (no
    # weight decay, so a masked scalar never moves)
    grad_masks = gradient_masks(method, list(model.named_parameters()), seed)
    if grad_masks:
        freed = sum(int(m.sum()) for m in grad_masks.values())
        print(f"  {method}: {freed} scalars freed in {len(grad_masks)} tensors", flush=True)
    masked = [(p, grad_masks[n]) for n, p in model.named_parameters() if n in grad_masks]  # once, not per step
    opt = ReferenceAdamW(params, lr=float(lr), betas=(0.9, 0.999), eps=1e-6)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad} if args.check_frozen else {}
    biases = {n: p.detach().cpu().clone() for n, p in model.named_parameters() if n.startswith("bert.") and n.endswith(".bias")}
    loss_fn = torch.nn.MSELoss() if regression else torch.nn.CrossEntropyLoss()
    pad_to = args.max_length if args.pad_to_max_length else None
    encs, ys = data["train"]
    order_rng = np.random.RandomState(seed)
    epochs, steps, diverged = [], 0, False
    n_epochs = max(args.epochs, math.ceil((args.min_steps or 0) / math.ceil(len(encs) / args.batch_size)))
    for epoch in range(1, n_epochs + 1):
        t0, loss_sum, n_steps = time.time(), 0.0, math.ceil(len(encs) / args.batch_size)
        model.train()
        order = order_rng.permutation(len(encs))
        for s in range(0, len(encs), args.batch_size):
            idx = order[s : s + args.batch_size]
            ids, tt, mask = collate([encs[i] for i in idx], pad_id, pad_to, device)
            y = torch.tensor([ys[i] for i in idx], dtype=torch.float32 if regression else torch.long, device=device)
            logits = model(input_ids=ids, token_type_ids=tt, attention_mask=mask).logits
            loss = loss_fn(logits.view(-1), y) if regression else loss_fn(logits.view(-1, logits.shape[-1]), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            for p, m in masked:
                p.grad.mul_(m)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            steps += 1
            lv = loss.item()
            if not math.isfinite(lv):
                diverged = True
                break
            loss_sum += lv
        if diverged:
            print(f"  {task} {method} lr={lr} seed={seed}: non-finite loss in epoch {epoch}; stopped", flush=True)
            break
        train = evaluate(model, task, data["train"], pad_id, pad_to, device) if not args.no_eval_train else None
        dev = evaluate(model, task, data["dev"], pad_id, pad_to, device)
        rec = dict(epoch=epoch, train_loss=loss_sum / max(n_steps, 1), train=train, dev={"dev": dev}, seconds=time.time() - t0)
        epochs.append(rec)
        fmt = lambda m: " ".join(f"{k}={v:.4f}" for k, v in m.items())  # noqa: E731
        print(f"{task} {method} lr={lr} seed={seed} epoch {epoch}/{n_epochs} loss={rec['train_loss']:.4f} "
              f"| dev {fmt(dev)}" + (f" | train {fmt(train)}" if train else "") + f" ({rec['seconds']:.1f}s)", flush=True)
    headline = TASKS[task][4][0]
    key = lambda e: (e["dev"]["dev"][headline] if math.isfinite(e["dev"]["dev"][headline]) else -math.inf, -e["epoch"])  # noqa: E731
    best = max(epochs, key=key)["epoch"] if epochs else 0
    bias_changes = []  # Fig. 1: mean |b_final - b_initial| of every encoder bias, as the harness records it
    for n, p in ((n, p) for n, p in model.named_parameters() if n in biases):
        kind = bias_kind(n[5:])
        bias_changes.append(dict(name=n[5:], kind=kind and kind[1], layer=kind and kind[0],
                                 mean_abs_delta=(p.detach().cpu() - biases[n]).abs().double().mean().item()))
    frozen_check = None
    if args.check_frozen:  # the optimizer never sees them, so they must not move by a single bit
        changed = [n for n, p in model.named_parameters() if n in frozen and not torch.equal(p.detach(), frozen[n])]
        if changed:
            raise AssertionError(f"{len(changed)} non-trainable tensors changed: {changed[:10]}")
        frozen_check = dict(tensors=len(frozen), changed=0)
        print(f"  check-frozen: {len(frozen)} non-trainable tensors bit-identical", flush=True)
    n_train, n_total = sum(p.numel() for p in params), sum(p.numel() for p in model.parameters())
    if grad_masks:  # the scalars the masks free, plus the unmasked head
        n_train = sum(int(m.sum()) for m in grad_masks.values()) + sum(
            p.numel() for n, p in model.named_parameters() if p.requires_grad and n not in grad_masks)
    import transformers

    return {
        "trainer": "pytorch-reference", "torch": torch.__version__, "transformers": transformers.__version__,
        "device": str(device),
        "config": dict(task=task, method=method, lr=float(lr), seed=seed, epochs=args.epochs, min_steps=args.min_steps, batch_size=args.batch_size,
                       max_length=args.max_length, pad_to_max_length=args.pad_to_max_length, train_size=args.train_size,
                       data_seed=args.data_seed, eval_size=args.eval_size, model=args.model, data=args.data),
        "epochs": epochs, "best_epoch": best, "headline": headline, "trainable_params": n_train,
        "total_params": n_total, "trainable_share": n_train / n_total, "train_examples": len(encs), "steps": steps,
        "wall_seconds": time.time() - t_start, "diverged": diverged, "bias_changes": bias_changes,
        "frozen_check": frozen_check,
    }


def write_json(obj, path):
    """Atomically (temp + rename); NaN/inf become null, as the harness's serde_json writes them."""
    def clean(o):
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items()}
        if isinstance(o, list):
            return [clean(v) for v in o]
        return None if isinstance(o, float) and not math.isfinite(o) else o

    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(clean(obj), f, indent=1, allow_nan=False)
    os.replace(tmp, path)


def parse_runs(args):
    runs = []
    for r in args.run or []:
        parts = r.split(":")
        if len(parts) != 4:
            raise SystemExit(f"--run {r!r}: expected TASK:METHOD:LR:SEED")
        runs.append((task_name(parts[0]), parts[1], parts[2], int(parts[3])))
    if args.grid:
        g = dict(kv.split("=", 1) for kv in args.grid.split(";"))
        tasks = g.get("task") or g.get("tasks")
        for t in tasks.split(","):
            for ml in g["methods"].split(","):
                m, lr = ml.rsplit(":", 1)
                runs += [(task_name(t), m, lr, int(s)) for s in g.get("seeds", "0").split(",")]
    if args.task:
        runs.append((task_name(args.task), args.method, args.lr, args.seed))
    for _, m, lr, _ in runs:
        trainable(m, "bert.encoder.layer.0.attention.self.query.bias")  # fails early on an unknown method
        float(lr)
    return runs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/all-MiniLM-L6-v2")
    ap.add_argument("--data", default=None, help="GLUE TSV folder (default ../shared/data/glue, else shared/data/glue)")
    ap.add_argument("--task")
    ap.add_argument("--method", default="bitfit")
    ap.add_argument("--lr", default="1e-3")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--run", action="append", help="TASK:METHOD:LR:SEED (repeatable)")
    ap.add_argument("--grid", help='"task=RTE,MRPC;methods=bitfit:1e-3,full_ft:2e-5;seeds=0,1,2"')
    ap.add_argument("--out", help="JSON file (one run only)")
    ap.add_argument("--out-dir", help="folder for <task>_<method>_<lr>_<seed>.json per run")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--pad-to-max-length", action="store_true")
    ap.add_argument("--train-size", type=int)
    ap.add_argument("--train-indices", help="JSON list of training rows to use (the harness's subset; see --train-size)")
    ap.add_argument("--min-steps", type=int, help="floor on optimizer steps: more epochs for small training sets (as the harness)")
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--eval-size", type=int)
    ap.add_argument("--no-eval-train", action="store_true")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--check-frozen", action="store_true")
    args = ap.parse_args()
    if args.data is None:
        args.data = next((d for d in ("../shared/data/glue", "shared/data/glue") if os.path.isdir(d)), "../shared/data/glue")
    runs = parse_runs(args)
    if not runs:
        ap.error("give --task, --run or --grid")
    if args.out and len(runs) != 1:
        ap.error("--out takes one run; use --out-dir for several")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    tok = load_tokenizer(args.model, args.max_length)
    pad_id = tok.token_to_id("[PAD]") or 0
    base = load_base(args.model)
    if args.train_indices:  # read once: it may be a pipe (`<(repro data …)`)
        with open(args.train_indices) as f:
            args.train_index_list = json.load(f)
        args.train_size = len(args.train_index_list)
    data = {}
    for task, method, lr, seed in runs:
        # a training subset is part of the name, so that runs of one cell at two sizes never share a file
        size = f"-{args.train_size}" if args.train_size is not None else ""
        dest = args.out or os.path.join(args.out_dir or ".", f"{task}{size}_{method}_{lr}_{seed}.json")
        if os.path.exists(dest) and not args.out:
            print(f"{dest} exists: skipped", flush=True)
            continue
        if task not in data:
            data[task] = load_task(task, args, tok)
        res = run_one(base, data[task], task, method, lr, seed, args, device, pad_id)
        print(f"{task} {method} lr={lr} seed={seed}: best epoch {res['best_epoch']} dev "
              f"{res['headline']}={res['epochs'][res['best_epoch'] - 1]['dev']['dev'][res['headline']] if res['best_epoch'] else float('nan'):.4f} "
              f"({res['trainable_params']}/{res['total_params']} trainable, {res['wall_seconds']:.0f}s)", flush=True)
        if args.out or args.out_dir:
            write_json(res, dest)


if __name__ == "__main__":
    main()
