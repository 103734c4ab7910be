"""Deterministic torch blocks (head training, projection, fine-tuning) switch torch's deterministic
kernels on and back off without importing torch's compiler, which the public switch imports
(~1.7 CPU s per job for a compiler the project never runs)."""

from __future__ import annotations

import subprocess
import sys

CHECKS = """
import sys, torch
from maskbench.training.determinism import deterministic_algorithms
from maskbench.training.train_head import torch_session
assert not torch.are_deterministic_algorithms_enabled()
with deterministic_algorithms():
    assert torch.are_deterministic_algorithms_enabled()
    assert not torch.is_deterministic_algorithms_warn_only_enabled()
assert not torch.are_deterministic_algorithms_enabled()
with deterministic_algorithms(warn_only=True):
    assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    with deterministic_algorithms():
        assert not torch.is_deterministic_algorithms_warn_only_enabled()
    assert torch.is_deterministic_algorithms_warn_only_enabled()  # the caller's setting back, warn_only too
assert not torch.are_deterministic_algorithms_enabled()
with torch_session(1, seed=0):
    assert torch.are_deterministic_algorithms_enabled()
assert not torch.are_deterministic_algorithms_enabled()
print("compiler loaded:", "torch._inductor" in sys.modules)
"""


def test_deterministic_blocks_set_and_restore_the_switch_without_loading_the_compiler():
    # a fresh interpreter: another test may have loaded the compiler in this one
    proc = subprocess.run([sys.executable, "-c", CHECKS], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "compiler loaded: False"


def test_the_compilers_flag_is_set_too_where_the_compiler_is_loaded():
    code = ("import torch, torch._inductor.config as c\n"
            "from maskbench.training.determinism import deterministic_algorithms\n"
            "with deterministic_algorithms():\n    print(c.deterministic, torch.are_deterministic_algorithms_enabled())\n"
            "print(c.deterministic)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["True", "True", "False"]
