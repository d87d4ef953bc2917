"""The code every function shares: domain, job store, queue, storage, workflow, generation."""

import os
import sys
import types


def _find_no_pydantic_plugins() -> None:
    """Every function runs with PYDANTIC_DISABLE_PLUGINS=__all__ (infra/spec.py), yet pydantic's
    plugin loader still imports importlib.metadata (email parsing, zipfile: about 20 ms of each
    cold start) to look for plugins it will not use. Stand in for that loader with one that finds
    none, before pydantic's first model asks for it (tests/unit/test_cold_start.py checks that
    pydantic still asks it, and nothing else)."""
    name = "pydantic.plugin._loader"
    if os.environ.get("PYDANTIC_DISABLE_PLUGINS") == "__all__" and name not in sys.modules:
        loader = types.ModuleType(name, "No pydantic plugins: PYDANTIC_DISABLE_PLUGINS=__all__ (shared/__init__.py).")
        loader.get_plugins = tuple  # type: ignore[attr-defined]  # what pydantic's own returns when disabled: ()
        sys.modules[name] = loader


_find_no_pydantic_plugins()
