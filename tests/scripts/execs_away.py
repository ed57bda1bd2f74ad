"""Target of tests/tests/record.rs: prints READY, runs `before` for 1.5 s, then execs
into `sleep 5` under the same pid."""
import os
import time


def before():
    time.sleep(1.5)


print("READY", flush=True)
before()
os.execv("/bin/sleep", ["sleep", "5"])
