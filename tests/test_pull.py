"""`zoo pull` end to end, through the real CLI: offline from a Hugging Face cache,
online through the hub-protocol server, and every bad input the issue names."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import TIMM_REPO, pull_json, run_zoo, source_outputs


def onnx_outputs(path: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    return ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, feeds)


# --- offline, from the cache -------------------------------------------------
def test_pull_offline_from_cache_matches_source_model(indexed, cached_repo, tiny_repos):
    cached_repo(TIMM_REPO)
    out = pull_json("test_resnet", "--format", "onnx", env={"HF_HUB_OFFLINE": "1"})
    assert out["model"] == TIMM_REPO and out["format"] == "onnx" and out["cached"] is False
    assert out["parity"]["passed"] is True and out["verified"] is True
    assert set(out) >= {"model", "revision", "format", "path", "sha256", "size", "cached", "parity"}
    path = Path(out["path"])
    import hashlib

    assert hashlib.sha256(path.read_bytes()).hexdigest() == out["sha256"] and path.stat().st_size == out["size"]
    # independent parity: zoo's file against the real timm model with the repo's weights, batch 3 (dynamic axis)
    x = np.random.default_rng(7).standard_normal((3, 3, 160, 160)).astype(np.float32)
    ref = source_outputs(tiny_repos[TIMM_REPO], "test_resnet", x)
    (got,) = onnx_outputs(str(path), {"input": x})
    assert got.shape == ref.shape == (3, 1000)
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)


def test_onnx_metadata_carries_source_preprocessing_labels_and_parity(indexed, cached_repo):
    import onnx

    cached_repo(TIMM_REPO)
    out = pull_json("test_resnet", env={"HF_HUB_OFFLINE": "1"})
    props = {p.key: p.value for p in onnx.load(out["path"]).metadata_props}
    assert props["zoo.source"] == TIMM_REPO and props["zoo.source_revision"] == out["revision"]
    pre = json.loads(props["zoo.preprocessing"])
    assert pre["input_size"] == [3, 160, 160] and pre["interpolation"] == "bilinear" and pre["mean"] == [0.5, 0.5, 0.5]
    assert len(json.loads(props["zoo.labels"])) == 1000  # ImageNet-1k labels from timm's own tables
    parity = json.loads(props["zoo.parity"])
    assert parity["passed"] is True and parity["max_abs_diff"] == pytest.approx(out["parity"]["max_abs_diff"])
    assert props["zoo.version"] and props["zoo.exporter"] in ("dynamo", "torchscript")


def test_second_pull_is_cached_and_imports_no_framework(indexed, cached_repo):
    cached_repo(TIMM_REPO)
    first = pull_json("test_resnet", env={"HF_HUB_OFFLINE": "1"})
    proc = run_zoo("pull", "test_resnet", "--json", env={"HF_HUB_OFFLINE": "1", "PYTHONPROFILEIMPORTTIME": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    second = json.loads(proc.stdout.strip().splitlines()[-1])
    assert second["cached"] is True and second["sha256"] == first["sha256"] and second["path"] == first["path"]
    imported = {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert imported, "import-time profile missing"
    assert not imported & {"torch", "timm", "onnxruntime", "transformers", "onnx", "sqlalchemy"}


def test_output_copy_and_cache_commands(indexed, cached_repo, tmp_path):
    cached_repo(TIMM_REPO)
    dest = tmp_path / "out" / "resnet.onnx"
    out = pull_json("test_resnet", "-o", str(dest), env={"HF_HUB_OFFLINE": "1"})
    assert Path(out["path"]) == dest and dest.is_file()
    ls = json.loads(run_zoo("cache", "ls", "--json").stdout)
    assert [a["sha256"] for a in ls["artifacts"]] == [out["sha256"]]
    ok = run_zoo("cache", "verify", "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["corrupt"] == 0
    # a bit flip in the store is caught by verify, and the next pull re-converts instead of serving it
    stored = Path(ls["artifacts"][0]["path"])
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x01
    stored.write_bytes(bytes(data))
    bad = run_zoo("cache", "verify", "--json")
    assert bad.returncode == 7 and json.loads(bad.stdout.splitlines()[0])["corrupt"] == 1
    rm = run_zoo("cache", "rm", ls["artifacts"][0]["digest"][:12])
    assert rm.returncode == 0 and not stored.exists()
    again = pull_json("test_resnet", env={"HF_HUB_OFFLINE": "1"})
    assert again["cached"] is False and again["parity"]["passed"]


def test_info_and_list_answer_offline(indexed, cached_repo):
    cached_repo(TIMM_REPO)
    pull_json("test_resnet", env={"HF_HUB_OFFLINE": "1"})
    info = json.loads(run_zoo("info", "test_resnet", "--json", env={"HF_HUB_OFFLINE": "1"}).stdout)
    assert info["id"] == TIMM_REPO and info["preprocessing"]["crop_pct"] == 0.95
    assert info["revisions"][0]["files"][0]["sha256"] and info["artifacts"][0]["parity"]["passed"]
    text = run_zoo("info", "test_resnet", env={"HF_HUB_OFFLINE": "1"}).stdout
    assert "parity passed" in text and "logits" in text
    listed = json.loads(run_zoo("list", "test_res", "--json", env={"HF_HUB_OFFLINE": "1"}).stdout)
    assert TIMM_REPO in {m["id"] for m in listed["models"]}
    hf = json.loads(run_zoo("list", "--source", "hf", "--json").stdout)
    assert TIMM_REPO in {m["id"] for m in hf["models"]}  # from the local Hugging Face cache


# --- online, through the hub server --------------------------------------------
@pytest.mark.parametrize(
    "name, repo, outputs",
    [
        ("test_resnet", TIMM_REPO, {"logits"}),
        ("hf:zoo-test/tiny-bert", "zoo-test/tiny-bert", {"last_hidden_state", "pooler_output"}),
        # the same online path for two more families: the default run pulls tiny-bert-sst through the hub server in
        # test_text_artifact_has_dynamic_axes_and_tokenizer, and ViT classifiers in test_jax2tf / test_onnx_torch
        pytest.param("zoo-test/tiny-bert-sst", "zoo-test/tiny-bert-sst", {"logits"}, marks=pytest.mark.slow),
        pytest.param("zoo-test/tiny-vit-classifier", "zoo-test/tiny-vit-classifier", {"logits"},
                     marks=pytest.mark.slow),
    ],
)
def test_pull_online_via_hf_endpoint(indexed, hub_endpoint, hub, name, repo, outputs):
    out = pull_json(name)
    assert out["model"] == repo and out["parity"]["passed"] and set(out["parity"]["outputs"]) == outputs
    assert out["revision"] == hub.repos[repo].commit if hasattr(hub, "repos") else len(out["revision"]) == 40
    downloads = [p for m, p in hub.requests if m == "GET" and "/resolve/" in p]
    assert any("model.safetensors" in p for p in downloads)
    assert not any(p.endswith(".py") or "pytorch_model.bin" in p for p in downloads)  # no code, no pickles
    # the same cache is reused: a second pull downloads nothing
    hub.clear()
    again = pull_json(name)
    assert again["cached"] is True
    assert not [p for m, p in hub.requests if "/resolve/" in p]


def test_text_artifact_has_dynamic_axes_and_tokenizer(indexed, hub_endpoint, tiny_repos, tmp_path):
    out = pull_json("zoo-test/tiny-bert-sst")
    source = tmp_path / "source"
    source.mkdir()
    for name, data in tiny_repos["zoo-test/tiny-bert-sst"].items():
        (source / name).write_bytes(data)
    art = Path(out["artifact_dir"])
    assert {"tokenizer.json", "config.json", "model.onnx", "zoo.json"} <= {p.name for p in art.iterdir()}
    import torch
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(str(art))
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(source), attn_implementation="eager").eval()
    for sentences in (["a short one"], ["two sentences here", "and a much longer third sentence with more words in it", "x"]):
        enc = tok(sentences, padding=True, return_tensors="np")
        feeds = {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}
        (logits,) = onnx_outputs(out["path"], feeds)
        with torch.no_grad():
            ref = model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).logits.numpy()
        np.testing.assert_allclose(logits, ref, atol=1e-4, rtol=1e-4)


def test_gated_repo_needs_token(indexed, hub_endpoint, hub):
    proc = run_zoo("pull", "zoo-test/gated-bert", "--json")
    assert proc.returncode == 4 and "HF_TOKEN" in proc.stderr
    out = pull_json("zoo-test/gated-bert", env={"HF_TOKEN": hub.token})
    assert out["parity"]["passed"]


def test_pickle_only_repo_falls_back_weights_only_and_says_so(indexed, hub_endpoint):
    proc = run_zoo("pull", "zoo-test/pickle-only-resnet", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "weights_only=True" in proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1])["parity"]["passed"]


# --- bad input ----------------------------------------------------------------
@pytest.mark.parametrize(
    "args, code, needle",
    [
        (["resnet5O"], 3, "did you mean"),
        (["resnet50.a1"], 2, "resnet50.a1h_in1k"),  # ambiguous: lists the choices
        (["../etc/passwd"], 2, "invalid model name"),
        (["a/b/c"], 2, "invalid model name"),
        (["resnet50@main"], 2, "revision"),
        (["test_resnet", "--format", "caffe"], 5, "onnx-int8"),  # names the formats zoo knows
        (["test_resnet", "--opset", "3"], 2, "opset"),
    ],
)
def test_bad_names_and_options(indexed, args, code, needle):
    proc = run_zoo("pull", *args, env={"HF_HUB_OFFLINE": "1"})
    assert proc.returncode == code, proc.stderr
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_name_json_lists_candidates(indexed):
    proc = run_zoo("pull", "resnet5O", "--json", env={"HF_HUB_OFFLINE": "1"})
    err = json.loads(proc.stdout)
    assert err["exit_code"] == 3 and "resnet50" in err["candidates"]


def test_offline_and_not_cached_names_what_to_set(indexed):
    proc = run_zoo("pull", "test_resnet", env={"HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 4
    assert "HF_ENDPOINT" in proc.stderr and TIMM_REPO in proc.stderr


def test_unknown_repo_online_is_not_found(indexed, hub_endpoint):
    proc = run_zoo("pull", "zoo-test/does-not-exist")
    assert proc.returncode == 3 and "does-not-exist" in proc.stderr


def test_unreachable_hub_is_a_network_error(indexed):
    proc = run_zoo("pull", "zoo-test/anything", env={"HF_ENDPOINT": "http://127.0.0.1:9"})
    assert proc.returncode == 4 and "HF_ENDPOINT" in proc.stderr


def _mutated_cache(zoo_env, tiny_repos, repo_id, mutate) -> None:
    from builders import write_hf_cache

    files = dict(tiny_repos[repo_id])
    mutate(files)
    write_hf_cache(zoo_env.hub_cache, repo_id, files)


def test_corrupt_weights_are_refused_and_nothing_published(indexed, tiny_repos):
    def corrupt(files):
        files["model.safetensors"] = files["model.safetensors"][:100] + b"\x00garbage" * 10

    _mutated_cache(indexed, tiny_repos, TIMM_REPO, corrupt)
    proc = run_zoo("pull", "test_resnet", env={"HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 7 and "model.safetensors" in proc.stderr, proc.stderr
    assert not (indexed.home / "artifacts").exists() or not any((indexed.home / "artifacts").iterdir())
    assert not (indexed.home / "tmp").exists() or not any((indexed.home / "tmp").iterdir())


def test_weights_of_another_model_are_refused(indexed, tiny_repos):
    def swap(files):
        files["model.safetensors"] = tiny_repos["timm/test_vit.r160_in1k"]["model.safetensors"]

    _mutated_cache(indexed, tiny_repos, TIMM_REPO, swap)
    proc = run_zoo("pull", "test_resnet", env={"HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 7 and "do not fit" in proc.stderr


def test_missing_config_json_is_a_clear_error(indexed, tiny_repos):
    _mutated_cache(indexed, tiny_repos, "zoo-test/tiny-bert", lambda files: files.pop("config.json"))
    proc = run_zoo("pull", "zoo-test/tiny-bert", env={"HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 7 and "config.json" in proc.stderr


def test_remote_code_repo_is_refused(indexed, tiny_repos):
    def add_auto_map(files):
        cfg = json.loads(files["config.json"])
        cfg["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}
        files["config.json"] = json.dumps(cfg).encode()
        files["modeling_evil.py"] = b"open('/tmp/zoo-canary', 'w')\n"

    _mutated_cache(indexed, tiny_repos, "zoo-test/tiny-bert", add_auto_map)
    proc = run_zoo("pull", "zoo-test/tiny-bert", env={"HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 7 and "remote code" in proc.stderr
    assert not Path("/tmp/zoo-canary").exists()


# --- a deliberately broken conversion must fail parity -------------------------
@pytest.mark.parametrize("exporter", ["auto", "torchscript"])  # auto ends on dynamo: both graphs' names are read
def test_broken_conversion_fails_parity_and_is_quarantined(indexed, cached_repo, monkeypatch, capsys, exporter):
    import onnx
    from onnx import numpy_helper

    import zoo.converters.edges.torch_onnx as torch_onnx
    from zoo.cli import main as cli

    real_export = torch_onnx.export_onnx
    sabotaged_nodes = []

    def sabotaged_export(tm, example, out_path, **kwargs):
        info = real_export(tm, example, out_path, **kwargs)
        model = onnx.load(str(out_path))
        init = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))  # the largest weight
        arr = numpy_helper.to_array(init).copy()
        arr *= 1.01  # one tensor 1% off: the kind of error a wrong scale or eps makes
        init.CopyFrom(numpy_helper.from_array(arr, init.name))
        sabotaged_nodes.extend(n.name for n in model.graph.node if init.name in n.input)
        onnx.save(model, str(out_path))
        return info

    monkeypatch.setattr(torch_onnx, "export_onnx", sabotaged_export)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cached_repo(TIMM_REPO)
    code = cli.main(["pull", "test_resnet", "--json", "--exporter", exporter])
    captured = capsys.readouterr()
    assert code == 6, captured.err + captured.out[-1500:]
    err = json.loads(captured.out.strip().splitlines()[-1])
    assert err["error"] == "parity_failed" and err["report"]["passed"] is False
    assert "worst outputs" in captured.err and "logits" in captured.err
    # the report points at the layer that was broken: the node consuming the scaled weight
    assert err["divergence"]["onnx_node"] in sabotaged_nodes and "first diverging layer" in captured.err
    quarantined = Path(err["quarantined"])
    assert quarantined.parent.name == "quarantine" and (quarantined / "model.onnx").is_file()
    assert not (indexed.home / "artifacts").exists() or not any((indexed.home / "artifacts").iterdir())
    ls = json.loads(run_zoo("cache", "ls", "--json").stdout)
    assert [a["verified"] for a in ls["artifacts"]] == [False]


# --- local import ----------------------------------------------------------------
def test_import_directory_then_pull(indexed, tiny_repos, tmp_path):
    src = tmp_path / "my-bert"
    src.mkdir()
    for name, data in tiny_repos["zoo-test/tiny-bert-sst"].items():
        (src / name).write_bytes(data)
    proc = run_zoo("import", str(src), "--name", "my-bert", "--json")
    assert proc.returncode == 0, proc.stderr
    rec = json.loads(proc.stdout)
    assert rec["id"] == "local/my-bert" and rec["task"] == "text-classification"
    out = pull_json("local:my-bert", env={"HF_HUB_OFFLINE": "1"})
    assert out["model"] == "local/my-bert" and out["parity"]["passed"]
    assert json.loads(run_zoo("list", "--source", "local", "--json").stdout)["models"][0]["id"] == "local/my-bert"


def test_import_refuses_symlinks_and_missing_config(indexed, tiny_repos, tmp_path):
    src = tmp_path / "m"
    src.mkdir()
    (src / "model.safetensors").write_bytes(tiny_repos[TIMM_REPO]["model.safetensors"])
    proc = run_zoo("import", str(src), "--name", "m")  # weights without an architecture: say how to name it
    assert proc.returncode == 2 and "config.json" in proc.stderr and "--arch" in proc.stderr, proc.stderr
    (src / "config.json").symlink_to("/etc/hostname")
    proc = run_zoo("import", str(src), "--name", "m")
    assert proc.returncode == 7 and "symbolic link" in proc.stderr


def test_online_download_then_offline_reuse_of_the_same_cache(indexed, hub_endpoint, hub, monkeypatch, tmp_path):
    first = pull_json("zoo-test/tiny-bert-sst")
    ref = indexed.hub_cache / "models--zoo-test--tiny-bert-sst" / "refs" / "main"
    assert ref.read_text() == first["revision"]  # written as huggingface_hub would, for offline use
    hub.clear()
    offline = pull_json("zoo-test/tiny-bert-sst", env={"HF_HUB_OFFLINE": "1"})
    assert offline["cached"] is True and offline["sha256"] == first["sha256"] and hub.requests == []
    # a fresh ZOO_HOME answers `zoo info` from the Hugging Face cache alone
    info = run_zoo("info", "zoo-test/tiny-bert-sst", "--json",
                   env={"HF_HUB_OFFLINE": "1", "ZOO_HOME": str(tmp_path / "fresh")})
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["task"] == "text-classification"


def test_weights_timm_already_downloaded_are_not_downloaded_again(indexed, hub_endpoint, hub):
    import subprocess

    # timm itself downloads the model through the hub (its own code path, in its own process)
    script = "import timm; timm.create_model('test_resnet.r160_in1k', pretrained=True)"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert any("model.safetensors" in p for m, p in hub.requests if m == "GET")
    hub.clear()
    out = pull_json("test_resnet")
    assert out["parity"]["passed"]
    fetched = [p for m, p in hub.requests if m == "GET" and "/resolve/" in p and "model.safetensors" in p]
    assert fetched == []  # zoo reused timm's download


@pytest.mark.parametrize(
    "opset, exporter, used",
    [
        (20, "dynamo", "dynamo"),
        (14, "torchscript", "torchscript"),
        # dynamo targets opset >= 18: for 17, zoo converts down or falls back, and says which
        (17, "auto", None),
    ],
)
def test_opset_and_exporter_options(indexed, cached_repo, opset, exporter, used):
    import onnx

    cached_repo(TIMM_REPO)
    proc = run_zoo("pull", "test_resnet", "--opset", str(opset), "--exporter", exporter, "--json", env={"HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.splitlines()[-1])
    model = onnx.load(out["path"])
    assert {o.domain: o.version for o in model.opset_import}[""] == opset
    assert out["parity"]["passed"]
    if used:
        assert out["conversion"]["exporter"] == used
    if out["conversion"]["exporter"] == "dynamo" and exporter == "auto":  # auto tries TorchScript first
        assert "exporting with dynamo" in proc.stderr and out["conversion"]["fallback_reason"]
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims[0] == "batch" and dims[1:] == [3, 160, 160]


def test_torchscript_export_of_a_text_model_checks_it_in_eval_mode(indexed, cached_repo):
    """torch.onnx's TorchScript exporter restores the top module's training flag recursively: the
    transformers wrapper must be in eval mode too, or parity runs the source with dropout on."""
    cached_repo("zoo-test/tiny-bert-sst")
    out = pull_json("zoo-test/tiny-bert-sst", "--exporter", "torchscript", env={"HF_HUB_OFFLINE": "1"})
    assert out["conversion"]["exporter"] == "torchscript" and out["parity"]["passed"]

def test_progress_on_a_terminal_and_when_piped(indexed, cached_repo):
    import os
    import pty
    import subprocess

    cached_repo(TIMM_REPO)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    piped = subprocess.run([sys.executable, "-m", "zoo", "pull", "test_resnet"], env=env, capture_output=True, text=True)
    assert piped.returncode == 0 and "zoo: export" in piped.stderr  # stage lines when piped too (issue 13)
    run_zoo("cache", "rm", "timm/test_resnet.r160_in1k")
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "zoo", "pull", "test_resnet"], env=env,
                            stdout=subprocess.PIPE, stderr=follower, stdin=subprocess.DEVNULL)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=300)
    os.close(leader)
    shown = b"".join(chunks).decode()
    assert proc.returncode == 0
    for stage in ("resolve", "fetch", "load", "export", "parity", "publish"):
        assert f"zoo: {stage}" in shown, shown


def test_a_moved_branch_is_converted_again_and_old_artifact_kept(indexed, hub_endpoint, hub, tiny_repos):
    from builders import timm_repo
    from hubserver import Repo

    hub.add(Repo("zoo-test/moving-resnet", tiny_repos[TIMM_REPO]))
    first = pull_json("zoo-test/moving-resnet")
    cached = pull_json("zoo-test/moving-resnet")
    assert cached["cached"] is True and cached["revision"] == first["revision"]
    hub.add(Repo("zoo-test/moving-resnet", timm_repo("test_resnet.r160_in1k", seed=1)))  # main moves
    moved = pull_json("zoo-test/moving-resnet")
    assert moved["cached"] is False and moved["revision"] != first["revision"]
    assert moved["sha256"] != first["sha256"] and Path(first["path"]).is_file()
    pinned = pull_json(f"zoo-test/moving-resnet@{first['revision']}")  # the old commit is still served
    assert pinned["cached"] is True and pinned["sha256"] == first["sha256"]


def test_a_faithful_export_shows_no_divergence(indexed, cached_repo, tiny_repos):
    from zoo.converters.edges.torch_onnx import export_onnx
    from zoo.converters.loaders.torch_models import build_model
    from zoo.converters.parity.divergence import locate_divergence
    from zoo.converters.parity.runners import torch_inputs
    from zoo.registry.index import Registry
    from zoo.registry.names import parse_name
    from zoo.settings import get_settings

    snapshot = cached_repo(TIMM_REPO)
    record = Registry(get_settings()).resolve(parse_name("test_resnet"))
    tm = build_model(record, snapshot, ["model.safetensors"], "safetensors", lambda _m: None)
    feeds = {"input": np.random.default_rng(0).standard_normal((2, 3, 160, 160)).astype(np.float32)}
    path = snapshot.parent.parent.parent / "check.onnx"
    export_onnx(tm, torch_inputs(feeds, ["input"]), path, opset=18)
    assert locate_divergence(tm, path, feeds) is None


def test_fast_path_survives_the_same_bytes_published_under_another_key(indexed, cached_repo):
    """Content-addressed artifacts keep the first publication's zoo.json; a later cache key
    (say, after upgrading a library that changed no output) must still take the fast path."""
    cached_repo(TIMM_REPO)
    first = pull_json("test_resnet", env={"HF_HUB_OFFLINE": "1"})
    manifest_path = Path(first["artifact_dir"]) / "zoo.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["key"] = "0" * 64  # as if an earlier key had published these bytes first
    manifest_path.write_text(json.dumps(manifest))
    assert run_zoo("cache", "verify").returncode == 0  # zoo.json is not part of the content digest
    proc = run_zoo("pull", "test_resnet", "--json", env={"HF_HUB_OFFLINE": "1", "PYTHONPROFILEIMPORTTIME": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    again = json.loads(proc.stdout.strip().splitlines()[-1])
    assert again["cached"] and again["sha256"] == first["sha256"]
    imported = {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "sqlalchemy" not in imported  # answered by the memo, not the registry database


def test_auto_exporter_falls_back_to_dynamo_when_the_torchscript_export_fails_parity(indexed, cached_repo, monkeypatch):
    """A TorchScript trace can record what the eager model does not do (a baked-in shape, a traced-only
    branch): parity catches it, and --exporter auto exports again with dynamo. The model here behaves
    differently under torch.jit tracing, which is exactly what the TorchScript exporter runs."""
    import torch

    from zoo import pipeline
    from zoo.converters.loaders import torch_models as loading

    class TracesWrong(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.inner(x)
            return out + 1 if torch.jit.is_tracing() else out  # torch.export does not trace with torch.jit

    build = loading.build_timm

    def build_wrapped(*args, **kwargs):
        tm = build(*args, **kwargs)
        tm.module = TracesWrong(tm.module).eval()
        return tm

    monkeypatch.setattr(loading, "build_timm", build_wrapped)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cached_repo(TIMM_REPO)
    result = pipeline.pull("test_resnet")
    assert result.verified and result.parity["passed"]
    assert result.conversion["exporter"] == "dynamo"
    assert result.conversion["fallback_reason"].startswith("torchscript: failed parity")
    assert any("exporting with dynamo" in n for n in result.notes)
