"""setuptools hook: generate the protobuf/gRPC code before the package is built.

All metadata lives in pyproject.toml. This file only runs generate.py (with
the grpcio-tools that [build-system] requires) before setuptools looks for
packages, so ``pip install .`` and ``pip install -e .`` produce
src/calc_client/gen by themselves. Without the proto directory (building
from an sdist that already contains the generated code) the existing code is
used as it is.
"""
import sys
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import generate  # noqa: E402

if generate.proto_root().is_dir():
    generate.generate()
elif not (generate.GEN_DIR / "__init__.py").exists():
    raise SystemExit(f"no proto directory at {generate.proto_root()} and no generated code in {generate.GEN_DIR}")

setup()
