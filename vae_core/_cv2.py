"""The one place OpenCV is imported, and only when it is there.

The pack must load without it: ComfyUI installs a custom node's requirements.txt line by line,
and OpenCV is left out of it on purpose (opencv-python, -headless and -contrib provide the same
cv2 and break each other side by side; install.py adds the headless one only where no cv2
imports). Image reading and resizing fall back to Pillow; what truly needs OpenCV says so.
"""
from __future__ import annotations

from types import ModuleType

try:
    import cv2 as _cv2
except ImportError:  # also a broken cv2 (a missing libGL): the fallbacks are what run then
    _cv2 = None

cv2: ModuleType | None = _cv2
# What a failed decode or resize may raise, for `except` clauses that also catch our own errors.
ERRORS: tuple[type[BaseException], ...] = (_cv2.error,) if _cv2 is not None else ()


def require_cv2(what: str) -> ModuleType:
    """OpenCV, or an error that names the package and what needed it."""
    if cv2 is None:
        raise RuntimeError(f"{what} needs OpenCV, which is not installed: pip install opencv-python-headless "
                           "(or run the pack's install.py, which adds it only where no OpenCV is present)")
    return cv2
