"""Checkpoints: safetensors only (no pickle), written atomically, self-describing.

A model file is `NAME.safetensors` whose header metadata holds the model config, the label
vocabularies, the format version and the step, so a lone file copied into `models/cvae/` loads;
the same JSON is written beside it as `NAME.json` for people and tools. Training state (optimizer,
discriminator, EMA, history) goes through the same pack/unpack so resume needs no pickle either.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from .device import resolve_device
from .files import atomic_write, write_json
from .limits import check
from .model import CVAE, ModelConfig
from .prior import MixturePrior

FORMAT = "cvae-art"
FORMAT_VERSION = 1
_META_KEY = "cvae"


class CheckpointError(ValueError):
    pass


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict) -> Path:
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={_META_KEY: json.dumps(meta)}))


def read_metadata(path: str | Path) -> dict:
    """The metadata of one of our checkpoints, or a CheckpointError that says what the file is."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(_META_KEY)
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not a safetensors file ({err}); a CVAE checkpoint is a .safetensors written by `cvae train`") from None
    if raw is None:
        raise CheckpointError(
            f"{path} is a safetensors file but not a CVAE checkpoint (no '{_META_KEY}' metadata); "
            "is it a diffusion model or VAE from another tool?"
        )
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: its '{_META_KEY}' metadata is not valid JSON ({err})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: its '{_META_KEY}' metadata is a JSON {type(meta).__name__}, not an object")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: unknown checkpoint format {meta.get('format')!r}")
    version = meta.get("format_version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise CheckpointError(f"{path}: its format_version {version!r} is not a whole number")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {meta['format_version']} is newer than this code "
            f"understands ({FORMAT_VERSION}); update cvae-art"
        )
    return meta


def model_metadata(model: CVAE, step: int, extra: dict | None = None) -> dict:
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": "model",
        "step": int(step),
        "model_config": model.config.to_dict(),
        "vocab": model.vocab,
        **(extra or {}),
    }
    meta.pop("prior", None)  # describes the tensors written with it, never copied from elsewhere
    if model.prior is not None:
        meta["prior"] = {**model.prior.info, "components": model.prior.components}
    return meta


def save_model(model: CVAE, path: str | Path, step: int = 0, extra: dict | None = None, dtype: torch.dtype | None = None) -> Path:
    """Write `path` (.safetensors) and its `.json` twin. `dtype=torch.float16` halves the file.
    `extra` joins the metadata (train_config, validation, ...)."""
    path = Path(path)
    meta = model_metadata(model, step, extra)
    tensors = model.state_dict()
    if dtype is not None:  # the prior's Cholesky factors stay float32: they are small and precision-bound
        tensors = {k: v.to(dtype) if v.is_floating_point() and not k.startswith("prior.") else v for k, v in tensors.items()}
    save_tensors(path, tensors, meta)
    write_json(path.with_suffix(".json"), meta)
    return path


def save_with_prior(src: str | Path, model: CVAE, out: str | Path) -> Path:
    """Write `model` (its weights as loaded from `src`, plus the prior it now has) to `out`,
    keeping `src`'s metadata (training config, validation figures) and its float16 storage."""
    src, out = Path(src), Path(out)
    refuse_input_as_output(out, src)
    meta = read_metadata(src)
    extra = {k: v for k, v in meta.items() if k not in model_metadata(model, 0)}
    return save_model(model, out, int(meta.get("step", 0)), extra, dtype=torch.float16 if stored_in_half(src) else None)


def refuse_input_as_output(out: str | Path, *inputs: str | Path) -> None:
    """A model derived from others is written to a new file, never over one it was made from."""
    if any(Path(out).resolve() == Path(i).resolve() for i in inputs):
        raise CheckpointError(f"--out {out} is an input model; write the new model to a new file")


def stored_in_half(path: str | Path) -> bool:
    """Whether a model file keeps its weights in float16 (a model derived from it should too)."""
    return any(v.dtype == torch.float16 for v in load_file(str(path)).values())


def merge_models(a: CVAE, b: CVAE, weight: float) -> CVAE:
    """A new model whose every weight is (1 - weight) * a's + weight * b's, without a prior.

    Weight-space ensembling (Wortsman et al. 2022, WiSE-FT): where b was fine-tuned from a, the
    weights between them trade what the fine-tune gained against what it cost (BENCHMARKS,
    *An eighth attempt*: the bundled model). Both must share one config and label set; the prior is dropped
    because it described one model's encodings: fit a new one (`fit_prior_on_folder`)."""
    weight = float(check("merge_weight", weight, "weight"))
    if a.config.to_dict() != b.config.to_dict():
        diff = sorted(k for k, v in a.config.to_dict().items() if b.config.to_dict().get(k) != v)
        raise CheckpointError(f"the models differ in {', '.join(diff)}; only models of one architecture and label set merge")
    merged = CVAE(b.config)
    sa, sb = a.state_dict(), b.state_dict()
    merged.load_state_dict({k: torch.lerp(sa[k].float().cpu(), v.float().cpu(), weight)
                            for k, v in sb.items() if not k.startswith("prior.")})
    return merged.eval()


def weights_digest(model: CVAE) -> str:
    """16 hex digits of SHA-256 over the model's config, weights and prior (as float32 on the CPU):
    the same on every device, different when any weight differs. Names a model in manifests."""
    h = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def load_model(path: str | Path, device: str | torch.device | None = None) -> CVAE:
    """A CVAE in eval mode (float32) from one of our checkpoints, on `device` (default: best)."""
    meta = read_metadata(path)
    if meta.get("kind", "model") != "model":
        raise CheckpointError(f"{path} is a training state ({meta.get('kind')}), not a model; load the model.safetensors beside it")
    config = meta.get("model_config")
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: its metadata has no model_config object (found {type(config).__name__})")
    try:  # every size and label list is checked before anything is allocated
        config = ModelConfig.from_dict(config)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: its model_config is invalid ({err})") from None
    model = CVAE(config)
    state = {k: v.float() for k, v in load_file(str(path)).items()}
    if "prior" in meta:
        model.prior = _prior_from(path, meta["prior"], model, state)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise CheckpointError(f"{path}: weights do not match the model config ({err})") from None
    if missing or unexpected:
        raise CheckpointError(f"{path}: weights do not match the model config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.step = int(meta.get("step", 0))  # type: ignore[attr-defined]
    model.source = str(path)  # type: ignore[attr-defined]
    train_config, validation = meta.get("train_config"), meta.get("validation")
    model.train_config = train_config if isinstance(train_config, dict) else {}  # type: ignore[attr-defined]
    model.validation = validation if isinstance(validation, dict) else {}  # type: ignore[attr-defined]
    return model.to(resolve_device(device)).eval()


def _prior_from(path: str | Path, info: Any, model: CVAE, state: dict[str, torch.Tensor]) -> MixturePrior:
    """The stored prior, checked against the model it sits beside before anything is built."""
    if not isinstance(info, dict) or info.get("kind") != "mixture":
        raise CheckpointError(f"{path}: its prior is of an unknown kind ({info.get('kind') if isinstance(info, dict) else info!r})")
    k = info.get("components")
    means = state.get("prior.means")
    if not isinstance(k, int) or not 1 <= k <= 100_000 or means is None:
        raise CheckpointError(f"{path}: its prior metadata or tensors are incomplete (components {k!r})")
    if means.shape != (k, model.config.latent_dim):
        raise CheckpointError(
            f"{path}: its prior is for {means.shape[-1]}-dim latents with {means.shape[0]} components, but the model "
            f"has {model.config.latent_dim}-dim latents and the metadata says {k}; refit it with `cvae fit-prior`"
        )
    for f, labels in model.vocab.items():
        t = state.get(f"prior.label_logp_{f}")
        if t is None or t.shape != (k, len(labels)):
            raise CheckpointError(
                f"{path}: its prior does not match the model's condition {f!r} ({len(labels)} labels); "
                "refit it with `cvae fit-prior`"
            )
    label_moments = all(f"prior.label_mean_{f}" in state for f in model.vocab)
    for f, labels in model.vocab.items() if label_moments else ():
        d = model.config.latent_dim
        mean, cov = state[f"prior.label_mean_{f}"], state.get(f"prior.label_cov_{f}")
        if tuple(mean.shape) != (len(labels), d) or cov is None or tuple(cov.shape) != (len(labels), d, d):
            raise CheckpointError(f"{path}: its prior's label moments do not match the model's condition {f!r}; "
                                  "refit it with `cvae fit-prior`")
    prior = MixturePrior(model.config.latent_dim, k, model.vocab, label_moments)
    prior.info = dict(info)
    return prior


# -- nested state (optimizer state dicts, histories) without pickle ------------------------------
def pack_state(obj: Any, tensors: dict[str, torch.Tensor], prefix: str = "s") -> Any:
    """Replace tensors by references into `tensors`; the rest stays JSON (int keys kept)."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        return {"__dict__": [[k, pack_state(v, tensors, f"{prefix}.{k}")] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [pack_state(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]
    return obj


def unpack_state(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        return {k: unpack_state(v, tensors) for k, v in obj["__dict__"]}
    if isinstance(obj, list):
        return [unpack_state(v, tensors) for v in obj]
    return obj


def save_state(path: str | Path, state: dict) -> Path:
    tensors: dict[str, torch.Tensor] = {}
    packed = pack_state(state, tensors)
    return save_tensors(path, tensors, {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": "train_state", "state": packed})


def load_state(path: str | Path) -> dict:
    meta = read_metadata(path)
    if meta.get("kind") != "train_state":
        raise CheckpointError(f"{path} is a model file, not a training state")
    return unpack_state(meta["state"], load_file(str(path)))
