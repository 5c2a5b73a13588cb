"""The generator contract: the one module where training, evaluation and inference meet.

`record`: what a checkpoint records (`GeneratorContract`: fps, crop size, sample rate, smoothing,
the region mask, each source's reference, the front end's description) and how training makes it.
`checkpoint`: reading it safely (`load_generator`) and writing it.
`compatibility`: the one check between a checkpoint, a cache and a front end.
`generate`: the one way from uint8 crops + audio windows + references to generated crops.
Nothing here imports `casync.training`, `casync.evaluation` or `casync.inference`.
"""

from casync.contract.checkpoint import (
    LoadedGenerator,
    atomic_torch_save,
    check_resumable,
    load_generator,
    read_checkpoint,
    save_generator_checkpoint,
)
from casync.contract.compatibility import check_cache, check_front_end, front_end_name
from casync.contract.generate import CropGenerator, network_inputs
from casync.contract.record import (
    FORMAT_VERSION,
    CheckpointError,
    GeneratorContract,
    SourceReference,
    default_contract,
    generator_contract,
)

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
    "default_contract",
    "front_end_name",
    "generator_contract",
    "load_generator",
    "network_inputs",
    "read_checkpoint",
    "save_generator_checkpoint",
]
