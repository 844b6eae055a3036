"""The shipped workflows (workflows/*.json): well-formed UI documents that match the node pack, that
validate as shipped, and that run headless on the bundled model and samples and write what they
promise. The quick-start command runs once exactly as the README gives it (a fresh process, from
another folder); the others run in-process through the same CLI code, the training one shortened
with --set."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from PIL import Image

from comfyui_server import comfyui_server, finish, needs_comfyui, request
from cvae_art.cli import main as cvae
from cvae_art.nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS, comfy
from cvae_art.runner import input_specs, load_workflow, read_workflow, validate
from cvae_art.vae_core.checkpoint import load_model
from cvae_art.vae_core.images import load_image

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO / "workflows"
SAMPLES = REPO / "assets" / "samples"
ANOMALY_DEMO = REPO / "assets" / "anomaly_demo"
SHIPPED = {"latent_walk", "style_morph", "folder_style_blend", "latent_arithmetic", "sample_grid_per_style",
           "train_small_model", "anomaly_scan", "latent_explorer"}
NODE_KEYS = {"id", "type", "pos", "size", "flags", "order", "mode", "inputs", "outputs", "properties", "widgets_values"}
TITLE_H = 30  # LiteGraph draws the title bar above a node's pos


def shipped() -> list[Path]:
    return sorted(WORKFLOWS.glob("*.json"))


def sample_names(folder: Path) -> set[str]:
    return {p.relative_to(folder).with_suffix(".png").as_posix() for p in folder.rglob("*.png")}


def pngs(folder: Path) -> dict[str, np.ndarray]:
    """Relative path -> decoded image, for every PNG below folder."""
    out = {}
    for p in sorted(folder.rglob("*.png")):
        image = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        assert image is not None, f"{p} does not decode"
        out[p.relative_to(folder).as_posix()] = image
    return out


def video(path: Path) -> tuple[int, int, int, float]:
    """(decoded frames, width, height, fps) of a video, read back with PyAV."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return frames, stream.codec_context.width, stream.codec_context.height, float(stream.average_rate)


def api_inputs(name: str, class_type: str) -> list[dict]:
    """The inputs each node of a type receives when the shipped file runs (as ComfyUI's frontend sends them)."""
    wf = load_workflow(WORKFLOWS / f"{name}.json", NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS)
    return [n["inputs"] for _, n in sorted(wf.api.items(), key=lambda kv: int(kv[0])) if n["class_type"] == class_type]


def node_id(name: str, class_type: str) -> str:
    ids = [str(n["id"]) for n in read_workflow(WORKFLOWS / f"{name}.json")["nodes"] if n["type"] == class_type]
    assert len(ids) == 1, f"{name}: expected one {class_type}, found {ids}"
    return ids[0]


@pytest.fixture()
def headless(tmp_path, monkeypatch, capsys):
    """Runs `cvae run FILE --output-dir out` in-process from an empty folder (so paths to the bundled
    samples must not depend on the working directory); returns (output folder, printed paths)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(comfy, "_output_dir", comfy._output_dir)  # the run sets it; restored afterwards
    # Input and model folders as in a fresh `cvae run` process, whatever another test set.
    monkeypatch.setattr(comfy, "_input_dir", None)
    monkeypatch.setattr(comfy, "_model_dirs", None)
    out = tmp_path / "out"

    def run(name: str, *overrides: str) -> tuple[Path, list[Path]]:
        sets = [arg for o in overrides for arg in ("--set", o)]
        code = cvae(["run", str(WORKFLOWS / f"{name}.json"), "--output-dir", str(out), "-q", *sets])
        printed = capsys.readouterr()
        assert code == 0, printed.err
        files = [Path(line) for line in printed.out.splitlines() if line.strip()]
        assert files and all(p.is_file() for p in files), printed.out
        return out, files

    return run


# -- the files -----------------------------------------------------------------------------------

def test_every_job_is_shipped_and_the_generator_is_in_sync():
    assert {p.stem for p in shipped()} == SHIPPED
    spec = importlib.util.spec_from_file_location("make_workflows", REPO / "tools" / "make_workflows.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    # Fails when a file was edited by hand or a node's INPUT_TYPES changed under the workflows.
    assert module.main(["--check"]) == 0


@pytest.mark.parametrize("path", shipped(), ids=lambda p: p.stem)
def test_ui_document_is_complete_and_consistent(path):
    ui = json.loads(path.read_text(encoding="utf-8"))
    assert ui["version"] == 0.4
    assert {"last_node_id", "last_link_id", "nodes", "links", "groups", "config", "extra"} <= set(ui)
    nodes = {n["id"]: n for n in ui["nodes"]}
    assert len(nodes) == len(ui["nodes"]) and ui["last_node_id"] >= max(nodes)
    assert ui["last_link_id"] >= max((link[0] for link in ui["links"]), default=0)
    for node in nodes.values():
        assert NODE_KEYS <= set(node), f"node {node['id']} lacks {NODE_KEYS - set(node)}"
        assert node["title"].strip() and len(node["pos"]) == 2 and len(node["size"]) == 2
        assert node["type"] == "Note" or node["type"] in NODE_CLASS_MAPPINGS
    # Both ends of every link agree with the links table, and the types match.
    for link_id, src, src_slot, dst, dst_slot, kind in ui["links"]:
        target = nodes[dst]["inputs"][dst_slot]
        output = nodes[src]["outputs"][src_slot]
        assert target["link"] == link_id and link_id in output["links"]
        assert target["type"] == output["type"] == kind
        # Read left to right: no link runs backwards (within a column, downwards).
        (sx, sy), (dx, dy) = nodes[src]["pos"], nodes[dst]["pos"]
        assert sx < dx or (sx == dx and sy < dy), f"link {link_id} runs from node {src} back to node {dst}"
    linked = [slot["link"] for n in nodes.values() for slot in n["inputs"] if slot["link"] is not None]
    assert sorted(linked) == sorted(link[0] for link in ui["links"])
    assert sorted(i for n in nodes.values() for o in n["outputs"] for i in o["links"]) == sorted(linked)
    # The execution order the frontend stores is a topological order.
    order = {n["id"]: n["order"] for n in nodes.values()}
    assert sorted(order.values()) == list(range(len(nodes)))
    assert all(order[src] < order[dst] for _, src, _, dst, _, _ in ui["links"])

    def box(n):
        return (n["pos"][0], n["pos"][1] - TITLE_H, n["pos"][0] + n["size"][0], n["pos"][1] + n["size"][1])

    def inside(inner, outer):
        return outer[0] <= inner[0] and outer[1] <= inner[1] and inner[2] <= outer[2] and inner[3] <= outer[3]

    def overlap(a, b):
        return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]

    boxes = {i: box(n) for i, n in nodes.items()}
    assert not [(a, b) for a in boxes for b in boxes if a < b and overlap(boxes[a], boxes[b])], "nodes overlap"
    # Every working node sits in exactly one titled group, and groups do not overlap.
    groups = [(g["title"], (g["bounding"][0], g["bounding"][1], g["bounding"][0] + g["bounding"][2],
                            g["bounding"][1] + g["bounding"][3])) for g in ui["groups"]]
    assert groups and all(title.strip() for title, _ in groups)
    assert not [(a, b) for i, (a, ga) in enumerate(groups) for b, gb in groups[i + 1:] if overlap(ga, gb)]
    for i, node in nodes.items():
        homes = [title for title, g in groups if inside(boxes[i], g)]
        assert len(homes) == (0 if node["type"] == "Note" else 1), f"node {i} {node['title']!r} is in groups {homes}"


@pytest.mark.parametrize("path", shipped(), ids=lambda p: p.stem)
def test_shipped_file_validates_as_it_is(path, capsys):
    wf = load_workflow(path, NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS)
    # No widget count mismatch, no input whose link leads nowhere, nothing invalid.
    assert wf.warnings == [] and wf.notes == {}
    assert all(why == "a Note (frontend only)" for why in wf.skipped.values())
    assert validate(wf, NODE_CLASS_MAPPINGS) == []
    assert cvae(["run", str(path), "--check"]) == 0
    assert "valid (ui format" in capsys.readouterr().out
    # Every seed's control_after_generate is 'fixed': a shipped graph gives the same files on every run.
    for node in read_workflow(path)["nodes"]:
        if node["type"] == "Note":
            continue
        index = 0
        for spec in (s for s in input_specs(NODE_CLASS_MAPPINGS[node["type"]]) if s.is_widget):
            if spec.extra_widget_values:
                assert node["widgets_values"][index + 1:index + 2] == ["fixed"], f"node {node['id']} {spec.name}"
            index += 1 + spec.extra_widget_values
        assert index == len(node["widgets_values"])


# -- running them ----------------------------------------------------------------------------------

def test_quick_start_command_as_shipped(tmp_path):
    """`cvae run workflows/latent_walk.json`, from another folder: an MP4 in ./output."""
    exe = shutil.which("cvae")
    command = [exe] if exe else [sys.executable, "-m", "cvae_art.cli"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMFYUI")}
    done = subprocess.run([*command, "run", str(WORKFLOWS / "latent_walk.json")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    (render,) = api_inputs("latent_walk", "CVAERenderWalk")
    videos = list((tmp_path / "output").rglob("*.mp4"))
    assert [str(p) for p in videos] == [line for line in done.stdout.splitlines() if line.endswith(".mp4")]
    assert video(videos[0]) == (render["frames"], render["size"], render["size"], render["fps"])
    with av.open(str(videos[0])) as container:  # the graph travels with the video
        assert json.loads(container.metadata["workflow"])["nodes"] == read_workflow(WORKFLOWS / "latent_walk.json")["nodes"]
    (sample,) = api_inputs("latent_walk", "CVAESample")
    keys = pngs(tmp_path / "output")
    assert len(keys) == sample["count"] and all(img.shape[:2] == (64, 64) for img in keys.values())


def test_style_morph(headless):
    out, _ = headless("style_morph")
    (render,) = api_inputs("style_morph", "CVAERenderWalk")
    (mp4,) = out.rglob("*.mp4")
    assert video(mp4) == (render["frames"], render["size"], render["size"], render["fps"])
    stills = list(pngs(out).values())
    assert len(stills) == 4 and all(s.shape[:2] == (64, 64) for s in stills)
    # One emoji, four styles: the style condition changes the drawing.
    assert all(np.abs(stills[0].astype(int) - s.astype(int)).max() > 0 for s in stills[1:])
    # The single encoded latent goes straight to Decode and Render Walk: no batch nodes to repeat it.
    assert api_inputs("style_morph", "CVAELatentBatch") == []
    (encode,) = [n for n in read_workflow(WORKFLOWS / "style_morph.json")["nodes"] if n["type"] == "CVAEEncode"]
    assert render["latents"][0] == str(encode["id"])


def test_folder_style_blend_keeps_every_name(headless):
    out, files = headless("folder_style_blend")
    (restyle,) = api_inputs("folder_style_blend", "CVAERestyleFolder")
    written = pngs(out / restyle["target_folder"])
    assert set(written) == sample_names(SAMPLES) and len(written) == 40
    for name, image in written.items():  # size 'source': back at each sample's own size
        assert image.shape[:2] == cv2.imread(str(SAMPLES / name), cv2.IMREAD_UNCHANGED).shape[:2]
    assert len(files) >= 1  # the node's previews


def grid_tiles(sheet: np.ndarray, size: int, nrow: int, count: int, padding: int = 2) -> list[np.ndarray]:
    """The tiles of an image grid (CVAE Image Grid's layout), after checking the gaps are white."""
    rows = -(-count // nrow)
    assert sheet.shape[:2] == (padding + rows * (size + padding), padding + min(nrow, count) * (size + padding))
    tiles, gaps = [], np.ones(sheet.shape[:2], bool)
    for i in range(count):
        y, x = padding + (i // nrow) * (size + padding), padding + (i % nrow) * (size + padding)
        tiles.append(sheet[y:y + size, x:x + size])
        gaps[y:y + size, x:x + size] = False
    assert (sheet[gaps] == 255).all()
    return tiles


def test_latent_arithmetic(headless):
    out, files = headless("latent_arithmetic")
    (nrow,) = {g["nrow"] for g in api_inputs("latent_arithmetic", "CVAEImageGrid")}
    for kind in ("analogy", "attribute"):
        results = pngs(out / "cvae" / "arithmetic" / kind)
        assert set(results) == sample_names(SAMPLES / "noto")
        assert all(img.shape[:2] == (64, 64) for img in results.values())
        # One grid of the same images, in the loader's (file-name) order.
        (sheet_path,) = (out / "cvae" / "arithmetic").glob(f"{kind}_grid_*.png")
        assert sheet_path in files
        tiles = grid_tiles(cv2.imread(str(sheet_path)), 64, nrow, len(results))
        assert all(np.array_equal(tile, results[name]) for tile, name in zip(tiles, sorted(results)))
    png = next((out / "cvae" / "arithmetic" / "analogy").glob("*.png"))
    embedded = json.loads(Image.open(png).text["workflow"])  # drag the PNG onto ComfyUI: the graph returns
    assert embedded["nodes"] == read_workflow(WORKFLOWS / "latent_arithmetic.json")["nodes"]


def test_sample_grid_per_style(headless):
    out, files = headless("sample_grid_per_style")
    (sample,) = api_inputs("sample_grid_per_style", "CVAESample")
    (nrow,) = {g["nrow"] for g in api_inputs("sample_grid_per_style", "CVAEImageGrid")}
    styles = {}
    for style in ("emojitwo", "noto", "openmoji", "twemoji2015"):
        (sheet,) = (out / "cvae" / "grid").glob(f"{style}_*.png")  # one grid per style
        assert sheet in files
        styles[style] = np.stack(grid_tiles(cv2.imread(str(sheet)), 64, nrow, sample["count"])).astype(int)
    assert len(files) == 4
    assert all(tiles.std(axis=(1, 2, 3)).min() > 0 for tiles in styles.values())  # every tile is drawn
    noto, openmoji = styles["noto"], styles["openmoji"]
    assert np.abs(noto - openmoji).max() > 0  # same latents, other style: other drawings


def test_train_small_model_then_sample(headless, tmp_path):
    train_id = node_id("train_small_model", "CVAETrainModel")
    out, files = headless("train_small_model", f"{train_id}.steps=12", f"{train_id}.batch_size=16")
    (train,) = api_inputs("train_small_model", "CVAETrainModel")
    # CVAE Save Model writes into models/cvae, which headless is models/cvae in the output folder; the
    # run lists it with the other files.
    (saved,) = (out / "models" / "cvae").rglob("*.safetensors")
    assert saved in files and not (tmp_path / "models").exists()
    model = load_model(saved, device="cpu")
    assert model.resolution == int(train["resolution"]) == 32
    assert model.config.latent_dim == train["latent_dim"]
    assert model.vocab == {"style": sorted(p.name for p in SAMPLES.iterdir() if p.is_dir())}
    samples = [p for p in files if "train_small_noto" in p.name or "train_small_openmoji" in p.name]
    counts = [s["count"] for s in api_inputs("train_small_model", "CVAESample")]
    assert len(samples) == sum(counts)
    assert all(cv2.imread(str(p)).shape[:2] == (32, 32) for p in samples)
    (plot,) = [p for p in files if "train_small_loss" in p.name]
    assert cv2.imread(str(plot)) is not None
    assert list(out.glob("cvae/train_small_*/model.safetensors")), "no run folder in the output folder"


def test_anomaly_scan(headless):
    out, files = headless("anomaly_scan")
    heat = pngs(out / "cvae" / "anomaly" / "heatmaps")
    assert set(heat) == sample_names(ANOMALY_DEMO)
    # 64 px inputs are drawn at 256 px, so the colour bar below (256 / 8 px) can be read.
    assert all(img.shape[:2] == (256 + 32, 256) for img in heat.values())
    inputs = {name: cv2.cvtColor(load_image(ANOMALY_DEMO / name, 64, "white"), cv2.COLOR_RGB2BGR) for name in heat}
    ranked = sorted((out / "cvae" / "anomaly").glob("ranked_*.png"))
    assert sorted(cv2.imread(str(p)).tobytes() for p in ranked) == sorted(x.tobytes() for x in inputs.values())
    # Where the planted patch of noise is, the heat map differs most from the image under it.
    defect = "noto/1F3A9_defect.png"
    under = cv2.resize(inputs[defect], (256, 256), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    tint = np.abs(heat[defect][:256].astype(np.float32) - under).mean(2)
    windows = cv2.blur(tint, (56, 56))  # the patch: 28 px of the 128 px drawing
    y, x = np.unravel_index(int(windows.argmax()), windows.shape)
    assert 140 <= y <= 196 and 100 <= x <= 156, (y, x)
    # The score table is saved and listed; its rank order is the order of the ranked images.
    (table,) = (out / "cvae" / "anomaly").glob("scores_*.tsv")
    assert table in files
    header, *lines = table.read_text(encoding="utf-8").splitlines()
    assert header.split("\t") == ["rank", "index", "file", "recon_error", "neg_elbo"]
    rows = [line.split("\t") for line in lines]
    assert [r[0] for r in rows] == [str(i) for i in range(1, len(heat) + 1)] and {r[2] for r in rows} == set(heat)
    assert [float(r[4]) for r in rows] == sorted((float(r[4]) for r in rows), reverse=True)  # rank_by neg_elbo
    assert rows[0][2] == defect and "noto/1F47D_openmoji.png" in [r[2] for r in rows[1:3]]  # and the style outlier
    for row, path in zip(rows, ranked):
        assert np.array_equal(cv2.imread(str(path)), inputs[row[2]]), (row, path.name)


# -- the same graphs in a real ComfyUI ---------------------------------------------------------------

@needs_comfyui
def test_comfyui_runs_the_shipped_graphs_to_the_same_pixels(tmp_path, headless):
    """The pack installed as custom_nodes/<another name>: bundled model and samples resolve from the
    pack, not from ComfyUI's folders, and every image comes out as it does headless."""
    from cvae_art.runner import apply_overrides, ui_to_api

    root = tmp_path / "comfyui"
    (root / "custom_nodes").mkdir(parents=True)
    (root / "custom_nodes" / "ComfyUI-CVAE-Art").symlink_to(REPO, target_is_directory=True)
    with comfyui_server(root) as url:
        train = f'{node_id("train_small_model", "CVAETrainModel")}.steps=12'
        for path in shipped():
            overrides = [train] if path.stem == "train_small_model" else []
            wf = ui_to_api(read_workflow(path), NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS)
            assert apply_overrides(wf, overrides, NODE_CLASS_MAPPINGS) == []
            status, reply = request(f"{url}/prompt", {"prompt": wf.api, "extra_data": {"extra_pnginfo": wf.extra_pnginfo()}})
            assert status == 200 and reply["node_errors"] == {}, (path.name, reply)
            history = finish(url, reply["prompt_id"])
            assert history["status"]["status_str"] == "success", (path.name, history["status"])
            ours, _ = headless(path.stem, *overrides)
        theirs = root / "output"
        ours_png, theirs_png = pngs(ours), pngs(theirs)
        assert set(theirs_png) == set(ours_png) and ours_png
        for name, image in ours_png.items():
            # Bit for bit, but for a level of rounding: refined samples pass the encoder twice more,
            # and ComfyUI's process rounds a pixel of one keyframe a level apart (1 of 12,288).
            diff = np.abs(image.astype(int) - theirs_png[name].astype(int))
            assert diff.max() <= 1 and diff.mean() < 1e-3, (name, int(diff.max()), float(diff.mean()))
        assert sorted(p.relative_to(theirs).as_posix() for p in theirs.rglob("*.mp4")) == \
               sorted(p.relative_to(ours).as_posix() for p in ours.rglob("*.mp4"))


def test_bad_input_through_cvae_run_is_a_named_message_and_writes_nothing_outside(tmp_path, monkeypatch, capsys):
    """The reliability corpus through `cvae run`: each case exits non-zero with the node or input
    named, no traceback, nothing written outside the output folder, no input changed."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(comfy, "_output_dir", comfy._output_dir)
    monkeypatch.setattr(comfy, "_input_dir", None)
    monkeypatch.setattr(comfy, "_model_dirs", None)
    out = tmp_path / "out"
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    (broken / "b.jpg").write_bytes(b"")
    walk, restyle = node_id("latent_walk", "CVAERenderWalk"), node_id("folder_style_blend", "CVAERestyleFolder")
    cases = [
        ("latent_walk", [f"{walk}.frames=1000000000"], 2, [f"node {walk}", "frames"]),
        ("latent_walk", [f"{walk}.fps=nan"], 2, [f"node {walk}", "fps"]),
        ("folder_style_blend", [f"{restyle}.target_folder=../escape"], 1, [restyle, "target_folder '../escape' points outside"]),
        ("folder_style_blend", [f"{restyle}.target_folder={tmp_path / 'elsewhere'}"], 1, [restyle, "points outside"]),
        ("folder_style_blend", [f"{restyle}.source_folder={broken}"], 1, [restyle, "no readable image to restyle (2 unreadable"]),
        ("folder_style_blend", [f"{restyle}.background=pinkish"], 1, [restyle, "background colour 'pinkish'"]),
    ]
    before = {p: p.read_bytes() for p in broken.iterdir()}
    for name, sets, code, words in cases:
        argv = ["run", str(WORKFLOWS / f"{name}.json"), "--output-dir", str(out), "-q", *[a for s in sets for a in ("--set", s)]]
        assert cvae(argv) == code, (name, sets)
        err = capsys.readouterr().err
        assert all(w in err for w in words) and "Traceback" not in err, (sets, err)
    assert not (tmp_path / "escape").exists() and not (tmp_path / "elsewhere").exists()
    assert {p: p.read_bytes() for p in broken.iterdir()} == before
