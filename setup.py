"""Build step: ship the zoo specs, design spaces and example data inside the package.

The repository keeps one copy of each under specs/ and examples/; the wheel carries them
under regnet_space/presets/ so that `regnet-space report y040` works from any folder.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHIPPED = (("specs", "*.yaml"), ("specs/spaces", "*.yaml"), ("examples", "*.csv"))


class BuildWithPresets(build_py):
    """build_py that also copies the shipped data files into the built package."""

    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "regnet_space" / "presets"
        for folder, pattern in SHIPPED:
            for src in sorted((ROOT / folder).glob(pattern)):
                dst = target / folder / src.name
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)


setup(cmdclass={"build_py": BuildWithPresets})
