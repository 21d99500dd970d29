"""Several writers on one label store: who is running, and which batch each one labels.

A writer registers as ``writers/<host>-<pid>-<random>.lock`` and holds an exclusive ``flock``
on it for as long as it runs. The kernel drops that lock when the process ends however it ends
(``kill -9`` included; on NFS the server's lock lease expires), so "is writer W running?" is
one non-blocking lock attempt, with no heartbeat or clock involved.

Before labelling a batch a writer claims it: ``claims/<batch id>.claim`` names the writer, and
"<writer> done" once its chunk is committed. Claims are read and written under a short
store-wide ``flock`` (``claims/.mutex``), so two writers never both take a batch. A claim whose
writer is gone is stale and is taken over, so a writer killed mid-batch costs that batch's
teacher work and nothing else. Batch ids hash the batch's crop keys, and every writer cuts the
same plan into the same batches (``label.label_batches``), so N writers with one plan label
each crop once. Temporaries older than every running writer belong to none and are removed
when a writer registers, as are stale claims and the files of writers that are gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import socket
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .data import Crop
    from .store import LabelStore

WRITERS_DIR = "writers"
CLAIMS_DIR = "claims"
MUTEX = ".mutex"
POLL_S = 0.25  # how often a writer with nothing to claim looks again for stale claims
TEMP_DIRS = ("chunks", CLAIMS_DIR, WRITERS_DIR)
_OWN: set[str] = set()  # writer ids of this process (never lock-tested: see is_running)


def is_running(root: Path, writer_id: str) -> bool:
    """Whether writer ``writer_id`` of the store at ``root`` still holds its lock."""
    if writer_id in _OWN:  # on NFS a second lock by this process would succeed and then drop it
        return True
    try:
        handle = (root / WRITERS_DIR / f"{writer_id}.lock").open("rb")
    except FileNotFoundError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


@dataclass
class Orphans:
    """Leftovers of writers that are gone, and how many writers run now."""

    temporaries: list[Path] = field(default_factory=list)
    stale_claims: list[Path] = field(default_factory=list)
    gone_writers: list[Path] = field(default_factory=list)
    live_writers: int = 0


def find_orphans(root: Path) -> Orphans:
    """What ``clean_orphans`` would remove; reads only."""
    found = Orphans()
    oldest = float("inf")  # start (registration time) of the oldest running writer
    for path in sorted((root / WRITERS_DIR).glob("[!.]*.lock")):
        if is_running(root, path.name.removesuffix(".lock")):
            found.live_writers += 1
            with contextlib.suppress(FileNotFoundError):
                oldest = min(oldest, path.stat().st_mtime)
        else:
            found.gone_writers.append(path)
    for folder in TEMP_DIRS:
        for path in sorted((root / folder).glob(".*.tmp")):
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < oldest:
                    found.temporaries.append(path)
    for path in sorted((root / CLAIMS_DIR).glob("*.claim")):
        holder, _ = read_claim(path)
        if not holder or not is_running(root, holder):
            found.stale_claims.append(path)
    return found


def clean_orphans(root: Path) -> Orphans:
    """Remove the temporaries, stale claims and lock files of writers that are gone."""
    with store_mutex(root):
        found = find_orphans(root)
        for path in found.temporaries + found.stale_claims + found.gone_writers:
            path.unlink(missing_ok=True)
    return found


@contextlib.contextmanager
def store_mutex(root: Path) -> Iterator[None]:
    """The store-wide lock under which claims change (a fresh descriptor each time, so the
    threads of one process exclude each other too)."""
    (root / CLAIMS_DIR).mkdir(exist_ok=True)
    with (root / CLAIMS_DIR / MUTEX).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def read_claim(path: Path) -> tuple[str, bool]:
    """(writer id, whether it finished) of a claim file; ("", False) when there is none."""
    try:
        words = path.read_text().split()
    except FileNotFoundError:
        return "", False
    return (words[0] if words else ""), words[1:] == ["done"]


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` through a hidden temporary (never half-written)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class Writer:
    """This process as one writer of a store: its lock in ``writers/`` and its claims."""

    def __init__(self, root: Path, writer_id: str, handle):
        self.root, self.id, self._handle = root, writer_id, handle

    def __del__(self) -> None:
        _OWN.discard(self.id)  # its lock file closes with it: the writer is gone

    @classmethod
    def register(cls, root: Path) -> Writer:
        """Take a writer lock on the store at ``root`` and clean what gone writers left."""
        folder = root / WRITERS_DIR
        folder.mkdir(exist_ok=True)
        writer_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp = folder / f".{writer_id}.tmp"
        with store_mutex(root):  # cleaners judge temporaries under this lock too
            handle = tmp.open("w")
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: nobody holds it
            handle.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n")
            handle.flush()
            os.replace(tmp, folder / f"{writer_id}.lock")
        _OWN.add(writer_id)
        clean_orphans(root)
        return cls(root, writer_id, handle)

    def claim(self, batch: str) -> str:
        """Try to take ``batch``: "mine", or "busy" / "finished" when a running writer holds it
        (a claim of a writer that is gone is taken over)."""
        path = self.root / CLAIMS_DIR / f"{batch}.claim"
        with store_mutex(self.root):
            holder, finished = read_claim(path)
            if holder and holder != self.id and is_running(self.root, holder):
                return "finished" if finished else "busy"
            write_atomic(path, self.id)
            return "mine"

    def finish(self, batch: str) -> None:
        """Mark ``batch`` done by this writer (its chunk is committed, or it had nothing to)."""
        path = self.root / CLAIMS_DIR / f"{batch}.claim"
        with store_mutex(self.root):
            if read_claim(path)[0] == self.id:
                write_atomic(path, f"{self.id} done")

    def release(self, batch: str) -> None:
        """Give ``batch`` up unfinished, so that another writer may take it at once."""
        path = self.root / CLAIMS_DIR / f"{batch}.claim"
        with store_mutex(self.root):
            if read_claim(path)[0] == self.id:
                path.unlink(missing_ok=True)

    def close(self) -> None:
        """Drop this writer's claims and lock (what a kill leaves, the next writer cleans)."""
        with store_mutex(self.root):
            for path in (self.root / CLAIMS_DIR).glob("*.claim"):
                if read_claim(path)[0] == self.id:
                    path.unlink(missing_ok=True)
            (self.root / WRITERS_DIR / f"{self.id}.lock").unlink(missing_ok=True)
        self._handle.close()
        _OWN.discard(self.id)


def batch_id(batch: list[Crop]) -> str:
    """A name for a batch that every writer with the same plan computes alike."""
    return hashlib.sha256("\n".join(c.key for c in batch).encode()).hexdigest()[:24]


class BatchClaims:
    """The batches of one plan, handed out to this writer one claim at a time; batches held by
    other running writers are left to them and waited for, so that when ``take`` returns
    nothing every batch is labelled or was tried."""

    def __init__(self, store: LabelStore, batches: Iterable[list[Crop]]):
        self.store = store
        self.writer = store.as_writer()
        self.pending = {batch_id(b): b for b in batches}
        self._held: dict[str, str] = {}  # first key of a handed-out batch -> its batch id

    def take(self, limit: int = 1) -> list[list[Crop]]:
        """Claim up to ``limit`` (0: all) pending batches and return their unlabelled crops;
        waits while only other running writers hold what is left; [] when nothing is left."""
        while self.pending:
            done = self.store.done_keys()
            for bid, crops in list(self.pending.items()):
                if all(c.key in done for c in crops):  # labelled already: no claim needed
                    del self.pending[bid]
            mine, busy = [], False
            for bid in list(self.pending):
                if limit and len(mine) >= limit:
                    break
                state = self.writer.claim(bid)
                busy |= state == "busy"
                if state != "busy":
                    batch = self.pending.pop(bid)
                    if state == "mine":
                        mine.append((bid, batch))
            done = self.store.done_keys()  # after claiming: what others committed meanwhile
            taken = []
            for bid, batch in mine:
                todo = [c for c in batch if c.key not in done]
                if todo:
                    self._held[todo[0].key] = bid
                    taken.append(todo)
                else:
                    self.writer.finish(bid)
            if taken or not self.pending:
                return taken
            if busy and not mine:
                time.sleep(POLL_S)
        return []

    def batches(self) -> Iterator[list[Crop]]:
        """The claimed batches one by one (call ``finish`` on each once committed)."""
        while taken := self.take(1):
            yield taken[0]

    def finish(self, batch: list[Crop]) -> None:
        """Release a batch handed out by ``take`` as done."""
        self.writer.finish(self._held.pop(batch[0].key))

    def release(self) -> None:
        """Give up the batches handed out and not finished (after an error)."""
        for bid in self._held.values():
            self.writer.release(bid)
        self._held.clear()
