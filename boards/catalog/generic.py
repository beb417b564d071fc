"""Generic Linux hosts (Debian 12 class: Python 3.11, glibc 2.36), x86_64 and aarch64."""

from partnner_tf.boards.base import Board

_LITERT = ("ai-edge-litert", "2.3.0")

GENERIC_X86_64 = Board(
    name="generic-x86_64",
    title="Generic Linux x86_64 host (Python 3.11, glibc 2.36)",
    arch="x86_64",
    os="Debian 12 bookworm or newer",
    python="3.11",
    glibc="2.36",
    interpreter=_LITERT,
    threads=2,
    memory_mb=4096,
    storage_mb=8192,
    emulation={"cpus": 2, "quota": 1.0},
    reference={"mobilenet_v2_224_ms": 3.9, "source": "measured on this machine, 2 threads (MEASURED.md)"},
)

GENERIC_AARCH64 = Board(
    name="generic-aarch64",
    title="Generic Linux aarch64 host (Python 3.11, glibc 2.36)",
    arch="aarch64",
    os="Debian 12 bookworm or newer",
    python="3.11",
    glibc="2.36",
    interpreter=_LITERT,
    threads=4,
    memory_mb=2048,
    storage_mb=8192,
    emulation={"cpus": 2, "quota": 1.0},
)

BOARDS = (GENERIC_X86_64, GENERIC_AARCH64)
