#!/usr/bin/env python3
"""Write tests/fixtures/squad/eval_case.json: the official SQuAD v1.1 evaluation on a small subset.

What it does: takes a fixed subset of the SQuAD v1.1 dev set (2 paragraphs each of the first two
articles, 36 questions), writes one hand-chosen prediction per question that exercises one rule of
the official metric (case, articles, punctuation, whitespace, partial token overlap, a wrong or empty
answer, a match against the second/third gold answer only, non-ASCII text, a question left
unanswered, ...), then runs the *official* evaluation script `evaluate-v1.1.py` (Rajpurkar et al.)
on them: its `evaluate(dataset, predictions)` totals, and per question
`metric_max_over_ground_truths(exact_match_score | f1_score, prediction, golds)`. It also records
the official `normalize_answer` of a dozen tricky strings. The Rust SQuAD metric is tested against
this file.

The official script is not part of this repository; it is loaded with importlib from the path
given by --official (e.g. extracted from allenai/bi-att-flow, squad/evaluate-v1.1.py). As a
cross-check the script is also run as a program on the written subset and predictions, and its
printed totals must equal those of the imported `evaluate`.

Run by hand (not in CI), from the repository root:

    .venv-torch/bin/python scripts/squad_eval_fixture.py --official /path/to/evaluate-v1.1.py \
        --dev ../shared/data/squad/dev-v1.1.json

Any Python 3 runs it (standard library only).
"""
import argparse
import contextlib
import hashlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import tempfile

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "squad")

# (article index, paragraph index) of dev-v1.1.json; whole paragraphs, all their questions
SUBSET = [(0, 4), (0, 15), (1, 0), (1, 1)]

# qid -> (prediction, the rule it tests); a qid of the subset that is absent here is unanswered
PREDICTIONS = {
    # Super_Bowl_50, paragraph 4 (Roger Goodell)
    "56be53b8acb8001400a50314": ("Roger Goodell", "exact gold text"),
    "56be53b8acb8001400a50315": ("50th Super Bowl", "article removed: gold 'the 50th Super Bowl' (normalises equal)"),
    "56be53b8acb8001400a50316": ("  2012 \t\n", "extra whitespace (leading spaces, trailing tab and newline)"),
    "56beafca3aeaaa14008c9207": ("ROGER GOODELL", "different case"),
    "56beafca3aeaaa14008c9208": ("the early 2012", "article added in front of gold 'early 2012'"),
    "56bf42f53aeaaa14008c95a3": ("Commissioner Roger Goodell", "partial: one token more than 'Roger Goodell' (F1 0.8)"),
    "56d2053ae7d4791d00902610": ("Roger", "partial: one token less than 'Roger Goodell' (F1 2/3)"),
    "56d6edd00d65d21400198250": ("Goodell", "matches only the third gold answer 'Goodell' exactly"),
    "56d6edd00d65d21400198251": ("an important game for us as a league",
                                 "matches only the second gold answer (its leading article goes too)"),
    "56d98d0adc89441400fdb54e": ('"spectacular"', "ASCII punctuation added (double quotes)"),
    # "56d98d0adc89441400fdb54f" is left out: unanswered, counts 0 in EM and F1 and in the denominator
    # Super_Bowl_50, paragraph 15 (Panthers playoffs, en dashes in scores)
    "56beb6f23aeaaa14008c92a1": ("The Seattle Seahawks", "article 'The' (capitalised) in the prediction, also a gold"),
    "56beb6f23aeaaa14008c92a2": ("Arizona", "partial: one token of 'Arizona Cardinals' (F1 2/3)"),
    "56beb6f23aeaaa14008c92a3": ("487 yards", "partial: one token more than '487' (F1 2/3)"),
    "56beb6f23aeaaa14008c92a4": ("7", "wrong answer ('7' for 'seven')"),
    "56beb6f23aeaaa14008c92a5": ("31–24", "non-ASCII: exact gold with an en dash (U+2013)"),
    "56bf34293aeaaa14008c9559": ("", "empty prediction"),
    "56bf34293aeaaa14008c955a": ("31-24", "ASCII hyphen for the gold's en dash: '-' is removed ('3124'), '–' is not "
                                 "('31–24'), so EM 0 and F1 0"),
    "56bf34293aeaaa14008c955b": ("487,", "trailing comma removed as punctuation"),
    "56d701280d65d214001982b8": ("seahawks", "lower case of the third gold 'Seahawks'"),
    "56d701280d65d214001982ba": ("the Cardinals of Arizona", "bag of tokens: order ignored, one extra token (F1 0.8)"),
    "56d701280d65d214001982bc": ("seven seven", "repeated token: Counter intersection counts 'seven' once "
                                 "(precision 1/2, F1 2/3)"),
    "56d99e78dc89441400fdb616": ("Seattle", "partial: best over golds is 'Seattle Seahawks' (F1 2/3), 0 against "
                                 "'Seahawks'"),
    "56d99e78dc89441400fdb618": ("49 – 15", "spaced en dash: '–' is its own token, not punctuation (F1 0)"),
    "56d99e78dc89441400fdb619": ("Seattle Seahawks", "matches only the second gold 'the Seattle Seahawks'"),
    "56d99e78dc89441400fdb61a": ("four hundred eighty-seven", "wrong answer (number in words)"),
    # Warsaw, paragraph 0 (Polish names)
    "5733a5f54776f41900660f45": ("the Nobel Prize.", "article added and trailing period"),
    "5733a5f54776f41900660f48": ("in 1745", "'in' is not an article: one token more (F1 2/3)"),
    "5733a5f54776f41900660f44": ("Maria Sklodowska-Curie", "non-ASCII: accents dropped ('l' for 'ł') are NOT "
                                 "normalised away: EM 0, F1 1/2"),
    "5733a5f54776f41900660f46": ("a famous musician", "singular vs gold 'Famous musicians': one token in common "
                                 "(F1 1/2)"),
    "5733a5f54776f41900660f47": ("seven months", "partial: one token less than 'seven months old' (F1 0.8)"),
    # Warsaw, paragraph 1 (gardens)
    "57336755d058e614000b5a3d": ("over 100 different species", "partial against 'over 100' (F1 2/3) and '100' "
                                 "(F1 0.4): the best gold counts"),
    "57336755d058e614000b5a3f": ("the KRASIŃSKI Palace Garden", "non-ASCII upper case (Ń lowercases to ń) plus an "
                                 "article"),
    "57336755d058e614000b5a3c": ("Saxon  Garden", "double space inside; matches the second gold 'Saxon Garden'"),
    "57336755d058e614000b5a3e": ("east end —", "non-ASCII punctuation appended: the em dash (U+2014) is not in "
                                 "string.punctuation and stays a token (F1 0.8)"),
    "57336755d058e614000b5a40": ("“Łazienki Park”", "unicode curly quotes are not removed: '“łazienki' and 'park”' "
                                 "match nothing (F1 0)"),
    # not a question of the subset: the official script ignores predictions for unknown ids
    "not-a-question-of-the-dataset": ("anything", "prediction for an id absent from the dataset: ignored"),
}

NORMALIZE = [
    "The",
    "theater",
    "an apple",
    "A an THE a",
    "Then, the ANTHEM of an anteater",
    "the.cat",
    "A.B.C",
    "U.S.",
    "don't",
    "“quoted” ‘single’",
    "31–24 — 49‑15",
    "–the–",
    "éthe the1 _the_",
    "  multiple   spaces\tand\ttabs\nand\r\nnewlines  ",
    "no\u00a0break\u00a0space",
    "Łazienki ŁÓDŹ İstanbul",
    "$5 million (approx.)!",
    "",
]


def load_official(path):
    spec = importlib.util.spec_from_file_location("squad_official_v1_1", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for name in ("normalize_answer", "f1_score", "exact_match_score", "metric_max_over_ground_truths", "evaluate"):
        assert hasattr(mod, name), f"{path} has no {name}: not the official v1.1 script?"
    src = open(path, encoding="utf-8").read()
    for needle in ("Official evaluation script for v1.1 of the SQuAD dataset", "expected_version = '1.1'",
                   "def remove_articles", "def white_space_fix", "def remove_punc", "def lower"):
        assert needle in src, f"{path} lacks {needle!r}: not the official v1.1 script?"
    return mod, hashlib.sha256(src.encode("utf-8")).hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--official", required=True, help="path to the official evaluate-v1.1.py")
    ap.add_argument("--dev", required=True, help="path to dev-v1.1.json")
    ap.add_argument("--official-origin", default="allenai/bi-att-flow squad/evaluate-v1.1.py at commit "
                    "49004549e9a88b78c359b31481afa7792dbb3f4a", help="where the official script came from (recorded)")
    ap.add_argument("--out", default=os.path.join(OUT, "eval_case.json"))
    args = ap.parse_args()

    official, sha = load_official(args.official)
    with open(args.dev, encoding="utf-8") as f:
        dev = json.load(f)
    assert dev["version"] == "1.1"

    data = []
    for ai, pi in SUBSET:
        art = dev["data"][ai]
        if not data or data[-1]["title"] != art["title"]:
            data.append({"title": art["title"], "paragraphs": []})
        data[-1]["paragraphs"].append(art["paragraphs"][pi])
    qids = [qa["id"] for a in data for p in a["paragraphs"] for qa in p["qas"]]
    golds = {qa["id"]: [x["text"] for x in qa["answers"]] for a in data for p in a["paragraphs"] for qa in p["qas"]}
    unknown = [q for q in PREDICTIONS if q not in golds]
    assert unknown == ["not-a-question-of-the-dataset"], unknown
    missing = [q for q in qids if q not in PREDICTIONS]
    assert missing == ["56d98d0adc89441400fdb54f"], missing

    predictions = {q: p for q, (p, _) in PREDICTIONS.items()}
    rules = {q: r for q, (_, r) in PREDICTIONS.items()}
    for q in missing:
        rules[q] = "missing from predictions: 0 for EM and F1, still counted in the denominator (the official " \
                   "script prints 'Unanswered question <id> will receive score 0.' to stderr)"

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        totals = official.evaluate(data, predictions)
    messages = [m for m in err.getvalue().splitlines() if m]
    assert messages == [f"Unanswered question {q} will receive score 0." for q in missing], messages

    per_question = {}
    for q in qids:
        if q in predictions:
            em = official.metric_max_over_ground_truths(official.exact_match_score, predictions[q], golds[q])
            f1 = official.metric_max_over_ground_truths(official.f1_score, predictions[q], golds[q])
        else:
            em, f1 = 0, 0
        per_question[q] = {"exact_match": float(em), "f1": float(f1)}
    # the totals are the per-question means in percent, over every question of the dataset
    n = len(qids)
    em_mean = 100.0 * sum(v["exact_match"] for v in per_question.values()) / n
    f1_mean = 100.0 * sum(v["f1"] for v in per_question.values()) / n
    assert abs(em_mean - totals["exact_match"]) < 1e-9 and abs(f1_mean - totals["f1"]) < 1e-9

    dataset = {"version": "1.1", "data": data}
    # cross-check: the official script run as a program on the written files prints the same totals
    with tempfile.TemporaryDirectory() as tmp:
        dpath, ppath = os.path.join(tmp, "dataset.json"), os.path.join(tmp, "predictions.json")
        with open(dpath, "w", encoding="utf-8") as f:
            json.dump(dataset, f)
        with open(ppath, "w", encoding="utf-8") as f:
            json.dump(predictions, f)
        run = subprocess.run([sys.executable, args.official, dpath, ppath], capture_output=True, text=True,
                             check=True)
        cli = json.loads(run.stdout.strip().splitlines()[-1])
        assert cli == totals, (cli, totals)

    normalize = [[s, official.normalize_answer(s)] for s in NORMALIZE]

    out = {
        "source": ("scripts/squad_eval_fixture.py: SQuAD v1.1 dev-v1.1.json, paragraphs "
                   + ", ".join(f"data[{a}].paragraphs[{p}]" for a, p in SUBSET)
                   + " (all their questions); hand-written predictions; scores by the official evaluate-v1.1.py "
                   "(Rajpurkar et al.; sha256 " + sha + ", from " + args.official_origin + ") "
                   "imported with importlib: evaluate(dataset['data'], predictions) for the totals, "
                   "metric_max_over_ground_truths(exact_match_score | f1_score, prediction, golds) per question "
                   "(True/False -> 1.0/0.0), and normalize_answer for 'normalize'; the script run as a program "
                   "printed the same totals"),
        "dataset": dataset,
        "predictions": predictions,
        "rules": rules,
        "official": {"exact_match": totals["exact_match"], "f1": totals["f1"]},
        "unanswered_messages": messages,
        "per_question": per_question,
        "normalize": normalize,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"{n} questions, {len(predictions)} predictions, official totals {totals}")
    for q in qids:
        v = per_question[q]
        print(f"  {q}  EM {v['exact_match']:.0f}  F1 {v['f1']:.4f}  {predictions.get(q)!r}  <- {golds[q]}")
    for s, t in normalize:
        print(f"  normalize {s!r} -> {t!r}")
    print("written", os.path.abspath(args.out), os.path.getsize(args.out), "bytes")


if __name__ == "__main__":
    main()
