#!/usr/bin/env python3
"""The numbers REPRODUCTION.md needs for the paper's six claims (shared/paper/README.md), as Markdown.

Usage (from the repository root; standard library only):
  python3 scripts/claims.py [--store results/table2 --store results/train_size ...]

Inputs: harness stores (DIR/runs/<id>/result.json; folders without a readable result.json are
skipped and counted). Default: every results/*/ folder that holds runs/.

Rules (shared with scripts/judge_compare.py, whose helpers this imports):
- per run, each dev metric's own best over epochs, x100; headline metric: the run's `headline`
  (CoLA mcc, MRPC/QQP f1, STS-B spearman, else accuracy). MNLI counts as MNLI-m and MNLI-mm.
- cells: (model folder, task, method, train_size, lr, epochs, batch_size, max_length), plus the
  other protocol fields (eval_size, schedule, head, padding, min_steps) so that runs of different
  protocols never pool; backends pool, as in `repro report` (every backend passes the same
  PyTorch-equivalence tests; a grid may pin some cells to another backend). Everything but task/method/train_size/lr forms a "setting"; each setting is
  reported on its own.
- diverged runs (flag set, or no finite headline) never enter a mean; degenerate runs (constant
  predictions at the headline's best epoch) do, and are counted ("deg").
- best lr per (setting, task, method, train_size): the lr with the best mean headline over all its
  finished, non-diverged runs; every claim reads the cells at their best lr.
- differences come with a 95% Welch interval ("no CI" where a side has n < 2).
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from judge_compare import (NAN, default_stores, fin, fmt_diff, fmt_ms, lr_str, mean_std, method_name,  # noqa: E402
                           size_str, store_runs, views)

SMALL = {"CoLA", "MRPC", "STS-B", "RTE"}
TASK_ORDER = ["CoLA", "SST-2", "MRPC", "STS-B", "QQP", "MNLI", "MNLI-m", "MNLI-mm", "QNLI", "RTE", "WNLI", "AX"]
CLAIM2 = ["b_q+b_m2", "b_q", "b_m2", "frozen"]


def tkey(t):
    return (TASK_ORDER.index(t) if t in TASK_ORDER else 99, t)


def skey(s):
    return (s is None, s or 0)


def setting_of(c):
    extra = ", ".join(f"{k}={json.dumps(c.get(k))}" for k in ("eval_size", "schedule", "head", "pad_to_max_length", "min_steps"))
    return (os.path.basename(str(c.get("model", "")).rstrip("/")), c.get("epochs"), c.get("batch_size"),
            c.get("max_length"), extra)


def headline(vs):
    return [v["values"].get(v["headline"], NAN) for v in vs]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", action="append", help="harness store (repeatable); default every results/*/ with runs/")
    args = ap.parse_args()
    stores = args.store or default_stores()
    cells, n_runs, skipped, seen = {}, 0, 0, set()  # cells: (setting, task, method, size, lr) -> [views]
    holders = {}  # setting -> names of the stores holding its runs
    for s in stores:
        runs, sk = store_runs(s, seen)
        n_runs, skipped = n_runs + len(runs), skipped + sk
        for r in runs:
            c = r["config"]
            st = setting_of(c)
            holders.setdefault(st, set()).add(os.path.basename(s.rstrip("/")))
            for v in views(r):
                cells.setdefault((st, v["task"], method_name(c["method"]), c.get("train_size"),
                                  float(f"{float(c['lr']):.10g}")), []).append(v)
    print(f"# Claim numbers\n\nStores: {', '.join(stores) or '(none)'} — {n_runs} finished runs read, {skipped} run "
          "folders without a readable result.json skipped.\n")
    if not cells:
        print("No finished runs: nothing to report.")
        return
    # best lr per (setting, task, method, size)
    best = {}
    print("## Learning-rate choice\n\nRule: per (setting, task, method, train size), the lr with the best mean "
          "headline over all finished, non-diverged runs (degenerate included).\n\n"
          "| setting | task | method | size | lr: mean headline (n, deg, diverged) | chosen |\n|---|---|---|---|---|---|")
    groups = {}
    settings = {st: f"S{i + 1}" for i, st in enumerate(sorted({k[0] for k in cells}, key=repr))}
    for (st, task, meth, size, lr), vs in cells.items():
        groups.setdefault((st, task, meth, size), {})[lr] = vs
    for (st, task, meth, size) in sorted(groups, key=lambda k: (int(settings[k[0]][1:]), tkey(k[1]), k[2], skey(k[3]))):
        opts, cand = [], []
        for lr, vs in sorted(groups[(st, task, meth, size)].items()):
            ok = [v for v in vs if not v["diverged"]]
            m = mean_std(headline(ok))[0]
            opts.append(f"{lr_str(lr)}: {m:.1f} ({len(ok)}, {sum(v['degenerate'] for v in ok)}, {len(vs) - len(ok)})"
                        if ok else f"{lr_str(lr)}: — (0, 0, {len(vs)})")
            if ok:
                cand.append((m, -lr, lr, ok))
        if cand:
            _, _, lr, ok = max(cand, key=lambda x: x[:2])
            best[(st, task, meth, size)] = (lr, ok)
        print(f"| {settings[st]} | {task} | {meth} | {size_str(size)} | {'; '.join(opts)} | {lr_str(lr) if cand else '—'} |")

    def cell(st, task, meth, size):
        return best.get((st, task, meth, size), (NAN, []))

    def ms(st, task, meth, size, field=None):
        lr, vs = cell(st, task, meth, size)
        xs = headline(vs) if field is None else [v[field] for v in vs if fin(v[field])]
        return xs, (fmt_ms(xs, sum(v["degenerate"] for v in vs)) + f" @ {lr_str(lr)}" if xs else "—")

    for st in sorted({k[0] for k in best}, key=lambda x: int(settings[x][1:])):
        keys = sorted({(k[1], k[3]) for k in best if k[0] == st}, key=lambda k: (tkey(k[0]), skey(k[1])))
        has = lambda meth: [(t, s) for t, s in keys if (st, t, meth, s) in best]  # noqa: E731
        print(f"\n## Setting {settings[st]}: model={st[0]}, epochs={st[1]}, batch={st[2]}, max_length={st[3]}, "
              f"{st[4]}\n\nRuns from: {', '.join(sorted(holders[st]))}.")
        # ---- claim 1
        print("\n### Claim 1 — BitFit ≈ Full-FT on average; BitFit ≥ Full-FT on the small tasks (*)\n\nInputs: "
              "bitfit and full_ft cells at their best lr, per task and train size; Δ = BitFit − Full-FT, 95% Welch CI; "
              "average over tasks with both (MNLI-m/mm averaged first).\n")
        pairs = [k for k in has("bitfit") if k in has("full_ft")]
        if not pairs:
            print("No task has both bitfit and full_ft runs.")
        else:
            print("| task | size | BitFit | Full-FT | Δ BitFit − Full-FT [95% CI] |\n|---|---|---|---|---|")
            for t, s in pairs:
                a, fa = ms(st, t, "bitfit", s)
                b, fb = ms(st, t, "full_ft", s)
                print(f"| {t}{'*' if t in SMALL else ''} | {size_str(s)} | {fa} | {fb} | {fmt_diff(a, b)} |")
            for s in sorted({s for _, s in pairs}, key=skey):
                per = {t: [mean_std(ms(st, t, m, s)[0])[0] for m in ("bitfit", "full_ft")] for t, z in pairs if z == s}
                if "MNLI-m" in per and "MNLI-mm" in per:
                    per["MNLI"] = [(x + y) / 2 for x, y in zip(per.pop("MNLI-m"), per.pop("MNLI-mm"))]
                ab, af = (sum(p[i] for p in per.values()) / len(per) for i in (0, 1))
                print(f"\nAverage over {len(per)} task(s) ({', '.join(sorted(per, key=tkey))}), size {size_str(s)}: "
                      f"BitFit {ab:.1f}, Full-FT {af:.1f}, Δ {ab - af:+.1f}.")
        # ---- claims 2 and 3
        for title, pick in (("Claim 2 — b_q+b_m2 marginally below BitFit; b_q, b_m2 alone clearly worse; Frozen far worse",
                             lambda m: m in CLAIM2 or (m.startswith(("b_", "ref:")) and m not in CLAIM2)),
                            ("Claim 3 — random subsets (rand_uniform, rand_row_col) clearly worse than BitFit",
                             lambda m: m.startswith("rand_"))):
            print(f"\n### {title}\n\nInputs: each method's cell at its best lr vs the bitfit cell at its best lr, "
                  "same task and size; Δ = method − BitFit, 95% Welch CI.\n")
            meths = sorted({k[2] for k in best if k[0] == st and pick(k[2])},
                           key=lambda m: (CLAIM2.index(m) if m in CLAIM2 else 9, m))
            rows = [(t, s, m) for t, s in has("bitfit") for m in meths if (st, t, m, s) in best]
            if not rows:
                print("No runs of these methods beside BitFit runs of the same task and size.")
                continue
            print("| task | size | method | that method | BitFit | Δ method − BitFit [95% CI] |\n|---|---|---|---|---|---|")
            for t, s, m in rows:
                a, fa = ms(st, t, m, s)
                b, fb = ms(st, t, "bitfit", s)
                print(f"| {t} | {size_str(s)} | {m} | {fa} | {fb} | {fmt_diff(a, b)} |")
        # ---- claim 4
        print("\n### Claim 4 — b_k does not change; b_q and b_m2 change most\n\nInputs: `bias_changes` of the bitfit "
              "runs (non-diverged) at the best lr; per kind the mean |Δb| (mean_abs_delta) over layers and runs; "
              "embeddings/pooler biases left out.\n")
        rows = []
        for t, s in has("bitfit"):
            acc = {}
            for v in cell(st, t, "bitfit", s)[1]:
                for b in v["run"].get("bias_changes") or []:
                    if b.get("kind") and fin(b.get("mean_abs_delta")):
                        acc.setdefault(b["kind"], []).append(b["mean_abs_delta"])
            if acc:
                rows.append((t, s, len(cell(st, t, "bitfit", s)[1]), {k: sum(x) / len(x) for k, x in acc.items()}))
        if not rows:
            print("No bitfit run recorded bias changes.")
        else:
            print("| task | size | runs | kinds ranked by mean abs Δb | b_k / max |\n|---|---|---|---|---|")
            for t, s, n, d in rows:
                rank = sorted(d.items(), key=lambda x: -x[1])
                ratio = f"{d['b_k'] / rank[0][1]:.2e}" if "b_k" in d and rank[0][1] > 0 else "—"
                print(f"| {t} | {size_str(s)} | {n} | {', '.join(f'{k} {x:.2e}' for k, x in rank)} | {ratio} |")
        # ---- claim 5
        print("\n### Claim 5 — BitFit beats Full-FT with little training data; the order flips with more\n\nInputs: "
              "tasks with bitfit and full_ft cells at ≥2 train sizes; best lr chosen per size; Δ = BitFit − Full-FT.\n")
        tasks = sorted({t for t, _ in pairs}, key=tkey) if pairs else []
        tasks = [t for t in tasks if len([s for z, s in pairs if z == t]) >= 2]
        if not tasks:
            print("No task has bitfit and full_ft runs at two or more train sizes.")
        else:
            print("| task | size | BitFit | Full-FT | Δ BitFit − Full-FT [95% CI] |\n|---|---|---|---|---|")
            flips = []
            for t in tasks:
                prev = None
                for s in sorted((s for z, s in pairs if z == t), key=skey):
                    a, fa = ms(st, t, "bitfit", s)
                    b, fb = ms(st, t, "full_ft", s)
                    print(f"| {t} | {size_str(s)} | {fa} | {fb} | {fmt_diff(a, b)} |")
                    d = mean_std(a)[0] - mean_std(b)[0]
                    if prev and (prev[1] > 0) != (d > 0) and d != 0 and prev[1] != 0:
                        flips.append(f"{t}: between size {size_str(prev[0])} ({prev[1]:+.1f}) and {size_str(s)} ({d:+.1f})")
                    prev = (s, d)
            print("\nSign changes of Δ (mean): " + ("; ".join(flips) if flips else "none") + ".")
        # ---- claim 6
        print("\n### Claim 6 — BitFit's generalization gap is smaller\n\nInputs: per run, train − dev headline ×100 "
              "at its single best epoch (headline dev best, earliest on ties), runs with train scores only; bitfit and "
              "full_ft cells at their best lr; Δ = BitFit gap − Full-FT gap.\n")
        if not pairs:
            print("No task has both bitfit and full_ft runs.")
        else:
            out = []
            for t, s in pairs:
                a, fa = ms(st, t, "bitfit", s, "gap")
                b, fb = ms(st, t, "full_ft", s, "gap")
                if a or b:
                    out.append(f"| {t} | {size_str(s)} | {fa} | {fb} | {fmt_diff(a, b)} |")
            print("| task | size | BitFit gap | Full-FT gap | Δ [95% CI] |\n|---|---|---|---|---|\n" + "\n".join(out)
                  if out else "No bitfit/full_ft run recorded train scores.")


if __name__ == "__main__":
    sys.exit(main())
