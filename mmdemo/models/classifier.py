"""MultimodalClassifier: a fusion head plus everything needed to rebuild it (task, labels, encoders).

It inherits huggingface_hub's PyTorchModelHubMixin, so `save_pretrained(dir)` writes `config.json` (the
constructor arguments below) and `model.safetensors` (the head's weights), and `from_pretrained`
rebuilds it from a local directory or a Hub repo. Encoders are frozen and named, not saved; when the last text
layers are fine-tuned, only those layers are saved beside the head (the frozen rest is the encoder's published
weights, rebuilt by name), so a checkpoint stays a few MB instead of carrying the whole encoder.

A model that fine-tunes its last n text layers reads the *frozen* encoder's features when its encoder can start
from hidden states (BERT family, MPNet): it runs its own n tuned blocks on the frozen output of the block below
them. So training reads that output from the feature cache and runs n blocks per step, not all of them, and the
app shares one frozen encoder pass between every network. Other encoders (DeBERTa, CLIP) read raw `Captions`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from .. import __version__
from ..encoders.base import Captions, FeatureDims, ImageFeatures, TextEncoder, TextFeatures
from .base import FeatureNeeds, FusionHead, HeadConfig, ModelOutput, TaskInfo


class MultimodalClassifier(nn.Module, PyTorchModelHubMixin, library_name="mmdemo",
                           tags=["multimodal", "image-text-classification", "mmdemo"]):
    def __init__(self, model: str, task: str, labels: list[str], text_encoder: str, image_encoder: str,
                 dims: dict, head: dict | None = None, variant: str = "", multi_label: bool = False,
                 max_length: int = 64, finetune_text_layers: int = 0, data_version: str = "",
                 code_version: str = __version__, ordinal: bool | None = None, prior_encoder: str = "",
                 lora_rank: int = 0, calibration: dict | None = None, trust: dict | None = None):
        super().__init__()
        from ..tasks import TASKS
        from . import get_model

        entry = get_model(model)
        self.model_name, self.task, self.labels, self.multi_label = model, task, list(labels), multi_label
        # Checkpoints written before `ordinal` existed take the task registry's answer.
        self.ordinal = bool(TASKS[task].ordinal if ordinal is None and task in TASKS else ordinal)
        self.text_encoder_name, self.image_encoder_name, self.variant = text_encoder, image_encoder, variant
        self.max_length = max_length  # text tokens the encoder reads (same in training and the app)
        self.data_version, self.code_version = data_version, code_version
        self.entry = entry
        config: HeadConfig = entry.config(head, variant)
        self.feature_dims = FeatureDims.from_dict(dims)
        # The prior encoder the model was built with ("" = none: not wanted, or its weights were not available).
        self.prior_encoder = prior_encoder
        if prior_encoder and not self.feature_dims.prior_dim:
            raise ValueError(f"prior encoder {prior_encoder!r} named but dims.prior_dim is 0")
        task_info = TaskInfo(tuple(labels), multi_label, self.ordinal)
        self.head: FusionHead = entry.head(config, self.feature_dims, task_info)
        # Fine-tuning the last text layers makes the text encoder part of the model (and its trainable part part of
        # the weights file): the whole blocks, or LoRA adapters of rank `lora_rank` on them.
        self.finetune_text_layers, self.lora_rank = finetune_text_layers, lora_rank
        # The temperature that divides the fused logits, with where it was fitted and its calibration error
        # (`trainer measure`: a recipe's, fitted on its pooled leave-one-event-out predictions). Empty: none.
        self.calibration = dict(calibration or {})
        self.trust = dict(trust or {})  # what `trainer measure` found (mmdemo.checkpoint.Trust); empty: not measured
        self.text_encoder: TextEncoder | None = None
        if finetune_text_layers > 0:
            from ..encoders import create_text_encoder

            self.text_encoder = create_text_encoder(text_encoder)
            if lora_rank > 0:
                self.text_encoder.add_lora(finetune_text_layers, lora_rank)
            else:
                self.text_encoder.unfreeze_last(finetune_text_layers)
        elif lora_rank:
            raise ValueError("lora_rank needs finetune_text_layers > 0 (the blocks the adapters sit on)")

    def frozen_encoder_keys(self) -> set[str]:
        """State-dict keys NOT written to model.safetensors: the frozen text-encoder weights (rebuilt by name)."""
        if self.text_encoder is None:
            return set()
        enc = self.text_encoder
        return ({f"text_encoder.{n}" for n, p in enc.named_parameters() if not p.requires_grad}
                | {f"text_encoder.{n}" for n, _ in enc.named_buffers()})

    def _save_pretrained(self, save_directory: Path) -> None:
        from safetensors.torch import save_file

        frozen = self.frozen_encoder_keys()
        state = {k: v.detach().contiguous() for k, v in self.state_dict().items() if k not in frozen}
        save_file(state, str(Path(save_directory) / "model.safetensors"), metadata={"format": "pt"})

    @classmethod
    def _load_as_safetensor(cls, model: "MultimodalClassifier", model_file: str, map_location: str,
                            strict: bool) -> "MultimodalClassifier":
        from safetensors.torch import load_file

        state = load_file(model_file, device=map_location)  # float16 tensors (a bundled checkpoint) load as float32
        missing, unexpected = model.load_state_dict(state, strict=False)
        if model.text_encoder is not None:  # what the file holds of the encoder was tuned (see `as_lora`): saved again
            for name, p in model.text_encoder.named_parameters():
                if f"text_encoder.{name}" in state:
                    p.requires_grad_(True)
        missing = set(missing) - model.frozen_encoder_keys()  # frozen encoder weights come from the encoder
        training = {f"head.{k}" for k in model.head.training_state()}
        if missing & training:  # a bundled checkpoint: rebuild what only training reads
            model.head.reset_training_state()
        missing = sorted(missing - training)
        if strict and (missing or unexpected):
            raise RuntimeError(f"weights do not match the model: missing {missing[:5]}, unexpected {sorted(unexpected)[:5]}")
        return model.eval()

    @classmethod
    def _load_as_pickle(cls, model, model_file: str, map_location: str, strict: bool):
        raise RuntimeError(f"{model_file} is a pickle: mmdemo reads model.safetensors only and never unpickles")

    @property
    def head_config(self) -> HeadConfig:
        return self.head.config

    @property
    def needs(self) -> FeatureNeeds:
        """The features this model reads: its head's declaration, with the prior encoder it was built with (and,
        when it tunes its last n text layers on frozen features, at least n + 1 of them)."""
        needs = replace(self.head.needs(self.head.config), prior=self.prior_encoder)
        if self.tunes_frozen_features:
            needs = replace(needs, text_layers=max(needs.text_layers, self.finetune_text_layers + 1))
        return needs

    @property
    def text_layers(self) -> int:
        return self.needs.text_layers

    @property
    def tunes_frozen_features(self) -> bool:
        """True when this model fine-tunes its last text layers on top of the frozen encoder's features."""
        return self.text_encoder is not None and self.text_encoder.can_resume

    def tune_text(self, text: TextFeatures) -> TextFeatures:
        """The frozen encoder's features -> this model's: its tuned last n blocks rerun on the frozen output of
        the block below them (`text.layers[:, -(n + 1)]`), which is what the whole encoder computes with the tuned
        blocks in place (the blocks below are frozen)."""
        n, enc = self.finetune_text_layers, self.text_encoder
        if text.layers.shape[1] < n + 1:
            raise ValueError(f"this model tunes the last {n} text layers, so it reads the frozen encoder's last "
                             f"{n + 1}; it was given {text.layers.shape[1]}")
        mask = text.attention_mask
        tuned = enc.forward_from(text.layers[:, -(n + 1)], mask, first=enc.num_layers - n)
        # Padding positions are zeros, as in the frozen features and the feature cache.
        layers = torch.cat([text.layers[:, :-n], torch.stack(tuned, dim=1)], dim=1) * mask[:, None, :, None]
        return replace(text, layers=layers, pooled=enc.pool(tuned[-1], mask))

    def head_text(self, text: TextFeatures) -> TextFeatures:
        """Text features -> what the head reads: `tune_text` when this model tunes its last blocks on the frozen
        encoder's features, else unchanged (frozen features, or a whole tuned encoder's own)."""
        return self.tune_text(text) if self.tunes_frozen_features else text

    @property
    def missing_prior(self) -> str:
        """The prior encoder the head asks for but was built without ("" when none is missing)."""
        wanted = self.head.needs(self.head.config).prior
        return wanted if wanted and wanted != self.prior_encoder else ""

    def forward(self, text: TextFeatures | Captions, image: ImageFeatures) -> ModelOutput:
        """text: the frozen encoder's features (`needs` says how many layers), or raw captions when this model
        fine-tunes its own text encoder. A model that fine-tunes an encoder which cannot start from hidden states
        (`tunes_frozen_features` False) takes its own encoder's features or captions."""
        if isinstance(text, TextFeatures):
            text = self.head_text(text)
        elif isinstance(text, Captions):
            if self.text_encoder is None:
                raise TypeError("raw captions need a model with finetune_text_layers > 0; pass TextFeatures")
            batch = self.text_encoder.tokenize(text.texts, max_length=self.max_length)
            device = image.pooled.device
            prior = text.prior
            text = self.text_encoder.forward_by_length(batch["input_ids"].to(device), batch["attention_mask"].to(device),
                                                       num_layers=self.text_layers)
            text.prior = prior
        return self.head(text, image)

    @torch.no_grad()
    def as_lora(self, rank: int) -> "MultimodalClassifier":
        """This model with its whole tuned text blocks replaced by LoRA adapters of rank `rank` on the pretrained
        blocks, so that its checkpoint stores rank x (in + out) numbers per linear layer instead of in x out. Each
        tuned weight W = W0 + D becomes W0 + (alpha / r) B A with (alpha / r) B A the truncated SVD of D, the closest
        rank-r change in Frobenius norm (Eckart-Young). The blocks' tuned biases and LayerNorms are kept whole (a few
        kB; marked trainable, so the checkpoint stores them beside the adapters). An approximation: measure it on
        dev before shipping it (`trainer bundle --lora-rank`)."""
        if self.text_encoder is None or self.lora_rank:
            raise ValueError("as_lora converts a model whose last text blocks were tuned whole (this one: "
                             f"finetune_text_layers={self.finetune_text_layers}, lora_rank={self.lora_rank})")
        small = type(self)(**{**self.hub_config(), "lora_rank": rank})
        small.head.load_state_dict(self.head.state_dict())
        n = self.finetune_text_layers
        for tuned, adapted in zip(self.text_encoder.blocks()[-n:], small.text_encoder.blocks()[-n:]):
            tuned_params = dict(tuned.named_parameters())
            for name, p in adapted.named_parameters():
                if "lora_" not in name and not (".base_layer." in name and name.endswith("weight")):
                    p.copy_(tuned_params[name.replace(".base_layer", "")])  # a bias or a LayerNorm
                    p.requires_grad_(True)
            for name, layer in adapted.named_modules():
                if not hasattr(layer, "lora_A"):  # peft's LoRA layers only (they wrap each nn.Linear)
                    continue
                delta = tuned_params[f"{name}.weight"].float() - layer.base_layer.weight.float()
                U, S, Vh = torch.linalg.svd(delta, full_matrices=False)
                root = (S[:rank] / layer.scaling["default"]).sqrt()  # split sqrt(S / scaling) between B and A
                layer.lora_B["default"].weight.copy_(U[:, :rank] * root)
                layer.lora_A["default"].weight.copy_(root[:, None] * Vh[:rank])
        return small.eval()

    @torch.no_grad()
    def merge_adapters(self) -> "MultimodalClassifier":
        """Fold the LoRA adapters into the weights they sit on (peft's merge), for serving: the same outputs
        without the adapters' extra matmuls (measured: docs/results/checkpoints.md, "Whole tuned layers shipped as
        adapters"; docs/PERFORMANCE.md).
        The adapters stay and are what a checkpoint saves; only further training would be wrong (it would see them
        twice)."""
        from peft.tuners.lora import LoraLayer

        for module in self.text_encoder.modules() if self.lora_rank else ():
            if isinstance(module, LoraLayer) and not module.merged:
                module.merge()
        return self

    def hub_config(self) -> dict:
        """The config.json content (what `save_pretrained` writes), with the head's full config."""
        return {
            "model": self.model_name, "task": self.task, "labels": self.labels, "multi_label": self.multi_label,
            "text_encoder": self.text_encoder_name, "image_encoder": self.image_encoder_name,
            "ordinal": self.ordinal, "dims": self.feature_dims.to_dict(),
            "head": self.head.config.to_dict(), "variant": self.variant, "max_length": self.max_length,
            "finetune_text_layers": self.finetune_text_layers, "lora_rank": self.lora_rank,
            "prior_encoder": self.prior_encoder, **({"calibration": self.calibration} if self.calibration else {}),
            **({"trust": self.trust} if self.trust else {}),
            "data_version": self.data_version, "code_version": self.code_version,
        }
