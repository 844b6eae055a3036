"""Run by ComfyUI-Manager after requirements.txt: add OpenCV only where no cv2 exists.

opencv-python, -headless and -contrib all provide `cv2` and break each other when installed
side by side, and many ComfyUI environments already have one of them.
"""
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("cv2") is None:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "opencv-python-headless>=4.8"])
