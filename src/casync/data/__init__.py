"""The versioned preprocessing cache, the pipeline that builds it, and `CASyncDataModule`."""

from casync.data.cache import CacheError, SourceCache, SpeakerCache, open_cache
from casync.data.datamodule import CASyncDataModule
from casync.data.dataset import CacheDataset
from casync.data.split import split_ranges

__all__ = [
    "CASyncDataModule",
    "CacheDataset",
    "CacheError",
    "SourceCache",
    "SpeakerCache",
    "open_cache",
    "split_ranges",
]
