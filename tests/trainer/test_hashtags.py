"""The hashtag task's measures (HARRISON / CACNet, Tables 3-4) on hand-computed numbers, and the label-prior
baseline ("prior": the tags by training frequency, the class prior on single-label tasks)."""

from __future__ import annotations

import math

import pytest
import torch

from mmdemo.encoders import FeatureDims, ImageFeatures, TextFeatures
from mmdemo.models import FitData, TaskInfo, get_model
from trainer.metrics import compute_metrics


def test_precision_recall_accuracy_at_k_on_fixed_numbers():
    """Six tags ranked by score. Post 1 ranks tags 0..5 in order, truth {1, 4}; post 2 ranks them 5..0, truth {5};
    post 3 ranks 0..5, truth {4, 5}.
      P@k = hits in the top k / k:       P@1 = (0 + 1 + 0)/3, P@3 = (1/3 + 1/3 + 0)/3, P@5 = (2/5 + 1/5 + 1/5)/3
      R@k = hits in the top k / |truth|: R@1 = (0 + 1 + 0)/3, R@3 = (1/2 + 1 + 0)/3, R@5 = (1 + 1 + 1/2)/3
      A@k = 1 if any hit in the top k:   A@1 = 1/3, A@3 = 2/3, A@5 = 1.
    The 5th tag's logit is 0 (p = 0.5): torchmetrics' precision and recall count only positive scores, which once
    made P@5 and R@5 miss it here."""
    up = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    logits = torch.stack([up, up.flip(0), up]).logit()
    target = torch.zeros(3, 6)
    target[0, [1, 4]] = target[1, 5] = target[2, [4, 5]] = 1
    m = compute_metrics(logits, target, [f"#t{i}" for i in range(6)], multi_label=True)
    expected = {"precision@1": 1 / 3, "precision@3": 2 / 9, "precision@5": 4 / 15,
                "recall@1": 1 / 3, "recall@3": 1 / 2, "recall@5": 5 / 6,
                "accuracy@1": 1 / 3, "accuracy@3": 2 / 3, "accuracy@5": 1.0}
    assert {k: m[k] for k in expected} == pytest.approx(expected)
    assert m["n"] == 3
    assert m["accuracy@1"] == m["precision@1"]  # one tag: a hit is a precision of 1 (Table 4's A@1 is Table 3's P@1)


DIMS = FeatureDims(text_dim=4, text_layers=1, image_dim=3, image_pooled_dim=3, image_logits_dim=0, image_grid=(1, 1))


def _inputs(b: int) -> tuple[TextFeatures, ImageFeatures]:
    return (TextFeatures(torch.zeros(b, 0, 2, 4), torch.ones(b, 2), torch.randn(b, 4)),
            ImageFeatures(torch.zeros(b, 0, 3), torch.randn(b, 3)))


def _prior(task: TaskInfo, labels: torch.Tensor):
    entry = get_model("prior")
    head = entry.head(entry.config(), DIMS, task)
    head.fit(FitData([], labels, lambda bs: iter(())))
    return head


def test_prior_ranks_tags_by_training_frequency():
    """Counts (2, 1, 4) of 4 posts -> log((count + 1) / 5) = (log 3/5, log 2/5, 0), the same for every input."""
    labels = torch.tensor([[1.0, 0, 1], [0, 0, 1], [1, 0, 1], [0, 1, 1]])
    head = _prior(TaskInfo(("#a", "#b", "#c"), multi_label=True), labels)
    torch.testing.assert_close(head.log_prior, torch.tensor([math.log(3 / 5), math.log(2 / 5), 0.0]))
    assert "log_prior" in head.state_dict()  # the checkpoint carries it
    out = head(*_inputs(2))
    assert torch.equal(out.logits[0], out.logits[1]) and out.logits[0].argsort(descending=True).tolist() == [2, 0, 1]
    assert torch.equal(out.text_logits, out.logits) and torch.equal(out.image_logits, out.logits)
    with torch.no_grad():  # training only calibrates: while scale > 0 the ranking stays the frequency order
        head.scale.fill_(0.3), head.offset.fill_(-2.0)
    assert head(*_inputs(1)).logits[0].argsort(descending=True).tolist() == [2, 0, 1]


def test_prior_is_the_class_prior_on_single_label_tasks():
    """Classes (1, 1, 3) of 5 -> softmax of log((count + 1) / 6) = (2, 2, 4) / 8."""
    head = _prior(TaskInfo(("pos", "neu", "neg")), torch.tensor([0, 2, 2, 1, 2]))
    torch.testing.assert_close(head(*_inputs(3)).logits.softmax(-1), torch.tensor([[0.25, 0.25, 0.5]] * 3))
