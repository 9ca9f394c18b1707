"""Which networks the page offers and loading them: the checkpoints under a root directory (and the Hub repos of
MMDEMO_HUB_REPOS), what each measured about itself, the network the page opens on, and the message a failure shows.
Nothing here imports torch until a network is loaded."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..checkpoint import CheckpointError, Trust, read_config, read_metrics, read_trust
from ..hub import HubError, Resolved, bundled_checkpoints, configured_repos, resolve
from ..inputs import InputError
from ..tasks import TASKS

if TYPE_CHECKING:  # the model code (torch) is imported on first use, so the page is served before torch loads
    from ..models import Signal
    from ..predict import Predictor

log = logging.getLogger(__name__)


def user_errors() -> tuple[type[Exception], ...]:
    """The errors whose message is for the user: bad input, a broken or missing checkpoint, an encoder whose weights
    are absent, the Hub. (A function: the encoders' error lives with the torch code, imported on first use.)"""
    from ..encoders import EncoderUnavailableError

    return InputError, CheckpointError, EncoderUnavailableError, HubError


NO_CHECKPOINT_HELP = """**No trained checkpoint was found** in `{root}`. Train one and bundle it, then restart the app:

```
python -m trainer train --task mvsa-single --model concat
python -m trainer bundle --task mvsa-single --model concat
```
(or set `MMDEMO_HUB_REPOS` to map `task/model` to Hugging Face Hub repos)."""
NO_CHECKPOINT_LINE = ("No trained checkpoint was found in {root}. Train and bundle one, then restart the app: "
                      "python -m trainer train --task mvsa-single --model concat, then "
                      "python -m trainer bundle --task mvsa-single --model concat.")


@dataclass
class Loaded:
    """A loaded network: its Predictor, where its checkpoint came from and its config.json."""

    predictor: Predictor
    where: Resolved
    config: dict

    @property
    def signals(self) -> dict[str, Signal]:
        return self.predictor.classifier.head.signals


class Catalogue:
    """The networks of `root` (<task>/<model>/ checkpoint directories), loaded on first use and kept per
    (task, model)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._cache: dict[tuple[str, str], Loaded] = {}
        self._lock = threading.Lock()

    def catalogue(self) -> dict[str, list[str]]:
        """{task: [models]} from bundled checkpoints and MMDEMO_HUB_REPOS."""
        cat = {t: sorted(models) for t, models in bundled_checkpoints(self.root).items()}
        try:
            repos = configured_repos()
        except (OSError, ValueError) as e:
            log.warning("ignoring MMDEMO_HUB_REPOS: %s", e)
            repos = {}
        for key in repos:
            task, _, model = key.partition("/")
            if model and model not in cat.setdefault(task, []):
                cat[task].append(model)
        return {t: m for t, m in sorted(cat.items()) if m}

    def checkpoint_of(self, task: str, model: str) -> tuple[Resolved, dict]:
        """Where a network's checkpoint is and its config.json, from the loaded network or read without loading it."""
        cached = self._cache.get((task, model))
        if cached:
            return cached.where, cached.config
        where = resolve(task, model, self.root)
        return where, read_config(where.path)

    def trust_of(self, task: str, model: str) -> Trust:
        """What the checkpoint measured about itself (its config.json), read without loading it (empty if unknown)."""
        try:
            return read_trust(self.checkpoint_of(task, model)[1])
        except user_errors():
            return Trust()

    def default_model(self, task: str) -> str | None:
        """The network the page offers first. A network below a guess that ignores the input on the measure the task
        is judged on, or whose answer does not move with the input, comes last. Among the rest: on a task judged on
        inputs training never saw (fake news: new events), the best there; otherwise the best on dev, where the
        networks were chosen (the page does not pick by test scores)."""
        models = self.catalogue().get(task, [])
        trust = {m: self.trust_of(task, m) for m in models}
        metric = TASKS[task].paper_metric if task in TASKS else "weighted_f1"
        unseen = task in TASKS and TASKS[task].judged_on_unseen

        def rank(model: str) -> tuple:
            t = trust[model]
            if unseen and t.judged:
                score = t.judged["value"]
            else:
                m = read_metrics(self.root / task / model).get("dev", {}).get("fused", {})
                score = float(m.get(metric, m.get("accuracy", -1.0)))
            return t.informative is not False and not t.below_floor, not unseen or t.judged is not None, score

        return max(models, key=rank) if models else None

    def model_choices(self, task: str | None) -> list[tuple[str, str]]:
        """The network picker's (label, network) pairs: a network that scores below a guess that ignores the input on
        the measure the task is judged on, or whose answer does not change with the input, says so in its label."""
        choices = []
        for model in self.catalogue().get(task or "", []):
            t = self.trust_of(task, model)
            mark = (" (answer does not change with the input)" if t.informative is False else
                    " (below a guess that ignores the input)" if t.below_floor else "")
            choices.append((model + mark, model))
        return choices

    def load(self, task: str | None, model: str | None) -> Loaded:
        if not self.catalogue():
            raise CheckpointError(NO_CHECKPOINT_LINE.format(root=self.root))
        if not task or not model:
            raise InputError("Pick a task and a model first.")
        key = (task, model)
        with self._lock:  # two requests for a new model load it once
            if key not in self._cache:
                from ..predict import Predictor  # the first load imports torch and the model code

                where = resolve(task, model, self.root)
                predictor = Predictor.from_checkpoint(where.path, task=task)
                self._cache[key] = Loaded(predictor, where, read_config(where.path))
            return self._cache[key]

    def first_network(self) -> tuple[str | None, str | None]:
        """The task and network the page opens on: MVSA-Single where it is trained, and its best network on dev."""
        cat = self.catalogue()
        task = "mvsa-single" if "mvsa-single" in cat else next(iter(cat), None)
        return task, self.default_model(task) if task else None

    def preload(self) -> threading.Thread:
        """Load the page's first network (and so torch and the model code) in a background thread, ahead of its
        first request; a failure is left for that request to report."""
        def run():
            task, model = self.first_network()
            if task and model:
                try:
                    self.load(task, model)
                except Exception as e:
                    log.warning("could not preload %s/%s: %s", task, model, e)

        thread = threading.Thread(target=run, name="mmdemo-preload", daemon=True)
        thread.start()
        return thread

    def labels_of(self, task: str | None, model: str | None) -> list[str]:
        """The checkpoint's label names, from its config.json (bundled, or the configured Hub repo's) without
        loading the weights ([] when unknown)."""
        if not task or not model:
            return []
        try:
            return list(self.checkpoint_of(task, model)[1].get("labels", []))
        except user_errors():
            return []

    def _message(self, e: Exception, what: str) -> str:
        """The text the page shows for `e`: a user error's own message, without the server's paths (a checkpoint is
        named from the checkpoints folder down); anything else is logged with its traceback and named only."""
        if isinstance(e, user_errors()):
            text = str(e).replace(str(self.root.resolve()), self.root.name).replace(str(self.root), self.root.name)
            return text.replace(str(Path.home()), "~")
        log.error("%s failed", what, exc_info=e)  # its traceback, also where e was caught earlier
        return f"Sorry, the {what} failed unexpectedly ({type(e).__name__}). The details are in the server log."

    # -- the functions the page wires up --

    def short(self, path: Path) -> str:
        """`path` named from the checkpoints folder's parent down (the server's own directories are not shown)."""
        try:
            return str(Path(path).relative_to(self.root.parent))
        except ValueError:
            return str(path)
