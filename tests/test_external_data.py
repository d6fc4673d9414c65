"""ONNX external data (issue 11, models over 2 GB): ``model.onnx`` + ``model.onnx.data``, forced on a tiny
decoder with ``--external-data-above 0`` (the code path a model over protobuf's 2 GiB takes by default),
pulled, hashed, copied by ``zoo pull -o``, served by the API, converted to every ONNX variant, and verified.
The model above 2 GB is ``test_a_decoder_over_2_gb`` (slow)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
from task_builders import decoder_repo, in_process_pull

REPO = "zoo-test/tiny-llama"
DATA = "model.onnx.data"


@pytest.fixture(scope="module")
def repos() -> dict[str, dict[str, bytes]]:
    return {REPO: decoder_repo("llama")}


@pytest.fixture
def pull(indexed, repos, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return in_process_pull(indexed.hub_cache, repos, capsys)


def _manifest(directory: Path) -> dict:
    return json.loads((directory / "zoo.json").read_text())


def _locations(path: Path) -> set[str]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {e.value for t in model.graph.initializer for e in t.external_data if e.key == "location"}


def _prefill(session, batch: int = 2) -> dict[str, np.ndarray]:
    feeds = {"input_ids": np.arange(batch * 5, dtype=np.int64).reshape(batch, 5) % 50,
             "attention_mask": np.ones((batch, 5), np.int64)}
    for i in session.get_inputs()[2:]:
        feeds[i.name] = np.zeros((batch, i.shape[1], 0, i.shape[3]), np.float32)
    return feeds


def test_external_data_is_pulled_hashed_copied_served_and_verified(pull, indexed, tmp_path, capsys):
    import onnxruntime as ort

    from zoo.cli import main as cli
    from zoo.options import Options

    out = pull(REPO, "--external-data-above", "0")
    art = Path(out["artifact_dir"])
    manifest = _manifest(art)
    assert out["verified"] and manifest["options"]["external_data_above"] == 0
    assert manifest["conversion"]["external_data"] is True
    files = {f["path"]: f for f in manifest["files"]}
    assert {"model.onnx", DATA} <= set(files) and manifest["primary"] == "model.onnx"
    assert files[DATA]["sha256"] == hashlib.sha256((art / DATA).read_bytes()).hexdigest()
    assert _locations(art / "model.onnx") == {DATA}
    import onnx

    graph_only = onnx.load(str(art / "model.onnx"), load_external_data=False)
    inline = [t.name for t in graph_only.graph.initializer if not t.external_data and len(t.raw_data) >= 1024]
    assert not inline  # every weight of 1 KiB or more is in the data file, which holds nothing else
    lengths = [int({e.key: e.value for e in t.external_data}["length"]) for t in graph_only.graph.initializer
               if t.external_data]
    assert files[DATA]["size"] >= sum(lengths) > 100_000
    gen = next(t for t in manifest["parity"]["tasks"] if t["check"] == "text-generation")
    assert gen["passed"] and gen["figures"]["identical"]
    assert Options(external_data_above=0).canonical()["external_data_above"] == 0  # in the cache key
    assert "external_data_above" not in Options().canonical()  # requests without it keep their keys
    reference = ort.InferenceSession(str(art / "model.onnx"), providers=["CPUExecutionProvider"])
    expected = reference.run(None, _prefill(reference))

    # zoo pull -o: both files, side by side; onnxruntime resolves the data file relative to the model
    dest = tmp_path / "copy"
    assert cli.main(["pull", REPO, "--external-data-above", "0", "-o", str(dest), "--json"]) == 0
    copied = Path(json.loads(capsys.readouterr().out.strip().splitlines()[-1])["path"])
    assert copied.parent == dest and (dest / DATA).read_bytes() == (art / DATA).read_bytes()
    session = ort.InferenceSession(str(copied), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, _prefill(session))[0], expected[0], atol=1e-5)

    # the API: the artifact is one tar holding both files (what a finishing job indexes)
    from serverproc import ZooServer

    from zoo import db
    from zoo.settings import Settings
    from zoo.storage.blobs import LocalStorage

    settings = Settings.from_env({**os.environ})
    sha, size = LocalStorage(settings, db.get_engine(settings.database_url)).index_archive(out["digest"])
    server = ZooServer(indexed.home, {"HF_HUB_OFFLINE": "1"}).start()
    try:
        with server.client(server.token("read")) as client:
            tar = client.get(f"/v1/artifacts/{sha}")
    finally:
        server.stop()
    assert tar.status_code == 200 and hashlib.sha256(tar.content).hexdigest() == sha and len(tar.content) == size
    served = tmp_path / "served"
    with tarfile.open(fileobj=io.BytesIO(tar.content)) as archive:
        archive.extractall(served, filter="data")
    (top,) = served.iterdir()
    assert (top / DATA).read_bytes() == (art / DATA).read_bytes()
    session = ort.InferenceSession(str(top / "model.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, _prefill(session))[0], expected[0], atol=1e-5)

    # every variant reads the external-data source and writes its own layout
    from zoo.converters import graph

    for fmt in ("onnx-fp16", "onnx-int8", "onnx-opt", "onnx-int4"):
        _variant_layouts(art / "model.onnx", tmp_path, graph.EDGES[("onnx", fmt)])


def _variant_layouts(src: Path, tmp_path: Path, step) -> None:
    """A variant edge on an external-data source: with the threshold at 0 its result keeps the layout (one data
    file, named model.onnx.data); at the default it is one file. Both run and give the same outputs."""
    import onnxruntime as ort

    from zoo.converters import graph

    fmt = step.target
    results = {}
    for threshold in (0, None):
        out_dir = tmp_path / f"{fmt}-{threshold}"
        out_dir.mkdir()
        path = step.run(src, out_dir, graph.EdgeContext(opset=18, task="text-generation", external_data_bytes=threshold))
        written = sorted(p.name for p in out_dir.iterdir())
        assert written == (["model.onnx", DATA] if threshold == 0 else ["model.onnx"]), written
        assert _locations(path) == ({DATA} if threshold == 0 else set())
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        results[threshold] = session.run(None, _prefill(session))[0]
    np.testing.assert_array_equal(results[0], results[None])


@pytest.mark.slow
def test_zoo_convert_of_an_external_data_file_keys_and_checks_its_data(pull, tmp_path):
    """`zoo convert model.onnx` reads the data file beside it: the data is hashed into the source's identity (a
    changed data file is a new conversion, not a cached answer), and the variant is verified against it."""
    import shutil

    from conftest import run_zoo

    art = Path(pull(REPO, "--external-data-above", "0")["artifact_dir"])
    src = tmp_path / "mine"
    src.mkdir()
    for name in ("model.onnx", DATA):
        shutil.copyfile(art / name, src / name)
    first = run_zoo("convert", str(src / "model.onnx"), "--to", "onnx-opt", "--json")
    assert first.returncode == 0, first.stderr[-3000:]
    out = json.loads(first.stdout.splitlines()[-1])
    manifest = _manifest(Path(out["artifact_dir"]))
    assert out["verified"] and {f["path"] for f in manifest["source_files"]} == {"model.onnx", DATA}
    assert next(t for t in manifest["parity"]["tasks"] if t["check"] == "text-generation")["passed"]
    data = bytearray((src / DATA).read_bytes())
    data[-64:] = bytes(64)  # the last weights zeroed: same model.onnx, other data
    (src / DATA).write_bytes(bytes(data))
    again = run_zoo("convert", str(src / "model.onnx"), "--to", "onnx-opt", "--json")
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout.splitlines()[-1])["cached"] is False


PEAK_RSS_PROBE = """
import resource, subprocess, sys
code = subprocess.run(sys.argv[1:]).returncode
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024, file=sys.stderr)
sys.exit(code)
"""


@pytest.mark.slow
def test_a_decoder_over_2_gb(indexed, tmp_path):
    """A 2.36 GB Llama (float32, seeded random weights) through a real `zoo pull`: exported with external data,
    verified by the generation check against transformers, in a conversion whose peak memory stays within a few
    copies of its weights (figures: bench/README.md)."""
    import subprocess
    import sys

    from task_builders import large_decoder_cache

    repo = "zoo-test/llama-2gb"
    weights = large_decoder_cache(indexed.hub_cache, repo)
    assert weights > 2**31
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", PEAK_RSS_PROBE, sys.executable, "-m", "zoo", "pull", repo, "--json"],
                          env=env, capture_output=True, text=True, timeout=3000, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    peak = int(proc.stderr.strip().splitlines()[-1])
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    art = Path(out["artifact_dir"])
    manifest = _manifest(art)
    files = {f["path"]: f["size"] for f in manifest["files"]}
    assert out["verified"] and manifest["conversion"]["external_data"] is True
    assert files[DATA] > 2**31 and files["model.onnx"] < 50_000_000 and _locations(art / "model.onnx") == {DATA}
    gen = next(t for t in manifest["parity"]["tasks"] if t["check"] == "text-generation")
    assert gen["passed"] and gen["figures"]["identical"] and gen["figures"]["reference"] == "generate()"
    assert gen["figures"]["reference_process"] == "forked child"  # computed during the export (parity/forked.py)
    assert peak < 4 * weights, f"peak RSS {peak / 1e9:.2f} GB for {weights / 1e9:.2f} GB of weights"
