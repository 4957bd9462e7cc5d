"""What a copy started dies with the bot, grandchildren included; what an earlier bot left is found.

    watchdog = Watchdog.start()          # a small child process of our own
    watchdog.add(proc.pid)               # each child leads its own process group: record it
    watchdog.close()                     # the copy is over: the watchdog leaves without a shot

    leftover_processes(folder)           # [(4242, "pg_restore -j 2 ...")]: alive in the groups a copy recorded
    reap(folder)                         # SIGKILL them

The death signal each child gets (`copy.die_with_parent`) reaches the bot's own children only.
`pg_restore -j` and `pg_dump -j` fork workers of their own; when the bot is killed with SIGKILL a worker
in the middle of CREATE INDEX or of a foreign key's validation lives on, keeps its connection, and the
server builds the index and commits it for a bot that is gone. The watchdog reads the process groups
from a pipe: a "done" line means the copy ended; end of file without it means the bot died (the kernel
closed the pipe), and the watchdog SIGKILLs every process of those groups, workers included. Then their
sessions, checking that the client is still there (`connect.client_check`), end their statements within
a second, and nothing commits.

A process counts only if its environment carries a copy's tag (`PGAPPNAME=runbook-bot-copy-...`, set on
every child and inherited by their workers): a PID reused since by a stranger is never touched.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

PROCESS_GROUPS = "process-groups"      # a scratch folder's record of its children's process groups
_TAG = b"PGAPPNAME=runbook-bot-copy-"
_DONE = "done"


def tagged_in_groups(groups: set[int]) -> list[tuple[int, str]]:
    """Processes alive in `groups` whose environment carries a copy's tag: (pid, command)."""
    found: list[tuple[int, str]] = []
    for entry in os.listdir("/proc") if groups else []:
        if not entry.isdigit():
            continue
        try:
            if os.getpgid(int(entry)) not in groups:
                continue
            with open(f"/proc/{entry}/environ", "rb") as env:
                if _TAG not in env.read():
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as cmd:
                command = cmd.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
        except (OSError, ProcessLookupError):
            continue  # gone, or not ours to read
        found.append((int(entry), command))
    return found


def kill(processes: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """SIGKILL each (pid, command) of `processes`; returns them."""
    for pid, _command in processes:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # it ended on its own meanwhile
    return processes


def leftover_processes(folder: str) -> list[tuple[int, str]]:
    """Processes still alive in the process groups an abandoned copy recorded in `folder`."""
    try:
        with open(os.path.join(folder, PROCESS_GROUPS)) as handle:
            groups = {int(line) for line in handle if line.strip().isdigit()}
    except OSError:
        return []
    return tagged_in_groups(groups)


def reap(folder: str) -> list[tuple[int, str]]:
    """SIGKILL what :func:`leftover_processes` finds; returns what it killed."""
    return kill(leftover_processes(folder))


class Watchdog:
    """The child that outlives the bot just long enough to kill what the bot started (see above)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc

    @classmethod
    def start(cls) -> Watchdog:
        proc = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True, start_new_session=True)  # its own group: never in the ones it kills
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":  # (a death before this would otherwise go unwatched)
            proc.kill()
            raise RuntimeError("the copy's watchdog process did not start")
        return cls(proc)

    def add(self, group: int) -> None:
        self._send(str(group))

    def close(self) -> None:
        """The copy ended (its children were waited for or stopped): stand the watchdog down."""
        if self.proc.poll() is None:
            try:
                self._send(_DONE)
                self.proc.stdin.close()  # type: ignore[union-attr]
            except OSError:
                pass  # it is gone already
            self.proc.wait(timeout=10)

    def _send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()


def _watch() -> None:
    """The watchdog's side: collect groups until "done" (leave) or end of file (the bot died: kill)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # a ^C to the bot's terminal is the bot's to handle
    print("ready", flush=True)
    groups: set[int] = set()
    for line in sys.stdin:
        line = line.strip()
        if line == _DONE:
            return
        if line.isdigit():
            groups.add(int(line))
    kill(tagged_in_groups(groups))


if __name__ == "__main__":
    _watch()
