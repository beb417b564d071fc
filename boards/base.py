"""The board record: what a target board runs, what it can hold, and how the testbed emulates it."""

from dataclasses import dataclass, field
from typing import Optional

#: The oldest manylinux level pip wheels are built for (manylinux2014 = glibc 2.17).
_MANYLINUX_FLOOR = 17


@dataclass(frozen=True)
class Board:
    """One target board. Budgets are what partnner-tf may use, not the board's total.

    Attributes:
        name: registry key, e.g. ``"rpi4"``.
        title: a human name, e.g. ``"Raspberry Pi 4 Model B (4 GB)"``.
        arch: CPU architecture as ``uname -m`` says it (``"aarch64"``, ``"x86_64"``).
        os: the stock operating system the other fields describe.
        python: the stock Python as ``"major.minor"``.
        glibc: the C library level as ``"major.minor"``; bounds the manylinux wheels that run.
        interpreter: (pip package, version) of the TFLite interpreter installed there.
        threads: interpreter threads (the board's big cores).
        accelerator: ``None``, or the accelerator's name (``"edgetpu"``).
        delegate: shared library of the accelerator's TFLite delegate, or ``None``.
        quantization: what the accelerator needs (``"int8"``: full int8 with int8 I/O), or None.
        memory_mb: RAM budget for the edge service (the rest is the OS's and the camera's).
        storage_mb: disk budget for the installed service, its venv and prefixes.
        emulation: testbed preset ``{"cpus": n, "quota": q}``: n CPUs, each capped to a fraction
            q of a core of this machine (cgroup cfs quota per CPU).
        reference: the published figure the emulation is calibrated against.
        notes: anything a user must know (e.g. why bundles are refused).
    """

    name: str
    title: str
    arch: str
    os: str
    python: str
    glibc: str
    interpreter: tuple
    threads: int
    memory_mb: int
    storage_mb: int
    emulation: dict
    accelerator: Optional[str] = None
    delegate: Optional[str] = None
    quantization: Optional[str] = None
    reference: dict = field(default_factory=dict)
    notes: str = ""

    @property
    def python_tag(self):
        """CPython wheel tag, e.g. ``"cp311"``."""
        return "cp" + self.python.replace(".", "")

    @property
    def pip_platforms(self):
        """Every ``--platform`` tag pip must be given: pip does not widen one tag to older glibc levels."""
        major, minor = (int(p) for p in self.glibc.split("."))
        if major != 2 or minor < _MANYLINUX_FLOOR:
            return ()
        tags = [f"manylinux_2_{m}_{self.arch}" for m in range(minor, _MANYLINUX_FLOOR - 1, -1)]
        return tuple(tags + [f"manylinux2014_{self.arch}"])

    def to_dict(self):
        """A JSON-ready view (``partnner board show --json``, bundle config)."""
        return {
            "name": self.name,
            "title": self.title,
            "arch": self.arch,
            "os": self.os,
            "python": self.python,
            "glibc": self.glibc,
            "pip_platforms": list(self.pip_platforms),
            "interpreter": {"package": self.interpreter[0], "version": self.interpreter[1]},
            "threads": self.threads,
            "accelerator": self.accelerator,
            "delegate": self.delegate,
            "quantization": self.quantization,
            "memory_mb": self.memory_mb,
            "storage_mb": self.storage_mb,
            "emulation": dict(self.emulation),
            "reference": dict(self.reference),
            "notes": self.notes,
        }
