"""Testbed: real processes over emulated links, boards and cloud load."""
