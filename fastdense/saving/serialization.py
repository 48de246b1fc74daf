"""Keras object configs: serialize fastdense objects, rebuild them from Keras 2 and Keras 3 configs.

A serialized object has Keras 3's shape::

    {"module": "keras.initializers", "class_name": "GlorotUniform",
     "config": {"seed": None, "input_axes": None, "output_axes": None},
     "registered_name": None}

Keras 2 wrote the same without ``module`` / ``registered_name``; both are read.

Deserialization never imports a module named in a config and never evaluates code.
A class is found only in

- the tables of fastdense's own built-in objects (filled by :func:`register_builtin`,
  keyed by Keras module, e.g. ``keras.initializers``) or the ``module_objects``
  a caller passes,
- the user registry (:func:`register_serializable`), the active
  :class:`CustomObjectScope` and the ``custom_objects`` argument.

Anything else is a ``ValueError`` that names the class and explains how to register it.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import inspect
import threading
import types
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import numpy as np

__all__ = [
    "SUPPORTED_DTYPES",
    "CustomObjectScope",
    "builtin_objects",
    "check_number",
    "config_repr",
    "custom_object_scope",
    "deserialize_dtype",
    "deserialize_keras_object",
    "get_custom_objects",
    "get_from_identifier",
    "get_registered_name",
    "get_registered_object",
    "instantiate_from_config",
    "register_builtin",
    "register_serializable",
    "serialize_dtype",
    "serving_dtype",
    "serialize_keras_object",
]

T = TypeVar("T")

# --------------------------------------------------------------------------------------
# Registries
# --------------------------------------------------------------------------------------

# Keras module ("keras.initializers") -> {public name: fastdense object}; all names, aliases too.
_BUILTIN_OBJECTS: dict[str, dict[str, Any]] = {}
# fastdense object -> (Keras module, canonical Keras name); what serialization writes.
_BUILTIN_NAMES: dict[Any, tuple[str, str]] = {}

# The fastdense module that fills each Keras module's table. Only these fixed names are ever
# imported by this file, and only to fill a table; config strings merely select among them.
_FASTDENSE_MODULES = {
    "keras.initializers": "fastdense.initializers",
    "keras.regularizers": "fastdense.regularizers",
    "keras.constraints": "fastdense.constraints",
    "keras.activations": "fastdense.activations",
    "keras.layers": "fastdense.layers",
    "keras.models": "fastdense.models",
}

# Sub-packages of `keras` whose objects Keras configs refer to.
_KERAS_SUBMODULES = (
    "activations", "constraints", "initializers", "layers", "losses", "metrics",
    "models", "optimizers", "regularizers", "dtype_policies", "random",
)

# User registry: "Package>Name" -> object, and object -> "Package>Name".
_GLOBAL_CUSTOM_OBJECTS: dict[str, Any] = {}
_GLOBAL_CUSTOM_NAMES: dict[Any, str] = {}

_scope_state = threading.local()


def register_builtin(module: str, *names: str) -> Callable[[T], T]:
    """Declare a fastdense class or function as the Keras object ``module.names[0]``.

    For fastdense's own modules (the user-facing decorator is :func:`register_serializable`).
    The first name is the canonical one written by :func:`serialize_keras_object`; all names
    (aliases such as ``"glorot_uniform"``) are accepted when reading a config.

    Example::

        @register_builtin("keras.initializers", "GlorotUniform", "glorot_uniform")
        class GlorotUniform(VarianceScaling): ...
    """
    if not names:
        raise ValueError(f"register_builtin({module!r}) needs at least one name")

    def decorator(obj: T) -> T:
        table = _BUILTIN_OBJECTS.setdefault(module, {})
        for name in names:
            table[name] = obj
        _BUILTIN_NAMES[obj] = (module, names[0])
        return obj

    return decorator


def builtin_objects(module: str) -> Mapping[str, Any]:
    """Read-only table of fastdense's built-in objects for a Keras module.

    >>> import fastdense.initializers
    >>> builtin_objects("keras.initializers")["glorot_uniform"].__name__
    'GlorotUniform'
    """
    _load_builtin_module(module)
    return types.MappingProxyType(_BUILTIN_OBJECTS.setdefault(module, {}))


def _load_builtin_module(module: str) -> None:
    """Import the fastdense module that fills ``module``'s table (a fixed whitelist).

    Nothing in this file imports those modules at import time (they import this one to
    register), so this import is never circular, and an error in one of them propagates:
    it is a bug to see, not an empty table that makes every name unknown.
    """
    target = _FASTDENSE_MODULES.get(module)
    if target is not None and not _BUILTIN_OBJECTS.get(module):
        importlib.import_module(target)


def register_serializable(package: str = "Custom", name: str | None = None) -> Callable[[T], T]:
    """Register a user class or function so that configs naming it can be loaded.

    The object is registered under ``"package>name"`` (``name`` defaults to the class or
    function name); this is the ``registered_name`` written into its config, as in Keras's
    ``register_keras_serializable``. Classes must implement ``get_config()``.

    Example::

        @register_serializable(package="my_project")
        class ScaledOnes(fastdense.initializers.Initializer):
            def __init__(self, scale=1.0):
                self.scale = scale
            def __call__(self, shape, dtype="float32"):
                return np.full(shape, self.scale, dtype=dtype)
            def get_config(self):
                return {"scale": self.scale}

        serialize_keras_object(ScaledOnes(2.0))["registered_name"]   # 'my_project>ScaledOnes'
    """
    if not isinstance(package, str) or not package or ">" in package:
        raise ValueError(f"register_serializable: package must be a non-empty string without '>', got {package!r}")
    if name is not None and (not isinstance(name, str) or not name or ">" in name):
        raise ValueError(f"register_serializable: name must be a non-empty string without '>', got {name!r}")

    def decorator(obj: T) -> T:
        if inspect.isclass(obj):
            if not hasattr(obj, "get_config"):
                raise ValueError(
                    f"Cannot register class {obj.__qualname__}: it has no get_config() method, "
                    "so its instances cannot be serialized"
                )
        elif not callable(obj):
            raise ValueError(f"register_serializable expects a class or a function, got {obj!r}")
        key = f"{package}>{name if name is not None else obj.__name__}"
        previous = _GLOBAL_CUSTOM_OBJECTS.get(key)
        if previous is not None and previous is not obj and not _same_definition(previous, obj):
            raise ValueError(
                f"{key!r} is already registered to {_describe(previous)}; "
                f"choose another package or name for {_describe(obj)}"
            )
        if previous is not None:
            _GLOBAL_CUSTOM_NAMES.pop(previous, None)
        _GLOBAL_CUSTOM_OBJECTS[key] = obj
        _GLOBAL_CUSTOM_NAMES[obj] = key
        return obj

    return decorator


def _same_definition(a: Any, b: Any) -> bool:
    """True when ``b`` re-defines ``a`` (module reload, notebook cell run twice)."""
    return (getattr(a, "__module__", None), getattr(a, "__qualname__", None)) == (
        getattr(b, "__module__", None),
        getattr(b, "__qualname__", None),
    )


def _describe(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def get_registered_name(obj: Any) -> str:
    """The ``"package>name"`` an object was registered under, else its ``__name__`` (as Keras).

    >>> get_registered_name(len)
    'len'
    """
    if obj in _GLOBAL_CUSTOM_NAMES:
        return _GLOBAL_CUSTOM_NAMES[obj]
    return obj.__name__


def get_registered_object(
    name: str,
    custom_objects: Mapping[str, Any] | None = None,
    module_objects: Mapping[str, Any] | None = None,
) -> Any | None:
    """The object known as ``name``, or None. Looks in the active scope, the user registry,
    ``custom_objects`` then ``module_objects`` (Keras's order).

    >>> get_registered_object("nope") is None
    True
    """
    scope = _current_scope()
    if name in scope:
        return scope[name]
    if name in _GLOBAL_CUSTOM_OBJECTS:
        return _GLOBAL_CUSTOM_OBJECTS[name]
    if custom_objects and name in custom_objects:
        return custom_objects[name]
    if module_objects and name in module_objects:
        return module_objects[name]
    return None


def get_custom_objects() -> dict[str, Any]:
    """The live global registry ``{"package>name": object}`` (Keras's ``get_custom_objects``)."""
    return _GLOBAL_CUSTOM_OBJECTS


def _current_scope() -> dict[str, Any]:
    return getattr(_scope_state, "objects", {})


class CustomObjectScope:
    """Make custom classes/functions visible to deserialization inside a ``with`` block.

    Scopes nest (inner names win) and are per thread.

    Example::

        with custom_object_scope({"ScaledOnes": ScaledOnes}):
            init = fastdense.initializers.deserialize(
                {"class_name": "ScaledOnes", "config": {"scale": 2.0}})
    """

    def __init__(self, *custom_objects: Mapping[str, Any] | None) -> None:
        merged: dict[str, Any] = {}
        for objects in custom_objects:
            if objects is None:
                continue
            if not isinstance(objects, Mapping):
                raise ValueError(f"custom_object_scope expects dicts of name -> object, got {objects!r}")
            merged.update(objects)
        self.custom_objects = merged
        self._saved: list[dict[str, Any]] = []

    def __enter__(self) -> CustomObjectScope:
        previous = _current_scope()
        self._saved.append(previous)
        _scope_state.objects = {**previous, **self.custom_objects}
        return self

    def __exit__(self, *exc_info: object) -> None:
        _scope_state.objects = self._saved.pop()


custom_object_scope = CustomObjectScope

# --------------------------------------------------------------------------------------
# Serialization
# --------------------------------------------------------------------------------------

_PLAIN_TYPES = (str, int, float, bool)


def serialize_keras_object(obj: Any) -> Any:
    """Serialize an object to its Keras 3 config (JSON-compatible).

    Objects with ``get_config()`` become ``{"module", "class_name", "config",
    "registered_name"}`` dicts; None, numbers, strings, lists and dicts pass through
    (tuples become lists); numpy arrays become Keras's ``"__numpy__"`` dict.

    >>> from fastdense.initializers import GlorotUniform
    >>> serialize_keras_object(GlorotUniform(seed=1))
    {'module': 'keras.initializers', 'class_name': 'GlorotUniform', 'config': {'seed': 1, 'input_axes': None, 'output_axes': None}, 'registered_name': None}
    """
    if obj is None or isinstance(obj, _PLAIN_TYPES):
        return obj
    if isinstance(obj, (list, tuple)):
        return [serialize_keras_object(item) for item in obj]
    if isinstance(obj, Mapping):
        return {key: serialize_keras_object(value) for key, value in obj.items()}
    if isinstance(obj, np.ndarray):
        if obj.ndim == 0:
            return obj.item()
        return {"class_name": "__numpy__", "config": {"value": obj.tolist(), "dtype": obj.dtype.name}}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, bytes):
        return {"class_name": "__bytes__", "config": {"value": obj.decode("utf-8")}}
    if isinstance(obj, (types.FunctionType, types.BuiltinFunctionType)):
        return _serialize_function(obj)
    if inspect.isclass(obj) or not hasattr(obj, "get_config"):
        raise TypeError(
            f"Cannot serialize {obj!r} of type {type(obj).__name__}: "
            "serializable objects implement get_config()"
        )

    inner = obj.get_config()
    if not isinstance(inner, Mapping):
        raise TypeError(f"{type(obj).__name__}.get_config() must return a dict, got {inner!r}")
    cls = type(obj)
    if cls in _BUILTIN_NAMES:
        module, class_name = _BUILTIN_NAMES[cls]
        registered_name = None
    else:
        module, class_name = _user_module(cls), cls.__name__
        registered_name = get_registered_name(cls)
    config = {
        "module": module,
        "class_name": class_name,
        "config": serialize_keras_object(inner),
        "registered_name": registered_name,
    }
    build_config = obj.get_build_config() if hasattr(obj, "get_build_config") else None
    if build_config is not None:
        config["build_config"] = serialize_keras_object(build_config)
    return config


def _serialize_function(fn: Callable[..., Any]) -> dict[str, Any]:
    """Keras 3.15's form: the function's registered (or plain) name is the ``config``."""
    if fn.__name__ == "<lambda>":
        raise ValueError(
            "Cannot serialize a lambda: it could only be reloaded by evaluating code, which "
            "fastdense never does. Define a named function and decorate it with "
            "@fastdense.saving.register_serializable()"
        )
    name = _BUILTIN_NAMES[fn][1] if fn in _BUILTIN_NAMES else get_registered_name(fn)
    return {"module": "builtins", "class_name": "function", "config": name, "registered_name": "function"}


def _user_module(obj: Any) -> str | None:
    module = getattr(obj, "__module__", None)
    return None if module in (None, "__main__") else module


# --------------------------------------------------------------------------------------
# Deserialization
# --------------------------------------------------------------------------------------

# dtype kinds a "__numpy__" config may hold: bool, int, uint, float (never object arrays).
_NUMPY_KINDS = "biuf"


def deserialize_keras_object(
    config: Any,
    module_objects: Mapping[str, Any] | None = None,
    custom_objects: Mapping[str, Any] | None = None,
    *,
    printable_module_name: str = "object",
) -> Any:
    """Rebuild an object from a Keras 3 or Keras 2 config, a registered name, or None.

    Args:
        config: ``{"module", "class_name", "config", "registered_name"}`` (Keras 3),
            ``{"class_name", "config"}`` (Keras 2), a name such as ``"glorot_uniform"``,
            or None (returns None).
        module_objects: the caller's built-in ``{name: class}`` table; when None, the
            table of the Keras module named in the config (``"keras.initializers"`` ->
            ``fastdense.initializers``) is used.
        custom_objects: extra ``{name: class or function}`` for user objects.
        printable_module_name: what the object is, for error messages ("initializer").

    Classes are rebuilt with ``cls.from_config(config["config"])``; functions are returned.

    >>> import fastdense.initializers
    >>> deserialize_keras_object({"class_name": "Zeros", "config": {}})
    Zeros()
    """
    if config is None:
        return None
    custom_objects = dict(custom_objects or {})
    kind = printable_module_name

    if isinstance(config, str):
        found = _resolve(config, None, None, module_objects, custom_objects, kind)
        return _instantiate(found, {}, config, custom_objects, kind)

    if not isinstance(config, Mapping):
        raise ValueError(
            f"Could not interpret {kind} config {config!r}: expected a dict with 'class_name' "
            "and 'config', a registered name, or None"
        )
    if "class_name" not in config:
        raise ValueError(f"Could not interpret {kind} config {dict(config)!r}: it has no 'class_name' key")
    class_name = config["class_name"]
    if not isinstance(class_name, str):
        raise ValueError(f"Could not interpret {kind} config: 'class_name' must be a string, got {class_name!r}")
    inner = config.get("config")
    module = config.get("module")
    if module is not None and not isinstance(module, str):
        raise ValueError(f"Could not interpret {kind} config: 'module' must be a string, got {module!r}")
    registered_name = config.get("registered_name")
    if registered_name is not None and not isinstance(registered_name, str):
        raise ValueError(
            f"Could not interpret {kind} config: 'registered_name' must be a string, got {registered_name!r}"
        )

    if class_name.startswith("__") and class_name.endswith("__"):
        return _deserialize_special(class_name, inner, kind)

    if class_name == "function":
        # Keras 3.15: {"module": "builtins", "class_name": "function", "config": "<name>",
        # "registered_name": "function"}; earlier Keras 3 put the user module and the
        # registered name in "module" / "registered_name". Built-in functions are found by
        # name among fastdense's tables (activations first), whatever the module says.
        if not isinstance(inner, str):
            raise ValueError(f"Could not interpret function config {dict(config)!r}: 'config' must be the function name")
        canonical = _canonical_module(module)
        fn_module = module if _is_keras_module(canonical) and canonical != "keras" else None
        fn_registered = None if registered_name == "function" else registered_name
        return _resolve(inner, fn_registered, fn_module, module_objects, custom_objects, kind)

    found = _resolve(class_name, registered_name, module, module_objects, custom_objects, kind)
    instance = _instantiate(found, inner, class_name, custom_objects, kind)
    build_config = config.get("build_config")
    if build_config and hasattr(instance, "build_from_config") and not getattr(instance, "built", False):
        instance.build_from_config(build_config)
    return instance


def _deserialize_special(class_name: str, inner: Any, kind: str) -> Any:
    if class_name in ("__numpy__", "__tensor__"):
        if not isinstance(inner, Mapping) or "value" not in inner:
            raise ValueError(f"Could not interpret {class_name} config {inner!r}: expected {{'value', 'dtype'}}")
        try:
            dtype = np.dtype(inner.get("dtype") or "float32")
        except TypeError as exc:
            raise ValueError(f"{class_name} config names an unknown dtype {inner.get('dtype')!r}") from exc
        if dtype.kind not in _NUMPY_KINDS:
            raise ValueError(f"{class_name} config: only numeric dtypes are read, got {dtype.name!r}")
        return np.array(inner["value"], dtype=dtype)
    if class_name == "__bytes__":
        if not isinstance(inner, Mapping) or not isinstance(inner.get("value"), str):
            raise ValueError(f"Could not interpret __bytes__ config {inner!r}")
        return inner["value"].encode("utf-8")
    if class_name == "__lambda__":
        raise ValueError(
            f"This {kind} config holds a serialized lambda (Python bytecode). fastdense never "
            "evaluates code from a config; define the function in your code, register it with "
            "@fastdense.saving.register_serializable() and save the model again"
        )
    raise ValueError(f"Unsupported special {kind} config class {class_name!r}")


def _canonical_module(module: str | None) -> str | None:
    """Map any Keras module path to the public Keras module that holds its objects.

    "keras.src.initializers.random_initializers" -> "keras.initializers"; "keras" -> "keras";
    "fastdense.initializers" -> "keras.initializers"; user modules are returned unchanged.
    """
    if module is None:
        return None
    parts = module.split(".")
    if parts[0] == "fastdense" and len(parts) > 1:
        return f"keras.{parts[1]}" if parts[1] in _KERAS_SUBMODULES else module
    if parts[0] in ("keras", "tf_keras") or module.startswith(("tensorflow.keras", "tensorflow.python.keras")):
        if len(parts) == 1:
            return "keras"
        for part in parts[1:]:
            if part in _KERAS_SUBMODULES:
                return f"keras.{part}"
        return "keras"
    return module


def _is_keras_module(module: str | None) -> bool:
    return module is not None and (module == "keras" or module.startswith("keras."))


def _resolve(
    name: str,
    registered_name: str | None,
    module: str | None,
    module_objects: Mapping[str, Any] | None,
    custom_objects: Mapping[str, Any],
    kind: str,
) -> Any:
    """Find the class or function a config names, without importing anything named in it."""
    # 1. User objects take precedence, as in Keras: registered name, then plain name.
    for key in (registered_name, name):
        if key is not None:
            found = get_registered_object(key, custom_objects)
            if found is not None:
                return found

    # 2. Built-ins: the caller's table, or the table of the Keras module the config names.
    canonical = _canonical_module(module)
    if module_objects is not None:
        if name in module_objects:
            return module_objects[name]
    elif _is_keras_module(canonical) and canonical != "keras":
        found = _builtin_lookup(canonical, name)
        if found is not None:
            return found
    elif canonical in (None, "keras"):
        # No module, or a Keras-internal path we do not know ("keras.src.engine.functional"):
        # the name must be unique among fastdense's built-in tables.
        found = _builtin_lookup("keras", name) if canonical == "keras" else None
        if found is not None:
            return found
        candidates = _builtin_candidates(name)
        if len(candidates) == 1:
            return candidates[0][1]
        if len(candidates) > 1:
            modules = ", ".join(sorted(mod for mod, _ in candidates))
            raise ValueError(
                f"{name!r} is ambiguous: it names objects in {modules}. "
                "Deserialize it with the module's own deserialize() "
                "(e.g. fastdense.initializers.deserialize)"
            )

    raise ValueError(_unknown_message(name, registered_name, module, canonical, module_objects, kind))


def _builtin_lookup(module: str, name: str) -> Any | None:
    _load_builtin_module(module)
    return _BUILTIN_OBJECTS.get(module, {}).get(name)


def _builtin_candidates(name: str) -> list[tuple[str, Any]]:
    """Every built-in object called ``name``, with its Keras module."""
    for module in _FASTDENSE_MODULES:
        if module not in ("keras.layers", "keras.models"):
            _load_builtin_module(module)
    return [(module, table[name]) for module, table in _BUILTIN_OBJECTS.items() if name in table]


def _unknown_message(
    name: str,
    registered_name: str | None,
    module: str | None,
    canonical: str | None,
    module_objects: Mapping[str, Any] | None,
    kind: str,
) -> str:
    where = f" (module {module!r})" if module else ""
    shown = registered_name if registered_name and registered_name != name else name
    message = f"Unknown {kind} {shown!r}{where}."
    if _is_keras_module(canonical) or (module is None and module_objects is not None):
        table = module_objects if module_objects is not None else _BUILTIN_OBJECTS.get(canonical or "", {})
        known = sorted(key for key in table if key[:1].isupper())
        if known:
            message += f" Known {kind} classes: {', '.join(known)}."
        elsewhere = sorted(
            mod for mod, _ in _builtin_candidates(name) if module_objects is not None or mod != canonical
        )
        if elsewhere:
            message += f" {name!r} is a {' / '.join(elsewhere)} object, not {_a(kind)}."
    else:
        message += " fastdense never imports modules named in a config."
    label = (registered_name or name).split(">")[-1]
    message += (
        f" If it is your own class or function, register it with "
        f"@fastdense.saving.register_serializable(package=...) where it is defined, "
        f"or pass custom_objects={{{label!r}: {label}}} "
        "(or use fastdense.saving.custom_object_scope)."
    )
    return message


def _a(noun: str) -> str:
    return f"an {noun}" if noun[:1] in "aeiou" else f"a {noun}"


def _instantiate(found: Any, inner: Any, class_name: str, custom_objects: Mapping[str, Any], kind: str) -> Any:
    if not inspect.isclass(found):
        return found  # a function, or an instance given in custom_objects
    if inner is None:
        inner = {}
    if not isinstance(inner, Mapping):
        raise ValueError(f"Could not rebuild {kind} {class_name!r}: its 'config' must be a dict, got {inner!r}")
    with CustomObjectScope(custom_objects):
        try:
            if hasattr(found, "from_config"):
                return found.from_config(dict(inner))
            return found(**inner)
        except TypeError as exc:
            raise ValueError(f"Could not rebuild {kind} {class_name!r} from config {dict(inner)!r}: {exc}") from exc
        except ValueError as exc:
            # a layer's own complaint (its dtype policy, an argument) names the layer it is about;
            # the library's typed errors (KerasFileError, ...) already say where they come from
            if kind != "layer" or type(exc) is not ValueError:
                raise
            raise ValueError(f"layer {inner.get('name')!r} ({class_name}): {exc}") from exc


def instantiate_from_config(cls: type[T], config: Mapping[str, Any], ignored_keys: tuple[str, ...] = ()) -> T:
    """``cls(**config)`` with a clear ValueError for a non-dict or unexpected keys.

    ``ignored_keys`` are dropped when ``cls`` does not accept them (e.g. the ``dtype`` that
    TF 1.x wrote into initializer configs).

    >>> from fastdense.constraints import MaxNorm
    >>> instantiate_from_config(MaxNorm, {"max_value": 3.0, "axis": 0})
    MaxNorm(max_value=3.0, axis=0)
    """
    if not isinstance(config, Mapping):
        raise ValueError(f"{cls.__name__}.from_config expects a dict, got {config!r}")
    parameters = inspect.signature(cls).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    kwargs = {
        key: value
        for key, value in config.items()
        if key not in ignored_keys or key in parameters or accepts_any
    }
    if not accepts_any:
        unknown = sorted(str(key) for key in kwargs if key not in parameters)
        if unknown:
            raise ValueError(
                f"{cls.__name__} config has unexpected keys {unknown}; "
                f"accepted keys: {sorted(parameters)}"
            )
    return cls(**kwargs)


def config_repr(obj: Any) -> str:
    """``ClassName(key=value, ...)`` from ``obj.get_config()``: the ``__repr__`` of
    initializers, regularizers and constraints (``ClassName()`` when ``get_config`` fails).

    >>> from fastdense.regularizers import L1L2
    >>> config_repr(L1L2(l1=0.5, l2=0.25))
    'L1L2(l1=0.5, l2=0.25)'
    """
    try:
        config = obj.get_config()
    except Exception:  # a user subclass whose get_config fails or is missing: still printable
        config = {}
    arguments = ", ".join(f"{key}={value!r}" for key, value in config.items())
    return f"{type(obj).__name__}({arguments})"


def check_number(
    owner: str, name: str, value: Any, *, minimum: float | None = None, strict: bool = False
) -> int | float:
    """Validate a finite real-number argument; return it as a Python int or float.

    ``minimum`` is inclusive unless ``strict``. Booleans and strings are refused.

    >>> check_number("MaxNorm", "max_value", 2)
    2
    >>> check_number("L2", "l2", -1.0, minimum=0.0)
    Traceback (most recent call last):
    ...
    ValueError: L2: l2 must be a finite number >= 0.0, got -1.0
    """
    bound = "" if minimum is None else f" {'>' if strict else '>='} {minimum}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{owner}: {name} must be a finite number{bound}, got {value!r}")
    number = value.item() if isinstance(value, np.generic) else value
    if not np.isfinite(number) or (
        minimum is not None and (number <= minimum if strict else number < minimum)
    ):
        raise ValueError(f"{owner}: {name} must be a finite number{bound}, got {value!r}")
    return number


def get_from_identifier(identifier: Any, module_objects: Mapping[str, Any], kind: str) -> Any:
    """The ``get()`` of fastdense's object modules.

    None -> None; a name or a config dict -> deserialized object; a class -> ``cls()``;
    an instance or any other callable passes through.

    >>> import fastdense.initializers as I
    >>> get_from_identifier("zeros", builtin_objects("keras.initializers"), "initializer")
    Zeros()
    """
    if identifier is None:
        return None
    if isinstance(identifier, (str, Mapping)):
        return deserialize_keras_object(identifier, module_objects, printable_module_name=kind)
    if inspect.isclass(identifier):
        return identifier()
    if callable(identifier):
        return identifier
    raise ValueError(
        f"Could not interpret {kind} identifier {identifier!r}: expected None, a name, "
        f"a config dict, or {_a(kind)} object/callable"
    )


# --------------------------------------------------------------------------------------
# DTypePolicy
# --------------------------------------------------------------------------------------

SUPPORTED_DTYPES = ("float32", "float64")
_POLICY_CLASSES = ("DTypePolicy", "FloatDTypePolicy", "Policy")
_MIXED_POLICIES = ("mixed_float16", "mixed_bfloat16")
# load_model(..., dtype=...): the dtype every float layer of the model being rebuilt serves in
_SERVING_DTYPE: contextvars.ContextVar[str | None] = contextvars.ContextVar("fastdense_serving_dtype", default=None)
_SERVING_HINT = "load_model(path, dtype='float32') serves such a model in float32 (not Keras's 16-bit rounding)"


@contextlib.contextmanager
def serving_dtype(dtype: str | None) -> Any:
    """Within it, every float dtype or policy a config names (float16, bfloat16, mixed_float16,
    mixed_bfloat16, float32, float64) reads as ``dtype`` ('float32' or 'float64'); None changes
    nothing. ``load_model(path, dtype=...)`` rebuilds a model inside it."""
    if dtype is not None and dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"dtype must be None or one of {SUPPORTED_DTYPES}, got {dtype!r}")
    token = _SERVING_DTYPE.set(dtype)
    try:
        yield
    finally:
        _SERVING_DTYPE.reset(token)


def _dtype_name(value: Any) -> str:
    """Validate a plain dtype (string, numpy dtype or type) and return 'float32' or 'float64'
    (or the serving dtype, inside :func:`serving_dtype`)."""
    if value is None:
        return "float32"
    serving = _SERVING_DTYPE.get()
    if isinstance(value, str) and value.startswith("mixed_"):
        if serving is not None and value in _MIXED_POLICIES:
            return serving
        raise ValueError(
            f"dtype policy {value!r} is mixed precision, which fastdense does not support: "
            f"it computes in float32 or float64 only; {_SERVING_HINT}"
        )
    if value == "bfloat16":
        name = "bfloat16"
    else:
        try:
            name = np.dtype(value).name
        except TypeError as exc:
            raise ValueError(f"Unknown dtype {value!r}; expected one of {SUPPORTED_DTYPES}") from exc
    if serving is not None and name in SUPPORTED_DTYPES + ("float16", "bfloat16"):
        return serving
    if name in SUPPORTED_DTYPES:
        return name
    if name in ("float16", "bfloat16"):
        raise ValueError(f"dtype {name!r} is not supported: fastdense computes in float32 or float64; "
                         f"{_SERVING_HINT}")
    raise ValueError(f"Unknown or unsupported dtype {value!r}; expected one of {SUPPORTED_DTYPES}")


def serialize_dtype(name: Any) -> dict[str, Any]:
    """The Keras 3 DTypePolicy dict for a dtype.

    >>> serialize_dtype("float64")
    {'module': 'keras', 'class_name': 'DTypePolicy', 'config': {'name': 'float64'}, 'registered_name': None}
    """
    return {
        "module": "keras",
        "class_name": "DTypePolicy",
        "config": {"name": _dtype_name(name)},
        "registered_name": None,
    }


def deserialize_dtype(value: Any) -> str:
    """Read a layer dtype: a Keras 3 DTypePolicy dict, a Keras 2 string, a numpy dtype or None.

    Returns "float32" or "float64"; None gives "float32" (Keras's default floatx). Mixed
    and quantized policies and other dtypes raise ValueError.

    >>> deserialize_dtype({"module": "keras", "class_name": "DTypePolicy",
    ...                    "config": {"name": "float64"}, "registered_name": None})
    'float64'
    >>> deserialize_dtype(None)
    'float32'
    """
    if value is None:
        return "float32"
    if isinstance(value, Mapping):
        class_name = value.get("class_name")
        if class_name not in _POLICY_CLASSES:
            raise ValueError(
                f"Unsupported dtype policy {class_name!r} in {dict(value)!r}: fastdense reads "
                f"{', '.join(_POLICY_CLASSES)} policies of float32 or float64 "
                "(quantized and per-variable policies are not supported)"
            )
        inner = value.get("config")
        if not isinstance(inner, Mapping) or "name" not in inner:
            raise ValueError(f"Could not interpret dtype policy {dict(value)!r}: expected config {{'name': ...}}")
        return _dtype_name(inner["name"])
    return _dtype_name(value)

