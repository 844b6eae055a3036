"""Real disk faults, not simulated ones: a full disk and a read-only one, as tiny tmpfs mounts.
Needs the right to mount (root in a container, as here); skipped cleanly elsewhere."""
from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

from cvae_art.cli import main


@pytest.fixture()
def small_fs(tmp_path):
    """A 256 KB tmpfs at tmp_path/fs, unmounted afterwards."""
    mnt = tmp_path / f"fs_{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root): " + done.stderr.decode(errors="replace").strip())
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def remount_read_only(mnt: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True, capture_output=True)


def fill(mnt: Path) -> None:
    """Fill the disk to the last block."""
    fd = os.open(mnt / "ballast", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)


def test_a_full_disk_is_a_message_and_the_old_file_survives(small_fs, tiny_model_path, capsys):
    old = small_fs / "s.png"
    old.write_bytes(b"the earlier grid")
    fill(small_fs)
    assert main(["sample", str(tiny_model_path), "--n", "64", "--out", str(old)]) == 1
    err = capsys.readouterr().err
    assert f"{old}: No space left on device (free some space or choose another folder)" in err and "Traceback" not in err
    assert old.read_bytes() == b"the earlier grid"
    assert sorted(p.name for p in small_fs.iterdir()) == ["ballast", "s.png"]  # no temp file left behind


def test_a_read_only_folder_is_a_message_for_every_command(small_fs, tiny_model_path, shapes_folder, tmp_path, capsys):
    (small_fs / "kept.png").write_bytes(b"kept")
    remount_read_only(small_fs)
    cases = [
        ["sample", str(tiny_model_path), "--n", "2", "--out", str(small_fs / "s.png")],
        ["walk", str(tiny_model_path), "--frames", "4", "--out", str(small_fs / "w.mp4")],
        ["restyle", str(tiny_model_path), str(shapes_folder), str(small_fs / "out"), "--to", "label=ring"],
        ["anomaly", str(tiny_model_path), str(shapes_folder), "--samples", "1", "--csv", str(small_fs / "a.csv")],
        ["train", str(shapes_folder), "--out", str(small_fs / "run"), "--steps", "2", "--resolution", "32",
         "--workers", "0", "--no-fit-prior"],
        ["run", str(Path(__file__).parents[1] / "workflows" / "sample_grid_per_style.json"), "--output-dir",
         str(small_fs / "output"), "-q"],
    ]
    for argv in cases:
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 1, (argv[0], err)
        assert "Read-only file system" in err and str(small_fs) in err and "Traceback" not in err, (argv[0], err)
    assert sorted(p.name for p in small_fs.iterdir()) == ["kept.png"]
