"""Which HF parameters each method trains, as the BitFit reference code selects them (shared by
make_fixtures.py, bench_pytorch.py and reference_trainer.py; the Rust side is
src/finetune/method.rs)."""
import re

PAPER_BIAS = {
    "b_q": "attention.self.query.bias",
    "b_k": "attention.self.key.bias",
    "b_v": "attention.self.value.bias",
    "b_m1": "attention.output.dense.bias",
    "b_LN1": "attention.output.LayerNorm.bias",
    "b_m2": "intermediate.dense.bias",
    "b_m3": "output.dense.bias",
    "b_LN2": "output.LayerNorm.bias",
}

_LAYER = re.compile(r"(?:bert\.)?encoder\.layer\.(\d+)\.(.+)")


def bias_kind(name):
    """(layer, paper kind) of a layer bias such as `bert.encoder.layer.3.attention.self.query.bias`
    (the `bert.` prefix is optional), by exact suffix (b_m3 does not catch b_m1); None otherwise."""
    m = _LAYER.fullmatch(name)
    if not m:
        return None
    kind = next((k for k, s in PAPER_BIAS.items() if s == m.group(2)), None)
    return (int(m.group(1)), kind) if kind else None


def bias_kinds(method):
    """The paper kinds of a `+`-joined subset such as `b_q+b_m2`; ValueError for an unknown kind."""
    kinds = method.split("+")
    bad = [k for k in kinds if k not in PAPER_BIAS]
    if bad:
        raise ValueError(f"method {method!r}: unknown bias kind(s) {bad}; valid: {' '.join(PAPER_BIAS)}")
    return kinds


def trainable(method, name):
    """Whether `method` (full_ft, bitfit, frozen, or a bias subset such as b_q+b_m2) trains the
    BertForSequenceClassification (or BertForQuestionAnswering) parameter `name`. The task head
    (`classifier.`, `qa_outputs.`) always trains; a bias subset also trains pooler.dense.bias (as
    the reference code does)."""
    if name.startswith(("classifier.", "qa_outputs.")):
        return True
    if method == "full_ft":
        return True
    if method == "frozen":
        return False
    if method == "bitfit":
        return "bias" in name
    if method.startswith("b_"):
        kinds = bias_kinds(method)
        if name in ("bert.pooler.dense.bias", "pooler.dense.bias"):
            return True
        bk = bias_kind(name)
        return bk is not None and bk[1] in kinds
    raise ValueError(f"unknown method {method!r}; valid: full_ft, bitfit, frozen, b_q+b_m2-style bias subsets")
