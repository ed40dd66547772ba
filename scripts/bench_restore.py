"""Restoring the model after a range test: an in-memory state copy against Lightning's checkpoint file.

Lightning's ``lr_find`` saves a checkpoint file before the sweep and restores it after; tft-hpo copies
the model's ``state_dict`` in memory (the sweep's optimizer is thrown away with its Trainer, and the
trial's training builds a fresh one, so only the weights need restoring). This prints the median
seconds of each, save plus restore, for the largest model of a study file's search space.

Run: ``python scripts/bench_restore.py [studies/stallion.toml] [--repeats 20]``
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import lightning.pytorch as pl
import torch
from _stallion import ROOT, stallion_path

from tft_hpo.config import load_study_file
from tft_hpo.data import build_datasets
from tft_hpo.model import build_model
from tft_hpo.output import configure_output, install_warning_filters
from tft_hpo.search_space import Architecture


def _memory(trainer: pl.Trainer, model: pl.LightningModule, _: Path) -> None:
    weights = copy.deepcopy(model.state_dict())
    model.load_state_dict(weights)


def _checkpoint(trainer: pl.Trainer, model: pl.LightningModule, path: Path) -> None:
    trainer.save_checkpoint(path)
    model.load_state_dict(torch.load(path, weights_only=False)["state_dict"])
    path.unlink()


def _median_seconds(
    method: Callable[[pl.Trainer, pl.LightningModule, Path], None],
    trainer: pl.Trainer,
    model: pl.LightningModule,
    path: Path,
    repeats: int,
) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        method(trainer, model, path)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study_file", type=Path, nargs="?", default=ROOT / "studies" / "stallion.toml")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    configure_output(verbose=False)
    install_warning_filters()
    config = load_study_file(args.study_file)
    if config.data.source == "stallion" and config.data.path is None:
        data = config.data.model_copy(update={"path": str(stallion_path())})
        config = config.model_copy(update={"data": data})
    datasets = build_datasets(config.data)
    space = config.search_space
    architecture = Architecture(
        hidden_size=space.hidden_size.high,
        attention_head_size=space.attention_head_size.high,
        hidden_continuous_size=space.hidden_continuous_size.high,
        dropout=space.dropout.low,
        gradient_clip_val=space.gradient_clip_val.high,
    )
    model = build_model(datasets.training, architecture, learning_rate=1e-3)
    trainer = pl.Trainer(
        max_steps=1, limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, accelerator="cpu",
    )  # fmt: skip
    trainer.fit(model, train_dataloaders=datasets.train_loader, val_dataloaders=datasets.val_loader)
    parameters = sum(p.numel() for p in model.parameters())
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "range_test.ckpt"
        memory = _median_seconds(_memory, trainer, model, path, args.repeats)
        checkpoint = _median_seconds(_checkpoint, trainer, model, path, args.repeats)
    print(f"{args.study_file.name}: largest model {architecture} ({parameters:,} parameters)")
    print(f"median of {args.repeats}: in-memory copy {memory * 1e3:.1f} ms, checkpoint file {checkpoint * 1e3:.1f} ms")
    print(f"ratio checkpoint / memory: {checkpoint / memory:.1f}")


if __name__ == "__main__":
    main()
