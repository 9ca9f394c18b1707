"""INFIG (mmdemo/models/infig.py): the paper's stated properties and our reading of them. FIFO queues for any batch
size, a batch never its own negative, the momentum encoder moving by exactly (1 - m) once per training step and
never in eval, top-j over real tokens only, contrastive losses lowest for matching pairs (fixed numbers), the
ablation rows, padding, gradients, the checkpoint carrying the training state, and CLIP present and absent through
the real trainer."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from mmdemo.checkpoint import compact_checkpoint, load_checkpoint, read_config, save_checkpoint
from mmdemo.encoders import FeatureDims, ImageFeatures, TextFeatures
from mmdemo.models import FeatureNeeds, MultimodalClassifier, TaskInfo, get_model, masked_mean
from mmdemo.models import infig as I
from mmdemo.models.infig import (INFIG, GlobalProjection, KeyQueue, content_fingerprints, fine_grained_loss,
                                 fine_grained_similarity, global_alignment_loss, momentum_update, same_content)

from tests.helpers import LABELS, synthetic_data, train_on_synthetic

ENTRY = get_model("infig")
VARIANTS = ["no-clip", "no-gam", "no-hfam", "no-gam-hfam", "gam-tokens"]
TASK = TaskInfo(("positive", "neutral", "negative"))
# a small head: the properties do not depend on the width
SMALL = dict(hidden=16, heads=2, ffn_dim=32, embed_dim=8, fusion_layers=2, queue_size=8, dropout=0.0)


def _features(B=3, L=7, D=16, K=3, C=24, grid=(2, 3), prior_dim=0, seed=0):
    """Hand-built features; sample 0 has 3 real tokens, the others all L."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, L, dtype=torch.long)
    mask[0, 3:] = 0
    ids = torch.randint(1, 99, (B, L), generator=g) * mask
    prior = (lambda: torch.randn(B, prior_dim, generator=g)) if prior_dim else (lambda: None)
    text = TextFeatures(torch.randn(B, K, L, D, generator=g) * mask[:, None, :, None], mask,
                        torch.randn(B, D, generator=g), ids, None, prior())
    N = grid[0] * grid[1]
    image = ImageFeatures(torch.randn(B, N, C, generator=g), torch.randn(B, C, generator=g), None, prior())
    return FeatureDims(D, K, C, C, 0, grid, 100, prior_dim), text, image


def _head(dims, variant: str = "", **overrides) -> INFIG:
    torch.manual_seed(0)
    return INFIG(ENTRY.config({**SMALL, **overrides}, variant), dims, TASK)


def _rows(text: TextFeatures, image: ImageFeatures, idx: list[int]):
    idx = torch.tensor(idx)
    pick = lambda t: None if t is None else t[idx]  # noqa: E731
    return (TextFeatures(*(pick(getattr(text, f)) for f in ("layers", "attention_mask", "pooled", "input_ids",
                                                             "word_embeddings", "prior"))),
            ImageFeatures(*(pick(getattr(image, f)) for f in ("patches", "pooled", "logits", "prior"))))


def test_registry_defaults_follow_the_paper():
    assert ENTRY.head is INFIG and set(ENTRY.variants) == set(VARIANTS)
    c = ENTRY.config()
    # Sec. 3.2 (tau 0.07), Sec. 4.2 (M = 3 layers, j = 2 on MVSA, lambda_f 0.2, lambda_g 0.3, 3 fusion layers,
    # batch 64); CLIP as the GAM's prior
    assert (c.text_layers, c.top_j, c.lambda_f, c.lambda_g, c.temperature) == (3, 2, 0.2, 0.3, 0.07)
    assert (c.fusion_layers, c.batch_size, c.prior) == (3, 64, "clip-vit-b-16")
    assert c.image_layers >= c.text_layers and 1000 <= c.queue_size <= 2048
    needs = {v: INFIG.needs(ENTRY.config(variant=v)) for v in ["", *VARIANTS]}
    assert needs[""] == FeatureNeeds(3, True, True, "clip-vit-b-16")
    assert needs["no-clip"] == FeatureNeeds(3, True, True, "")
    assert needs["no-gam"] == FeatureNeeds(3, True, True, "")  # CLIP serves the GAM only
    assert needs["no-hfam"] == FeatureNeeds(1, True, True, "clip-vit-b-16")
    assert needs["no-gam-hfam"] == FeatureNeeds(1, True, False, "")


@pytest.mark.parametrize("variant", ["", *VARIANTS])
def test_shapes_explain_and_losses_of_every_row(variant):
    dims, text, image = _features()
    head = _head(dims, variant).train()
    out = head(text, image)
    B, L, N = 3, 7, 6
    for logits in (out.logits, out.text_logits, out.image_logits):
        assert logits.shape == (B, 3) and torch.isfinite(logits).all()
    gam, hfam = variant not in ("no-gam", "no-gam-hfam"), variant not in ("no-hfam", "no-gam-hfam")
    assert set(out.losses) == {k for k, on in (("gam", gam), ("hfam", hfam)) if on}
    assert all(torch.isfinite(v) and v > 0 for v in out.losses.values())
    att = out.explain["attention"]
    assert att["text->image"].shape == (B, 2, L, N) and set(att) == ({"text->image", "token->patch"} if hfam else {"text->image"})
    assert ("alignment" in out.explain) == gam
    if gam:
        assert out.explain["alignment"].shape == (B,)
    if hfam:
        assert att["token->patch"].shape == (B, 1, L, N)
    assert not head.eval()(text, image).losses  # eval: the classification objective only


def test_alignment_and_token_patch_signals_are_the_cosines_they_claim():
    """Against numpy, from the vectors the head compares (caught by hooks): the alignment score is the cosine of the
    image's and the caption's global projections per pair (eq. 1), and token->patch the cosine of every real text token
    with every patch of its own image, 0 on padding rows. Fails if a vector is not normalised, an axis is swapped
    (patch x token), padding is not zeroed, or a caption is compared with another post's image."""
    import numpy as np

    dims, text, image = _features()
    text.attention_mask[1, 5:] = 0  # padding in one caption
    head = _head(dims).eval()
    seen = {}
    head.image_global.cls.register_forward_hook(lambda m, a, out: seen.update(i=out.detach().numpy()))
    head.text_global.cls.register_forward_hook(lambda m, a, out: seen.update(t=out.detach().numpy()))
    head.text_proj.register_forward_hook(lambda m, a, out: seen.update(tok=out[:, -1].detach().numpy()))
    head.visual.register_forward_hook(lambda m, a, out: seen.update(patch=out[-1][:, 1:].detach().numpy()))
    with torch.no_grad():
        out = head(text, image)
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
    want = (unit(seen["i"]) * unit(seen["t"])).sum(-1)
    np.testing.assert_allclose(out.explain["alignment"].numpy(), want, atol=1e-5)
    want = np.einsum("bld,bnd->bln", unit(seen["tok"]), unit(seen["patch"])) * text.attention_mask.numpy()[:, :, None]
    got = out.explain["attention"]["token->patch"][:, 0].numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.all(got[1, 5:] == 0) and np.abs(got[1, :5]).min() > 0


def test_variants_remove_their_component():
    dims, text, image = _features()
    full, no_gam, no_hfam, neither = (_head(dims, v) for v in ("", "no-gam", "no-hfam", "no-gam-hfam"))
    assert full.momentum_pairs() and hasattr(full, "queue") and hasattr(full, "tau")
    assert not no_gam.momentum_pairs() and not hasattr(no_gam, "queue") and not hasattr(no_gam, "visual_m")
    assert not hasattr(neither, "tau") and not hasattr(neither, "image_global")
    # w/o HFAM reads the last text layer only: features with one layer are enough
    one = TextFeatures(text.layers[:, -1:], text.attention_mask, text.pooled, text.input_ids)
    assert torch.allclose(no_hfam.eval()(one, image).logits, no_hfam(text, image).logits)
    with pytest.raises(ValueError, match="text layers"):
        full(one, image)
    with pytest.raises(ValueError, match="image_layers"):
        _head(dims, image_layers=2)
    with pytest.raises(ValueError, match="text layers"):
        _head(dims, text_layers=4)


def test_queue_is_fifo_for_any_batch_size():
    q = KeyQueue(5, 1)
    keys = torch.arange(1.0, 15.0)[:, None]

    def push(a: int, b: int) -> None:
        q.enqueue(keys[a:b], -keys[a:b], keys[a:b, 0] * 10, keys[a:b, 0] * 100)

    push(0, 2)
    assert q.contents()[0].tolist() == [[1.0], [2.0]]  # only filled slots are candidates
    push(2, 4)
    push(4, 7)  # 3 keys: the queue size is not a multiple of the batch
    assert q.image[:, 0].tolist() == [6.0, 7.0, 3.0, 4.0, 5.0]  # 1 and 2, the oldest, left first
    assert (int(q.ptr), int(q.filled)) == (2, 5)
    assert q.text[:, 0].tolist() == [-6.0, -7.0, -3.0, -4.0, -5.0]
    assert q.image_fp.tolist() == [60.0, 70.0, 30.0, 40.0, 50.0] and q.text_fp.tolist()[0] == 600.0
    push(7, 14)  # 7 keys into 5 slots: as if pushed one by one, the last 5 stay
    assert q.image[:, 0].tolist() == [11.0, 12.0, 13.0, 14.0, 10.0] and int(q.ptr) == 4
    push(0, 1)  # the next key replaces the oldest (10)
    assert q.image[:, 0].tolist() == [11.0, 12.0, 13.0, 14.0, 1.0]


def test_training_batches_of_any_size_fill_the_queue_in_order():
    """Batches of 3, 3 and a last smaller one of 2 into a queue of 7: the keys of the last batch sit in slots 6 and 0,
    and they are the momentum encoder's keys of its pairs."""
    dims, text, image = _features(B=8, seed=1)
    head = _head(dims, queue_size=7).train()
    for idx in ([0, 1, 2], [3, 4, 5], [6, 7]):
        out = head(*_rows(text, image, idx))
        assert all(torch.isfinite(v) for v in out.losses.values())
    assert (int(head.queue.ptr), int(head.queue.filled)) == (1, 7)
    with torch.no_grad():
        t_m = head.text_global_m(text.pooled[6:8], None)
    torch.testing.assert_close(head.queue.text[[6, 0]], t_m)
    torch.testing.assert_close(head.queue.text_fp[[6, 0]], content_fingerprints(*_rows(text, image, [6, 7]))[1])


def test_a_batch_never_meets_its_own_keys_as_negatives(monkeypatch):
    dims, text, image = _features(seed=2)
    head = _head(dims).train()
    seen = []

    def spy(*args, **kwargs):
        seen.append({"queue": args[5].clone(), "excluded": args[7].clone()})
        return loss_fn(*args, **kwargs)

    loss_fn = I.global_alignment_loss
    monkeypatch.setattr(I, "global_alignment_loss", spy)
    head(text, image)
    # the loss read the queue before this batch's keys entered it
    assert seen[0]["queue"].shape[0] == 0 and int(head.queue.filled) == 3
    assert not seen[0]["excluded"].any()  # three different pairs: every other pair is a negative
    # the same pairs again (the next epoch): each meets its own earlier key in the queue, never as a negative, and
    # the other pairs' earlier keys stay negatives
    head(text, image)
    assert seen[1]["queue"].shape[0] == 3
    assert torch.equal(seen[1]["excluded"], torch.cat([torch.zeros(3, 3, dtype=torch.bool), torch.eye(3).bool()], 1))


def test_pairs_sharing_an_image_or_a_caption_are_not_negatives():
    """MediaEval has many posts per image; one caption padded to two lengths is still one caption."""
    dims, text, image = _features(B=4, seed=3)
    image.pooled[2] = image.pooled[1]  # pairs 1 and 2: one image, two captions
    text.input_ids[3] = text.input_ids[1]  # pairs 1 and 3: one caption, two images
    fp = content_fingerprints(text, image)
    shared = same_content(fp, fp)
    expected = torch.eye(4, dtype=torch.bool)
    expected[1, 2] = expected[2, 1] = expected[1, 3] = expected[3, 1] = True
    assert torch.equal(shared, expected)
    longer = TextFeatures(text.layers, F.pad(text.attention_mask, (0, 5)), text.pooled, F.pad(text.input_ids, (0, 5)))
    torch.testing.assert_close(content_fingerprints(longer, image)[1], fp[1], rtol=0, atol=0)
    # features without token ids: captions never match, images still do
    no_ids = TextFeatures(text.layers, text.attention_mask, text.pooled)
    expected[1, 3] = expected[3, 1] = False
    assert torch.equal(same_content(content_fingerprints(no_ids, image), fp), expected)


def test_top_j_ignores_padding_on_fixed_numbers():
    """Patches (1, 0), (0, 1); real tokens (1, 0), (1, 1), (0, 1) and a padding token (0, 5) that would be every
    patch's best match. eq. 3-4 with j = 2: S_p2q = mean(mean(1, 0.70711), mean(0.70711, 1)) = 0.85355 (0.92678 if
    the padding counted); S_q2p = mean(0.5, 0.70711, 0.5) = 0.56904 (0.55178). j = 1: 1 and mean(1, 0.70711, 1)."""
    patches = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    tokens = torch.tensor([[[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 5.0]]])
    mask = torch.tensor([[1, 1, 1, 0]])
    s_p2q, s_q2p = fine_grained_similarity(patches, tokens, mask, j=2)
    torch.testing.assert_close(s_p2q, torch.tensor([[0.8535534]]))
    torch.testing.assert_close(s_q2p, torch.tensor([[0.5690356]]))
    s_p2q, s_q2p = fine_grained_similarity(patches, tokens, mask, j=1)
    torch.testing.assert_close(s_p2q, torch.tensor([[1.0]]))
    torch.testing.assert_close(s_q2p, torch.tensor([[0.9023689]]))
    # fewer real tokens than j: the mean of the real ones (patch 1: 1, patch 2: 0); token (1, 0): mean(1, 0)
    s_p2q, s_q2p = fine_grained_similarity(patches, tokens, torch.tensor([[1, 0, 0, 0]]), j=2)
    torch.testing.assert_close(s_p2q, torch.tensor([[0.5]]))
    torch.testing.assert_close(s_q2p, torch.tensor([[0.5]]))


def test_fine_grained_similarity_of_a_batch_is_that_of_each_pair():
    """The batched eq. 3-4 (image blocks against the batch's real tokens) gives every (image, text) entry the value
    of that pair alone with its padding cut off, and the same values and gradients for any block size."""
    torch.manual_seed(0)
    patches, tokens = torch.randn(5, 4, 6), torch.randn(3, 7, 6)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0, 0]])
    for j in (1, 2, 3):
        s_p2q, s_q2p = fine_grained_similarity(patches, tokens, mask, j)
        for p in range(5):
            for q in range(3):
                n = int(mask[q].sum())
                alone = fine_grained_similarity(patches[p:p + 1], tokens[q:q + 1, :n], mask[q:q + 1, :n], j)
                torch.testing.assert_close((s_p2q[p, q], s_q2p[p, q]), (alone[0][0, 0], alone[1][0, 0]))
    grads = []
    for block in (1, 2, 8):
        x, t = patches.clone().requires_grad_(), tokens.clone().requires_grad_()
        s_p2q, s_q2p = fine_grained_similarity(x, t, mask, 2, block=block)
        (s_p2q * torch.arange(15.0).view(5, 3)).sum().add(s_q2p.square().sum()).backward()
        grads.append((s_p2q, s_q2p, x.grad, t.grad))
    for other in grads[1:]:
        torch.testing.assert_close(other, grads[0])
    assert grads[0][3][1, 2:].abs().sum() == 0  # padding tokens get no gradient


def test_contrastive_losses_are_lowest_when_pairs_match():
    e1, e2, e3 = torch.eye(3)
    a, b = torch.stack([e1, e2]), torch.stack([e2, e1])
    empty = torch.zeros(0, 3)
    # eq. 1-2 with tau = 1: matching pairs give each row logits (1, 0): log(1 + e^-1); swapped captions (0, 1)
    match = global_alignment_loss(a, a, a, a, empty, empty, 1.0)
    swapped = global_alignment_loss(a, b, a, b, empty, empty, 1.0)
    torch.testing.assert_close(match, torch.tensor(math.log(1 + math.exp(-1))))
    torch.testing.assert_close(swapped, torch.tensor(math.log(1 + math.exp(1))))
    # one queued key orthogonal to both (a negative): log(1 + 2 e^-1); a stale copy of pair 0's own key (e1), left out
    # for row 0 by the mask: row 0 keeps log(1 + e^-1), row 1 meets it as a negative: log(1 + 2 e^-1)
    queued = global_alignment_loss(a, a, a, a, e3[None], e3[None], 1.0)
    torch.testing.assert_close(queued, torch.tensor(math.log(1 + 2 * math.exp(-1))))
    excluded = torch.tensor([[False, False, True], [False, False, False]])
    stale = global_alignment_loss(a, a, a, a, e1[None], e1[None], 1.0, excluded)
    torch.testing.assert_close(stale, torch.tensor((math.log(1 + math.exp(-1)) + math.log(1 + 2 * math.exp(-1))) / 2))
    # eq. 5-6, one patch and one token per sample, j = 1, tau = 0.5: S = identity -> log(1 + e^-2), swapped log(1 + e^2);
    # averaged over M = 2 identical layers (the 1 / 2M of eq. 6) the value is the same
    img, txt = a[:, None, :], a[:, None, :]
    mask = torch.ones(2, 1, dtype=torch.long)
    torch.testing.assert_close(fine_grained_loss([(img, txt)], mask, 1, 0.5), torch.tensor(math.log(1 + math.exp(-2))))
    torch.testing.assert_close(fine_grained_loss([(img, txt)] * 2, mask, 1, 0.5),
                               torch.tensor(math.log(1 + math.exp(-2))))
    torch.testing.assert_close(fine_grained_loss([(img, b[:, None, :])], mask, 1, 0.5),
                               torch.tensor(math.log(1 + math.exp(2))))


def test_global_vectors_with_clip_average_the_two_cosines():
    """i_g, t_g = concat of the normalised halves / sqrt 2, so sigma = (cos(i_cls, t_cls) + cos(i_clip, t_clip)) / 2:
    (0.70711 + 1) / 2 = 0.85355 with identity projections."""
    proj = GlobalProjection(2, 2, 2)
    with torch.no_grad():
        for linear in (proj.cls, proj.clip):
            linear.weight.copy_(torch.eye(2))
            linear.bias.zero_()
    i_g = proj(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 3.0]]))
    t_g = proj(torch.tensor([[2.0, 2.0]]), torch.tensor([[0.0, 1.0]]))
    torch.testing.assert_close((i_g * t_g).sum(-1), torch.tensor([0.8535534]))
    torch.testing.assert_close(i_g.norm(dim=-1), torch.tensor([1.0]))
    no_prior = GlobalProjection(2, 0, 2)
    assert no_prior.clip is None and no_prior(torch.ones(1, 2), None).shape == (1, 2)


def test_momentum_moves_by_exactly_one_minus_m_once_per_training_step():
    online, momentum = nn.Linear(1, 1), nn.Linear(1, 1)
    with torch.no_grad():
        online.weight.fill_(1.0), online.bias.fill_(2.0), momentum.weight.fill_(0.0), momentum.bias.fill_(0.0)
    momentum_update(online, momentum, 0.9)
    assert (momentum.weight.item(), momentum.bias.item()) == pytest.approx((0.1, 0.2))
    momentum_update(online, momentum, 0.9)
    assert (momentum.weight.item(), momentum.bias.item()) == pytest.approx((0.19, 0.38))

    dims, text, image = _features()
    head = _head(dims, momentum=0.9)
    with torch.no_grad():  # online weights away from their momentum copies, as after optimizer steps
        for online, _ in head.momentum_pairs():
            for p in online.parameters():
                p.add_(torch.randn_like(p))
    state = lambda: {k: v.clone() for k, v in head.state_dict().items()}  # noqa: E731
    before = state()
    # eval forward and the objective (the trainer's dev loss) change nothing
    out = head.eval()(text, image)
    head.objective(out, torch.tensor([0, 1, 2]))
    assert all(torch.equal(before[k], v) for k, v in head.state_dict().items())
    # one training step: forward, then the objective; every momentum parameter moves by exactly 0.1 toward its
    # online twin, once
    head.train()
    head.objective(head(text, image), torch.tensor([0, 1, 2])).total.backward()
    after, names = head.state_dict(), {id(p): name for name, p in head.named_parameters()}
    for online, momentum in head.momentum_pairs():
        for p, p_m in zip(online.parameters(), momentum.parameters()):
            key = names[id(p_m)]
            torch.testing.assert_close(p_m, 0.9 * before[key] + 0.1 * p.detach(), msg=key)
            assert not p_m.requires_grad and p_m.grad is None  # never trained by the loss
    assert int(head.queue.filled) == 3
    assert not torch.equal(after["queue.text"], before["queue.text"])


def test_padding_changes_nothing():
    dims, text, image = _features()
    layers, ids = text.layers.clone(), text.input_ids.clone()
    layers[0, :, 3:] = 100 * torch.randn_like(layers[0, :, 3:])
    ids[0, 3:] = 42
    noisy = TextFeatures(layers, text.attention_mask, text.pooled, ids)
    head = _head(dims)
    a, b = head.eval()(text, image), head(noisy, image)
    for x, y in ((a.logits, b.logits), (a.text_logits, b.text_logits), (a.explain["alignment"], b.explain["alignment"])):
        torch.testing.assert_close(x, y)
    for name in ("text->image", "token->patch"):
        torch.testing.assert_close(a.explain["attention"][name], b.explain["attention"][name])
        assert torch.all(a.explain["attention"][name][0, :, 3:] == 0)  # padding rows
    # the fusion attention of a real token over the patches is its share of the joint softmax: in (0, 1]
    share = a.explain["attention"]["text->image"][0, :, :3].sum(-1)
    assert ((share > 0) & (share <= 1 + 1e-6)).all()
    # training: the same alignment losses (dropout 0 here), the same keys in the queue
    twin = copy.deepcopy(head)
    la, lb = head.train()(text, image).losses, twin.train()(noisy, image).losses
    for k in la:
        torch.testing.assert_close(la[k], lb[k])
    torch.testing.assert_close(head.queue.text_fp, twin.queue.text_fp)


@pytest.mark.parametrize("variant", ["", *VARIANTS])
def test_gradients_reach_every_trainable_parameter(variant):
    dims, text, image = _features(prior_dim=5)
    head = _head(dims, variant).train()
    head.objective(head(text, image), torch.tensor([0, 1, 2])).total.backward()
    for name, p in head.named_parameters():
        if name.split(".")[0].endswith("_m"):
            assert not p.requires_grad and p.grad is None, name
            continue
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, f"{variant}: {name}"


def test_batch_of_one_trains_and_predicts_as_in_a_batch():
    dims, text, image = _features()
    head = _head(dims).train()
    out = head(*_rows(text, image, [1]))
    head.objective(out, torch.tensor([1])).total.backward()  # one pair: no negatives, finite losses
    assert all(torch.isfinite(v) for v in out.losses.values())
    head.eval()
    torch.testing.assert_close(head(*_rows(text, image, [1])).logits, head(text, image).logits[1:2])


def test_checkpoint_round_trip_carries_queue_and_momentum_encoder(tmp_path):
    dims, text, image = _features()
    clf = MultimodalClassifier("infig", "test", list(TASK.labels), "tiny-bert", "tiny-resnet", dims.to_dict(),
                               head=SMALL).train()
    with torch.no_grad():
        for p in clf.head.visual.parameters():
            p.add_(0.1)
        clf(text, image)
        clf(text, image)
    loaded = load_checkpoint(save_checkpoint(clf.eval(), tmp_path / "ckpt"))
    for (k, v), w in zip(clf.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(v, w), k
    assert int(loaded.head.queue.filled) == 6
    with torch.no_grad():
        a, b = clf(text, image), loaded(text, image)
    assert torch.equal(a.logits, b.logits)

    # The bundled form leaves the momentum encoders and the queues out; loading it starts them as training does
    # (momentum = online, queues empty) and predicts as before, up to float16 rounding.
    before, after = compact_checkpoint(tmp_path / "ckpt")
    small = load_checkpoint(tmp_path / "ckpt")
    assert after < before / 2
    assert int(small.head.queue.filled) == 0 and int(small.head.queue.ptr) == 0
    for online, momentum in small.head.momentum_pairs():
        for p, p_m in zip(online.parameters(), momentum.parameters()):
            assert torch.equal(p, p_m)
    with torch.no_grad():
        assert torch.allclose(small(text, image).logits, a.logits, atol=1e-2)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synthetic_data(tmp_path_factory.mktemp("infig"), n_train=32, n_dev=8, n_test=8, corrupt=0)


def _train(tmp_path, data, monkeypatch, **overrides):
    return train_on_synthetic(tmp_path, data, monkeypatch, "infig", **{**SMALL, "epochs": 2, "batch_size": 12, **overrides})


def test_clip_present_and_absent_through_the_trainer(data, tmp_path, monkeypatch):
    import json

    from mmdemo.predict import Predictor

    # present: the tiny open_clip model's global vectors reach the GAM, from the cache and live
    out = _train(tmp_path / "clip", data, monkeypatch, prior="tiny-clip")
    config = read_config(out)
    assert config["prior_encoder"] == "tiny-clip" and config["dims"]["prior_dim"] == 32
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert {"fused", "gam", "hfam"} <= set(history[0]["train_terms"])
    model = load_checkpoint(out)
    head = model.head
    assert head.image_global.clip.in_features == 32 and head.queue.image.shape[1] == 2 * SMALL["embed_dim"]
    assert int(head.queue.filled) == SMALL["queue_size"] and not model.missing_prior
    image = Image.new("RGB", (64, 64), (40, 90, 200))
    p = Predictor(model)
    pred = p.predict(image, "rain and storm")
    assert pred.labels == LABELS
    # with CLIP the score is the mean of the network's cosine and CLIP's (eq. 1 over the concatenated unit halves):
    # against numpy, from the four projections caught by hooks; a missing 1/sqrt(2) or an ignored CLIP half fails
    import numpy as np

    seen = {}
    for name, proj in (("i", head.image_global), ("t", head.text_global)):
        for part in ("cls", "clip"):
            getattr(proj, part).register_forward_hook(
                lambda m, a, out, key=name + part: seen.update({key: out.detach().float().numpy()}))
    inputs, _ = p.prepare(image, "rain and storm")
    with torch.no_grad():
        base = p.pipeline(**inputs).explain["alignment"]
    cos = lambda a, b: float((a * b).sum() / (np.linalg.norm(a) * np.linalg.norm(b)))  # noqa: E731
    want = (cos(seen["icls"], seen["tcls"]) + cos(seen["iclip"], seen["tclip"])) / 2
    assert float(base) == pytest.approx(want, abs=1e-5)
    assert float(pred.explain["alignment"]) == pytest.approx(want, abs=1e-3)  # the app's path, same input
    # the alignment score reads CLIP: other prior vectors, another score
    with torch.no_grad():
        other = p.pipeline(**{**inputs, "prior_image": -inputs["prior_image"]}).explain["alignment"]
    assert not torch.allclose(base, other)

    # absent: CLIP's weights are not on this machine, so the model is built without it (the paper's w/o CLIP row)
    out = _train(tmp_path / "offline", data, monkeypatch)
    config = read_config(out)
    assert config["prior_encoder"] == "" and config["dims"]["prior_dim"] == 0
    model = load_checkpoint(out)
    assert model.missing_prior == "clip-vit-b-16" and model.head.image_global.clip is None
    assert model.head.queue.image.shape[1] == SMALL["embed_dim"]


@pytest.mark.parametrize("gam_text,reaches", [("sentence", False), ("tokens", True)])
def test_the_global_alignment_reaches_the_text_side_the_classifier_reads_only_from_tokens(gam_text, reaches):
    """L_g's gradient on the text projection W_t, which the fusion (and so the classifier) reads: none when t_cls is
    the frozen encoder's sentence vector, some when it is the projected tokens' mean; the momentum copy of W_t
    exists only then, and follows W_t after a step."""
    dims, text, image = _features()
    head = _head(dims, use_hfam=False, gam_text=gam_text).train()
    out = head(text, image)
    out.losses["gam"].backward()
    grad = head.text_proj[0].weight.grad
    assert (grad is not None and grad.abs().sum() > 0) == reaches
    assert hasattr(head, "text_proj_m") == reaches
    if reaches:
        assert not any(p.requires_grad for p in head.text_proj_m.parameters())
        assert any(online is head.text_proj and m is head.text_proj_m for online, m in head.momentum_pairs())
        # the fused text tokens and t_g now share W_t: the score is the cosine of i_g and the tokens' mean
        head.eval()
        with torch.no_grad():
            t = head.text_proj(text.layers[:, -1])
            t_g = head.text_global(masked_mean(t, text.attention_mask), None)
            i_g = head.image_global(head.visual(image.patches)[-1][:, 0], None)
            assert torch.allclose(head(text, image).explain["alignment"], (i_g * t_g).sum(-1), atol=1e-6)
