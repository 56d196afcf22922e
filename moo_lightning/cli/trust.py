"""A run folder's saved config is data, not code.

Hydra builds objects from ``_target_`` keys: whatever callable a config names is imported and
called. A config the user composes on the command line is theirs to run, but a run folder is
something people copy and share, and ``moo-evaluate`` rebuilds the run from the folder's
``.hydra/config.yaml``. Before anything is built, every ``_target_`` in such a config is checked
against what the installed package's own configs can produce:

- every ``_target_`` written in ``moo_lightning/conf/**.yaml`` (the project's classes and the
  library classes its groups name: ``lightning.Trainer``, its callbacks and loggers, ...);
- ``torch.optim.<Name>`` for an optimizer class (``optimizer._target_`` is a documented knob);
- targets the user names explicitly (``moo-evaluate --trust my_pkg.my_criterion``).

Anything else (``torch.load``, ``shutil.copyfile``, a function of this package that writes
files, ...) is refused in one line naming the key and the target.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from importlib import resources

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from moo_lightning.errors import UserError


class UntrustedConfig(UserError, ValueError):
    """A saved config names a callable the package's configs never build."""


@functools.cache
def package_targets() -> frozenset[str]:
    """Every ``_target_`` value written in the installed package's config files."""
    found: set[str] = set()
    root = resources.files("moo_lightning.conf")
    for path in _yaml_files(root):
        try:
            cfg = OmegaConf.create(path.read_text())
        except (OmegaConfBaseException, ValueError):
            continue
        for _, target in _targets(cfg):
            if isinstance(target, str) and "${" not in target:
                found.add(target)
    return frozenset(found)


def _yaml_files(folder) -> Iterator:
    for entry in folder.iterdir():
        if entry.is_dir():
            yield from _yaml_files(entry)
        elif entry.name.endswith(".yaml"):
            yield entry


def _targets(node, prefix: str = "") -> Iterator[tuple[str, object]]:
    """(key path, value) of every ``_target_`` under ``node``, unresolved interpolations kept."""
    if isinstance(node, DictConfig):
        for key in node.keys():
            path = f"{prefix}.{key}" if prefix else str(key)
            value = node._get_node(key)
            if key == "_target_":
                yield path, _value_of(node, key)
            elif isinstance(value, DictConfig | ListConfig):
                yield from _targets(value, path)
    elif isinstance(node, ListConfig):
        for i in range(len(node)):
            value = node._get_node(i)
            if isinstance(value, DictConfig | ListConfig):
                yield from _targets(value, f"{prefix}[{i}]")


def _value_of(node: DictConfig, key) -> object:
    """The resolved value when it resolves, else the raw text (checked as written)."""
    try:
        return node[key]
    except OmegaConfBaseException:
        return node._get_node(key)._value()


def _optimizer_class(target: str) -> bool:
    """``torch.optim.<Name>`` naming a subclass of torch.optim.Optimizer."""
    module, _, name = target.rpartition(".")
    if module != "torch.optim" or not name.isidentifier():
        return False
    import torch

    value = getattr(torch.optim, name, None)
    return isinstance(value, type) and issubclass(value, torch.optim.Optimizer)


def checked_config(cfg: DictConfig, source: str, trusted: Iterable[str] = ()) -> DictConfig:
    """``cfg`` resolved to plain values (interpolations and resolvers such as ``oc.create`` or
    ``oc.decode`` evaluated once, here, so that what they produce is seen), its ``_target_``
    keys checked, and returned as the config to build from: what is built is what was checked.
    Raises UntrustedConfig for a target the package's configs never produce (nor an optimizer
    class, nor one in ``trusted``), a value that would be interpolated again, or a config that
    does not resolve."""
    try:
        plain = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UntrustedConfig(f"{source}: the config does not resolve ({first})") from None
    _refuse_interpolations(plain, source, "")
    resolved = OmegaConf.create(plain)
    check_config_targets(resolved, source, trusted)
    return resolved


def _refuse_interpolations(value, source: str, path: str) -> None:
    """A resolved value that still holds ``${...}`` would be interpolated again when built."""
    if isinstance(value, dict):
        for k, v in value.items():
            _refuse_interpolations(v, source, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _refuse_interpolations(v, source, f"{path}[{i}]")
    elif isinstance(value, str) and "${" in value:
        raise UntrustedConfig(
            f"{source}: {path} resolves to {value!r}, an interpolation of an interpolation; a "
            "run folder's config is not evaluated twice"
        )


def check_config_targets(cfg: DictConfig, source: str, trusted: Iterable[str] = ()) -> None:
    """Raise UntrustedConfig, before anything is built, when ``cfg`` names a ``_target_`` that
    the package's configs never produce (nor an optimizer class, nor one in ``trusted``). Use
    :func:`checked_config` on a config that may hold interpolations."""
    allowed = package_targets() | frozenset(trusted)
    for path, target in _targets(cfg):
        if isinstance(target, str) and (target in allowed or _optimizer_class(target)):
            continue
        raise UntrustedConfig(
            f"{source}: {path} = {target!r} is not a class moo-lightning's configs build; a "
            "run folder's config is not run as code (if you wrote that target yourself, pass "
            f"--trust {target})"
        )
