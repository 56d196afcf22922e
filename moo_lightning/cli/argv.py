"""The command line as users type it, made ready for Hydra, and refused before any job runs
when it sets a preference nothing would use: swept with combiners that ignore it (every job but
one would repeat another), or set for an ensemble whose members have preferences of their own."""

from __future__ import annotations

import functools
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


# Hydra's run modes: one per command (its own refusal is a traceback)
_MODES = {
    "--run": "-r",
    "--multirun": "-m",
    "--cfg": "-c",
    "--info": "-i",
    "--shell-completion": "-sc",
}


def refuse_mode_clash(argv: list[str]) -> None:
    """Stop in one line when the command asks Hydra for two run modes at once (``-m`` with
    ``--cfg job``, ...), which Hydra refuses with a traceback."""
    given = []
    for arg in argv[1:]:
        flag = arg.partition("=")[0]
        for long, short in _MODES.items():
            if flag in (long, short) and long not in given:
                given.append(long)
    if len(given) < 2:
        return
    hint = ""
    if "--multirun" in given and ("--cfg" in given or "--info" in given):
        hint = (
            " --cfg and --info show one run: drop -m and give each swept key one value to see "
            "a job's config"
        )
    raise SystemExit(
        f"error: {' and '.join(given)} cannot be combined: Hydra runs one mode per command.{hint}"
    )


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
    ls_warmup: float = 0.0  # the composed config's module.ls_warmup (ensembles; 0: none)


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
        params, chosen, preferences, warmup = _composed(given)
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
        tuple(given), overrides, tuple(map(str, names)), tuple(combiner_args), preferences, warmup
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


def _config_roots(given=()) -> list:
    """The folders the command's configs come from: the package's conf, then the
    ``hydra.searchpath`` entries of the command (``file://`` or plain paths, ``pkg://``
    packages)."""
    from importlib.resources import files

    roots = [files("moo_lightning.conf")]
    for o in given:
        if o.key_or_group != "hydra.searchpath":
            continue
        for entry in o.value() if isinstance(o.value(), list) else [o.value()]:
            scheme, sep, where = str(entry).partition("://")
            if not sep:  # no scheme: a file path, as Hydra reads it
                scheme, where = "file", str(entry)
            try:
                roots.append(files(where.replace("/", ".")) if scheme == "pkg" else Path(where))
            except (ModuleNotFoundError, TypeError, ValueError):
                continue  # a package that does not import: Hydra reports it itself
    return roots


def _group_options(group: str, given=()) -> list[str]:
    """The options of config group ``group`` (``combiner``, ``module/encoder``): the names of
    its yaml files in every folder of :func:`_config_roots`."""
    names = set()
    for root in _config_roots(given):
        folder = root.joinpath(*group.split("/"))
        if folder.is_dir():
            names |= {f.name[:-5] for f in folder.iterdir() if f.name.endswith(".yaml")}
    return sorted(names)


def _searchpath(given=()) -> tuple[str, ...]:
    """The command's ``hydra.searchpath`` overrides, as typed: all that decides which config
    folders :func:`_config_roots` reads."""
    return tuple(o.input_line for o in given if o.key_or_group == "hydra.searchpath")


def _config_groups(given=()) -> set[str]:
    """Every config group of the command's configs (``combiner``, ``module/encoder``, ...),
    Hydra's own groups left out. The folders are walked once per search path and process
    (the checks before Hydra starts each ask)."""
    return set(_walk_groups(_searchpath(given)))


@functools.lru_cache(maxsize=8)
def _walk_groups(searchpath: tuple[str, ...]) -> frozenset[str]:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    given = OverridesParser.create().parse_overrides(list(searchpath)) if searchpath else ()
    groups, todo = set(), [(root, "") for root in _config_roots(given)]
    while todo:
        folder, name = todo.pop()
        if not folder.is_dir():
            continue
        for sub in folder.iterdir():
            if sub.is_dir() and sub.name not in ("hydra", "__pycache__"):
                groups.add(f"{name}{sub.name}")
                todo.append((sub, f"{name}{sub.name}/"))
    return frozenset(groups)


def _combiner_configs(given=()) -> list[str]:
    """The names of conf/combiner/*.yaml and of the combiner/*.yaml in the command's
    ``hydra.searchpath`` entries: what combiner=glob(...) chooses from."""
    return _group_options("combiner", given)


def _composed(given) -> tuple[dict, str, object, float]:
    """The ``hydra.sweeper.params`` of the config the command's plain overrides compose (its
    presets' grids; empty when none), the combiner it chose, its ``module.preferences`` (plain;
    None when null or absent) and ``module.ls_warmup`` (0 when absent). A config that does not
    compose raises: the run then reports that itself."""
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
    warmup = OmegaConf.select(cfg, "module.ls_warmup", default=0) or 0
    return (
        params,
        str(chosen),
        preferences,
        float(warmup) if isinstance(warmup, int | float) else 0.0,
    )


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
    if reading.module_preferences is None and reading.ls_warmup > 0:
        return  # an ensemble's LS warm-up runs every member at the preference
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


# options that bring a primary config of the command's own: its keys are not ours to check
_OWN_CONFIG = ("--config-dir", "-cd", "--config-path", "-cp", "--config-name", "-cn")


def _parsed(argv: list[str]) -> list | None:
    """The command's overrides parsed one by one (a malformed one is left out: Hydra reports it
    in its words); None when the command brings its own primary config (--config-name, ...).
    Parsed once per command (the checks before Hydra starts each ask); a fresh list each time."""
    if any(a.partition("=")[0] in _OWN_CONFIG for a in argv[1:]):
        return None
    return list(_parse_each(tuple(argv[1:])))


@functools.lru_cache(maxsize=8)
def _parse_each(args: tuple[str, ...]) -> tuple:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    out = []
    for arg in args:
        if arg.startswith("-") or "=" not in arg:
            continue
        try:
            out += parser.parse_overrides([arg])
        except Exception:  # noqa: BLE001, S112 - a malformed override: Hydra reports it
            continue
    return tuple(out)


def _values(o, as_typed: bool = False) -> list:
    """The values an override gives its key: one, or a sweep's (a glob: none, not known here);
    ``as_typed``: as override text (``[a,b]``), else as values (a list stays a list)."""
    from hydra.core.override_parser.types import Glob

    if not o.is_sweep_override():
        return [o.get_value_element_as_str() if as_typed else o.value()]
    if isinstance(o.value(), Glob):
        return []
    try:
        return list(o.sweep_string_iterator() if as_typed else o.sweep_iterator())
    except Exception:  # noqa: BLE001 - an unusual sweep: Hydra reports it
        return []


def _help_command(argv: list[str]) -> str:
    prog = Path(argv[0]).name
    return f"python {prog} --help" if prog.endswith(".py") else f"{prog} --help"


def refuse_unknown_names(argv: list[str]) -> None:
    """Stop in one line, before Hydra composes, for an override that names nothing of this
    project: an option no config group has (``combiner=nashmtl``: Hydra would list the
    group's options and its search path over 30 lines), and a top-level key no config has
    (``prefernce=0.2``: Hydra would advise ``+prefernce=0.2``, which :func:`check_unknown_keys`
    then refuses). The line names the closest options or keys. Additions (``+key=``),
    deletions and Hydra's own keys are left to Hydra and to the run's checks; a command with
    its own primary config (--config-name, --config-dir) is not read, and one with a
    ``hydra.searchpath`` is read with its folders (their top-level keys to Hydra)."""
    from moo_lightning.cli.checks import did_you_mean, known_top_level_keys, meant_keys

    given = _parsed(argv)
    if not given:
        return
    groups = _config_groups(given)
    searchpath = any(o.key_or_group == "hydra.searchpath" for o in given)
    for o in given:
        key = o.key_or_group
        if key.startswith("hydra") or o.is_delete():
            continue
        if key in groups:
            line = _unknown_option(key, _values(o), _group_options(key, given), argv)
            if line:
                raise SystemExit(line)
        elif not o.is_add() and not o.is_force_add() and not searchpath:
            top = key.split(".", 1)[0]
            if top not in known_top_level_keys() and top not in groups:
                meant = meant_keys(key, _composed_tree(given))
                raise SystemExit(
                    f"error: {short_name(o.input_line)}: no setting of this project is called "
                    f"{top!r}.{did_you_mean(meant)}"
                )


def _unknown_option(group: str, values: list, options: list[str], argv: list[str]) -> str | None:
    """The line for the first of ``values`` (a list: each of its entries, as in
    ``callbacks=[resume,best_checkpoint]``) that is no option of ``group``: the closest
    options (all of them when none is close) and where to see every group's."""
    import difflib

    from moo_lightning.cli.checks import did_you_mean

    shown, visible = short_name(group), [n for n in options if not n.startswith("_")]
    chosen = [v for given in values for v in (given if isinstance(given, list) else [given])]
    for value in chosen:
        if value is None or f"{value}" in options or "/" in f"{value}":
            continue  # null, an option, or one in a subfolder (Hydra checks it)
        close = difflib.get_close_matches(f"{value}", visible, n=3)
        hint = did_you_mean([f"{shown}={c}" for c in close])
        hint = hint or f" Its options: {', '.join(visible)}."
        return (
            f"error: {shown}={value}: no {shown.rsplit('/', 1)[-1]} config is called {value!r}."
            f"{hint} `{_help_command(argv)}` lists every group's options"
        )
    return None


def _composed_tree(given) -> dict:
    """The config the command's group choices compose, as a plain tree (the package's default
    config when they do not compose; empty when nothing does): where the keys a mistyped key
    may have meant are looked up."""
    from omegaconf import OmegaConf

    groups = _config_groups(given)
    choices = [
        o.input_line
        for o in given
        if (o.key_or_group in groups or o.key_or_group == "hydra.searchpath")
        and not o.is_sweep_override()
    ]
    for overrides in (choices, []):
        try:
            return OmegaConf.to_container(_compose(overrides), resolve=False)
        except Exception:  # noqa: BLE001, S112 - a wrong choice: the package's default config
            continue
    return {}


def refuse_missing_keys(argv: list[str]) -> None:
    """Stop in one line, before Hydra composes, for a setting the composed config does not have
    (``combiner.epss=1``): Hydra would advise adding it with ``+``, and the object it is given
    to would then refuse it. Read only when the command sets a key below the top level or one
    train.yaml does not hold: its overrides (a sweep by its first value) are composed once, and
    the key Hydra could not override is reported by :func:`_missing_key_line`. Anything else
    that does not compose is left to Hydra, in its words."""
    from hydra.errors import ConfigCompositionException

    from moo_lightning.cli.checks import train_keys

    given = _parsed(argv)
    if not given:
        return
    groups = _config_groups(given)
    plain = [  # value overrides of this project's keys, without + / ++ / ~
        o
        for o in given
        if not (o.key_or_group in groups or o.key_or_group.startswith("hydra"))
        and not (o.is_add() or o.is_force_add() or o.is_delete())
    ]
    if not any("." in o.key_or_group or o.key_or_group not in train_keys() for o in plain):
        return
    lines = {}  # each override as composed (a sweep by its first value; Hydra's keys left out)
    for o in given:
        if o.key_or_group.startswith("hydra") and o.key_or_group != "hydra.searchpath":
            continue
        if not o.is_sweep_override():
            lines[o.input_line] = o.input_line
        elif _values(o, as_typed=True):
            lines[o.input_line] = f"{o.get_key_element()}={_values(o, as_typed=True)[0]}"
    try:
        _compose(list(lines.values()))
        return
    except ConfigCompositionException as err:
        key = getattr(err.__cause__, "full_key", None)
        if not str(err).startswith("Could not override") or not key:
            return
    except Exception:  # noqa: BLE001 - anything else: Hydra reports it in its words
        return
    culprit = next((o for o in plain if o.key_or_group == key), None)
    if culprit is None:
        return
    try:  # the config without it: where the key was looked for
        cfg = _compose([line for typed, line in lines.items() if typed != culprit.input_line])
    except Exception:  # noqa: BLE001 - another override fails too: Hydra reports them
        return
    line = _missing_key_line(culprit, cfg)
    if line is not None:
        raise SystemExit(f"error: {line}")


def _compose(overrides: list[str]):
    from hydra import compose, initialize_config_module

    with initialize_config_module("moo_lightning.conf", version_base="1.3"):
        return compose("train", overrides=overrides)


def _missing_key_line(o, cfg) -> str | None:
    """The line for override ``o`` whose key ``cfg`` (the config without it) does not have: a
    top-level key with the keys it may have meant; a key of an object the config builds with
    the settings the object takes (what ``+combiner.epss=1`` gets), or the advice to add one it
    takes that its config leaves out; another key with its closest neighbours. None when Hydra
    says it better (a key below a value, an object taking ``**kwargs``)."""
    import difflib

    from omegaconf import OmegaConf

    from moo_lightning.cli.checks import did_you_mean, meant_keys, target_settings, unknown_setting

    key, typed = o.key_or_group, short_name(o.input_line)
    where, _, last = key.rpartition(".")
    if not where:  # a top-level key this run's configs do not have
        meant = meant_keys(key, OmegaConf.to_container(cfg, resolve=False))
        return f"{typed}: no setting of this project is called {key!r}.{did_you_mean(meant)}"
    node = OmegaConf.select(cfg, where)
    if not OmegaConf.is_dict(node):
        return None
    target = node.get("_target_")
    if target is None:
        close = [f"{short_name(where)}.{k}" for k in difflib.get_close_matches(last, list(node))]
        return (
            f"{typed}: no setting of this project is called {short_name(key)!r}."
            f"{did_you_mean(close[:3])}"
        )
    accepted = target_settings(target)
    if accepted is None:
        return None
    if last not in accepted:
        return unknown_setting(typed, short_name(where), last, target, accepted)
    return (
        f"{typed}: {target} ({short_name(where)}) takes {last!r}, but its config does not set "
        f"it: add it with +{typed}"
    )


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
