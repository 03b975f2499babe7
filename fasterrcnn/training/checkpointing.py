"""A run's checkpoints: the model as a native file and the state that resumes it (optimizer,
iteration, settings, the best evaluation so far), each written atomically; resuming checks
that both belong to this run."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from fasterrcnn.config_json import config_to_json
from fasterrcnn.distributed import barrier, current_context
from fasterrcnn.inference.detector import Detector
from fasterrcnn.training.options import CHECKPOINT, CHECKPOINT_STATE, TrainingError, TrainOptions
from fasterrcnn.zoo.native import read_native, save_native

logger = logging.getLogger("fasterrcnn")


def non_finite_message(iteration: int, losses: dict[str, Tensor], out: Path) -> str:
    values = ", ".join(f"{k} {v.item():.4g}" for k, v in losses.items())
    state = out / CHECKPOINT_STATE
    if state.is_file():
        saved = torch.load(state, weights_only=True)["iteration"]
        kept = f"the last good checkpoint is {out / CHECKPOINT} (iteration {saved})"
    else:
        kept = "no checkpoint was written yet"
    return (
        f"non-finite loss at iteration {iteration + 1} ({values}); training stopped, {kept}; "
        "try a lower --lr or --clip-grad"
    )


def run_metadata(options: TrainOptions) -> dict[str, str]:
    return {"schedule": options.schedule, "seed": str(options.seed)}


def save_checkpoint(
    model: Detector,
    optimizer: torch.optim.Optimizer,
    options: TrainOptions,
    iteration: int,
    preset: str | None,
    world_size: int,
    best: dict[str, Any] | None = None,
) -> None:
    """The model (native file) and then the state that names it, each written atomically;
    the state's iteration is also in the model file, so a pair cut in half is detected.
    ``best``: the state of the run's best-evaluation tracker, kept for ``--resume``."""
    if current_context().is_main:
        out = options.output
        metadata = {**run_metadata(options), "iteration": str(iteration)}
        save_native(out / CHECKPOINT, model, model.config, preset=preset, metadata=metadata)
        state = {
            "iteration": iteration,
            "optimizer": optimizer.state_dict(),
            "config": config_to_json(model.config),
            "batch_size": options.batch_size,
            "world_size": world_size,
            "seed": options.seed,
            **{key: getattr(options, key) for key in SAMPLING_OPTIONS},
            "best": best,
        }
        temporary = out / f".{CHECKPOINT_STATE}.tmp"
        torch.save(state, temporary)
        os.replace(temporary, out / CHECKPOINT_STATE)
    barrier()


# Options that change which images an iteration draws: a resumed run must keep them.
SAMPLING_OPTIONS = ("drop_empty", "use_crowd", "repeat_threshold")


def resume(
    model: Detector, optimizer: torch.optim.Optimizer, options: TrainOptions, world_size: int
) -> tuple[int, dict[str, Any] | None]:
    """Load the output folder's checkpoint into ``model`` and ``optimizer``: its iteration and
    the state of its best-evaluation tracker (None in a checkpoint without one)."""
    out = options.output
    state_path, model_path = out / CHECKPOINT_STATE, out / CHECKPOINT
    if not state_path.is_file() or not model_path.is_file():
        raise TrainingError(
            f"--resume: no checkpoint in {out} ({CHECKPOINT_STATE} and {CHECKPOINT})"
        )
    try:
        state = torch.load(state_path, weights_only=True, map_location="cpu")
    except Exception as err:  # a truncated or foreign file: one line whatever the reason
        raise TrainingError(f"--resume: {state_path} cannot be read ({err})") from None
    if state.get("config") != config_to_json(model.config):
        raise TrainingError(
            f"--resume: the checkpoint in {out} is of another model configuration than this "
            "run's (other preset, classes or training settings)"
        )
    native = read_native(model_path)
    if native.metadata.get("iteration") != str(state["iteration"]):
        raise TrainingError(f"--resume: {model_path} and {state_path} are of different iterations")
    if (state["batch_size"], state["world_size"], state["seed"]) != (
        options.batch_size,
        world_size,
        options.seed,
    ):
        raise TrainingError(
            f"--resume: the run used batch {state['batch_size']} x {state['world_size']} "
            f"process(es) and seed {state['seed']}; resume it with the same"
        )
    for key in SAMPLING_OPTIONS:  # absent from the checkpoints of earlier versions
        if key in state and state[key] != getattr(options, key):
            raise TrainingError(
                f"--resume: the run used {key} {state[key]}, not {getattr(options, key)}; "
                "resume it with the same"
            )
    model.load_state_dict(native.state_dict)
    optimizer.load_state_dict(state["optimizer"])
    logger.info("resumed from %s at iteration %d", model_path, state["iteration"])
    best = state.get("best")
    return int(state["iteration"]), best if isinstance(best, dict) else None
