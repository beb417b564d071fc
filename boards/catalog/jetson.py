"""NVIDIA Jetson Nano, CPU only (JetPack 4.6: Ubuntu 18.04, Python 3.6, glibc 2.27)."""

from partnner_tf.boards.base import Board

JETSON_NANO = Board(
    name="jetson-nano",
    title="NVIDIA Jetson Nano 4 GB (4x Cortex-A57 1.43 GHz), CPU only",
    arch="aarch64",
    os="JetPack 4.6 (Ubuntu 18.04)",
    python="3.6",
    glibc="2.27",
    interpreter=("ai-edge-litert", "2.3.0"),
    threads=4,
    memory_mb=2048,
    storage_mb=4096,
    emulation={"cpus": 2, "quota": 0.071},
    reference={"mobilenet_v2_224_ms": 55, "source": "estimate: Cortex-A57, between Pi 3B and Pi 4"},
    notes=(
        "JetPack 4.6's Python 3.6 is older than partnner-tf's minimum (3.9): bundles are refused. "
        "With Python 3.9+ installed on the board, bundle for generic-aarch64 (check its glibc)."
    ),
)

BOARDS = (JETSON_NANO,)
