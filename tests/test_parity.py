"""zoo.converters.parity.check: the checker passes what matches, fails what does not, and never raises on a mismatch."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from zoo.converters.parity.check import (
    DEFAULT_TOLERANCES,
    InputSet,
    ParityReport,
    Tolerance,
    check_parity,
    default_tolerance,
)
from zoo.converters.parity.inputs import random_input_sets
from zoo.converters.parity.report import figure
from zoo.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]


def _sets(n: int = 2) -> list[InputSet]:
    return random_input_sets([{"name": "x", "shape": [None, 4]}], seeds=range(n), batch_sizes=[2] * n)


def _model(feeds):
    x = feeds["x"].astype(np.float64)
    return [np.tanh(x) * 3.0, x.sum(axis=-1)]


def _shifted(index: int, delta: float):
    def candidate(feeds):
        outs = _model(feeds)
        outs[index] = outs[index] + delta
        return outs

    return candidate


def test_identical_outputs_pass_with_zero_diff():
    report = check_parity(_model, _model, _sets(3), output_names=["act", "total"])
    assert report.passed and report.error is None
    assert report.max_abs_diff == 0.0
    assert len(report.checks) == 6
    assert all(c.cosine == pytest.approx(1.0) and c.reason is None for c in report.checks)
    assert set(report.outputs) == {"act", "total"}
    assert report.summary_line().startswith("parity passed: 2 outputs x 3 input sets, max abs diff 0.0e+00")


def test_perturbation_fails_at_default_fp32_and_names_the_output():
    report = check_parity(_model, _shifted(1, 1e-2), _sets(), output_names=["act", "total"])
    assert not report.passed
    assert report.outputs["act"]["passed"] and not report.outputs["total"]["passed"]
    assert report.outputs["total"]["max_abs_diff"] == pytest.approx(1e-2)
    worst = report.worst(1)[0]
    assert worst.output == "total" and not worst.passed
    assert "abs diff 1.00e-02 > " in worst.reason and "allowed there" in worst.reason
    assert "total" in report.summary_line() and "FAILED" in report.summary_line()


def test_small_float32_noise_passes_at_default_tolerance():
    def candidate(feeds):
        return [o.astype(np.float32) for o in _model(feeds)]

    report = check_parity(_model, candidate, _sets())
    assert report.passed
    assert 0 < report.max_abs_diff < 1e-6
    assert report.checks[0].dtype == "float64->float32"
    assert [c.output for c in report.checks[:2]] == ["output_0", "output_1"]


@pytest.mark.parametrize(
    ("candidate", "reason"),
    [
        (lambda f: [np.zeros((2, 5)), np.zeros(2)], "shape mismatch (2, 4) vs (2, 5)"),
        (lambda f: [np.zeros((2, 4))], "output count mismatch: reference returned 2, candidate 1"),
        (lambda f: [np.zeros((2, 4)), np.zeros(2), np.zeros(1)], "output count mismatch: reference returned 2, candidate 3"),
    ],
)
def test_structural_mismatch_fails_with_a_reason(candidate, reason):
    def reference(feeds):
        return [np.zeros((2, 4)), np.zeros(2)]

    report = check_parity(reference, candidate, _sets(1))
    assert not report.passed
    failed = [c for c in report.checks if not c.passed]
    assert failed and failed[0].reason == reason
    assert math.isnan(failed[0].max_abs_diff)


def test_nan_in_candidate_fails_but_matching_nans_pass():
    def reference(feeds):
        out = np.ones((2, 3))
        out[0, 1] = np.nan
        return [out]

    def candidate_extra_nan(feeds):
        out = reference(feeds)[0].copy()
        out[1, 2] = np.nan
        return [out]

    assert check_parity(reference, reference, _sets(1)).passed
    report = check_parity(reference, candidate_extra_nan, _sets(1))
    assert not report.passed
    assert report.checks[0].reason.startswith("NaN in candidate at 1 position")


@pytest.mark.parametrize(("ref", "cand", "passed"), [
    ([np.inf, 1.0], [np.inf, 1.0], True),
    ([np.inf, 1.0], [-np.inf, 1.0], False),
    ([np.inf, 1.0], [1e30, 1.0], False),
])
def test_inf_positions_and_signs_must_match(ref, cand, passed):
    report = check_parity(lambda f: [np.array(ref)], lambda f: [np.array(cand)], _sets(1))
    assert report.passed is passed


def test_candidate_raising_gives_a_failed_report_not_an_exception():
    def candidate(feeds):
        raise RuntimeError("kernel not implemented: Foo")

    report = check_parity(_model, candidate, _sets(2), output_names=["act", "total"])
    assert not report.passed
    assert "candidate raised on random-b2-s0: RuntimeError: kernel not implemented: Foo" in report.error
    assert len(report.checks) == 4 and not any(c.passed for c in report.checks)
    assert report.checks[0].reason == "candidate raised: RuntimeError: kernel not implemented: Foo"
    assert report.checks[0].ref_shape == [2, 4]
    assert "kernel not implemented" in report.summary_line()


def test_a_candidate_that_raised_on_one_set_leaves_the_worst_figures_unknown_not_zero():
    """Matched on one set, raised on the other: the worst figures are unknown (NaN, "not measured"), never the
    0.0 of the set that ran (GPT-2 pt2 in the parity matrix read "NO | 0.00e+00")."""
    def candidate(feeds):
        if feeds["x"][0, 0] == first:
            return _model(feeds)
        raise RuntimeError("Guard failed: attention_mask.size()[1] != input_ids.size()[1]")

    sets = _sets(2)
    first = sets[0].feeds["x"][0, 0]
    report = check_parity(_model, candidate, sets, output_names=["act", "total"])
    assert not report.passed
    assert [c.max_abs_diff for c in report.checks[:2]] == [0.0, 0.0]  # the set that ran matched
    assert math.isnan(report.max_abs_diff)
    for name in ("act", "total"):
        figures = report.outputs[name]
        assert math.isnan(figures["max_abs_diff"]) and math.isnan(figures["cosine"])
        assert figures["unmeasured"] == 1 and figures["checks"] == 2 and not figures["passed"]
    data = report.to_dict()
    assert data["max_abs_diff"] == "nan" and data["outputs"]["act"]["max_abs_diff"] == "nan"
    assert figure(data["max_abs_diff"]) == figure(report.max_abs_diff) == "not measured"
    assert figure(1.5e-7, ".2e") == "1.50e-07" and figure(None) == ""
    from zoo.comparison import matrix_markdown

    row = {"format": "pt2", "chain": "onnx -> pt2", "passed": False, "max_abs_diff": data["max_abs_diff"],
           "top1_agreement": None, "atol": 1e-4, "size": 1e6, "seconds": 1.0, "cached": False}
    assert "| pt2 | onnx -> pt2 | NO | not measured |" in matrix_markdown("gpt2", [row])
    # every set measured: the figures are the worst of them, as before
    both = check_parity(_model, _shifted(1, 0.5), sets, output_names=["act", "total"])
    assert both.max_abs_diff == pytest.approx(0.5) and both.outputs["act"]["unmeasured"] == 0


def test_reference_raising_sets_error():
    report = check_parity(lambda f: 1 / 0, _model, _sets(1))
    assert not report.passed
    assert report.error == "reference raised on random-b2-s0: ZeroDivisionError: division by zero"
    assert report.checks[0].output == "*"


def test_top1_top5_agreement_on_a_hand_made_example():
    ref = np.array([
        [9, 8, 7, 6, 5, 4],  # top-1 class 0
        [0, 9, 1, 2, 3, 4],  # top-1 class 1
        [1, 2, 9, 3, 4, 5],  # top-1 class 2
        [9, 1, 2, 3, 4, 5],  # top-1 class 0
    ], dtype=np.float32)
    cand = np.array([
        [9, 8, 7, 6, 5, 4],  # same argmax
        [0, 8, 1, 2, 3, 9],  # argmax 5, reference's class 1 still in top-5
        [9, 2, 1, 3, 4, 5],  # argmax 0, class 2 (value 1) not in top-5
        [9, 1, 2, 3, 4, 5],  # same argmax
    ], dtype=np.float32)
    report = check_parity(lambda f: [ref], lambda f: [cand], _sets(1),
                          output_names=["logits"], classifier_outputs=["logits"])
    check = report.checks[0]
    assert check.top1_agreement == pytest.approx(0.5)
    assert check.top5_agreement == pytest.approx(0.75)
    assert not check.passed  # values differ far beyond tolerance; agreement is only reported
    assert report.outputs["logits"]["top1_agreement"] == pytest.approx(0.5)


def test_agreement_only_for_classifier_outputs_and_top5_needs_five_classes():
    three = np.array([[1.0, 2.0, 3.0]])
    report = check_parity(lambda f: [three, three], lambda f: [three, three], _sets(1),
                          classifier_outputs=[0])
    assert (report.checks[0].top1_agreement, report.checks[0].top5_agreement) == (1.0, None)
    assert report.checks[1].top1_agreement is None
    assert report.summary_line().endswith("top-1 agreement 100%")


@pytest.mark.parametrize("kind", ["random", "sample"])
def test_min_top1_agreement_fails_only_sample_sets(kind):
    ref = np.array([[1.0, 1.00001], [3.0, 0.0]])
    cand = np.array([[1.00001, 1.0], [3.0, 0.0]])  # a near-tie flips: within tolerance
    sets = [InputSet("s", {"x": np.zeros(1)}, kind=kind)]
    report = check_parity(lambda f: [ref], lambda f: [cand], sets, classifier_outputs=["output_0"],
                          min_top1_agreement=0.9)
    assert report.checks[0].top1_agreement == pytest.approx(0.5)
    assert report.passed is (kind == "random")
    if kind == "sample":
        assert report.checks[0].reason == "top-1 agreement 50% < required 90%"


@pytest.mark.parametrize(("ref", "cand", "tolerance", "passed", "atol"), [
    # Logits in the hundreds: atol scales with max|ref|, so a 2e-2 error next to 0 is fine.
    ([500.0, 0.0], [500.0, 0.02], None, True, 0.05),
    # The same error without scaling fails: |ref| = 0 leaves only atol 1e-4.
    ([500.0, 0.0], [500.0, 0.02], Tolerance(atol=1e-4, rtol=1e-4, scaled=False), False, 1e-4),
    # Probabilities (max|ref| <= 1) keep the plain atol.
    ([0.5, 0.0], [0.5, 0.02], None, False, 1e-4),
    ([0.5, 0.0], [0.5, 5e-5], None, True, 1e-4),
])
def test_magnitude_scaling(ref, cand, tolerance, passed, atol):
    report = check_parity(lambda f: [np.array(ref)], lambda f: [np.array(cand)], _sets(1), tolerance=tolerance)
    assert report.passed is passed
    assert report.checks[0].atol == pytest.approx(atol)


def test_integer_outputs_must_match_exactly():
    ids = np.array([[1, 2, 3]], dtype=np.int64)
    loose = Tolerance(atol=10.0, rtol=10.0)
    assert check_parity(lambda f: [ids], lambda f: [ids.astype(np.int32)], _sets(1), tolerance=loose).passed
    report = check_parity(lambda f: [ids], lambda f: [ids + (ids == 3)], _sets(1), tolerance=loose)
    assert not report.passed
    assert report.checks[0].reason == "integer output differs at 1 of 3 elements (max abs diff 1)"
    assert report.checks[0].atol == 0.0 and math.isinf(report.checks[0].worst_ratio)


def test_report_round_trips_through_json_with_nan():
    def candidate(feeds):
        return [np.zeros((2, 5)), feeds["x"].sum(axis=-1) + 1.0]

    report = check_parity(_model, candidate, _sets(2), versions={"numpy": np.__version__},
                          classifier_outputs=["output_0"])
    data = report.to_dict()
    text = json.dumps(data, allow_nan=False)
    back = ParityReport.from_dict(json.loads(text))
    assert back.to_dict() == data
    assert data["checks"][0]["max_abs_diff"] == "nan"
    assert math.isnan(back.checks[0].max_abs_diff)
    assert back.checks[1].max_abs_diff == pytest.approx(1.0)
    assert back.tolerance == report.tolerance and back.versions == {"numpy": np.__version__}
    assert back.summary_line() == report.summary_line()


def test_worst_orders_failing_first_then_by_tolerance_used():
    def candidate(feeds):
        act, total = _model(feeds)
        return [act + 1e-5, total + 1.0]

    report = check_parity(_model, candidate, _sets(2), output_names=["act", "total"])
    worst = report.worst(4)
    assert [c.output for c in worst] == ["total", "total", "act", "act"]
    assert worst[2].worst_ratio > 0 and worst[2].passed


def test_inputs_sha256_is_stable_and_changes_with_inputs():
    sets = _sets(2)
    digest = check_parity(_model, _model, sets).inputs_sha256
    assert check_parity(_model, _model, _sets(2)).inputs_sha256 == digest
    renamed = [InputSet("another-label", s.feeds) for s in sets]
    assert check_parity(_model, _model, renamed).inputs_sha256 == digest  # labels are not data
    changed = _sets(2)
    changed[1].feeds["x"][0, 0] += 1.0
    assert check_parity(_model, _model, changed).inputs_sha256 != digest
    reshaped = [InputSet(s.name, {"x": s.feeds["x"].reshape(4, 2)}) for s in sets]
    assert check_parity(lambda f: [f["x"]], lambda f: [f["x"]], reshaped).inputs_sha256 != digest


def test_random_input_sets_are_deterministic_and_shaped():
    spec = [
        {"name": "pixel_values", "shape": [None, 3, 8, 8], "dtype": "float32"},
        {"name": "input_ids", "shape": ["batch", "sequence"], "dtype": "int64", "low": 5, "high": 50},
        {"name": "mask", "shape": ["batch", "sequence"], "dtype": "int64", "low": 1, "high": 2},
    ]
    first, second = random_input_sets(spec), random_input_sets(spec)
    assert [s.name for s in first] == ["random-b2-s0", "random-b1-s1", "random-b3-s2"]
    for a, b, batch in zip(first, second, (2, 1, 3)):
        assert a.kind == "random"
        assert a.feeds["pixel_values"].shape == (batch, 3, 8, 8) and a.feeds["pixel_values"].dtype == np.float32
        assert a.feeds["input_ids"].shape == (batch, 16) and a.feeds["input_ids"].dtype == np.int64
        assert 5 <= a.feeds["input_ids"].min() and a.feeds["input_ids"].max() < 50
        assert (a.feeds["mask"] == 1).all()
        for name in a.feeds:
            np.testing.assert_array_equal(a.feeds[name], b.feeds[name])
    assert not np.array_equal(first[0].feeds["pixel_values"][:1], first[1].feeds["pixel_values"])
    assert abs(float(np.concatenate([s.feeds["pixel_values"].ravel() for s in first]).std()) - 1.0) < 0.15


def test_random_input_sets_overrides():
    spec = [{"name": "tokens", "shape": ["batch", "sequence", "hidden"], "dtype": "float16",
             "low": 0.0, "high": 1.0}]
    sets = random_input_sets(spec, seeds=[5, 6], batch_sizes=[4, 1], seq_lens=[7, 9], dims={"hidden": 3})
    assert [s.feeds["tokens"].shape for s in sets] == [(4, 7, 3), (1, 9, 3)]
    assert sets[0].feeds["tokens"].dtype == np.float16 and 0.0 <= sets[0].feeds["tokens"].min()


@pytest.mark.parametrize(("spec", "kwargs"), [
    ([{"name": "x", "shape": [None, "height"]}], {}),
    ([{"name": "x", "shape": [2, None]}], {}),
    ([{"name": "x", "shape": [2], "dtype": "int64", "low": 3, "high": 3}], {}),
    ([{"name": "x", "shape": [2], "dtype": "no-such-dtype"}], {}),
    ([{"name": "x", "shape": [2]}], {"seeds": (0, 1), "batch_sizes": (1,)}),
])
def test_random_input_sets_rejects_bad_specs(spec, kwargs):
    with pytest.raises(UsageError):
        random_input_sets(spec, **kwargs)


def test_default_tolerances():
    assert set(DEFAULT_TOLERANCES) >= {"float32", "float16", "bfloat16", "int8"}
    assert default_tolerance() == DEFAULT_TOLERANCES["float32"] == Tolerance(1e-4, 1e-4, True)
    assert default_tolerance("fp16") == DEFAULT_TOLERANCES["float16"]
    order = [DEFAULT_TOLERANCES[k].atol for k in ("float32", "float16", "bfloat16", "int8")]
    assert order == sorted(order)
    with pytest.raises(UsageError):
        default_tolerance("float8")
    with pytest.raises(UsageError):
        check_parity(_model, _model, [])


def test_import_is_light():
    """Importing the checker loads no framework (and not even numpy) until it is used."""
    code = ("import sys; import zoo.converters.parity.check; "
            "print(*(m in sys.modules for m in ('torch', 'onnxruntime', 'numpy')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "False"]


# --- a real model: the checker passes a faithful copy and fails a broken one ----------
def _torch_pair():
    import torch
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(8, 10),
    ).eval()

    def runner(module, dtype):
        def run(feeds):
            with torch.no_grad():
                return [module(torch.from_numpy(feeds["input"]).to(dtype)).numpy()]

        return run

    return torch, model, runner


def test_real_torch_model_float64_vs_float32_passes():
    torch, model, runner = _torch_pair()
    sets = random_input_sets([{"name": "input", "shape": [None, 3, 16, 16]}])
    report = check_parity(runner(copy.deepcopy(model).double(), torch.float64), runner(model, torch.float32), sets,
                          output_names=["logits"], classifier_outputs=["logits"],
                          versions={"torch": torch.__version__})
    assert report.passed, report.summary_line()
    assert 0 < report.max_abs_diff < 1e-5
    assert report.outputs["logits"]["top1_agreement"] == 1.0


def test_real_torch_model_with_one_perturbed_weight_fails():
    torch, model, runner = _torch_pair()
    broken = copy.deepcopy(model)
    with torch.no_grad():
        broken[4].weight[3, 5] += 0.05
    sets = random_input_sets([{"name": "input", "shape": [None, 3, 16, 16]}])
    report = check_parity(runner(model, torch.float32), runner(broken, torch.float32), sets,
                          output_names=["logits"])
    assert not report.passed
    assert all(not c.passed for c in report.checks)
    assert report.outputs["logits"]["cosine"] > 0.99  # a subtle error, still caught


def test_a_reference_that_ignores_its_input_makes_the_check_fail():
    """A degenerate model (e.g. Keras' untrained MobileNetV2 outputs 0.1 everywhere) proves nothing."""
    sets = random_input_sets([{"name": "x", "shape": [None, 4], "dtype": "float32"}])
    constant = lambda feeds: [np.full((feeds["x"].shape[0], 3), 0.1, np.float32)]  # noqa: E731
    report = check_parity(constant, constant, sets)
    assert not report.passed and "prove nothing" in report.error
    assert report.warnings and "output_0" in report.warnings[0]


def test_one_constant_output_among_others_is_a_warning():
    sets = random_input_sets([{"name": "x", "shape": [None, 4], "dtype": "float32"}])

    def model(feeds):
        x = feeds["x"]
        return [x * 2.0, np.zeros((x.shape[0], 2), np.float32)]

    report = check_parity(model, model, sets, output_names=["y", "bias"])
    assert report.passed and report.warnings == ["output 'bias' is the same for every input: it cannot show a conversion error"]
    assert ParityReport.from_dict(json.loads(json.dumps(report.to_dict()))).warnings == report.warnings


def test_parity_matrix_update_replaces_only_the_tables_it_has_rows_for(tmp_path):
    """scripts/parity_matrix.py --update DIR: the tables of the families DIR holds rows for are rewritten in the
    doc as it stands; the written sections and every other family's table stay byte for byte."""
    doc = tmp_path / "parity-matrix.md"
    old_bert = "| zoo-test/tiny-bert | chain | passed | max abs diff | top-1 agreement | atol | size | time |\n|---|---|---|---|---|---|---|---|\n| tflite-fp16 | torch -> tflite -> tflite-fp16 | NO | 1.12e-03 |  | 0.01 | 0.16 MB | 210.4 s |\n"
    other = "| zoo-test/gpt2-256 | chain | passed | max abs diff | top-1 agreement | atol | size | time |\n|---|---|---|---|---|---|---|---|\n| tf | | error: refused | | | | | 96.5 s |\n"
    doc.write_text("# Parity matrix\n\nWritten prose, kept.\n\n" + old_bert + "\nBetween the tables.\n\n" + other)
    rows = tmp_path / "rows"
    rows.mkdir()
    row = {"format": "tflite-fp16", "chain": "torch -> tflite -> tflite-fp16", "passed": True, "max_abs_diff": 1.1e-3,
           "top1_agreement": None, "atol": 0.01, "size": 1.6e5, "seconds": 90.0, "cached": False}
    (rows / "zoo-test_tiny-bert.json").write_text(json.dumps({"rows": [row]}))
    script = Path(__file__).resolve().parents[1] / "scripts" / "parity_matrix.py"
    proc = subprocess.run([sys.executable, str(script), "--update", str(rows), "--out", str(doc)], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    text = doc.read_text()
    assert "| tflite-fp16 | torch -> tflite -> tflite-fp16 | yes | 1.10e-03 |  | 0.01 | 0.16 MB | 90.0 s |" in text
    assert "210.4 s" not in text and text.count("| zoo-test/tiny-bert | chain |") == 1
    assert text.startswith("# Parity matrix\n\nWritten prose, kept.\n\n") and "\n\nBetween the tables.\n\n" + other in text
    (rows / "zoo-test_tiny-bert.json").unlink()
    (rows / "test_vit.json").write_text(json.dumps({"rows": [row]}))  # a family the doc has no table for
    again = subprocess.run([sys.executable, str(script), "--update", str(rows), "--out", str(doc)], capture_output=True,
                           text=True, check=False)
    assert again.returncode == 2 and "no table for test_vit" in again.stderr and doc.read_text() == text
