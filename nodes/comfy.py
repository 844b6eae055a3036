"""The one place the pack touches ComfyUI-only modules; every one of them is optional.

Inside ComfyUI this uses its output/temp folders, its model-folder registry, its progress bar
(which also carries Cancel) and its interrupt flag. Outside ComfyUI (our headless runner, a
notebook, the tests) the same functions fall back to plain folders, tqdm and nothing.
"""
from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

try:  # ComfyUI's own top-level modules; absent when the pack runs headless.
    import folder_paths
except ImportError:
    folder_paths = None
try:
    import comfy.utils as comfy_utils
except ImportError:
    comfy_utils = None
try:
    import comfy.model_management as model_management
except ImportError:
    model_management = None
try:
    from comfy.cli_args import args as comfy_args
except ImportError:
    comfy_args = None
try:
    from server import PromptServer
except ImportError:
    PromptServer = None


PACK_ROOT = Path(__file__).resolve().parents[1]
MODEL_FOLDER = "cvae"
MODEL_EXTENSIONS = {".safetensors"}
# The bundled default model is listed first in every model combo under this name; the suffix
# keeps it distinct from a same-named file a user copies into models/cvae.
BUNDLED_MODEL_FILE = PACK_ROOT / "assets" / "cvae_emoji_64.safetensors"
BUNDLED_MODEL = f"{BUNDLED_MODEL_FILE.name} [bundled]"

_output_dir: Path | None = None
_input_dir: Path | None = None
_model_dirs: list[Path] | None = None


# -- folders -----------------------------------------------------------------------------------
def set_output_directory(path: str | os.PathLike) -> None:
    """Where headless runs write (the runner's --output); takes precedence over ComfyUI's."""
    global _output_dir
    _output_dir = Path(path).resolve()


def set_input_directory(path: str | os.PathLike) -> None:
    global _input_dir
    _input_dir = Path(path).resolve()


def set_model_directories(paths: list[str | os.PathLike]) -> None:
    """Folders searched for models, in place of ComfyUI's registry (the first one receives saves)."""
    global _model_dirs
    _model_dirs = [Path(p).resolve() for p in paths]


def output_directory() -> Path:
    if _output_dir is not None:
        return _output_dir
    if folder_paths is not None:
        return Path(folder_paths.get_output_directory()).resolve()
    return (Path.cwd() / "output").resolve()


def temp_directory() -> Path:
    if folder_paths is not None:
        return Path(folder_paths.get_temp_directory()).resolve()
    return output_directory().parent / "temp"


def input_directory() -> Path:
    if _input_dir is not None:
        return _input_dir
    if folder_paths is not None:
        return Path(folder_paths.get_input_directory()).resolve()
    return Path.cwd()


def resolve_folder(path: str, what: str = "folder") -> Path:
    """An existing folder: absolute, else relative to the input folder, else to the pack's assets
    (so 'samples/noto' finds the bundled samples on a fresh install)."""
    path = path.strip().strip('"')
    if not path:
        raise ValueError(f"{what} is empty; give a folder path, e.g. samples/noto")
    p = Path(os.path.expanduser(path))
    candidates = [p] if p.is_absolute() else [input_directory() / p, PACK_ROOT / "assets" / p]
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    raise FileNotFoundError(f"{what} {path!r}: no such folder (looked in {', '.join(str(c) for c in candidates)})")


def metadata_enabled() -> bool:
    """False when ComfyUI runs with --disable-metadata (then no prompt/workflow is embedded)."""
    return not (comfy_args is not None and getattr(comfy_args, "disable_metadata", False))


# -- models ------------------------------------------------------------------------------------
def register_model_folder() -> None:
    """models/cvae in ComfyUI's registry, keeping paths extra_model_paths.yaml already added."""
    if folder_paths is None:
        return
    default = os.path.join(folder_paths.models_dir, MODEL_FOLDER)
    folder_paths.add_model_folder_path(MODEL_FOLDER, default)
    paths, _ = folder_paths.folder_names_and_paths[MODEL_FOLDER]
    # add_model_folder_path leaves an empty extension set, which lists every file.
    folder_paths.folder_names_and_paths[MODEL_FOLDER] = (paths, set(MODEL_EXTENSIONS))
    try:
        os.makedirs(default, exist_ok=True)  # so artists see where models go
    except OSError:
        pass


def model_directories() -> list[Path]:
    """Folders searched for models: ComfyUI's 'cvae' registry inside ComfyUI; headless, the folders
    set with set_model_directories, else the save folder (below) and ./models/cvae."""
    if _model_dirs is not None:
        return list(_model_dirs)
    if folder_paths is not None:
        return [Path(p) for p in folder_paths.get_folder_paths(MODEL_FOLDER)]
    return list(dict.fromkeys([model_save_directory(), (Path.cwd() / "models" / MODEL_FOLDER).resolve()]))


def model_save_directory() -> Path:
    """Where CVAE Save Model writes. Inside ComfyUI: the first folder of its 'cvae' registry
    (models/cvae unless extra_model_paths.yaml names another), so Load Model lists the file.
    Headless: the first folder set with set_model_directories, else <output folder>/models/cvae,
    so a `cvae run` keeps everything it wrote under its --output-dir."""
    if _model_dirs is not None:
        return _model_dirs[0]
    if folder_paths is not None:
        return Path(folder_paths.get_folder_paths(MODEL_FOLDER)[0])
    return output_directory() / "models" / MODEL_FOLDER


def model_list() -> list[str]:
    """The bundled model first (listed even before it is installed), then models/cvae."""
    if folder_paths is not None and _model_dirs is None:
        found = folder_paths.get_filename_list(MODEL_FOLDER)
    else:
        names: set[str] = set()
        for root in model_directories():
            if root.is_dir():
                names.update(
                    p.relative_to(root).as_posix() for p in root.rglob("*")
                    if p.suffix.lower() in MODEL_EXTENSIONS and p.is_file()
                )
        found = sorted(names)
    return [BUNDLED_MODEL] + [n for n in found if n != BUNDLED_MODEL]


def resolve_model(name: str) -> Path:
    """The file behind a model combo value, or an error that says where it was looked for."""
    if name == BUNDLED_MODEL:
        if not BUNDLED_MODEL_FILE.is_file():
            raise FileNotFoundError(
                f"the bundled model {BUNDLED_MODEL_FILE} is not installed in this copy of the pack; "
                f"update the pack, or pick a model from models/{MODEL_FOLDER} in 'model_name'"
            )
        return BUNDLED_MODEL_FILE
    # Like folder_paths.get_full_path: a name never climbs out of the model folders.
    rel = os.path.relpath(os.path.join("/", name), "/")
    dirs = model_directories()
    for root in dirs:
        if (root / rel).is_file():
            return root / rel
    raise FileNotFoundError(
        f"model {name!r} not found in {', '.join(str(d) for d in dirs)}; "
        f"put the .safetensors there or pick another model"
    )


def torch_device() -> torch.device:
    """ComfyUI's device (honours --cpu etc.) inside ComfyUI, else the best available one."""
    if model_management is not None:
        return model_management.get_torch_device()
    from ..vae_core.device import resolve_device

    return resolve_device(None)


# -- progress and cancel -----------------------------------------------------------------------
def check_interrupted() -> None:
    """Raise ComfyUI's interrupt exception when the user pressed Cancel; no-op headless."""
    if model_management is not None:
        model_management.throw_exception_if_processing_interrupted()


class Progress:
    """ComfyUI's progress bar (with an optional preview image) or tqdm on a terminal."""

    def __init__(self, total: int, desc: str = "cvae", node_id: str | None = None):
        self.total, self.current = max(int(total), 1), 0
        self._comfy = None
        self._tqdm = None
        if comfy_utils is not None:
            try:
                self._comfy = comfy_utils.ProgressBar(self.total, node_id=node_id)
            except TypeError:  # ComfyUI before node_id existed
                self._comfy = comfy_utils.ProgressBar(self.total)
        else:
            from tqdm.auto import tqdm

            self._tqdm = tqdm(total=self.total, desc=desc, disable=not sys.stderr.isatty(), leave=False)

    def update(self, n: int = 1, info: dict[str, float] | None = None, preview: np.ndarray | None = None) -> None:
        """Advance by n; `info` shows on the terminal bar, `preview` (uint8 HxWx3) in the node."""
        self.to(self.current + n, None, info, preview)

    def to(self, done: int, total: int | None = None, info: dict[str, float] | None = None,
           preview: np.ndarray | None = None) -> None:
        """Set the position (and the total, when it becomes known); checks for Cancel."""
        check_interrupted()
        if total is not None and total != self.total:
            self.total = max(int(total), 1)
            if self._tqdm is not None:
                self._tqdm.total = self.total
        n = min(done, self.total) - self.current
        self.current += n
        if self._comfy is not None:
            image = None
            if preview is not None:
                from PIL import Image

                image = ("PNG", Image.fromarray(preview), 512)
            self._comfy.update_absolute(self.current, self.total, image)
        elif self._tqdm is not None:
            if info:
                self._tqdm.set_postfix({k: f"{v:.4g}" for k, v in info.items()}, refresh=False)
            self._tqdm.update(n)

    def callback(self, done: int, total: int) -> None:
        """For vae_core's callback(done, total) hooks."""
        self.to(done, total)

    def close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# -- saving ------------------------------------------------------------------------------------
@dataclass
class SaveTarget:
    """Where numbered files for one prefix go: folder/{filename}_{counter:05}_.{ext}."""

    folder: Path
    filename: str
    counter: int
    subfolder: str
    kind: str = "output"

    def path(self, ext: str, offset: int = 0) -> Path:
        return self.folder / f"{self.filename}_{self.counter + offset:05}_.{ext}"

    def ui(self, path: Path) -> dict:
        """One entry of a node's ui 'images' list, as the frontend fetches it from /view."""
        return {"filename": path.name, "subfolder": self.subfolder, "type": self.kind}


def inside(root: Path, relative: str, what: str = "filename_prefix", shown: str | None = None) -> Path:
    """root/relative, refused when it would land outside root (absolute paths, '~', '..', symlinks)."""
    root = Path(os.path.abspath(root))
    full = Path(os.path.abspath(root / os.path.normpath(relative)))
    # Also through symlinks: a link planted in the output folder must not lead the write out of it.
    real_root, real = os.path.realpath(root), os.path.realpath(full)
    if os.path.commonpath((root, full)) != str(root) or os.path.commonpath((real_root, real)) != real_root:
        raise ValueError(
            f"{what} {shown if shown is not None else relative!r} points outside {root}; "
            "use a relative name such as 'cvae/walk'"
        )
    return full


def save_target(prefix: str, root: Path | None = None, kind: str = "output") -> SaveTarget:
    """Mirror of folder_paths.get_save_image_path: the prefix may hold subfolders, never escape."""
    root = Path(os.path.abspath(root if root is not None else output_directory() if kind == "output" else temp_directory()))
    given = prefix
    prefix = os.path.normpath(prefix.strip() or "cvae")
    subfolder, filename = os.path.dirname(prefix), os.path.basename(prefix)
    folder = inside(root, subfolder or ".", shown=given)
    if not filename or filename in (".", ".."):
        raise ValueError(f"filename_prefix {given!r} has no file name part; use e.g. 'cvae/image'")
    folder.mkdir(parents=True, exist_ok=True)
    pattern = re.compile(re.escape(filename) + r"_(\d+)_", re.IGNORECASE if os.name == "nt" else 0)
    counters = [int(m.group(1)) for f in os.listdir(folder) if (m := pattern.match(f))]
    return SaveTarget(folder, filename, max(counters, default=0) + 1, subfolder.replace(os.sep, "/"), kind)


# -- server routes -----------------------------------------------------------------------------------
def add_explorer_routes(prefix: str, make_map, make_image, max_body: int) -> bool:
    """POST {prefix}/map (JSON in, JSON out) and {prefix}/decode (JSON in, PNG out) on ComfyUI's
    server; nothing headless. The work runs in one worker thread of its own, so neither the event
    loop nor the prompt executor waits for it. LookupError answers 404, ValueError 400, a body over
    `max_body` bytes 413; every error is JSON {"error": message}."""
    server = getattr(PromptServer, "instance", None)
    if server is None:
        return False
    import asyncio
    import logging
    from concurrent.futures import ThreadPoolExecutor

    from aiohttp import web

    pool = ThreadPoolExecutor(1, thread_name_prefix="cvae-explorer")

    async def call(request, fn):
        body = await request.content.read(max_body + 1)
        if len(body) > max_body:
            return None, web.json_response({"error": f"request over {max_body} bytes"}, status=413)
        try:
            spec = json.loads(body or b"null")
        except (ValueError, UnicodeDecodeError):
            return None, web.json_response({"error": "the request is not JSON"}, status=400)
        if not isinstance(spec, dict):
            return None, web.json_response({"error": "the request must be a JSON object"}, status=400)
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, fn, spec), None
        except LookupError as err:
            return None, web.json_response({"error": str(err).strip("'\"")}, status=404)
        except (ValueError, TypeError) as err:
            return None, web.json_response({"error": str(err)}, status=400)
        except Exception as err:  # noqa: BLE001 - a server route answers, it does not crash the server
            logging.exception("CVAE explorer route failed")
            return None, web.json_response({"error": f"{type(err).__name__}: {err}"}, status=500)

    @server.routes.post(prefix + "/map")
    async def explorer_map(request):
        result, error = await call(request, make_map)
        return error or web.json_response(result)

    @server.routes.post(prefix + "/decode")
    async def explorer_decode(request):
        result, error = await call(request, make_image)
        return error or web.Response(body=result, content_type="image/png", headers={"Cache-Control": "no-store"})

    return True


register_model_folder()
