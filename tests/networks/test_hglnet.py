"""HGLNet: contract, the paper's stated properties (GGA weights sum to 1, shared CRTs, GGA scaling), masking,
ablation variants, gradients, checkpoint round trip, two encoder families."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from mmdemo.checkpoint import load_checkpoint, save_checkpoint
from mmdemo.encoders import FeatureDims, ImageFeatures, TextFeatures, create_image_encoder, create_text_encoder
from mmdemo.models import MultimodalClassifier, TaskInfo, get_model
from mmdemo.models.hglnet import CrossResidualSelfAttention, GlobalGatedAttention, HGLNet, HGLNetConfig

NUM_LABELS = 3
VARIANTS = ["no-text", "no-image", "no-hierarchy", "no-gga", "no-crt"]
CAPTIONS = ["a dog runs on the beach", "so sad today", "what a great game last night, loved it!"]


def _images(n: int) -> list[Image.Image]:
    g = torch.Generator().manual_seed(1)
    return [Image.fromarray((torch.rand(40, 48, 3, generator=g) * 255).byte().numpy()) for _ in range(n)]


def _encode(text_name: str, image_name: str, layers: int):
    te, ie = create_text_encoder(text_name), create_image_encoder(image_name)
    with torch.no_grad():
        text = te.encode(CAPTIONS, num_layers=layers)
        image = ie.encode(_images(len(CAPTIONS)))
    return FeatureDims.of(te, ie), text, image


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny tensors: intra-op threads only contend on a shared CPU (28 s -> 4 s for this file)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def bert_resnet():
    """tiny-bert (4 layers, D=32) + tiny-resnet (C=512, grid 2x2, ImageNet logits)."""
    return _encode("tiny-bert", "tiny-resnet", 4)


@pytest.fixture(scope="module")
def clip():
    """tiny-clip-text (2 layers) + tiny-clip-image (grid 4x4, logits=None -> GGA reads the pooled vector)."""
    return _encode("tiny-clip-text", "tiny-clip-image", 2)


def _features(B=2, L=7, D=16, K=4, C=24, grid=(2, 3), logits=True, seed=0):
    """Hand-built features with padding: sample 0 has 3 real tokens, the others all L."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, L, dtype=torch.long)
    mask[0, 3:] = 0
    text = TextFeatures(torch.randn(B, K, L, D, generator=g), mask, torch.randn(B, D, generator=g))
    N = grid[0] * grid[1]
    image = ImageFeatures(torch.randn(B, N, C, generator=g), torch.randn(B, C, generator=g),
                          torch.randn(B, 1000, generator=g) if logits else None)
    dims = FeatureDims(D, K, C, C, 1000 if logits else 0, grid)
    return dims, text, image


def _head(dims, variant: str = "", **overrides) -> HGLNet:
    torch.manual_seed(0)
    config = get_model("hglnet").config(overrides, variant)
    return HGLNet(config, dims, TaskInfo(("positive", "neutral", "negative")))


def _loss(out) -> torch.Tensor:
    y = torch.arange(out.logits.shape[0]) % NUM_LABELS
    return F.cross_entropy(out.logits, y) + F.cross_entropy(out.text_logits, y) + F.cross_entropy(out.image_logits, y)


def _slice(text: TextFeatures, image: ImageFeatures, i: int):
    t = TextFeatures(text.layers[i:i + 1], text.attention_mask[i:i + 1], text.pooled[i:i + 1])
    logits = None if image.logits is None else image.logits[i:i + 1]
    v = ImageFeatures(image.patches[i:i + 1], image.pooled[i:i + 1], logits)
    return t, v


def test_registry_defaults_follow_paper():
    entry = get_model("hglnet")
    assert entry.head is HGLNet and set(entry.variants) == set(VARIANTS)
    c = entry.config()
    assert isinstance(c, HGLNetConfig)
    # Sec. 4.1 and Table 2 (Weibo column)
    assert (c.text_layers, c.crt_modules, c.d_g, c.d_f, c.heads, c.dropout) == (4, 2, 10, 32, 4, 0.5)
    assert (c.weight_decay, c.batch_size, c.epochs) == (0.01, 128, 30)


def test_forward_backward_shapes_and_explain(bert_resnet):
    dims, text, image = bert_resnet
    head = _head(dims).train()
    out = head(text, image)
    B, L, N = len(CAPTIONS), text.attention_mask.shape[1], dims.num_patches
    for logits in (out.logits, out.text_logits, out.image_logits):
        assert logits.shape == (B, NUM_LABELS) and torch.isfinite(logits).all()
    assert out.explain["modality_weights"].shape == (B, 2)
    att = out.explain["attention"]
    assert att["text->image"].shape == (B, 4, L, N)
    assert att["image->text"].shape == (B, 4, N, L)
    assert HGLNet.signals["text->image"].axes == ("text", "image") and HGLNet.signals["image->text"].axes == ("image", "text")
    assert HGLNet.signals["modality_weights"].components == ("text", "image")
    _loss(out).backward()


def test_gga_weights_sum_to_one_and_depend_on_input(bert_resnet):
    dims, text, image = bert_resnet
    head = _head(dims).eval()
    w = head(text, image).explain["modality_weights"]
    assert torch.allclose(w.sum(-1), torch.ones(len(CAPTIONS)), atol=1e-6)
    assert ((w > 0) & (w < 1)).all()
    assert not torch.allclose(w[0], w[1])  # sample-specific, not a constant


# GGA with its reductions set to constants (e_cls -> 0, v_g -> ln 3 in each of the d_g = 10 coordinates) and fc1, fc2
# to 0: eq. 4 gives 1/2 everywhere, eq. 5 w1 = 10 * sigmoid(0) / 2 / sqrt(10) = 0.79057 and w2 = 10 * 3/4 / 2 / sqrt(10)
# = 1.18585, and eq. 6-7's softmax (text, image) = (0.40245, 0.59755).
W_TEXT, W_IMAGE = 0.4024457649, 0.5975542351


def _fixed_gga(head: HGLNet) -> None:
    g = head.gga
    assert g.d_g == 10
    with torch.no_grad():
        for linear, bias in ((g.reduce_text, 0.0), (g.reduce_image, math.log(3.0)), (g.fc1, 0.0), (g.fc2, 0.0)):
            linear.weight.zero_()
            linear.bias.fill_(bias)


def test_gga_weights_and_the_scaled_streams_on_fixed_numbers():
    """eq. 4-9: the fixed GGA above gives (0.40245, 0.59755) for every input; the text stream is scaled by the first
    (text) weight and the image stream by the second. Fails if the weights are swapped, the sqrt(d_g) scaling or a
    sigmoid is dropped, or the softmax runs over another axis; no-gga leaves the streams unscaled."""
    dims, text, image = _features()
    head = _head(dims).eval()
    _fixed_gga(head)
    s = head.aligned_streams(text, image)
    torch.testing.assert_close(s["weights"], torch.tensor([[W_TEXT, W_IMAGE]] * 2))
    torch.testing.assert_close(s["text"], W_TEXT * s["text_raw"])
    torch.testing.assert_close(s["image"], W_IMAGE * s["image_raw"])

    off = _head(dims, "no-gga").eval()
    assert off.gga is None
    s = off.aligned_streams(text, image)
    assert "weights" not in s and torch.equal(s["text"], s["text_raw"]) and torch.equal(s["image"], s["image_raw"])
    assert "modality_weights" not in off(text, image).explain


def test_classifier_input_on_fixed_numbers():
    """eq. 8-17 without the CRTs (HGLNet-C), on fixed numbers: the alignment LayerNorms set to weight 0 and bias
    (1, -1, 1, -1, ...) for text and (2, -2, ...) for the image make every aligned token that bias; the fixed GGA
    scales them by 0.40245 and 0.59755; ReLU + GAP then give (0.40245, 0, ...) and (1.19511, 0, ...) for each of the
    four layers, concatenated text then image, layer by layer (eq. 17). Fails on a missing ReLU, a wrong weight, a
    pooling over padding, or another layout of the fused vector."""
    dims, text, image = _features()
    head = _head(dims, "no-crt").eval()
    _fixed_gga(head)
    d_f = head.config.d_f
    sign = torch.tensor([1.0, -1.0]).repeat(d_f // 2)
    with torch.no_grad():
        for ln, scale in ((head.text_align.ln, 1.0), (head.image_align.ln, 2.0)):
            ln.weight.zero_()
            ln.bias.copy_(scale * sign)
    seen = {}
    head.classifier.register_forward_hook(lambda m, args, out: seen.update(x=args[0]))
    head(text, image)
    layer = torch.cat([W_TEXT * sign.clamp_min(0), 2 * W_IMAGE * sign.clamp_min(0)])
    torch.testing.assert_close(seen["x"], layer.repeat(4).expand(2, -1))


def test_two_shared_crts_serve_four_layers(tmp_path, bert_resnet):
    dims, text, image = bert_resnet
    head = _head(dims)
    assert len(head.crts) == 2
    assert head.crt_for_layer(0) is head.crt_for_layer(1) and head.crt_for_layer(2) is head.crt_for_layer(3)
    assert head.crt_for_layer(1) is not head.crt_for_layer(2)
    # parameter count reflects the sharing: four unshared CRTs cost exactly two more CRTs
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    unshared = _head(dims, crt_modules=4)
    assert n(unshared) - n(head) == 2 * n(head.crts[0])

    # save / load round trip keeps one set of weights per CRT, still serving two layers each
    clf = MultimodalClassifier("hglnet", "test", ["a", "b", "c"], "tiny-bert", "tiny-resnet",
                               dims.to_dict()).eval()
    save_checkpoint(clf, tmp_path / "ckpt")
    loaded = load_checkpoint(tmp_path / "ckpt")
    crt_keys = {k.split(".")[2] for k in loaded.state_dict() if k.startswith("head.crts.")}
    assert crt_keys == {"0", "1"}
    lh = loaded.head
    assert lh.crt_for_layer(0) is lh.crt_for_layer(1) and lh.crt_for_layer(2) is lh.crt_for_layer(3)
    with torch.no_grad():
        a, b = clf(text, image), loaded(text, image)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.text_logits, b.text_logits)
    assert torch.equal(a.image_logits, b.image_logits)
    assert torch.equal(a.explain["attention"]["text->image"], b.explain["attention"]["text->image"])


def test_padding_is_masked_everywhere():
    dims, text, image = _features()
    head = _head(dims).eval()
    mask = text.attention_mask
    out = head(text, image)
    att = out.explain["attention"]
    assert torch.all(att["image->text"][0, :, :, 3:] == 0)  # padding keys get no attention
    assert torch.allclose(att["image->text"].sum(-1), torch.ones(2, 4, dims.num_patches), atol=1e-5)
    assert torch.all(att["text->image"][0, :, 3:] == 0)  # padding query rows are zeroed
    assert torch.allclose(att["text->image"][0, :, :3].sum(-1), torch.ones(4, 3), atol=1e-5)
    # garbage in the padding positions changes nothing
    layers = text.layers.clone()
    layers[0, :, 3:] = 100 * torch.randn_like(layers[0, :, 3:])
    noisy = head(TextFeatures(layers, mask, text.pooled), image)
    for a, b in ((out.logits, noisy.logits), (out.text_logits, noisy.text_logits)):
        assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("variant", [""] + VARIANTS)
def test_gradients_reach_every_parameter(variant):
    dims, text, image = _features()
    head = _head(dims, variant).train()
    _loss(head(text, image)).backward()
    for name, p in head.named_parameters():
        assert p.requires_grad
        assert p.grad is not None, f"{variant or 'full'}: no gradient for {name}"
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{variant or 'full'}: zero gradient for {name}"


@pytest.mark.parametrize("detach", [False, True])
def test_aux_detach_makes_the_unimodal_heads_probes(detach):
    """aux_detach=True: the unimodal heads' loss trains the heads alone, never the eq. 8-9 alignment layers;
    the fused prediction and the heads' own outputs are the same either way."""
    dims, text, image = _features()
    head, other = _head(dims, aux_detach=detach), _head(dims, aux_detach=not detach)
    with torch.no_grad():
        a, b = head.eval()(text, image), other.eval()(text, image)
    for x, z in ((a.logits, b.logits), (a.text_logits, b.text_logits), (a.image_logits, b.image_logits)):
        torch.testing.assert_close(x, z)
    out = head.train()(text, image)
    y = torch.arange(2) % NUM_LABELS
    (F.cross_entropy(out.text_logits, y) + F.cross_entropy(out.image_logits, y)).backward()
    assert head.text_head[0].weight.grad.abs().sum() > 0 and head.image_head[0].weight.grad.abs().sum() > 0
    for block in (head.text_align, head.image_align):
        grads = [p.grad for p in block.parameters()]
        assert all(g is None for g in grads) if detach else any(g is not None and g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("variant", VARIANTS)
def test_variants_build_and_run(variant):
    dims, text, image = _features()
    head = _head(dims, variant).eval()
    out = head(text, image)
    assert out.logits.shape == (2, NUM_LABELS) and torch.isfinite(out.logits).all()
    bimodal = variant not in ("no-text", "no-image")
    assert ("modality_weights" in out.explain) == (bimodal and variant != "no-gga")
    assert ("attention" in out.explain) == (bimodal and variant != "no-crt")
    if variant == "no-hierarchy":
        assert head.config.text_layers == 1 and len(head.crts) == 1
        assert head.classifier[-1].in_features == 2 * head.config.d_f


def test_single_modality_rows_ignore_the_removed_modality():
    dims, text, image = _features()
    dims2, text2, image2 = _features(seed=5)
    no_text, no_image = _head(dims, "no-text").eval(), _head(dims, "no-image").eval()
    assert no_text.gga is None and no_text.crts is None and no_image.gga is None and no_image.crts is None
    # HGLNet-T: fused prediction from the image alone; HGLNet-V: from the text hierarchy alone
    assert torch.allclose(no_text(text, image).logits, no_text(text2, image).logits)
    assert not torch.allclose(no_text(text, image).logits, no_text(text, image2).logits)
    assert torch.allclose(no_image(text, image).logits, no_image(text, image2).logits)
    assert not torch.allclose(no_image(text, image).logits, no_image(text2, image).logits)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_batch_of_one(mode, bert_resnet):
    dims, text, image = bert_resnet  # 2x2 grid: BatchNorm2d sees 4 values per channel
    head = _head(dims).train(mode == "train")
    t, v = _slice(text, image, 1)
    out = head(t, v)
    assert out.logits.shape == (1, NUM_LABELS) and torch.isfinite(out.logits).all()
    assert out.explain["modality_weights"].shape == (1, 2)
    if mode == "train":
        _loss(out).backward()
    else:  # eval: a sample alone predicts what it predicts inside a batch
        assert torch.allclose(out.logits, head(text, image).logits[1:2], atol=1e-5)


def test_clip_family_without_imagenet_logits(clip):
    dims, text, image = clip
    assert image.logits is None and dims.image_global_dim == dims.image_pooled_dim
    with pytest.raises(ValueError, match="text layers"):
        _head(dims)  # 4 layers asked, tiny-clip-text has 2
    head = _head(dims, text_layers=2).train()
    out = head(text, image)
    L, N = text.attention_mask.shape[1], dims.num_patches
    assert out.explain["attention"]["text->image"].shape == (3, 4, L, N) and N == 16
    assert torch.allclose(out.explain["modality_weights"].sum(-1), torch.ones(3), atol=1e-6)
    _loss(out).backward()
    assert all(p.grad is not None for p in head.parameters())


def test_checkpoint_round_trip_variant(tmp_path, clip):
    dims, text, image = clip
    clf = MultimodalClassifier("hglnet", "test", ["a", "b", "c"], "tiny-clip-text", "tiny-clip-image",
                               dims.to_dict(),
                               head={"text_layers": 2}, variant="no-gga").eval()
    with torch.no_grad():  # move BN running stats away from their init so the round trip has to carry them
        clf.train()(text, image)
    clf.eval()
    loaded = load_checkpoint(save_checkpoint(clf, tmp_path / "ckpt"), text_encoder="tiny-clip-text")
    assert loaded.variant == "no-gga" and loaded.head.gga is None and loaded.head.config.text_layers == 2
    with torch.no_grad():
        a, b = clf(text, image), loaded(text, image)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.image_logits, b.image_logits)


def _set(linear: torch.nn.Linear, weight: list) -> None:
    with torch.no_grad():
        linear.weight.copy_(torch.tensor(weight))
        linear.bias.zero_()


def test_gga_eq4_to_7_on_fixed_numbers():
    """d_g = 1, reductions and W1 / W2 chosen so that e_cls1 = sigmoid(e_cls) and v_g1 = sigmoid(v_g): eq. 5 gives
    weight1 = sigmoid(0)^2 = 0.25 and weight2 = sigmoid(ln 3)^2 = 0.5625; eq. 6-7 softmax -> (0.42250, 0.57750)."""
    gga = GlobalGatedAttention(text_dim=1, image_dim=1, d_g=1)
    _set(gga.reduce_text, [[1.0]])
    _set(gga.reduce_image, [[1.0]])
    _set(gga.fc1, [[1.0, 0.0]])
    _set(gga.fc2, [[0.0, 1.0]])
    w = gga(torch.tensor([[0.0]]), torch.tensor([[math.log(3.0)]]))
    torch.testing.assert_close(w, torch.tensor([[0.4225046, 0.5774954]]))


def test_crsa_eq10_and_11_on_fixed_numbers():
    """One query (1.0) over two key tokens (0.0, 2.0), identity projections, two heads whose queries are scaled by
    1 and 2: eq. 10 F_h = softmax(q k^T) V + mean(keys) = 2 * sigmoid(2 h) + 1 -> 2.76159, 2.96403; eq. 11 with
    W_O = (0.5, 0.5) averages them -> 2.86281. A padding key gets no attention and leaves the residual."""
    crsa = CrossResidualSelfAttention(d_f=1, heads=2)
    _set(crsa.W_q, [[1.0], [2.0]])
    _set(crsa.W_k, [[1.0], [1.0]])
    _set(crsa.W_v, [[1.0], [1.0]])
    _set(crsa.W_o, [[0.5, 0.5]])
    m, attn = crsa(torch.tensor([[[1.0]]]), torch.tensor([[[0.0], [2.0]]]))
    torch.testing.assert_close(m, torch.tensor([[[2.8628109]]]))
    torch.testing.assert_close(attn, torch.tensor([[[[0.1192029, 0.8807971]], [[0.0179862, 0.9820138]]]]))
    m, attn = crsa(torch.tensor([[[1.0]]]), torch.tensor([[[0.0], [2.0]]]), key_mask=torch.tensor([[1, 0]]))
    torch.testing.assert_close(m, torch.tensor([[[0.0]]]))  # only the 0.0 key: no value, residual mean 0
    torch.testing.assert_close(attn[..., 1], torch.zeros(1, 2, 1))
