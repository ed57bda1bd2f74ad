"""A module with a non-ASCII file name and function name, for dump tests."""
import time


def größe(wert):
    time.sleep(1000)  # LINE:groesse_sleep
    return wert
