"""CACNet (mmdemo/models/cacnet.py): the two layouts of Figure 2, eq. 6-7 on fixed numbers, the IDF caption vector,
the phase schedules (per-iteration and block), which weights each phase / case may move (through the real trainer's
AdamW), variants, old configs, and the bundled checkpoints' cross-active weights."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mmdemo.encoders import FeatureDims, ImageFeatures, TextFeatures
from mmdemo.models import FitData, ModelOutput, TaskInfo, get_model
from mmdemo.models.cacnet import CACNet, CrossActiveLayer, cross_active_beta, cross_active_drift, sample_errors
from trainer.loop import RunSpec, train

from tests.helpers import LABELS, REPO_ROOT, synthetic_features

ENTRY = get_model("cacnet")
DIMS = FeatureDims(text_dim=8, text_layers=2, image_dim=6, image_pooled_dim=6, image_logits_dim=0,
                   image_grid=(1, 1), vocab_size=20)
GROUPS = ("input", "passive", "cross_active", "output")


def _head(task: TaskInfo = TaskInfo(("a", "b", "c")), variant: str = "", **overrides) -> CACNet:
    torch.manual_seed(0)
    return ENTRY.head(ENTRY.config({"input_dim": 5, "hidden": 8, **overrides}, variant), DIMS, task)


def _inputs(b: int = 4) -> tuple[TextFeatures, ImageFeatures]:
    torch.manual_seed(1)
    ids = torch.randint(1, 20, (b, 5))
    mask = torch.ones(b, 5, dtype=torch.long)
    mask[0, 3:] = 0
    words = torch.randn(b, 5, 8) * mask[..., None]
    text = TextFeatures(torch.zeros(b, 0, 5, 8), mask, torch.randn(b, 8), ids * mask, words)
    return text, ImageFeatures(torch.zeros(b, 0, 6), torch.randn(b, 6))


def _snapshot(head) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in head.named_parameters()}


def _names(head: CACNet, group: str) -> set[str]:
    ids = {id(p) for p in head.parameter_groups()[group]}
    return {n for n, p in head.named_parameters() if id(p) in ids}


def test_registry_defaults_and_variants():
    cfg = ENTRY.config()
    assert (cfg.input_dim, cfg.hidden, cfg.batch_size) == (300, 600, 20)  # Sec. 3 and 4
    assert (cfg.gamma_start, cfg.gamma_end, cfg.gamma_ramp_ratio) == (0.4, 0.8, 0.2)  # Sec. 4
    assert cfg.patience == cfg.epochs and cfg.text_layers == 0 and cfg.idf and cfg.dropout == 0.0
    assert cfg.schedule == "per-iteration" and ENTRY.config(variant="block").schedule == "block"
    assert ENTRY.config(variant="gamma-1").gamma_start == ENTRY.config(variant="gamma-1").gamma_end == 1.0
    assert ENTRY.config(variant="gamma-1").schedule == "per-iteration"
    for v in ("no-phase1", "mlp"):  # phase 2 alone: the block schedule with no phase-1 epochs
        assert (ENTRY.config(variant=v).schedule, ENTRY.config(variant=v).phase1_ratio) == ("block", 0.0)
    with pytest.raises(ValueError, match="schedule"):
        ENTRY.config({"schedule": "blocks"})
    needs = CACNet.needs(cfg)
    assert needs.token_ids and not needs.image_patches and needs.text_layers == 0


def test_figure2_layer_on_fixed_numbers():
    """One unit per half: w(a',b') = 1, w(a'',b') = 2, w(a',b'') = 3, w(a'',b'') = 4, biases 0.5 / -0.5, input
    (a', a'') = (1, 10): b' = 1 + 20 + 0.5, b'' = 3 + 40 - 0.5; passive only (1.5, 39.5); cross-active only
    (20.5, 2.5). Both layouts of Figure 2 give these numbers."""
    layer = CrossActiveLayer(1, 1, 1, 1)
    with torch.no_grad():
        layer.w_image.fill_(1.0), layer.w_text_image.fill_(2.0), layer.w_image_text.fill_(3.0)
        layer.w_text.fill_(4.0), layer.bias.copy_(torch.tensor([0.5, -0.5]))
    a_image, a_text = torch.tensor([[1.0]]), torch.tensor([[10.0]])
    for (passive, cross), expected in {(True, True): (21.5, 42.5), (True, False): (1.5, 39.5),
                                       (False, True): (20.5, 2.5)}.items():
        for layout in (layer.forward, layer.blockwise):
            b_image, b_text = layout(a_image, a_text, passive, cross)
            assert (b_image.item(), b_text.item()) == expected, (layout.__name__, passive, cross)
    torch.testing.assert_close(layer.weight(), torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    torch.testing.assert_close(layer.weight(cross=False), torch.tensor([[1.0, 0.0], [0.0, 4.0]]))


def test_figure2_layouts_give_identical_outputs():
    """Left layout: CACNet is an MLP on [x'; x''] whose matrices are the masked weights; right layout: sub-sections
    summed one by one. Same outputs (whole network, passive only, cross-active only) on the same weights."""
    head = _head().eval()
    text, image = _inputs()
    out = head(text, image)
    x_image, x_text = head.inputs(text, image)
    w_out = torch.cat([head.out_image.weight, head.out_text.weight], dim=1)  # w(g, y) = [w(g',y) w(g'',y)]
    for (passive, cross), logits in {(True, True): out.logits, (True, False): None,
                                     (False, True): None}.items():
        h = F.relu(F.linear(torch.cat([x_image, x_text], -1), head.hidden1.weight(passive, cross), head.hidden1.bias))
        g = F.relu(F.linear(h, head.hidden2.weight(passive, cross), head.hidden2.bias))  # one plain MLP
        h_i, h_t = (F.relu(a) for a in head.hidden1.blockwise(x_image, x_text, passive, cross))
        g_i, g_t = (F.relu(a) for a in head.hidden2.blockwise(h_i, h_t, passive, cross))
        torch.testing.assert_close(g, torch.cat([g_i, g_t], -1))
        if logits is not None:
            torch.testing.assert_close(logits, F.linear(g, w_out, head.out_bias))
        half = g.shape[-1] // 2
        if (passive, cross) == (True, False):  # y' and y'' of eq. 1
            torch.testing.assert_close(out.image_logits, head.out_image(g[:, :half]) + head.out_bias)
            torch.testing.assert_close(out.text_logits, head.out_text(g[:, half:]) + head.out_bias)
        if (passive, cross) == (False, True):  # eq. 8: x' -> h'' -> g' -> y'
            torch.testing.assert_close(out.cross_image_logits, head.out_image(g[:, :half]) + head.out_bias)
            torch.testing.assert_close(out.cross_text_logits, head.out_text(g[:, half:]) + head.out_bias)


def test_passive_virtual_outputs_read_one_modality_each():
    """y' depends on the image only and y'' on the caption only (cross-active connections off); the cross-active
    sub-networks also read one modality each, through the other modality's hidden units (Figure 3)."""
    head = _head().eval()
    text, image = _inputs()
    out = head(text, image)
    other_image = ImageFeatures(image.patches, torch.randn_like(image.pooled))
    moved = head(text, other_image)
    assert torch.equal(out.text_logits, moved.text_logits)
    assert torch.equal(out.cross_text_logits, moved.cross_text_logits)
    assert not torch.allclose(out.image_logits, moved.image_logits)
    assert not torch.allclose(out.cross_image_logits, moved.cross_image_logits)
    assert not torch.allclose(out.logits, moved.logits)


def test_beta_eq6_7_on_fixed_numbers():
    """Two samples, true class 0. Sample 1: p = 1/2, p' = 1/4, p'' = 1/2 -> E = ln 2, E' = 2 ln 2, E'' = ln 2,
    alpha_1 = 3 ln 2 / (2 ln 2) = 1.5. Sample 2: E = ln 4, E' = E'' = ln 2 -> alpha_2 = 0.5. Eq. 6: alpha = 1, eq. 7:
    beta = 1 / 2 (the mean of the per-sample betas, 0.6 and 1/3, would be 0.4667)."""
    third = math.log(3.0)
    fused = torch.tensor([[0.0, 0.0], [0.0, third]])  # p(0) = 1/2, 1/4
    image = torch.tensor([[0.0, third], [0.0, 0.0]])  # 1/4, 1/2
    text = torch.tensor([[0.0, 0.0], [0.0, 0.0]])  # 1/2, 1/2
    labels = torch.tensor([0, 0])
    e, e_image, e_text = (sample_errors(lg, labels, False) for lg in (fused, image, text))
    torch.testing.assert_close(e, torch.tensor([math.log(2), math.log(4)]))
    assert cross_active_beta(e, e_image, e_text).item() == pytest.approx(0.5, abs=1e-7)
    torch.testing.assert_close(cross_active_beta(e, e_image, e_text, per_sample=True),
                               torch.tensor([0.6, 1 / 3], dtype=torch.float64))
    # sigmoid outputs, one label: the same errors from logit 0 (p = 1/2) and -ln 3 (p = 1/4)
    ml = [torch.tensor([[0.0], [-third]]), torch.tensor([[-third], [0.0]]), torch.tensor([[0.0], [0.0]])]
    errors = [sample_errors(lg, torch.ones(2, 1), True) for lg in ml]
    assert cross_active_beta(*errors).item() == pytest.approx(0.5, abs=1e-7)
    # the head computes the same beta from a batch's outputs and labels
    head = _head(TaskInfo(("x", "y")))
    out = ModelOutput(fused, text, image)
    assert head.batch_beta(out, labels) == pytest.approx(0.5)


def test_beta_never_reaches_gamma_one():
    """A whole-network error near 0 makes alpha huge (5e9 here); beta = alpha / (1 + alpha) = 1 - 2e-10 must come out
    as that, below 1, so gamma = 1 is always end to end. Fixed numbers in Python's float64: a beta computed in float32
    rounds to exactly 1 and fails; an error of 0 is clamped to 1e-12 (alpha 5e12), not a division by zero."""
    e = float(torch.tensor(1e-9))  # the float32 input, as a Python float
    alpha = (5.0 + 5.0) / (2 * e)
    beta = cross_active_beta(torch.tensor([1e-9]), torch.tensor([5.0]), torch.tensor([5.0])).item()
    assert beta == pytest.approx(alpha / (1 + alpha), rel=0, abs=1e-15) and beta < 1.0
    assert cross_active_beta(torch.zeros(1), torch.tensor([5.0]), torch.tensor([5.0])).item() == pytest.approx(
        5e12 / (1 + 5e12), rel=0, abs=1e-15)


def test_objective_per_phase_and_case():
    head = _head().train()
    text, image = _inputs()
    labels = torch.tensor([0, 1, 2, 0])
    out = head(text, image)

    head.phase = 1
    obj = head.objective(out, labels)
    assert obj.update == {"input", "passive", "output"} and set(obj.terms) == {"virtual"}
    torch.testing.assert_close(obj.total, F.cross_entropy(out.image_logits, labels)
                               + F.cross_entropy(out.text_logits, labels))

    head.phase, beta = 2, head.batch_beta(out, labels)
    head.gamma = beta + 0.01  # Case 1: the whole network on y's loss
    obj = head.objective(out, labels)
    assert obj.update is None and set(obj.terms) == {"fused"}
    torch.testing.assert_close(obj.total, F.cross_entropy(out.logits, labels))

    head.gamma = beta  # beta >= gamma: Case 2, the cross-active sub-networks' virtual outputs
    obj = head.objective(out, labels)
    assert obj.update == {"cross_active", "output"} and set(obj.terms) == {"cross_active"}
    torch.testing.assert_close(obj.total, F.cross_entropy(out.cross_image_logits, labels)
                               + F.cross_entropy(out.cross_text_logits, labels))
    assert _head(case2_output=False).objective(out, labels).update == {"cross_active"}


def test_gradients_follow_the_groups():
    """Phase 1's loss never reaches a cross-active weight, Case 2's never a passive matrix (masked sub-sections are
    not in the graph). Case 2 does reach the passive biases and the input projections: only the trainer's group
    selection keeps those still (next test)."""
    labels = torch.tensor([0, 1, 2, 0])
    text, image = _inputs()
    for phase, gamma, untouched in ((1, 0.0, "cross_active"), (2, 0.0, "passive")):
        head = _head().train()
        head.phase, head.gamma = phase, gamma
        head.objective(head(text, image), labels).total.backward()
        for name, p in head.named_parameters():
            if name in _names(head, untouched) and not name.endswith("bias"):
                assert p.grad is None, (phase, name)
        if phase == 2:
            assert head.hidden1.bias.grad.abs().sum() > 0 and head.image_proj.weight.grad.abs().sum() > 0
    head = _head().train()
    head.phase, head.gamma = 2, 1.0  # Case 1: every parameter
    head.objective(head(text, image), labels).total.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())


def test_parameter_groups_partition_the_head():
    head = _head()
    groups = head.parameter_groups()
    assert tuple(groups) == GROUPS
    ids = [id(p) for g in groups.values() for p in g]
    assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in head.parameters()}
    assert _names(head, "cross_active") == {f"hidden{i}.{w}" for i in (1, 2) for w in ("w_image_text", "w_text_image")}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory, tiny_encoders):
    return synthetic_features(tmp_path_factory.mktemp("cacnet"), tiny_encoders)


def test_trainer_steps_leave_the_other_groups_untouched(synthetic, tiny_encoders, monkeypatch):
    """Through the real trainer (AdamW, weight decay 0.5, momentum), block schedule: epoch 1 is phase 1, epochs 2-3 are
    Case 2
    (gamma = 0, so beta >= gamma on every batch). Phase 1 moves no cross-active weight; Case 2 moves no passive
    weight and no input projection, though they carry AdamW moments from phase 1 and Case 2's loss has gradients
    for the passive biases and the projections."""
    data, feats, dims = synthetic
    te, ie = tiny_encoders
    starts: list[dict[str, torch.Tensor]] = []
    heads: list[CACNet] = []
    original = CACNet.on_epoch_start

    def spy(self, epoch, num_epochs):
        starts.append(_snapshot(self))
        heads.append(self)
        original(self, epoch, num_epochs)

    monkeypatch.setattr(CACNet, "on_epoch_start", spy)
    spec = RunSpec(task="mvsa-single", model="cacnet", labels=LABELS, multi_label=False, text_encoder=te.name,
                   image_encoder=ie.name, dims=dims, max_length=16, data_version=data.version,
                   overrides={"epochs": 3, "batch_size": 8, "hidden": 16, "input_dim": 8, "phase1_ratio": 1 / 3,
                              "schedule": "block", "gamma_start": 0.0, "gamma_end": 0.0, "weight_decay": 0.5,
                              "lr": 1e-2})
    _, record = train(spec, feats, progress=False)
    assert [set(h["train_terms"]) for h in record["history"]] == [{"virtual"}, {"cross_active"}, {"cross_active"}]
    head = heads[0]
    phase1, case2 = (starts[0], starts[1]), (starts[1], starts[2])
    for group in GROUPS:
        for name in _names(head, group):
            moved1 = not torch.equal(*(s[name] for s in phase1))
            moved2 = not torch.equal(*(s[name] for s in case2))
            assert moved1 == (group != "cross_active"), (name, "phase 1")
            assert moved2 == (group in ("cross_active", "output")), (name, "Case 2")


def test_schedule_scaled_to_the_epoch_budget():
    head = _head(schedule="block")
    assert head.steps_per_batch() == 1
    head.on_epoch_start(1, 40)
    head.on_step(1)  # the block schedule's phase is the epoch's, whatever the step
    assert head.phase == 1
    seen = {}
    for epoch in range(1, 501):  # the paper's 500 epochs: gamma 0.4, rising over the last 100 to 0.8
        head.on_epoch_start(epoch, 500)
        seen[epoch] = (head.phase, head.gamma)
    assert seen[100] == (1, 0.4) and seen[101] == (2, 0.4) and seen[400] == (2, 0.4)
    assert seen[450][1] == pytest.approx(0.6) and seen[500][1] == pytest.approx(0.8)
    gammas = []
    for epoch in range(1, 41):  # the default budget: phase 1 = epochs 1-8, gamma rises over epochs 33-40
        head.on_epoch_start(epoch, 40)
        gammas.append(head.gamma)
        assert head.phase == (1 if epoch <= 8 else 2)
    assert gammas[:32] == [0.4] * 32 and gammas[32] == pytest.approx(0.45) and gammas[-1] == pytest.approx(0.8)
    g1 = _head(variant="gamma-1")
    g1.on_epoch_start(40, 40)
    assert g1.gamma == 1.0
    mlp = _head(variant="mlp")
    mlp.on_epoch_start(1, 40)
    assert mlp.phase == 2
    # per-iteration: the same gamma, and on every batch of every epoch step 0 is phase 1 and step 1 phase 2
    every = _head()
    assert every.steps_per_batch() == 2
    for epoch in (1, 8, 33, 40):
        every.on_epoch_start(epoch, 40)
        assert every.gamma == pytest.approx(gammas[epoch - 1])
        phases = []
        for step in range(every.steps_per_batch()):
            every.on_step(step)
            phases.append(every.phase)
        assert phases == [1, 2]


def test_idf_caption_vector_on_fixed_numbers():
    """Captions [101 5 7 102], [101 5 102], [101 9 102]: df(101) = df(102) = 3 -> IDF log(4/4) = 0, df(5) = 2 ->
    log(4/3), df(7) = 1 -> log 2. With e_5 = (1, 0), e_7 = (0, 1): vector = (log 4/3, log 2) / (log 4/3 + log 2)."""
    dims = FeatureDims(2, 1, 6, 6, 0, (1, 1), vocab_size=120)
    head = ENTRY.head(ENTRY.config({"input_dim": 4, "hidden": 4}), dims, TaskInfo(("a", "b")))
    captions = [torch.tensor([101, 5, 7, 102]), torch.tensor([101, 5, 102]), torch.tensor([101, 9, 102])]
    head.fit(FitData(captions, torch.tensor([0, 1, 0]), lambda bs: iter(())))
    assert head.idf[101] == head.idf[102] == 0
    assert head.idf[5] == pytest.approx(math.log(4 / 3)) and head.idf[7] == pytest.approx(math.log(2))
    assert head.idf[50] == pytest.approx(math.log(4))  # never seen in training: the largest weight
    assert "idf" in head.state_dict()  # the checkpoint carries it
    words = torch.tensor([[[9.0, 9.0], [1.0, 0.0], [0.0, 1.0], [9.0, 9.0], [5.0, 5.0]]])  # last slot is padding
    text = TextFeatures(torch.zeros(1, 0, 5, 2), torch.tensor([[1, 1, 1, 1, 0]]), torch.zeros(1, 2),
                        torch.tensor([[101, 5, 7, 102, 0]]), words)
    a, b = math.log(4 / 3), math.log(2)
    torch.testing.assert_close(head.caption_vector(text), torch.tensor([[a / (a + b), b / (a + b)]]))
    plain = ENTRY.head(ENTRY.config({"input_dim": 4, "hidden": 4, "idf": False}), dims, TaskInfo(("a", "b")))
    plain.fit(FitData(captions, torch.tensor([0, 1, 0]), lambda bs: iter(())))
    torch.testing.assert_close(plain.caption_vector(text), torch.tensor([[19 / 4, 19 / 4]]))  # plain mean of 4


def test_explain_signals():
    head = _head().eval()
    text, image = _inputs()
    out = head(text, image)
    ex = out.explain
    assert set(ex) == set(CACNet.signals) and all(v.shape == (4,) for v in ex.values())
    # with the fused prediction as the target E' >= E (cross-entropy >= entropy), so beta >= 1/2
    assert ((ex["beta"] >= 0.5 - 1e-6) & (ex["beta"] < 1)).all()
    top = out.logits.argmax(-1)
    torch.testing.assert_close(ex["text_virtual"], out.text_logits.softmax(-1)[torch.arange(4), top])
    # single-modal outputs equal to the fused one: beta = 1/2 exactly
    same = head.explain_outputs(out.logits, out.logits, out.logits)["beta"]
    torch.testing.assert_close(same, torch.full((4,), 0.5))


def test_multi_label_uses_sigmoid():
    tags = TaskInfo(("#a", "#b", "#c"), multi_label=True)
    head = _head(tags).train()
    text, image = _inputs()
    out = head(text, image)
    target = torch.tensor([[1.0, 0, 1], [0, 1, 0], [0, 0, 1], [1, 1, 0]])
    head.phase = 1
    torch.testing.assert_close(head.objective(out, target).total,
                               F.binary_cross_entropy_with_logits(out.image_logits, target)
                               + F.binary_cross_entropy_with_logits(out.text_logits, target))
    assert head.batch_beta(out, target) == pytest.approx(cross_active_beta(
        *(F.binary_cross_entropy_with_logits(lg, target, reduction="none").sum(-1)
          for lg in (out.logits, out.image_logits, out.text_logits))).item())
    top = out.logits.argmax(-1)
    torch.testing.assert_close(out.explain["image_virtual"], out.image_logits.sigmoid()[torch.arange(4), top])


def test_configs_written_before_schedule_load_as_the_block_schedule():
    """A config.json written before `schedule` existed holds every other field and was trained with the block schedule:
    it loads as that. A config written now carries the field; a partial dict (a sweep point, --set) takes the default.
    Every bundled CACNet loads with the schedule it was trained with (its recorded one, else block)."""
    from mmdemo.checkpoint import read_config
    from mmdemo.hub import bundled_checkpoints

    old = ENTRY.config().to_dict()
    assert old.pop("schedule") == "per-iteration"
    assert ENTRY.config(old).schedule == "block"
    assert ENTRY.config({**old, "schedule": "per-iteration"}).schedule == "per-iteration"
    assert ENTRY.config({"lr": 3e-4, "phase1_ratio": 0.2}).schedule == "per-iteration"
    bundles = [m["cacnet"] for m in bundled_checkpoints(REPO_ROOT / "checkpoints").values() if "cacnet" in m]
    assert len(bundles) == 3
    for path in bundles:
        config = read_config(path)
        assert ENTRY.config(config["head"], config["variant"]).schedule == config["head"].get("schedule", "block")


def _train_spec(synthetic, tiny_encoders, **overrides) -> RunSpec:
    data, feats, dims = synthetic
    te, ie = tiny_encoders
    return RunSpec(task="mvsa-single", model="cacnet", labels=LABELS, multi_label=False, text_encoder=te.name,
                   image_encoder=ie.name, dims=dims, max_length=16, data_version=data.version,
                   overrides={"hidden": 16, "input_dim": 8, **overrides})


def test_per_iteration_runs_phase1_then_phase2_on_every_batch(synthetic, tiny_encoders, monkeypatch):
    """Through the real trainer, one epoch of 4 batches (32 posts, batch 8), gamma 0 (so phase 2 is Case 2): every
    batch is two steps, phase 1 then phase 2, on the same input and target; phase 2 runs on the weights phase 1 just
    updated; phase 1's step moves the input, passive and output groups and no cross-active weight, phase 2's the
    cross-active and output groups and no passive weight or input projection."""
    calls: list[tuple[int, torch.Tensor, dict[str, torch.Tensor]]] = []
    inputs: list[torch.Tensor] = []
    heads: list[CACNet] = []
    objective, forward = CACNet.objective, CACNet.forward

    def spy_objective(self, out, labels):
        calls.append((self.phase if self.training else 0, labels.clone(), _snapshot(self)))
        heads.append(self)
        return objective(self, out, labels)

    def spy_forward(self, text, image):
        if self.training:
            inputs.append(image.pooled.clone())
        return forward(self, text, image)

    monkeypatch.setattr(CACNet, "objective", spy_objective)
    monkeypatch.setattr(CACNet, "forward", spy_forward)
    _, record = train(_train_spec(synthetic, tiny_encoders, epochs=1, batch_size=8, gamma_start=0.0, gamma_end=0.0,
                                  weight_decay=0.5, lr=1e-2), synthetic[1], progress=False)
    steps = [c for c in calls if c[0]]
    assert [phase for phase, _, _ in steps] == [1, 2] * 4
    assert set(record["history"][0]["train_terms"]) == {"virtual", "cross_active"}
    assert len(inputs) == 8
    for b in range(4):  # the two steps of a batch: same posts, same labels
        assert torch.equal(inputs[2 * b], inputs[2 * b + 1]) and torch.equal(steps[2 * b][1], steps[2 * b + 1][1])
    assert not torch.equal(inputs[0], inputs[2])
    after = [s for _, _, s in steps[1:]] + [calls[len(steps)][2]]  # the weights each step left (the last: at dev)
    head = heads[0]
    for i, ((phase, _, before), left) in enumerate(zip(steps, after)):
        moved = {g for g in GROUPS for n in _names(head, g) if not torch.equal(before[n], left[n])}
        still = {g for g in GROUPS for n in _names(head, g) if torch.equal(before[n], left[n])}
        if phase == 1:
            assert moved == {"input", "passive", "output"} and "cross_active" in still and not still & moved, i
        else:
            assert moved == {"cross_active", "output"} and not still & moved, i


def test_one_per_iteration_batch_moves_the_cross_active_weights(synthetic, tiny_encoders, monkeypatch):
    """One batch (all 32 posts, 1 epoch) at the paper's starting gamma 0.4, lr 1e-2, no weight decay. Per-iteration:
    phase 2 is the cross-active weights' first AdamW step (Case 1 or Case 2 both update them), which moves every
    weight with a gradient by exactly lr (m/sqrt(v) = g/|g| on a first step), at the full learning rate: the schedule
    advances once per batch (a step after phase 1 would have decayed it to 0 here). Block schedule (epoch 1 of 5 is
    phase 1): the same batch leaves every cross-active weight exactly at its initialisation."""
    starts: list[dict[str, torch.Tensor]] = []
    original = CACNet.on_epoch_start

    def spy(self, epoch, num_epochs):
        starts.append(_snapshot(self))
        original(self, epoch, num_epochs)

    monkeypatch.setattr(CACNet, "on_epoch_start", spy)
    lr = 1e-2
    model, record = train(_train_spec(synthetic, tiny_encoders, epochs=1, batch_size=32, weight_decay=0.0, lr=lr),
                          synthetic[1], progress=False)
    assert model.head.config.gamma_start == 0.4 and set(record["history"][0]["train_terms"]) & {"fused", "cross_active"}
    head = model.head
    cross = _names(head, "cross_active")
    assert len(cross) == 4
    after = dict(head.named_parameters())
    for name in cross:
        step = (after[name].detach() - starts[0][name]).abs()
        assert step.max().item() == pytest.approx(lr, rel=1e-3), name
        exact = (step - lr).abs() < 1e-3 * lr  # lr, to float32 rounding of the weights
        assert exact.float().mean() > 0.3, name
        assert (exact | (step == 0)).all(), name  # the others: a zero gradient (a unit ReLU shut), no move

    starts.clear()
    train(_train_spec(synthetic, tiny_encoders, epochs=5, batch_size=32, weight_decay=0.0, lr=lr, schedule="block",
                      phase1_ratio=0.2), synthetic[1], progress=False)
    for name in cross:  # starts[1]: the weights after epoch 1 (phase 1) of the block schedule
        assert torch.equal(starts[0][name], starts[1][name]), name


def test_cross_active_drift_on_fixed_numbers():
    """A fresh head's cross-active matrices lie within the initialisation's bound b = 1/sqrt(fan_in) (fan_in 10 here,
    std near b/sqrt(3)); one weight set to 1.01 b counts as moved, one at 1.0005 b (float16 rounding of b) does not."""
    head = _head()
    drift = cross_active_drift(head)
    assert set(drift) == {f"hidden{i}.{w}" for i in (1, 2) for w in ("w_image_text", "w_text_image")}
    assert drift["hidden1.w_image_text"]["bound"] == pytest.approx(1 / math.sqrt(10))  # input_dim 5 + 5
    assert drift["hidden2.w_text_image"]["bound"] == pytest.approx(1 / math.sqrt(8))  # hidden 8: 4 + 4
    assert not any(d["moved"] for d in drift.values())
    with torch.no_grad():
        head.hidden2.w_text_image[0, 0] = 1.0005 * head.hidden2.init_bound
        head.hidden1.w_image_text[0, 0] = -1.01 * head.hidden1.init_bound
    drift = cross_active_drift(head)
    assert [n for n, d in drift.items() if d["moved"]] == ["hidden1.w_image_text"]
    assert drift["hidden1.w_image_text"]["max_abs"] == pytest.approx(1.01 / math.sqrt(10))


def _bundled_cacnets() -> list:
    from mmdemo.hub import bundled_checkpoints

    return [pytest.param(task, models["cacnet"], id=task)
            for task, models in bundled_checkpoints(REPO_ROOT / "checkpoints").items() if "cacnet" in models]


@pytest.mark.parametrize("task,path", _bundled_cacnets())
def test_every_bundled_cacnet_left_its_initialisation(task, path):
    """Every cross-active matrix of a bundled CACNet has a weight beyond its initialisation's bound (it was trained);
    scripts/cacnet_drift.py prints the numbers."""
    from mmdemo.checkpoint import load_checkpoint

    drift = cross_active_drift(load_checkpoint(path).head)
    assert all(d["moved"] for d in drift.values()), drift
