"""The run directory's lock names the process that holds it, not only the pid its file records."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from repro.base.errors import RunDirectoryError
from repro.run.lock import RunLock

# Takes the lock as another run would, writes a pid that is not its own into the file, and waits.
_HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.ftruncate(fd, 0)
os.write(fd, sys.argv[2].encode())
print("held", flush=True)
time.sleep(60)
"""


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the holder is read from /proc/locks"
)
def test_a_lock_names_its_real_holder_when_the_file_records_another_pid(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(tmp_path / ".lock"), "999999999"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirectoryError) as err:
            RunLock.acquire(tmp_path)
        message = str(err.value)
        assert f"in use by another process (pid {holder.pid};" in message
        assert "records pid 999999999, which does not hold it" in message
    finally:
        holder.kill()
        holder.wait()
    # Once the holder has ended, the lock is free.
    time.sleep(0.1)
    RunLock.acquire(tmp_path).release()
