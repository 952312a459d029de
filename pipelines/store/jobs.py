"""Background jobs: every training run (SFT, reward model, DPO, RLOO) goes through here.

A job is a row in the database plus a directory `<data>/jobs/<id>/` holding its spec, inputs,
`log.txt` and `metrics.jsonl`. The app's `JobManager` starts queued jobs as separate processes
(`python -m pipelines.store.worker <id>`, in their own process group), so the UI never blocks, a
cancel can kill the whole process tree, memory returns to the OS when a job ends, and a page
reload or an app restart finds the job again. A job whose process vanished without writing a
final status is marked *interrupted*. The CLI runs the same job functions in the foreground
(also under `accelerate launch`), registered in the same table so the UI sees them too.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import delete, select, update

from pipelines.config import Settings, get_settings
from pipelines.errors import PlaygroundError
from pipelines.gpu import on_zero_gpu
from pipelines.store.db import locked_session, rowcount, serialise, session
from pipelines.store.files import write_atomic
from pipelines.store.tables import JobRow

log = logging.getLogger(__name__)

QUEUED, RUNNING = "queued", "running"
SUCCEEDED, FAILED, CANCELLED, INTERRUPTED = "succeeded", "failed", "cancelled", "interrupted"
FINAL = frozenset({SUCCEEDED, FAILED, CANCELLED, INTERRUPTED})
CANCEL_GRACE_SECONDS = 5.0
# A running job's process writes `heartbeat_at` this often. A replica on another host cannot see
# that process; when the heartbeat is older than LOST_AFTER_SECONDS (the host died, or its replica
# was killed with its jobs) any replica's manager marks the job interrupted, so it stops counting
# against the queue's parallel limit and its page says what happened.
HEARTBEAT_SECONDS = 30.0
LOST_AFTER_SECONDS = 180.0

# kind -> "module:function"; imported only inside the worker, so the app stays light.
KINDS: dict[str, str] = {
    "finetune": "pipelines.train.finetune:run_job",
    "reward": "pipelines.train.reward_training:run_job",
    "dpo": "pipelines.train.align.dpo:run_job",
    "rloo": "pipelines.train.align.rloo:run_job",
    "classify": "pipelines.train.classify:run_job",
    "distill": "pipelines.train.distill:run_job",
    "grpo": "pipelines.reasoning.grpo:run_job",
}


# where each kind's result is published: two jobs writing one name there would race, and the later
# one could only fail ("already exists") after waiting its turn
OUTPUTS: dict[str, str] = {
    "finetune": "adapters",
    "dpo": "adapters",
    "rloo": "adapters",
    "reward": "reward models",
    "classify": "classifiers",
    "distill": "students",
    "grpo": "adapters",
}


class JobError(PlaygroundError, RuntimeError):
    """A job cannot be submitted, found or controlled; the message says why."""


class JobCancelled(Exception):
    """Raised inside a job function when a cancel was requested."""


@dataclass(frozen=True, kw_only=True)
class JobInfo:
    """A snapshot of a job, safe to hand to any thread or UI (built by name: eighteen fields)."""

    id: str
    kind: str
    name: str
    status: str
    spec: dict[str, Any]
    owner: str | None = None
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    progress: float = 0.0
    step: int = 0
    total_steps: int = 0
    eta_seconds: float | None = None
    message: str = ""
    result: dict[str, Any] = field(default_factory=dict)
    cancel_requested: bool = False
    foreground: bool = False
    pid: int | None = None

    @property
    def done(self) -> bool:
        return self.status in FINAL

    @property
    def elapsed(self) -> float:
        if self.started_at is None:
            return 0.0
        return (self.finished_at or time.time()) - self.started_at


def _info(row: JobRow) -> JobInfo:
    return JobInfo(
        id=row.id,
        kind=row.kind,
        name=row.name,
        status=row.status,
        spec=json.loads(row.spec or "{}"),
        owner=row.owner,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        progress=row.progress or 0.0,
        step=row.step or 0,
        total_steps=row.total_steps or 0,
        eta_seconds=row.eta_seconds,
        message=row.message or "",
        result=json.loads(row.result or "{}"),
        cancel_requested=bool(row.cancel_requested),
        foreground=bool(row.foreground),
        pid=row.pid,
    )


# --- files --------------------------------------------------------------------------------------


def job_dir(job_id: str, settings: Settings | None = None) -> Path:
    if not job_id or not all(c.isalnum() for c in job_id):
        raise JobError(f"invalid job id {job_id!r}")
    return (settings or get_settings()).data_dir / "jobs" / job_id


def log_path(job_id: str, settings: Settings | None = None) -> Path:
    return job_dir(job_id, settings) / "log.txt"


def metrics_path(job_id: str, settings: Settings | None = None) -> Path:
    return job_dir(job_id, settings) / "metrics.jsonl"


def phases_path(job_id: str, settings: Settings | None = None) -> Path:
    return job_dir(job_id, settings) / "phases.json"


def read_phases(job_id: str, settings: Settings | None = None) -> list[Phase]:
    """The job's phases as last written (none for jobs that predate phases, or a torn file)."""
    try:
        data = json.loads(phases_path(job_id, settings).read_text(encoding="utf-8"))
        return [Phase(**{k: v for k, v in entry.items() if k in Phase.__dataclass_fields__}) for entry in data]
    except (OSError, ValueError, TypeError):
        return []


def read_metrics(job_id: str, settings: Settings | None = None) -> list[dict[str, Any]]:
    """Every metrics record the job has written; a half-written last line is skipped."""
    path = metrics_path(job_id, settings)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07]*\x07|[@-Z\\-_])")


def readable(text: str) -> str:
    """Log text as a person reads it: no terminal colour codes, and of a line redrawn with
    carriage returns (a progress bar) only its last state."""
    text = _ANSI.sub("", text)
    return "\n".join(line.rsplit("\r", 1)[-1] if "\r" in line else line for line in text.split("\n"))


def tail_log(job_id: str, lines: int = 60, settings: Settings | None = None) -> str:
    path = log_path(job_id, settings)
    if not path.is_file():
        return ""
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - 64_000))
        text = handle.read().decode("utf-8", errors="replace")
    kept = [line for line in readable(text).splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


# --- the table ----------------------------------------------------------------------------------


def submit(
    kind: str, name: str, spec: dict[str, Any], *, owner: str | None = None, job_id: str | None = None
) -> JobInfo:
    """Queue a job; the app's JobManager starts it when a slot is free."""
    if kind not in KINDS:
        raise JobError(f"unknown job kind {kind!r}")
    job_id = job_id or uuid.uuid4().hex[:12]
    job_dir(job_id).mkdir(parents=True, exist_ok=True)
    (job_dir(job_id) / "spec.json").write_text(json.dumps(spec, indent=2), encoding="utf-8")
    same_output = [other for other, output in OUTPUTS.items() if output == OUTPUTS[kind]]
    with locked_session() as s:
        serialise(s)  # the check and the insert are one step: two clicks at once queue one job
        waiting = s.scalar(
            select(JobRow).where(
                JobRow.name == name, JobRow.kind.in_(same_output), JobRow.status.in_((QUEUED, RUNNING))
            )
        )
        if waiting is not None:
            raise JobError(
                f"a {waiting.kind} job writing {name!r} is already {waiting.status} (started "
                f"{time.strftime('%H:%M', time.localtime(waiting.created_at))}): wait for it, cancel it, or choose another name"
            )
        row = JobRow(
            id=job_id,
            kind=kind,
            name=name,
            status=QUEUED,
            spec=json.dumps(spec),
            owner=owner,
            created_at=time.time(),
            message="waiting for a free slot",
        )
        s.add(row)
        s.flush()
        return _info(row)


def start(kind: str, name: str, spec: dict[str, Any], *, job_id: str | None = None) -> JobInfo:
    """Queue a job and let this process's manager start it now if a slot is free (not at its next poll)."""
    job = submit(kind, name, spec, job_id=job_id)
    manager().poll_once()
    return job


def get(job_id: str) -> JobInfo:
    with session() as s:
        row = s.get(JobRow, job_id)
        if row is None:
            raise JobError(f"no job {job_id!r}")
        return _info(row)


def list_jobs(limit: int = 50, kinds: tuple[str, ...] | None = None) -> list[JobInfo]:
    with session() as s:
        query = select(JobRow).order_by(JobRow.created_at.desc()).limit(limit)
        if kinds:
            query = query.where(JobRow.kind.in_(kinds))
        return [_info(r) for r in s.scalars(query)]


def forget_ended(kinds: tuple[str, ...]) -> int:
    """Remove the jobs of `kinds` that ended without a result (cancelled, failed, interrupted), with their logs:
    the job pickers fill up with them. Succeeded jobs stay (their logs and figures are the results' history)."""
    ended = (CANCELLED, FAILED, INTERRUPTED)
    with session() as s:
        ids = list(s.scalars(select(JobRow.id).where(JobRow.kind.in_(kinds), JobRow.status.in_(ended))))
        if ids:
            s.execute(delete(JobRow).where(JobRow.id.in_(ids)))
    for job_id in ids:
        shutil.rmtree(job_dir(job_id), ignore_errors=True)
    return len(ids)


def request_cancel(job_id: str) -> JobInfo:
    """Cancel a job: a queued one at once, a running one within seconds."""
    with session() as s:
        row = s.get(JobRow, job_id)
        if row is None:
            raise JobError(f"no job {job_id!r}")
        if row.status == QUEUED:
            row.status, row.finished_at, row.message = CANCELLED, time.time(), "cancelled before it started"
        elif row.status == RUNNING:
            row.cancel_requested = True
            row.message = "cancelling…"
        return _info(row)


def _finish(job_id: str, status: str, message: str, result: dict[str, Any] | None = None) -> bool:
    """Write a final status once: only a running job can finish (compare-and-set)."""
    values: dict[str, Any] = {
        "status": status,
        "finished_at": time.time(),
        "message": message[:4000],
        "eta_seconds": None,
    }
    if result is not None:
        values["result"] = json.dumps(result)
    if status == SUCCEEDED:
        values["progress"] = 1.0
    with session() as s:
        done = s.execute(update(JobRow).where(JobRow.id == job_id, JobRow.status == RUNNING).values(**values))
        return rowcount(done) == 1


# --- inside a job -------------------------------------------------------------------------------


@dataclass
class Phase:
    """One named stage of a job (prepare, train, evaluate, ...) with its own progress and clock.

    A run is more than its optimizer steps: a short fine-tune spends most of its time measuring
    the model before and after. Each phase therefore has its own count and its own ETA, taken
    from its own elapsed time only, so a slow start never inflates the ETA of what follows.
    """

    name: str
    label: str
    unit: str = ""
    total: int = 0
    done: int = 0
    note: str = ""
    started: float | None = None
    finished: float | None = None

    @property
    def state(self) -> str:
        return "done" if self.finished else "running" if self.started else "pending"

    def elapsed(self, now: float | None = None) -> float:
        if self.started is None:
            return 0.0
        return (self.finished or now or time.time()) - self.started

    def eta(self, now: float | None = None) -> float | None:
        """Seconds left at the pace of this phase so far (None until one unit is done)."""
        if self.state != "running" or not self.done or not self.total:
            return None
        return self.elapsed(now) / self.done * max(self.total - self.done, 0)

    @property
    def fraction(self) -> float:
        if self.state == "done":
            return 1.0
        return min(self.done / self.total, 1.0) if self.total else 0.0


@dataclass
class JobContext:
    """What a job function gets: its spec and directory, and ways to report and to stop."""

    job_id: str
    spec: dict[str, Any]
    directory: Path
    echo: bool = False  # also print progress lines to stderr (foreground runs)
    report: bool = True  # False on non-main ranks of a distributed run
    _stop: threading.Event = field(default_factory=threading.Event)
    _last_write: float = 0.0
    _last_phase_write: float = 0.0
    _last_cancel_check: float = 0.0
    _phases: list[Phase] = field(default_factory=list)

    def info(self, message: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {message}"
        if self.report:
            with log_path(self.job_id).open("a", encoding="utf-8") as handle:
                handle.write(line + "\n")
        if self.echo:
            print(line, file=sys.stderr, flush=True)
        if self.report:
            with session() as s:
                s.execute(update(JobRow).where(JobRow.id == self.job_id).values(message=message[:4000]))

    def metric(self, record: dict[str, Any]) -> None:
        """Append one record (e.g. {"step": 3, "loss": 1.2}) to metrics.jsonl for live plots."""
        if not self.report:
            return
        record = {"time": time.time(), **record}
        with metrics_path(self.job_id).open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    # --- phases: what the job is doing now, and what comes next

    def plan(self, *phases: Phase) -> None:
        """Declare the job's phases up front, so the page shows what is still to come."""
        self._phases = list(phases)
        self._write_phases(force=True)

    def phase(self, name: str, *, total: int | None = None, note: str | None = None) -> Phase:
        """Finish the running phase and start `name` (declared by `plan`, or added now)."""
        now = time.time()
        for running in self._phases:
            if running.state == "running":
                running.finished = now
        current = next((p for p in self._phases if p.name == name), None)
        if current is None:
            current = Phase(name=name, label=name.capitalize())
            self._phases.append(current)
        current.started, current.finished, current.done = now, None, 0
        if total is not None:
            current.total = total
        if note is not None:
            current.note = note
        self.info(f"{current.label}" + (f" ({current.note})" if current.note else ""))
        self._write_phases(force=True)
        return current

    def advance(self, done: int, total: int | None = None, *, force: bool = False) -> None:
        """Progress within the running phase (`done` of `total` units)."""
        current = self.current_phase
        if current is None:
            return
        current.done = done
        if total is not None:
            current.total = total
        self._write_phases(force=force or (bool(current.total) and done >= current.total))

    def finish_phases(self) -> None:
        now = time.time()
        for running in self._phases:
            if running.state == "running":
                running.finished = now
        self._write_phases(force=True)

    @property
    def current_phase(self) -> Phase | None:
        return next((p for p in self._phases if p.state == "running"), None)

    def _write_phases(self, *, force: bool = False) -> None:
        if not self.report or not self._phases:
            return
        now = time.monotonic()
        if not force and now - self._last_phase_write < 1.0:
            return
        self._last_phase_write = now
        write_atomic(phases_path(self.job_id), json.dumps([asdict(p) for p in self._phases]))  # never half a file

    def progress(self, step: int, total: int, *, force: bool = False) -> None:
        """Optimizer steps (the trainer callback): the job row's step count and the current phase."""
        if not self.report:
            return
        if self.current_phase is None:  # a job that declared no phases: its steps are its training
            self.phase("train")
        self.advance(step, total, force=force)
        now = time.monotonic()
        if not force and now - self._last_write < 1.0:
            return
        self._last_write = now
        fraction = min(step / total, 1.0) if total else 0.0
        current = self.current_phase
        eta = current.eta() if current is not None else None
        with session() as s:
            s.execute(
                update(JobRow)
                .where(JobRow.id == self.job_id)
                .values(step=step, total_steps=total, progress=fraction, eta_seconds=eta)
            )

    def request_stop(self) -> None:
        self._stop.set()

    def should_stop(self) -> bool:
        """True once a cancel was requested (SIGTERM, Ctrl-C, or the Cancel button)."""
        if self._stop.is_set():
            return True
        now = time.monotonic()
        if self.report and now - self._last_cancel_check > 1.0:
            self._last_cancel_check = now
            with session() as s:
                row = s.get(JobRow, self.job_id)
                if row is not None and row.cancel_requested:
                    self._stop.set()
        return self._stop.is_set()

    def check(self) -> None:
        if self.should_stop():
            raise JobCancelled()


def trainer_callback(ctx: JobContext):
    """A transformers TrainerCallback that reports progress/metrics and honours cancel."""
    from transformers import TrainerCallback

    class JobCallback(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
            ctx.progress(0, state.max_steps, force=True)

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            ctx.progress(state.global_step, state.max_steps, force=state.global_step == state.max_steps)
            if ctx.should_stop():
                control.should_training_stop = True
            return control

        def on_prediction_step(self, args, state, control, **kwargs):  # noqa: ANN001
            # a measuring phase counts its examples as evaluation batches pass (it stayed at "0/3 pairs")
            current = ctx.current_phase
            if current is not None and current.unit != "steps" and current.total:
                ctx.advance(min(current.total, current.done + args.per_device_eval_batch_size * args.world_size))

        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
            if logs:
                clean = {k: float(v) for k, v in logs.items() if isinstance(v, (int, float))}
                ctx.metric({"step": state.global_step, "epoch": state.epoch, **clean})
                shown = ", ".join(
                    f"{k}={v:.4g}" for k, v in clean.items() if k in ("loss", "eval_loss", "learning_rate", "grad_norm")
                )
                # an evaluation before training has no steps yet: "step 0/0" said nothing
                where = f"step {state.global_step}/{state.max_steps}" if state.max_steps else "before training"
                if shown:
                    ctx.info(f"{where}: {shown}")

    return JobCallback()


def _resolve(kind: str) -> Callable[[JobContext], dict[str, Any]]:
    module_name, _, function = KINDS[kind].partition(":")
    return getattr(importlib.import_module(module_name), function)


def _beat(job_id: str) -> None:
    with session() as s:
        s.execute(update(JobRow).where(JobRow.id == job_id, JobRow.status == RUNNING).values(heartbeat_at=time.time()))


@contextmanager
def _heartbeats(ctx: JobContext) -> Iterator[None]:
    """While the job runs, a thread writes its heartbeat (main rank only: it owns the row)."""
    if not ctx.report:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            try:
                _beat(ctx.job_id)
            except Exception:  # noqa: BLE001 - a missed beat is retried; the job must go on
                log.warning("job %s: heartbeat not written", ctx.job_id, exc_info=True)

    _beat(ctx.job_id)
    thread = threading.Thread(target=beat, name=f"heartbeat-{ctx.job_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()


def _execute(ctx: JobContext, kind: str) -> tuple[str, str, dict[str, Any]]:
    """Run a job function; (final status, message, result). Never raises."""
    try:
        with _heartbeats(ctx):
            result = _resolve(kind)(ctx)
    except JobCancelled:
        return CANCELLED, "cancelled", {}
    except KeyboardInterrupt:
        return CANCELLED, "cancelled (interrupted from the keyboard)", {}
    except Exception as error:  # noqa: BLE001 - any failure must end as a readable status, not a hang
        log.exception("job %s failed", ctx.job_id)
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return FAILED, f"{type(error).__name__}: {first}", {}
    if ctx.should_stop():
        return CANCELLED, "cancelled", result
    ctx.finish_phases()
    return SUCCEEDED, "finished", result


def run_worker(job_id: str) -> int:
    """Entry point of a job process started by the JobManager."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    job = get(job_id)
    ctx = JobContext(job_id=job_id, spec=job.spec, directory=job_dir(job_id))
    signal.signal(signal.SIGTERM, lambda *_: ctx.request_stop())
    with session() as s:
        s.execute(update(JobRow).where(JobRow.id == job_id).values(started_at=time.time(), message="starting"))
    ctx.info(f"{job.kind} job {job.name!r} started (pid {os.getpid()})")
    status, message, result = _execute(ctx, job.kind)
    ctx.info(f"{status}: {message}")
    _finish(job_id, status, message, result)
    return 0 if status == SUCCEEDED else 1


def rank() -> int:
    """This process's rank in a distributed run (torchrun / `accelerate launch`, or MPI); 0 otherwise."""
    for name in ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


def is_main_rank() -> bool:
    return rank() == 0


def run_foreground(
    kind: str, name: str, spec: dict[str, Any], *, owner: str | None = None, echo: bool = True
) -> JobInfo:
    """Run a job in this process (the CLI path), visible to the app like any other job.

    Under `accelerate launch` every rank runs the job function; only rank 0 records it.
    """
    if kind not in KINDS:
        raise JobError(f"unknown job kind {kind!r}")
    main = is_main_rank()
    job_id = uuid.uuid4().hex[:12]
    if main:
        job_dir(job_id).mkdir(parents=True, exist_ok=True)
        (job_dir(job_id) / "spec.json").write_text(json.dumps(spec, indent=2), encoding="utf-8")
        me = psutil.Process()
        with session() as s:
            s.add(
                JobRow(
                    id=job_id,
                    kind=kind,
                    name=name,
                    status=RUNNING,
                    spec=json.dumps(spec),
                    owner=owner,
                    created_at=time.time(),
                    started_at=time.time(),
                    host=socket.gethostname(),
                    pid=me.pid,
                    pid_started=me.create_time(),
                    heartbeat_at=time.time(),
                    foreground=True,
                    message="running in the foreground",
                )
            )
    directory = job_dir(job_id) if main else Path(tempfile.mkdtemp(prefix="playground-rank-"))
    ctx = JobContext(job_id=job_id, spec=spec, directory=directory, echo=echo and main, report=main)
    previous = signal.signal(signal.SIGTERM, lambda *_: ctx.request_stop())
    try:
        status, message, result = _execute(ctx, kind)
    finally:
        signal.signal(signal.SIGTERM, previous)
        if not main:  # a rank's scratch (its trainer's output_dir): rank 0 keeps the job's
            shutil.rmtree(directory, ignore_errors=True)
    if main:
        ctx.info(f"{status}: {message}")
        _finish(job_id, status, message, result)
        return get(job_id)
    return JobInfo(  # a rank other than 0 keeps no row: what it did, as a snapshot
        id=job_id,
        kind=kind,
        name=name,
        status=status,
        spec=spec,
        owner=owner,
        progress=1.0,
        message=message,
        result=result,
        foreground=True,
    )


# --- the manager (lives in the app process) ------------------------------------------------------


def _alive(pid: int | None, started: float | None) -> bool:
    """Is this exact process still running? (pid + start time, so a reused pid does not count)."""
    if not pid:
        return False
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(process.create_time() - started) < 1.0
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def worker_environment(settings: Settings) -> dict[str, str]:
    """The environment of a job's worker process."""
    env = {
        **os.environ,
        "PLAYGROUND_DATA_DIR": str(settings.data_dir),
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH")])
        ),
        "PYTHONUNBUFFERED": "1",
        # Training is torch's; before/after evaluations must also decode on one engine, in full precision, to compare.
        "PLAYGROUND_ENGINE": "torch",
        "PLAYGROUND_FAST": "0",
        # The log is for people: no progress bars drawn with carriage returns, no deprecation chatter.
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
        "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
        "PYTHONWARNINGS": "ignore::FutureWarning,ignore::DeprecationWarning",
        "NO_COLOR": "1",
        "TERM": "dumb",
    }
    if settings.database_url:
        env["PLAYGROUND_DATABASE_URL"] = settings.database_url
    if on_zero_gpu():  # a job outlives any GPU call's duration: it trains on the CPU
        env["PLAYGROUND_DEVICE"] = "cpu"
    return env


class JobManager:
    """Starts queued jobs as processes, watches them, cancels them, recovers after restarts."""

    def __init__(
        self, settings: Settings | None = None, *, max_parallel: int | None = None, interval: float = 1.0
    ) -> None:
        self.settings = settings or get_settings()
        self.max_parallel = max_parallel or self.settings.max_jobs
        self.interval = interval
        self.host = socket.gethostname()
        self._procs: dict[str, subprocess.Popen] = {}
        self._term_sent: dict[str, float] = {}
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    def start(self) -> JobManager:
        self.recover()
        self._thread = threading.Thread(target=self._loop, name="job-manager", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stopping.wait(self.interval):
            try:
                self.poll_once()
            except Exception:  # noqa: BLE001 - the manager must outlive a transient DB error
                log.exception("job manager poll failed")

    def recover(self) -> list[str]:
        """Jobs marked running whose process is gone end here: cancelled if someone asked for that
        (the kill after the grace period is the cancel's), else interrupted. On this host, "gone"
        is the process itself (after a restart: not this app's children); on another host, a
        heartbeat older than LOST_AFTER_SECONDS (that machine or replica is gone)."""
        lost = []
        with session(self.settings) as s:
            rows = list(s.scalars(select(JobRow).where(JobRow.status == RUNNING)))
        now = time.time()
        for row in rows:
            if row.id in self._procs:
                continue
            if row.host in (None, self.host):
                if _alive(row.pid, row.pid_started):
                    continue
                why = "the job's process ended without finishing (app restart or crash); see its log"
            elif row.heartbeat_at is not None and now - row.heartbeat_at > LOST_AFTER_SECONDS:
                why = (
                    f"no sign of life from its process on {row.host} for {now - row.heartbeat_at:.0f} s "
                    "(that machine or app replica stopped); see its log"
                )
            else:
                continue
            if row.cancel_requested:
                _finish(row.id, CANCELLED, "cancelled")
            elif _finish(row.id, INTERRUPTED, why):
                lost.append(row.id)
        return lost

    def poll_once(self) -> None:
        with self._lock:
            self._reap()
            self.recover()
            self._cancel_requested()
            self._start_queued()

    def _reap(self) -> None:
        for job_id, proc in list(self._procs.items()):
            code = proc.poll()
            if code is None:
                continue
            del self._procs[job_id]
            self._term_sent.pop(job_id, None)
            job = get(job_id)
            if job.status == RUNNING:  # the worker died before writing its own final status
                if job.cancel_requested:
                    _finish(job_id, CANCELLED, "cancelled")
                else:
                    how = f"signal {-code}" if code < 0 else f"exit code {code}"
                    _finish(job_id, INTERRUPTED, f"the job's process died ({how}); see its log")

    def _cancel_requested(self) -> None:
        with session(self.settings) as s:
            rows = list(s.scalars(select(JobRow).where(JobRow.status == RUNNING, JobRow.cancel_requested.is_(True))))
        now = time.monotonic()
        for row in rows:
            if (
                row.foreground
                or row.pid is None
                or row.host not in (None, self.host)
                or not _alive(row.pid, row.pid_started)
            ):
                continue  # foreground jobs poll the flag themselves; dead ones are reaped
            first = self._term_sent.get(row.id)
            try:
                if first is None:
                    os.killpg(row.pid, signal.SIGTERM)
                    self._term_sent[row.id] = now
                elif now - first > CANCEL_GRACE_SECONDS:
                    os.killpg(row.pid, signal.SIGKILL)  # the whole tree, dataloader workers included
            except ProcessLookupError:
                pass

    def _start_queued(self) -> None:
        with session(self.settings) as s:
            active = len(list(s.scalars(select(JobRow.id).where(JobRow.status == RUNNING))))
            queued = list(s.scalars(select(JobRow.id).where(JobRow.status == QUEUED).order_by(JobRow.created_at)))
        for job_id in queued[: max(0, self.max_parallel - active)]:
            self._launch(job_id)

    def _launch(self, job_id: str) -> None:
        with session(self.settings) as s:  # claim atomically: another replica may be racing us
            claimed = rowcount(
                s.execute(
                    update(JobRow)
                    .where(JobRow.id == job_id, JobRow.status == QUEUED)
                    .values(
                        status=RUNNING,
                        host=self.host,
                        message="starting",
                        started_at=time.time(),
                        heartbeat_at=time.time(),
                    )
                )
            )
        if claimed != 1:
            return
        directory = job_dir(job_id, self.settings)
        directory.mkdir(parents=True, exist_ok=True)
        env = worker_environment(self.settings)
        with (directory / "log.txt").open("ab") as logfile:
            proc = subprocess.Popen(
                [sys.executable, "-m", "pipelines.store.worker", job_id],
                stdout=logfile,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=str(directory),
                start_new_session=True,
            )
        self._procs[job_id] = proc
        started = psutil.Process(proc.pid).create_time() if psutil.pid_exists(proc.pid) else None
        with session(self.settings) as s:
            s.execute(update(JobRow).where(JobRow.id == job_id).values(pid=proc.pid, pid_started=started))

    def cancel(self, job_id: str) -> JobInfo:
        job = request_cancel(job_id)
        self.poll_once()
        return get(job_id) if not job.done else job


_manager: JobManager | None = None


def manager() -> JobManager:
    """The process-wide manager (started by the app)."""
    global _manager
    if _manager is None:
        _manager = JobManager().start()
    return _manager
