"""Every public class and function of the package has its own docstring (the API reference renders them)."""

import importlib
import inspect
import pkgutil

import pytest

import trl_igrpo


def _public_modules() -> list[str]:
    names = ["trl_igrpo"]
    for info in pkgutil.walk_packages(trl_igrpo.__path__, prefix="trl_igrpo."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue  # private modules (_math_worker, __main__, ...)
        names.append(info.name)
    return names


def _public_objects(module):
    exported = getattr(module, "__all__", None)
    names = exported if exported is not None else [name for name in vars(module) if not name.startswith("_")]
    for name in names:
        obj = getattr(module, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        # __all__ may re-export package objects; without it, only what the module itself defines is its API
        if obj.__module__ == module.__name__ or (exported is not None and obj.__module__.startswith("trl_igrpo")):
            yield f"{module.__name__}.{name}", obj
            if inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    if attr.startswith("_") or not (inspect.isfunction(member) or isinstance(member, property)):
                        continue
                    if any(attr in vars(base) for base in obj.__mro__[1:]):
                        continue  # an override of an upstream (TRL/PEFT/transformers) method keeps its contract
                    yield f"{module.__name__}.{name}.{attr}", member


@pytest.mark.parametrize("module_name", _public_modules())
def test_public_api_has_docstrings(module_name):
    module = importlib.import_module(module_name)
    assert (module.__doc__ or "").strip(), f"module {module_name} has no docstring"
    missing = [qualname for qualname, obj in _public_objects(module) if not (obj.__doc__ or "").strip()]
    assert not missing, f"no docstring: {missing}"
