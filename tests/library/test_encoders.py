import subprocess
import sys
import textwrap

import pytest
import torch
from PIL import Image

from mmdemo.encoders import (IMAGE_ENCODERS, TEXT_ENCODERS, EncoderUnavailableError, FeatureDims, create_image_encoder,
                             create_text_encoder)
from tests.helpers import ASSETS, REPO_ROOT

TINY_TEXT = [n for n in TEXT_ENCODERS if n.startswith("tiny-")]
TINY_IMAGE = [n for n in IMAGE_ENCODERS if n.startswith("tiny-")]


@pytest.mark.parametrize("name", TINY_TEXT)
def test_tiny_text_encoders_return_documented_shapes(name):
    enc = create_text_encoder(name)
    feats = enc.encode(["a short caption", "a somewhat longer caption with more words in it", "x"], num_layers=2)
    B, K, L, D = feats.layers.shape
    assert (B, K, D) == (3, 2, enc.dim)
    assert feats.attention_mask.shape == (B, L)
    assert feats.pooled.shape[0] == B and feats.cls.shape == (B, D) and feats.tokens.shape == (B, L, D)
    # padding is masked: the short caption has fewer real tokens than the long one
    assert feats.attention_mask[2].sum() < feats.attention_mask[1].sum()
    assert all(p.requires_grad is False for p in enc.parameters())
    # batch of one
    one = enc.encode(["one"], num_layers=1)
    assert one.layers.shape[:2] == (1, 1)
    assert isinstance(enc.embeddings(), torch.nn.Module)


@pytest.mark.parametrize("name", TINY_IMAGE)
def test_tiny_image_encoders_return_documented_shapes(name):
    enc = create_image_encoder(name)
    ims = [Image.new("RGB", (80, 60), (200, 30, 30)), Image.new("RGB", (50, 90), (20, 30, 200))]
    feats = enc.encode(ims)
    assert feats.patches.shape == (2, enc.num_patches, enc.dim)
    assert feats.pooled.shape == (2, enc.pooled_dim)
    if enc.logits_dim:
        assert feats.logits.shape == (2, 1000)
    else:
        assert feats.logits is None
    assert feats.global_vector.shape == (2, enc.logits_dim or enc.pooled_dim)
    assert enc.encode(ims[:1]).patches.shape[0] == 1  # batch of one


@pytest.mark.parametrize("name", TINY_TEXT)
def test_forward_by_length_gives_forwards_states_and_gradients(name):
    """The fine-tuning path runs length-sorted chunks, each cut to its longest caption: real tokens must get the
    states and the gradients the padded batch gives them, in the batch's order; padding comes back as zeros."""
    enc = create_text_encoder(name)
    enc.unfreeze_last(1)
    captions = ["a much longer caption than all the others, with a good many more words in it", "x",
                "a short one", "", "medium length caption here", "two words"]
    batch = enc.tokenize(captions)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    lengths = mask.sum(1)
    assert len(set(lengths.tolist())) > 3  # several chunk lengths, not sorted in the batch

    def run(fn):
        enc.zero_grad()
        feats = fn(ids, mask, num_layers=2)
        w = torch.linspace(-1, 1, feats.layers.shape[-1])
        ((feats.layers * mask[:, None, :, None] * w).sum() + feats.pooled.sum()).backward()
        return feats, [p.grad.clone() for p in enc.parameters() if p.requires_grad]

    full, full_grads = run(enc.forward)
    chunked, chunked_grads = run(lambda *a, **k: enc.forward_by_length(*a, **k, chunk_size=2))
    assert chunked.layers.shape == full.layers.shape and torch.equal(chunked.attention_mask, mask)
    real = mask[:, None, :, None].bool().expand_as(full.layers)
    assert torch.allclose(chunked.layers[real], full.layers[real], atol=1e-5)
    assert torch.all(chunked.layers[~real] == 0)
    assert torch.allclose(chunked.pooled, full.pooled, atol=1e-5)
    assert full_grads and all(torch.allclose(a, b, atol=1e-4) for a, b in zip(chunked_grads, full_grads))


RESUMABLE = [n for n in TINY_TEXT if create_text_encoder(n).can_resume]


def test_bert_family_and_mpnet_can_start_from_hidden_states():
    assert set(RESUMABLE) >= {"tiny-bert", "tiny-mpnet"} and "tiny-deberta" not in RESUMABLE


@pytest.mark.parametrize("name", RESUMABLE)
@pytest.mark.parametrize("first", [1, 3])
def test_forward_from_hidden_states_gives_the_whole_encoders_states(name, first):
    """Cheap fine-tuning runs only the tuned blocks, on the stored output of the block below them: on real tokens
    that is what the whole encoder computes, layer by layer, and so is the sentence vector."""
    enc = create_text_encoder(name)
    batch = enc.tokenize(["a much longer caption than the others, with many more words", "x", "a short one"])
    mask = batch["attention_mask"]
    with torch.no_grad():
        full = enc(batch["input_ids"], mask, num_layers=enc.num_layers)
        states = enc.forward_from(full.layers[:, first - 1], mask, first=first)
    assert len(states) == enc.num_layers - first
    real = mask[:, :, None].bool()
    for mine, theirs in zip(states, full.layers[:, first:].unbind(1)):
        assert torch.allclose(mine * real, theirs * real, atol=1e-5)
    assert torch.allclose(enc.pool(states[-1], mask), full.pooled, atol=1e-5)


def test_a_fine_tuned_model_reads_frozen_features_or_captions_alike():
    """A model tuning its last 2 layers gives the same outputs from the frozen encoder's features (what the feature
    cache and the app's shared encoder give it) as from raw captions through its own whole encoder."""
    from mmdemo.encoders import Captions
    from mmdemo.models import MultimodalClassifier

    te, ie = create_text_encoder("tiny-bert"), create_image_encoder("tiny-resnet")
    model = MultimodalClassifier("hglnet", "mvsa-single", ["a", "b", "c"], te.name, ie.name,
                                 FeatureDims.of(te, ie).to_dict(), finetune_text_layers=2, max_length=32).eval()
    assert model.tunes_frozen_features and model.text_layers == max(3, model.head.needs(model.head.config).text_layers)
    with torch.no_grad():  # the tuned copy's last blocks differ from the frozen encoder's
        for p in model.text_encoder.blocks()[-2:].parameters():
            p.add_(0.05 * torch.randn_like(p))
    captions = ["a sunny beach today", "the storm is coming, grey and wet outside"]
    image = ie.encode([Image.new("RGB", (64, 64), (200, 100, 0))] * 2)
    with torch.no_grad():
        frozen = te.encode(captions, num_layers=model.text_layers, max_length=32)
        from_features = model(frozen, image)
        from_captions = model(Captions(captions), image)
        untuned = model.head(frozen, image)
    assert torch.allclose(from_features.logits, from_captions.logits, atol=1e-5)
    assert not torch.allclose(from_features.logits, untuned.logits, atol=1e-3)  # the tuned blocks did run

    deberta = MultimodalClassifier("concat", "mvsa-single", ["a", "b", "c"], "tiny-deberta", ie.name,
                                   FeatureDims.of(create_text_encoder("tiny-deberta"), ie).to_dict(),
                                   finetune_text_layers=1)
    assert not deberta.tunes_frozen_features  # DeBERTa builds its relative positions inside the encoder: captions


def test_efficientnet_lite_family_preprocesses_as_trained():
    """Lite0/1/2 are trained at 224/240/260 px: resize to size + 32, centre crop, (x - 127) / 128; the grid is the
    'same'-padded stride-32 map (7, 8, 9)."""
    from mmdemo.encoders.image import EFFICIENTNET_LITE

    for name, (_, _, size) in EFFICIENTNET_LITE.items():
        try:
            enc = create_image_encoder(name)
        except EncoderUnavailableError:
            continue  # Lite1/2 come from requirements-large.txt
        assert enc.image_size == size and enc.grid == (-(-size // 32),) * 2
        feats = enc.encode([Image.new("RGB", (300, 200), (127, 127, 127))])
        assert feats.patches.shape == (1, enc.num_patches, 1280) and feats.logits.shape == (1, 1000)
        x = enc.preprocess([Image.new("RGB", (300, 200), (255, 0, 127))])
        assert x.shape == (1, 3, size, size)
        assert torch.allclose(x[0, :, 0, 0], torch.tensor([128 / 128, -127 / 128, 0.0]), atol=1e-2)


def test_feature_dims_match_encoders(tiny_encoders):
    te, ie = tiny_encoders
    dims = FeatureDims.of(te, ie)
    assert dims.text_dim == te.dim and dims.image_dim == ie.dim and dims.num_patches == ie.num_patches
    assert dims.image_global_dim == 1000


@pytest.mark.parametrize("name, kind", [("bert-base-uncased", "text"), ("deberta-v3-base", "text"),
                                        ("resnet50", "image"), ("vit-base-patch16-224", "image"),
                                        ("clip-vit-b-16", "image")])
def test_missing_online_encoder_gives_one_clear_error(name, kind, monkeypatch, tmp_path):
    # Empty caches so nothing a developer downloaded earlier can satisfy the request.
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import torch.hub

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url",
                        lambda *a, **k: (_ for _ in ()).throw(OSError("network is off in tests")))
    create = create_text_encoder if kind == "text" else create_image_encoder
    with pytest.raises(EncoderUnavailableError) as err:
        create(name)
    assert name.split("/")[-1].split("-")[0] in str(err.value)
    assert "offline default" in str(err.value) or "local checkpoint" in str(err.value)


def test_unknown_encoder_names_the_registered_ones():
    with pytest.raises(KeyError, match="minilm-l6"):
        create_text_encoder("no-such-encoder")


def test_minilm_puts_a_paraphrase_closer_than_an_unrelated_sentence():
    enc = create_text_encoder("minilm-l6")
    f = enc.encode(["A man is playing a guitar on stage.", "Someone performs music with a guitar in a concert.",
                    "The stock market fell sharply on Tuesday."])
    e = torch.nn.functional.normalize(f.pooled, dim=-1)
    para, unrelated = float(e[0] @ e[1]), float(e[0] @ e[2])
    assert para > 0.5 and para > unrelated + 0.3, (para, unrelated)


def test_efficientnet_lite0_ranks_the_known_photo_class_first():
    """A real photo shipped in tests/assets (see its LICENSE) is classified as its ImageNet class."""
    from tests.assets import KNOWN_PHOTOS

    enc = create_image_encoder("efficientnet-lite0")
    for filename, imagenet_class in KNOWN_PHOTOS.items():
        img = Image.open(ASSETS / filename).convert("RGB")
        logits = enc.encode([img]).logits[0]
        assert int(logits.argmax()) == imagenet_class, (filename, int(logits.argmax()))


def test_import_reads_no_weights_and_touches_no_network():
    code = textwrap.dedent("""
        import socket, torch, safetensors.torch
        def refuse(*a, **k): raise AssertionError("network or weight access during import")
        socket.socket.connect = refuse
        torch.load = refuse
        safetensors.torch.load_file = refuse
        safetensors.safe_open = refuse
        import mmdemo, mmdemo.encoders, mmdemo.models, mmdemo.predict, mmdemo.hub, mmdemo.checkpoint, mmdemo.tasks
        assert "concat" in mmdemo.models.list_models()
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT,
                         timeout=120)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]


def test_a_missing_efficientnet_weights_package_says_which_to_install(monkeypatch):
    from mmdemo.encoders import image

    monkeypatch.setitem(image.EFFICIENTNET_LITE, "efficientnet-lite9", ("no_such_lite9_model", "Lite9ModelFile", 300))
    with pytest.raises(EncoderUnavailableError, match="no-such-lite9-model"):
        image.efficientnet_lite("efficientnet-lite9")()
