"""docs/RESULTS.md is generated from the committed runs: it must be exactly what `python -m trainer report
--markdown` writes today, so no number in it can drift from its run."""

import json

import pytest

from trainer.results import OUTPUT, TEMPLATE, render


def test_results_md_is_what_the_runs_say():
    assert OUTPUT.read_text() == render(TEMPLATE.read_text()), (
        "docs/RESULTS.md is stale: run `python -m trainer report --markdown` and commit it")


def _run(root, model, seed, dev, test, text_test=0.5):
    d = root / "mvsa-single" / model / f"seed{seed}"
    d.mkdir(parents=True)
    heads = lambda acc: {"accuracy": acc, "weighted_f1": acc - 0.01}  # noqa: E731
    (d / "metrics.json").write_text(json.dumps({
        "task": "mvsa-single", "model": model, "variant": "", "seed": seed,
        "dev": {"fused": heads(dev)}, "test": {"fused": heads(test), "text": heads(text_test), "image": heads(0.4)}}))


def test_placeholders_fill_means_stds_and_seeds(tmp_path):
    _run(tmp_path / "runs", "concat", 0, 0.70, 0.60)
    _run(tmp_path / "runs", "concat", 1, 0.74, 0.62)
    _run(tmp_path / "more", "concat", 2, 0.72, 0.64)
    out = render("a {{value runs mvsa-single concat test fused accuracy}} b "
                 "{{seeds runs,more mvsa-single concat dev fused accuracy}}\n"
                 "{{table runs mvsa-single concat dev.accuracy,test.weighted_f1}}\n"
                 "{{heads runs mvsa-single concat}}", base=tmp_path)
    assert "a 61.00 ± 1.41 b 70.00, 74.00, 72.00" in out
    assert "| model | seeds | dev acc | test wF1 |" in out and "| concat | 2 | 72.00 ± 2.83 | 60.00 ± 1.41 |" in out
    assert "| concat | 61.00 / 60.00 | 50.00 / 49.00 | 40.00 / 39.00 |" in out
    with pytest.raises(KeyError, match="no runs of mvsa-single/hglnet"):
        render("{{value runs mvsa-single hglnet test fused accuracy}}", base=tmp_path)
    with pytest.raises(ValueError, match="unknown placeholder"):
        render("{{median runs}}", base=tmp_path)


def test_every_bundled_checkpoint_is_in_the_modality_report():
    """The README's table of what each network draws on covers every network the app ships: bundling a checkpoint
    means rerunning `python -m trainer probe --bundled --splits dev test --json runs-probe/bundled.json`. A checkpoint
    trained on every event of its task has no held-out split to probe, and must not be in the table."""
    from mmdemo.hub import bundled_checkpoints
    from mmdemo.checkpoint import read_metrics
    from trainer.loeo import trained_on_every_event
    from trainer.results import REPO_ROOT

    probed = json.loads((REPO_ROOT / "runs-probe" / "bundled.json").read_text())
    for task, models in bundled_checkpoints().items():
        for model, path in models.items():
            if trained_on_every_event(read_metrics(path)):
                assert f"{task}/{model}" not in probed, f"{task}/{model} was probed on its own training events"
                continue
            assert set(probed.get(f"{task}/{model}", {})) >= {"dev", "test"}, (
                f"{task}/{model} is bundled but not probed: rerun `python -m trainer probe --bundled --splits dev "
                f"test --json runs-probe/bundled.json`")
