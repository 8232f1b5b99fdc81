"""Constructor checks shared by the nets, so a bad artifact param fails with its name, not deep in torch."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from ai_engine.exceptions import DataError

__all__ = ["check_int", "check_fraction", "check_bool", "check_int_list", "check_window"]


def check_int(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def check_fraction(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be a float in [0, 1), got {value!r}")
    return float(value)


def check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be a bool, got {value!r}")
    return value


def check_int_list(name: str, value: object, length: int | None = None) -> tuple[int, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or not value:
        raise ValueError(f"{name} must be a non-empty list of ints, got {value!r}")
    if length is not None and len(value) != length:
        raise ValueError(f"{name} must have {length} entries, got {len(value)} ({value!r})")
    return tuple(check_int(f"{name}[{i}]", v) for i, v in enumerate(value))


def check_window(x: Tensor, seq_len: int, n_channels: int, owner: str) -> None:
    """A window of the wrong shape is a data error naming both shapes, not a matmul traceback."""
    if x.ndim != 3 or x.shape[1] != seq_len or x.shape[2] != n_channels:
        raise DataError(
            f"{owner} expects input of shape (batch, {seq_len}, {n_channels}), got {tuple(x.shape)}"
        )
