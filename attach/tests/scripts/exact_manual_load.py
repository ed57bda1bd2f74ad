"""Target of attach/tests/exact.rs: loads the hook by hand, as a loader injected into
a running process would (no bootstrap on PYTHONPATH), optionally after taking every
sys.monitoring tool id itself. argv: BOOTSTRAP_DIR [occupy]."""

import sys

boot = sys.argv[1]
if sys.version_info >= (3, 12) and sys.argv[2:] == ["occupy"]:
    for tool in range(6):
        if sys.monitoring.get_tool(tool) is None:
            sys.monitoring.use_tool_id(tool, "other")
sys.path.insert(0, boot)
import _tracer_exact_hook  # noqa: E402

sys.path.pop(0)
_tracer_exact_hook.start(boot)


def traced(x):
    return x + 1


print(traced(1), flush=True)
