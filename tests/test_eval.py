"""`zoo eval`: accuracy of a model and its formats on labelled local data, asserted exactly.

The data sets are made here and labelled against the model's own predictions, computed independently of
zoo (timm's eval transform and the timm model; transformers' tokenizer and model), so the accuracy zoo
must find is known by construction: 6 of 10 images right at top-1 and 8 of 10 within the top 5; 7 of 12
sentences right, with the macro F1 those labels give."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from builders import bert_repo, timm_repo, write_hf_cache

from zoo import errors

RESNET = "timm/test_resnet.r160_in1k"
BERT = "zoo-test/tiny-bert-sst"


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One ZOO_HOME and HF cache for the module: the models are converted once."""
    root = tmp_path_factory.mktemp("eval")
    repos = {RESNET: timm_repo("test_resnet.r160_in1k"), BERT: bert_repo("sequence-classification")}
    for repo_id, files in repos.items():
        write_hf_cache(root / "hf" / "hub", repo_id, files)
    return root, repos


@pytest.fixture
def env(shared, monkeypatch):
    root, repos = shared
    monkeypatch.setenv("ZOO_HOME", str(root / "zoo"))
    monkeypatch.setenv("HF_HOME", str(root / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return root, repos


def run(capsys, *args: str) -> tuple[int, dict]:
    from zoo.cli import main as cli

    code = cli.main([*args, "--json"])
    out = capsys.readouterr().out.strip().splitlines()
    return code, json.loads(out[-1])


# --- images -------------------------------------------------------------------------------------------------
def _images(n: int, seed: int = 0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        h, w = int(rng.integers(150, 260)), int(rng.integers(150, 260))  # not the model's size: resize and crop run
        yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
        base = rng.uniform(0, 255, 3) * (1 - yy[..., None]) + rng.uniform(0, 255, 3) * xx[..., None]
        cy, cx, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.1, 0.3)
        base[((yy - cy) ** 2 + (xx - cx) ** 2) < r * r] = rng.uniform(0, 255, 3)
        out.append(Image.fromarray(np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)))
    return out


def _timm_scores(files: dict[str, bytes], images) -> np.ndarray:
    """The source model's class scores, as timm itself computes them: its model, its eval transform."""
    import timm
    import torch
    from safetensors.torch import load as load_safetensors

    model = timm.create_model("test_resnet.r160_in1k", pretrained=False)
    model.load_state_dict(load_safetensors(files["model.safetensors"]))
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    with torch.no_grad():
        return model.eval()(torch.stack([transform(img) for img in images])).numpy()


@pytest.fixture(scope="module")
def image_set(shared, tmp_path_factory):
    """10 images in class folders named by ImageNet synset: 6 labelled with the model's top-1 class, then
    one each with its 2nd, 5th, 6th and last class: top-1 60%, top-5 80%."""
    from timm.data import ImageNetInfo

    _root, repos = shared
    images = _images(10)
    scores = _timm_scores(repos[RESNET], images)
    order = np.argsort(-scores, axis=1)
    ranked = np.take_along_axis(scores, order, axis=1)
    # ranks 1-2 apart for every image, ranks 5-6 apart for those labelled with one of them
    assert (ranked[:, 0] - ranked[:, 1]).min() > 1e-3 and (ranked[7:9, 4] - ranked[7:9, 5]).min() > 1e-3, \
        "an image with a near-tie would make the expected accuracy fragile"
    # top-1 right: 6; top-1 wrong but in the top 5: the 2nd and the 5th best; outside: the 6th and the last
    labels = [order[i, 0] for i in range(6)] + [order[6, 1], order[7, 4], order[8, 5], order[9, -1]]
    names = ImageNetInfo("imagenet-1k").label_names()
    data = tmp_path_factory.mktemp("images")
    for i, (img, label) in enumerate(zip(images, labels)):
        (data / names[label]).mkdir(exist_ok=True)
        img.save(data / names[label] / f"img{i:02d}.png")
    return data


def test_eval_image_folder_finds_the_accuracy_known_by_construction(env, image_set, capsys):
    code, out = run(capsys, "eval", RESNET, "--format", "onnx", "--data", str(image_set))
    assert code == 0, out
    assert out["task"] == "image-classification" and out["dataset"]["examples"] == 10
    assert out["source"]["metrics"] == {"top1": 0.6, "top5": 0.8}
    (onnx,) = out["formats"]
    assert onnx["format"] == "onnx" and onnx["metrics"] == {"top1": 0.6, "top5": 0.8}
    assert onnx["delta"] == {"top1": 0.0, "top5": 0.0} and onnx["agreement"] == 1.0
    # stored against the artifact's digest and shown by zoo info; the artifact itself is untouched
    code, info = run(capsys, "info", RESNET)
    (art,) = [a for a in info["artifacts"] if a["digest"] == onnx["digest"]]
    (ev,) = art["evaluations"]
    assert ev["metrics"] == {"top1": 0.6, "top5": 0.8} and ev["dataset"]["sha256"] == out["dataset"]["sha256"]
    assert ev["source"] == {"top1": 0.6, "top5": 0.8} and ev["delta"] == {"top1": 0.0, "top5": 0.0} and ev["agreement"] == 1.0
    from zoo.cli import main as cli

    assert cli.main(["info", RESNET]) == 0
    assert "top1 60.00%  top5 80.00%; source top1 60.00%  top5 80.00%; delta top1 +0.00, top5 +0.00 points" \
        in capsys.readouterr().out
    from zoo.settings import get_settings
    from zoo.storage.artifacts import ArtifactStore

    store = ArtifactStore(get_settings().home)
    assert store.verify(store.get(onnx["digest"])) == []
    # the same evaluation again is answered from the table; a limit is a new evaluation, balanced over classes
    code, again = run(capsys, "eval", RESNET, "--format", "onnx", "--data", str(image_set))
    assert again["formats"][0]["cached"] is True and again["formats"][0]["metrics"] == onnx["metrics"]
    code, limited = run(capsys, "eval", RESNET, "-f", "onnx", "--data", str(image_set), "--limit", "3")
    assert limited["dataset"]["examples"] == 3 and limited["formats"][0]["cached"] is False


def test_max_drop_floor_on_the_main_metric():
    from zoo.eval.evaluate import floor_failure

    row = {"task": "image-classification", "source": {"top1": 0.8, "top5": 1.0}, "metrics": {"top1": 0.75, "top5": 0.9},
           "delta": {"top1": -5.0, "top5": -10.0}, "dataset": {"examples": 20, "path": "/d/images"}}
    assert floor_failure(row, 5.0) is None and floor_failure(row, None) is None
    assert floor_failure(row, 4.99) == ("top1 dropped 5.00 points (80.00% -> 75.00% on 20 examples of images), "
                                        "more than the 4.99 allowed")


# --- text ---------------------------------------------------------------------------------------------------
SENTENCES = ["a good movie", "the worst film ever", "i love this music", "boring and slow", "what a wonderful day",
             "the food was awful", "okay i guess", "fun for the whole family", "sad story about a dog",
             "excellent work by everyone", "terrible sound", "a quick walk in the sun"]


def _bert_predictions(files: dict[str, bytes], tmp: Path) -> np.ndarray:
    import torch
    import transformers

    for name, data in files.items():
        (tmp / name).write_bytes(data)
    tok = transformers.AutoTokenizer.from_pretrained(str(tmp))
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(tmp), attn_implementation="eager").eval()
    enc = tok(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits.numpy()
    top2 = np.sort(logits, axis=1)[:, -2:]
    assert (top2[:, 1] - top2[:, 0]).min() > 1e-4, "a near-tie would make the expected accuracy fragile"
    return logits.argmax(1)


def _macro_f1(pred: list[int], gold: list[int]) -> float:
    """Written out by hand, independently of zoo's metrics module."""
    f1s = []
    for c in sorted(set(pred) | set(gold)):
        tp = sum(p == c and g == c for p, g in zip(pred, gold))
        fp = sum(p == c and g != c for p, g in zip(pred, gold))
        fn = sum(p != c and g == c for p, g in zip(pred, gold))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(f1s) / len(f1s)


@pytest.fixture(scope="module")
def text_sets(shared, tmp_path_factory):
    """The same 12 labelled sentences as JSONL (label names), CSV (class indices) and a `datasets` directory
    (a ClassLabel): 7 labels are the model's prediction, 5 another class."""
    _root, repos = shared
    tmp = tmp_path_factory.mktemp("text")
    (tmp / "model").mkdir()
    pred = [int(p) for p in _bert_predictions(repos[BERT], tmp / "model")]
    gold = pred[:7] + [(p + 1) % 3 for p in pred[7:]]
    names = ["negative", "neutral", "positive"]
    (tmp / "reviews.jsonl").write_text("".join(json.dumps({"text": s, "label": names[g]}) + "\n" for s, g in zip(SENTENCES, gold)))
    with open(tmp / "reviews.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["sentence", "label"])
        writer.writerows(zip(SENTENCES, gold))
    import datasets

    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=names)})
    datasets.DatasetDict({"test": datasets.Dataset.from_dict({"text": SENTENCES, "label": gold}, features=features)}) \
        .save_to_disk(str(tmp / "reviews-ds"))
    return tmp, {"accuracy": 7 / 12, "f1": _macro_f1(pred, gold)}


@pytest.mark.parametrize("layout", ["reviews.jsonl", "reviews.csv", "reviews-ds"])
def test_eval_text_classifier_accuracy_and_f1_known_by_construction(env, text_sets, capsys, layout):
    tmp, expected = text_sets
    code, out = run(capsys, "eval", BERT, "--format", "onnx", "--data", str(tmp / layout))
    assert code == 0, out
    assert out["task"] == "text-classification" and out["dataset"]["examples"] == 12
    assert out["source"]["metrics"] == pytest.approx(expected, abs=1e-12)
    assert out["formats"][0]["metrics"] == pytest.approx(expected, abs=1e-12) and out["formats"][0]["agreement"] == 1.0


# --- bad data sets: a clear error each --------------------------------------------------------------------
@pytest.mark.parametrize("write, code, needle", [
    (lambda d: (d / "x.png").write_bytes(b"not a png") and d, 2, "no class folders"),
    (lambda d: (d / "a.jsonl").write_text('{"text": "hi"}\n') and d / "a.jsonl", 2, "needs a text field"),
    (lambda d: (d / "a.jsonl").write_text("{nope\n") and d / "a.jsonl", 2, "line 1 is not JSON"),
    (lambda d: (d / "a.csv").write_text("text,label\nhello,not-a-class\n") and d / "a.csv", 2, "not classes of the model"),
    (lambda d: d / "missing", 3, "does not exist"),
    (lambda d: (d / "a.txt").write_text("x") and d / "a.txt", 2, "is not a data set zoo can read"),
])
def test_eval_bad_data_sets_say_what_to_do(env, capsys, tmp_path, write, code, needle):
    from zoo.cli import main as cli

    path = write(tmp_path)
    got = cli.main(["eval", BERT, "--format", "onnx", "--data", str(path)])
    err = capsys.readouterr().err
    assert got == code and needle in err, err


def test_eval_refuses_image_data_for_a_text_model(env, image_set, capsys):
    from zoo.cli import main as cli

    assert cli.main(["eval", BERT, "--format", "onnx", "--data", str(image_set)]) == 2
    assert "holds image examples" in capsys.readouterr().err


# --- metrics, on hand-made examples ----------------------------------------------------------------------
def test_metrics_on_hand_made_examples():
    from zoo.eval import metrics

    scores = np.array([[0.1, 0.9, 0.0, 0, 0, 0], [0.8, 0.1, 0.05, 0.04, 0.01, 0.0], [-1.0, 0, 0, 0, 0, 1.0]])
    assert metrics.topk_accuracy(scores, np.array([1, 1, 0]), 1) == pytest.approx(1 / 3)
    assert metrics.topk_accuracy(scores, np.array([1, 1, 0]), 5) == pytest.approx(2 / 3)  # row 3: class 0 is 6th
    assert metrics.macro_f1([0, 0, 1, 1], [0, 1, 1, 1]) == pytest.approx((2 / 3 + 0.8) / 2)
    assert metrics.exact_match(["The Eiffel Tower!", "paris"], [["eiffel tower"], "Rome"]) == 0.5
    assert metrics.word_error_rate(["the cat sat", "hello"], ["the cat sat down", "hello world"]) == pytest.approx(2 / 6)
    assert metrics.word_error_rate(["a b c"], ["a x c"]) == pytest.approx(1 / 3)
    assert metrics.drop("top1", -1.5) == 1.5 and metrics.drop("wer", 2.0) == 2.0


def test_limit_keeps_every_class_of_an_image_folder(tmp_path):
    from zoo.eval.data import load_data

    for cls, count in (("a", 3), ("b", 1), ("c", 2)):
        (tmp_path / cls).mkdir()
        for i in range(count):
            (tmp_path / cls / f"{i}.png").write_bytes(b"x")
    data = load_data(tmp_path, limit=4)
    assert [e.label for e in data.examples] == ["a", "b", "c", "a"] and data.total == 6
    with pytest.raises(errors.UsageError, match="at least 1"):
        load_data(tmp_path, limit=0)
