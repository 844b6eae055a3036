"""Video node: render a latent walk straight into a video file, decoding in chunks."""
from __future__ import annotations

import json

from ..vae_core.limits import widget
from ..vae_core.schedule import condition_path, keyframe_path, sweep_condition
from ..vae_core.walk import render_walk
from ..vae_core.video import FORMATS as VIDEO_FORMATS, Audio, available_formats
from . import comfy
from .common import broadcast_latent, cond_input, cond_rows, latent_input, latent_z, model_cond, model_input, path_inputs

FORMATS = available_formats()  # only what this PyAV build can encode


def walk_condition(model, cond, cond_end, keys: int, frames: int, interpolated: bool, path_args: tuple):
    """The condition of every frame: one for all, one per keyframe (in step with the walk),
    one per frame, or a sweep from cond to cond_end planned as the CLI's --cond-from/--cond-to."""
    if cond is None:
        cond = model.condition(None, 1)
    cond = model_cond(model, cond, cond_rows(cond), "cond")
    rows = cond_rows(cond)
    if cond_end is not None:
        cond_end = model_cond(model, cond_end, cond_rows(cond_end), "cond_end")
        if rows != 1 or cond_rows(cond_end) != 1:
            raise ValueError("with cond_end connected, cond and cond_end must each be a single condition")
        method, easing, hold, loop, pingpong = path_args
        return sweep_condition(cond, cond_end, frames, 0 if interpolated else keys, easing, loop, pingpong, 0 if interpolated else hold)
    if rows in (1, frames):
        return cond
    if rows == keys and not interpolated:
        method, easing, hold, loop, pingpong = path_args
        return condition_path([{k: v[i : i + 1] for k, v in cond.items()} for i in range(rows)], frames, easing, loop, pingpong, hold)
    raise ValueError(
        f"cond has {rows} rows; give 1 condition, one per keyframe ({keys}) or one per frame ({frames})"
    )


class CVAERenderWalk:
    DESCRIPTION = (
        "Renders a walk through keyframe latents to a video file (mp4, webm, gif or webp), decoding and "
        "encoding in chunks so long walks use little memory. The style can stay fixed, change per keyframe "
        "(a batch of conditions) or sweep from cond to cond_end. A single latent with K conditions is one "
        "image morphing through K styles (the latent is repeated as K keyframes). The workflow is embedded "
        "in the file."
    )
    CATEGORY = "CVAE/video"
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("path",)
    OUTPUT_TOOLTIPS = ("The video file written.",)
    FUNCTION = "render"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": model_input(),
                "latents": latent_input("Keyframe latents in order; or, with frames = 0, the frames themselves (from CVAE Interpolate). "
                                        "A single latent with a batch of K conditions becomes K keyframes, one per condition."),
                "frames": ("INT", {"default": 96, "min": 0, "max": widget("frames")["max"], "step": 1, "tooltip": "Total frames of the video; 0 = use the latents as the frames, unchanged."}),
                **path_inputs(),
                "format": (FORMATS, {"default": "mp4", "tooltip": "; ".join(f"{n}: {VIDEO_FORMATS[n].about}" for n in FORMATS)
                                     + ". Browsers cannot preview mov."}),
                "fps": ("FLOAT", {"default": 24.0, **widget("fps"), "step": 0.01, "tooltip": "Frames per second."}),
                "quality": ("INT", {"default": 80, "min": 0, "max": 100, "step": 1, "tooltip": "Higher is better and bigger (mp4/webm/webp)."}),
                "loop_count": ("INT", {"default": 0, "min": 0, "max": 1000, "step": 1, "tooltip": "gif/webp: how many extra times to play; 0 = forever."}),
                "size": ("INT", {"default": 256, "min": 0, "max": widget("video_size")["max"], "step": 1, "tooltip": "Video size in pixels (square); 0 = the model's resolution."}),
                "filename_prefix": ("STRING", {"default": "cvae/walk", "tooltip": "Inside the output folder; may hold subfolders; numbered, never overwritten."}),
            },
            "optional": {
                "cond": cond_input("Condition: one for all frames, one per keyframe (CVAE Condition Batch), or one per frame; not connected = unconditional."),
                "cond_end": cond_input("If connected, the style sweeps from cond to cond_end: with two keyframes in step with the walk (holds included), otherwise over the whole video; easing, loop and ping-pong as for the latents."),
                "audio": ("AUDIO", {"tooltip": "A sound track (e.g. from Load Audio) for mp4 or mov (AAC) or webm (Opus), cut or padded with silence to the video's length."}),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    def render(self, model, latents, frames, method, easing, hold, loop, pingpong, format, fps, quality, loop_count,
               size, filename_prefix, cond=None, cond_end=None, audio=None, prompt=None, extra_pnginfo=None):
        keys = latent_z(latents, model, "latents")
        if cond_end is None:
            keys = broadcast_latent(keys, cond)
        interpolated = frames == 0
        path = keys if interpolated else keyframe_path(keys, frames, method, easing, loop, pingpong, hold)
        c = walk_condition(model, cond, cond_end, keys.shape[0], path.shape[0], interpolated, (method, easing, hold, loop, pingpong))
        metadata = {}
        if comfy.metadata_enabled():
            metadata = {k: json.dumps(v) for k, v in (extra_pnginfo or {}).items()}
            if prompt is not None:
                metadata["prompt"] = json.dumps(prompt)
        target = comfy.save_target(filename_prefix)
        out = target.path(VIDEO_FORMATS[format].suffix[1:])
        with comfy.Progress(path.shape[0], "render walk") as bar:
            render_walk(model, path, c, out, fps=fps, quality=quality, size=size or None, metadata=metadata,
                        callback=bar.callback, loop=loop_count, audio=None if audio is None else Audio.from_comfy(audio),
                        codec=format)
        return {"ui": {"images": [target.ui(out)], "animated": (True,)}, "result": (str(out),)}


NODE_CLASS_MAPPINGS = {"CVAERenderWalk": CVAERenderWalk}
NODE_DISPLAY_NAME_MAPPINGS = {"CVAERenderWalk": "CVAE Render Walk"}
