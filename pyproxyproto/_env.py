"""Policy options from PYPROXYPROTO_* environment variables, for servers whose
worker processes cannot be handed Python objects."""

from __future__ import annotations

import importlib
import os
import warnings
from collections.abc import Mapping
from typing import Any, Callable

from ._networks import UNIX, trusted_networks
from ._policy import (
    UNTRUSTED_DECISIONS,
    Policy,
    PolicyOptions,
    check_max_header_size,
    check_timeout,
)
from ._stats import Stats

ENV_TRUSTED = "PYPROXYPROTO_TRUSTED"
ENV_ON_UNTRUSTED = "PYPROXYPROTO_ON_UNTRUSTED"
ENV_DECIDE = "PYPROXYPROTO_DECIDE"
ENV_VALIDATE = "PYPROXYPROTO_VALIDATE"
ENV_TIMEOUT = "PYPROXYPROTO_TIMEOUT"
ENV_MAX_HEADER_SIZE = "PYPROXYPROTO_MAX_HEADER_SIZE"
ENV_VERSIONS = "PYPROXYPROTO_VERSIONS"
ENV_STATS = "PYPROXYPROTO_STATS"
# The old name of PYPROXYPROTO_DECIDE (deprecated).
ENV_POLICY = "PYPROXYPROTO_POLICY"
ENV_OPTIONS = (ENV_TRUSTED, ENV_ON_UNTRUSTED, ENV_DECIDE, ENV_VALIDATE, ENV_TIMEOUT,
               ENV_MAX_HEADER_SIZE, ENV_VERSIONS, ENV_STATS)

# The value of PYPROXYPROTO_TRUSTED that trusts every peer.
EVERY_PEER = "*"


class SettingError(ValueError):
    """A PYPROXYPROTO_* variable (or an argument that mirrors one) has a bad
    value; the message names it and says what it takes."""


def options_from_env(
    environ: Mapping[str, str] | None = None, names: Mapping[str, str] | None = None
) -> PolicyOptions:
    """Policy options from PYPROXYPROTO_* variables.

    - PYPROXYPROTO_TRUSTED: comma-separated networks (``unix`` for
      Unix-socket peers); ``*`` trusts every peer
    - PYPROXYPROTO_ON_UNTRUSTED: reject, ignore or skip
    - PYPROXYPROTO_DECIDE, PYPROXYPROTO_VALIDATE: ``module:attribute`` of a callable
    - PYPROXYPROTO_TIMEOUT: seconds, or ``none``
    - PYPROXYPROTO_MAX_HEADER_SIZE: bytes
    - PYPROXYPROTO_VERSIONS: ``1``, ``2`` or ``1,2``
    - PYPROXYPROTO_STATS: ``module:attribute`` of a ``Stats`` (per process)

    Unset variables leave the option at its default.  A set but empty (or
    blank) one, or a bad value, raises SettingError naming the variable
    (as ``names`` calls it, for callers whose settings have other names,
    such as a Twisted endpoint's arguments).
    """
    env = os.environ if environ is None else environ
    label = dict(names or {})
    options: PolicyOptions = {}

    def value(name: str) -> str | None:
        if name not in env:
            return None
        text = env[name].strip()
        if not text:
            raise SettingError(
                f"{label.get(name, name)} is set but empty: give a value, or unset it "
                "for the default"
            )
        return text

    def bad(name: str, text: str, why: str) -> SettingError:
        return SettingError(f"{label.get(name, name)}={text!r}: {why}")

    text = value(ENV_TRUSTED)
    if text is not None and text != EVERY_PEER:
        parts = [part.strip() for part in text.split(",")]
        if not all(parts):
            raise bad(ENV_TRUSTED, text, f"an empty entry; give networks such as "
                      f"10.0.0.0/8,{UNIX} separated by commas, or {EVERY_PEER} for every peer")
        try:
            options["trusted"] = trusted_networks(parts)
        except (TypeError, ValueError) as exc:
            raise bad(ENV_TRUSTED, text, str(exc).removeprefix("trusted: ")) from None
    text = value(ENV_ON_UNTRUSTED)
    if text is not None:
        if text not in UNTRUSTED_DECISIONS:
            raise bad(ENV_ON_UNTRUSTED, text, "must be reject, ignore or skip")
        options["on_untrusted"] = text  # type: ignore[typeddict-item]
    decide_name = ENV_DECIDE
    if ENV_POLICY in env and ENV_DECIDE not in env:
        warnings.warn(f"{ENV_POLICY} is now called {ENV_DECIDE}", DeprecationWarning, stacklevel=2)
        decide_name = ENV_POLICY
    text = value(decide_name)
    if text is not None:
        options["decide"] = _import_callable(label.get(decide_name, decide_name), text)
    text = value(ENV_VALIDATE)
    if text is not None:
        options["validate"] = _import_callable(label.get(ENV_VALIDATE, ENV_VALIDATE), text)
    text = value(ENV_TIMEOUT)
    if text is not None:
        if text.lower() == "none":
            options["timeout"] = None
        else:
            try:
                options["timeout"] = check_timeout(float(text))
            except (TypeError, ValueError):
                raise bad(ENV_TIMEOUT, text, "must be a positive number of seconds or none") from None
    text = value(ENV_MAX_HEADER_SIZE)
    if text is not None:
        try:
            options["max_header_size"] = check_max_header_size(int(text))
        except (TypeError, ValueError) as exc:
            raise bad(ENV_MAX_HEADER_SIZE, text, str(exc)) from None
    text = value(ENV_VERSIONS)
    if text is not None:
        versions = {part.strip() for part in text.split(",")}
        if not versions <= {"1", "2"}:
            raise bad(ENV_VERSIONS, text, "must be 1, 2 or 1,2")
        options["v1"] = "1" in versions
        options["v2"] = "2" in versions
    text = value(ENV_STATS)
    if text is not None:
        stats = _import_object(label.get(ENV_STATS, ENV_STATS), text)
        if not isinstance(stats, Stats):
            raise bad(ENV_STATS, text, "is not a pyproxyproto.Stats")
        options["stats"] = stats
    if "decide" in options and ("trusted" in options or "on_untrusted" in options):
        raise SettingError(
            f"{label.get(decide_name, decide_name)} decides for every peer: unset "
            f"{label.get(ENV_TRUSTED, ENV_TRUSTED)} and {label.get(ENV_ON_UNTRUSTED, ENV_ON_UNTRUSTED)}"
        )
    return options


def trusts_every_peer(environ: Mapping[str, str] | None = None) -> bool:
    """Whether PYPROXYPROTO_TRUSTED is ``*``."""
    env = os.environ if environ is None else environ
    return env.get(ENV_TRUSTED, "").strip() == EVERY_PEER


def _import_object(name: str, text: str) -> Any:
    module_name, sep, attribute = text.partition(":")
    if not sep or not module_name or not attribute:
        raise SettingError(f"{name}={text!r}: must be module:attribute")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise SettingError(f"{name}={text!r}: cannot import it ({exc})") from None
    return obj


def _import_callable(name: str, text: str) -> Callable[..., Any]:
    obj = _import_object(name, text)
    if not callable(obj):
        raise SettingError(f"{name}={text!r}: is not callable")
    return obj  # type: ignore[no-any-return]


def policy_from_env(
    environ: Mapping[str, str] | None = None, origin: str | None = None, **overrides: Any
) -> Policy:
    """A Policy from PYPROXYPROTO_* variables; keyword arguments win."""
    options: dict[str, Any] = dict(options_from_env(environ))
    if "decide" in overrides:
        options.pop("trusted", None)
        options.pop("on_untrusted", None)
    from_env = "trusted" in options and "trusted" not in overrides
    options.update(overrides)
    policy = Policy(**options)
    policy.origin = origin or (ENV_TRUSTED if from_env else "trusted=")
    policy.trust_given = policy.trust_given or trusts_every_peer(environ)
    return policy
