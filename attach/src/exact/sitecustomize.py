# tracer exact-mode bootstrap. The tracer puts the folder holding this file first on
# PYTHONPATH, so Python's `site` imports it before any user code. It starts the hook
# (`_tracer_exact_hook.py` beside it), takes its own folder out of `sys.path`, and
# then imports the user's own `sitecustomize`, if there is one, as `site` would have.
def _load_hook(os, sys, here):
    """The hook module, run from its compiled code kept beside it when there is one
    for this interpreter (the tracer keeps this folder in the user's cache): compiling
    the hook takes about 20 ms, at every start when PYTHONDONTWRITEBYTECODE is set."""
    import marshal
    import _frozen_importlib_external

    source = os.path.join(here, "_tracer_exact_hook.py")
    compiled = os.path.join(here, "_tracer_exact_hook.%s.%s.code" % (
        sys.implementation.cache_tag, _frozen_importlib_external.MAGIC_NUMBER.hex()))
    try:
        with open(compiled, "rb") as f:
            code = marshal.loads(f.read())
    except Exception:
        with open(source, "rb") as f:
            code = compile(f.read(), source, "exec", dont_inherit=True)
        temp = "%s.%d.tmp" % (compiled, os.getpid())
        try:
            with open(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
                f.write(marshal.dumps(code))
            os.replace(temp, compiled)
        except OSError:
            try:
                os.unlink(temp)
            except OSError:
                pass
    module = type(sys)("_tracer_exact_hook")
    module.__file__ = source
    exec(code, module.__dict__)
    return module


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
