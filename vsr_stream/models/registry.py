"""Model registry: a descriptor per model, and building a ready module from a name and scale.

A :class:`ModelDescriptor` states what a caller must know before running a model (scales,
half precision, tile context, size limits). Descriptors are registered explicitly in
``vsr_stream/models/__init__.py``; nothing is discovered by scanning files.

Every model maps ``(N, 3, H, W)`` in [0, 1] to ``(N, 3, H*s, W*s)`` in the input's dtype and
does not clamp: the caller clamps.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from vsr_stream.errors import ConfigError, DuplicateModelError, ModelInputError, UnknownModelError

logger = logging.getLogger(__name__)

SHIPPED_WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
_NESTED_STATE_KEYS = ("state_dict", "params")


@dataclass(frozen=True)
class ModelDescriptor:
    """What the pipeline knows about a model before building it.

    Attributes:
        name: registry key, e.g. ``"fsrcnn-56"``.
        scales: integer upscaling factors the model can be built for.
        builder: ``builder(scale)`` returns a fresh module with default initialisation.
        learned: True if the model has trainable weights; False for interpolation.
        supports_half: True if float16 and bfloat16 inputs are supported.
        receptive_radius_px: LR pixels of context a tile needs on every side so that its
            upscaled interior equals the whole-frame result (the maximum over ``scales``).
        min_size_px: smallest input H and W accepted.
        description: one line for humans (``--list-models``).
        family: architecture family, e.g. ``"fsrcnn"`` or ``"interpolation"``.
    """

    name: str
    scales: tuple[int, ...]
    builder: Callable[[int], nn.Module]
    learned: bool
    supports_half: bool
    receptive_radius_px: int
    min_size_px: int
    description: str
    family: str


_registry: dict[str, ModelDescriptor] = {}


def register(desc: ModelDescriptor) -> None:
    """Add ``desc`` to the registry. Raises DuplicateModelError if its name is taken."""
    if desc.name in _registry:
        raise DuplicateModelError(f"model {desc.name!r} is already registered")
    _registry[desc.name] = desc


def get(name: str) -> ModelDescriptor:
    """Descriptor of model ``name``. Raises UnknownModelError (a LookupError) naming the known models."""
    try:
        return _registry[name]
    except KeyError:
        known = ", ".join(names())
        raise UnknownModelError(f"unknown model {name!r}; known models: {known}") from None


def names() -> tuple[str, ...]:
    """Names of every registered model, sorted."""
    return tuple(sorted(_registry))


def descriptors() -> tuple[ModelDescriptor, ...]:
    """Every registered descriptor, sorted by name."""
    return tuple(_registry[name] for name in names())


def shipped_weights_path(name: str, scale: int) -> Path:
    """Where the package keeps trained weights of ``name`` at ``scale`` (the file may not exist)."""
    return SHIPPED_WEIGHTS_DIR / f"{name}_x{scale}.safetensors"


def build_model(
    name: str,
    scale: int,
    weights: str | Path | None = None,
    allow_random: bool = False,
) -> nn.Module:
    """Build registered model ``name`` for ``scale``, ready for inference.

    Weights come from ``weights`` if given, else from :func:`shipped_weights_path` if that
    file exists; a learned model with neither keeps its random initialisation only when
    ``allow_random`` (tests and benchmarks; a warning is logged). Returns a float32 module
    on the CPU, in eval mode, with ``requires_grad`` False on every parameter.

    Raises:
        UnknownModelError: ``name`` is not registered.
        ModelInputError: ``scale`` is not one of the descriptor's ``scales``.
        ConfigError: ``weights`` given for a model without weights; a learned model has no
            weights and ``allow_random`` is False; the weights file is unusable.
    """
    module = untrained_model(name, scale)
    weights_path = _resolve_weights(get(name), scale, weights, allow_random)
    if weights_path is not None:
        load_weights(module, weights_path)
    module.eval()
    module.requires_grad_(False)
    return module


def untrained_model(name: str, scale: int) -> nn.Module:
    """Registered model ``name`` for ``scale`` as its builder initialises it, never loading weights
    (the start of a training run: shipped weights must not leak into it). Float32, CPU, train mode.

    Raises UnknownModelError for an unregistered ``name``, ModelInputError for an unsupported ``scale``.
    """
    desc = get(name)
    if not isinstance(scale, int) or scale not in desc.scales:
        raise ModelInputError(f"model {name!r} supports scales {desc.scales}, not {scale!r}")
    return desc.builder(scale)


def shipped_weights_file(stem: str) -> Path:
    """The packaged weights file ``<stem>.safetensors`` (config syntax ``weights = "@<stem>"``).

    Raises ConfigError naming the shipped files if there is none by that name.
    """
    path = SHIPPED_WEIGHTS_DIR / f"{stem}.safetensors"
    if not stem or Path(stem).name != stem or not path.is_file():
        shipped = sorted(p.stem for p in SHIPPED_WEIGHTS_DIR.glob("*.safetensors"))
        raise ConfigError(f"no shipped weights named {stem!r}; shipped: {', '.join(shipped) or 'none'}")
    return path


def configured_weights_path(weights: str | Path) -> Path:
    """A weights file as configs name it: a path, or ``"@stem"`` for a shipped file.
    Raises ConfigError for an unknown ``@stem``."""
    return shipped_weights_file(str(weights)[1:]) if str(weights).startswith("@") else Path(weights)


def weights_file(name: str, scale: int, weights: str | Path | None) -> Path | None:
    """The weights file model ``name`` loads at ``scale``: ``weights`` (a path, or ``"@stem"`` for a
    shipped file), else the shipped file if there is one; None for a model without weights or a
    learned one with none here. Raises ConfigError for an unknown ``@stem``."""
    if not get(name).learned:
        return None
    if weights is not None:
        return configured_weights_path(weights)
    shipped = shipped_weights_path(name, scale)
    return shipped if shipped.is_file() else None


def _resolve_weights(
    desc: ModelDescriptor, scale: int, weights: str | Path | None, allow_random: bool
) -> Path | None:
    if not desc.learned:
        if weights is not None:
            raise ConfigError(f"model {desc.name!r} has no weights to load (got weights={weights})")
        return None
    found = weights_file(desc.name, scale, weights)
    if found is not None:
        return found
    shipped = shipped_weights_path(desc.name, scale)
    if not allow_random:
        raise ConfigError(
            f"model {desc.name!r} has no trained weights for x{scale} (looked for {shipped}); "
            "pass weights= or allow random weights (tests/benchmarks only)"
        )
    logger.warning("model %s x%d: no trained weights, using random initialisation", desc.name, scale)
    return None


def load_weights(module: nn.Module, path: str | Path) -> None:
    """Load the weights file ``path`` into ``module`` in place, strictly (every key and shape).

    ``.safetensors`` files are read with safetensors; any other file with
    ``torch.load(weights_only=True)`` and must hold a dict of tensors, at the top level or
    under a ``'state_dict'`` or ``'params'`` key. Values are copied into the module's
    existing parameters, keeping their dtype and device.

    Raises:
        ConfigError: the file is missing or unreadable, does not hold a dict of tensors, or
            its keys or shapes differ from the module's; the message names the path.
    """
    path = Path(path)
    state = read_weights(path)
    check_state_fits(module, state, path)
    module.load_state_dict(state, strict=True)


def load_matching_weights(module: nn.Module, path: str | Path) -> list[str]:
    """Load the tensors of ``path`` whose key and shape match ``module``'s; the rest keep their values.

    For starting a network from a relative's weights, e.g. an x3 model from the x4 model's body
    (every layer but the scale-specific tail). Returns the module keys that were *not* loaded.

    Raises:
        ConfigError: the file is unreadable, or not a single tensor of it fits the module.
    """
    path = Path(path)
    state = read_weights(path)
    own = module.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    if not fitting:
        raise ConfigError(f"weights file {path}: no tensor fits {type(module).__name__} (no shared key and shape)")
    module.load_state_dict(fitting, strict=False)
    return sorted(own.keys() - fitting.keys())


def save_weights(module: nn.Module, path: str | Path) -> None:
    """Write ``module``'s state dict to ``path`` (which must end in ``.safetensors``) as safetensors.

    Raises ConfigError for another suffix (load_weights would not read it back as
    safetensors) and OSError if the file cannot be written.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ConfigError(f"weights are saved as safetensors; {path} must end in .safetensors")
    tensors = {key: value.detach().cpu().contiguous() for key, value in module.state_dict().items()}
    save_file(tensors, str(path))


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file (safetensors, or a weights-only torch file, nested state dicts unwrapped).

    Raises ConfigError if the file is missing or does not hold a dict of tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"weights file {path} does not exist")
    # A truncated torch archive surfaces as RuntimeError and an empty one as EOFError; both
    # are re-raised as ConfigError here, the one place that reads weight files.
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, EOFError, RuntimeError, pickle.UnpicklingError, SafetensorError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"weights file {path} cannot be read as weights: {reason}") from e
    return _unwrap_state_dict(loaded, path)


def _unwrap_state_dict(loaded: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(loaded, Mapping):
        nested = [loaded[key] for key in _NESTED_STATE_KEYS if isinstance(loaded.get(key), Mapping)]
        loaded = nested[0] if nested else loaded
    if not isinstance(loaded, Mapping) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in loaded.items()
    ):
        raise ConfigError(f"weights file {path} does not hold a dict of tensors")
    return dict(loaded)


def check_state_fits(module: nn.Module, state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Raise ConfigError, naming ``path`` and every missing, unexpected or misshapen key, unless
    ``state`` has exactly ``module``'s keys and shapes."""
    expected = {key: tuple(value.shape) for key, value in module.state_dict().items()}
    found = {key: tuple(value.shape) for key, value in state.items()}
    problems = []
    if missing := sorted(expected.keys() - found.keys()):
        problems.append(f"missing keys {missing}")
    if unexpected := sorted(found.keys() - expected.keys()):
        problems.append(f"unexpected keys {unexpected}")
    problems += [
        f"{key} has shape {found[key]}, expected {expected[key]}"
        for key in sorted(expected.keys() & found.keys())
        if found[key] != expected[key]
    ]
    if problems:
        raise ConfigError(f"weights file {path} does not fit {type(module).__name__}: {'; '.join(problems)}")
