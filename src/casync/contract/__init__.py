"""The generator contract: the one module where training, evaluation and inference meet.

`checkpoint`: the checkpoint format (`GeneratorContract`: fps, crop size, sample rate, smoothing,
each source's reference, the front end's description) and its safe reading (`load_generator`).
`compatibility`: the one check between a checkpoint, a cache and a front end.
`generate`: the one way from uint8 crops + audio windows + references to generated crops.
Nothing here imports `casync.training`, `casync.evaluation` or `casync.inference`.
"""

from casync.contract.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    GeneratorContract,
    LoadedGenerator,
    SourceReference,
    atomic_torch_save,
    check_resumable,
    generator_contract,
    load_generator,
    read_checkpoint,
    save_generator_checkpoint,
)
from casync.contract.compatibility import check_cache, check_front_end, front_end_name
from casync.contract.generate import CropGenerator

__all__ = [
    "FORMAT_VERSION",
    "CheckpointError",
    "CropGenerator",
    "GeneratorContract",
    "LoadedGenerator",
    "SourceReference",
    "atomic_torch_save",
    "check_cache",
    "check_front_end",
    "check_resumable",
    "front_end_name",
    "generator_contract",
    "load_generator",
    "read_checkpoint",
    "save_generator_checkpoint",
]
