# tracer exact-mode bootstrap. The tracer puts the folder holding this file first on
# PYTHONPATH, so Python's `site` imports it before any user code. It starts the hook
# (`_tracer_exact_hook.py` beside it), takes its own folder out of `sys.path`, and
# then imports the user's own `sitecustomize`, if there is one, as `site` would have.
def _tracer_bootstrap():
    import os
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    try:
        _load_hook(os, sys, here).start(here)
    except Exception:
        # The tracer hears nothing from this process and says so; the program runs
        # as it would without the tracer.
        pass
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    ours = sys.modules.pop("sitecustomize", None)
    try:
        import sitecustomize  # noqa: F401  (the user's own, if any)
    except ImportError as exc:
        if exc.name != "sitecustomize":
            raise
        if ours is not None:
            sys.modules["sitecustomize"] = ours


_tracer_bootstrap()
del _tracer_bootstrap, _load_hook
