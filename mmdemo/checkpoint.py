"""Checkpoint directories: config.json + model.safetensors + metrics.json + README.md (model card).

This is the layout PyTorchModelHubMixin writes and reads, so the same directory is bundled in
`checkpoints/<task>/<model>/`, pushed to the Hub, and loaded back. Only safetensors are ever read.

Reading a checkpoint's config and metrics needs no torch (the app lists its networks and serves its page before
torch loads); the functions that touch weights import it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .atomic import replacing, save_tensors

if TYPE_CHECKING:
    import torch

    from .models import MultimodalClassifier

CONFIG_FILE, WEIGHTS_FILE, METRICS_FILE, CARD_FILE = "config.json", "model.safetensors", "metrics.json", "README.md"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, in a format we refuse to read, or does not match what was asked for."""


def save_checkpoint(model: MultimodalClassifier, out_dir: str | Path, metrics: dict | None = None,
                    card: str | None = None) -> Path:
    """Write the checkpoint directory atomically: everything goes to a temporary directory beside it, which then
    replaces it, so an interrupted save (Ctrl-C, kill, full disk) leaves the previous checkpoint or none, never
    a partial one that reads as complete."""
    out = Path(out_dir)
    if out.is_dir() and any(out.iterdir()) and not (out / CONFIG_FILE).is_file():
        raise CheckpointError(f"{out} holds other files and no checkpoint: choose an empty or new directory")
    with replacing(out, directory=True) as tmp:
        model.save_pretrained(tmp, config=model.hub_config())
        if metrics is not None:
            (tmp / METRICS_FILE).write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        if card is not None:
            (tmp / CARD_FILE).write_text(card)
    return out


def compact_checkpoint(ckpt_dir: str | Path, dtype: torch.dtype | None = None) -> tuple[int, int]:
    """Shrink a checkpoint for bundling and serving, in place: drop the state only further training reads (the
    head's `training_state`: momentum encoders, queues) and store float32 tensors as `dtype` (kept float32 where a
    value would not fit; default float16). Loading casts them back to float32. Returns the weights file's (old, new)
    size in bytes."""
    import torch
    from safetensors.torch import load_file

    dtype = dtype or torch.float16
    path = Path(ckpt_dir) / WEIGHTS_FILE
    model = load_checkpoint(ckpt_dir)
    training = {f"head.{k}" for k in model.head.training_state()}
    state, before = load_file(str(path)), path.stat().st_size
    small = {}
    for key, t in state.items():
        if key in training:
            continue
        cast = t.to(dtype) if t.dtype == torch.float32 else t
        small[key] = cast if torch.isfinite(cast).all() or not torch.isfinite(t).all() else t
    save_tensors(small, path, {"format": "pt", "dtype": str(dtype).removeprefix("torch.")})
    return before, path.stat().st_size


def read_config(ckpt_dir: str | Path) -> dict:
    path = Path(ckpt_dir) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"no {CONFIG_FILE} in {ckpt_dir}: not an mmdemo checkpoint directory")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is not valid JSON ({e})") from e


def read_metrics(ckpt_dir: str | Path) -> dict:
    path = Path(ckpt_dir) / METRICS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def missing_prior(config: dict) -> str:
    """The prior encoder a checkpoint's head asks for but was built without, e.g. CLIP where its weights were not
    available ("" when none is missing, or when the config does not name a known model)."""
    from .models import get_model

    try:
        entry = get_model(config["model"])
        wanted = entry.head.needs(entry.config(config.get("head"), config.get("variant", ""))).prior
    except (KeyError, ValueError, TypeError):
        return ""
    return wanted if wanted != config.get("prior_encoder", "") else ""


def check_compatible(config: dict, *, task: str | None = None, text_encoder: str | None = None,
                     image_encoder: str | None = None, labels: list[str] | None = None, where: str = "") -> None:
    """Refuse a checkpoint whose task, encoders or labels differ from the request, naming the mismatch."""
    wanted = {"task": task, "text_encoder": text_encoder, "image_encoder": image_encoder, "labels": labels}
    for key, want in wanted.items():
        if want is not None and config.get(key) != want:
            raise CheckpointError(f"checkpoint {where} has {key}={config.get(key)!r} but {want!r} was requested")


def load_checkpoint(ckpt_dir: str | Path, **expect) -> MultimodalClassifier:
    """Load a local checkpoint directory (safetensors only), after checking it against `expect`
    (task=, text_encoder=, image_encoder=, labels=)."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        raise CheckpointError(f"checkpoint directory {ckpt_dir} does not exist")
    config = read_config(ckpt_dir)
    check_compatible(config, where=str(ckpt_dir), **expect)
    if not (ckpt_dir / WEIGHTS_FILE).is_file():
        raise CheckpointError(f"no {WEIGHTS_FILE} in {ckpt_dir}; mmdemo reads safetensors only and never unpickles "
                              f"(.bin/.pt/.pth files are refused)")
    from .models import MultimodalClassifier

    try:
        return MultimodalClassifier.from_pretrained(ckpt_dir, strict=True).eval()
    except (RuntimeError, KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {ckpt_dir} does not match its config.json "
                              f"(model {config.get('model')!r}): {e}") from e


# A fused answer whose every class probability varies by less than this (one standard deviation over the inputs
# that selected the checkpoint) does not move with the input: `trainer measure` stores informative=False.
UNINFORMATIVE_STD = 1e-3


@dataclass(frozen=True)
class Trust:
    """How far to trust a checkpoint's answers, measured from data (`python -m trainer measure --checkpoint DIR`,
    also run by `trainer bundle`) and stored in its config.json under "trust" (the temperature under
    "calibration"). Torch-free: the page reads it before any network loads (`read_trust(read_config(dir))`).
    A field that is None was not measured; say nothing about it rather than guess.

    informative: False when the fused answer does not move with the input: over `spread`'s inputs no class's fused
        probability has a standard deviation of UNINFORMATIVE_STD or more (e.g. a temperature of 1e6 makes every
        answer 50/50). Then draw no share bar, heatmap or probability as if it meant something.
    spread: over the inputs that selected the checkpoint (its dev split; for an all-events MediaEval bundle its
        validation events), calibration applied:
          n          number of inputs
          std        the standard deviation over inputs of each class's fused probability, the largest over classes
          top_low, top_high   the 5th and 95th percentiles of the top class's probability
          top_share  {label: fraction of those inputs whose top class it is}
          on         plain words: which inputs ("the validation events boston, nepal (1,892 posts)")
    judged: the measure the task is judged on (MediaEval: events training never saw; hashtags: test P@1;
        MVSA-Single: its paper metric on test):
          metric     the metric key ("macro_f1", "precision@1", "weighted_f1")
          value      the score (a recipe's: the mean over its seeds, `std` their standard deviation)
          floor      the same metric for a guess that ignores the input, on the same inputs: always the commonest
                     class there (single-label), or the training split's most popular tags (hashtags)
          floor_name plain words for the floor ("always answering fake")
          on         plain words: which inputs
          whose      "checkpoint": this checkpoint's own held-out inputs; "recipe": a leave-one-event-out run of the
                     same recipe (other models, one per left-out event), pooled over its seeds
          optimistic True when the held-out score was read more than once while the settings were being chosen, so
                     it overstates what to expect; `why` (plain words) says which search
          source     (a recipe's) the leave-one-event-out report, relative to the repository
    calibration: None where the fused probabilities are not calibrated; else
          temperature  what divides the fused logits
          fitted_on    plain words: which predictions it was fitted on
          whose        "recipe" or "checkpoint", as for judged
          ece_before, ece_after   expected calibration error (15 bins) of those predictions without and with it
          ece_after_unseen        (a recipe's) the same, each event scaled by a temperature fitted without it
    selected_on: plain words: which inputs chose the epoch (and seed) of this checkpoint.
    signals: {name: validity} for each of the network's own scalar signals ("key", or "key:component" for one
        weight of a "weights" signal), measured over the inputs of `spread` (`trainer.probe.signal_validity`):
          n, on      how many inputs, and which (plain words)
          mean, std, p05, p95   its spread over them (5th and 95th percentiles)
          low, high  its declared true range (None: unbounded on that side)
          flat       True when p95 - p05 is under FLAT_SHARE of its scale (the declared range where bounded, else
                     the largest |value|): it does not change with the input
          spearman_text_share   rank correlation with the measured Shapley caption share of the predicted class
                     (None where the signal is constant)
          shuffled_mean         its mean when every caption is paired with another post's image
    splits: {"dev" | "test": its name by what it is}, e.g. {"dev": "validation events (boston, nepal)"} for a
        checkpoint trained on every other event (no "test"), {"dev": "dev", "test": "test"} for MVSA-Single.
    """

    informative: bool | None = None
    spread: dict | None = None
    judged: dict | None = None
    calibration: dict | None = None
    selected_on: str = ""
    splits: dict | None = None
    signals: dict | None = None

    @property
    def below_floor(self) -> bool:
        """True when the judged score is below what a guess that ignores the input scores on the same inputs."""
        return bool(self.judged) and self.judged["value"] < self.judged["floor"]

    @property
    def carries_over(self) -> bool:
        """The temperature lowers the calibration error on inputs it was not fitted on (for a recipe's: on each event
        scaled by a temperature fitted without it); True where that was not measured."""
        c = self.calibration or {}
        return "ece_after_unseen" not in c or c["ece_after_unseen"] < c["ece_before"]

    @property
    def calibrated(self) -> bool:
        """The fused probabilities are temperature-scaled, the scaling carries over to inputs it was not fitted on,
        and the answer still moves with the input (a temperature that made every answer the same is no calibration
        to speak of)."""
        return bool(self.calibration) and self.informative is not False and self.carries_over


def read_trust(config: dict) -> Trust:
    """The Trust recorded in a checkpoint's config.json (a dict, as `read_config` returns it); every field None for a
    checkpoint never measured."""
    t = config.get("trust") or {}
    cal = config.get("calibration") or {}
    return Trust(informative=t.get("informative"), spread=t.get("spread"), judged=t.get("judged"),
                 calibration=cal if "temperature" in cal else None, selected_on=t.get("selected_on", ""),
                 splits=t.get("splits"), signals=t.get("signals"))


def _num(x: float) -> str:
    return f"{x:.2f}" if abs(x) >= 0.1 else f"{x:.3f}"


def _metric_name(metric: str) -> str:
    return {"macro_f1": "macro F1", "weighted_f1": "weighted F1", "accuracy": "accuracy",
            "precision@1": "P@1 (the top tag is one of the post's tags)"}.get(metric, metric)


# A signal whose 5-95% range over the measured inputs is under this share of its scale does not change with the input.
FLAT_SHARE = 0.05
# Spearman rho with the measured caption share: below WEAK_RHO unrelated, from STRONG_RHO on it moves with it.
WEAK_RHO, STRONG_RHO = 0.1, 0.3
# Mismatched pairs move a signal when its mean shifts by at least this many of its standard deviations.
SHIFT_STDS = 0.2


def is_flat(p05: float, p95: float, low: float | None, high: float | None) -> bool:
    """`Trust.signals`' flat: the 5-95% range under FLAT_SHARE of the declared range, or of the largest |value|
    where the range is unbounded."""
    scale = high - low if low is not None and high is not None else max(abs(p05), abs(p95))
    return scale == 0 or p95 - p05 < FLAT_SHARE * scale


def _value(x: float) -> str:
    """3 significant digits, a true minus sign."""
    return (f"{x:.3g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.1e}").replace("-", "−")


def signed(x: float, digits: int = 2) -> str:
    """A number with its sign always shown and a true minus sign."""
    return f"{x:+.{digits}f}".replace("-", "−")


def validity_line(v: dict) -> str:
    """One plain sentence on what a signal's measured validity record (`Trust.signals`) says: its range over the
    inputs that selected the checkpoint, then, where it moves at all, whether it follows the measured caption share
    and whether mismatched image-caption pairs move it."""
    where = f"Over {v['on']}" if v.get("on") else f"Over {v['n']:,} inputs"
    low, high = _value(v["p05"]), _value(v["p95"])
    span = (f"{where} it stayed at {low} (5–95% of them)" if low == high else
            f"{where} it ranged from {low} to {high} (5–95% of them)")
    if v["flat"]:
        return f"{span}: it does not change with the input."
    rho = v.get("spearman_text_share")
    if rho is None or abs(rho) < WEAK_RHO:
        follows = f"it is unrelated to the measured caption share (ρ {signed(rho or 0)})"
    elif abs(rho) < STRONG_RHO:
        follows = f"it is only weakly tied to the measured caption share (ρ {signed(rho)})"
    else:
        follows = (f"it rises with the measured caption share (ρ {signed(rho)})" if rho > 0 else
                   f"it rises as the image's measured share does (ρ with the caption share {signed(rho)})")
    shift = v["mean"] - v["shuffled_mean"]
    if v["std"] > 0 and abs(shift) >= SHIFT_STDS * v["std"]:
        pairs = (f"with each caption given another post's image its mean is {_value(v['shuffled_mean'])}, against "
                 f"{_value(v['mean'])} on the real pairs")
    else:
        pairs = f"giving each caption another post's image leaves its mean where it was ({_value(v['mean'])})"
    return f"{span}; {follows}; {pairs}."


def reliability_line(trust: Trust) -> str:
    """One true sentence on how far to trust the fused answer ("" when nothing was measured): the judged score
    against its floor, whose figure it is, whether it is optimistic, and whether the probabilities are calibrated or
    carry no information at all."""
    parts = []
    j = trust.judged
    if not j and trust.splits is not None and "test" not in trust.splits:  # trained on every event, no LOEO report
        parts.append("it has not been measured on inputs it was neither trained on nor chosen on (it has no held-out "
                     "split, and its recipe no leave-one-event-out run), so how well it does on a new event is not "
                     "known")
    if j:
        who = ("this recipe (a leave-one-event-out run of the same settings, not this checkpoint itself)"
               if j["whose"] == "recipe" else "this checkpoint")
        verdict = "below" if trust.below_floor else "level with" if j["value"] == j["floor"] else "above"
        parts.append(f"On {j['on']} {who} scores {_metric_name(j['metric'])} {_num(j['value'])}, {verdict} the "
                     f"{_num(j['floor'])} of {j['floor_name']}")
        if j.get("optimistic"):
            parts[-1] += (" (optimistic: that score was read more than once while the settings were chosen"
                          + (f", {j['why']}" if j.get("why") else "") + ")")
    if trust.informative is False:
        parts.append("its answer does not change with the input (the same probabilities for every post), "
                     "so it tells you nothing about this one")
    elif trust.calibration:
        c = trust.calibration
        held_out = (f"calibration error {c['ece_after_unseen']:.2f} on an event left out of the fit, "
                    f"{c['ece_before']:.2f} unscaled" if "ece_after_unseen" in c else "")
        if trust.calibrated:
            parts.append(f"its fused probabilities are calibrated (temperature {c['temperature']:.3g}, fitted on "
                         f"{c['fitted_on']}{'; ' + held_out if held_out else ''}); its text-only and image-only "
                         f"ones are not")
        else:  # only a measured held-out error can say it does not carry over (`Trust.carries_over`)
            parts.append(f"its fused probabilities are divided by a temperature of {c['temperature']:.3g} fitted on "
                         f"{c['fitted_on']}, which does not carry over to a new event ({held_out}): read them as "
                         f"rough scores, not chances")
    elif j or trust.spread:
        parts.append("its probabilities are not calibrated: read them as scores, not chances")
    if not parts:
        return ""
    line = "; ".join(parts) + "."
    return line[0].upper() + line[1:]
