"""HGLNet: Hierarchical Global-Local feature fusion Network (Zhang et al., ICME 2022).

Sec. 3.2 / 3.3 of the paper, in order:
  GlobalGatedAttention (GGA, eq. 4-7)   global text vector e_cls (`TextFeatures.global_vector`: BERT's last-layer
                                        [CLS]; for MiniLM-L6, a mean-pooling sentence encoder, its mean) and global image vector v_g
                                        (ImageNet logits, or the pooled vector when the encoder has no ImageNet
                                        head) -> weight1 (text), weight2 (image), summing to 1 per sample.
  TextAlignment / ImageAlignment (eq. 8-9)  tokens -> FC+ReLU+LN; image map -> Conv1x1+BN -> flatten to h*w
                                        position tokens -> FC+ReLU+LN; each stream is then scaled by its GGA weight.
  CrossResidualSelfAttention (CRSA/MHCRSA, eq. 10-12) one direction of the Dual-stream CRSA (DCRSA).
  CrossResidualTransformer (CRT, eq. 13-16)  T->I and I->T MHCRSA, per-stream Add&LN, concat, FFN + LN.
  HGLNet (eq. 17)                       CRT on each of the last `text_layers` (4) text-encoder layers with
                                        `crt_modules` (2) CRTs whose parameters are shared, ReLU + GAP, concat,
                                        dropout 0.5 + FC classifier.

Reading of the paper where it is ambiguous (our choices):
  * eq. 5 applies sigmoid to "the original vectors and the obtained vectors" (prose); the printed equation
    is asymmetric (sigma on e_cls1 for weight1 but on v_g for weight2). We use the symmetric prose reading:
    weight'_1 = <sigma(e_cls), e_cls1> / sqrt(d_g), weight'_2 = <sigma(v_g), v_g1> / sqrt(d_g), where e_cls, v_g
    are the d_g-reduced vectors and e_cls1, v_g1 already carry eq. 4's sigmoid.
  * eq. 9: Conv1x1 keeps the d_l channels (W_v is d_l x d_f), BN2d over the spatial map, Flatten turns the
    [C, h, w] map into N = h*w position tokens of C channels, and W_v maps each position's channels to d_f.
    So CRT sees N image tokens and the attention maps index image patches (the app's heatmap).
  * The paper writes both streams with d_n rows so the residual V'_l in eq. 10 adds row by row and eq. 15
    concatenates features. Here L text tokens != N image tokens, so (a) the key modality's residual is its
    mean token (masked mean for text) broadcast over the query positions, and (b) eq. 15 concatenates along
    the token axis ([L + N, d_f]); eq. 16's FFN + LN run per token, and ReLU + GAP pool the text rows (masked)
    and the image rows separately, so each O_k has the paper's 2*d_f features.
  * "2 CRT modules share their parameters to obtain 4 outputs": layer k of the last K uses CRT number
    k * crt_modules // K, i.e. layers (L-3, L-2) share CRT 0 and (L-1, L) share CRT 1 (adjacent layers,
    which are most alike, share weights). The one text alignment W_e (eq. 8) serves all layers.
  * E_l in eq. 8 is {e_1..e_m} without [CLS]; we keep position 0 so attention maps index the tokenizer's
    tokens one to one ([CLS] is still a real token of the sequence; padding is masked everywhere).

Auxiliary unimodal heads (trained by the trainer with aux_weight): `text_logits` is a small MLP on the masked
mean of the last layer's aligned text tokens LN(ReLU(E_l W_e)) BEFORE GGA scaling; `image_logits` an MLP on the
mean of the aligned image tokens BEFORE GGA scaling. They never feed the fused classifier. With
aux_detach=False their cross-entropy also trains the alignment layers (and any fine-tuned encoder layers);
with aux_detach=True they read detached streams, so they are probes and the network trains on the paper's
objective alone (Sec. 3.3: cross-entropy on the fused prediction), as MGGF's do.

explain (only the quantities of components that are switched on):
  modality_weights  [B, 2]  GGA weight1 (text), weight2 (image); rows sum to 1.
  attention         {"text->image": [B, heads, L_text, N_patches], "image->text": [B, heads, N_patches, L_text]}
                    MHCRSA softmax maps of the CRT on the last text layer. Padding text tokens get zero weight
                    as keys, and their rows in "text->image" are zeroed.

Ablations (Table 3) registered as variants: no-text = HGLNet-T, no-image = HGLNet-V, no-hierarchy = HGLNet-H,
no-gga = HGLNet-G, no-crt = HGLNet-C (see `ENTRIES`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..encoders.base import FeatureDims, ImageFeatures, TextFeatures
from .base import MLP, FusionHead, HeadConfig, ModelEntry, ModelOutput, Signal, TaskInfo, masked_mean


@dataclass
class HGLNetConfig(HeadConfig):
    """Defaults: Sec. 4.1 (d_g = 10, dropout 0.5) and Table 2's Weibo column (tweet-length texts like ours):
    d_f = d_k = d_v = 32, h = 4, weight decay 0.01, batch 128, 30 epochs."""

    text_layers: int = 4  # eq. 17: CRT on the last four text-encoder layers
    crt_modules: int = 2  # Sec. 3.3: two CRT modules, parameters shared over the four layers
    d_g: int = 10  # GGA reduction size (eq. 4-5)
    d_f: int = 32  # d_f = d_k = d_v (Table 2, Weibo)
    heads: int = 4  # h (Table 2, Weibo)
    ffn_dim: int = 64  # eq. 16's "two-layer FC" width is not given; 2*d_f, the width of the paper's O_f
    # eq. 9 Conv1x1 output channels; 0 = keep d_l as the paper does (W_v is d_l x d_f): 1280 -> 1280 for
    # EfficientNet-Lite0, 1.6M of the head's parameters. 256 channels are as good on MVSA-Single dev in a quarter of
    # the size (docs/results/mvsa-single.md, "Settings, chosen on dev"); the presets use 256.
    conv_channels: int = 0
    dropout: float = 0.5  # Sec. 4.1
    # Table 2 (Weibo) says 1e-4. Here only the randomly initialised head trains, on cached frozen features with
    # ~29 steps per epoch (MVSA-Single, batch 128), where 1e-4 underfits; dev chose 1e-3 over 3e-4
    # (docs/results/mvsa-single.md, "Settings, chosen on dev").
    lr: float = 1e-3
    weight_decay: float = 0.01  # Table 2 (Weibo)
    batch_size: int = 128  # Table 2 (Weibo)
    epochs: int = 30  # Table 2 (Weibo)
    # components, each switchable off for the ablations (Table 3)
    use_text: bool = True  # T
    use_image: bool = True  # V
    use_gga: bool = True  # G
    use_crt: bool = True  # C
    # The unimodal heads read detached eq. 8-9 streams (probes): only the fused cross-entropy, the paper's loss,
    # trains the network. False lets their aux_weight * CE train the alignment layers and tuned encoder layers too.
    aux_detach: bool = False


class GlobalGatedAttention(nn.Module):
    """GGA (eq. 4-7): two global vectors -> softmax-normalised modality weights [B, 2] (text, image)."""

    def __init__(self, text_dim: int, image_dim: int, d_g: int):
        super().__init__()
        self.d_g = d_g
        self.reduce_text = nn.Linear(text_dim, d_g)  # e_cls -> R^{d_g}
        self.reduce_image = nn.Linear(image_dim, d_g)  # v_g -> R^{d_g}
        self.fc1 = nn.Linear(2 * d_g, d_g)  # W1, b1
        self.fc2 = nn.Linear(2 * d_g, d_g)  # W2, b2

    def forward(self, e_cls: torch.Tensor, v_g: torch.Tensor) -> torch.Tensor:
        e_cls, v_g = self.reduce_text(e_cls), self.reduce_image(v_g)
        f_concat = torch.cat([e_cls, v_g], dim=-1)
        e_cls1, v_g1 = torch.sigmoid(self.fc1(f_concat)), torch.sigmoid(self.fc2(f_concat))  # eq. 4
        w1 = (torch.sigmoid(e_cls) * e_cls1).sum(-1) / math.sqrt(self.d_g)  # eq. 5 (scaled dot products)
        w2 = (torch.sigmoid(v_g) * v_g1).sum(-1) / math.sqrt(self.d_g)
        return torch.softmax(torch.stack([w1, w2], dim=-1), dim=-1)  # eq. 6-7: [B, 2] = (weight1, weight2)


class TextAlignment(nn.Module):
    """eq. 8 without the GGA weight: LN(ReLU(E_l W_e)), [..., L, D] -> [..., L, d_f]."""

    def __init__(self, text_dim: int, d_f: int):
        super().__init__()
        self.W_e = nn.Linear(text_dim, d_f)
        self.ln = nn.LayerNorm(d_f)

    def forward(self, e_l: torch.Tensor) -> torch.Tensor:
        return self.ln(F.relu(self.W_e(e_l)))


class ImageAlignment(nn.Module):
    """eq. 9 without the GGA weight: LN(ReLU(Flatten(BN(Conv1x1(V_l))) W_v)), [B, N, C] -> [B, N, d_f].

    BatchNorm2d normalises each channel over B*h*w values, so a batch of one trains as long as h*w > 1."""

    def __init__(self, image_dim: int, conv_channels: int, d_f: int, grid: tuple[int, int]):
        super().__init__()
        self.grid = tuple(grid)
        self.conv = nn.Conv2d(image_dim, conv_channels, kernel_size=1)
        self.bn = nn.BatchNorm2d(conv_channels)
        self.W_v = nn.Linear(conv_channels, d_f)
        self.ln = nn.LayerNorm(d_f)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        B, N, C = patches.shape
        v_l = patches.transpose(1, 2).reshape(B, C, *self.grid)  # row-major tokens -> [B, C, h, w]
        x = self.bn(self.conv(v_l)).flatten(2).transpose(1, 2)  # Flatten: [B, N, C'] position tokens
        return self.ln(F.relu(self.W_v(x)))


class CrossResidualSelfAttention(nn.Module):
    """MHCRSA in one direction (eq. 10-12): queries from one modality, keys/values from the other.

    Each head has d_k = d_v = d_f (Sec. 3.2, "dk = dv = df"), so the key modality's residual (eq. 10's "+ V'_l")
    adds to every head's output; W_O maps the h*d_f concatenation back to d_f (eq. 11/12)."""

    def __init__(self, d_f: int, heads: int):
        super().__init__()
        self.d_f, self.heads = d_f, heads
        self.W_q = nn.Linear(d_f, heads * d_f)
        self.W_k = nn.Linear(d_f, heads * d_f)
        self.W_v = nn.Linear(d_f, heads * d_f)
        self.W_o = nn.Linear(heads * d_f, d_f)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """[B, n, h * d_f] -> [B, h, n, d_f]"""
        return x.view(x.shape[0], x.shape[1], self.heads, self.d_f).transpose(1, 2)

    def forward(self, query: torch.Tensor, key: torch.Tensor, key_mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """query [B, Lq, d_f], key [B, Lk, d_f] (also the values), key_mask [B, Lk] (1 = real) or None.
        -> M [B, Lq, d_f], attention [B, heads, Lq, Lk]."""
        B, Lq, _ = query.shape
        q, k, v = (self._split_heads(f(x)) for f, x in ((self.W_q, query), (self.W_k, key), (self.W_v, key)))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.d_f)
        if key_mask is not None:  # padding text tokens never receive attention
            scores = scores.masked_fill(~key_mask.bool()[:, None, None, :], torch.finfo(scores.dtype).min)
            residual = masked_mean(key, key_mask)
        else:
            residual = key.mean(1)
        attn = torch.softmax(scores, dim=-1)
        f = attn @ v + residual[:, None, None, :]  # eq. 10: F = softmax(QK^T / sqrt(d_k)) V + key modality
        m = self.W_o(f.transpose(1, 2).reshape(B, Lq, self.heads * self.d_f))  # eq. 11/12: ConCat(F_1..F_h) W_O
        return m, attn


class CrossResidualTransformer(nn.Module):
    """CRT (eq. 10-16) with DCRSA: T->I and I->T MHCRSA, per-stream Add & LN, concat, FFN + LN."""

    def __init__(self, d_f: int, heads: int, ffn_dim: int):
        super().__init__()
        self.t2i = CrossResidualSelfAttention(d_f, heads)  # T -> I CRSA: Q from text, K, V from image (M1)
        self.i2t = CrossResidualSelfAttention(d_f, heads)  # I -> T CRSA: Q from image, K, V from text (M2)
        self.ln_text, self.ln_image = nn.LayerNorm(d_f), nn.LayerNorm(d_f)
        self.ffn = nn.Sequential(nn.Linear(d_f, ffn_dim), nn.ReLU(), nn.Linear(ffn_dim, d_f))
        self.ln_out = nn.LayerNorm(d_f)

    def forward(self, e: torch.Tensor, v: torch.Tensor, text_mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """e [B, L, d_f] aligned text, v [B, N, d_f] aligned image, text_mask [B, L].
        -> O' text rows [B, L, d_f], O' image rows [B, N, d_f], attention maps."""
        m1, a_t2i = self.t2i(e, v)
        m2, a_i2t = self.i2t(v, e, text_mask)
        output1 = self.ln_text(e + m1)  # eq. 13
        output2 = self.ln_image(v + m2)  # eq. 14
        o_f = torch.cat([output1, output2], dim=1)  # eq. 15, along tokens (L != N here)
        o = self.ln_out(o_f + self.ffn(o_f))  # eq. 16
        L = e.shape[1]
        a_t2i = a_t2i * text_mask[:, None, :, None].to(a_t2i.dtype)  # padding query rows carry no meaning
        return o[:, :L], o[:, L:], {"text->image": a_t2i, "image->text": a_i2t}


class HGLNet(FusionHead):
    config_class = HGLNetConfig
    signals = {
        "modality_weights": Signal(
            "GGA modality weights", "GGA's weights (eq. 4-7): a softmax over two scores computed from the two global "
            "vectors; the text token streams are multiplied by the first, the image token stream by the second, "
            "before the cross residual transformers. The layers after them can rescale either stream, so a weight is "
            "how much that stream is scaled, not that modality's share of the answer", kind="weights",
            components=("text", "image"), low=0.0, high=1.0,
            plain="How strongly the network scales up the caption's and the image's features before combining them "
                  "(the two add up to 1); later layers can make up for a small weight, so this is not how much each "
                  "one decided the answer (the measured contributions above say that)."),
        "text->image": Signal("T→I cross residual attention", "each text token's attention over the image regions "
                              "(the last layer's CRT, eq. 10)", kind="attention", axes=("text", "image"),
                              plain="Where each word of the caption looks in the image, in the network's last "
                                    "combining layer."),
        "image->text": Signal("I→T cross residual attention", "each image region's attention over the text tokens "
                              "(the last layer's CRT, eq. 10)", kind="attention", axes=("image", "text"),
                              plain="Which words of the caption each image region looks at, in the network's last "
                                    "combining layer."),
    }

    def __init__(self, config: HGLNetConfig, dims: FeatureDims, task: TaskInfo):
        super().__init__(config, dims, task)
        c, num_labels = config, task.num_labels
        if not (c.use_text or c.use_image):
            raise ValueError("HGLNet needs at least one modality (use_text or use_image)")
        if c.text_layers > dims.text_layers:
            raise ValueError(f"HGLNet reads the last {c.text_layers} text layers but the text encoder has "
                             f"{dims.text_layers}; set text_layers <= {dims.text_layers}")
        if not 1 <= c.crt_modules <= c.text_layers:
            raise ValueError(f"crt_modules must be in 1..text_layers ({c.text_layers}), not {c.crt_modules}")
        bimodal = c.use_text and c.use_image
        self.use_gga, self.use_crt = bimodal and c.use_gga, bimodal and c.use_crt  # both need two modalities
        d_f = c.d_f
        # eq. 8-9: built in every variant, since the auxiliary unimodal heads read them
        self.text_align = TextAlignment(dims.text_dim, d_f)
        self.image_align = ImageAlignment(dims.image_dim, c.conv_channels or dims.image_dim, d_f, dims.image_grid)
        self.gga = GlobalGatedAttention(dims.text_dim, dims.image_global_dim, c.d_g) if self.use_gga else None
        self.crts = nn.ModuleList([CrossResidualTransformer(d_f, c.heads, c.ffn_dim) for _ in range(c.crt_modules)]
                                  ) if self.use_crt else None
        # eq. 17: O = ConCat(O_1..O_K), 2*d_f per layer; the single-modality rows pool one stream
        if bimodal:
            fused_dim = c.text_layers * 2 * d_f
        else:
            fused_dim = c.text_layers * d_f if c.use_text else d_f
        self.classifier = nn.Sequential(nn.Dropout(c.dropout), nn.Linear(fused_dim, num_labels))
        self.text_head = MLP(d_f, d_f, num_labels, c.dropout)
        self.image_head = MLP(d_f, d_f, num_labels, c.dropout)

    def crt_for_layer(self, k: int) -> CrossResidualTransformer:
        """The (shared) CRT used on the k-th of the last `text_layers` layers (0 = oldest)."""
        return self.crts[k * self.config.crt_modules // self.config.text_layers]

    def aligned_streams(self, text: TextFeatures, image: ImageFeatures) -> dict[str, torch.Tensor]:
        """eq. 4-9. text_raw [B, K, L, d_f] / image_raw [B, N, d_f] before, text / image after GGA scaling,
        weights [B, 2] (absent without GGA)."""
        e = self.text_align(text.last(self.config.text_layers))
        v = self.image_align(image.patches)
        out = {"text_raw": e, "image_raw": v, "text": e, "image": v}
        if self.gga is not None:
            w = self.gga(text.global_vector, image.global_vector)
            out.update(weights=w, text=e * w[:, 0, None, None, None], image=v * w[:, 1, None, None])  # the ⊗
        return out

    def forward(self, text: TextFeatures, image: ImageFeatures) -> ModelOutput:
        c, mask = self.config, text.attention_mask
        s = self.aligned_streams(text, image)
        explain: dict = {}
        pooled = []  # O_1..O_K (eq. 17)
        if c.use_text and c.use_image:
            for k in range(c.text_layers):
                e_k, v = s["text"][:, k], s["image"]
                if self.crts is not None:
                    e_k, v, attention = self.crt_for_layer(k)(e_k, v, mask)
                    explain["attention"] = attention  # the last layer's maps remain
                pooled.append(torch.cat([masked_mean(F.relu(e_k), mask), F.relu(v).mean(1)], dim=-1))  # ReLU+GAP
        elif c.use_text:  # HGLNet-V: the text hierarchy alone
            pooled = [masked_mean(F.relu(s["text"][:, k]), mask) for k in range(c.text_layers)]
        else:  # HGLNet-T: the image stream alone
            pooled = [F.relu(s["image"]).mean(1)]
        fused = torch.cat(pooled, dim=-1)
        logits = self.classifier(fused)
        if "weights" in s:
            explain["modality_weights"] = s["weights"]
        e, v = s["text_raw"][:, -1], s["image_raw"]
        if c.aux_detach:
            e, v = e.detach(), v.detach()
        text_logits = self.text_head(masked_mean(e, mask))
        image_logits = self.image_head(v.mean(1))
        return ModelOutput(logits, text_logits, image_logits, explain=explain, features=fused)


ENTRIES = (ModelEntry(
    "hglnet", HGLNet,
    "HGLNet: global gated attention weighs the modalities; cross residual transformers fuse text tokens of "
    "the last four layers with image patches",
    paper="Zhang et al., Hierarchical Global-Local Feature Fusion Network for Multi-modal Classification "
          "(HGLNet), ICME 2022",
    # Table 3 rows: -T removes the text (image stream only), -V the image (text hierarchy only), -H the
    # hierarchy (last layer, one CRT), -G the GGA (streams unscaled), -C the CRT (aligned streams pooled)
    variants={
        "no-text": {"use_text": False},
        "no-image": {"use_image": False},
        "no-hierarchy": {"text_layers": 1, "crt_modules": 1},
        "no-gga": {"use_gga": False},
        "no-crt": {"use_crt": False},
    },
    # Chosen on each task's dev set (scripts/reproduce.sh; hashtags: scripts/hashtags.sh, frozen encoders and the
    # baselines' budget): docs/results/mvsa-single.md "Settings, chosen on dev", docs/results/mediaeval.md,
    # docs/results/hashtags.md.
    presets={"best": {
        "mvsa-single": {"conv_channels": 256, "lr": 1e-3, "weight_decay": 0.1, "unfreeze_text_layers": 3,
                        "encoder_lr": 5e-5},
        "mediaeval2016": {"conv_channels": 256, "lr": 1e-3, "unfreeze_text_layers": 2, "encoder_lr": 1e-4},
        "hashtags": {"conv_channels": 256, "lr": 1e-3, "epochs": 40, "patience": 40, "batch_size": 20},
    }},
),)
