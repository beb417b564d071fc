"""Coral: the Dev Board (Mendel Linux) and a Linux host with the USB Accelerator; both Edge TPU."""

from partnner_tf.boards.base import Board

# The Edge TPU runs only fully int8 models (int8 weights, activations, input and output)
# compiled by edgetpu_compiler; everything else runs on the host CPU.
_EDGETPU = dict(accelerator="edgetpu", delegate="libedgetpu.so.1", quantization="int8")

CORAL_DEV_BOARD = Board(
    name="coral-dev-board",
    title="Coral Dev Board (NXP i.MX 8M, 4x Cortex-A53 1.5 GHz, 1 GB, 8 GB eMMC, Edge TPU)",
    arch="aarch64",
    # Mendel 5.x (Eagle) is Debian 10 buster: its Python and glibc are buster's.
    os="Mendel Linux 5.3 (Debian 10 buster)",
    python="3.7",
    glibc="2.28",
    interpreter=("tflite-runtime", "2.5.0.post1"),
    threads=4,
    memory_mb=512,
    storage_mb=2048,
    emulation={"cpus": 2, "quota": 0.032},
    reference={"mobilenet_v2_224_ms": 122, "edgetpu_ms": 2.6, "source": "Cortex-A53 CPU 122 ms; Edge TPU 2.6 ms (PAPER.md)"},
    notes=(
        "Mendel's Python 3.7 is older than partnner-tf's minimum (3.9) and its interpreter is "
        "Coral's python3-tflite-runtime Debian package: bundles are refused. With Python 3.11 "
        "installed on the board, bundle for generic-aarch64 and compile int8 prefixes for the Edge TPU."
    ),
    **_EDGETPU,
)

CORAL_USB = Board(
    name="coral-usb",
    title="Linux x86_64 host (Debian 12) with a Coral USB Accelerator",
    arch="x86_64",
    os="Debian 12 bookworm",
    python="3.11",
    glibc="2.36",
    interpreter=("ai-edge-litert", "2.3.0"),
    threads=2,
    memory_mb=2048,
    storage_mb=8192,
    # The host CPU runs uncapped; the Edge TPU itself cannot be emulated by a CPU cap.
    emulation={"cpus": 2, "quota": 1.0},
    reference={"edgetpu_ms": 2.6, "source": "Edge TPU 2.6 ms (PAPER.md)"},
    notes="Install libedgetpu1-std from Coral's apt repository on the host for the delegate.",
    **_EDGETPU,
)

BOARDS = (CORAL_DEV_BOARD, CORAL_USB)
