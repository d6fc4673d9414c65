"""Hostile model files through the real paths: `zoo import` (directories and
archives), `zoo convert`, and `zoo pull` from the test hub. Each must be refused
with a clear error, run nothing (the canary never appears), and leave no
artifact, no import and no staging behind. Control tests prove the payloads are
live and that genuine files still pass."""

from __future__ import annotations

import ast
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import hostile
import pytest
from conftest import TIMM_REPO, run_zoo
from hubserver import Repo

CASES = hostile.corpus()


@pytest.fixture(scope="session")
def base_repo(tiny_repos) -> dict[str, bytes]:
    return tiny_repos[TIMM_REPO]


def _feed(case: hostile.Case, target: hostile.Target, request) -> subprocess.CompletedProcess:
    if case.route == "pull":
        hub = request.getfixturevalue("hub")
        request.getfixturevalue("hub_endpoint")
        info = {"siblings": [{"rfilename": n} for n in target.siblings]} if target.siblings else {}
        repo_id = f"zoo-hostile/{case.id}"
        hub.add(Repo(repo_id, target.repo_files, info=info))
        return run_zoo("pull", repo_id, "--json", env=case.env)
    if case.route in ("import", "archive"):
        return run_zoo("import", str(target.path), "--name", "victim", "--json", env=case.env)
    if case.route == "convert":
        return run_zoo("convert", str(target.path), "--to", "onnx-fp16" if target.path.suffix == ".onnx" else "onnx",
                       "--json", env=case.env)
    if case.route == "parity":
        return run_zoo("parity", str(target.path), str(target.path), "--json", env=case.env)
    raise AssertionError(case.route)


def _local_models(home: Path) -> list[str]:
    db = home / "registry.db"
    if not db.is_file():
        return []
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute("SELECT id FROM models WHERE source = 'local'")]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_file_is_refused(case, tmp_path, zoo_env, base_repo, request):
    canary = tmp_path / "canary"
    work = tmp_path / "work"
    work.mkdir()
    target = case.build(work, canary, base_repo)
    assert not canary.exists(), "the generator itself ran the payload"
    proc = _feed(case, target, request)
    executed = canary.exists() or any(tmp_path.glob("canary.*"))  # a dataset cache writes canary.index
    hostile.OUTCOMES.append({"case": case.id, "family": case.family, "route": case.route,
                             "refused": proc.returncode != 0, "executed": executed, "exit_code": proc.returncode})
    assert not executed, f"{case.id}: the payload ran"
    assert proc.returncode == case.code, proc.stderr[-3000:]
    err = json.loads(proc.stdout.strip().splitlines()[-1])
    assert err["exit_code"] == case.code and case.needle in err["message"], err
    assert "zoo: error:" in proc.stderr and case.needle in proc.stderr
    home = zoo_env.home
    for store in ("artifacts", "quarantine", "local/victim"):
        assert not (home / store).exists() or not any((home / store).iterdir()), f"{store} was written"
    assert _local_models(home) == []
    assert not (home / "tmp").exists() or not any((home / "tmp").iterdir()), "staging left behind"
    assert not [p for p in tmp_path.rglob("escaped.txt")], "an archive member escaped"


def test_corpus_is_large_and_varied():
    families = {c.family for c in CASES}
    assert len(CASES) >= 30 and len({c.id for c in CASES}) == len(CASES)
    assert families >= {"pickle", "torchscript", "safetensors", "keras", "onnx", "archive", "hub-names", "remote-code", "env"}
    assert {c.route for c in CASES} == {"import", "archive", "convert", "parity", "pull"}


def _remote_code_problems(source: str) -> list[str]:
    """Every place ``source`` gives ``trust_remote_code`` anything but the literal False: a keyword
    argument (``f(trust_remote_code=flag)``), a dict key (``**{"trust_remote_code": x}``), a subscript
    assignment (``kwargs["trust_remote_code"] = x``), or the name as a string used any other way
    (``setattr``, ``getattr``...), whose value cannot be read from the code."""
    def literal_false(value: ast.expr) -> bool:
        return isinstance(value, ast.Constant) and value.value is False

    problems, checked = [], set()
    tree = ast.parse(source)
    for node in ast.walk(tree):
        pairs = []
        if isinstance(node, ast.keyword) and node.arg == "trust_remote_code":
            pairs = [(node, node.value)]
        elif isinstance(node, ast.Dict):
            pairs = [(k, v) for k, v in zip(node.keys, node.values)
                     if isinstance(k, ast.Constant) and k.value == "trust_remote_code"]
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            pairs = [(t.slice, node.value) for t in targets if isinstance(t, ast.Subscript)
                     and isinstance(t.slice, ast.Constant) and t.slice.value == "trust_remote_code"]
        for key, value in pairs:
            checked.add(id(key))
            if not literal_false(value):
                problems.append(f"line {key.lineno}: trust_remote_code={ast.unparse(value)}")
    problems += [f"line {n.lineno}: 'trust_remote_code' used where its value cannot be checked"
                 for n in ast.walk(tree) if isinstance(n, ast.Constant) and n.value == "trust_remote_code"
                 and id(n) not in checked]
    return problems


@pytest.mark.parametrize("snippet, bad", [
    ("AutoModel.from_pretrained(p, trust_remote_code=False)", False),
    ("AutoModel.from_pretrained(p, trust_remote_code=flag)", True),
    ("AutoModel.from_pretrained(p, trust_remote_code=True)", True),
    ("AutoModel.from_pretrained(p, trust_remote_code=1)", True),
    ("AutoModel.from_pretrained(p, **{'trust_remote_code': flag})", True),
    ("AutoModel.from_pretrained(p, **dict(trust_remote_code=not strict))", True),
    ("kwargs['trust_remote_code'] = flag", True),
    ("kwargs = {'trust_remote_code': False}", False),
    ("setattr(options, 'trust_remote_code', flag)", True),
])
def test_the_remote_code_check_sees_every_spelling(snippet, bad):
    assert bool(_remote_code_problems(snippet)) is bad


def test_no_code_path_trusts_remote_code():
    """Every ``trust_remote_code`` zoo passes is the literal False (read from the syntax tree, so a
    variable, an expression or a dict entry cannot slip through)."""
    root = Path(__file__).resolve().parents[1]
    sources = [p for d in ("zoo", "registry", "converters", "api", "scripts", "bench") for p in (root / d).rglob("*.py")]
    problems = {str(p.relative_to(root)): found for p in sources if (found := _remote_code_problems(p.read_text()))}
    assert len(sources) > 50 and problems == {}
    uses = sum(p.read_text().count("trust_remote_code=False") for p in sources)
    assert uses >= 2  # the transformers loaders pass it, explicitly


# --- controls: the payloads are live, and genuine files still pass ------------------------------
LOADERS = {
    "pickle.loads": "import pickle, sys; pickle.loads(open(sys.argv[1], 'rb').read())",
    "torch.load(weights_only=False)": "import sys, torch; torch.load(sys.argv[1], weights_only=False)",
}


@pytest.mark.parametrize("case_id, loader", [
    ("pickle-plain-bin", "pickle.loads"),
    ("pickle-protocol5-pth", "pickle.loads"),
    ("pickle-legacy-torch-bin", "torch.load(weights_only=False)"),
    ("pickle-zip-pt", "torch.load(weights_only=False)"),
    ("pickle-zip-pth-os-system", "torch.load(weights_only=False)"),
    ("pickle-ckpt-eval", "torch.load(weights_only=False)"),
])
def test_pickle_payloads_are_live(case_id, loader, tmp_path, base_repo):
    """Unsafe loading of the same bytes does create the canary: the refusals above are real."""
    case = next(c for c in CASES if c.id == case_id)
    canary = tmp_path / "canary"
    target = case.build(tmp_path, canary, base_repo)
    weights = next(p for p in target.path.iterdir() if p.name != "config.json")
    subprocess.run([sys.executable, "-c", LOADERS[loader], str(weights)], capture_output=True, timeout=120)
    assert canary.exists()


def _op_string(text: str) -> bytes:
    data = text.encode()
    return b"\x8c" + bytes([len(data)]) + data  # SHORT_BINUNICODE


def _computed_global_pickle(command: str) -> bytes:
    """os.system(command), with "os" and "system" computed at load time by an allowed global
    (_codecs.encode(..., "rot13")): no string in the file names them."""
    s, enc = _op_string, _op_string("rot13")
    encode = s("_codecs") + s("encode") + b"\x93\x94"  # STACK_GLOBAL, MEMOIZE (memo 0)
    return (b"\x80\x04" + encode + s("bf") + enc + b"\x86R"  # "os" = encode("bf", "rot13")
            + b"h\x00" + s("flfgrz") + enc + b"\x86R"  # BINGET 0; "system" = encode("flfgrz", "rot13")
            + b"\x93" + s(command) + b"\x85R.")  # STACK_GLOBAL; (command,); REDUCE; STOP


def _memo_global_pickle(command: str, decoy: bool) -> bytes:
    """os.system(command) with module and name fetched from the memo (BINGET), not pushed beside
    STACK_GLOBAL; with ``decoy`` the memo slots first hold an allowed global's names, then are overwritten."""
    s = _op_string
    first = s("collections") + b"q\x000" + s("OrderedDict") + b"q\x010" if decoy else b""  # BINPUT n; POP
    return (b"\x80\x04" + first + s("os") + b"q\x000" + s("system") + b"q\x010"
            + b"h\x00h\x01\x93" + s(command) + b"\x85R.")  # BINGET 0; BINGET 1; STACK_GLOBAL; call


@pytest.mark.parametrize("build, needle", [
    (_computed_global_pickle, "computed at load time"),
    (lambda c: _memo_global_pickle(c, decoy=False), "os.system"),
    (lambda c: _memo_global_pickle(c, decoy=True), "os.system"),
], ids=["computed-names", "memo-names", "memo-overwritten"])
def test_stack_global_with_names_from_memo_or_computed_is_refused(tmp_path, build, needle):
    """The opcode walker resolves STACK_GLOBAL's operands through the memo, and refuses one whose
    module or name it cannot know without running the pickle. Each payload is live (plain
    pickle.loads runs it) and names no forbidden global as adjacent strings."""
    from zoo import errors
    from zoo.safety import check_weights_file

    canary = tmp_path / "canary"
    data = build(f"touch {canary}")
    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(data)
    with pytest.raises(errors.UnsafeModelError, match=needle):
        check_weights_file(path)
    assert not canary.exists()
    subprocess.run([sys.executable, "-c", LOADERS["pickle.loads"], str(path)], capture_output=True, timeout=60)
    assert canary.exists()  # the payload is live: only the static check stood in its way


def test_keras_lambda_payload_is_live_and_safe_mode_refuses(tmp_path):
    canary = tmp_path / "canary"
    path = hostile.keras_lambda_model(canary, tmp_path / "model.keras")
    from zoo import errors
    from zoo.converters.loaders.keras_models import import_keras, load_keras_file

    keras = import_keras()
    with pytest.raises(ValueError):  # keras' own safe mode, without zoo's static check
        keras.saving.load_model(str(path), safe_mode=True)
    with pytest.raises(errors.UnsafeModelError, match="Lambda"):
        load_keras_file(path)
    assert not canary.exists()
    script = "import sys, keras; keras.config.enable_unsafe_deserialization(); keras.saving.load_model(sys.argv[1], safe_mode=False)"
    subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, timeout=300)
    assert canary.exists()


def test_genuine_keras_file_loads_in_safe_mode(tmp_path):
    from zoo.converters.loaders.keras_models import import_keras, load_keras_file

    keras = import_keras()
    path = tmp_path / "ok.keras"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]).save(str(path))
    assert load_keras_file(path).output_shape == (None, 3)


def test_genuine_archives_import_and_pickle_checkpoint_pulls(indexed, base_repo, tmp_path):
    """The extractor and the pickle scanner refuse only what is hostile: a clean tar.gz and
    zip import, and a torch.save state dict named .pth converts with parity."""
    import torch
    from hostile import _tar, _zip
    from safetensors.torch import load as load_safetensors

    for i, archive in enumerate((_tar(tmp_path, base_repo, [], "w:gz"), _zip(tmp_path, base_repo, []))):
        proc = run_zoo("import", str(archive), "--name", f"ok{i}", "--json")
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert json.loads(proc.stdout)["id"] == f"local/ok{i}"
    src = tmp_path / "pth"
    src.mkdir()
    (src / "config.json").write_bytes(base_repo["config.json"])
    torch.save(load_safetensors(base_repo["model.safetensors"]), src / "model.pth")
    assert run_zoo("import", str(src), "--name", "pth").returncode == 0
    proc = run_zoo("pull", "local:pth", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "weights_only=True" in proc.stderr and json.loads(proc.stdout.splitlines()[-1])["parity"]["passed"]
    assert not list((indexed.home / "tmp").iterdir())


def test_genuine_onnx_with_external_data_converts(tmp_path):
    import numpy as np

    path = hostile.onnx_with_external(tmp_path)
    inputs = tmp_path / "inputs.npz"  # fp16 is only checked on real inputs: give some
    np.savez(inputs, x=np.linspace(-3, 3, 64, dtype=np.float32).reshape(4, 16))
    proc = run_zoo("convert", str(path), "--to", "onnx-fp16", "--inputs", str(inputs), "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.splitlines()[-1])["parity"]["passed"]


def test_archive_caps_are_settings(base_repo, tmp_path):
    from hostile import _tar

    archive = _tar(tmp_path, base_repo, [])
    proc = run_zoo("import", str(archive), "--name", "m", env={"ZOO_ARCHIVE_MAX_BYTES": "1000"})
    assert proc.returncode == 7 and "ZOO_ARCHIVE_MAX_BYTES=1000" in proc.stderr
    proc = run_zoo("import", str(archive), "--name", "m", env={"ZOO_ARCHIVE_MAX_MEMBERS": "1"})
    assert proc.returncode == 7 and "ZOO_ARCHIVE_MAX_MEMBERS" in proc.stderr


def test_weights_only_override_refused_for_local_pickles_too(indexed, tiny_repos, tmp_path):
    src = tmp_path / "p"
    src.mkdir()
    for name, data in tiny_repos["zoo-test/pickle-only-resnet"].items():
        (src / name).write_bytes(data)
    assert run_zoo("import", str(src), "--name", "p").returncode == 0
    proc = run_zoo("pull", "local:p", env={"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"})
    assert proc.returncode == 7 and "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD" in proc.stderr
    assert not (indexed.home / "artifacts").exists()


@pytest.mark.parametrize("low_bytes, width", [(0x80, 1), (0x4B50, 2)], ids=["pickle-like-length", "zip-like-length"])
def test_genuine_safetensors_whose_header_length_looks_like_a_pickle_or_zip(tmp_path, low_bytes, width):
    """A header of 0x...80 bytes starts the file with a pickle's 0x80, one of 0x...4B50 with a zip's "PK":
    both are valid safetensors and must load (resnet50's real header hit the first)."""
    import numpy as np
    from safetensors.numpy import load_file, save_file

    from zoo.safety import check_safetensors

    tensors = {"weight": np.arange(12, dtype=np.float32).reshape(3, 4)}
    mask = (1 << (8 * width)) - 1
    for pad in range(1 << (8 * width)):  # grow the metadata until the padded header length has those low bytes
        path = tmp_path / "model.safetensors"
        save_file(tensors, str(path), metadata={"pad": "x" * pad})
        head = path.read_bytes()[:8]
        if int.from_bytes(head, "little") & mask == low_bytes:
            break
    assert head[:width] == low_bytes.to_bytes(width, "little")  # really starts like a pickle / a zip
    check_safetensors(path)  # no refusal
    np.testing.assert_array_equal(load_file(str(path))["weight"], tensors["weight"])


# --- SavedModels: the payloads are live, and genuine SavedModels pass the allow-list -------------
def test_saved_model_payloads_are_live(tmp_path):
    """Plain TensorFlow loading (and serving) of the corpus' writing SavedModels creates their canaries."""
    import hostile_tf

    names = ["resource-initializer-dataset-to-tfrecord", "signature-dataset-to-tfrecord", "tf1-restore-op-write-file",
             "signature-cache-dataset"]
    dirs = [str(hostile_tf.BUILDERS[n](tmp_path / f"canary-{n}", tmp_path / n)) for n in names]
    code = ("import os, sys; os.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'; import tensorflow as tf\n"
            "for d in sys.argv[1:]:\n"
            "    try: tf.saved_model.load(d).signatures['serving_default'](x=tf.ones([1, 4]))\n"
            "    except Exception: pass\n")
    subprocess.run([sys.executable, "-c", code, *dirs], capture_output=True, timeout=300)
    assert {n: any(tmp_path.glob(f"canary-{n}*")) for n in names} == dict.fromkeys(names, True)


@pytest.mark.parametrize("name", ["signature-cache-dataset", "signature-csv-dataset"])
def test_saved_model_dataset_file_ops_are_refused(tmp_path, name):
    """The dataset ops that write (a cache) or read (CSV) files are off the allow-list (in-process: the
    CLI route is the corpus' SavedModel cases)."""
    import hostile_tf

    from zoo import errors
    from zoo.converters.loaders.saved_model_check import check_saved_model

    canary = tmp_path / "canary"
    path = hostile_tf.BUILDERS[name](canary, tmp_path / name)
    with pytest.raises(errors.UnsafeModelError, match=hostile_tf.NEEDLES[name]):
        check_saved_model(path)
    assert not any(tmp_path.glob("canary*"))


def test_genuine_saved_models_pass_the_allow_list(tmp_path):
    """TF2 (tf.Module, Keras export) and TF1 SavedModels that only compute are accepted: the
    allow-list covers their saver's checkpoint ops and every function they hold."""
    import hostile_tf

    from zoo.converters.loaders.keras_models import import_keras
    from zoo.converters.loaders.saved_model_check import check_saved_model

    keras = import_keras()
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3), keras.layers.BatchNormalization(),
                              keras.layers.ReLU(), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2),
                              keras.layers.Softmax()])
    model.export(str(tmp_path / "keras"), verbose=False)
    for path in (hostile_tf.genuine(tmp_path / "c", tmp_path / "tf2"), hostile_tf.genuine_tf1(tmp_path / "c", tmp_path / "tf1"),
                 tmp_path / "keras"):
        check_saved_model(path)


# --- tar archives read by hand: genuine formats extract, header bombs are refused up front ---------
@pytest.mark.parametrize("fmt", ["ustar", "gnu", "pax"])
@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz"])
def test_tar_formats_extract_exactly(tmp_path, fmt, mode):
    """zoo's own tar reader extracts what Python's tarfile writes: long names (ustar prefix, GNU
    long names, pax paths), non-ASCII names, empty files and directories."""
    import io
    import tarfile

    from zoo.archives import extract_archive
    from zoo.settings import Settings

    files = {"model/config.json": b"{}", "model/" + "d" * 120 + "/" + ("n" * 200 if fmt != "ustar" else "n" * 90) + ".bin":
             bytes(range(256)) * 9, "model/\u00fc-\u00f1.txt": b"u", "model/empty": b""}
    archive = tmp_path / "a.tar"
    with tarfile.open(archive, mode, format={"ustar": tarfile.USTAR_FORMAT, "gnu": tarfile.GNU_FORMAT,
                                             "pax": tarfile.PAX_FORMAT}[fmt]) as tar:
        info = tarfile.TarInfo("model/sub")
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    root = extract_archive(archive, tmp_path / "out", Settings.from_env())
    assert root == tmp_path / "out" / "model" and (root / "sub").is_dir()
    assert {str(p.relative_to(tmp_path / "out")): p.read_bytes() for p in root.rglob("*") if p.is_file()} == files


@pytest.mark.parametrize("kind", ["pax", "longname"])
def test_tar_header_bomb_is_refused_before_it_is_read(tmp_path, kind):
    """A 64 MB pax header or GNU long name (64 KB of gzip) is refused from its 512-byte header:
    in well under a second, without allocating it (tracemalloc peak), and the message stays short."""
    import time
    import tracemalloc

    from zoo import errors
    from zoo.archives import extract_archive
    from zoo.settings import Settings

    bomb = hostile.header_bomb(tmp_path / "bomb.tar.gz", kind, 64 << 20)
    assert bomb.stat().st_size < 1 << 20
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(errors.UnsafeModelError, match="header bomb") as refused:
        extract_archive(bomb, tmp_path / "out", Settings.from_env())
    seconds, (_, peak) = time.perf_counter() - start, tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert seconds < 1 and peak < 8 << 20 and len(str(refused.value)) < 300, (seconds, peak)


def test_a_chain_of_small_pax_headers_is_capped_as_one(tmp_path):
    """Many pax headers below the cap, each with a new key, before one member: their sum is capped."""
    import gzip

    from zoo import errors
    from zoo.archives import extract_archive
    from zoo.settings import Settings

    records = []
    for i in range(40):  # 40 x 64 KiB > 1 MiB
        body = b" zoo.k%d=" % i + b"v" * (64 << 10) + b"\n"
        length = len(body) + len(str(len(body) + 7))
        record = str(length).encode() + body
        records.append(hostile._tar_header(b"././@PaxHeader", len(record), b"x") + record + b"\0" * (-len(record) % 512))
    member = hostile._tar_header(b"model/config.json", 2, b"0") + b"{}" + b"\0" * 510
    (tmp_path / "chain.tar.gz").write_bytes(gzip.compress(b"".join(records) + member + b"\0" * 1024))
    with pytest.raises(errors.UnsafeModelError, match="header bomb"):
        extract_archive(tmp_path / "chain.tar.gz", tmp_path / "out", Settings.from_env())


def test_tar_names_too_long_for_the_file_system_are_refused_shortly(tmp_path):
    """A long name under the header cap but over PATH_MAX is an UnsafeModelError (exit 7) whose message
    shows 200 characters of it, not an OSError that prints the whole name."""
    from zoo import errors
    from zoo.archives import extract_archive
    from zoo.settings import Settings

    bomb = hostile.header_bomb(tmp_path / "long.tar.gz", "longname", 512 << 10)
    with pytest.raises(errors.UnsafeModelError, match="longer than 4096 bytes") as refused:
        extract_archive(bomb, tmp_path / "out", Settings.from_env())
    assert len(str(refused.value)) < 400


# --- safetensors header floods ---------------------------------------------------------------------
@pytest.mark.parametrize("tensors, env, needle", [
    (150_000, {}, "more than 100000 entries"),  # 9 MB of header: under the size cap, over the count cap
    (1_400_000, {}, "ZOO_SAFETENSORS_MAX_HEADER_BYTES"),  # the 80 MB flood: refused from its length
    (2_000, {"ZOO_SAFETENSORS_MAX_TENSORS": "1000"}, "more than 1000 entries"),
], ids=["count", "size", "env"])
def test_safetensors_header_flood_is_refused_quickly(tmp_path, monkeypatch, tensors, env, needle):
    import time
    import tracemalloc

    from zoo import errors
    from zoo.safety import check_safetensors

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    path = tmp_path / "model.safetensors"
    path.write_bytes(hostile.safetensors_flood(tensors))
    start = time.perf_counter()
    with pytest.raises(errors.UnsafeModelError, match=needle):
        check_safetensors(path)
    seconds = time.perf_counter() - start
    tracemalloc.start()  # a second run for memory: tracing slows the parse
    with pytest.raises(errors.UnsafeModelError, match=needle):
        check_safetensors(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert seconds < 1 and peak < 150 << 20, (seconds, peak)


def test_safetensors_with_many_tensors_under_the_caps_pass(tmp_path):
    from zoo.safety import check_safetensors

    path = tmp_path / "model.safetensors"
    path.write_bytes(hostile.safetensors_flood(20_000))
    check_safetensors(path)


def test_parity_against_a_hostile_saved_model_candidate_is_refused(tmp_path, zoo_env):
    """``zoo parity model.onnx DIR``: the candidate SavedModel is checked like a source before TensorFlow
    loads it; its serving signature would write the canary when parity runs it."""
    import hostile_tf
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Mul", ["x", "two"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(tmp_path / "model.onnx"))
    canary = tmp_path / "canary"
    saved = hostile_tf.signature(canary, tmp_path / "sm", "WriteFile")
    proc = run_zoo("parity", str(tmp_path / "model.onnx"), str(saved), "--json")
    assert not canary.exists(), "the SavedModel's signature ran"
    assert proc.returncode == 7 and "WriteFile" in proc.stderr, proc.stderr[-2000:]
