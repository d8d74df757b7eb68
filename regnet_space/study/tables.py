"""The study database's own tables beside `analysis.studydb`'s meta and trials (sqlite3 only).

- `lease`: the driver holding the database (one row): host, pid, process identity, token,
  since, heartbeat (unix times). A lease whose heartbeat is older than LEASE_SECONDS, or whose
  holder is a dead process on this host, holds nothing.
- `live`: one row per running trial, updated as each epoch ends: epoch, epochs, test error,
  training loss, seconds since the attempt started, host and pid of the process training it.
- `history`: one row per failed attempt: its message, host and times (`status` shows them).
- `decisions`: the study scheduler's answer to each finished epoch it saw (`seq`: the order
  the driver saw the reports in), stop or go on, and why; a resumed driver replays them.

A database made before these tables existed gains them from its next `study run`; readers
treat a missing table as empty.
"""

from __future__ import annotations

import os
import socket
import sqlite3
from dataclasses import dataclass
from pathlib import Path

LEASE_TABLE, LIVE_TABLE, HISTORY_TABLE = "lease", "live", "history"
DECISIONS_TABLE = "decisions"
LEASE_SECONDS = 30.0  # a lease not renewed for this long is free (the holder is gone)
HEARTBEAT_SECONDS = 5.0  # how often the holder renews it

EXTRA_SCHEMA = (
    f"""CREATE TABLE IF NOT EXISTS {LEASE_TABLE} (
        one INTEGER PRIMARY KEY CHECK (one = 1),
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        process TEXT NOT NULL,
        token TEXT NOT NULL,
        since REAL NOT NULL,
        heartbeat REAL NOT NULL
    )""",
    f"""CREATE TABLE IF NOT EXISTS {LIVE_TABLE} (
        id INTEGER PRIMARY KEY,
        epoch INTEGER NOT NULL,
        epochs INTEGER NOT NULL,
        error REAL,
        train_loss REAL,
        seconds REAL,
        host TEXT,
        pid INTEGER,
        updated_at REAL
    )""",
    f"""CREATE TABLE IF NOT EXISTS {HISTORY_TABLE} (
        id INTEGER NOT NULL,
        attempt INTEGER NOT NULL,
        message TEXT,
        host TEXT,
        started_at REAL,
        finished_at REAL,
        PRIMARY KEY (id, attempt)
    )""",
    f"""CREATE TABLE IF NOT EXISTS {DECISIONS_TABLE} (
        seq INTEGER PRIMARY KEY,
        id INTEGER NOT NULL,
        epoch INTEGER NOT NULL,
        error REAL NOT NULL,
        stop INTEGER NOT NULL,
        reason TEXT,
        at REAL NOT NULL,
        UNIQUE (id, epoch)
    )""",
    "CREATE INDEX IF NOT EXISTS trials_by_state ON trials (state, error)",
)


def has_table(con: sqlite3.Connection, name: str) -> bool:
    """Whether the database has table `name` (older databases lack the driver's own tables)."""
    row = con.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    ).fetchone()
    return row is not None


def process_identity(pid: int) -> str:
    """Boot id and start time of a process on this machine ('' where /proc cannot say): a
    pid reused by another process after a reboot or a restart does not match."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return f"{boot}:{fields[19]}"
    except (OSError, IndexError):
        return ""


def boot_id() -> str:
    """This machine's boot id ('' where unknown)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class LeaseRow:
    """The lease as recorded: who holds the database and their last heartbeat."""

    host: str
    pid: int
    process: str  # process_identity() of the holder when it took the lease
    token: str
    since: float
    heartbeat: float

    def on_this_host(self) -> bool:
        """Recorded by a process of this machine (same host name and same boot)."""
        return self.host == socket.gethostname() and self.process.split(":")[0] == boot_id()

    def alive(self, now: float) -> bool:
        """The holder still holds it: a live process here, or a recent heartbeat elsewhere."""
        if self.on_this_host() and self.process:
            return process_identity(self.pid) == self.process
        return now - self.heartbeat < LEASE_SECONDS

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"


def read_lease(con: sqlite3.Connection) -> LeaseRow | None:
    """The recorded lease, live or not; None when none is recorded (or no lease table)."""
    if not has_table(con, LEASE_TABLE):
        return None
    row = con.execute(
        f"SELECT host, pid, process, token, since, heartbeat FROM {LEASE_TABLE}"
    ).fetchone()
    if row is None:
        return None
    try:
        return LeaseRow(str(row[0]), int(row[1]), str(row[2]), str(row[3]),
                        float(row[4]), float(row[5]))  # fmt: skip
    except (TypeError, ValueError):
        return None  # a damaged lease row holds nothing


def my_identity() -> tuple[str, int, str]:
    """This process: host, pid, process identity."""
    pid = os.getpid()
    return socket.gethostname(), pid, process_identity(pid)
