"""A script whose top level calls the same function in a loop, from the same line:
each call is a call of its own (the body keeps its loop variable in its globals).
`process` waits 40 ms, long enough for dozens of samples per call; `touch` binds a
global name while it runs, which is no new call of it."""
import time

counter = 0


def process(job):
    time.sleep(0.04)
    return job


def touch(rounds):
    global counter
    for _ in range(rounds):
        counter += 1
        time.sleep(0.005)


for job in range(12):
    process(job)
touch(40)
print("done", counter)
