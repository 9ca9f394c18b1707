"""MAHFNet (mmdemo/models/mahfnet.py): the paper's stated properties on fixed numbers (theta and the modality scales,
InfoNCE, CGF, the multi-scale convolutions, SE weights, the MAG gate), shapes, masking, gradients, the Table 7
variants, the objective, and the CLIP path with the tiny open_clip encoders."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mmdemo.encoders import FeatureDims, ImageFeatures, TextFeatures
from mmdemo.models import TaskInfo, get_model
from mmdemo.models.mahfnet import (AGAI, CGF, MAG, ChannelAttention, MAHFNet, MultiScaleConv, TokenProjection,
                                   contrastive_loss)

ENTRY = get_model("mahfnet")
SENTIMENT = TaskInfo(("positive", "neutral", "negative"), ordinal=True)
SMALL = {"d_model": 32, "heads": 4, "hidden": 16}  # tiny widths keep the tests fast




def _head(dims: FeatureDims, variant: str = "", **overrides) -> MAHFNet:
    torch.manual_seed(0)
    return ENTRY.head(ENTRY.config({**SMALL, **overrides}, variant), dims, SENTIMENT)


def test_registry_defaults_follow_the_paper():
    c = ENTRY.config()
    # Table 2
    assert (c.d_model, c.heads, c.hidden, c.ieem_layers, c.kernel_size, c.dilation, c.dropout) == (
        512, 8, 256, 2, 3, 2, 0.1)
    # Tables 8-11 for MVSA-S (lr, batch, lambda, tau), Table 5 epochs, Adam: no weight decay
    assert (c.lr, c.batch_size, c.con_weight, c.tau, c.epochs, c.weight_decay) == (1e-4, 32, 5e-4, 0.4, 40, 0.0)
    assert c.agai and c.gate and c.ieem and c.hgfm and c.mag
    public = ENTRY.config(variant="public-contrastive")
    assert (public.con_weight, public.tau) == (1e-3, 0.07)
    # Table 7 is cumulative: each row removes one more module
    rows = [ENTRY.config(variant=v) for v in ("no-mag", "no-hgfm", "no-ieem", "no-agai")]
    assert [(r.mag and r.hgfm, r.hgfm, r.ieem, r.agai) for r in rows] == [
        (False, True, True, True), (False, False, True, True), (False, False, False, True),
        (False, False, False, False)]


def test_forward_shapes_and_explain(bert_resnet):
    dims, text, image = bert_resnet
    B, L, N = text.attention_mask.shape[0], text.attention_mask.shape[1], dims.num_patches
    out = _head(dims).eval()(text, image)
    for t in (out.logits, out.text_logits, out.image_logits):
        assert t.shape == (B, 3) and torch.isfinite(t).all()
    ex = out.explain
    assert list(ex) == ["theta", "mag_gate", "pair_similarity", "attention"]
    assert ex["theta"].shape == ex["mag_gate"].shape == ex["pair_similarity"].shape == (B,)
    assert ex["attention"]["text->image"].shape == (B, 4, L, N)
    assert ex["attention"]["image->text"].shape == (B, 4, N, L)
    assert set(ex) - {"attention"} <= set(MAHFNet.signals)
    assert [MAHFNet.signals[k].axes for k in ex["attention"]] == [("text", "image"), ("image", "text")]
    assert set(out.losses) == {"con"} and out.losses["con"] > 0


def test_pair_similarity_is_the_cosine_of_the_projections_l_con_compares(bert_resnet):
    """The signal is cos(x~_t, x~_p) per pair (eq. 9-11): against numpy's cosine of the two projection heads' outputs,
    caught by hooks. Fails if it is taken on the unprojected pooled vectors, over the batch instead of per pair, or
    between a caption and another post's image."""
    import numpy as np

    dims, text, image = bert_resnet
    head = _head(dims).eval()
    seen = {}
    head.agai.proj_t.register_forward_hook(lambda m, args, out: seen.update(t=out.detach().numpy()))
    head.agai.proj_p.register_forward_hook(lambda m, args, out: seen.update(p=out.detach().numpy()))
    with torch.no_grad():
        got = head(text, image).explain["pair_similarity"].numpy()
    t, p = seen["t"], seen["p"]
    want = (t * p).sum(1) / (np.linalg.norm(t, axis=1) * np.linalg.norm(p, axis=1))
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert np.ptp(want) > 1e-3  # the pairs differ, so a batch-level or constant value would fail


def test_theta_in_unit_interval_and_the_scales_sum_to_one(bert_resnet):
    """eq. 3-5 on fixed numbers: with the gate MLP's last layer set to weight 0, bias ln 3, theta = sigmoid(ln 3)
    = 0.75, so the text queries are 0.75 X_t and the image queries 0.25 X_p (0.75 + 0.25 = 1); keys and values are
    the unscaled streams (eq. 6-7 as printed)."""
    torch.manual_seed(0)
    agai = AGAI(d=4, heads=2, hidden=3, dropout=0.0).eval()
    last = agai.gate.mlp[-1]
    nn.init.zeros_(last.weight)
    nn.init.constant_(last.bias, math.log(3.0))
    seen = {}
    agai.attn_t.register_forward_hook(lambda m, args, out: seen.update(t=args))
    agai.attn_i.register_forward_hook(lambda m, args, out: seen.update(i=args))
    x_t, x_p = torch.randn(2, 3, 4), torch.randn(2, 5, 4)
    out = agai(x_t, torch.ones(2, 3), x_p)
    torch.testing.assert_close(out["theta"], torch.tensor([0.75, 0.75]))
    q_t, k_t, v_t = seen["t"]
    q_p, k_p, v_p = seen["i"]
    torch.testing.assert_close(q_t, 0.75 * x_t)
    torch.testing.assert_close(q_p, 0.25 * x_p)
    assert torch.equal(k_t, x_p) and torch.equal(v_t, x_p) and torch.equal(k_p, x_t) and torch.equal(v_p, x_t)

    # a trained-from-scratch gate on real features: strictly inside (0, 1) and different across samples
    dims, text, image = bert_resnet
    theta = _head(dims).eval()(text, image).explain["theta"]
    assert ((theta > 0) & (theta < 1)).all() and theta.std() > 0


def test_gate_off_leaves_the_queries_unscaled():
    torch.manual_seed(0)
    agai = AGAI(d=4, heads=2, hidden=3, dropout=0.0, gate=False).eval()
    seen = {}
    agai.attn_t.register_forward_hook(lambda m, args, out: seen.update(q=args[0]))
    x_t = torch.randn(1, 3, 4)
    out = agai(x_t, torch.ones(1, 3), torch.randn(1, 5, 4))
    assert "theta" not in out and torch.equal(seen["q"], x_t)


def test_contrastive_loss_on_fixed_numbers_is_lowest_for_matched_pairs():
    """eq. 11 with two orthogonal unit pairs: matched, each row's softmax gives the positive e^(1/tau) / (e^(1/tau)
    + 1), so L = log(1 + e^(-1/tau)): 0.3132617 at tau 1, 0.1269280 at tau 0.5. Swapped pairs: log(1 + e^(1/tau))
    = 1.3132617 at tau 1."""
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    swapped = a.flip(0)
    matched_1 = contrastive_loss(a, 3 * a, tau=1.0)  # cosine similarity: the scale does not matter
    torch.testing.assert_close(matched_1, torch.tensor(0.3132617))
    torch.testing.assert_close(contrastive_loss(a, a, tau=0.5), torch.tensor(0.1269280))
    torch.testing.assert_close(contrastive_loss(a, swapped, tau=1.0), torch.tensor(1.3132617))
    # half-way (45 degrees from both): in between
    mid = contrastive_loss(a, torch.tensor([[1.0, 1.0], [1.0, 1.0]]), tau=1.0)
    torch.testing.assert_close(mid, torch.tensor(math.log(2.0)))
    assert matched_1 < mid < contrastive_loss(a, swapped, tau=1.0)
    # a batch of one has no negatives
    assert contrastive_loss(a[:1], swapped[:1], tau=0.4) == 0


def test_multiscale_convolutions_on_fixed_numbers_keep_the_length():
    """eq. 17: kernel (1, 1, 1) with same padding on x = (1, 2, 3, 4): the depthwise path sums neighbours,
    (3, 6, 9, 7); with dilation 2 it sums x[i-2] + x[i] + x[i+2], (4, 6, 4, 6)."""
    conv = MultiScaleConv(d=1, kernel_size=3, dilation=2)
    with torch.no_grad():
        depthwise, pointwise = conv.dw
        for m in (depthwise, conv.dilated):
            m.weight.fill_(1.0)
            m.bias.zero_()
        pointwise.weight.fill_(1.0)
        pointwise.bias.zero_()
    x = torch.tensor([[[1.0, 2.0, 3.0, 4.0]]])  # [B, d, n]
    torch.testing.assert_close(conv.dw(x), torch.tensor([[[3.0, 6.0, 9.0, 7.0]]]))
    torch.testing.assert_close(conv.dilated(x), torch.tensor([[[4.0, 6.0, 4.0, 6.0]]]))
    torch.manual_seed(0)
    conv = MultiScaleConv(d=8, kernel_size=3, dilation=2)
    for n in (1, 2, 5, 49):
        assert conv(torch.randn(2, n, 8)).shape == (2, n, 8)


def test_se_weights_lie_in_unit_interval():
    """eq. 18: w_c = sigmoid(...) per channel. Fixed numbers: W_temp = 0 leaves ReLU(0) = 0, so w_c =
    sigmoid(b_channel): b = (0, ln 3) gives (0.5, 0.75) for any input."""
    se = ChannelAttention(d=2, hidden=3)
    with torch.no_grad():
        se.W_temp.weight.zero_()
        se.W_temp.bias.zero_()
        se.W_channel.bias.copy_(torch.tensor([0.0, math.log(3.0)]))
    torch.testing.assert_close(se(torch.randn(4, 5, 2)), torch.tensor([[0.5, 0.75]]).expand(4, 2))
    torch.manual_seed(0)
    se = ChannelAttention(d=16, hidden=8)
    w = se(3 * torch.randn(6, 7, 16))
    assert w.shape == (6, 16) and ((w > 0) & (w < 1)).all() and w.std() > 0


def test_cgf_eq16_on_fixed_numbers():
    """X_g[i] = sigmoid(W_t x_t) * X_p[i] + sigmoid(W_p X_p[i]) * x_t. W_t = identity (no bias), x_t = (0, ln 3):
    sigmoid -> (0.5, 0.75); W_p = 0 with bias ln 3: sigmoid -> 0.75. X_p = [(2, 4), (1, 0)] gives
    [(1, 3), (0.5, 0)] + 0.75 (0, ln 3) = [(1, 3.8239592), (0.5, 0.8239592)]."""
    cgf = CGF(d=2)
    with torch.no_grad():
        cgf.W_t.weight.copy_(torch.eye(2))
        cgf.W_t.bias.zero_()
        cgf.W_p.weight.zero_()
        cgf.W_p.bias.fill_(math.log(3.0))
    x_g = cgf(torch.tensor([[0.0, math.log(3.0)]]), torch.tensor([[[2.0, 4.0], [1.0, 0.0]]]))
    torch.testing.assert_close(x_g, torch.tensor([[[1.0, 3.8239592], [0.5, 0.8239592]]]))


def test_mag_gate_eq20_to_22_on_fixed_numbers():
    """With the convolution block replaced by the identity, SE weights 0.5 (W_temp = 0, bias 0) and the gate's last
    layer at weight 0, bias ln 3 (g = 0.75): X_chan = 0.5 X_g, X_mag = 0.75 X_chan + 0.25 X_c, and
    X_final = X_mag + X_g = 1.375 X_g + 0.25 X_c."""
    mag = MAG(d=2, hidden=3, kernel_size=3, dilation=2)
    mag.conv = nn.Identity()
    with torch.no_grad():
        for lin in (mag.channel.W_temp, mag.channel.W_channel):
            lin.weight.zero_()
            lin.bias.zero_()
        mag.gate[-1].weight.zero_()
        mag.gate[-1].bias.fill_(math.log(3.0))
    x_g = torch.tensor([[[1.0, 2.0], [3.0, -4.0], [0.0, 8.0]]])
    x_c = torch.tensor([[4.0, -8.0]])
    x_final, g = mag(x_g, x_c)
    torch.testing.assert_close(g, torch.tensor([0.75]))
    torch.testing.assert_close(x_final, 1.375 * x_g + 0.25 * x_c[:, None])


def test_padding_is_masked(bert_resnet):
    """A padded caption gives the same outputs as the same caption alone without padding, whatever the padded
    token states hold; padded text rows / columns of the attention maps are 0."""
    dims, text, image = bert_resnet
    head = _head(dims).eval()
    mask = text.attention_mask
    i = int(mask.sum(1).argmin())
    n = int(mask[i].sum())
    assert n < mask.shape[1]
    noisy = text.layers.clone()
    noisy[(mask == 0)[:, None, :, None].expand_as(noisy)] = 1e4
    batch = head(TextFeatures(noisy, mask, text.pooled), image)
    alone = head(TextFeatures(text.layers[i:i + 1, :, :n], mask[i:i + 1, :n], text.pooled[i:i + 1]),
                 ImageFeatures(image.patches[i:i + 1], image.pooled[i:i + 1], image.logits[i:i + 1]))
    for key in ("logits", "text_logits", "image_logits"):
        torch.testing.assert_close(getattr(batch, key)[i:i + 1], getattr(alone, key), atol=1e-5, rtol=1e-4)
    for key in ("theta", "mag_gate", "pair_similarity"):
        torch.testing.assert_close(batch.explain[key][i:i + 1], alone.explain[key], atol=1e-5, rtol=1e-4)
    t2i, i2t = batch.explain["attention"]["text->image"][i], batch.explain["attention"]["image->text"][i]
    assert (t2i[:, n:] == 0).all() and (i2t[..., n:] == 0).all()
    torch.testing.assert_close(t2i[:, :n], alone.explain["attention"]["text->image"][0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(i2t.sum(-1), torch.ones_like(i2t.sum(-1)))  # rows are distributions over real tokens


@pytest.mark.parametrize("variant", ["", *ENTRY.variants])
def test_gradients_reach_every_parameter(bert_resnet, variant):
    dims, text, image = bert_resnet
    head = _head(dims, variant).train()
    out = head(text, image)
    head.objective(out, torch.tensor([0, 2, 1, 0])).total.backward()
    for name, p in head.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), f"{variant or 'full'}: {name}"
        assert p.grad.abs().sum() > 0, f"{variant or 'full'}: zero gradient for {name}"


def test_variants_remove_what_table7_says(bert_resnet):
    dims, text, image = bert_resnet
    heads = {v: _head(dims, v).eval() for v in ("", "no-mag", "no-hgfm", "no-ieem", "no-agai")}
    built = {v: (h.mag is not None, h.cgf is not None, h.ieem_t is not None, h.agai.proj is not None,
                 h.agai.gate is not None) for v, h in heads.items()}
    # -(MAG) leaves X_c unread, so eq. 8's projection is not built there
    assert built == {"": (True, True, True, True, True), "no-mag": (False, True, True, False, True),
                     "no-hgfm": (False, False, True, True, True), "no-ieem": (False, False, False, True, True),
                     "no-agai": (False, False, False, False, False)}
    outs = {v: h(text, image) for v, h in heads.items()}
    assert "mag_gate" not in outs["no-mag"].explain and "theta" in outs["no-mag"].explain
    assert set(outs["no-agai"].explain) == {"attention"} and outs["no-agai"].losses == {}
    # -(HGFM): the pooled representations averaged; the classifier sees their mean (hooked)
    h = heads["no-hgfm"]
    seen = {}
    h.classifier.register_forward_hook(lambda m, args, out: seen.update(x=args[0]))
    h(text, image)
    assert seen["x"].shape == (4, SMALL["d_model"])


def test_objective_is_ce_plus_lambda_con(bert_resnet):
    """eq. 25: L = CE + lambda L_con; lambda scales the con term linearly, lambda = 0 drops it."""
    dims, text, image = bert_resnet
    y = torch.tensor([0, 2, 1, 0])
    terms = {}
    for lam in (1e-3, 2e-3):
        head = _head(dims, con_weight=lam, aux_weight=0.0).eval()
        terms[lam] = head.objective(head(text, image), y).terms
    assert set(terms[1e-3]) == {"fused", "con"}
    torch.testing.assert_close(terms[2e-3]["con"], 2 * terms[1e-3]["con"])
    torch.testing.assert_close(terms[2e-3]["fused"], terms[1e-3]["fused"])
    head = _head(dims, con_weight=0.0).eval()
    out = head(text, image)
    assert head.agai.proj_t is None and "con" not in head.objective(out, y).terms
    assert "pair_similarity" not in out.explain


def test_aux_heads_are_probes_by_default(bert_resnet):
    dims, text, image = bert_resnet
    head = _head(dims).train()
    out = head(text, image)
    (out.text_logits.sum() + out.image_logits.sum()).backward()
    for name, p in head.named_parameters():
        touched = p.grad is not None and p.grad.abs().sum() > 0
        assert touched == name.startswith(("text_aux.", "image_aux.")), name


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_batch_of_one(bert_resnet, mode):
    dims, text, image = bert_resnet
    head = _head(dims)
    head.train(mode == "train")
    out = head(TextFeatures(text.layers[:1], text.attention_mask[:1], text.pooled[:1]),
               ImageFeatures(image.patches[:1], image.pooled[:1], image.logits[:1]))
    assert out.logits.shape == (1, 3) and out.losses["con"] == 0
    head.objective(out, torch.tensor([1])).total.backward()
    assert all(torch.isfinite(p.grad).all() for p in head.parameters() if p.grad is not None)


def test_learns_a_small_batch(bert_resnet):
    dims, text, image = bert_resnet
    head = _head(dims, dropout=0.0).train()
    y = torch.tensor([0, 2, 1, 0])
    opt = torch.optim.Adam(head.parameters(), lr=3e-3)
    first = None
    for _ in range(30):
        loss = head.objective(head(text, image), y).terms["fused"]
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * first


def test_clip_path_reads_open_clip_tokens_and_patches(clip_pair):
    """The paper's path: open_clip text tokens and ViT patch tokens (tiny open_clip here). A stream already d_model
    wide enters as is (as CLIP's 512-d tokens do in the paper); any other width is projected."""
    dims, text, image = clip_pair
    assert image.logits is None and dims.text_dim == dims.image_dim == 32
    head = _head(dims).eval()  # d_model 32 = the tiny CLIP width
    assert isinstance(head.text_proj.proj, nn.Identity) and isinstance(head.image_proj.proj, nn.Identity)
    out = head(text, image)
    B, L = text.attention_mask.shape
    assert out.logits.shape == (B, 3) and torch.isfinite(out.logits).all()
    assert out.explain["attention"]["text->image"].shape == (B, 4, L, dims.num_patches)
    wide = _head(dims, d_model=64, heads=8).eval()
    assert isinstance(wide.text_proj.proj, nn.Sequential)
    assert torch.isfinite(wide(text, image).logits).all()
    assert isinstance(TokenProjection(1280, 512).proj[0], nn.Linear)  # the offline EfficientNet patches
