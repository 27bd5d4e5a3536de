"""Typer options generated from a settings model, so each setting is declared once.

Every option takes its help text, the default it shows and its ``HYBRIDAI_...`` variable from
the pydantic-settings field. An option left out of the command line stays ``None`` and the
settings model decides (environment, ``.env``, config file, default), so a flag wins over all
of them and nothing else changes the order. Secrets are not options (a command line is visible
to every user of the machine): the command's help lists them with their variables instead.
"""

from __future__ import annotations

import functools
import inspect
import json
import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import typer
from pydantic import BaseModel, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings
from rich.markup import escape

from hybridai.config_file import ConfigFileError

S = TypeVar("S", bound=BaseSettings)
PANEL = "Settings (flag, else environment, else config.toml, else default)"


def env_names(cls: type[BaseSettings], name: str) -> list[str]:
    """The environment variables a setting is read from, first match wins."""
    field = cls.model_fields[name]
    choices = getattr(field.validation_alias, "choices", None)
    if choices:
        return [str(c) for c in choices]
    prefix = str(cls.model_config.get("env_prefix", ""))
    return [f"{prefix}{name.upper()}"]


def shown_default(field: FieldInfo) -> str | None:
    """The default as help shows it; None when there is none to show."""
    default = field.get_default(call_default_factory=True)
    if default is None:
        return None
    if isinstance(default, BaseModel):
        return json.dumps(default.model_dump())
    if isinstance(default, dict | list):
        return json.dumps(default)
    return str(default)


def _core(annotation: Any) -> Any:
    """The type under ``Annotated[...]`` and ``X | None``."""
    while typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(rest) == 1:
            return _core(rest[0])
    return annotation


def is_secret(field: FieldInfo) -> bool:
    return _core(field.annotation) is SecretStr


def _is_json(field: FieldInfo) -> bool:
    core = _core(field.annotation)
    origin = typing.get_origin(core) or core
    return origin in (dict, list) or (inspect.isclass(origin) and issubclass(origin, BaseModel))


def help_text(cls: type[BaseSettings], name: str) -> str:
    """The field's description, with its choices when it has a fixed set; rich-escaped."""
    field = cls.model_fields[name]
    text = field.description or ""
    core = _core(field.annotation)
    if typing.get_origin(core) is Literal:
        text += " One of: " + ", ".join(str(c) for c in typing.get_args(core)) + "."
    return escape(text)


def option(
    cls: type[BaseSettings], name: str, *decls: str, **extra: Any
) -> typer.models.OptionInfo:
    """A Typer option for setting ``name``: its help, default and variable from the model."""
    field = cls.model_fields[name]
    default = shown_default(field)
    info: typer.models.OptionInfo = typer.Option(
        *(decls or (f"--{name.replace('_', '-')}",)),
        help=help_text(cls, name),
        envvar=env_names(cls, name),
        show_envvar=True,
        show_default=default if default is not None else False,
        **extra,
    )
    return info


def _option_type(field: FieldInfo) -> Any:
    core = _core(field.annotation)
    return core if core in (bool, int, float, Path) else str


def settings_options(
    cls: type[BaseSettings],
    *,
    fields: Iterable[str] | None = None,
    rename: dict[str, str] | None = None,
    allow_secrets: Iterable[str] = (),
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give a command one option per setting of ``cls`` (``fields``: only those).

    The command receives the given ones as ``given``, a dict of setting name -> value (only
    what the command line or the environment set); ``build(cls, given)`` makes the settings.
    """
    names = [
        n
        for n in (fields or cls.model_fields)
        if n in allow_secrets or not is_secret(cls.model_fields[n])
    ]
    rename = rename or {}

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        own = [
            p
            for p in inspect.signature(command, eval_str=True).parameters.values()
            if p.name != "given"
        ]
        generated = []
        for name in names:
            field = cls.model_fields[name]
            flag = rename.get(name, f"--{name.replace('_', '-')}")
            kind = _option_type(field)
            decls = (f"{flag}/--no-{flag.removeprefix('--')}",) if kind is bool else (flag,)
            generated.append(
                inspect.Parameter(
                    name,
                    inspect.Parameter.KEYWORD_ONLY,
                    default=None,
                    annotation=Annotated[
                        kind | None, option(cls, name, *decls, rich_help_panel=PANEL)
                    ],
                )
            )

        @functools.wraps(command)
        def run(**kwargs: Any) -> None:
            given = {n: kwargs.pop(n) for n in names if kwargs.get(n) is not None}
            kwargs.pop("given", None)
            for n in names:
                kwargs.pop(n, None)
            command(**kwargs, given=given)

        run.__signature__ = inspect.Signature([*own, *generated])  # type: ignore[attr-defined]
        return run

    return decorate


def epilog(cls: type[BaseSettings], title: str, names: Iterable[str]) -> str:
    """Help text listing settings that are not options (secrets), with variables and defaults."""
    lines = [title]
    for name in names:
        default = shown_default(cls.model_fields[name])
        shown = f" (default {escape(default)})" if default is not None else ""
        lines.append(f"{' or '.join(env_names(cls, name))}{shown}: {help_text(cls, name)}")
    return "\n\n".join(lines)


def secret_names(cls: type[BaseSettings], allowed: Iterable[str] = ()) -> list[str]:
    return [n for n, f in cls.model_fields.items() if is_secret(f) and n not in allowed]


def build(cls: type[S], given: dict[str, Any]) -> S:
    """The settings from what the command line gave plus every other source; clear errors."""
    from hybridai.cli._api import fail

    values: dict[str, Any] = {}
    for name, value in given.items():
        if isinstance(value, str) and _is_json(cls.model_fields[name]):
            try:
                value = json.loads(value)
            except ValueError:
                flag = env_names(cls, name)[0]
                raise fail(
                    f"{name} ({flag}) must be JSON, e.g. {shown_default(cls.model_fields[name])}"
                ) from None
        values[name] = value
    try:
        return cls(**values)
    except ConfigFileError as exc:
        raise fail(str(exc)) from None
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(p) for p in problem["loc"])
        name = str(problem["loc"][0]) if problem["loc"] else ""
        env = " or ".join(env_names(cls, name)) if name in cls.model_fields else ""
        raise fail(f"bad setting {where}{f' ({env})' if env else ''}: {problem['msg']}") from None
