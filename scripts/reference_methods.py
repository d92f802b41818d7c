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
    """Whether `method` (full_ft, bitfit, frozen, rand_uniform, rand_row_col, or a bias subset such as b_q+b_m2) trains the
    BertForSequenceClassification (or BertForQuestionAnswering) parameter `name`. The task head
    (`classifier.`, `qa_outputs.`) always trains; a bias subset also trains pooler.dense.bias (as
    the reference code does)."""
    if name.startswith(("classifier.", "qa_outputs.")):
        return True
    if method in ("full_ft", "rand_uniform"):  # rand_uniform: every tensor, under a gradient mask
        return True
    if method == "rand_row_col":  # the encoder's and pooler's weight matrices (masked) and the
        # encoder's LayerNorm gains (whole); the reference skips every tensor outside the encoder
        # and pooler first, so the embeddings' LayerNorm stays frozen
        return name.startswith(("bert.encoder.", "bert.pooler.")) and name.endswith(".weight")
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
    raise ValueError(f"unknown method {method!r}; valid: full_ft, bitfit, frozen, rand_uniform, rand_row_col, "
                     "b_q+b_m2-style bias subsets")


def rand_uniform_masks(named_params, seed):
    """The reference's rand_uniform gradient masks (glue_evaluator.py): a budget of as many scalars
    as `model.bert` has biases, spread over every `bert.` tensor in proportion to its size (rounded
    down), indices drawn with replacement; {name: 0/1 tensor}. Drawn from torch's generator seeded
    by `seed`, so the same distribution as the harness's masks, not the same draws."""
    import torch
    g = torch.Generator().manual_seed(seed)
    bert = [(n, p) for n, p in named_params if n.startswith("bert.")]
    budget = sum(p.numel() for n, p in bert if "bias" in n)
    total = sum(p.numel() for _, p in bert)
    masks = {}
    for n, p in bert:
        k = budget * p.numel() // total
        m = torch.zeros(p.numel())
        m[torch.randint(0, p.numel(), (k,), generator=g)] = 1.0
        masks[n] = m.view_as(p).to(p.device)
    return masks


def rand_row_col_masks(named_params, seed):
    """The reference's rand_row_col gradient masks (glue_evaluator.py): per weight matrix
    `[out, in]` of the encoder and pooler (LayerNorm gains excluded: they train whole), one random
    column when `out < in` or a coin flip says so, else ⌊out/in⌋ random rows drawn with
    replacement; {name: 0/1 tensor}. Drawn from torch's generator seeded by `seed` (the same
    distribution as the harness's masks, not the same draws)."""
    import torch
    g = torch.Generator().manual_seed(seed)
    masks = {}
    for n, p in named_params:
        if not (n.startswith(("bert.encoder.", "bert.pooler.")) and n.endswith(".weight") and p.dim() == 2):
            continue
        out, inp = p.shape
        m = torch.zeros(out, inp)
        if out < inp or torch.rand(1, generator=g).item() < 0.5:
            m[:, torch.randint(0, inp, (1,), generator=g)] = 1.0
        else:
            m[torch.randint(0, out, (out // inp,), generator=g), :] = 1.0
        masks[n] = m.to(p.device)
    return masks


def gradient_masks(method, named_params, seed):
    """The gradient masks of a masked method (rand_uniform, rand_row_col); {} for the others."""
    if method == "rand_uniform":
        return rand_uniform_masks(named_params, seed)
    if method == "rand_row_col":
        return rand_row_col_masks(named_params, seed)
    return {}
