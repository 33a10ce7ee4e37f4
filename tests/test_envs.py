"""The conda env files pin exactly what requirements.txt pins, and the package declares what it imports."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def requirements() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower()] = version
    return pins


def env_pins(path: Path) -> dict[str, str]:
    env = yaml.safe_load(path.read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    return {name.lower(): version for name, version in (p.split("==") for p in pip)}


def test_requirements_are_all_exact_pins():
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        assert not line or re.fullmatch(r"[A-Za-z0-9_.-]+==[A-Za-z0-9_.+]+", line), line


def test_env_files_pin_the_requirements_versions():
    pins = requirements()
    seen = set()
    for path in sorted((ROOT / "envs").glob("*.yaml")):
        env = yaml.safe_load(path.read_text())
        assert "python=3.11" in env["dependencies"], path
        for name, version in env_pins(path).items():
            assert pins.get(name) == version, f"{path.name}: {name}=={version}, requirements.txt: {pins.get(name)}"
            seen.add(name)
    assert seen == set(pins), f"not in any env file: {set(pins) - seen}"


def test_rule_env_has_the_package_dependencies():
    pyproject = (ROOT / "pyproject.toml").read_text()
    declared = re.search(r"dependencies = \[(.*?)\]", pyproject, re.S).group(1)
    names = {n.lower() for n in re.findall(r'"([A-Za-z0-9_.-]+)"', declared)}
    rule_env = env_pins(ROOT / "envs" / "optbench.yaml")
    assert names <= set(rule_env), names - set(rule_env)
