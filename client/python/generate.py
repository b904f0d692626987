#!/usr/bin/env python3
"""Generate calc's protobuf messages and gRPC stubs into the calc_client package.

Runs grpcio-tools' bundled protoc (``python -m grpc_tools.protoc``) over
``proto/`` at the repository root (or ``$CALC_PROTO_DIR``) and writes
``src/calc_client/gen/calculator/v1/calculator_pb2{.py,.pyi,_grpc.py}``.

protoc's Python generator imports sibling files by their proto path
(``from calculator.v1 import calculator_pb2``), which would make ``calculator``
a top-level package. The generated imports are rewritten to live under
``calc_client.gen`` instead, so the descriptors keep their canonical file
names (``calculator/v1/calculator.proto``) while the code stays inside this
package. Nothing else is touched.

Usage: python generate.py   (needs grpcio-tools installed)
The setuptools build (setup.py) calls generate() too, so ``pip install .``
produces the code by itself.
"""
from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE_DIR = HERE / "src" / "calc_client"
GEN_PACKAGE = "calc_client.gen"
GEN_DIR = PACKAGE_DIR / "gen"


def proto_root() -> Path:
    return Path(os.environ.get("CALC_PROTO_DIR", HERE.parent.parent / "proto")).resolve()


def proto_files(root: Path) -> list[str]:
    # proto/google holds googleapis files vendored for the import path only
    # (google/api/annotations.proto): their Python code is the
    # googleapis-common-protos package's google.api, which calculator_pb2
    # imports, so they are not generated here.
    return sorted(
        rel
        for rel in (p.relative_to(root).as_posix() for p in root.rglob("*.proto"))
        if not rel.startswith("google/")
    )


_IMPORT_RE = re.compile(r"^(from|import) (calculator)(\.| )", re.MULTILINE)


def _rewrite_imports(text: str) -> str:
    # "from calculator.v1 import x" -> "from calc_client.gen.calculator.v1 import x"
    return _IMPORT_RE.sub(lambda m: f"{m.group(1)} {GEN_PACKAGE}.{m.group(2)}{m.group(3)}", text)


def generate(out_dir: Path = GEN_DIR, quiet: bool = False) -> list[Path]:
    """Regenerate out_dir from the .proto files; returns the files written."""
    from grpc_tools import protoc  # imported lazily: only the build needs it
    import grpc_tools

    root = proto_root()
    files = proto_files(root)
    if not files:
        raise SystemExit(f"generate: no .proto files under {root}")
    well_known = Path(grpc_tools.__file__).resolve().parent / "_proto"
    with tempfile.TemporaryDirectory(prefix="calc-gen-") as tmp:
        args = [
            "grpc_tools.protoc",
            f"-I{root}",
            f"-I{well_known}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *files,
        ]
        if protoc.main(args) != 0:
            raise SystemExit("generate: protoc failed: " + " ".join(args))
        # Replace the whole output directory so removed protos leave nothing behind.
        staging = Path(tmp)
        written = []
        for path in sorted(staging.rglob("*")):
            if path.is_dir():
                continue
            if path.suffix in (".py", ".pyi"):
                path.write_text(_rewrite_imports(path.read_text()))
            written.append(path.relative_to(staging))
        # every directory becomes a package
        for d in {staging, *[p.parent for p in staging.rglob("*.py")]}:
            for parent in [d, *d.parents]:
                if parent == staging.parent:
                    break
                init = parent / "__init__.py"
                if not init.exists():
                    init.write_text("# Generated package marker. DO NOT EDIT.\n")
                    written.append(init.relative_to(staging))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        shutil.copytree(staging, out_dir)
    if not quiet:
        print(f"generate: {len(files)} proto file(s) from {root} -> {out_dir}", file=sys.stderr)
    return [out_dir / w for w in written]


if __name__ == "__main__":
    generate()
