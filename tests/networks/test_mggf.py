"""MGGF (mmdemo/models/mggf.py): shapes, the paper's stated properties, masking, gradients, variants,
checkpoint round trip, two encoder families."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmdemo.checkpoint import load_checkpoint, save_checkpoint
from mmdemo.encoders import FeatureDims, ImageFeatures, TextFeatures
from mmdemo.models import MultimodalClassifier, TaskInfo, get_model
from mmdemo.models.mggf import (MGGF, CrossModalFusion, CrossModalGuidance, GuidedClassifier, LocalFeature,
                                intensity_targets, mean_discrepancy)

ENTRY = get_model("mggf")




SENTIMENT = TaskInfo(("positive", "neutral", "negative"), ordinal=True)


def _head(dims: FeatureDims, variant: str = "", task: TaskInfo = SENTIMENT, **overrides) -> MGGF:
    """A small MGGF (d = 64 instead of 256, the outer product 16^2) to keep the tests fast."""
    torch.manual_seed(0)
    return ENTRY.head(ENTRY.config({"hidden": 64, "outer_dim": 16, **overrides}, variant), dims, task)


def test_registry_defaults():
    cfg = ENTRY.config()
    assert isinstance(cfg, MGGF.config_class) and cfg.hidden == 256 and cfg.outer_dim == 32
    assert (cfg.granularity, cfg.cmgl, cfg.distance, cfg.fusion) == ("both", True, "kl", "cmf")
    assert cfg.reg_weight == 1.0 and cfg.batch_size == 128 and cfg.text_layers == 1 and cfg.reg_target == "auto"


def _trainer_loss(head: MGGF, out, labels: torch.Tensor) -> torch.Tensor:
    return head.objective(out, labels).total  # what the trainer minimises


def test_forward_shapes_and_explain(bert_resnet):
    dims, text, image = bert_resnet
    B, L, N = text.attention_mask.shape[0], text.attention_mask.shape[1], dims.num_patches
    out = _head(dims).eval()(text, image)
    for t in (out.logits, out.text_logits, out.image_logits):
        assert t.shape == (B, 3) and torch.isfinite(t).all()
    ex = out.explain
    assert ex["discrepancy"].shape == ex["kl"].shape == ex["score"].shape == (B,)
    assert ex["attention"]["text->image"].shape == (B, 1, L, N)
    assert ex["attention"]["image->text"].shape == (B, 1, N, L)
    assert [MGGF.signals[k].axes for k in ex["attention"]] == [("text", "image"), ("image", "text")]
    # alpha = sigmoid(KL), KL >= 0 (eq. 7)
    assert torch.allclose(ex["discrepancy"], torch.sigmoid(ex["kl"]))
    assert (ex["kl"] >= 0).all() and (ex["discrepancy"] >= 0.5).all() and (ex["discrepancy"] < 1).all()


def test_padding_is_masked(bert_resnet):
    """A padded sample gives the same outputs as the same sample alone without padding, whatever sits in
    the padded token states (Conv1D input zeroed, max pool and attention masked)."""
    dims, text, image = bert_resnet
    head = _head(dims).eval()
    mask = text.attention_mask
    i = int(mask.sum(1).argmin())  # the shortest caption, padded in the batch
    n = int(mask[i].sum())
    assert n < mask.shape[1]
    noisy = text.layers.clone()
    pad = (mask == 0)[:, None, :, None].expand_as(noisy)
    noisy[pad] = 1e4  # garbage in every padded token state
    batch = head(TextFeatures(noisy, mask, text.pooled), image)
    alone = head(TextFeatures(text.layers[i:i + 1, :, :n], mask[i:i + 1, :n], text.pooled[i:i + 1]),
                 ImageFeatures(image.patches[i:i + 1], image.pooled[i:i + 1], image.logits[i:i + 1]))
    for key in ("logits", "text_logits", "image_logits"):
        torch.testing.assert_close(getattr(batch, key)[i:i + 1], getattr(alone, key), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(batch.explain["discrepancy"][i:i + 1], alone.explain["discrepancy"])
    v2t, t2v = batch.explain["attention"]["text->image"][i, 0], batch.explain["attention"]["image->text"][i, 0]
    assert (v2t[n:] == 0).all() and (t2v[:, n:] == 0).all()
    torch.testing.assert_close(v2t[:n], alone.explain["attention"]["text->image"][0, 0])
    torch.testing.assert_close(t2v[:, :n], alone.explain["attention"]["image->text"][0, 0])


def test_local_feature_max_pool_ignores_padding():
    torch.manual_seed(0)
    local = LocalFeature(8, 16, kernel_size=3)
    tokens = torch.randn(1, 6, 8)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0]])
    tokens[0, 4:] = 1e6  # would win every max if the pool saw it
    pooled, h = local(tokens, mask)
    ref, _ = local(tokens[:, :4], mask[:, :4])
    torch.testing.assert_close(pooled, ref)
    assert h.shape == (1, 6, 16)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_batch_of_one(bert_resnet, mode):
    dims, text, image = bert_resnet
    head = _head(dims)
    head.train(mode == "train")
    one_t = TextFeatures(text.layers[:1], text.attention_mask[:1], text.pooled[:1])
    one_i = ImageFeatures(image.patches[:1], image.pooled[:1], image.logits[:1])
    out = head(one_t, one_i)
    assert out.logits.shape == (1, 3) and out.explain["discrepancy"].shape == (1,)
    _trainer_loss(head, out, torch.tensor([2])).backward()
    assert all(torch.isfinite(p.grad).all() for p in head.parameters() if p.grad is not None)


@pytest.mark.parametrize("distance", ["kl", "cos", "dis"])
def test_cmgl_alpha_is_half_for_identical_modalities(distance):
    """X_t == X_v -> distance 0 -> alpha = sigmoid(0) = 0.5 (eq. 7); different -> alpha in (0.5, 1)."""
    torch.manual_seed(0)
    cmgl = CrossModalGuidance(distance)
    x = torch.randn(5, 64, requires_grad=True)
    alpha, stats = cmgl(x, x.clone())
    if distance == "cos":  # 1 - cos(x, x) is 0 only up to rounding
        torch.testing.assert_close(alpha, torch.full((5,), 0.5))
    else:
        assert (alpha == 0.5).all()
    assert (stats["kl"] == 0).all()
    alpha.sum().backward()
    assert torch.isfinite(x.grad).all()
    alpha, _ = cmgl(3 * torch.randn(5, 64), 3 * torch.randn(5, 64))
    assert (alpha > 0.5).all() and (alpha < 1).all()


def test_cmgl_eq5_to_7_on_fixed_numbers():
    """softmax([0, ln 3]) = (1/4, 3/4), softmax([0, 0]) = (1/2, 1/2): KL(p_v||p_t) = ln(4/3) / 2,
    KL(p_t||p_v) = (3 ln 3 - 4 ln 2) / 4, their mean 0.1373265, alpha = sigmoid(0.1373265) = 0.5342778."""
    x_t, x_v = torch.tensor([[0.0, math.log(3.0)]]), torch.tensor([[0.0, 0.0]])
    alpha, stats = CrossModalGuidance("kl")(x_t, x_v)
    torch.testing.assert_close(stats["kl"], torch.tensor([0.1373265]))
    torch.testing.assert_close(alpha, torch.tensor([0.5342778]))
    alpha_off, _ = CrossModalGuidance("kl", enabled=False)(x_t, x_v)
    assert (alpha_off == 0.5).all()


def test_cmf_eq8_to_10_on_fixed_numbers():
    """Text tokens T = [X_t; H_t] = [[1, 0], [0, 1]], image tokens V = [[2, 0], [1, 1]], d = 2 (scores / sqrt 2).
    InterW_{v->t} rows: softmax([2, 1]/sqrt2) = (0.66976, 0.33024), softmax([0, 1]/sqrt2) = (0.33024, 0.66976), so
    X^_t = mean of (InterW_{v->t} V) = (1.5, 0.5); InterW_{t->v} rows (0.80443, 0.19557) and (0.5, 0.5) give
    X^_v = (0.65221, 0.34779); eq. 10 (projections set to the identity) is their outer product."""
    cmf = CrossModalFusion(d=2, outer_dim=2)
    cmf.proj_t, cmf.proj_v = nn.Identity(), nn.Identity()
    outer, attention = cmf(torch.tensor([[1.0, 0.0]]), torch.tensor([[[0.0, 1.0]]]), torch.tensor([[1]]),
                           torch.tensor([[2.0, 0.0]]), torch.tensor([[[1.0, 1.0]]]))
    torch.testing.assert_close(outer, torch.tensor([[0.97832, 0.52168, 0.32611, 0.17389]]), atol=1e-5, rtol=0)
    # the displayed maps leave out the leading unimodal-vector token: H_t's row over H_v, H_v's row over H_t
    torch.testing.assert_close(attention["text->image"], torch.tensor([[[[0.66976]]]]), atol=1e-5, rtol=0)
    torch.testing.assert_close(attention["image->text"], torch.tensor([[[[0.5]]]]))


def test_classifier_input_eq11_on_fixed_numbers():
    """eq. 11: X = (alpha X^) ++ ((1 - alpha) X_t) ++ ((1 - alpha) X_v); alpha = 0.25."""
    clf = GuidedClassifier(in_dim=4, hidden=3, num_labels=2, dropout=0.0, regression=False)
    seen = {}
    clf.trunk.register_forward_hook(lambda m, inp, out: seen.update(x=inp[0]))
    clf(torch.tensor([0.25]), torch.tensor([[1.0, 2.0]]), torch.tensor([[4.0]]), torch.tensor([[8.0]]))
    torch.testing.assert_close(seen["x"], torch.tensor([[0.25, 0.5, 3.0, 6.0]]))


def test_cos_dis_and_extreme_kl_on_fixed_numbers():
    """cos: orthogonal vectors are at distance 1 - 0 = 1 (alpha = sigmoid(1) = 0.7310586), opposite ones at 2
    (0.8807971). dis: ||X_t - X_v|| / sqrt(d) is 2 for a difference of 2 in every coordinate, whatever d (a sum or a
    missing sqrt fails). kl at extreme logits (+-100): the two softmaxes are one-hot on different classes, each KL is
    200 (log-probabilities, not probabilities, so nothing overflows) and alpha saturates at 1, finite."""
    cos = CrossModalGuidance("cos")
    alpha, stats = cos(torch.tensor([[1.0, 0.0], [1.0, 0.0]]), torch.tensor([[0.0, 1.0], [-1.0, 0.0]]))
    torch.testing.assert_close(stats["distance"], torch.tensor([1.0, 2.0]))
    torch.testing.assert_close(alpha, torch.tensor([0.7310586, 0.8807971]))
    for d in (4, 16):
        alpha, stats = CrossModalGuidance("dis")(torch.zeros(1, d), torch.full((1, d), 2.0))
        torch.testing.assert_close(stats["distance"], torch.tensor([2.0]))
        torch.testing.assert_close(alpha, torch.tensor([0.8807971]))
    x_t = torch.tensor([[100.0, -100.0]], requires_grad=True)
    alpha, stats = CrossModalGuidance("kl")(x_t, torch.tensor([[-100.0, 100.0]]))
    torch.testing.assert_close(stats["kl"], torch.tensor([200.0]))
    assert alpha.item() == 1.0
    stats["kl"].sum().backward()
    assert torch.isfinite(x_t.grad).all()


@pytest.mark.parametrize("variant", ["", *ENTRY.variants])
def test_gradients_reach_every_parameter(bert_resnet, variant):
    dims, text, image = bert_resnet
    head = _head(dims, variant).train()
    out = head(text, image)
    # labels whose intensity targets (+1, -1, +1, +1) cannot cancel in the L1 gradient of the score bias
    _trainer_loss(head, out, torch.tensor([0, 2, 0, 0])).backward()
    for name, p in head.named_parameters():
        assert p.grad is not None, f"{variant or 'default'}: no gradient for {name}"
        assert torch.isfinite(p.grad).all(), f"{variant or 'default'}: non-finite gradient for {name}"
        assert p.grad.abs().sum() > 0, f"{variant or 'default'}: zero gradient for {name}"


def test_variants_change_what_they_claim(bert_resnet):
    dims, text, image = bert_resnet
    assert set(ENTRY.variants) == {"global-only", "local-only", "no-cmgl", "cat", "cnn", "cos", "dis"}
    run = {v: _head(dims, v).eval() for v in ENTRY.variants}
    outs = {v: h(text, image) for v, h in run.items()}
    assert (outs["no-cmgl"].explain["discrepancy"] == 0.5).all()
    assert run["global-only"].text_branch.local is None and run["global-only"].text_branch.global_ff is not None
    assert run["local-only"].text_branch.global_ff is None and run["local-only"].image_branch.local is not None
    assert "attention" not in outs["global-only"].explain  # no token sets without local features
    assert "attention" not in outs["cat"].explain and "attention" not in outs["cnn"].explain
    for v in ("cos", "dis"):
        ex = outs[v].explain
        assert ex["distance"].shape == (4,) and torch.allclose(ex["discrepancy"], torch.sigmoid(ex["distance"]))
    x_t, x_v = torch.randn(4, 16), torch.randn(4, 16)
    cos = CrossModalGuidance("cos")(x_t, x_v)[1]["distance"]
    torch.testing.assert_close(cos, 1 - F.cosine_similarity(x_t, x_v, dim=-1))
    dis = CrossModalGuidance("dis")(x_t, x_v)[1]["distance"]
    torch.testing.assert_close(dis, (x_t - x_v).norm(dim=-1) / 4)
    with pytest.raises(ValueError):
        _head(dims, fusion="transformer")
    with pytest.raises(ValueError):
        _head(dims, distance="wasserstein")


def test_regression_target_follows_the_task(bert_resnet):
    """eq. 14: an intensity score on ordinal single-label tasks (MVSA: positive +1, neutral 0, negative -1), the
    probability L1 elsewhere (unordered labels; multi-label, per tag: 4 posts x 3 tags), with no score to show."""
    dims, text, image = bert_resnet
    torch.testing.assert_close(intensity_targets(3), torch.tensor([1.0, 0.0, -1.0]))  # pos, neu, neg
    labels = torch.tensor([0, 1, 2, 2])
    head = _head(dims, reg_weight=2.0).eval()
    assert head.reg_target == "intensity"
    out = head(text, image)
    terms = head.objective(out, labels).terms
    torch.testing.assert_close(terms["reg"], 2.0 * (out.explain["score"] - torch.tensor([1.0, 0.0, -1.0, -1.0])).abs().mean())
    torch.testing.assert_close(terms["fused"], F.cross_entropy(out.logits, labels))

    emotions = TaskInfo(("angry", "happy", "sad"))  # no order
    probs_head = _head(dims, task=emotions).eval()
    assert probs_head.reg_target == "probs" and probs_head.classifier.reg is None
    out = probs_head(text, image)
    assert "score" not in out.explain
    p_y = out.logits.softmax(-1)[torch.arange(4), labels]
    torch.testing.assert_close(probs_head.objective(out, labels).terms["reg"], (2 * (1 - p_y)).mean())

    tags = TaskInfo(("a", "b", "c"), multi_label=True, ordinal=True)  # multi-label: never an intensity
    multi_head = _head(dims, task=tags).eval()
    assert multi_head.reg_target == "probs"
    out = multi_head(text, image)
    multi = torch.tensor([[1.0, 0, 1], [0, 0, 0], [0, 1, 0], [1, 1, 1]])
    torch.testing.assert_close(multi_head.objective(out, multi).terms["reg"],  # per tag, on the BCE's scale
                               (out.logits.sigmoid() - multi).abs().sum() / 12)
    with pytest.raises(ValueError, match="single-label"):
        _head(dims, task=tags, reg_target="intensity")
    assert _head(dims, task=emotions, reg_target="intensity").reg_target == "intensity"  # forced, as checkpoints say

    off = _head(dims, reg_weight=0.0)
    assert off.classifier.reg is None and "reg" not in off.objective(off(text, image), labels).terms


def test_aux_classifiers_detached_by_default(bert_resnet):
    dims, text, image = bert_resnet
    for detach in (True, False):
        head = _head(dims, aux_detach=detach)
        out = head(text, image)
        F.cross_entropy(out.text_logits, torch.tensor([0, 1, 2, 0])).backward()
        branch_grad = head.text_branch.mlp[0].weight.grad
        assert (branch_grad is None) == detach


def test_mean_discrepancy_is_the_batch_mean_on_fixed_numbers(bert_resnet):
    """With the CMGL fed fixed X_t, X_v (a pre-hook replaces the two vectors it compares), alpha is known: 0.5342778
    for the pair of test_cmgl_eq5_to_7_on_fixed_numbers (three rows) and 0.5 for an identical pair (one row), so the
    batch mean is (3 x 0.5342778 + 0.5) / 4 = 0.5257083. Fails on a median (0.5342778), a sum, a single row, or a head
    left in another mode than it was found in."""
    dims, text, image = bert_resnet
    head = _head(dims).train()
    x_t = torch.tensor([[0.0, math.log(3.0)]] * 3 + [[1.0, 2.0]])
    x_v = torch.tensor([[0.0, 0.0]] * 3 + [[1.0, 2.0]])
    head.cmgl.register_forward_pre_hook(lambda m, args: (x_t, x_v))
    assert mean_discrepancy(head, text, image) == pytest.approx(0.5257083, abs=1e-6) and head.training
    head.eval()
    assert mean_discrepancy(head, text, image) == pytest.approx(0.5257083, abs=1e-6) and not head.training


def test_learns_a_small_batch(bert_resnet):
    """The whole head (with L_reg) can fit 4 examples: a wiring check that fails if a path is broken."""
    dims, text, image = bert_resnet
    head = _head(dims, dropout=0.0, hidden=32, outer_dim=8).train()
    labels = torch.tensor([0, 1, 2, 0])
    opt = torch.optim.Adam(head.parameters(), lr=3e-3)
    for _ in range(25):
        opt.zero_grad()
        loss = _trainer_loss(head, head(text, image), labels)
        loss.backward()
        opt.step()
    out = head.eval()(text, image)
    assert (out.logits.argmax(-1) == labels).all()
    assert F.l1_loss(out.explain["score"], intensity_targets(3)[labels]) < 0.2


def test_checkpoint_round_trip(bert_resnet, tmp_path):
    dims, text, image = bert_resnet
    torch.manual_seed(0)
    model = MultimodalClassifier("mggf", "mvsa-single", ["positive", "neutral", "negative"], "tiny-bert",
                                 "tiny-resnet", dims.to_dict(),
                                 head={"hidden": 64}, variant="cos").eval()
    save_checkpoint(model, tmp_path / "ckpt")
    loaded = load_checkpoint(tmp_path / "ckpt", task="mvsa-single")
    assert loaded.variant == "cos" and loaded.head.config.hidden == 64 and loaded.head.config.distance == "cos"
    a, b = model(text, image), loaded(text, image)
    for key in ("logits", "text_logits", "image_logits"):
        assert torch.equal(getattr(a, key), getattr(b, key))
    assert torch.equal(a.explain["discrepancy"], b.explain["discrepancy"])


def test_clip_encoders_without_logits(clip_pair):
    dims, text, image = clip_pair
    assert image.logits is None and dims.image_logits_dim == 0
    for variant in ("", "global-only", "cnn"):
        head = _head(dims, variant, task=TaskInfo(("real", "fake")))
        out = head(text, image)
        assert out.logits.shape == (4, 2)
        _trainer_loss(head, out, torch.tensor([0, 1, 1, 0])).backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in head.parameters())
    assert out.explain["discrepancy"].shape == (4,)
    ex = _head(dims).eval()(text, image).explain
    assert ex["attention"]["text->image"].shape == (4, 1, text.attention_mask.shape[1], 16)
