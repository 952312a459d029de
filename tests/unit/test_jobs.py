"""The job runner with real worker processes training the tiny model."""

from __future__ import annotations

import json
import os
import signal
import time

import psutil
import pytest

from pipelines.store import db, jobs
from pipelines.train import finetune
from tests.helpers import write_sft_rows

pytestmark = pytest.mark.slow  # trains models or spawns processes: `make test-fast` skips it


@pytest.fixture(autouse=True, params=["sqlite", pytest.param("postgresql", marks=pytest.mark.heavy)])
def both_databases(request, data_dir, monkeypatch):
    """The jobs table on SQLite, and on PostgreSQL in `make test-heavy` (a minute of training
    workers more; job workers inherit PLAYGROUND_DATABASE_URL)."""
    from tests import postgres

    with postgres.database_for(request, monkeypatch) as kind:
        yield kind


@pytest.fixture
def manager(tiny_model_env, data_dir):
    db.dispose_all()
    m = jobs.JobManager(max_parallel=1, interval=0.2)
    yield m
    for job in jobs.list_jobs():
        if not job.done:
            jobs.request_cancel(job.id)
    deadline = time.time() + 20
    while m._procs and time.time() < deadline:
        m.poll_once()
        time.sleep(0.2)
    db.dispose_all()


def spec(tmp_path, name: str, **overrides) -> dict:
    data = write_sft_rows(tmp_path / f"{name}.jsonl")
    values = {
        "data": str(data),
        "out": name,
        "max_steps": 2,
        "batch_size": 4,
        "max_length": 64,
        "eval_samples": 2,
        "eval_max_new_tokens": 4,
        **overrides,
    }
    return finetune.FinetuneSpec(**values).to_dict()


def wait(manager, job_id, statuses, timeout=120.0, until=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        manager.poll_once()
        job = jobs.get(job_id)
        if job.status in statuses and (until is None or until(job)):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} still {jobs.get(job_id).status}: {jobs.tail_log(job_id)}")


def _wait_exit(manager, pid, seconds) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        manager.poll_once()  # reaps the child
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.2)
    return False


def test_queued_running_succeeded(manager, tmp_path, data_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    job = jobs.submit("finetune", "ok-run", spec(tmp_path, "ok-run"))
    assert job.status == jobs.QUEUED
    seen = {wait(manager, job.id, {jobs.RUNNING, jobs.SUCCEEDED}).status}
    done = wait(manager, job.id, {jobs.SUCCEEDED})
    seen.add(done.status)
    assert jobs.RUNNING in seen or done.started_at is not None
    assert done.progress == 1.0 and done.step == done.total_steps == 2
    assert set(done.result) >= {"adapter_dir", "train_loss", "eval_loss", "steps", "seconds"}
    records = jobs.read_metrics(job.id)
    assert any("loss" in r for r in records) and all("step" in r for r in records)
    log = jobs.tail_log(job.id, 400)
    assert "adapter saved" in log
    assert (
        "{'" not in log and "\x1b[" not in log and "\r" not in log
    )  # no raw metric dicts, colour codes or redrawn bars
    phases = jobs.read_phases(job.id)
    assert [(p.name, p.state) for p in phases] == [("prepare", "done"), ("train", "done"), ("evaluate", "done")]
    assert (phases[1].done, phases[1].total) == (2, 2)
    assert phases[2].done == phases[2].total == 2 * (1 + 1 + 2)  # per model: held-out loss, forgetting probe, 2 answers
    assert phases[0].finished <= phases[1].started and phases[1].finished <= phases[2].started
    adapter_dir = data_dir / "adapters" / "ok-run"
    meta = json.loads((adapter_dir / "meta.json").read_text())
    assert meta["kind"] == "lora" and meta["data"]["rows"] == 24 and "before" in meta["metrics"]
    # plain peft loads it, no playground code involved
    base = AutoModelForCausalLM.from_pretrained(os.environ["PLAYGROUND_MODEL"])
    assert isinstance(PeftModel.from_pretrained(base, str(adapter_dir)), PeftModel)
    assert not (data_dir / "jobs" / job.id / "adapter").exists()  # staging moved, not copied


def test_failure_is_reported_with_its_reason(manager, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "response": "b"}\n{"prompt": "no response"}\n')
    job = jobs.submit("finetune", "bad-run", {**spec(tmp_path, "bad-run"), "data": str(bad)})
    done = wait(manager, job.id, {jobs.FAILED})
    assert "rows have problems" in done.message and "row 2" in done.message
    assert "rows have problems" in jobs.tail_log(job.id)


def test_cancel_stops_a_running_job_and_queue_holds_the_next(manager, tmp_path, data_dir):
    never = jobs.submit("finetune", "never", spec(tmp_path, "never"))
    assert jobs.request_cancel(never.id).status == jobs.CANCELLED  # a queued job cancels at once
    long_job = jobs.submit("finetune", "long-run", spec(tmp_path, "long-run", max_steps=5000))
    waiting = jobs.submit("finetune", "waiting", spec(tmp_path, "waiting"))
    running = wait(manager, long_job.id, {jobs.RUNNING}, until=lambda j: j.step >= 1)
    assert jobs.get(waiting.id).status == jobs.QUEUED  # one job at a time
    pid = running.pid
    started = time.time()
    manager.cancel(long_job.id)
    done = wait(manager, long_job.id, {jobs.CANCELLED}, timeout=30)
    assert time.time() - started < 20 and done.message.startswith("cancelled")
    gone = _wait_exit(manager, pid, 10)
    assert gone, "the worker process must be gone within seconds of the cancel"
    assert not (data_dir / "adapters" / "long-run").exists()
    # the slot is free again: the queue moves on to the waiting job
    assert wait(manager, waiting.id, {jobs.RUNNING, jobs.SUCCEEDED}).status in {jobs.RUNNING, jobs.SUCCEEDED}
    assert jobs.get(never.id).status == jobs.CANCELLED and jobs.get(never.id).started_at is None


def test_killed_worker_is_marked_interrupted_with_its_log(manager, tmp_path):
    job = jobs.submit("finetune", "killed", spec(tmp_path, "killed", max_steps=5000))
    running = wait(manager, job.id, {jobs.RUNNING}, until=lambda j: j.step >= 1)
    os.killpg(running.pid, signal.SIGKILL)
    done = wait(manager, job.id, {jobs.INTERRUPTED}, timeout=30)
    assert "died" in done.message and "started" in jobs.tail_log(job.id)


def test_restart_marks_orphans_interrupted(tiny_model_env, data_dir):
    job = jobs.submit("finetune", "orphan", {"data": "x", "out": "orphan"})
    dead = psutil.Popen(["true"])
    dead.wait()
    with db.session() as s:
        row = s.get(jobs.JobRow, job.id)
        row.status, row.pid, row.pid_started, row.host = jobs.RUNNING, dead.pid, time.time() - 100, None
    alive = jobs.submit("finetune", "alive", {"data": "x", "out": "alive"})
    me = psutil.Process()
    with db.session() as s:
        row = s.get(jobs.JobRow, alive.id)
        row.status, row.pid, row.pid_started, row.foreground = jobs.RUNNING, me.pid, me.create_time(), True
    cancelled = jobs.submit("finetune", "cancelled-orphan", {"data": "x", "out": "cancelled-orphan"})
    with db.session() as s:  # kept running across a restart, then cancelled: the new app killed it after the grace
        row = s.get(jobs.JobRow, cancelled.id)
        row.status, row.pid, row.pid_started, row.host, row.cancel_requested = (
            jobs.RUNNING,
            dead.pid,
            time.time() - 100,
            None,
            True,
        )
    fresh = jobs.JobManager(max_parallel=1)  # what an app restart creates
    assert fresh.recover() == [job.id]
    assert jobs.get(cancelled.id).status == jobs.CANCELLED
    assert jobs.get(job.id).status == jobs.INTERRUPTED and "ended without finishing" in jobs.get(job.id).message
    assert jobs.get(alive.id).status == jobs.RUNNING  # a live process (a CLI run) is left alone


def _running_elsewhere(name: str, heartbeat: float | None, *, cancel: bool = False) -> str:
    job = jobs.submit("finetune", name, {"data": "x", "out": name})
    with db.session() as s:
        row = s.get(jobs.JobRow, job.id)
        row.status, row.host, row.pid, row.pid_started = jobs.RUNNING, "another-replica", 4242, time.time() - 500
        row.heartbeat_at, row.cancel_requested = heartbeat, cancel
    return job.id


def test_a_job_whose_host_stopped_reporting_is_interrupted_by_any_replica(data_dir):
    """A replica killed with its jobs (or its whole machine) leaves rows 'running' that no other
    replica can check by pid: a heartbeat older than LOST_AFTER_SECONDS ends them."""
    now = time.time()
    stale = _running_elsewhere("stale", now - jobs.LOST_AFTER_SECONDS - 60)
    fresh = _running_elsewhere("fresh", now - 5)
    unknown = _running_elsewhere("started-before-heartbeats", None)
    cancelled = _running_elsewhere("stale-cancelled", now - jobs.LOST_AFTER_SECONDS - 60, cancel=True)
    assert jobs.JobManager(max_parallel=1).recover() == [stale]
    assert jobs.get(stale).status == jobs.INTERRUPTED
    assert "no sign of life from its process on another-replica for 24" in jobs.get(stale).message
    assert jobs.get(cancelled).status == jobs.CANCELLED
    assert jobs.get(fresh).status == jobs.RUNNING and jobs.get(unknown).status == jobs.RUNNING


def test_a_running_job_writes_its_heartbeat_until_it_ends(data_dir, monkeypatch):
    monkeypatch.setattr(jobs, "HEARTBEAT_SECONDS", 0.05)
    job = jobs.submit("finetune", "beating", {"data": "x", "out": "beating"})
    with db.session() as s:
        s.get(jobs.JobRow, job.id).status = jobs.RUNNING

    def heartbeat() -> float | None:
        with db.session() as s:
            return s.get(jobs.JobRow, job.id).heartbeat_at

    ctx = jobs.JobContext(job_id=job.id, spec={}, directory=jobs.job_dir(job.id))
    with jobs._heartbeats(ctx):
        first = heartbeat()
        assert first is not None  # written at once, not after the first interval
        time.sleep(0.5)
        assert heartbeat() > first
    last = heartbeat()
    time.sleep(0.3)
    assert heartbeat() == last  # the thread stopped with the job


def test_unknown_kind_and_job_are_refused(data_dir):
    with pytest.raises(jobs.JobError, match="unknown job kind"):
        jobs.submit("mining", "x", {})
    with pytest.raises(jobs.JobError, match="no job"):
        jobs.get("doesnotexist")
    with pytest.raises(jobs.JobError, match="invalid job id"):
        jobs.job_dir("../../etc")


def test_phases_have_their_own_progress_and_eta(data_dir, monkeypatch):
    """A slow phase before training must not inflate the training ETA (it counted from the job's start)."""
    from sqlalchemy import update

    from playground import jobs_panel

    job = jobs.submit("finetune", "phased", {"data": "x", "out": "phased"})
    with db.session() as s:
        s.execute(update(jobs.JobRow).where(jobs.JobRow.id == job.id).values(status=jobs.RUNNING, started_at=1000.0))
    ctx = jobs.JobContext(job_id=job.id, spec={}, directory=jobs.job_dir(job.id))
    clock = [1000.0]
    monkeypatch.setattr(jobs.time, "time", lambda: clock[0])
    ctx.plan(
        jobs.Phase("prepare", "Prepare"),
        jobs.Phase("train", "Train", unit="steps"),
        jobs.Phase("evaluate", "Evaluate", unit="parts"),
    )
    ctx.phase("prepare")
    clock[0] += 300  # five minutes of preparation
    ctx.phase("train", total=10)
    clock[0] += 20
    ctx.progress(2, 10, force=True)  # 10 s per step
    train = ctx.current_phase
    assert train.name == "train" and train.eta() == pytest.approx(80)
    assert jobs.get(job.id).eta_seconds == pytest.approx(80)  # not (320 s / 2) * 8
    phases = jobs.read_phases(job.id)
    assert [p.state for p in phases] == ["done", "running", "pending"]
    assert phases[0].elapsed() == pytest.approx(300)
    html = jobs_panel.progress_html(jobs.get(job.id), phases)
    assert "Train · step 2/10" in html and "ETA 1m 20s" in html and "Evaluate" in html and "5m 00s" in html


def test_readable_log_drops_terminal_debris():
    text = "a\x1b[31mred\x1b[0m\nbar 10%\rbar 50%\rbar 100%\n\x1b]0;title\x07ok"
    assert jobs.readable(text) == "ared\nbar 100%\nok"


def test_a_second_job_writing_the_same_result_is_refused_at_submit(data_dir):
    """Issue 42, W7: pressing Start again queued a second job that waited, then failed "adapter ... already exists"."""
    import threading

    first = jobs.submit("finetune", "tutor", {"out": "tutor"})
    with pytest.raises(jobs.JobError, match="'tutor' is already queued"):
        jobs.submit("finetune", "tutor", {"out": "tutor"})
    with pytest.raises(jobs.JobError, match="already queued"):
        jobs.submit("dpo", "tutor", {"out": "tutor"})  # DPO writes adapters too
    assert jobs.submit("reward", "tutor", {"out": "tutor"}).name == "tutor"  # reward models live elsewhere
    jobs.request_cancel(first.id)
    assert jobs.submit("finetune", "tutor", {"out": "tutor"}).status == jobs.QUEUED  # once it is gone, again

    accepted, refused = [], []

    def start() -> None:
        try:
            accepted.append(jobs.submit("classify", "twice", {"out": "twice"}))
        except jobs.JobError:
            refused.append(1)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(accepted) == 1 and len(refused) == 5  # six clicks at once queue one job


def test_measuring_phases_count_their_examples_and_the_log_says_when(data_dir):
    """Issue 42: the reward and DPO jobs' "before" phase stayed at "0/3 pairs", and the log said "step 0/0"."""
    from types import SimpleNamespace

    from pipelines.train.training import before_after_phases

    job = jobs.submit("reward", "counted", {"out": "counted"})
    ctx = jobs.JobContext(job_id=job.id, spec={}, directory=jobs.job_dir(job.id))
    ctx.plan(*before_after_phases("held-out accuracy"))
    ctx.phase("prepare")
    ctx.phase("before", total=3)
    callback = jobs.trainer_callback(ctx)
    args = SimpleNamespace(per_device_eval_batch_size=2, world_size=1)
    state = SimpleNamespace(global_step=0, max_steps=0, epoch=None)
    callback.on_prediction_step(args, state, None)
    assert ctx.current_phase.done == 2
    callback.on_prediction_step(args, state, None)
    assert ctx.current_phase.done == 3  # never past its total
    callback.on_log(args, state, None, logs={"eval_loss": 0.69})
    assert "before training: eval_loss=0.69" in jobs.tail_log(job.id) and "step 0/0" not in jobs.tail_log(job.id)
    ctx.phase("train")
    callback.on_prediction_step(args, state, None)  # an evaluation during training does not move the steps
    assert ctx.current_phase.done == 0


def test_a_job_snapshot_is_built_by_name():
    """Eighteen fields in a row are a bug waiting for a swapped pair: JobInfo takes keywords only."""
    with pytest.raises(TypeError):
        jobs.JobInfo("id", "finetune", "name", "done", {})  # type: ignore[misc]
    info = jobs.JobInfo(id="id", kind="finetune", name="name", status=jobs.SUCCEEDED, spec={})
    assert info.done and info.result == {} and info.pid is None
