"""Render workers: a script that ingests PDFs at its top level, with no ``if __name__ ==
"__main__":`` guard, runs as ``python script.py`` (the workers are fresh interpreters that never
re-run the script; a multiprocessing "spawn" child would, and open the store a second time); a
worker that dies costs only its own task; exceptions come back as they were raised."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from conftest import FIXTURE
from visdoc.errors import SourceError
from visdoc.ingest.workers import WorkerDied, WorkerPool
from visdoc.points import SOURCE
from visdoc.store import open_store

PDF = FIXTURE.parents[2] / "examples" / "data" / "annual-report.pdf"
SMALL = 28 * 28 * 32  # pixels per page: fast on the tiny model

SCRIPTS = {
    "visdoc": """
        from visdoc import JinaV4
        from visdoc.ingest import Ingestor
        from visdoc.store import CollectionSpec, open_store

        model = JinaV4.from_pretrained(MODEL)
        store = open_store("reports", CollectionSpec(dim=model.dims[-1], model=model.name), data_dir="visdoc_data")
        report = Ingestor(model, store, workers=2, max_pixels=SMALL).ingest(["docs/"])
        print(report.summary())
        assert not report.problems, report.problems
        store.close()
    """,
    "langchain": """
        from langchain_visdoc import JinaV4Embeddings, VisdocVectorStore

        store = VisdocVectorStore(JinaV4Embeddings(MODEL), collection="reports", data_dir="visdoc_data")
        report = store.add_pdfs(["docs/"], workers=2, max_pixels=SMALL)
        print(report.summary())
        assert not report.problems, report.problems
        store.close()
    """,
}


@pytest.mark.parametrize("api", list(SCRIPTS))
def test_a_script_without_a_main_guard_ingests_pdfs_with_render_workers(tmp_path, api):
    (tmp_path / "docs").mkdir()
    shutil.copy(PDF, tmp_path / "docs" / PDF.name)
    script = tmp_path / "script.py"
    script.write_text(f"MODEL = {str(FIXTURE)!r}\nSMALL = {SMALL}\n" + textwrap.dedent(SCRIPTS[api]))
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    with open_store("reports", data_dir=tmp_path / "visdoc_data") as store:
        assert store.count() == 3  # the report's three pages
        assert {Path(r.payload[SOURCE]).name for r in store.iter_records()} == {PDF.name}


# -- the worker pool itself ------------------------------------------------------------------------


def run_once(folder: str, index: int, crash: int, seconds: float = 0.05) -> int:
    """What the workers run below: notes each run in ``folder``; task ``crash`` kills its worker."""
    (Path(folder) / f"{index}-{os.getpid()}").touch()
    if index == crash:
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(seconds)
    return index * index


class Unpicklable(Exception):
    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{code}: {text}")  # its args do not rebuild it


def fail(kind: str) -> None:
    if kind == "source":
        raise SourceError("page 3 cannot be rendered")
    raise Unpicklable(7, "odd")


def test_a_worker_that_dies_costs_only_its_own_task(tmp_path):
    pool = WorkerPool(2)
    try:
        tasks = [pool.submit(run_once, str(tmp_path), i, 3) for i in range(8)]  # 4 in flight per worker
        results = []
        for task in tasks:
            try:
                results.append(pool.result(task))
            except WorkerDied:
                results.append("died")
    finally:
        pool.close()
    assert results == [0, 1, 4, "died", 16, 25, 36, 49]
    runs = [int(p.name.split("-")[0]) for p in tmp_path.iterdir()]
    assert sorted(runs) == [0, 1, 2, 3, 3, 4, 5, 6, 7]  # the others ran once: none was lost or redone
    assert len({p.name.split("-")[1] for p in tmp_path.iterdir() if p.name.startswith("3-")}) == 2


def test_a_task_that_raises_raises_the_same_exception_in_the_parent(tmp_path):
    pool = WorkerPool(1)
    try:
        with pytest.raises(SourceError, match="^page 3 cannot be rendered$"):
            pool.result(pool.submit(fail, "source"))
        with pytest.raises(SourceError, match="^Unpicklable: 7: odd$"):  # its text, as a SourceError
            pool.result(pool.submit(fail, "unpicklable"))
        assert pool.result(pool.submit(run_once, str(tmp_path), 2, -1)) == 4  # the worker carries on
        assert len(list(tmp_path.iterdir())) == 1
    finally:
        pool.close()


def test_closing_the_pool_stops_its_workers(tmp_path):
    pool = WorkerPool(2)
    tasks = [pool.submit(run_once, str(tmp_path), i, -1, 1.0) for i in range(6)]  # 3 per worker
    pool.result(tasks[0])
    workers = [p for p in psutil.Process().children() if "spawn_main" in " ".join(p.cmdline())]
    assert len(workers) == 2
    pool.close()  # tasks still queued are dropped
    assert not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)
    assert len(list(tmp_path.iterdir())) <= 4  # the third task of each worker never started
