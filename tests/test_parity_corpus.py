"""Parity on third-party-style ONNX models (tests/parity_corpus.py): inputs that fit each model, tolerances a
large output cannot swamp, task checks on real samples, and the source model's own failure told as such."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import onnx
import parity_corpus as pc
import pytest
from conftest import run_zoo

from zoo import errors
from zoo.converters.parity.check import check_parity
from zoo.converters.parity.inputs import onnx_signature
from zoo.converters.parity.reference import run_source
from zoo.converters.parity.report import InputSet
from zoo.converters.parity.runners import onnx_runner
from zoo.converters.parity.sampling import signature_input_sets
from zoo.converters.parity.specs import input_request
from zoo.converters.parity.tolerance import Tolerance, effective_tolerance


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("corpus")
    for name in pc.CORPUS:
        pc.write(name, directory)
    return directory


def _inferred(corpus: Path, name: str, *specs: str) -> tuple[list[InputSet], dict[str, str], object]:
    path = corpus / f"{name}.onnx"
    model = onnx.load(str(path))
    spec, _, meta = onnx_signature(model)
    run = onnx_runner(path)
    sets, notes = signature_input_sets(spec, meta, model=model, reference=run, request=input_request(specs))
    return sets, notes, run


def _expect_dynamic_spatial(sets, notes):
    for s in sets:  # 224 would break the model's stride-64 skip connection: 256, the next multiple
        assert s.feeds["images"].shape[1:] == (3, 256, 256) and 0 <= s.feeds["images"].min() < s.feeds["images"].max() <= 1
    assert "stride 64" in notes["images"]


def _expect_detector(sets, notes):
    assert all(s.feeds["images"].shape == (1, 3, 320, 320) for s in sets) and "an image" in notes["images"]
    assert [s.name for s in sets if s.kind == "sample"] == [f"sample-photos-{i}" for i in range(1, 5)]


def _expect_vad(sets, notes):
    for s in sets:  # the state's unnamed axis is the batch; a second of audio at the rate the If branches on
        batch = s.feeds["input"].shape[0]
        assert s.feeds["input"].shape == (batch, 16000) and s.feeds["state"].shape == (2, batch, 16)
        assert s.feeds["sr"].shape == () and int(s.feeds["sr"]) == 16000
    assert "the batch size" in notes["state"] and "16000" in notes["sr"]


def _expect_bytes(sets, notes):
    values = np.concatenate([s.feeds["bytes"].ravel() for s in sets if s.kind == "random"])
    assert values.dtype == np.int32 and values.min() >= 0 and values.max() == 256 and len(np.unique(values)) > 200
    text = next(s for s in sets if s.kind == "sample").feeds["bytes"]
    assert bytes(text[0][text[0] > 0].astype(np.uint8)).decode().startswith("The kettle")


def _expect_paddle(sets, notes):
    assert all(s.feeds["x"].shape[1:] == (3, 48, 320) for s in sets) and "text line" in notes["x"]


def _expect_sample_rate(sets, notes):
    assert all(int(s.feeds["sample_rate"]) == 16000 and s.feeds["audio"].shape[1] == 16000 for s in sets)


def _expect_bert(sets, notes):
    padded = 0
    for s in sets:
        ids, mask = s.feeds["input_ids"], s.feeds["attention_mask"]
        assert ids.max() < pc.BERT_VOCAB and mask[:, 0].all() and (ids[mask == 0] == 0).all()
        assert not s.feeds["token_type_ids"].any()
        padded += int((mask == 0).sum())
    assert padded > 0  # batches padded to their longest row, as real batches are


EXPECT = {"dynamic_spatial": _expect_dynamic_spatial, "detector": _expect_detector, "vad": _expect_vad,
          "bytes": _expect_bytes, "paddle_ocr": _expect_paddle, "sample_rate": _expect_sample_rate, "bert": _expect_bert}


@pytest.mark.parametrize("name", list(pc.CORPUS))
def test_inputs_are_inferred_so_the_source_runs(corpus, name):
    sets, notes, run = _inferred(corpus, name)
    EXPECT[name](sets, notes)
    outputs = run_source(run, sets, label=name, notes=notes)  # raises SourceModelError if any set does not fit
    assert set(outputs) == {s.name for s in sets} and set(notes) == set(sets[0].feeds)
    image_like = name in ("dynamic_spatial", "detector", "paddle_ocr")
    assert any(s.name.startswith("sample-photos") for s in sets) is image_like


@pytest.mark.parametrize(("name", "spec", "suspect"), [
    ("vad", "sr::int64:1", "sr"),  # a sample rate the model has no framing for
    ("vad", "state:2x16x16", "state"),  # a state whose batch is not the audio's
    ("dynamic_spatial", "images:batch,3,200,200", "images"),  # a side the stride does not divide
    ("sample_rate", "sample_rate::int64:0", "sample_rate"),
])
def test_a_source_that_fails_on_its_inputs_is_the_inputs_fault(corpus, name, spec, suspect):
    sets, notes, run = _inferred(corpus, name, spec)
    with pytest.raises(errors.SourceModelError) as caught:
        run_source(run, sets, label=name, notes=notes, model=onnx.load(str(corpus / f"{name}.onnx")))
    err = caught.value
    assert errors.exit_code_for(err) == 10 and errors.http_status_for(err) == 424
    assert err.details["inputs"][0] == suspect and "given with --input" in err.message
    assert "--input" in err.hint and "--inputs FILE.npz" in err.hint


def test_source_failure_stops_before_any_conversion(corpus, zoo_env):
    start = time.perf_counter()
    proc = run_zoo("convert", str(corpus / "vad.onnx"), "--to", "tflite", "--input", "sr::int64:1", "--json")
    took = time.perf_counter() - start
    out = json.loads(proc.stdout)
    assert proc.returncode == 10 and out["error"] == "source_model_failed" and out["inputs"][0] == "sr", proc.stderr
    assert "parity" not in out["message"].lower() and "nothing was converted" in out["message"]
    assert took < 20  # onnx2tf never ran (it takes longer than this on its own)
    home = zoo_env.home
    assert not any((home / d).glob("*/*") for d in ("artifacts", "quarantine") if (home / d).is_dir())


# --- tolerances ----------------------------------------------------------------------------------------------
def test_a_mixed_output_is_scaled_per_slice_and_a_homogeneous_one_as_a_whole():
    rng = np.random.default_rng(0)
    head = np.concatenate([rng.uniform(0, 320, (1, 4, 500)), rng.uniform(0, 1, (1, 3, 500))], axis=1)
    eff = effective_tolerance(head, Tolerance(0.1, 0.1))
    assert eff.axis == 1 and eff.atol_min == pytest.approx(0.1) and eff.atol_max > 30
    assert np.ravel(eff.atol)[4:].max() == pytest.approx(0.1)  # the scores keep their own atol
    logits = rng.standard_normal((2, 1000)) * 5
    whole = effective_tolerance(logits, Tolerance(1e-4, 1e-4))
    assert whole.axis is None and whole.atol_max == pytest.approx(1e-4 * np.abs(logits).max())
    unscaled = effective_tolerance(head, Tolerance(0.1, 0.1, scaled=False))
    assert unscaled.axis is None and unscaled.atol_max == 0.1


@pytest.fixture(scope="module")
def detectors(corpus) -> dict[str, Path]:
    good = pc.quantized(corpus / "detector.onnx", corpus / "detector-int8.onnx")
    broken = pc.write("detector-broken", corpus, pc.detector(score_gain=1.3))
    return {"good": good, "broken": pc.quantized(broken, corpus / "detector-broken-int8.onnx")}


def test_a_broken_int8_detector_is_rejected_and_a_good_one_passes(corpus, detectors):
    sets, notes, run = _inferred(corpus, "detector")
    meta = onnx_signature(corpus / "detector.onnx")[2]
    good = check_parity(run, onnx_runner(detectors["good"]), sets, tolerance="int8", metadata=meta, require_samples=True)
    assert good.passed, good.summary_line()
    detection = next(t for t in good.tasks if t["check"] == "detection")
    assert detection["passed"] and detection["figures"]["confident_reference_detections"] > 10
    broken = check_parity(run, onnx_runner(detectors["broken"]), sets, tolerance="int8", metadata=meta)
    assert not broken.passed
    photos = [c for c in broken.checks if c.input_set.startswith("sample-photos")]
    assert all(c.scale_axis == 1 for c in photos) and any("slice along axis 1" in (c.reason or "") for c in photos)
    failed = [t for t in broken.tasks if t["check"] == "detection" and t["passed"] is False]
    assert any("score moved by up to" in t["reason"] for t in failed)
    assert any("confident detections the reference does not make" in t["reason"] for t in failed)
    # one scale for the whole tensor (boxes up to 320 px) would have let every score error through
    for check, sample in zip(photos, [s for s in sets if s.name.startswith("sample-photos")]):
        assert check.max_abs_diff < 0.1 * np.abs(run(sample.feeds)[0]).max()


@pytest.mark.parametrize(("candidate", "passes"), [({"padding_noise": 3.0}, True), ({"ffn_gain": 1.5}, False)])
def test_text_states_are_compared_at_real_tokens_only(corpus, candidate, passes):
    """MiniLM in small: int8 hidden states that diverge at padding only pass; diverging real tokens fail."""
    fp32 = pc.write(f"bert-{passes}", corpus, pc.bert(**candidate))
    int8 = pc.quantized(fp32, corpus / f"bert-{passes}-int8.onnx")
    sets, notes, run = _inferred(corpus, "bert")
    sets.append(InputSet("real-tokens", pc.real_feeds("bert"), kind="sample"))
    report = check_parity(run, onnx_runner(int8), sets, tolerance="int8", require_samples=True)
    assert report.passed is passes, report.summary_line()
    assert sum(c.masked for c in report.checks) > 0
    embedding = next(t for t in report.tasks if t["check"] == "embedding")
    assert embedding["passed"] is passes and embedding["figures"]["padding_tokens"] > 0
    if not passes:
        assert "cosine at a real token" in embedding["reason"] and embedding["figures"]["min_token_cosine"] < 0.98
    if passes:  # at the padding positions themselves the candidate is far off: only the mask saves it
        real = pc.real_feeds("bert")
        gap = np.abs(run(real)[0] - onnx_runner(int8)(real)[0])[real["attention_mask"] == 0].max()
        assert gap > 1.0


def test_reduced_precision_needs_real_samples(corpus):
    sets, _, run = _inferred(corpus, "bert")  # no tokenizer, so no sample sentences: random sets only
    report = check_parity(run, run, sets, tolerance="int8", require_samples=True)
    assert not report.passed and "--samples DIR or --inputs FILE.npz" in report.error


# --- the command line -----------------------------------------------------------------------------------------
def test_zoo_parity_reads_the_candidate_precision_and_real_inputs(corpus, detectors, tmp_path, zoo_env):
    proc = run_zoo("parity", str(corpus / "detector.onnx"), str(detectors["broken"]), "--json")
    out = json.loads(proc.stdout)
    assert proc.returncode == 6 and out["parity"]["precision"] == "int8", proc.stderr[-2000:]
    assert out["parity"]["outputs"]["output0"]["scale"].startswith("per slice along axis 1")
    assert "4 photographs" in out["parity"]["inputs"]["images"]
    real = tmp_path / "tokens.npz"
    np.savez(real, **pc.real_feeds("bert"))
    padded = pc.quantized(pc.write("bert-pad", corpus, pc.bert(padding_noise=3.0)), corpus / "bert-pad-int8.onnx")
    proc = run_zoo("parity", str(corpus / "bert.onnx"), str(padded), "--inputs", str(real))
    assert proc.returncode == 0 and "embedding on inputs-file" in proc.stdout and "int8 tolerance" in proc.stdout, \
        proc.stdout + proc.stderr[-2000:]
    assert "input input_ids: from --inputs tokens.npz" in proc.stdout


def test_samples_directory_feeds_images_audio_and_text(corpus, tmp_path):
    import wave

    from zoo.converters.parity.samples import sample_audio, sample_photos

    folder = tmp_path / "samples"
    folder.mkdir()
    for name, image in sample_photos(2):
        image.save(folder / f"{name}.png")
    with wave.open(str(folder / "speech.wav"), "wb") as wav:
        wav.setnchannels(1), wav.setsampwidth(2), wav.setframerate(8000)
        wav.writeframes((sample_audio(1, rate=8000, seconds=2.0)[0] * 32767).astype("<i2").tobytes())
    (folder / "lines.txt").write_text("%PDF-1.7 a document\n#!/bin/sh\necho hello\n")
    sets, notes, _ = _inferred_with_samples(corpus, "detector", folder)
    assert [s.name for s in sets if s.kind == "sample"] == ["samples-images-1", "samples-images-2"]
    assert sets[-1].feeds["images"].shape == (1, 3, 320, 320)  # the detector takes one image at a time
    sets, notes, _ = _inferred_with_samples(corpus, "vad", folder)
    audio = sets[-1].feeds["input"]
    assert sets[-1].name == "samples-audio" and audio.shape == (1, 32000) and "16000 Hz" in notes["input"]  # resampled
    sets, _, _ = _inferred_with_samples(corpus, "bytes", folder)
    assert bytes(sets[-1].feeds["bytes"][1][:9].astype(np.uint8)) == b"#!/bin/sh"
    with pytest.raises(errors.UsageError, match="tokenizer"):
        _inferred_with_samples(corpus, "bert", folder)


def _inferred_with_samples(corpus: Path, name: str, folder: Path):
    path = corpus / f"{name}.onnx"
    model = onnx.load(str(path))
    spec, _, meta = onnx_signature(model)
    run = onnx_runner(path)
    sets, notes = signature_input_sets(spec, meta, model=model, reference=run, request=input_request(samples=str(folder)))
    run_source(run, sets, label=name, notes=notes)
    return sets, notes, run


@pytest.mark.parametrize(("text", "message"), [
    ("x", "NAME:SHAPE"), ("x:1x3:complex64", "dtype"), ("x:1x?:float32", "neither a size nor a name"),
    ("x:1:float32:5..1", "HIGH > LOW"), ("x:1:float32:a,b", "neither LOW..HIGH"),
])
def test_bad_input_specs_are_usage_errors(text, message):
    with pytest.raises(errors.UsageError, match=message):
        input_request([text])


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_masks_and_decoded_strings_are_compared_as_an_application_reads_them():
    """An elementwise tolerance blind to the change (atol 100) still fails: the task checks see it."""
    rng = np.random.default_rng(0)
    photo = [InputSet("sample-photos", {"x": np.zeros((1, 3, 32, 32), np.float32)}, kind="sample")]
    blind = Tolerance(100.0, 0.0, scaled=False)
    masks = rng.standard_normal((1, 4, 32, 32))
    flipped = masks.copy()
    flipped[:, 0, :16, :16] += 10  # a quarter of the image turns into class 0
    same = check_parity(lambda f: [masks], lambda f: [masks + 1e-7], photo, task="image-segmentation")
    assert same.passed and same.tasks[0]["figures"]["mean_iou"] == 1.0
    moved = check_parity(lambda f: [masks], lambda f: [flipped], photo, task="image-segmentation", tolerance=blind)
    assert not moved.passed and moved.tasks[0]["check"] == "segmentation" and moved.tasks[0]["figures"]["mean_iou"] < 0.9
    steps = _softmax(rng.standard_normal((2, 20, 6)) * 4)
    misread = steps.copy()
    misread[0, 3] = misread[0, 3][::-1]  # one step of the first line reads another character
    assert not np.array_equal(steps[0, 3].argmax(), misread[0, 3].argmax())
    for task in ("ocr", None):  # declared, or seen from the probabilities themselves
        report = check_parity(lambda f: [steps], lambda f: [misread], photo, task=task, tolerance=blind)
        ctc = next(t for t in report.tasks if t["check"] == "ctc")
        assert not report.passed and ctc["figures"]["character_error_rate"] > 0
        assert ctc["figures"]["reference"][0] != ctc["figures"]["candidate"][0]
