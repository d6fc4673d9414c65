"""``zoo demo``: the whole of zoo on a machine without hub access, in a few minutes.

It builds two small models here, with RANDOM weights (nothing is downloaded; their outputs mean nothing),
saves them the way a user saves their own (timm's ``save_for_hf``, transformers' ``save_pretrained``),
imports them (``zoo import``), pulls them to several formats with parity checks (``zoo pull``), then
starts ``zoo serve``, runs one job through its HTTP API and prints what to try next.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from zoo import errors
from zoo.errors import EXIT_OK
from zoo.settings import Settings

IMAGE_MODEL, TEXT_MODEL = "demo-resnet18", "demo-tiny-bert"
PULLS = ((IMAGE_MODEL, "onnx"), (IMAGE_MODEL, "onnx-int8"), (IMAGE_MODEL, "pt2"), (TEXT_MODEL, "onnx"))
SERVED = (TEXT_MODEL, "onnx-int8")  # the job the demo sends through the HTTP API
# ``python -c`` without the working directory on sys.path: the server is the installed zoo (see runner_command)
_SERVE = ("import sys; sys.path[:] = [p for p in sys.path if p not in ('', '.')]; "
          "from zoo.cli.main import main; sys.exit(main(sys.argv[1:]))")


def add_parser(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="the whole pipeline offline: build small models (random weights), import, "
                                       "convert with parity, serve")
    demo.add_argument("--no-serve", action="store_true", help="stop after the conversions")
    demo.add_argument("--once", action="store_true", help="start the service, run one job through it, then stop")
    demo.add_argument("--port", type=int, help="port of the service (default: ZOO_PORT or 8000, else a free one)")


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from zoo.options import Options
    from zoo.pipeline import pull
    from zoo.progress import quiet
    from zoo.registry.local_source import import_path

    say(f"zoo demo: two small models built on this machine with RANDOM weights (nothing is downloaded, nothing "
        f"is pretrained: their outputs mean nothing), imported, converted and checked; store {settings.home}")
    with tempfile.TemporaryDirectory(prefix="zoo-demo-") as tmp:
        for name, build in ((IMAGE_MODEL, build_image_model), (TEXT_MODEL, build_text_model)):
            start = time.perf_counter()
            folder = build(Path(tmp) / name)
            record = import_path(folder, name, settings)
            say(f"  built and imported local:{name} ({record.library} {record.arch}, {record.task}) "
                f"in {time.perf_counter() - start:.1f}s")
    for name, fmt in PULLS:
        start = time.perf_counter()
        result = pull(f"local:{name}", Options(format=fmt), settings=settings, progress=quiet())
        p = result.parity
        say(f"  local:{name} -> {fmt}: {'verified' if result.verified else 'NOT VERIFIED'}, parity max abs diff "
            f"{p['max_abs_diff']:.2g} (atol {p.get('tolerance', {}).get('atol', float('nan')):.2g}), "
            f"{result.size / 1e6:.1f} MB, {'cached' if result.cached else 'converted'} in "
            f"{time.perf_counter() - start:.1f}s\n      {result.path}")
    if args.no_serve:
        say(next_steps(None, None))
        return EXIT_OK
    return serve_and_show(args, settings)


def say(text: str) -> None:
    from zoo.cli.output import say as out

    out(text)


# --- the models: saved as a user saves their own ---------------------------------------------------------
def build_image_model(folder: Path) -> Path:
    """timm's resnet18 (random weights), saved as timm saves for the Hugging Face hub."""
    torch, timm = _frameworks("timm")
    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, num_classes=10).eval()
    timm.models.save_for_hf(model, str(folder), safe_serialization=True)
    return folder


def build_text_model(folder: Path) -> Path:
    """A two-layer BERT sentence classifier (random weights) and a small word-piece tokenizer, saved with
    ``save_pretrained`` as transformers users do."""
    torch, transformers = _frameworks("transformers")
    from zoo.converters.parity.samples import SAMPLE_SENTENCES

    words = sorted({w.strip(".,!?;:'\"()").lower() for s in SAMPLE_SENTENCES for w in s.split()} - {""})
    letters = list("abcdefghijklmnopqrstuvwxyz0123456789.,!?;:'\"()-")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *letters, *(f"##{c}" for c in letters), *words]
    vocab = list(dict.fromkeys(vocab))
    tokenizer = transformers.BertTokenizerFast(vocab={t: i for i, t in enumerate(vocab)}, model_max_length=128)
    labels = {0: "negative", 1: "positive"}
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=128, max_position_embeddings=128, num_labels=2,
                                     id2label=labels, label2id={v: k for k, v in labels.items()})
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(config).eval()
    transformers.utils.logging.disable_progress_bar()
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def _frameworks(library: str) -> tuple[Any, Any]:
    try:
        import importlib

        import torch

        return torch, importlib.import_module(library)
    except ImportError as exc:
        raise errors.MissingDependencyError(f"zoo demo builds its models with PyTorch ({exc.name} is missing)",
                                            hint="./scripts/setup.sh (from the clone), or pip install "
                                                 "'zoo-hub[torch,server]'") from exc


# --- the service -----------------------------------------------------------------------------------------
def serve_and_show(args: argparse.Namespace, settings: Settings) -> int:
    from zoo import db
    from zoo.service import tokens

    port = args.port or (settings.port if _free(settings.host, settings.port) else _any_port(settings.host))
    url = f"http://{settings.host}:{port}"
    token, _ = tokens.create_token(db.get_engine(settings.database_url), "write", "zoo demo")
    say(f"zoo demo: starting zoo serve on {url} (a write token was made for the demo: zoo token list)")
    server = subprocess.Popen([sys.executable, "-c", _SERVE, "serve", "--host", settings.host, "--port", str(port),
                               "--log-level", "warning"], stdin=subprocess.DEVNULL)
    try:
        _wait_ready(url, server)
        name, fmt = SERVED
        job = _request(url, "POST", "/v1/jobs", token, {"model": f"local:{name}", "format": fmt})
        say(f"  POST /v1/jobs {{\"model\": \"local:{name}\", \"format\": \"{fmt}\"}} -> job {job['id']} ({job['state']})")
        while job["state"] in ("queued", "running"):
            time.sleep(0.5)
            job = _request(url, "GET", f"/v1/jobs/{job['id']}", None)
        if job["state"] != "succeeded":
            raise errors.ConversionError(f"the demo's job {job['state']}: {(job.get('error') or {}).get('message')}",
                                         hint=f"see {url}/v1/jobs/{job['id']}")
        result = job["result"]
        say(f"  job {job['state']}: {url}{result['artifact']['url']} (sha256 {result['sha256'][:16]}..., "
            f"parity max abs diff {result['parity']['max_abs_diff']:.2g})")
        say(next_steps(url, token))
        if args.once:
            return EXIT_OK
        say("zoo demo: serving until Ctrl-C")
        server.wait()
        return EXIT_OK
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()


def _free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _any_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _wait_ready(url: str, server: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise errors.ZooError(f"zoo serve exited with code {server.returncode}", hint="see its messages above")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    raise errors.ZooError(f"zoo serve did not become ready at {url} within {timeout:g} s", hint=f"open {url}/readyz")


def _request(url: str, method: str, path: str, token: str | None, body: dict[str, Any] | None = None) -> dict[str, Any]:
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
    request = urllib.request.Request(url + path, method=method, headers=headers,
                                     data=json.dumps(body).encode() if body is not None else None)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise errors.ZooError(f"{method} {path} answered {exc.code}: {exc.read()[:300]!r}") from exc


def next_steps(url: str | None, token: str | None) -> str:
    rows = [("zoo list demo", "the models the demo imported"),
            (f"zoo info local:{IMAGE_MODEL}", "revisions, artifacts, parity reports"),
            (f"zoo pull local:{IMAGE_MODEL} --format onnx-fp16", "another format (also tf, tflite)"),
            (f"zoo pull local:{TEXT_MODEL} --format pt2 -o bert.pt2", "a copy of the artifact where you want it"),
            ("zoo convert model.onnx --to onnx-int8", "an ONNX file of your own"),
            ("zoo cache ls", "every artifact in the store")]
    if url:
        rows += [(f"{url}/docs", "the HTTP API, in a browser"), (f"curl '{url}/v1/models?q=demo'", "the catalog")]
    else:
        rows.append(("zoo demo", "the same, then the HTTP service"))
    width = max(len(cmd) for cmd, _ in rows) + 3
    lines = ["", "What to try next (from the clone, ./scripts/zoo.sh runs zoo):"]
    lines += [f"  {cmd.ljust(width)}{what}" for cmd, what in rows]
    if url:
        lines += [f"  curl -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' \\",
                  f"       -d '{{\"model\": \"local:{IMAGE_MODEL}\", \"format\": \"onnx-fp16\"}}' {url}/v1/jobs"]
    lines.append("Your own model: README.md, 'Bring your own model' (save_pretrained, timm's save_for_hf, a state dict).")
    return "\n".join(lines)
