"""One way to run a real ComfyUI for the optional comparison tests.

Skipped unless COMFYUI_DIR names a ComfyUI checkout (COMFYUI_PYTHON: the interpreter that has
ComfyUI's requirements, default this one). ComfyUI runs on a free loopback port with a private
--base-directory that the test prepares (custom_nodes/, models/ ...).
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
needs_comfyui = pytest.mark.skipif(
    not COMFYUI_DIR or not (Path(COMFYUI_DIR) / "main.py").is_file(),
    reason="set COMFYUI_DIR to a ComfyUI checkout to compare with it",
)

# This repo's torchvision guard first (ComfyUI imports torchvision at start, and some CPU installs
# pair it with a mismatched torch), then ComfyUI's main.py as __main__.
LAUNCHER = f'''import importlib.util, os, runpy, sys
_spec = importlib.util.spec_from_file_location("_tv", {str(REPO / "vae_core" / "_torchvision.py")!r})
_tv = importlib.util.module_from_spec(_spec); _spec.loader.exec_module(_tv); _tv.import_torchvision()
os.chdir(sys.argv[1]); sys.path.insert(0, sys.argv[1])
sys.argv = ["main.py"] + sys.argv[2:]
runpy.run_path("main.py", run_name="__main__")
'''


def request(url: str, body: dict | None = None) -> tuple[int, dict]:
    """(HTTP status, JSON reply) of a GET, or of a POST when `body` is given."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


@contextmanager
def comfyui_server(base: Path, timeout: float = 240, env: dict[str, str] | None = None) -> Iterator[str]:
    """Start ComfyUI on `base` (custom nodes load before it listens) and yield its URL; `env`
    adds environment variables."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (base / "launch.py").write_text(LAUNCHER)
    log_path = base / "comfyui.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [os.environ.get("COMFYUI_PYTHON", sys.executable), str(base / "launch.py"), str(COMFYUI_DIR), "--cpu",
             "--listen", "127.0.0.1", "--port", str(port), "--disable-auto-launch", "--base-directory", str(base)],
            stdout=log, stderr=subprocess.STDOUT,
            # Same intra-op thread count as this process: oneDNN's summation order depends on it,
            # and the tests compare ComfyUI's pixels with headless ones bit for bit.
            env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads()), **(env or {})})
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    request(f"{url}/system_stats")
                    break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("ComfyUI did not start:\n" + log_path.read_text()[-3000:])
                time.sleep(0.5)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


def finish(url: str, prompt_id: str, timeout: float = 120) -> dict:
    """The history entry of a queued prompt once it has completed (successfully or not)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        history = request(f"{url}/history/{prompt_id}")[1]
        if prompt_id in history and history[prompt_id].get("status", {}).get("completed") is not None:
            return history[prompt_id]
        time.sleep(0.2)
    pytest.fail(f"prompt {prompt_id} did not finish in {timeout:.0f} s")
