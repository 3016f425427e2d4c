"""The locks (requirements/*.txt, workload/requirements.lock.txt; `./run lock` writes them) agree with
what they lock and with each other, offline:

- every dependency declared in pyproject.toml (runtime, dev, k8s, azureml) is pinned in the development
  lock at a version its specifier allows, on Linux and macOS, Python 3.11 to 3.13; the image's lock
  does the same for the runtime dependencies plus the k8s extra; the workload's lock for
  workload/requirements.txt;
- every pin carries hashes, and the image's and the workload's pins are the development lock's
  (same version, hashes from the same set), so a laptop, CI, the image and remote compute run the
  same packages;
- `./run` installs from the locks with hashes required, and reinstalls when a lock changes.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.instance import PROJECT_ROOT

DEV_LOCK = PROJECT_ROOT / "requirements" / "dev.txt"
IMAGE_LOCK = PROJECT_ROOT / "requirements" / "image.txt"
WORKLOAD_LOCK = PROJECT_ROOT / "workload" / "requirements.lock.txt"
SELF = "mnist-orchestration"

# (platform, python) pairs the lock is meant for.
ENVIRONMENTS = [
    {"sys_platform": sys_platform, "platform_system": system, "python_version": v, "python_full_version": f"{v}.0",
     "implementation_name": "cpython", "platform_python_implementation": "CPython", "os_name": "posix",
     "platform_machine": machine}
    for sys_platform, system, machine in (("linux", "Linux", "x86_64"), ("darwin", "Darwin", "arm64"))
    for v in ("3.11", "3.12", "3.13")
]  # fmt: skip


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    marker: Marker | None
    hashes: frozenset[str]


def pins(lock: Path) -> list[Pin]:
    text = re.sub(r"\s*\\\n\s*", " ", lock.read_text())
    found = []
    for line in text.splitlines():
        if not line or line.startswith(("#", " ")):
            continue
        requirement = line.partition(" --hash=")[0]
        req = Requirement(requirement.strip())
        (spec,) = req.specifier
        assert spec.operator == "==", line
        hashes = frozenset(re.findall(r"sha256:[0-9a-f]{64}", line))
        found.append(Pin(canonicalize_name(req.name), spec.version, req.marker, hashes))
    return found


def pinned_in(lock: Path, env: dict[str, str]) -> dict[str, str]:
    chosen: dict[str, str] = {}
    for pin in pins(lock):
        if pin.marker is None or pin.marker.evaluate(env):
            assert chosen.setdefault(pin.name, pin.version) == pin.version, (
                f"{lock.name}: two pins of {pin.name}"
            )
    return chosen


def declared(*extras: str) -> list[Requirement]:
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    found = [Requirement(r) for r in project["dependencies"]]
    for extra in extras:
        found += [Requirement(r) for r in project["optional-dependencies"][extra]]
    return [r for r in found if canonicalize_name(r.name) != SELF]


def unsatisfied(requirements: list[Requirement], lock: Path) -> list[str]:
    problems = []
    for env in ENVIRONMENTS:
        locked = pinned_in(lock, env)
        for req in requirements:
            if req.marker is not None and not req.marker.evaluate(env):
                continue
            version = locked.get(canonicalize_name(req.name))
            if version is None or not req.specifier.contains(version, prereleases=True):
                problems.append(f"{req} -> {version} ({env['sys_platform']}, Python {env['python_version']})")
    return problems


@pytest.mark.parametrize(
    ("lock", "requirements"),
    [
        (DEV_LOCK, lambda: declared("dev", "k8s", "azureml")),
        (IMAGE_LOCK, lambda: declared("k8s")),
        (WORKLOAD_LOCK, lambda: [
            Requirement(line) for line in (PROJECT_ROOT / "workload" / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")
        ]),
    ],
    ids=["dev", "image", "workload"],
)  # fmt: skip
def test_lock_satisfies_what_it_locks(lock: Path, requirements: Callable[[], list[Requirement]]) -> None:
    assert unsatisfied(requirements(), lock) == [], "stale lock: run ./run lock"


def test_every_pin_has_hashes() -> None:
    for lock in (DEV_LOCK, IMAGE_LOCK, WORKLOAD_LOCK, PROJECT_ROOT / "requirements" / "pip.txt"):
        assert all(pin.hashes for pin in pins(lock)), lock


@pytest.mark.parametrize("lock", [IMAGE_LOCK, WORKLOAD_LOCK], ids=["image", "workload"])
def test_subset_locks_pin_what_the_development_lock_pins(lock: Path) -> None:
    dev = {(p.name, p.version): p.hashes for p in pins(DEV_LOCK)}
    for pin in pins(lock):
        assert (pin.name, pin.version) in dev, f"{lock.name}: {pin.name}=={pin.version} is not in dev.txt"
        assert pin.hashes <= dev[(pin.name, pin.version)], pin.name


def test_run_installs_from_the_locks() -> None:
    run = (PROJECT_ROOT / "run").read_text()
    setup = run[run.index("setup_python() {") : run.index("\n}\n", run.index("setup_python() {"))]
    assert "--require-hashes -r requirements/pip.txt" in setup
    assert "--require-hashes -r requirements/dev.txt" in setup
    assert "--no-deps --no-build-isolation -e ." in setup
    stamp = re.search(r'local stamp=".*\$\(cat ([^|]+)\|', setup)
    assert stamp, "the install stamp hashes the locks"
    assert set(stamp.group(1).split()) == {"requirements/pip.txt", "requirements/dev.txt", "pyproject.toml"}
