"""The device check the Snakefile makes before jobs start on its own machine.

torch is imported only when a preset asks for CUDA, so that loading the workflow stays free of it.
"""

from __future__ import annotations


def check_cuda(preset: str, device: str) -> None:
    """ValueError if the preset asks for ``device: cuda`` and torch, imported here only then, sees no GPU.

    Without torch here (Snakemake run from its own conda environment) nothing is checked: the training
    jobs check when they start, before they train (:func:`optbench.train.build.resolve_device`).
    """
    if device != "cuda":
        return
    try:
        import torch
    except ImportError:
        return
    if not torch.cuda.is_available():
        raise ValueError(
            f"presets.{preset}.device: 'cuda', but torch sees no CUDA device on this machine, where the jobs "
            "would run; use auto or cpu, or run the jobs on GPU nodes (--profile profiles/slurm)"
        )
