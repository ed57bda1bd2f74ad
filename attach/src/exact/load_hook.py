# How the exact-mode hook is loaded, shared by the bootstrap (`sitecustomize.py`, which
# the tracer writes as this file followed by `sitecustomize_main.py`) and by the loader
# injected into a running process (`ExactSession::loader_source`): neither compiles
# the hook's 1,600 lines when a compiled copy for this interpreter is beside it, and
# neither leaves the hook in `sys.modules`.
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
        _keep_file(os, compiled, marshal.dumps(code))
    module = type(sys)("_tracer_exact_hook")
    module.__file__ = source
    exec(code, module.__dict__)
    return module


def _keep_file(os, path, data):
    """Writes `data` to `path` (mode 0600) under a temporary name renamed into place,
    so that a process starting at the same moment never reads half a file; nothing
    when that fails."""
    temp = "%s.%d.tmp" % (path, os.getpid())
    try:
        with open(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
            f.write(data)
        os.replace(temp, path)
    except OSError:
        try:
            os.unlink(temp)
        except OSError:
            pass
