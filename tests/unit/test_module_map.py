"""The shape of the code: no import circles, light leaves, one error family, short functions.

Storage, the sandbox and the CLI's help must not pull in torch (seconds of import, gigabytes of
address space); a module that needs the model stack imports it itself. An import circle, even
through an import inside a function, means two modules that cannot be understood (or loaded)
apart.
"""

from __future__ import annotations

import ast
import subprocess
import sys

from tests.helpers import ROOT

PACKAGE = ROOT / "pipelines"


def _modules() -> dict[str, object]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(name: str, path, modules) -> set[str]:
    """Every pipelines module `name` imports, at module level or inside a function."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = (
                ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
                if node.level
                else node.module
            )
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target not in (name, "pipelines") and target.startswith("pipelines"):
                out.add(target)
    return out


def test_no_import_cycles_inside_pipelines():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    cycles, state = [], {}

    def visit(node, trail):
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                cycles.append(trail[trail.index(target) :] + [target])
            elif target not in state:
                visit(target, trail + [target])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(cycle) for cycle in cycles)


def test_a_few_modules_at_the_top_and_the_rest_in_wings():
    """A newcomer asking "where is training?" finds one folder, not ten files among fifty-seven."""
    from pipelines import WINGS

    top = sorted(path.stem for path in PACKAGE.glob("*.py"))
    assert len(top) <= 15, top
    folders = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists())
    assert folders == sorted(WINGS), "every subpackage is a wing named in pipelines.WINGS, and each exists"
    for wing in WINGS:
        assert ast.get_docstring(ast.parse((PACKAGE / wing / "__init__.py").read_text())), f"{wing}/ says what it holds"


def _wing(module: str) -> str | None:
    """The wing a module belongs to (None for the base modules directly under pipelines/)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (PACKAGE / parts[-1]).is_dir() else None


def test_wings_import_only_downward():
    """A wing never reaches up: the store knows no model, labels know no trainer, the engine no lesson."""
    from pipelines import WINGS

    modules = _modules()
    upward = []
    for name, path in modules.items():
        here = _wing(name)
        for target in _imports(name, path, modules):
            there = _wing(target)
            if name == "pipelines.__main__" or there is None or there == here:
                continue
            if here is None or WINGS.index(there) > WINGS.index(here):
                upward.append(f"{name} ({here or 'base'}) -> {target} ({there})")
    assert not upward, "imports that run back up:\n" + "\n".join(sorted(upward))


def _functions(root):
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield path, node, node.end_lineno - node.lineno + 1


def test_no_function_in_pipelines_over_120_lines():
    """A function that long is several stories in one; the training jobs were (one skeleton, five copies)."""
    long = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)"
        for path, node, lines in _functions(PACKAGE)
        if lines > 120
    ]
    assert not long, long


def test_every_training_job_is_the_one_template():
    """Each job kind runs `TrainingJob.run` (phases, checks, agreement, metadata, publish written once);
    a job's own code stays short."""
    import importlib

    from pipelines.store.jobs import KINDS
    from pipelines.train.job import TrainingJob

    for kind, entry in KINDS.items():
        module = importlib.import_module(entry.partition(":")[0])
        jobs = [
            v
            for v in vars(module).values()
            if isinstance(v, type) and issubclass(v, TrainingJob) and v.__module__ == module.__name__
        ]
        assert len(jobs) == 1, f"{kind}: one TrainingJob subclass in {module.__name__}"
        assert "run" not in vars(jobs[0]), f"{kind} must not rewrite the skeleton"
    runs = [f"{path.name} {lines}" for path, node, lines in _functions(PACKAGE / "train") if node.name == "run"]
    assert runs and all(int(run.split()[-1]) <= 80 for run in runs), runs


def test_storage_the_sandbox_and_the_cli_help_import_no_torch():
    probe = (
        "import sys\n"
        "import pipelines.labels.preferences, pipelines.labels.preference_data, pipelines.labels.preference_stats, pipelines.knobs, pipelines.store.db, pipelines.store.jobs, pipelines.sandbox, pipelines.train.sft_data, pipelines.access\n"
        "from pipelines.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'gradio') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "HEAVY []" in done.stdout, done.stdout[-500:]


def test_every_refusal_belongs_to_one_error_family():
    from pipelines import access
    from pipelines.cli import common
    from pipelines.engine import adapters, model_source
    from pipelines.errors import InvalidParameter, PlaygroundError
    from pipelines.labels import preferences
    from pipelines.rag import parsing, store
    from pipelines.store import files, jobs, rows
    from pipelines.train import sft_data

    family = [
        access.AccessDenied,
        access.AuthConfigError,
        access.SignInThrottled,
        adapters.AdapterError,
        files.UploadError,
        jobs.JobError,
        model_source.ModelUnavailable,
        preferences.PreferenceError,
        rows.RowsError,
        sft_data.DataError,
        common.UsageError,
        common.CommandFailed,
        model_source.EmbedderUnavailable,
        parsing.ParseError,
        store.CollectionError,
        InvalidParameter,
    ]
    assert all(issubclass(kind, PlaygroundError) for kind in family)
    assert InvalidParameter("top_p", "must be in (0, 1]").param == "top_p"
    assert model_source.ModelUnavailable("x").exit_code == 1 and sft_data.DataError("x").exit_code == 2


BUILTIN_ERRORS = {"Exception", "ValueError", "TypeError", "RuntimeError", "KeyError", "OSError", "PermissionError"}
# builtin exceptions pipelines may raise: broken invariants of the code itself, never a person's input
INTERNAL_RAISES = {
    ("pipelines/config.py", "KeyError"): 1,  # env(): a variable read that VARIABLES does not declare
    ("pipelines/engine/generation.py", "ValueError"): 2,  # stream_batch called with mismatched lists
    ("pipelines/engine/fast_decode.py", "ValueError"): 2,  # built for a model unsupported_reason refused; cache overrun
    ("pipelines/engine/llamacpp_engine.py", "ValueError"): 1,  # next_logits([])
    ("pipelines/engine/openai_engine.py", "ValueError"): 1,  # parse_choice: caught where a stream is read
}


def test_every_exception_pipelines_defines_is_in_the_family():
    """Every exception class of pipelines/ descends from PlaygroundError (the translator, the CLI's
    exit status and the API's message rely on it), but for the cancel signal, which is never shown."""
    classes: dict[str, list[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                bases = [b.attr if isinstance(b, ast.Attribute) else getattr(b, "id", "") for b in node.bases]
                classes[node.name] = bases

    def reaches(name: str, target: set[str], seen: frozenset = frozenset()) -> bool:
        if name in target:
            return True
        return any(reaches(b, target, seen | {name}) for b in classes.get(name, []) if b not in seen)

    exceptions = {n for n in classes if n not in BUILTIN_ERRORS and reaches(n, BUILTIN_ERRORS | {"PlaygroundError"})}
    outside = sorted(n for n in exceptions - {"PlaygroundError", "JobCancelled"} if not reaches(n, {"PlaygroundError"}))
    assert not outside, f"not in the PlaygroundError family: {outside}"
    assert {"LessonError", "ConfigError", "SignInRequired", "CollectionError"} <= exceptions


def test_pipelines_refuse_with_the_family_not_builtin_exceptions():
    """A refusal a person can act on is a PlaygroundError (the UI shows it, the CLI exits 2); a bare
    ValueError would surface as an unexplained failure. Only broken invariants stay builtin."""
    found: dict[tuple[str, str], int] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Raise) and node.exc is not None:
                called = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                if isinstance(called, ast.Name) and called.id in BUILTIN_ERRORS:
                    key = (path.relative_to(ROOT).as_posix(), called.id)
                    found[key] = found.get(key, 0) + 1
    assert found == INTERNAL_RAISES


def _handlers(path):
    return [n for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) if isinstance(n, ast.ExceptHandler)]


def test_the_ui_catches_only_to_add_context():
    """playground/ hands refusals to the one translator (playground/errors.py); the few except blocks
    left add something: a control's label, a warning that lets the page go on, an HTTP status in
    the middleware. None catches a bare ValueError (a refusal is a PlaygroundError)."""
    ui = ROOT / "playground"
    handlers = {
        f"{path.name}:{h.lineno}": h
        for path in sorted(ui.glob("*.py"))
        if path.name != "errors.py"
        for h in _handlers(path)
    }
    assert len(handlers) <= 8, sorted(handlers)
    bare = [
        where
        for where, h in handlers.items()
        if any(isinstance(n, ast.Name) and n.id == "ValueError" for n in ast.walk(h.type or ast.Name("bare")))
    ]
    assert not bare, bare


def test_no_function_takes_more_than_ten_parameters():
    """Past ten, the parameters are a spec (a dataclass), not a list (Label's sources, the memory plan's step)."""
    many = []
    for root in (PACKAGE, ROOT / "playground"):
        for path, node, _ in _functions(root):
            args = node.args
            names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs if a.arg not in ("self", "cls")]
            if len(names) > 10:
                many.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({len(names)})")
    assert not many, many


def test_tests_import_helpers_not_other_tests():
    """Shared test code lives in tests/helpers.py (and the other helper modules), never in a test file or conftest."""
    offenders = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            stripped = line.strip()
            if stripped.startswith(("from tests.", "import tests.")) and (
                ".conftest" in stripped or ".test_" in stripped
            ):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {stripped}")
    assert not offenders, "\n".join(offenders)
