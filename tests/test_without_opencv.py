"""The pack and the library without OpenCV: ComfyUI installs requirements.txt, which leaves cv2
out on purpose. Every node registers, images are read (alpha, grey, 16-bit, EXIF-rotated, GIF),
resized and restyled with Pillow; the heat map, which needs OpenCV's colour map, says what to install.
Each check runs in a fresh interpreter in which `import cv2` fails."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import cv2
import numpy as np
from PIL import Image

from cvae_art.vae_core.images import read_image


def run_without_cv2(code: str) -> dict:
    script = "import sys\nsys.modules['cv2'] = None\n" + textwrap.dedent(code)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def write_images(root):
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    bgra = np.zeros((4, 6, 4), np.uint8)
    bgra[:, :3] = (0, 0, 255, 0)
    bgra[:, 3:] = (255, 0, 0, 255)
    cv2.imwrite(str(root / "alpha.png"), bgra)
    cv2.imwrite(str(root / "grey16.png"), (np.arange(24, dtype=np.uint16).reshape(4, 6) * 2570))
    rgb = rng.integers(0, 256, (8, 12, 3), dtype=np.uint8)
    cv2.imwrite(str(root / "deep.png"), (rgb.astype(np.uint16) * 257)[:, :, ::-1])
    wide = np.zeros((20, 40, 3), np.uint8)
    wide[:, :20] = 255  # left half white: upright, the white half is on top after a 90-degree turn
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: show it rotated 90 degrees clockwise
    Image.fromarray(wide).save(root / "phone.jpg", exif=exif.tobytes(), quality=95)
    Image.fromarray(rgb).save(root / "anim.gif")
    return rgb


def test_exif_orientation_and_gif_with_opencv_present(tmp_path):
    write_images(tmp_path)
    upright = read_image(tmp_path / "phone.jpg")
    assert upright.shape == (40, 20, 3)
    assert upright[:15].mean() > 200 and upright[-15:].mean() < 50  # the white half now on top
    assert read_image(tmp_path / "anim.gif").shape == (8, 12, 3)


def test_the_pack_registers_every_node_and_reads_and_restyles_images_without_opencv(tmp_path, tiny_model_path):
    rgb = write_images(tmp_path / "in" / "disc")
    with_cv2 = {name: read_image(tmp_path / "in" / "disc" / name) for name in ("alpha.png", "grey16.png", "deep.png", "phone.jpg")}
    out = run_without_cv2(f"""
        import json
        from pathlib import Path
        import numpy as np
        import cvae_art
        from cvae_art.vae_core.checkpoint import load_model
        from cvae_art.vae_core.images import load_image, read_image
        from cvae_art.vae_core.plots import loss_plot
        from cvae_art.vae_core.restyle import restyle_folder
        from cvae_art.vae_core.anomaly import heatmap
        import torch
        src = Path({str(tmp_path / "in")!r})
        images = {{n: read_image(src / "disc" / n).tolist() for n in ("alpha.png", "grey16.png", "deep.png", "phone.jpg")}}
        report = restyle_folder(load_model({str(tiny_model_path)!r}, "cpu"), src, {str(tmp_path / "out")!r}, "label=ring", progress=False)
        plot = loss_plot([{{"step": 0, "loss": 3.0}}, {{"step": 10, "loss": 1.0}}])
        try:
            heatmap(torch.rand(1, 4, 4))
            heat = "no error"
        except RuntimeError as err:
            heat = str(err)
        print(json.dumps({{"nodes": sorted(cvae_art.NODE_CLASS_MAPPINGS), "images": images, "written": len(report.written),
                          "failed": report.failed, "crop": list(load_image(src / "disc" / "deep.png", 32).shape),
                          "plot": list(plot.shape), "heat": heat, "cv2": str(__import__("sys").modules["cv2"])}}))
    """)
    from cvae_art.nodes import NODE_CLASS_MAPPINGS

    assert out["cv2"] == "None" and out["nodes"] == sorted(NODE_CLASS_MAPPINGS)
    assert tuple(out["images"]["alpha.png"][0][0]) == (255, 255, 255) and tuple(out["images"]["alpha.png"][0][5]) == (0, 0, 255)
    assert np.array_equal(np.array(out["images"]["deep.png"], np.uint8), rgb)
    for name, expected in with_cv2.items():  # the same pixels as OpenCV's decode (JPEG within rounding)
        assert np.abs(np.array(out["images"][name], int) - expected).max() <= (3 if name.endswith(".jpg") else 0), name
    assert out["written"] == 5 and out["failed"] == [] and out["crop"] == [32, 32, 3]
    assert (tmp_path / "out" / "disc" / "phone.jpg").is_file() and read_image(tmp_path / "out" / "disc" / "anim.gif").shape == (32, 32, 3)
    assert out["plot"][2] == 3 and "pip install opencv-python-headless" in out["heat"]
