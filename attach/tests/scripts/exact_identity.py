"""Target of attach/tests/exact.rs: prints what a program can see of how it was
started, writes to stderr and exits with 3, so that runs with and without the hook
can be compared byte for byte."""

import json
import os
import sys


def describe():
    custom = sys.modules.get("sitecustomize")
    return {
        "argv": sys.argv,
        "file": __file__,
        "name": __name__,
        "path0": sys.path[0],
        "bootstrap_on_path": any("tracer-exact" in p for p in sys.path),
        "sitecustomize_mark": getattr(custom, "MARK", None),
        "pythonpath": os.environ.get("PYTHONPATH"),
        "config_in_environ": "TRACER_EXACT" in os.environ,
    }


print(json.dumps(describe()))
print("to stderr", file=sys.stderr)
sys.exit(3)
