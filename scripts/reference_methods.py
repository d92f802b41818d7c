"""Which HF parameters each method trains, as the BitFit reference code selects them (shared by
make_fixtures.py and bench_pytorch.py; the Rust side is src/finetune/method.rs)."""

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


def trainable(method, name):
    """Whether `method` (full_ft, bitfit, b_q+b_m2) trains the BertForSequenceClassification
    parameter `name`."""
    if name.startswith("classifier."):
        return True
    if method == "full_ft":
        return True
    if method == "bitfit":
        return "bias" in name
    if method == "b_q+b_m2":
        if name == "bert.pooler.dense.bias":
            return True
        return any(name.endswith("." + PAPER_BIAS[k]) and ".layer." in name for k in ("b_q", "b_m2"))
    raise ValueError(method)
