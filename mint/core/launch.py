"""How many processes `accelerate launch` starts for a training or prediction job.

The rules `train_student` and `predict_student` run

    accelerate launch --config_file config/accelerate/<topology>.yaml \
        $(python -m mint.core.launch GPUS) -m mint.core.train ...

where GPUS is the rule's `resources.gpu`. With GPUs visible to the job (CUDA_VISIBLE_DEVICES, as
SLURM sets it) that is one process per GPU, at most as many as are visible; with none (or
`gpu=0`) it is one CPU process in float32, whatever the config says, so the same rule runs on a
laptop, in CI and on a GPU node. The GPU count is read when the job runs, on the node that runs
it, never when Snakemake plans the DAG (a login node without GPUs would plan differently).

    python -m mint.core.launch 4     # prints e.g. "--num_processes 4" on a 4-GPU node
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

# One CPU process: `--cpu` makes accelerate start the script directly (no torchrun, DeepSpeed
# or FSDP launcher) and `--mixed_precision no` keeps a bf16 config from turning on CPU autocast.
CPU_FLAGS = ["--cpu", "--mixed_precision", "no", "--num_processes", "1"]


def visible_gpus() -> int:
    """CUDA devices this process may use (respects CUDA_VISIBLE_DEVICES; 0 without a GPU)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def use_cpu() -> bool:
    """Whether this process computes on the CPU: no GPU, or the launch says so (`--cpu`, `use_cpu: true`)."""
    import torch
    from accelerate.utils import parse_flag_from_env

    return not torch.cuda.is_available() or parse_flag_from_env("ACCELERATE_USE_CPU")


def launch_flags(gpus: int, visible: int | None = None) -> list[str]:
    """`accelerate launch` flags for a job that asked for `gpus` GPUs (`visible`: found on the node)."""
    visible = visible_gpus() if visible is None else visible
    if gpus <= 0 or visible <= 0:
        return list(CPU_FLAGS)
    return ["--num_processes", str(min(gpus, visible))]


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Print the `accelerate launch` process flags for a job.")
    p.add_argument("gpus", type=int, help="GPUs the job asked for (the rule's resources.gpu)")
    print(" ".join(launch_flags(p.parse_args(argv).gpus)))


if __name__ == "__main__":
    main()
