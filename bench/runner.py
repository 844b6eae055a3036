"""`cvae bench runner`: what running a job as a workflow costs over calling the library directly.

It lives outside vae_core because it needs the node pack and the runner. The job is the main
artist job in small: load a model, sample keyframes, save them as PNGs, render a walk through them
to MP4. Both sides do the same work with the same values (the direct side embeds the same prompt
text), measured twice:
- in one process, runner.execute(graph) against the direct calls, alternating, median of repeats;
- end to end, `cvae run graph.json` against `python -c <the direct calls>` in fresh processes
  (interpreter start and imports included, which is what a user waits for).
Both in-process measurements run in a fresh process too, so the nodes' folder settings never leak.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..vae_core.model import REFINE_DEFAULT
from .harness import Table, run_in_fresh_process, untrained_model

MODEL_NAME = "bench.safetensors"


def job_values(frames: int, size: int, count: int) -> dict:
    return dict(count=count, seed=0, temperature=1.0, refine=REFINE_DEFAULT, frames=frames, method="slerp", easing="ease-in-out", hold=0,
                loop=False, pingpong=False, format="mp4", fps=24.0, quality=80, loop_count=0, size=size)


def job_graph(v: dict) -> dict:
    """The job as an API-format ComfyUI prompt of our nodes."""
    walk = {k: v[k] for k in ("frames", "method", "easing", "hold", "loop", "pingpong", "format", "fps", "quality",
                              "loop_count", "size")}
    return {
        "1": {"class_type": "CVAELoadModel", "inputs": {"model_name": MODEL_NAME}},
        "2": {"class_type": "CVAESample", "inputs": {"model": ["1", 0], "count": v["count"], "seed": v["seed"],
                                                     "temperature": v["temperature"], "refine": v["refine"]}},
        "3": {"class_type": "CVAESaveImages", "inputs": {"images": ["2", 0], "filename_prefix": "bench/key"}},
        "4": {"class_type": "CVAERenderWalk", "inputs": {"model": ["1", 0], "latents": ["2", 1], **walk,
                                                         "filename_prefix": "bench/walk"}},
    }


def direct_job(model_path: str, out: str, v: dict, prompt: dict) -> None:
    """The same job through vae_core calls only."""
    import torch

    from ..vae_core.checkpoint import load_model
    from ..vae_core.images import save_png
    from ..vae_core.schedule import keyframe_path
    from ..vae_core.walk import render_walk

    text = {"prompt": json.dumps(prompt)}
    with torch.inference_mode():
        model = load_model(model_path)
        cond = model.condition(None, 1)
        z = model.refine(model.prior_sample(v["count"], v["seed"], v["temperature"]), cond, v["refine"])
        for i, img in enumerate(model.decode(z, cond)):
            save_png(Path(out) / "direct" / f"key_{i:05d}.png", img, text)
        path = keyframe_path(z, v["frames"], v["method"], v["easing"], v["loop"], v["pingpong"], v["hold"])
        render_walk(model, path, cond, Path(out) / "direct" / "walk.mp4", fps=v["fps"], quality=v["quality"],
                    size=v["size"] or None, metadata=text, loop=v["loop_count"])


def _in_process(work: str, values: dict, repeats: int) -> dict:
    """Child process: alternate direct calls and runner.execute on the same graph."""
    from ..nodes import NODE_CLASS_MAPPINGS, comfy
    from ..runner import execute

    graph = job_graph(values)
    comfy.set_model_directories([Path(work) / "models" / "cvae"])
    comfy.set_output_directory(Path(work) / "out")
    model_path = str(Path(work) / "models" / "cvae" / MODEL_NAME)
    direct, runner = [], []
    direct_job(model_path, work, values, graph)  # warm-up: first-call costs (thread pools, codecs) on neither side
    for _ in range(repeats):
        t = time.perf_counter()
        direct_job(model_path, work, values, graph)
        direct.append(time.perf_counter() - t)
        t = time.perf_counter()
        execute(graph, NODE_CLASS_MAPPINGS)
        runner.append(time.perf_counter() - t)
    return {"direct": direct, "runner": runner}


def _timed(cmd: list[str], cwd: str) -> float:
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t


def bench_runner(model: str | None = None, quick: bool = False, device: str = "cpu", repeats: int = 9) -> Table:
    from ..vae_core.checkpoint import load_model, save_model

    values = job_values(frames=16 if quick else 240, size=0 if quick else 256, count=4 if quick else 6)
    repeats = 1 if quick else repeats
    table = Table("runner", "Workflow runner overhead: the same job through `cvae run` and through direct calls",
                  ["how", "direct s", "runner s", "overhead s", "overhead %"])
    with tempfile.TemporaryDirectory() as work:
        models = Path(work) / "models" / "cvae"
        m = load_model(model, device) if model else untrained_model(32 if quick else 64, device)
        save_model(m, models / MODEL_NAME)
        graph_file = Path(work) / "graph.json"
        graph_file.write_text(json.dumps(job_graph(values)))

        res = run_in_fresh_process(f"from {__name__} import _in_process as main",
                                   {"work": work, "values": values, "repeats": repeats})
        d, r = statistics.median(res["direct"]), statistics.median(res["runner"])
        table.rows.append({"how": "in one process (execute vs calls)", "direct s": d, "runner s": r,
                           "overhead s": r - d, "overhead %": 100 * (r - d) / d})

        direct_code = (f"from {__name__} import direct_job, job_graph; import json; "
                       f"v = json.loads({json.dumps(json.dumps(values))}); "
                       f"direct_job({str(models / MODEL_NAME)!r}, {work!r}, v, job_graph(v))")
        cli = [sys.executable, "-m", f"{__package__.rpartition('.')[0]}.cli", "run", str(graph_file), "--output-dir", str(Path(work) / "out"), "-q"]
        direct_cmd = [sys.executable, "-c", direct_code]
        dc, rc = [], []
        for _ in range(repeats):
            dc.append(_timed(direct_cmd, work))
            rc.append(_timed(cli, work))
        d, r = statistics.median(dc), statistics.median(rc)
        table.rows.append({"how": "end to end (fresh processes)", "direct s": d, "runner s": r,
                           "overhead s": r - d, "overhead %": 100 * (r - d) / d})
    table.notes += [
        f"the job: load {'a trained' if model else 'an untrained'} {m.resolution} px model, sample {values['count']} keyframes, "
        f"save them as PNG, render a {values['frames']}-frame slerp walk through them to MP4 at "
        f"{values['size'] or m.resolution} px; median of {repeats} alternating runs; goal: overhead < 5%",
        "end to end includes interpreter start and imports on both sides: `cvae run` also imports the runner and "
        "every node module",
    ]
    return table
