# tracer exact-mode bootstrap. The tracer puts the folder holding this file first on
# PYTHONPATH, so Python's `site` imports it before any user code. It loads the hook
# (`_tracer_exact_hook.py` beside it), takes its own folder out of `sys.path`, looks
# for the user's own `sitecustomize`, starts the hook, and then imports the user's
# `sitecustomize`, if there is one, as `site` would have.
#
# The hook starts after the bootstrap's own work and before the user's
# `sitecustomize`: with `--include '*'` (or an include matching posixpath or
# importlib) the trace holds neither the `os.path.abspath` of every `sys.path` entry
# nor a failing `import sitecustomize` of the tracer's, only what the user's code (its
# `sitecustomize` the first) and Python's own start-up after it do.
def _tracer_bootstrap():
    import os
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    # Python 3.7 and older (2.7 too: this file reads as Python 2) are not traced: the
    # hook needs 3.8, and started there it failed on the program's stderr. The
    # tracer hears nothing and says which interpreter that was.
    supported = sys.version_info >= (3, 8)
    hook = None
    if supported:
        try:
            hook = _load_hook(os, sys, here)
        except Exception:
            # The tracer hears nothing from this process and says so; the program
            # runs as it would without the tracer.
            hook = None
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    if supported:
        try:
            _keep_compiled(os, sys, globals().get("__file__"), globals().get("__cached__"))
        except Exception:
            pass
    ours = sys.modules.pop("sitecustomize", None)
    # Whether the user has a `sitecustomize`, found as the import below finds it but
    # before the hook runs, so that finding none is not a traced failing import. A
    # finder that fails leaves the answer to the import, traced as the user's code.
    try:
        import _frozen_importlib

        theirs = _frozen_importlib._find_spec("sitecustomize", None) is not None
    except Exception:
        theirs = True
    if hook is not None:
        try:
            hook.start(here)
        except Exception:
            hook = None
    if theirs:
        try:
            import sitecustomize  # noqa: F401  (the user's own)
        except ImportError as exc:
            if getattr(exc, "name", "sitecustomize") != "sitecustomize":
                raise
            theirs = False
    if not theirs and ours is not None:
        # Back for `site`, whose import of this file is still running and fails
        # without it; the hook takes it out once that is over, so that the
        # program's own `import sitecustomize` goes as without the tracer.
        sys.modules["sitecustomize"] = ours
        if hook is not None:
            try:
                hook.forget_bootstrap_later()
            except Exception:
                pass


def _keep_compiled(os, sys, source, cached):
    """Python keeps no compiled copy of this file when PYTHONDONTWRITEBYTECODE is set
    (usual in containers), and compiles it at every start, the first compile of the
    process (2-5 ms). The folder is the tracer's own: the copy is kept here, as Python
    would keep it, and read by Python's import from the next start on."""
    if not sys.dont_write_bytecode or not source or not cached:
        return
    import _frozen_importlib_external as bootstrap

    st = os.stat(source)
    try:
        with open(cached, "rb") as f:
            head = f.read(16)
        stamp = [(int(n) & 0xFFFFFFFF).to_bytes(4, "little") for n in (st.st_mtime, st.st_size)]
        if head[8:16] == b"".join(stamp):
            return
    except OSError:
        pass
    with open(source, "rb") as f:
        code = compile(f.read(), source, "exec", dont_inherit=True)
    data = bootstrap._code_to_timestamp_pyc(code, st.st_mtime, st.st_size)
    os.makedirs(os.path.dirname(cached), mode=0o700, exist_ok=True)
    _keep_file(os, cached, data)


_tracer_bootstrap()
del _tracer_bootstrap, _load_hook, _keep_file, _keep_compiled
