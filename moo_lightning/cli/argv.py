"""The command line as users type it, made ready for Hydra, and refused before any job runs
when it sets a preference nothing would use: swept with combiners that ignore it (every job but
one would repeat another), or set for an ensemble whose members have preferences of their own."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

from moo_lightning.record import SHORT_FORMS, short_name

_SEED_RANGE = re.compile(r"^(\+{0,2}seed)=(\d+)-(\d+)$")
_MULTIRUN = ("-m", "--multirun")

_NAMES = "|".join(map(re.escape, SHORT_FORMS))  # encoder|objective
_SHORT_FORM = re.compile(rf"^([+~]{{0,2}})({_NAMES})([=./@].*|)$")
_SEARCH = re.compile(r"^([+~]{0,2}hydra\.sweeper\.params)([.=])(.*)$", re.S)
_SEARCH_KEY = re.compile(rf"([{{,]\s*)({_NAMES})([./:])")


def expand_short_form(arg: str) -> str:
    """An override as Hydra reads it: the text module's groups under their short names
    (``record.SHORT_FORMS``): ``encoder=minilm`` → ``module/encoder=minilm``,
    ``objective.lam=0.5`` → ``module.objective.lam=0.5``, also as a search dimension
    (``hydra.sweeper.params.objective.lam=...``, ``hydra.sweeper.params={objective.lam:...}``);
    everything else unchanged."""
    search = _SEARCH.match(arg)
    if search:
        head, sep, rest = search.groups()
        if sep == ".":  # one dimension: its key is the override's key
            return f"{head}.{expand_short_form(rest).lstrip('+~')}"
        return f"{head}={_SEARCH_KEY.sub(_dimension, rest)}"  # a dict of dimensions
    m = _SHORT_FORM.match(arg)
    if not m:
        return arg
    prefix, name, rest = m.groups()
    sep = "." if rest.startswith(".") else "/"  # a key inside the group's config, or the group
    return f"{prefix}{SHORT_FORMS[name]}{sep}{name}{rest}"


# keys renamed in 0.4 (one key per concept across tasks; record.upgrade_settings reads the runs
# recorded under the old names): a command typing the old key runs under the new one, and says so
RENAMED = {
    "data.num_val": "data.val_size",
    "data.val_fraction": "data.val_size",
    "data.steps": "trainer.max_steps",
    "module.method": "method",
}
# renamed with a change of meaning: refused, with what to type instead
REFUSED = {
    "data.permutation_seed": (
        "the jigsaw permutation set is drawn from data.split_seed since 0.4 (with the "
        "validation split); set data.split_seed"
    ),
}


def rename_old_key(arg: str) -> tuple[str, str | None]:
    """(the override under today's key, a one-line note when it was typed under an old one);
    SystemExit with one line for an old key whose meaning changed (REFUSED)."""
    stripped = arg.lstrip("+~")
    prefix, (key, eq, value) = arg[: len(arg) - len(stripped)], stripped.partition("=")
    if key in REFUSED:
        raise SystemExit(f"error: {arg}: {REFUSED[key]}")
    if key not in RENAMED:
        return arg, None
    new = RENAMED[key]
    return (
        f"{prefix}{new}{eq}{value}",
        f"note: {key} is called {new} since 0.4; ran {new}{eq}{value}",
    )


def _dimension(m: re.Match) -> str:
    """One key of a search-space dict: ``objective.lam:`` → ``module.objective.lam:``,
    ``objective:`` (the group itself) → ``module/objective:``."""
    lead, name, sep = m.groups()
    parent = SHORT_FORMS[name]
    return f"{lead}{parent}/{name}:" if sep == ":" else f"{lead}{parent}.{name}{sep}"


# the groups that decide which module a run has
_CHOOSERS = ("task", "experiment", "sweep", "module", "protocol", "debug")
_TEXT_TASKS = ("task=sst2", "task=qnli", "task=mnli", "module=text")


def _key(arg: str) -> str:
    """An override's key or group, without its + / ~ prefix."""
    return arg.lstrip("+~").partition("=")[0]


def _composed_without_text(argv: list[str]):
    """The config the command's task / experiment / ... choices compose, when they choose one
    task that is not a GLUE task (None otherwise: text, a sweep over tasks, a wrong choice)."""
    choosers = [a for a in argv[1:] if _key(a) in _CHOOSERS]
    if any("," in a or "(" in a for a in choosers):  # a sweep over tasks: Hydra reports it per job
        return None
    if all(a.lstrip("+~") in _TEXT_TASKS for a in choosers):  # the default or a GLUE task: text
        return None
    from hydra import compose, initialize_config_module

    try:
        with initialize_config_module("moo_lightning.conf", version_base="1.3"):
            return compose("train", overrides=choosers)
    except Exception:  # noqa: BLE001 - a wrong choice is reported by Hydra, in its words
        return None


def rename_composition_seed(argv: list[str]) -> list[str]:
    """Multi-MNIST's composition seed was ``data.seed`` before 0.4 (GLUE's ``data.seed`` is the
    run's seed and stays): typed for a Multi-MNIST run, it runs as ``data.split_seed``."""
    if not any(_key(a) == "data.seed" for a in argv[1:]):
        return argv
    cfg = _composed_without_text(argv)
    if cfg is None or not str(cfg.data.get("_target_", "")).endswith(".MultiMNIST"):
        return argv
    out = []
    for arg in argv:
        if _key(arg) == "data.seed":
            new = arg.lstrip("+~").replace("data.seed", "data.split_seed", 1)
            print(f"note: Multi-MNIST's data.seed is called data.split_seed since 0.4; ran {new}",
                  file=sys.stderr)  # fmt: skip
            arg = new
        out.append(arg)
    return out


def refuse_text_settings_without_text_module(argv: list[str]) -> None:
    """Stop in one line when the command sets the text module's encoder or objective
    (``encoder=tiny``, ``objective.lam=0.5``) for a task whose module has none (toy,
    Multi-MNIST, ...): Hydra's own message would suggest appending the group instead."""
    typed = [a for a in argv[1:] if short_name(_key(a)) != _key(a)]  # module/encoder=, ...
    if not typed:
        return
    cfg = _composed_without_text(argv)
    if cfg is not None and cfg.module.get("encoder") is None:
        shown = ", ".join(short_name(_key(a)) + a.lstrip("+~")[len(_key(a)) :] for a in typed)
        raise SystemExit(
            f"error: {shown}: the module of this run ({cfg.get('task_name')}, "
            f"{cfg.module.get('_target_')}) has no encoder or objective; those belong to the "
            "text module (task=sst2|qnli|mnli)"
        )


def normalise_argv(argv: list[str]) -> list[str]:
    """Make the command users type work with Hydra's parser: `seed=A-B` becomes the inclusive
    sweep `seed=range(A,B+1)`, `-m`/`--multirun` may stand anywhere (argparse only accepts it
    before the overrides), and the text module's groups take their short names (SHORT_FORMS)."""
    multirun = [a for a in argv[1:] if a in _MULTIRUN]
    rest = []
    for arg in argv[1:]:
        if arg in _MULTIRUN:
            continue
        if not arg.startswith("-"):
            arg, note = rename_old_key(expand_short_form(arg))
            if note:
                print(note, file=sys.stderr)
        m = _SEED_RANGE.match(arg)
        if m:
            key, a, b = m.group(1), int(m.group(2)), int(m.group(3))
            if b < a:
                raise SystemExit(f"error: {arg}: the range end must be >= its start")
            if not multirun:
                raise SystemExit(f"error: {arg} is a sweep over seeds; add -m (multirun)")
            arg = f"{key}=range({a},{b + 1})"
        rest.append(arg)
    return argv[:1] + multirun[:1] + rest


@dataclass(frozen=True)
class _Reading:
    """A command's overrides as its jobs see them, read once for the preference checks."""

    given: tuple  # the command line's overrides, parsed
    overrides: dict  # by key (prefix included): the presets' grids (multirun), then `given`
    combiners: tuple[str, ...]  # the combiners its jobs run
    combiner_args: tuple[str, ...]  # the combiner settings every job gets, and the search path
    module_preferences: object  # the composed config's module.preferences (None: null or none)


def _read(argv: list[str]) -> _Reading | None:
    """The command read as Hydra's basic sweeper runs it: the ``hydra.sweeper.params`` of the
    presets the command selects (``sweep=paper_moo``; a multirun only, as Hydra), then the
    command line's overrides, a later value of a key (``+``/``++``/``~`` prefix included)
    replacing an earlier one. The combiner is the one the composed config chose (a preset's, or
    train.yaml's default) unless the overrides name others; ``glob(...)`` is matched against the
    combiner configs. (Optuna's sweeper keeps a preset's fixed value over a swept one on the
    command line; no shipped preset does that. A command with its own --config-name /
    --config-dir is read against ours.) None when the command cannot be read: the run reports
    a malformed override or an unusual sweep itself."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import Glob

    args = [a for a in argv[1:] if not a.startswith("-") and "=" in a]
    parser = OverridesParser.create()
    try:
        given = parser.parse_overrides(args)
        params, chosen, preferences = _composed(given)
        if not any(a in _MULTIRUN for a in argv):
            params = {}  # a single run reads no sweeper params
        preset = parser.parse_overrides([f"{k}={v}" for k, v in params.items()])
    except Exception:  # noqa: BLE001 - Hydra reports a malformed override itself, in its words
        return None
    overrides = {o.get_key_element(): o for o in preset}
    overrides.update({o.get_key_element(): o for o in given})  # the command line wins, as in Hydra
    names = [chosen]
    # a search path of the user's own configs (hydra.searchpath=[file://my_conf]) is where
    # their combiners are found, for glob(...) and when each combiner is built to be asked
    search = [o.input_line for o in given if o.key_or_group == "hydra.searchpath"]
    combiner_args = list(search)
    for o in overrides.values():
        if o.key_or_group == "combiner" and not o.is_sweep_override():
            names = [str(o.value())]  # a preset's fixed combiner in its sweeper params, too
        elif o.key_or_group == "combiner":
            value = o.value()
            if isinstance(value, Glob):
                names = value.filter(_combiner_configs(given))
            else:
                try:
                    names = list(o.sweep_string_iterator())
                except Exception:  # noqa: BLE001 - an unusual sweep: the jobs check themselves
                    return None
        elif o.key_or_group.startswith(("combiner.", "combiner/")) and not o.is_sweep_override():
            combiner_args.append(o.input_line)
    return _Reading(
        tuple(given), overrides, tuple(map(str, names)), tuple(combiner_args), preferences
    )


def _preference_override(reading: _Reading, sweep: bool | None = None):
    """The last override that sets ``preference`` (a sweep when ``sweep``, a single value when
    not, either when None), and where it comes from, for messages."""
    found = [
        o
        for o in reading.overrides.values()
        if o.key_or_group == "preference"
        and not o.is_delete()
        and (sweep is None or o.is_sweep_override() == sweep)
    ]
    if not found:
        return None, None
    o = found[-1]
    typed = any(o is g for g in reading.given)
    return o, o.input_line + ("" if typed else " (from a preset's hydra.sweeper.params)")


def preference_free_combiners(
    argv: list[str], reading: _Reading | None = None
) -> tuple[str | None, list[str]]:
    """(the preference sweep, the combiners of this command that ignore the preference) when
    the command sweeps ``preference``; (None, []) otherwise. A combiner that ignores the
    preference (MGDA, CAGrad, PCGrad, ...) would run the same job once per value. The command
    is read as :func:`_read` says."""
    reading = _read(argv) if reading is None else reading
    if reading is None:
        return None, []
    sweep, where = _preference_override(reading, sweep=True)
    if sweep is None:
        return None, []
    args = reading.combiner_args
    return where, [n for n in reading.combiners if not _uses_preference(n, args)]


def preference_members_ignore(
    argv: list[str], reading: _Reading | None = None
) -> tuple[str, str, list[str]] | None:
    """(the preference override, the ensemble's ``module.preferences``, the combiners that
    would use the preference) when the command sets ``preference`` (one value or a sweep, typed
    or from a preset's sweeper params) for an ensemble whose members have preferences of their
    own (Multi-MNIST's default ``module.preferences=spread``, or rows), with a combiner that
    uses the preference: its members never see it, and a sweep over it repeats one job. None
    otherwise (``module.preferences=null``, or only combiners that ignore the preference)."""
    reading = _read(argv) if reading is None else reading
    if reading is None:
        return None
    pref, where = _preference_override(reading)
    if pref is None:
        return None
    values, shown = [reading.module_preferences], _compact(reading.module_preferences)
    for o in reading.overrides.values():
        if o.key_or_group == "module.preferences" and not o.is_delete():
            values = list(o.sweep_iterator()) if o.is_sweep_override() else [o.value()]
            shown = o.input_line.partition("=")[2]
    if all(v is None for v in values) or (
        any(v is None for v in values) and not pref.is_sweep_override()
    ):
        return None  # the jobs with module.preferences=null use it; the others run once
    using = [n for n in reading.combiners if _uses_preference(n, reading.combiner_args)]
    return (where, shown, using) if using else None


def _compact(value) -> str:
    """A config value as an override would type it: spread, [[0.2,0.8],[0.8,0.2]]."""
    return str(value).replace(" ", "").replace("'", "")


def _combiner_configs(given=()) -> list[str]:
    """The names of conf/combiner/*.yaml and of the combiner/*.yaml in the command's
    ``hydra.searchpath`` entries (``file://`` or plain paths, ``pkg://`` packages): what
    combiner=glob(...) chooses from."""
    from importlib.resources import files

    folders = [files("moo_lightning.conf").joinpath("combiner")]
    for o in given:
        if o.key_or_group != "hydra.searchpath":
            continue
        for entry in o.value() if isinstance(o.value(), list) else [o.value()]:
            scheme, sep, where = str(entry).partition("://")
            if not sep:  # no scheme: a file path, as Hydra reads it
                scheme, where = "file", str(entry)
            try:
                root = files(where.replace("/", ".")) if scheme == "pkg" else Path(where)
                folders.append(root.joinpath("combiner"))
            except (ModuleNotFoundError, TypeError, ValueError):
                continue  # a package that does not import: Hydra reports it itself
    names = set()
    for folder in folders:
        if folder.is_dir():
            names |= {f.name[:-5] for f in folder.iterdir() if f.name.endswith(".yaml")}
    return sorted(names)


def _composed(given) -> tuple[dict, str, object]:
    """The ``hydra.sweeper.params`` of the config the command's plain overrides compose (its
    presets' grids; empty when none), the combiner it chose and its ``module.preferences``
    (plain; None when null or absent). A config that does not compose raises: the run then
    reports that itself."""
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    plain = [o.input_line for o in given if not o.is_sweep_override()]
    with initialize_config_module("moo_lightning.conf", version_base="1.3"):
        cfg = compose("train", overrides=plain, return_hydra_config=True)
    params = OmegaConf.select(cfg, "hydra.sweeper.params")
    chosen = OmegaConf.select(cfg, "hydra.runtime.choices.combiner")
    preferences = OmegaConf.select(cfg, "module.preferences", default=None)
    if OmegaConf.is_config(preferences):
        preferences = OmegaConf.to_container(preferences)
    params = {} if params is None else dict(OmegaConf.to_container(params))
    return params, str(chosen), preferences


def _uses_preference(name: str, combiner_args: tuple[str, ...]) -> bool:
    """Whether combiner ``name`` (with the command's combiner settings) uses the preference:
    the combiner is built from its config, as the job would build it."""
    from hydra import compose, initialize_config_module
    from hydra.utils import instantiate

    try:
        with initialize_config_module("moo_lightning.conf", version_base="1.3"):
            cfg = compose("train", overrides=[f"combiner={name}", *combiner_args])
        return bool(instantiate(cfg.combiner).uses_preference)
    except Exception:  # noqa: BLE001 - a wrong combiner setting is reported by the job, in one line
        return True


def refuse_duplicate_sweeps(argv: list[str], reading: _Reading | None = None) -> None:
    """Stop in one line, before any job runs, when ``preference`` is swept with a combiner that
    ignores it."""
    if not any(a in _MULTIRUN for a in argv):
        return
    sweep, ignoring = preference_free_combiners(argv, reading)
    if ignoring:
        raise SystemExit(
            f"error: {sweep} sweeps the preference, but combiner {', '.join(ignoring)} "
            "ignores the preference: every value would run the same job again. Sweep the "
            "preference only with combiners that use it (ls, epo, png, stch, upgrad, ...), and "
            "run the others once, with one value (preference=0.5) or none"
        )


def refuse_preference_members_ignore(argv: list[str], reading: _Reading | None = None) -> None:
    """Stop in one line, before anything is built, when the command sets ``preference`` for an
    ensemble whose members follow preferences of their own (:func:`preference_members_ignore`)."""
    found = preference_members_ignore(argv, reading)
    if found:
        where, shown, using = found
        raise SystemExit(
            f"error: {where} sets the preference, but module.preferences={shown} gives each "
            f"member a preference of its own, so combiner {', '.join(using)} would never use "
            "it. Add module.preferences=null (every member at the preference) or drop "
            "preference="
        )


def refuse_ignored_preference(argv: list[str]) -> None:
    """The two checks above from one reading of the command; a single run that does not type
    ``preference`` is not read (nothing of it could be ignored)."""
    multirun = any(a in _MULTIRUN for a in argv)
    if not multirun and not any(_key(a) == "preference" for a in argv[1:]):
        return
    reading = _read(argv)
    if reading is None:
        return
    refuse_duplicate_sweeps(argv, reading)
    refuse_preference_members_ignore(argv, reading)
    if not multirun:
        warn_ignored_preference(reading)


def warn_ignored_preference(reading: _Reading) -> None:
    """One warning line (stderr) when a single run types a preference that nothing uses: a
    combiner that ignores it (MGDA, Nash-MTL, ...; the run follows equal weights and records no
    preference) or a one-loss objective (objective=ce, ce_scl). A run, not an error: the
    preference may sit in a script shared by several combiners."""
    pref, where = _preference_override(reading, sweep=False)
    if pref is None:
        return
    objective = reading.overrides.get("module/objective") or reading.overrides.get("objective")
    loss = objective.value() if objective is not None and not objective.is_delete() else None
    if loss in ("ce", "ce_scl"):
        why = f"objective={loss} is one loss"
    else:
        ignoring = [n for n in reading.combiners if not _uses_preference(n, reading.combiner_args)]
        if not ignoring or len(ignoring) < len(reading.combiners):
            return
        why = f"combiner {', '.join(ignoring)} ignores the preference (equal weights 1/m)"
    print(f"warning: {where} has no effect: {why}", file=sys.stderr)


# a folder name is at most 255 bytes on common filesystems; Optuna's sampled floats (17 digits)
# pass that with a handful of overrides
_NAME_LIMIT = 200


def fit_folder_name(name: str, limit: int = _NAME_LIMIT) -> str:
    """``name`` when it fits in ``limit`` bytes; otherwise its first bytes and a hash of the
    whole name (``...~<12 hex>``), so two long names never share a folder."""
    raw = name.encode()
    if len(raw) <= limit:
        return name
    import hashlib

    digest = hashlib.sha256(raw).hexdigest()[:12]
    head = raw[: limit - len(digest) - 1].decode(errors="ignore")
    return f"{head}~{digest}"
