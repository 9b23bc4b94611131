"""Generates the paved.v1 Python modules from ../../proto into paved_pb/
(or the directory given, or $PAVED_PB).

    python generate.py [OUT]

The plugin imports them as ``paved.v1.events_pb2`` etc. (paved_pb/ is put on
the path first). Nothing generated is committed: the protos are the contract.
"""

import os
import pathlib
import sys

from grpc_tools import protoc

HERE = pathlib.Path(__file__).resolve().parent
PROTO = HERE.parent.parent / "proto"


def out_dir() -> pathlib.Path:
    if len(sys.argv) > 1:
        return pathlib.Path(sys.argv[1])
    return pathlib.Path(os.environ.get("PAVED_PB") or HERE / "paved_pb")


def main() -> int:
    out = out_dir()
    out.mkdir(parents=True, exist_ok=True)
    well_known = pathlib.Path(protoc.__file__).parent / "_proto"
    files = sorted(str(p.relative_to(PROTO)) for p in (PROTO / "paved" / "v1").glob("*.proto"))
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTO}",
            f"-I{well_known}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            *files,
        ]
    )
    for package in (out / "paved", out / "paved" / "v1"):
        (package / "__init__.py").touch()
    return code


if __name__ == "__main__":
    sys.exit(main())
