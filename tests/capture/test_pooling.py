"""Token pooling, module outputs, dict batches and next-token load curves.

Every curve is checked against a reference built here by hand: the model's
pieces called directly, tokens pooled in explicit loops, and
D = Tr(SS_W · pinv(SS_B)) from the docs/science.md#separation-fuzziness formulas in float64 numpy.
"""

import math
import re
import warnings
from collections import Counter, OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from dnn_spring.capture._diagnose import diagnose
from dnn_spring import LoadCurveTracker, load_curve
from dnn_spring.capture._pooling import POOL_WARN_WIDTH

VOCAB, WIDTH, DEPTH = 9, 12, 3


class _Output(OrderedDict):
    """A stand-in for a Hugging Face ``ModelOutput``: a dict whose first entry is the tensor."""


class _Block(nn.Module):
    """Causal token mixing (running mean) then a tanh layer; a tuple, dict or ModelOutput-like output."""

    def __init__(self, kind):
        super().__init__()
        self.lin = nn.Linear(WIDTH, WIDTH)
        self.kind = kind

    def forward(self, x):
        mix = x.cumsum(1) / torch.arange(1, x.shape[1] + 1, dtype=x.dtype)[:, None]
        h = x + torch.tanh(self.lin(mix))
        if self.kind == "tuple":
            return (h, None)
        if self.kind == "dict":
            return {"hidden_states": h, "aux": 2 * h}
        return _Output(last_hidden_state=h, aux=2 * h)


class _TinyLM(nn.Module):
    """Embedding, three blocks (tuple, dict and ModelOutput-like outputs), a token head."""

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.emb = nn.Embedding(VOCAB, WIDTH)
        self.b0, self.b1, self.b2 = _Block("tuple"), _Block("dict"), _Block("output")
        self.head = nn.Linear(WIDTH, VOCAB)

    def hidden(self, input_ids):
        """Every block's hidden state, by hand (the reference's features)."""
        x, out = self.emb(input_ids), []
        for block in (self.b0, self.b1, self.b2):
            value = block(x)
            x = value[0] if isinstance(value, tuple) else next(iter(value.values()))
            out.append(x)
        return out

    def forward(self, input_ids, attention_mask=None):
        return {"logits": self.head(self.hidden(input_ids)[-1])}


def _batches(seed=0, n_batches=4, size=10, length=7, with_labels=True, next_token_labels=False):
    """Dict batches of token ids with right or left padding (alternating), seeded."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for b in range(n_batches):
        ids = torch.randint(0, VOCAB, (size, length), generator=g)
        lengths = torch.randint(2, length + 1, (size,), generator=g)
        pos = torch.arange(length)
        mask = (pos < lengths[:, None]) if b % 2 == 0 else (pos >= length - lengths[:, None])
        ids = torch.where(mask, ids, 0)
        batch = {"input_ids": ids, "attention_mask": mask.long()}
        if next_token_labels:
            labels = torch.where(mask, ids, -100)
            labels[:, 3] = -100  # an ignored target inside the sequences
            batch["labels"] = labels
        elif with_labels:
            first = (~mask).long().argmin(1)  # the first real token gives the class
            batch["labels"] = ids[torch.arange(size), first] % 4
        out.append(batch)
    return out


def _reference_log_d(features, labels) -> float:
    """log Tr(SS_W · pinv(SS_B)) in float64 numpy, straight from docs/science.md#separation-fuzziness."""
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    n, mu = len(x), x.mean(0)
    ss_b, ss_w = np.zeros((x.shape[1],) * 2), np.zeros((x.shape[1],) * 2)
    for c in np.unique(y):
        xc = x[y == c]
        d = xc.mean(0) - mu
        ss_b += len(xc) * np.outer(d, d) / n
        z = xc - xc.mean(0)
        ss_w += z.T @ z / n
    return math.log(np.trace(ss_w @ np.linalg.pinv(ss_b, rcond=1e-10, hermitian=True)))


def _pool_by_hand(h, mask, pool):
    rows = []
    for i in range(h.shape[0]):
        where = [t for t in range(h.shape[1]) if mask[i, t]]
        if pool == "mean":
            rows.append(sum(h[i, t].double() for t in where) / len(where))
        else:
            rows.append(h[i, where[0] if pool == "first" else where[-1]].double())
    return torch.stack(rows).numpy()


@pytest.mark.parametrize("pool", ["mean", "first", "last"])
def test_pooled_curves_equal_a_hand_pooled_pinv_reference(pool):
    model, batches = _TinyLM(), _batches()
    curve = load_curve(model, batches, layers=["b0", "b1", "b2"], pool=pool)
    assert list(curve["layer"]) == ["b0", "b1", "b2"] and (curve["width"] == WIDTH).all()
    assert (curve["n_samples"] == 40).all()
    feats = {k: [] for k in range(DEPTH)}
    with torch.no_grad():
        for batch in batches:
            for k, h in enumerate(model.hidden(batch["input_ids"])):
                feats[k].append(_pool_by_hand(h, batch["attention_mask"], pool))
    labels = torch.cat([b["labels"] for b in batches])
    for k in range(DEPTH):
        expected = _reference_log_d(np.concatenate(feats[k]), labels)
        assert curve.loc[k, "log_d"] == pytest.approx(expected, rel=1e-8, abs=0)
    assert model.training  # the flags are restored


def test_mean_without_a_mask_and_flatten_of_tensor_sequences():
    model = _TinyLM()
    g = torch.Generator().manual_seed(1)
    ids, y = torch.randint(0, VOCAB, (60, 5), generator=g), torch.arange(60) % 3
    mean = load_curve(model, ids, y, layers=["b2"], pool="mean")
    flat = load_curve(model, ids, y, layers=["b2"])
    with torch.no_grad():
        h = model.hidden(ids)[-1].double()
    assert mean.loc[0, "log_d"] == pytest.approx(_reference_log_d(h.mean(1), y), rel=1e-8)
    assert flat.loc[0, "width"] == 5 * WIDTH
    assert flat.loc[0, "log_d"] == pytest.approx(_reference_log_d(h.flatten(1), y), rel=1e-8)


def test_output_and_pool_callables():
    model, batches = _TinyLM(), _batches()
    seen = []

    def pick(name, value):
        seen.append(name)
        return value["aux"]

    def pool(name, output, batch):
        assert set(batch) == {"input_ids", "attention_mask", "labels"}
        return output[:, :2].flatten(1)  # the first two tokens side by side

    curve = load_curve(model, batches, layers=["b1"], output=pick, pool=pool)
    assert seen[0] == "b1" and curve.loc[0, "width"] == 2 * WIDTH
    with torch.no_grad():
        feats = np.concatenate([2 * model.hidden(b["input_ids"])[1][:, :2].flatten(1).double().numpy()
                                for b in batches])
    expected = _reference_log_d(feats, torch.cat([b["labels"] for b in batches]))
    assert curve.loc[0, "log_d"] == pytest.approx(expected, rel=1e-8)


def _next_token_reference(model, batches, layer, keep=None):
    feats, classes = [], []
    with torch.no_grad():
        for batch in batches:
            h, mask = model.hidden(batch["input_ids"])[layer], batch["attention_mask"]
            target = batch.get("labels", batch["input_ids"])
            for i in range(h.shape[0]):
                for t in range(h.shape[1] - 1):
                    c = int(target[i, t + 1])
                    if mask[i, t] and mask[i, t + 1] and c != -100 and (keep is None or c in keep):
                        feats.append(h[i, t].double().numpy())
                        classes.append(c)
    return _reference_log_d(np.stack(feats), classes), len(classes), classes


@pytest.mark.parametrize("with_labels", [False, True])
def test_next_token_curves_equal_the_hand_built_reference(with_labels):
    model = _TinyLM()
    batches = _batches(seed=2, with_labels=False, next_token_labels=with_labels)
    curve = load_curve(model, batches, layers=["b0", "b1", "b2"], target="next_token")
    for k in range(DEPTH):
        expected, n, _ = _next_token_reference(model, batches, k)
        assert curve.loc[k, "n_samples"] == n
        assert curve.loc[k, "log_d"] == pytest.approx(expected, rel=1e-8, abs=0)


def test_next_token_max_classes_keeps_the_most_frequent_tokens():
    model, batches = _TinyLM(), _batches(seed=3, with_labels=False)
    _, _, classes = _next_token_reference(model, batches, 2)
    counts = Counter(classes)
    keep = set(sorted(counts, key=lambda c: (-counts[c], c))[:4])
    curve = load_curve(model, batches, layers=["b2"], target="next_token", max_classes=4)
    expected, n, _ = _next_token_reference(model, batches, 2, keep)
    assert curve.loc[0, "n_samples"] == n and curve.loc[0, "log_d"] == pytest.approx(expected, rel=1e-8)


def test_next_token_from_a_tensor_of_ids_and_the_tracker():
    model = _TinyLM()
    ids = torch.randint(0, VOCAB, (40, 6), generator=torch.Generator().manual_seed(4))
    batches = [{"input_ids": ids[i:i + 10], "attention_mask": torch.ones(10, 6, dtype=torch.long)}
               for i in range(0, 40, 10)]
    direct = load_curve(model, ids, layers=["b0", "b2"], target="next_token", batch_size=16)
    expected = [_next_token_reference(model, batches, k)[0] for k in (0, 2)]
    np.testing.assert_allclose(direct["log_d"], expected, rtol=1e-8)
    tracker = LoadCurveTracker(model, ids, layers=["b0", "b2"], target="next_token", sample_size=None)
    np.testing.assert_allclose(tracker.measure()["log_d"], expected, rtol=1e-8)


def test_tracker_and_diagnose_take_dict_batches_and_pool():
    model, batches = _TinyLM(), _batches(seed=5)
    reference = load_curve(model, batches, layers=["b0", "b1", "b2"], pool="last", inverse=False)
    tracker = LoadCurveTracker(model, batches, layers=["b0", "b1", "b2"], pool="last", every=2)
    assert tracker.step() is None
    rows = tracker.step()
    np.testing.assert_allclose(rows["log_d"], reference["log_d"], rtol=1e-12)
    d = diagnose(model, batches, pool="last")  # dict batches: the children, without the token ids
    assert list(d.layers["layer"]) == ["emb", "b0", "b1", "b2", "head"]
    np.testing.assert_allclose(d.layers["log_d"][1:4], reference["log_d"], rtol=1e-12)


def test_a_wide_flattened_sequence_warns_once():
    model = _TinyLM()
    length = POOL_WARN_WIDTH // WIDTH + 1
    ids = torch.randint(0, VOCAB, (8, length), generator=torch.Generator().manual_seed(6))
    y = torch.arange(8) % 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        curve = load_curve(model, ids, y, layers=["emb", "b0", "b2"], inverse=False, warn=True)
        load_curve(model, ids, y, layers=["b0"], pool="mean")
        tracker = LoadCurveTracker(model, ids, y, layers=["b0"])
        tracker.measure()
        tracker.measure()
    wide = [str(w.message) for w in caught if issubclass(w.category, UserWarning)
            and "flattened wider" in str(w.message)]
    assert len(wide) == 2, wide  # one per load_curve call with wide points, one per tracker
    assert "emb" in wide[0] and "b0" in wide[0] and "b2" in wide[0] and f"{length * WIDTH:,}" in wide[0]
    assert curve.attrs["wide_sequences"] == {"emb": length * WIDTH, "b0": length * WIDTH,
                                             "b2": length * WIDTH}


def _one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_bad_input_is_one_line_each():
    model, batches = _TinyLM(), _batches()
    with pytest.raises(ValueError, match=r"`pool` must be one of 'flatten', 'mean', 'first', 'last' or "
                                         r"a callable.*got 'max'") as e:
        load_curve(model, batches, pool="max")
    _one_line(e)
    with pytest.raises(ValueError, match="`pool` must be one of"):
        LoadCurveTracker(model, batches, pool="cls")
    with pytest.raises(ValueError, match=r"`target` must be one of"):
        load_curve(model, batches, target="next")
    classifier = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    tokens = torch.randint(0, 3, (20, 4)).float()
    with pytest.raises(ValueError, match=r"target='next_token' needs sequence outputs \(N, T, d\).*"
                                         r"layer '1' gave shape \(20, 8\)") as e:
        load_curve(classifier, tokens, target="next_token")
    _one_line(e)
    with pytest.raises(ValueError, match=r"no 'labels' entry.*target='label'") as e:
        load_curve(model, _batches(with_labels=False), layers=["b0"])
    _one_line(e)
    with pytest.raises(ValueError, match=r"`pool` must be 'flatten'.*target='next_token'"):
        load_curve(model, batches, target="next_token", pool="mean")
    with pytest.raises(ValueError, match="target='label' needs one class per sample"):
        load_curve(model, _batches(with_labels=False, next_token_labels=True), layers=["b0"])
    with pytest.raises(TypeError, match="`output` returned NoneType"):
        load_curve(model, batches, layers=["b0"], output=lambda name, value: None)
    for bad in ({"max_classes": 5}, {"max_classes": 1, "target": "next_token"},
                {"max_classes": "5", "target": "next_token"}):
        with pytest.raises(ValueError, match="`max_classes` must be an integer >= 2 with target="):
            load_curve(model, batches, **bad)


def test_a_vocabulary_over_the_budget_is_one_line_with_a_way_out():
    model, batches = _TinyLM(), _batches(seed=7, with_labels=False)
    budget = 3 * 8 * 5 * 2 * WIDTH  # five classes at two points
    with pytest.raises(ValueError, match=r"target='next_token' needs about [\d,]+ bytes .*"
                                         r"over class_bytes=.*max_classes=5\b") as e:
        load_curve(model, batches, layers=["b0", "b2"], target="next_token", class_bytes=budget)
    message = _one_line(e)
    assert f"{3 * 8 * VOCAB * 2 * WIDTH:,} bytes" in message  # every token occurs as a next token
    fit = int(re.search(r"max_classes=(\d+)", message).group(1))
    curve = load_curve(model, batches, layers=["b0", "b2"], target="next_token", class_bytes=budget,
                       max_classes=fit)
    assert np.isfinite(curve["log_d"]).all()


def test_module_outputs_without_a_tensor_name_the_way_out():
    class NoTensor(nn.Module):
        def forward(self, x):
            return {"note": "nothing here"}

    model = nn.Sequential(nn.Linear(4, 4), NoTensor())
    with pytest.raises(TypeError, match=r"layer '1' returned dict with no tensor in it; pass output="):
        load_curve(model, torch.randn(10, 4), torch.arange(10) % 2)


def test_nested_outputs_of_the_encoder_fast_path_are_padded_back():
    def encoder(nested):
        torch.manual_seed(8)
        layer = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)
        return nn.TransformerEncoder(layer, 2, enable_nested_tensor=nested)

    class Net(nn.Module):
        def __init__(self, nested):
            super().__init__()
            self.enc = encoder(nested)

        def forward(self, inputs_embeds, attention_mask):
            return self.enc(inputs_embeds, src_key_padding_mask=attention_mask == 0)

    g = torch.Generator().manual_seed(9)
    x = torch.randn(48, 6, 16, generator=g)
    mask = (torch.arange(6) < torch.randint(2, 6, (48, 1), generator=g)).long()  # never full length
    batches = [{"inputs_embeds": x[i:i + 16], "attention_mask": mask[i:i + 16],
                "labels": torch.arange(16) % 3} for i in range(0, 48, 16)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # nested tensors are a prototype
        fast = load_curve(Net(True), batches, layers=nn.TransformerEncoderLayer, pool="last")
    slow = load_curve(Net(False), batches, layers=nn.TransformerEncoderLayer, pool="last")
    np.testing.assert_allclose(fast["log_d"], slow["log_d"], rtol=1e-5)


def test_a_hugging_face_gpt2_with_model_outputs_and_dict_batches():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(10)
    config = GPT2Config(vocab_size=VOCAB, n_positions=16, n_embd=16, n_layer=3, n_head=2)
    model = GPT2LMHeadModel(config).eval()
    batches = _batches(seed=11, with_labels=False, next_token_labels=True)
    names = ["transformer.h.0", "transformer.h.1", "transformer"]  # blocks, then a ModelOutput
    curve = load_curve(model, batches, layers=names, target="next_token")
    assert list(curve["layer"]) == names
    with torch.no_grad():
        hidden = [model(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                        output_hidden_states=True).hidden_states for b in batches]
    for k, index in enumerate([1, 2, -1]):  # block k's output; "transformer": after the final norm
        feats, classes = [], []
        for b, h in zip(batches, hidden):
            m, lab = b["attention_mask"], b["labels"]
            for i in range(h[index].shape[0]):
                for t in range(h[index].shape[1] - 1):
                    if m[i, t] and m[i, t + 1] and lab[i, t + 1] != -100:
                        feats.append(h[index][i, t].double().numpy())
                        classes.append(int(lab[i, t + 1]))
        assert curve.loc[k, "n_samples"] == len(classes)
        assert curve.loc[k, "log_d"] == pytest.approx(_reference_log_d(np.stack(feats), classes), rel=1e-8)
    pooled = load_curve(model, [dict(b, labels=b["input_ids"][:, 0] % 3) for b in batches],
                        layers=names, pool="mean")
    assert (pooled["width"] == 16).all() and np.isfinite(pooled["log_d"]).all()
