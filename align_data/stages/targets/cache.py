"""On-disk LLM response cache: one sqlite file, shared safely by the worker processes of one machine."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path

from align_data.stages.targets.client import Completion, Sampling

SCHEMA = """CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY, text TEXT NOT NULL, finish_reason TEXT NOT NULL,
    tokens_in INTEGER NOT NULL, tokens_out INTEGER NOT NULL, created_unix REAL NOT NULL)"""
BUSY_TIMEOUT_MS = 60_000  # another worker holding the write lock waits, it does not fail
MAX_VARIABLES = 500  # keys per SELECT (sqlite's bound-parameter limit is 999 on old builds)


def cache_key(model: str, backend: str, prompt: str, sampling: Sampling, seed: int, attempt: int = 0) -> str:
    """sha256 of everything that decides a response. The seed counts even for greedy decoding: it comes from
    the record id, so two records with the same prompt never share an answer, and a shard's answers do not
    depend on which other shard ran first (batched generation may differ in the last bits with the batch). The
    attempt (0, or the number of a repair) counts too: a repair never gets the answer it repairs."""
    fields = {"model": model, "backend": backend, "prompt": prompt, "max_new_tokens": sampling.max_new_tokens,
              "temperature": sampling.temperature, "top_p": sampling.top_p, "stop": list(sampling.stop),
              "seed": seed, "attempt": attempt}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class ResponseCache:
    """Responses by key. WAL journal + busy timeout: several processes read and write one file at once."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self._db.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: a power cut may lose the last answers
        self._create()

    def _create(self) -> None:
        """Switch the file to WAL and create the table, retrying while other processes do the same.

        Workers that open a new cache file at the same moment contend for it before it is in WAL mode, and there
        sqlite answers some of them 'database is locked' at once instead of waiting out the busy timeout (two
        readers that both want to write would otherwise deadlock). A build's first LLM shards on two workers hit
        this. Once the file is in WAL mode and has the table, neither step writes again."""
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        pause = 0.01
        while not self._try_create():
            if time.monotonic() + pause > deadline:
                raise sqlite3.OperationalError(f"database is locked: {self.path} stayed held by other processes "
                                               f"for {BUSY_TIMEOUT_MS / 1000:.0f} s")
            time.sleep(pause)
            pause = min(pause * 2, 0.5)

    def _try_create(self) -> bool:
        """One try of ``_create``: False when another connection held the file (sqlite then keeps the old mode)."""
        try:
            if (self._db.execute("PRAGMA journal_mode").fetchone()[0] != "wal"
                    and self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0] != "wal"):
                return False
            self._db.execute(SCHEMA)
            return True
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):
                raise
            return False

    def get_many(self, keys: list[str]) -> dict[str, Completion]:
        found: dict[str, Completion] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), MAX_VARIABLES):
            part = unique[start:start + MAX_VARIABLES]
            rows = self._db.execute(
                "SELECT key, text, finish_reason, tokens_in, tokens_out FROM responses WHERE key IN "
                f"({','.join('?' * len(part))})", part).fetchall()
            for key, text, reason, tokens_in, tokens_out in rows:
                found[key] = Completion(text, reason, tokens_in, tokens_out)
        return found

    def put_many(self, items: dict[str, Completion]) -> None:
        """Store responses in one transaction (all or none)."""
        if not items:
            return
        now = time.time()
        self._db.execute("BEGIN IMMEDIATE")  # takes the write lock now (waits up to the busy timeout)
        try:
            self._db.executemany(
                "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?)",
                [(k, c.text, c.finish_reason, c.tokens_in, c.tokens_out, now) for k, c in items.items()])
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        self._db.close()
