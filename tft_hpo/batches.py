"""In-memory batches: a dataset's samples collated once per process, then sliced into every batch.

pytorch-forecasting builds each sample in Python (``TimeSeriesDataSet.__getitem__``) every time a
dataloader draws it; a study draws the same samples in every trial. :func:`materialize` runs the
dataset's own ``__getitem__`` and collate once over all samples and keeps the result as padded
tensors; :class:`InMemoryLoader` cuts batches from them that equal, tensor for tensor, what
``TimeSeriesDataSet.to_dataloader`` yields for the same samples.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from pytorch_forecasting import TimeSeriesDataSet
from torch.utils.data import BatchSampler, RandomSampler, SequentialSampler

#: A batch as TimeSeriesDataSet's collate gives it: ``(x, (target, weight))``.
Batch = tuple[dict[str, torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]]

# Fields padded along the encoder's or the decoder's time axis (the others hold one row per sample).
_TIME_AXIS = {
    "encoder_cat": "encoder",
    "encoder_cont": "encoder",
    "encoder_target": "encoder",
    "decoder_cat": "decoder",
    "decoder_cont": "decoder",
    "decoder_target": "decoder",
    "decoder_time_idx": "decoder",
    "weight": "decoder",
}
_CHUNK = 2048


class MaterializeError(ValueError):
    """The dataset cannot be held in memory (too large, or a layout the in-memory batches do not cover)."""


@dataclass(frozen=True)
class SampleStore:
    """Every sample of a dataset, collated and padded to the dataset's maximum encoder and decoder lengths."""

    x: dict[str, torch.Tensor]
    weight: torch.Tensor | None

    def __len__(self) -> int:
        return len(self.x["encoder_lengths"])

    @property
    def nbytes(self) -> int:
        """Bytes held by the stored tensors."""
        tensors = [*self.x.values(), *([] if self.weight is None else [self.weight])]
        return sum(t.element_size() * t.numel() for t in tensors)

    def batch(self, indices: torch.Tensor) -> Batch:
        """The samples at ``indices``, padded to their own longest encoder and decoder, as the collate pads them."""
        lengths = {
            "encoder": int(self.x["encoder_lengths"][indices].max()),
            "decoder": int(self.x["decoder_lengths"][indices].max()),
        }
        x = {name: _take(tensor, indices, lengths.get(_TIME_AXIS.get(name, ""))) for name, tensor in self.x.items()}
        weight = None if self.weight is None else _take(self.weight, indices, lengths["decoder"])
        return x, (x["decoder_target"], weight)


def estimate_nbytes(dataset: TimeSeriesDataSet) -> int:
    """Bytes :func:`materialize` will hold for ``dataset``, from the layout of its first sample.

    Raises :class:`MaterializeError` for a dataset the in-memory batches do not cover (several targets).
    """
    _require_single_target(dataset)
    return len(dataset) * _bytes_per_sample(dataset)


def materialize(dataset: TimeSeriesDataSet) -> SampleStore:
    """Every sample of ``dataset``, built and collated once (see :func:`estimate_nbytes` for its size)."""
    _require_single_target(dataset)
    lengths = _max_lengths(dataset)
    store: dict[str, torch.Tensor] = {}
    for start in range(0, len(dataset), _CHUNK):
        stop = min(start + _CHUNK, len(dataset))
        for name, tensor in _fields(dataset, range(start, stop)).items():
            if name not in store:
                store[name] = _padded_zeros(tensor, len(dataset), lengths.get(_TIME_AXIS.get(name, "")))
            rows = store[name][start:stop]
            (rows[:, : tensor.shape[1]] if name in _TIME_AXIS else rows).copy_(tensor)
    weight = store.pop("weight", None)
    return SampleStore(x=store, weight=weight)


class InMemoryLoader:
    """Batches of a :class:`SampleStore`, drawn as ``TimeSeriesDataSet.to_dataloader`` draws them.

    With ``train=True`` the samples are shuffled anew each epoch and the last incomplete batch is
    dropped (when there is more than one batch); otherwise batches come in order, the last one
    possibly smaller. Each pass draws from torch's global random generator exactly as a torch
    DataLoader does, so that after ``pl.seed_everything`` a trial sees the same batches, and draws
    the same dropout masks, whether its data comes from memory or from the dataset.
    """

    def __init__(self, store: SampleStore, batch_size: int, train: bool) -> None:
        self.store = store
        self.batch_size = batch_size
        self.train = train
        self._drop_last = train and len(store) > batch_size

    def __len__(self) -> int:
        full, rest = divmod(len(self.store), self.batch_size)
        return full + (1 if rest and not self._drop_last else 0)

    def __iter__(self) -> Iterator[Batch]:
        # The base seed a torch DataLoader draws for its workers on every pass; drawn here too (and
        # unused) so that the global random stream stays in step with the dataset's own dataloader.
        torch.empty((), dtype=torch.int64).random_()
        sampler = RandomSampler(range(len(self.store))) if self.train else SequentialSampler(range(len(self.store)))
        for indices in BatchSampler(sampler, self.batch_size, self._drop_last):
            yield self.store.batch(torch.tensor(indices))


def _require_single_target(dataset: TimeSeriesDataSet) -> None:
    if dataset.multi_target:
        raise MaterializeError("datasets with several targets are not supported")


def _fields(dataset: TimeSeriesDataSet, indices: range) -> dict[str, torch.Tensor]:
    """The collated samples at ``indices`` as one flat dict: ``x``'s fields, and ``weight`` if the data has one."""
    x, (_, weight) = dataset._collate_fn([dataset[i] for i in indices])
    return x if weight is None else {**x, "weight": weight}


def _max_lengths(dataset: TimeSeriesDataSet) -> dict[str, int]:
    return {"encoder": dataset.max_encoder_length, "decoder": dataset.max_prediction_length}


def _bytes_per_sample(dataset: TimeSeriesDataSet) -> int:
    lengths = _max_lengths(dataset)
    return sum(
        _padded_zeros(tensor, 1, lengths.get(_TIME_AXIS.get(name, ""))).nbytes
        for name, tensor in _fields(dataset, range(1)).items()
    )


def _padded_zeros(tensor: torch.Tensor, rows: int, length: int | None) -> torch.Tensor:
    """Zeros (the collate's padding) for ``rows`` samples shaped like ``tensor``, ``length`` long in time."""
    shape = [rows, *tensor.shape[1:]]
    if length is not None:
        shape[1] = length
    return torch.zeros(shape, dtype=tensor.dtype)


def _take(tensor: torch.Tensor, indices: torch.Tensor, length: int | None) -> torch.Tensor:
    return tensor[indices] if length is None else tensor[:, :length][indices]
