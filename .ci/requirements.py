"""What `pip install -e ".[EXTRA]"` installs, but some requirements, one per line.

    python .ci/requirements.py EXTRA REQUIREMENT...

Prints ``-e .`` and then the extra's requirements from pyproject.toml,
with the extras it names of this project expanded, less each REQUIREMENT
given: a name drops that requirement, ``name[x]`` drops only its extra
``x``.  .ci/tier.sh installs this where a dependency cannot be built.
"""

import re
import sys
import tomllib

with open("pyproject.toml", "rb") as f:
    project = tomllib.load(f)["project"]
extras = project["optional-dependencies"]
name = project["name"]


def requirements(extra):
    for requirement in extras[extra]:
        own = re.fullmatch(rf"{name}\[(.*)\]", requirement)
        if own:
            for inner in own.group(1).split(","):
                yield from requirements(inner.strip())
        else:
            yield requirement


def parts(requirement):
    match = re.match(r"\s*([A-Za-z0-9._-]+)\s*(?:\[([^\]]*)\])?(.*)", requirement)
    return match.group(1).lower(), [x.strip() for x in (match.group(2) or "").split(",") if x.strip()], match.group(3)


extra, *without = sys.argv[1:]
dropped = {}
for spec in without:
    package, inner, _ = parts(spec)
    dropped[package] = inner  # [] drops the package, else only these extras
print("-e")
print(".")
for requirement in dict.fromkeys(requirements(extra)):
    package, inner, rest = parts(requirement)
    if package in dropped:
        if not dropped[package]:
            continue
        inner = [x for x in inner if x not in dropped[package]]
        requirement = package + (f"[{','.join(inner)}]" if inner else "") + rest
    print(requirement)
