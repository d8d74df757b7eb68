"""Hostile output paths for every writer: refused in one line before any work, nothing touched.

Each writer (build --save, sample -o [--specs-dir], analyze -o, scale -o, fit -o, convert -o,
export -o) meets: an existing output (with and without --force), a directory, a symlink to a
file and to a device, a FIFO, a device node, a missing parent, the input file, a read-only
folder (an immutable directory: root ignores permission bits) and a full disk (a small tmpfs).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from regnet_space.cli import main
from regnet_space.infra.atomic import TMP_PREFIX


def _device(folder: Path) -> Path:
    """A private null device node (never the system's /dev/null: code that wrongly replaces a
    device must only ever destroy this copy); a FIFO where mknod is not allowed."""
    node = folder / "nulldev"
    try:
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except (PermissionError, OSError):
        os.mkfifo(node)
    return node


ROOT = Path(__file__).resolve().parents[2]
ZOO = str(ROOT / "examples" / "zoo_errors.csv")
X002 = str(ROOT / "specs" / "x002.yaml")
TINY_SPEC = "name: tiny\nblock: x\nstages:\n  - {width: 16, depth: 1, group_width: 8}\n"
TINY_SPACE = """\
space: tiny
family: regnet
spec: {block: x, stem_width: 16}
sample:
  depth: {dist: uniform, low: 1, high: 4, quantum: 1}
  w0: {values: [16, 24]}
  wa: {values: [8.0]}
  wm: {values: [2.0]}
  group_width: {values: [8]}
"""


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    d = tmp_path / "in"
    d.mkdir()
    (d / "tiny.yaml").write_text(TINY_SPEC)
    (d / "space.yaml").write_text(TINY_SPACE)
    return d


def _argv(writer: str, out: Path, inputs: Path) -> list[str]:
    """The command line of `writer` writing `out`."""
    return {
        "sample": ["sample", str(inputs / "space.yaml"), "--n", "2", "-o", str(out), "--quiet"],
        "scale": ["scale", X002, "--flops-factor", "2", "-o", str(out)],
        "fit": ["fit", "--widths", "24,56,152x4,368x7", "-o", str(out)],
        "analyze": ["analyze", ZOO, "--no-plots", "--resamples", "20", "-o", str(out)],
        "build": ["build", str(inputs / "tiny.yaml"), "--input-size", "32", "--save", str(out)],
    }[writer]


NAMES = {"sample": "s.jsonl", "scale": "o.yaml", "fit": "o.yaml", "analyze": "rep", "build": "w.pt"}
FILE_WRITERS = ["sample", "scale", "fit", "build"]
WRITERS = [*FILE_WRITERS, "analyze"]


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str]:
    status = main(argv)
    err = capsys.readouterr().err
    return status, err


def _one_line_refusal(status: int, err: str, *words: str) -> None:
    assert status == 2, err
    assert err.count("\n") == 1 and err.startswith("regnet-space: "), err
    assert "Traceback" not in err
    for w in words:
        assert w in err, err


def _listing(folder: Path) -> dict[str, tuple[int, int]]:
    """Names, sizes and modification times of everything under folder (links not followed)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(folder))] = (st.st_size, st.st_mtime_ns)
    return out


def _no_temp_files(folder: Path) -> None:
    assert not [p for p in folder.rglob("*") if p.name.startswith(TMP_PREFIX)]


# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("writer", WRITERS)
def test_existing_output_needs_force_and_force_replaces_whole(
    writer: str, tmp_path: Path, inputs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / NAMES[writer]
    assert _run(capsys, _argv(writer, out, inputs))[0] == 0
    before = _listing(tmp_path)
    status, err = _run(capsys, _argv(writer, out, inputs))
    _one_line_refusal(status, err, "--force")
    assert _listing(tmp_path) == before
    assert _run(capsys, [*_argv(writer, out, inputs), "--force"])[0] == 0
    assert set(_listing(tmp_path)) == set(before)  # the same files, nothing left over
    _no_temp_files(tmp_path)


@pytest.mark.parametrize("writer", FILE_WRITERS)
def test_directory_missing_parent_and_devices_are_refused(
    writer: str, tmp_path: Path, inputs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = NAMES[writer]
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / name).mkdir()  # a directory where the file goes
    fifo = tmp_path / f"fifo{Path(name).suffix}"
    os.mkfifo(fifo)
    link_dev = tmp_path / f"dev{Path(name).suffix}"
    link_dev.symlink_to(_device(tmp_path))
    before = _listing(tmp_path)
    cases = [
        (folder / name, "directory"),
        (tmp_path / "missing" / name, "no such directory"),
        (link_dev, "outputs are regular files or new paths"),
    ]
    if writer != "build":  # --save names the weights file; its suffix must be .pt
        cases.append((fifo, "FIFO"))
    for target, words in cases:
        status, err = _run(capsys, [*_argv(writer, target, inputs), "--force"])
        _one_line_refusal(status, err, words)
    assert _listing(tmp_path) == before


@pytest.mark.parametrize("writer", ["scale", "fit"])
def test_a_device_node_is_never_replaced(
    writer: str, tmp_path: Path, inputs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    node = _device(tmp_path)
    kind = os.lstat(node).st_mode
    status, err = _run(capsys, [*_argv(writer, node, inputs), "--force"])
    _one_line_refusal(status, err, "outputs are regular files or new paths")
    assert os.lstat(node).st_mode == kind and not stat.S_ISREG(kind)


def test_symlink_to_a_file_is_written_through(
    tmp_path: Path, inputs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real = tmp_path / "real.yaml"
    real.write_text("old\n")
    link = tmp_path / "link.yaml"
    link.symlink_to(real)
    status, err = _run(capsys, _argv("scale", link, inputs))
    _one_line_refusal(status, err, "already exists")
    assert _run(capsys, [*_argv("scale", link, inputs), "--force"])[0] == 0
    assert link.is_symlink() and real.read_text().startswith("# ")  # the link is kept
    _no_temp_files(tmp_path)


def test_output_same_as_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "x002.yaml"
    shutil.copy(X002, spec)
    before = spec.read_text()
    status, err = _run(capsys, ["scale", str(spec), "--flops-factor", "2", "-o", str(spec)])
    _one_line_refusal(status, err, "already exists")
    assert spec.read_text() == before
    # With --force the input is read whole first, then replaced whole by the scaled spec.
    assert main(["scale", str(spec), "--flops-factor", "2", "-o", str(spec), "--force"]) == 0
    assert spec.read_text() != before and "RegNetX-200MF" in spec.read_text()
    assert main(["report", str(spec)]) == 0


def test_fifo_as_input_or_output_never_blocks(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for argv in (
        ["report", str(fifo)],
        ["sample", str(fifo), "--n", "1", "-o", str(tmp_path / "s.jsonl")],
        ["analyze", str(fifo)],
        ["scale", X002, "--flops-factor", "2", "-o", str(fifo), "--force"],
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "regnet_space", *argv],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.count("\n") == 1 and "regular file" in proc.stderr + "FIFO", proc.stderr


# ---------------------------------------------------------------------------------------------
# Read-only folders and full disks: root ignores permission bits, so an immutable directory
# (chattr +i) and a small tmpfs stand in; both need privileges the test machine may lack.


@pytest.fixture
def immutable_dir(tmp_path: Path) -> Iterator[Path]:
    d = tmp_path / "ro"
    d.mkdir()
    (d / "existing.yaml").write_text("old\n")
    if subprocess.run(["chattr", "+i", str(d)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here (needs CAP_LINUX_IMMUTABLE)")
    yield d
    subprocess.run(["chattr", "-i", str(d)], check=True)


@pytest.mark.parametrize("writer", WRITERS)
def test_read_only_folder_is_refused_before_the_work(
    writer: str, immutable_dir: Path, inputs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, err = _run(capsys, _argv(writer, immutable_dir / NAMES[writer], inputs))
    _one_line_refusal(status, err, "cannot write")
    status, err = _run(
        capsys, [*_argv("scale", immutable_dir / "existing.yaml", inputs), "--force"]
    )
    _one_line_refusal(status, err, "cannot write")
    assert (immutable_dir / "existing.yaml").read_text() == "old\n"


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    d = tmp_path / "full"
    d.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(d)]).returncode:
        pytest.skip("cannot mount a tmpfs here (needs CAP_SYS_ADMIN)")
    try:
        fd = os.open(d / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass
        finally:
            os.close(fd)
        yield d
    finally:
        if subprocess.run(["umount", str(d)]).returncode:
            subprocess.run(["umount", "-l", str(d)], check=True)


@pytest.mark.parametrize("writer", [*WRITERS, "build.safetensors"])
def test_full_disk_is_one_line_and_leaves_nothing(
    writer: str, full_disk: Path, inputs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if writer == "build.safetensors":  # the safetensors writer has its own error type
        argv = _argv("build", full_disk / "w.safetensors", inputs)
    else:
        argv = _argv(writer, full_disk / NAMES[writer], inputs)
    status, err = _run(capsys, argv)
    _one_line_refusal(status, err, "no space left on device")
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler"]


def _convert_argv(
    tmp_path: Path, inputs: Path, out: Path, capsys: Callable[..., object]
) -> list[str]:
    weights = tmp_path / "src.pt"
    if not weights.exists():
        assert main(_argv("build", weights, inputs)) == 0
    return [
        "convert",
        str(weights),
        "--from",
        "hf",
        "--spec",
        str(inputs / "tiny.yaml"),
        "-o",
        str(out),
    ]


def test_convert_and_export_refuse_before_the_work(
    tmp_path: Path, inputs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "c.safetensors"
    argv = _convert_argv(tmp_path, inputs, out, capsys)
    capsys.readouterr()
    assert main(argv) == 0
    before = out.read_bytes()
    _one_line_refusal(*_run(capsys, argv), "already exists")
    assert out.read_bytes() == before
    node = _device(tmp_path)
    _one_line_refusal(*_run(capsys, [*argv[:-1], str(node), "--force"]))
    assert not stat.S_ISREG(os.lstat(node).st_mode)
    # export: the target and the external-data name beside it are checked first
    onnx = tmp_path / "m.onnx"
    (tmp_path / "m.onnx.data").write_text("someone's file\n")
    status, err = _run(
        capsys, ["export", str(inputs / "tiny.yaml"), "--format", "onnx", "-o", str(onnx)]
    )
    _one_line_refusal(status, err, "m.onnx.data", "already exists")
    assert not onnx.exists()
    _no_temp_files(tmp_path)


def test_export_pt2_on_a_full_disk_is_one_line(
    full_disk: Path, inputs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # torch.export.save used to abort the whole process (exit 134) on a full disk.
    out = full_disk / "m.pt2"
    argv = ["export", str(inputs / "tiny.yaml"), "--format", "pt2", "--input-size", "32"]
    status, err = _run(capsys, [*argv, "--no-check", "-o", str(out)])
    _one_line_refusal(status, err, "no space left on device")
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler"]
