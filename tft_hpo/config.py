"""The study file: TOML validated by pydantic into one typed, immutable :class:`StudyConfig`."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    model_validator,
)

from tft_hpo.errors import ConfigError

#: Sections whose change alters what a trial's value means; a stored study refuses a file that
#: differs from it here (``--force`` overrides). Everything else (trial budget, storage, device) may change.
SEARCH_RELEVANT = ("study.direction", "data", "trainer", "search_space", "lr_finder")
_RUNTIME_ONLY = {
    "trainer.accelerator",
    "trainer.devices",
    "lr_finder.cache",
    "data.materialize",
    "data.materialize_max_mb",
}
#: LR range-test heuristics (implemented in :mod:`tft_hpo.lr_heuristics`), in default fallback order.
HeuristicName = Literal["steepest", "valley", "minimum", "lightning", "ensemble"]


DEFAULT_OUTPUT_DIR = "studies"


def default_storage_url(name: str, output_dir: str = DEFAULT_OUTPUT_DIR) -> str:
    """The SQLite URL a study is stored at unless told otherwise: ``sqlite:///<output_dir>/<name>.db``."""
    return f"sqlite:///{Path(output_dir) / name}.db"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IntRange(_Section):
    """An integer range ``[low, high]`` for the sampler, log-scaled if ``log``."""

    low: PositiveInt
    high: PositiveInt
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> IntRange:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        return self


class FloatRange(_Section):
    """A float range ``[low, high]`` for the sampler, log-scaled if ``log``."""

    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> FloatRange:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"low must be > 0 for a log range, got {self.low}")
        return self


class PrunerConfig(_Section):
    """Which Optuna pruner stops poor trials, with its settings (each pruner reads the ones it knows)."""

    type: Literal["median", "percentile", "successive_halving", "hyperband", "none"] = "median"
    n_startup_trials: NonNegativeInt = 4
    n_warmup_steps: NonNegativeInt = 1
    interval_steps: PositiveInt = 1
    percentile: float = Field(25.0, gt=0, lt=100)
    min_resource: PositiveInt = 1
    reduction_factor: int = Field(3, ge=2)


class StudySection(_Section):
    """Name, storage and budget of the Optuna study."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)
    storage: str | None = None
    output_dir: str = DEFAULT_OUTPUT_DIR
    artifact_dir: str | None = None
    direction: Literal["minimize", "maximize"] = "minimize"
    n_trials: PositiveInt = 20
    timeout: PositiveFloat | None = None
    seed: NonNegativeInt = 42
    sampler: Literal["tpe", "random"] = "tpe"
    pruner: PrunerConfig = PrunerConfig()
    heartbeat_interval: PositiveInt = 30
    grace_period: PositiveInt | None = None
    max_retry: NonNegativeInt = 1

    @property
    def storage_url(self) -> str:
        """The storage URL: ``storage`` if given, else ``sqlite:///<output_dir>/<name>.db``."""
        return self.storage or default_storage_url(self.name, self.output_dir)

    @property
    def study_dir(self) -> Path:
        """Where this study's files (checkpoints, plots) go: ``<output_dir>/<name>/``."""
        return Path(self.output_dir) / self.name

    @property
    def artifact_path(self) -> Path:
        """Where trials' artifacts (range-test plots, curves) go: ``artifact_dir``, else ``<study_dir>/artifacts``."""
        return Path(self.artifact_dir) if self.artifact_dir else self.study_dir / "artifacts"


class SyntheticPanelConfig(_Section):
    """Size and seed of the generated demand panel (``source = "synthetic"``)."""

    n_agencies: PositiveInt = 6
    n_skus: PositiveInt = 5
    n_months: int = Field(48, ge=12)
    seed: NonNegativeInt = 0


_SYNTHETIC_ROLES: dict[str, Any] = {
    "time_idx": "time_idx",
    "target": "volume",
    "group_ids": ["agency", "sku"],
    "static_categoricals": ["agency", "sku"],
    "static_reals": [],
    "time_varying_known_categoricals": ["month", "promotion", "holiday"],
    "time_varying_known_reals": ["time_idx", "price", "discount"],
    "time_varying_unknown_categoricals": [],
    "time_varying_unknown_reals": ["volume"],
    "variable_groups": {},
}

STALLION_SPECIAL_DAYS = [
    "easter_day",
    "good_friday",
    "new_year",
    "christmas",
    "labor_day",
    "independence_day",
    "revolution_day_memorial",
    "regional_games",
    "fifa_u_17_world_cup",
    "football_gold_cup",
    "beer_capital",
    "music_fest",
]

_STALLION_ROLES: dict[str, Any] = {
    "time_idx": "time_idx",
    "target": "volume",
    "group_ids": ["agency", "sku"],
    "static_categoricals": ["agency", "sku"],
    "static_reals": ["avg_population_2017", "avg_yearly_household_income_2017"],
    "time_varying_known_categoricals": ["special_days", "month"],
    "time_varying_known_reals": ["time_idx", "price_regular", "discount_in_percent"],
    "time_varying_unknown_categoricals": [],
    "time_varying_unknown_reals": [
        "volume",
        "log_volume",
        "industry_volume",
        "soda_volume",
        "avg_max_temp",
        "avg_volume_by_agency",
        "avg_volume_by_sku",
    ],
    "variable_groups": {"special_days": STALLION_SPECIAL_DAYS},
}

_FILE_ROLES: dict[str, Any] = {
    "time_idx": "time_idx",
    "target": None,
    "group_ids": None,
    "static_categoricals": [],
    "static_reals": [],
    "time_varying_known_categoricals": [],
    "time_varying_known_reals": [],
    "time_varying_unknown_categoricals": [],
    "time_varying_unknown_reals": [],
    "variable_groups": {},
}

_DEFAULT_ROLES = {"synthetic": _SYNTHETIC_ROLES, "stallion": _STALLION_ROLES, "file": _FILE_ROLES}


class DataSection(_Section):
    """Where the data comes from, the role of each column, and how the datasets are cut.

    Column roles left out take the source's defaults (the generated panel's columns, or the
    Stallion tutorial's); with ``source = "file"``, ``target`` and ``group_ids`` are required.
    """

    source: Literal["synthetic", "stallion", "file"] = "synthetic"
    path: str | None = None
    synthetic: SyntheticPanelConfig = SyntheticPanelConfig()
    time_idx: str = "time_idx"
    target: str | None = None
    group_ids: list[str] | None = Field(None, min_length=1)
    static_categoricals: list[str] | None = None
    static_reals: list[str] | None = None
    time_varying_known_categoricals: list[str] | None = None
    time_varying_known_reals: list[str] | None = None
    time_varying_unknown_categoricals: list[str] | None = None
    time_varying_unknown_reals: list[str] | None = None
    variable_groups: dict[str, list[str]] | None = None
    max_encoder_length: PositiveInt = 24
    min_encoder_length: PositiveInt | None = None
    max_prediction_length: PositiveInt = 6
    validation_horizon: PositiveInt | None = None
    batch_size: PositiveInt = 64
    target_normalizer: Literal["auto", "group", "encoder", "none"] = "group"
    target_transformation: Literal["softplus", "log", "log1p", "relu"] | None = "softplus"
    materialize: bool = True
    materialize_max_mb: PositiveFloat = 2048.0

    @model_validator(mode="before")
    @classmethod
    def _fill_roles(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        source = values.get("source", "synthetic")
        defaults = _DEFAULT_ROLES.get(source, {}) if isinstance(source, str) else {}
        filled = dict(values)
        for key, default in defaults.items():
            if filled.get(key) is None and default is not None:
                filled[key] = default
        return filled

    @model_validator(mode="after")
    def _check(self) -> DataSection:
        if self.source == "file":
            if not self.path:
                raise ValueError("path is required when source = 'file'")
            for key in ("target", "group_ids"):
                if getattr(self, key) is None:
                    raise ValueError(f"{key} is required when source = 'file'")
        if self.min_encoder_length is not None and self.min_encoder_length > self.max_encoder_length:
            raise ValueError(
                f"min_encoder_length ({self.min_encoder_length}) must not exceed "
                f"max_encoder_length ({self.max_encoder_length})"
            )
        if self.validation_horizon is not None and self.validation_horizon < self.max_prediction_length:
            raise ValueError(
                f"validation_horizon ({self.validation_horizon}) must be at least "
                f"max_prediction_length ({self.max_prediction_length})"
            )
        return self

    @property
    def horizon(self) -> int:
        """Time steps at the end of every series held out for validation."""
        return self.validation_horizon or self.max_prediction_length


class TrainerSection(_Section):
    """Lightning Trainer settings for each trial's training run."""

    max_epochs: PositiveInt = 10
    limit_train_batches: PositiveInt | float = 30
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto"
    devices: PositiveInt | Literal["auto"] = 1
    precision: Literal["32-true", "64-true", "16-mixed", "bf16-mixed"] = "32-true"

    @model_validator(mode="after")
    def _check(self) -> TrainerSection:
        if isinstance(self.limit_train_batches, float) and not 0 < self.limit_train_batches <= 1:
            raise ValueError(
                "limit_train_batches must be a positive number of batches or a fraction in (0, 1], "
                f"got {self.limit_train_batches}"
            )
        return self


class SearchSpaceSection(_Section):
    """Ranges the sampler draws each trial's architecture and gradient clipping from."""

    hidden_size: IntRange = IntRange(low=8, high=64, log=True)
    attention_head_size: IntRange = IntRange(low=1, high=4)
    hidden_continuous_size: IntRange = IntRange(low=8, high=32, log=True)
    dropout: FloatRange = FloatRange(low=0.1, high=0.3)
    gradient_clip_val: FloatRange = FloatRange(low=0.01, high=1.0, log=True)

    @model_validator(mode="after")
    def _check(self) -> SearchSpaceSection:
        if self.dropout.low < 0 or self.dropout.high >= 1:
            raise ValueError("dropout must lie in [0, 1)")
        if self.gradient_clip_val.low <= 0:
            raise ValueError("gradient_clip_val.low must be > 0")
        return self


class LRFinderSection(_Section):
    """The per-trial LR range test and how its answer sets the trial's learning rate."""

    mode: Literal["window", "suggest", "off"] = "window"
    min_lr: PositiveFloat = 1e-5
    max_lr: PositiveFloat = 1.0
    num_training: int = Field(20, ge=10)
    heuristic: HeuristicName = "minimum"
    fallback_chain: list[HeuristicName] | None = None
    window: float = Field(10.0, gt=1)
    fallback_lr: PositiveFloat = 1e-3
    divergence_factor: float = Field(4.0, gt=1)
    cache: bool = True

    @property
    def chain(self) -> list[str]:
        """Heuristics tried in turn before ``fallback_lr``: ``heuristic``, then ``fallback_chain``
        (default: every other heuristic)."""
        if self.fallback_chain is not None:
            return [self.heuristic, *(name for name in self.fallback_chain if name != self.heuristic)]
        return [self.heuristic, *(name for name in get_args(HeuristicName) if name != self.heuristic)]

    @model_validator(mode="after")
    def _check(self) -> LRFinderSection:
        if self.min_lr >= self.max_lr:
            raise ValueError(f"min_lr ({self.min_lr}) must be below max_lr ({self.max_lr})")
        if not self.min_lr <= self.fallback_lr <= self.max_lr:
            raise ValueError(
                f"fallback_lr ({self.fallback_lr}) must lie in [min_lr, max_lr] = [{self.min_lr}, {self.max_lr}]"
            )
        return self


class StudyConfig(_Section):
    """Everything a study needs, as read from a study file and stored with the study."""

    study: StudySection
    data: DataSection = DataSection()
    trainer: TrainerSection = TrainerSection()
    search_space: SearchSpaceSection = SearchSpaceSection()
    lr_finder: LRFinderSection = LRFinderSection()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict that :func:`config_from_dict` turns back into an equal config."""
        return self.model_dump(mode="json")

    def with_overrides(self, **study_fields: Any) -> StudyConfig:
        """A copy with fields of the ``[study]`` section replaced (``None`` values are ignored)."""
        updates = {k: v for k, v in study_fields.items() if v is not None}
        if not updates:
            return self
        data = self.to_dict()
        data["study"].update(updates)
        return config_from_dict(data, origin="command line")


def config_from_dict(data: dict[str, Any], origin: str) -> StudyConfig:
    """Validate a study dict; errors become one-line :class:`ConfigError` naming ``origin`` and the field."""
    try:
        return StudyConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(f"{origin}: {_describe(error)}") from None


def load_study_file(path: str | Path) -> StudyConfig:
    """Read and validate a TOML study file; the study name defaults to the file's stem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such study file") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read the study file ({error.__class__.__name__})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    study = data.setdefault("study", {})
    if isinstance(study, dict):
        study.setdefault("name", path.stem)
    return config_from_dict(data, origin=str(path))


def search_relevant_differences(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Fields, as dotted paths, where two config dicts differ in what changes a trial's value."""
    flat_stored, flat_current = _flatten(stored), _flatten(current)
    differing = []
    for key in sorted(set(flat_stored) | set(flat_current)):
        if key in _RUNTIME_ONLY or not key.startswith(SEARCH_RELEVANT):
            continue
        if flat_stored.get(key) != flat_current.get(key):
            differing.append(f"{key} (stored {flat_stored.get(key)!r}, file {flat_current.get(key)!r})")
    return differing


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and not key == "variable_groups":
            flat.update(_flatten(value, f"{path}."))
        else:
            flat[path] = value
    return flat


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        location = ".".join(str(p) for p in item["loc"] if not str(p).startswith("function-after"))
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        elif item["type"] == "missing":
            message = "required"
        elif item["type"] == "literal_error":
            message = f"expected {item['ctx']['expected']}, got {item['input']!r}"
        parts.append(f"{location}: {message}" if location else message)
    return "; ".join(parts)
