"""Raspberry Pi 3B, 4 and 5 on 64-bit Raspberry Pi OS (bookworm: Debian 12, Python 3.11, glibc 2.36)."""

from partnner_tf.boards.base import Board

# Emulation quotas: this machine runs MobileNetV2 224 in LiteRT in 3.9 ms on 2 threads, so a
# board measured at T ms gets 2 CPUs at 3.9/T of a core each. The testbed calibrates them.
_OS = "Raspberry Pi OS (64-bit) bookworm"
_LITERT = ("ai-edge-litert", "2.3.0")

RPI3B = Board(
    name="rpi3b",
    title="Raspberry Pi 3 Model B (1 GB, 4x Cortex-A53 1.2 GHz)",
    arch="aarch64",
    os=_OS,
    python="3.11",
    glibc="2.36",
    interpreter=_LITERT,
    threads=4,
    memory_mb=512,
    storage_mb=4096,
    emulation={"cpus": 2, "quota": 0.0325},
    reference={"mobilenet_v2_224_ms": 120, "source": "estimate: Cortex-A53 class, cf. Coral Dev Board CPU 122 ms"},
)

RPI4 = Board(
    name="rpi4",
    title="Raspberry Pi 4 Model B (2 GB, 4x Cortex-A72 1.5 GHz)",
    arch="aarch64",
    os=_OS,
    python="3.11",
    glibc="2.36",
    interpreter=_LITERT,
    threads=4,
    memory_mb=1024,
    storage_mb=4096,
    emulation={"cpus": 2, "quota": 0.13},
    reference={"mobilenet_v2_224_ms": 30, "source": "published 22-45 ms, 4 threads (PAPER.md)"},
)

RPI5 = Board(
    name="rpi5",
    title="Raspberry Pi 5 (4 GB, 4x Cortex-A76 2.4 GHz)",
    arch="aarch64",
    os=_OS,
    python="3.11",
    glibc="2.36",
    interpreter=_LITERT,
    threads=4,
    memory_mb=2048,
    storage_mb=8192,
    emulation={"cpus": 2, "quota": 0.43},
    reference={"mobilenet_v2_224_ms": 9, "source": "estimate: SSD 24 ms vs 113 ms on a Pi 4 (PAPER.md)"},
)

BOARDS = (RPI3B, RPI4, RPI5)
