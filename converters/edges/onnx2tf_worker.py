"""Run onnx2tf in a child process: ``python -m zoo.converters.edges.onnx2tf_worker JOB.json``.

onnx2tf rewrites its input file in place (onnxsim, op renaming), prints to
stdout, seeds numpy's global RNG at import and, for image-like inputs with a
static batch, downloads a calibration array from GitHub unless
``calibration_image_sample_data_20x128x128x3_float32.npy`` is in its working
directory. So the edge (``converters/tf_edges.py``) runs it here, in a private
working directory under the edge's output directory holding a copy of the
model and a calibration file zoo generates, with stdout and stderr going to a
log file, and with an audit hook that refuses any socket connection off the
loopback. The result (or the failure, with the ONNX node onnx2tf names) goes
to ``result.json`` beside the job file.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import sys
import traceback
from pathlib import Path
from typing import Any

CALIBRATION_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"
CALIBRATION_SHAPE = (20, 128, 128, 3)


def _is_loopback(host: Any) -> bool:
    if host in ("localhost", "", None) or isinstance(host, str) and host.startswith("/"):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def refuse_network(event: str, args: tuple) -> None:
    """Audit hook: no connection and no name lookup off this machine."""
    if event == "socket.connect":
        address = args[1]
        host = address[0] if isinstance(address, tuple) else address
        if not _is_loopback(host):
            raise PermissionError(f"zoo's onnx2tf worker refuses network access (connect to {host!r})")
    elif event == "socket.getaddrinfo" and not _is_loopback(args[0]):
        raise PermissionError(f"zoo's onnx2tf worker refuses network access (lookup of {args[0]!r})")


def write_calibration_file(workdir: Path) -> Path:
    """The array onnx2tf would download, made from zoo's own sample images
    (RGB, 0..1, NHWC), so its image-input code path reads a local file."""
    import numpy as np
    from PIL import Image

    from zoo.converters.parity.samples import sample_images

    images = [img.convert("RGB").resize(CALIBRATION_SHAPE[1:3], Image.BILINEAR) for _, img in sample_images(4, size=160)]
    pixels = np.stack([np.asarray(img, dtype=np.float32) / 255.0 for img in images])
    data = np.concatenate([pixels] * (CALIBRATION_SHAPE[0] // len(pixels)))
    path = workdir / CALIBRATION_FILE
    np.save(path, data.astype(np.float32))
    return path


def _failed_node(exc: BaseException, log: str, onnx_path: Path) -> dict[str, str]:
    """The node onnx2tf failed on, with its op type from the graph: the ``graph_node`` the failing frame of
    onnx2tf was converting, else the one its error log names, else the first of an op type it has no
    converter module for, else the node producing a tensor the error names; else the stage it failed in."""
    missing = re.match(r"onnx2tf\.ops\.(\w+)$", getattr(exc, "name", None) or "") if isinstance(exc, ImportError) else None
    found = re.findall(r"onnx_op_name:\s*(\S+)", re.sub(r"\x1b\[[0-9;]*m", "", log))
    in_frame = _node_in_traceback(exc)
    try:
        import onnx

        graph = onnx.load(str(onnx_path), load_external_data=False).graph
    except Exception:  # noqa: BLE001 - the names alone still help
        graph = None
    if in_frame and not missing:
        return in_frame
    if not found and not missing:
        return _node_of_tensor(str(exc), graph) or {"stage": _stage(exc)}
    name = found[-1] if found else ""
    # onnx2tf renames a leading "/" to "wa/" for SavedModel signatures
    candidates = {name, "/" + name[3:]} if name.startswith("wa/") else {name}
    nodes = list(graph.node) if graph is not None else []
    node = next((n for n in nodes if (n.op_type == missing.group(1) if missing else n.name in candidates)), None)
    if node is None:
        return {"node": name, "op_type": missing.group(1) if missing else ""}
    return {"node": node.name, "op_type": node.op_type, **({"unsupported_op": True} if missing else {})}


def _node_in_traceback(exc: BaseException) -> dict[str, str] | None:
    """The deepest onnx2tf frame's ``graph_node`` (an onnx-graphsurgeon node: ``.name``, ``.op``)."""
    found, tb = None, exc.__traceback__
    while tb is not None:
        node = tb.tb_frame.f_locals.get("graph_node")
        if node is not None and isinstance(getattr(node, "op", None), str) and isinstance(getattr(node, "name", None), str):
            found = {"node": re.sub(r"^wa/", "/", node.name), "op_type": node.op}
        tb = tb.tb_next
    return found


def _node_of_tensor(message: str, graph: Any) -> dict[str, str] | None:
    """The node producing (or, for a graph input, first reading) a tensor the error message names."""
    if graph is None:
        return None
    for node in graph.node:
        for tensor in [*node.output, node.name]:
            if tensor and len(tensor) > 2 and re.search(rf"(?<![\w/.]){re.escape(tensor)}(?![\w/.])", message):
                return {"node": node.name, "op_type": node.op_type}
    return None


def _stage(exc: BaseException) -> str:
    """Where outside any node onnx2tf failed: the innermost onnx2tf or zoo function on the traceback."""
    where, tb = "", exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if "onnx2tf" in code.co_filename or code.co_filename.endswith("onnx2tf_worker.py"):
            where = code.co_name
        tb = tb.tb_next
    return where or "setup"


def _probe_feeds(onnx_path: Path) -> tuple[Any, dict[str, Any]]:
    """An onnxruntime session of the model and seeded feeds (dynamic dims: batch 1, others 8)."""
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {}
    for item in session.get_inputs():
        shape = [d if isinstance(d, int) else (1 if i == 0 else 8) for i, d in enumerate(item.shape)]
        if item.type in ("tensor(float)", "tensor(double)"):
            feeds[item.name] = rng.standard_normal(shape).astype(np.float32 if item.type == "tensor(float)" else np.float64)
        else:
            feeds[item.name] = np.zeros(shape, dtype=np.int64 if item.type == "tensor(int64)" else np.int32)
    return session, feeds


def output_permutations(fn: Any, bind: dict[str, str], out_keys: list[str], onnx_path: Path) -> dict[str, list[int]]:
    """Outputs onnx2tf left channels-last: rank 3-5 outputs that match the ONNX
    model only once moved back to channels-first, found on a probe input."""
    import numpy as np
    import tensorflow as tf

    try:
        session, feeds = _probe_feeds(onnx_path)
        ref = session.run(None, feeds)
        got = fn(**{key: tf.constant(feeds[name]) for key, name in bind.items()})
    except Exception:  # noqa: BLE001 - no probe, no change: parity judges the result
        return {}
    perms = {}
    for r, key in zip(ref, out_keys):
        g = got[key].numpy()
        atol = 1e-3 * max(1.0, float(np.abs(r).max()) if r.size else 1.0)
        if g.shape == r.shape and np.allclose(g, r, atol=atol, rtol=1e-3) or not 3 <= g.ndim <= 5:
            continue
        back = [0, g.ndim - 1, *range(1, g.ndim - 1)]  # NWC/NHWC/NDHWC -> NCW/NCHW/NCDHW
        moved = np.transpose(g, back)
        if moved.shape == r.shape and np.allclose(moved, r, atol=atol, rtol=1e-3):
            perms[key] = back
    return perms


def resign_saved_model(src: Path, dst: Path, onnx_path: Path, input_names: list[str], output_names: list[str]) -> dict[str, Any]:
    """Save ``src`` again with a ``serving_default`` signature keyed by the ONNX
    input and output names (onnx2tf keys outputs ``output_0``...), and with
    outputs it left channels-last moved back to the ONNX model's layout."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(src))
    fn = loaded.signatures["serving_default"]
    specs = fn.structured_input_signature[1]
    keys = list(specs)
    bind = {k: k for k in keys} if set(keys) == set(input_names) else dict(zip(keys, input_names))
    out_keys = sorted(fn.structured_outputs, key=lambda k: int(k.rsplit("_", 1)[-1]) if k[-1].isdigit() else k)
    names = output_names if len(output_names) == len(out_keys) else out_keys
    perms = output_permutations(fn, bind, out_keys, onnx_path)

    @tf.function(input_signature=[tf.TensorSpec(specs[k].shape, specs[k].dtype, name=bind[k]) for k in keys])
    def serve(*args: Any) -> dict[str, Any]:
        out = fn(**dict(zip(keys, args)))
        return {name: tf.transpose(out[key], perms[key]) if key in perms else out[key] for name, key in zip(names, out_keys)}

    tf.saved_model.save(loaded, str(dst), signatures={"serving_default": serve})
    return {"inputs": {bind[k]: specs[k].shape.as_list() for k in keys}, "outputs": list(names),
            "outputs_moved_to_channels_first": [name for name, key in zip(names, out_keys) if key in perms]}


def run(job: dict[str, Any]) -> dict[str, Any]:
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import onnx
    import onnx2tf
    import tensorflow as tf

    src = Path(job["onnx"])
    pristine = src.with_name("pristine.onnx")  # onnx2tf rewrites src; the probe needs the model as given
    shutil.copyfile(src, pristine)
    graph = onnx.load(str(src), load_external_data=False).graph
    inits = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in inits]
    input_names = [i.name for i in inputs]
    output_names = [o.name for o in graph.output]
    # keep every float input of rank 3-5 in the source's own (NCW/NCHW/NCDHW) layout
    keep = [i.name for i in inputs if i.type.tensor_type.elem_type in (1, 10, 11) and 3 <= len(i.type.tensor_type.shape.dim) <= 5]
    raw = Path(job["workdir"]) / "onnx2tf-out"
    onnx2tf.convert(input_onnx_file_path=str(src), output_folder_path=str(raw), output_signaturedefs=True,
                    keep_ncw_or_nchw_or_ncdhw_input_names=keep or None, not_use_onnxsim=True, non_verbose=True,
                    verbosity="error")
    if not (raw / "saved_model.pb").is_file():
        raise RuntimeError("onnx2tf wrote no SavedModel (see its log above)")
    signature = resign_saved_model(raw, Path(job["saved_model"]), pristine, input_names, output_names)
    return {"onnx2tf": onnx2tf.__version__, "tensorflow": tf.__version__, "signature": signature,
            "layout": {n: "NCW/NCHW/NCDHW kept (as the ONNX model)" if n in keep else "as the ONNX model" for n in input_names}}


def main(job_path: str) -> int:
    sys.addaudithook(refuse_network)
    job_file = Path(job_path)
    job = json.loads(job_file.read_text())
    out = job_file.parent / "result.json"
    try:
        write_calibration_file(Path(job["workdir"]))
        result = {"ok": True, **run(job)}
    except BaseException as exc:  # noqa: BLE001 - onnx2tf also calls sys.exit on some failures
        sys.stdout.flush()
        log = Path(job["log"]).read_text(errors="replace") if Path(job["log"]).is_file() else ""
        message = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        result = {"ok": False, "error": f"{type(exc).__name__}: {message[:400]}",
                  "traceback": traceback.format_exc()[-2000:], **_failed_node(exc, log, Path(job["onnx"]))}
    out.write_text(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
