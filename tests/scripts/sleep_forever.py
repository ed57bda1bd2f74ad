"""Prints READY and sleeps: the simplest target."""
import time

print("READY", flush=True)
time.sleep(1000)
