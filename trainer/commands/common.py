"""What several sub-commands parse the same way."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..spec import ENCODER_OPTIONS, add_option_flags


def value(text: str):
    """--set and --grid values: JSON when it parses (numbers, true/false, lists), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def pairs(items: list[str], flag: str, form: str) -> dict[str, str]:
    """["lr=1e-3", ...] -> {"lr": "1e-3", ...}; `form` names the expected shape in the error."""
    out = {}
    for pair in items:
        if "=" not in pair:
            raise SystemExit(f"{flag} expects {form}, got {pair!r}")
        k, v = pair.split("=", 1)
        out[k.strip()] = v
    return out


def overrides(items: list[str]) -> dict:
    """--set KEY=VALUE ... -> {key: value}"""
    return {k: value(v) for k, v in pairs(items, "--set", "key=value").items()}


def events(names: str) -> tuple[str, ...]:
    """--validation-events "nepal,boston" -> ("nepal", "boston"); "" -> () (the task reader's own)."""
    return tuple(e for e in names.split(",") if e)


def encoder_flags(p: argparse.ArgumentParser, unset: bool = False) -> None:
    """The encoders (RunSpec's options), the text length and where the data and the feature cache are. `unset`:
    the encoders default to None (train: the preset's, else RunSpec's)."""
    add_option_flags(p, list(ENCODER_OPTIONS), unset=unset)
    p.add_argument("--max-length", type=int, default=64, help="text tokens read by the encoder")
    p.add_argument("--data-dir", default=None, help="dataset folder (default: the task's, see mmdemo.tasks)")
    p.add_argument("--cache-dir", type=Path, default=None, help="feature cache (default: .cache/features)")
