#!/usr/bin/env python3
"""Side by side: the Rust harness against the independent PyTorch reference trainer.

Usage (from the repository root; standard library only):
  python3 scripts/judge_compare.py --store results/table2 [--store DIR ...] --pytorch results/judge_pytorch
                                   [--headline-only | --all-metrics]

Inputs: harness stores (DIR/runs/<id>/result.json, the `RunResult` of src/finetune/train.rs; run
folders without a readable result.json are skipped and counted) and a folder of PyTorch run JSONs
(*.json written by scripts/reference_trainer.py, same shape). Without --store: every results/*/
folder that holds runs/.

Cells: (task, method, lr, train_size, epochs, batch_size, max_length). MNLI counts as two tasks,
MNLI-m (dev) and MNLI-mm (dev_mismatched). Per run, each dev metric's own maximum over epochs, x100
(the reference code's rule). Diverged runs (flag set, or no finite headline score) are counted and
left out of the means; degenerate runs (constant predictions at the headline's best epoch, earliest on
ties: pred_majority_share == 1.0, or pred_std == 0 for regression) are counted and kept.
Row: harness mean ±std (n), PyTorch mean ±std (n), difference harness − PyTorch with a 95% Welch
interval (Welch–Satterthwaite df, t quantile from the table below), and "agree": |difference| <=
max(std_harness, std_pytorch) (sample std; a side with n < 2 has no std and the row is flagged).

claims.py imports the helpers of this file (run views, method names, Welch interval, formatting).
"""
import argparse
import glob
import json
import math
import os
import sys

HEADLINE = {"CoLA": "mcc", "MRPC": "f1", "QQP": "f1", "STS-B": "spearman"}  # otherwise accuracy
DIAG = ("pred_majority_share", "pred_std")  # prediction diagnostics, not metrics
BIAS_ORDER = ["b_q", "b_k", "b_v", "b_m1", "b_LN1", "b_m2", "b_m3", "b_LN2"]  # BiasKind's Ord
# two-sided 95% t quantiles (t_0.975) by degrees of freedom; linear interpolation in df between
# entries, and linear in 1/df between 120 and infinity
T975 = [(1, 12.706), (2, 4.303), (3, 3.182), (4, 2.776), (5, 2.571), (6, 2.447), (7, 2.365), (8, 2.306),
        (9, 2.262), (10, 2.228), (11, 2.201), (12, 2.179), (13, 2.160), (14, 2.145), (15, 2.131),
        (16, 2.120), (17, 2.110), (18, 2.101), (19, 2.093), (20, 2.086), (21, 2.080), (22, 2.074),
        (23, 2.069), (24, 2.064), (25, 2.060), (26, 2.056), (27, 2.052), (28, 2.048), (29, 2.045),
        (30, 2.042), (40, 2.021), (60, 2.000), (120, 1.980)]
T_INF = 1.960
NAN = float("nan")


def fin(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def method_name(m):
    """The harness's spelling (Method's Display): serde's "bitfit" / {"bias_terms": [...]} /
    {"rand_uniform": {"budget": n}} / {"reference_bias_terms": [...]}, or a PyTorch string."""
    if isinstance(m, dict) and len(m) == 1:
        (k, v), = m.items()
        if k == "bias_terms":
            m = "+".join(v)
        elif k == "reference_bias_terms":
            return "ref:" + ",".join(sorted(v))
        elif k == "rand_uniform":
            b = (v or {}).get("budget")
            return "rand_uniform" if b is None else f"rand_uniform:{b}"
        else:
            return k
    m = str(m)
    if m.startswith("b_"):  # order-free subset: b_m2+b_q == b_q+b_m2
        kinds = sorted(set(m.split("+")), key=lambda k: BIAS_ORDER.index(k) if k in BIAS_ORDER else 99)
        return "+".join(kinds)
    return m


def lr_key(lr):
    return float(f"{float(lr):.10g}")


def default_stores():
    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "results")
    return sorted(os.path.dirname(p.rstrip("/")) for p in glob.glob(os.path.join(root, "*", "runs/")))


def load(path):
    try:
        with open(path) as f:
            r = json.load(f)
        return r if isinstance(r, dict) and "config" in r and "epochs" in r else None
    except (OSError, ValueError):
        return None


def store_runs(store, seen=None, only=None):
    """(runs with a readable result.json, run folders skipped); a run folder already in `seen`
    (the same store named twice) is not read again; with `only` (a set of run folders' real
    paths), every other folder is ignored and not counted"""
    runs, skipped, seen = [], 0, set() if seen is None else seen
    for d in sorted(glob.glob(os.path.join(store, "runs", "*", ""))):
        if os.path.realpath(d) in seen or (only is not None and os.path.realpath(d) not in only):
            continue
        seen.add(os.path.realpath(d))
        r = load(os.path.join(d, "result.json"))
        if r is None:
            skipped += 1
        else:
            runs.append(r)
    return runs, skipped


def views(run):
    """One view per dev split: task (MNLI-m/MNLI-mm for MNLI), headline, values {metric: best over
    epochs x100}, diverged, degenerate, best_epoch (headline, earliest on ties), gap (train − dev
    headline x100 at that epoch; NaN without train scores), run."""
    task = run["config"]["task"]
    head = run.get("headline") or HEADLINE.get(task, "accuracy")
    out = []
    for name, split in ([("MNLI-m", "dev"), ("MNLI-mm", "dev_mismatched")] if task == "MNLI" else [(task, "dev")]):
        eps = [(e, (e.get("dev") or {}).get(split) or {}) for e in run["epochs"]]
        vals = {}
        for m in sorted({k for _, s in eps for k in s if k not in DIAG}):
            xs = [s[m] for _, s in eps if fin(s.get(m))]
            vals[m] = 100 * max(xs) if xs else NAN
        best = None
        for e, s in eps:
            if fin(s.get(head)) and (best is None or s[head] > best[1][head]):
                best = (e, s)
        if best is None and task == "MNLI" and split == "dev_mismatched" and not any(s for _, s in eps):
            continue  # no mismatched dev scored
        deg = best is not None and ((best[1].get("pred_majority_share") or 0) >= 1.0 or best[1].get("pred_std") == 0)
        tr = best and (best[0].get("train") or {}).get(head)
        out.append(dict(task=name, headline=head, values=vals, run=run, degenerate=deg,
                        diverged=bool(run.get("diverged")) or best is None,
                        best_epoch=best and best[0].get("epoch"),
                        gap=100 * (tr - best[1][head]) if fin(tr) else NAN))
    return out


def mean_std(xs):
    n = len(xs)
    if n == 0:
        return NAN, NAN, 0
    m = sum(xs) / n
    return m, (math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1)) if n > 1 else NAN), n


def t975(df):
    if not fin(df) or df > 120:
        return T_INF if not fin(df) else T_INF + (T975[-1][1] - T_INF) * 120 / df
    df = max(df, 1.0)
    for (d0, t0), (d1, t1) in zip(T975, T975[1:]):
        if df <= d1:
            return t0 + (t1 - t0) * (df - d0) / (d1 - d0)
    return T975[-1][1]


def welch(a, b):
    """(mean(a) − mean(b), low, high, df) with a 95% Welch interval; bounds NaN when n < 2 on a side."""
    (ma, sa, na), (mb, sb, nb) = mean_std(a), mean_std(b)
    d = ma - mb
    if na < 2 or nb < 2:
        return d, NAN, NAN, NAN
    va, vb = sa * sa / na, sb * sb / nb
    se = math.sqrt(va + vb)
    den = (va * va / (na - 1) if va else 0) + (vb * vb / (nb - 1) if vb else 0)
    df = (va + vb) ** 2 / den if den > 0 else math.inf
    h = t975(df) * se
    return d, d - h, d + h, df


def fmt_ms(xs, deg=None):
    m, s, n = mean_std(xs)
    if n == 0:
        return "—"
    extra = f", {deg} deg" if deg else ""
    return f"{m:.1f}" + (f" ±{s:.1f}" if fin(s) else "") + f" (n={n}{extra})"


def fmt_diff(a, b):
    if not a or not b:
        return "—"
    d, lo, hi, _ = welch(a, b)
    return f"{d:+.1f} " + (f"[{lo:+.1f}, {hi:+.1f}]" if fin(lo) else "(no CI: n<2)")


def lr_str(lr):
    return f"{lr:g}"


def size_str(s):
    return "full" if s is None else str(s)


def collect(runs, side, acc):
    """acc[cell][side] = list of views"""
    for r in runs:
        c = r["config"]
        for v in views(r):
            key = (v["task"], method_name(c["method"]), lr_key(c["lr"]), c.get("train_size"),
                   c.get("epochs"), c.get("batch_size"), c.get("max_length"))
            acc.setdefault(key, {"H": [], "PT": []})[side].append(v)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", action="append", help="harness store (repeatable); default every results/*/ with runs/")
    ap.add_argument("--pytorch", required=True, help="folder of PyTorch run JSONs")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--headline-only", dest="all_metrics", action="store_false", help="headline metric only (default)")
    g.add_argument("--all-metrics", dest="all_metrics", action="store_true", help="every dev metric on both sides")
    ap.set_defaults(all_metrics=False)
    args = ap.parse_args()
    stores = args.store or default_stores()
    acc, skipped, n_h, seen = {}, 0, 0, set()
    for s in stores:
        runs, sk = store_runs(s, seen)
        skipped, n_h = skipped + sk, n_h + len(runs)
        collect(runs, "H", acc)
    files = sorted(glob.glob(os.path.join(args.pytorch, "*.json")))
    pt = [r for r in map(load, files) if r is not None]
    collect(pt, "PT", acc)
    print(f"# Harness vs PyTorch reference\n\nHarness stores: {', '.join(stores) or '(none)'} — {n_h} runs read, "
          f"{skipped} run folders without a readable result.json skipped. PyTorch: {args.pytorch} — {len(pt)} of "
          f"{len(files)} JSON files read.\n\nRule: per run, each dev metric's own best over epochs ×100; means over "
          "non-diverged runs (degenerate runs kept and counted); Δ = harness − PyTorch with a 95% Welch CI; "
          "agree = |Δ| ≤ max(std_H, std_PT).\n")
    both = [k for k in sorted(acc, key=str) if acc[k]["H"] and acc[k]["PT"]]
    if not both:
        print("No cell has runs on both sides.")
    else:
        print("| task | method | lr | size/ep/bs/len | metric | harness | PyTorch | Δ H−PT [95% CI] | agree "
              "| degenerate H · PT | diverged H · PT |\n|" + "---|" * 11)
    agree = rows = flagged = 0
    notes = []
    for k in both:
        task, method, lr, size, ep, bs, ml = k
        H, P = acc[k]["H"], acc[k]["PT"]
        okH, okP = [v for v in H if not v["diverged"]], [v for v in P if not v["diverged"]]
        head = (okH or H)[0]["headline"]
        metrics = [head] if not args.all_metrics else sorted(
            set().union(*[v["values"] for v in okH]) & set().union(*[v["values"] for v in okP]) | {head},
            key=lambda m: (m != head, m))
        for m in metrics:
            a = [v["values"][m] for v in okH if fin(v["values"].get(m))]
            b = [v["values"][m] for v in okP if fin(v["values"].get(m))]
            sd = [s for s in (mean_std(a)[1], mean_std(b)[1]) if fin(s)]
            rows += 1
            if a and b and sd:
                ok = abs(mean_std(a)[0] - mean_std(b)[0]) <= max(sd)
                agree += ok
                verdict = "yes" if ok else "**no**"
            else:
                verdict = "?"
            if len(a) < 2 or len(b) < 2:
                flagged += 1
                verdict += " (n<2)"
            print(f"| {task} | {method} | {lr_str(lr)} | {size_str(size)}/{ep}/{bs}/{ml} | {m} | {fmt_ms(a)} | {fmt_ms(b)} "
                  f"| {fmt_diff(a, b)} | {verdict} | {sum(v['degenerate'] for v in okH)}/{len(okH)} · "
                  f"{sum(v['degenerate'] for v in okP)}/{len(okP)} | {len(H) - len(okH)} · {len(P) - len(okP)} |")
        for f, label in (("model", "model"), ("eval_size", "eval_size")):
            vals = {side: {os.path.basename(str(v["run"]["config"].get(f)).rstrip("/")) for v in acc[k][side]}
                    for side in ("H", "PT")}
            if vals["H"] != vals["PT"]:
                notes.append(f"- {task} {method} {lr_str(lr)}: {label} differs (harness {sorted(vals['H'])}, "
                             f"PyTorch {sorted(vals['PT'])})")
    if notes:
        print("\nProtocol differences inside matched cells:\n" + "\n".join(notes))
    what = "rows (cell × metric)" if args.all_metrics else "cells"
    print(f"\n**Overall: {agree} of {rows} {what} agree within one standard deviation"
          f"{f'; {flagged} flagged n<2 on a side' if flagged else ''}.**")
    only_h = sum(1 for k in acc if acc[k]["H"] and not acc[k]["PT"])
    only_p = [k for k in sorted(acc, key=str) if acc[k]["PT"] and not acc[k]["H"]]
    print(f"\n{only_h} harness cells have no PyTorch runs. PyTorch cells without harness runs: {len(only_p)}"
          + "".join(f"\n- {t} {m} lr={lr_str(lr)} size={size_str(z)} epochs={ep} bs={bs} len={ml} (n={len(acc[k]['PT'])})"
                    for k in only_p for t, m, lr, z, ep, bs, ml in [k]))

if __name__ == "__main__":
    sys.exit(main())
