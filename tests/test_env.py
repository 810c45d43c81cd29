"""Policy options from PYPROXYPROTO_* variables (and the arguments that mirror them)."""

import pytest

import pyproxyproto as pp
from pyproxyproto._env import SettingError, options_from_env, policy_from_env
from pyproxyproto._policy import Policy

PEER = ("10.1.2.3", 40000)
OUTSIDE = ("192.0.2.9", 40000)


def allow_all(header):
    return None


def skip_probes(peer):
    return "skip"


SHARED_STATS = pp.Stats()


def test_options_from_env():
    env = {
        "PYPROXYPROTO_TRUSTED": "10.0.0.0/8, 2001:db8::/32, unix",
        "PYPROXYPROTO_ON_UNTRUSTED": "skip",
        "PYPROXYPROTO_VALIDATE": f"{__name__}:allow_all",
        "PYPROXYPROTO_TIMEOUT": "2.5",
        "PYPROXYPROTO_MAX_HEADER_SIZE": "1024",
        "PYPROXYPROTO_VERSIONS": "2",
        "PYPROXYPROTO_STATS": f"{__name__}:SHARED_STATS",
    }
    options = options_from_env(env)
    assert options["on_untrusted"] == "skip" and options["validate"] is allow_all
    assert options["timeout"] == 2.5 and options["max_header_size"] == 1024
    assert (options["v1"], options["v2"]) == (False, True)
    assert options["stats"] is SHARED_STATS
    policy = Policy(**options)
    assert policy.decide(("2001:db8::1", 1, 0, 0)) == "require"
    assert policy.decide("") == "require"
    assert policy.decide(OUTSIDE) == "skip"


def test_unset_variables_give_the_defaults():
    assert options_from_env({}) == {}
    assert options_from_env({"PYPROXYPROTO_TRUSTED": "*"}) == {}
    assert options_from_env({"PYPROXYPROTO_TIMEOUT": "none"}) == {"timeout": None}


@pytest.mark.parametrize("name", ["PYPROXYPROTO_TRUSTED", "PYPROXYPROTO_TIMEOUT",
                                  "PYPROXYPROTO_ON_UNTRUSTED", "PYPROXYPROTO_VERSIONS"])
@pytest.mark.parametrize("value", ["", "  "])
def test_a_set_but_empty_variable_is_an_error(name, value):
    # An empty PYPROXYPROTO_TRUSTED used to trust every peer: never what was meant.
    with pytest.raises(SettingError, match=f"^{name} is set but empty"):
        options_from_env({name: value})


@pytest.mark.parametrize("value", [",", "10.0.0.0/8,", ",10.0.0.0/8", "10.0.0.0/8,,unix"])
def test_an_empty_entry_among_the_networks_is_an_error(value):
    with pytest.raises(SettingError, match="an empty entry"):
        options_from_env({"PYPROXYPROTO_TRUSTED": value})


def test_policy_from_env_with_overrides():
    env = {"PYPROXYPROTO_TRUSTED": "10.0.0.0/8", "PYPROXYPROTO_TIMEOUT": "3"}
    policy = policy_from_env(env, timeout=1)
    assert policy.timeout == 1 and policy.decide(OUTSIDE) == "reject"
    assert policy.origin == "PYPROXYPROTO_TRUSTED"
    assert "10.0.0.0/8, from PYPROXYPROTO_TRUSTED" in policy.describe_trust()
    # A decide callable given in code replaces the trusted networks of the env.
    assert policy_from_env(env, decide=skip_probes).decide(PEER) == "skip"
    assert policy_from_env({"PYPROXYPROTO_DECIDE": f"{__name__}:skip_probes"}).decide(PEER) == "skip"


def test_the_old_name_of_the_decide_variable_still_works_with_a_warning():
    with pytest.warns(DeprecationWarning, match="PYPROXYPROTO_DECIDE"):
        options = options_from_env({"PYPROXYPROTO_POLICY": f"{__name__}:skip_probes"})
    assert options["decide"] is skip_probes


def test_decide_and_trusted_together_are_an_error():
    with pytest.raises(SettingError, match="unset PYPROXYPROTO_TRUSTED"):
        options_from_env({"PYPROXYPROTO_DECIDE": f"{__name__}:skip_probes",
                          "PYPROXYPROTO_TRUSTED": "10.0.0.0/8"})


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("PYPROXYPROTO_TRUSTED", "10.0.0.0/33", "is not an IP network"),
        ("PYPROXYPROTO_TRUSTED", "127.0.0.1/8", "has host bits set"),
        ("PYPROXYPROTO_ON_UNTRUSTED", "drop", "must be reject, ignore or skip"),
        ("PYPROXYPROTO_DECIDE", "nomodule_here:f", "cannot import"),
        ("PYPROXYPROTO_DECIDE", "just_a_name", "must be module:attribute"),
        ("PYPROXYPROTO_VALIDATE", f"{__name__}:SHARED_STATS", "is not callable"),
        ("PYPROXYPROTO_TIMEOUT", "soon", "positive number of seconds"),
        ("PYPROXYPROTO_TIMEOUT", "-1", "positive number of seconds"),
        ("PYPROXYPROTO_MAX_HEADER_SIZE", "big", "invalid literal"),
        ("PYPROXYPROTO_MAX_HEADER_SIZE", "100", "between 232 and 65551"),
        ("PYPROXYPROTO_VERSIONS", "3", "must be 1, 2 or 1,2"),
        ("PYPROXYPROTO_VERSIONS", ",", "must be 1, 2 or 1,2"),
        ("PYPROXYPROTO_STATS", f"{__name__}:allow_all", "is not a pyproxyproto.Stats"),
    ],
)
def test_bad_values_name_the_variable(name, value, message):
    with pytest.raises(SettingError, match=f"^{name}=") as info:
        options_from_env({name: value})
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_messages_name_the_setting_as_its_caller_calls_it():
    names = {"PYPROXYPROTO_TRUSTED": "the endpoint argument trusted"}
    with pytest.raises(SettingError, match=r"^the endpoint argument trusted='10.0.0/8'") as info:
        options_from_env({"PYPROXYPROTO_TRUSTED": "10.0.0/8"}, names)
    assert "PYPROXYPROTO" not in str(info.value)
