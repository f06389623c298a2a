"""The options several commands take, defined once.

Shared options are typed, and a default that the settings hold is read from `get_settings()` when the
command runs, so `KBLOOP_DEVICE`, `KBLOOP_DATA_DIR` (or `.env`) apply unless the option is given;
`--help` shows the value in force and the variable that sets it:
  `DeviceOption` (`--device`), `DataDirOption` (`--data-dir`), `AlgoOption` (`--algo`,
  `KBLOOP_TRAINER_ALGO`).

A config dataclass's fields become options too (`config_options`, `with_config`): the field's `help`
metadata is the option's help, its `min`/`max` metadata the option's bounds, its default the default,
so a config and its command cannot drift apart (trainer/config.py, simulation/config.py).
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

if TYPE_CHECKING:
    from core.settings import Settings


class FromSettings:
    """A default read from the settings when the command runs; `--help` shows its value and variable."""

    def __init__(self, field: str) -> None:
        self.field = field

    def __call__(self) -> Any:
        from core.settings import get_settings

        return getattr(get_settings(), self.field)

    def __str__(self) -> str:  # what `--help` shows as the default
        variable = f"KBLOOP_{self.field.upper()}"
        try:
            return f"{self()} ({variable})"
        except ValueError:  # invalid settings: the command itself will say why
            return variable


def _one_of(kind: Any) -> Callable[[str], str]:
    """A parser that accepts the values of a `Literal` and names them all otherwise."""
    values = typing.get_args(kind)

    def parse(value: str) -> str:
        if value not in values:
            raise typer.BadParameter(f"must be {', '.join(values[:-1])} or {values[-1]}")
        return value

    return parse


DeviceName = Literal["auto", "cpu", "cuda"]
AlgoName = Literal["ppo", "dpo", "kto"]

DeviceOption = Annotated[
    DeviceName,
    typer.Option(
        default_factory=FromSettings("device"),
        parser=_one_of(DeviceName),
        help="Where models run: auto = CUDA (bf16) when present, else CPU (float32).",
    ),
]
DataDirOption = Annotated[
    Path,
    typer.Option(
        default_factory=FromSettings("data_dir"),
        help="The data directory (index, feedback store, model versions), ingested first.",
    ),
]
AlgoOption = Annotated[
    AlgoName,
    typer.Option(
        default_factory=FromSettings("trainer_algo"),
        parser=_one_of(AlgoName),
        help="Policy update: PPO against the reward (group baseline, composite reward), DPO on pairs or "
        "KTO on thumbs.",
    ),
]
# config fields that take a shared option instead of one generated from the field
SHARED: dict[str, Any] = {"device": DeviceOption, "algo": AlgoOption}


def settings_in(data_dir: Path) -> Settings:
    """The settings, with `data_dir` as the data directory (`--data-dir`)."""
    from core.settings import get_settings

    return get_settings().model_copy(update={"data_dir": data_dir})


def _has_default_factory(annotation: Any) -> bool:
    return any(getattr(info, "default_factory", None) for info in typing.get_args(annotation)[1:])


def config_options(
    config_type: type,
    *,
    only: Collection[str] | None = None,
    tweaks: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[inspect.Parameter]:
    """One keyword-only typer option per field of a config dataclass (those in `only`, when given).

    A field named in `SHARED` takes the shared option. `tweaks` maps a field to more typer.Option
    settings (`callback`, `default_factory`, `help` instead of the field's), and `names` to the option's
    names (`("--samples",)` instead of the field's `--heldout-samples`)."""
    hints = typing.get_type_hints(config_type)
    params = []
    for field in dataclasses.fields(config_type):
        if only is not None and field.name not in only:
            continue
        if field.name in SHARED:
            annotation = SHARED[field.name]
        else:
            kind = hints[field.name]
            extra = dict((tweaks or {}).get(field.name, {}))
            names = extra.pop("names", ())
            help_text = extra.pop("help", str(field.metadata.get("help", "")))
            if typing.get_origin(kind) is Literal:
                help_text += f" One of: {', '.join(map(str, typing.get_args(kind)))}."
                kind = str
            option = typer.Option(
                *names,
                help=help_text,
                min=field.metadata.get("min"),
                max=field.metadata.get("max"),
                rich_help_panel=config_type.__name__,
                **extra,
            )
            annotation = Annotated[kind, option]
        default = inspect.Parameter.empty if _has_default_factory(annotation) else field.default
        params.append(
            inspect.Parameter(
                field.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
            )
        )
    return params


def build_config(config_type: type, values: dict[str, Any]) -> Any:
    """The config from a command's parsed values: its fields are taken out of `values` (a field not
    there keeps the config's default)."""
    hints = typing.get_type_hints(config_type)
    fields = [f.name for f in dataclasses.fields(config_type) if f.name in values]
    for name in fields:
        kind = hints[name]
        if typing.get_origin(kind) is Literal and values[name] not in typing.get_args(kind):
            choices = ", ".join(map(str, typing.get_args(kind)))
            raise typer.BadParameter(f"--{name.replace('_', '-')} must be one of {choices}")
    return config_type(**{name: values.pop(name) for name in fields})


def with_config(
    config_type: type,
    *,
    only: Collection[str] | None = None,
    tweaks: Mapping[str, Mapping[str, Any]] | None = None,
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """`fn(cfg, **own_options)` as a command whose options are its own, then the config's fields'."""

    def decorator(fn: Callable[..., None]) -> Callable[..., None]:
        hints = typing.get_type_hints(fn, include_extras=True)
        own = [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=hints.get(p.name, p.annotation))
            for p in inspect.signature(fn).parameters.values()
            if p.name != "cfg"
        ]

        def command(**values: Any) -> None:
            cfg = build_config(config_type, values)
            fn(cfg, **values)

        options = config_options(config_type, only=only, tweaks=tweaks)
        command.__signature__ = inspect.Signature([*own, *options])  # type: ignore[attr-defined]
        command.__name__, command.__doc__ = fn.__name__, fn.__doc__
        return command

    return decorator
