"""Build each distribution's wheel, install it alone from its declared ranges (no stack file) and run its quick tests.

    python scripts/check_distributions.py                      # every distribution, newest and lowest
    python scripts/check_distributions.py --only lfm-retrieval-pgvector --resolution lowest

First every distribution is built once as users get it (``python -m build``: an sdist, and the wheel built
from that sdist) into a temporary folder, and its metadata checked as an index would (``twine check
--strict``); build and twine live in .venvs/check/tools, pinned in ``TOOLS``. Then, for the core alone and for
each integration with the core, this makes a fresh venv in .venvs/check/<distribution>-<resolution>, installs
the WHEELS (not the source trees, so a file left out of a wheel fails here) with uv from the ranges its
pyproject.toml declares (``highest``: what pip picks today; ``lowest``: ``--resolution lowest-direct``, the
lower bound of every declared range), checks the environment is consistent (``uv pip check``), checks that the
base install brought in no model library (torch, transformers, sentence-transformers: the local runtimes are
the core's extras) and that importing the distribution and loading its store entry points imports none of
them, then installs the test requirements, runs the quick tests its pyproject.toml names under
``[tool.lfm-retrieval.check]`` (asserting that every module it names was imported from the venv's
site-packages, not from a source tree), and prints the versions it resolved. One more entry, ``torch-free``,
installs lfm-retrieval, lfm-retrieval-pgvector, lfm-retrieval-qdrant[edge] and langchain-lfm together (no torch)
and runs scripts/check_torch_free.py (a catalog indexed into qdrant+edge:// and searched over ``lfm-retrieval
serve`` from this venv). Exits 1 if any fails. A distribution that needs torch says so by requiring it
(``lfm-retrieval[torch]``) or with ``torch-free = false`` (a third-party dependency that pulls it in).

Two things come from the stacks, not from the ranges: torch (a bare ``torch`` range pulls a CUDA
build of several GB, so torch is pinned to the stack's build, CPU in ``latest``) and
the test tools named in ``test-requires`` (pytest etc., not dependencies of the distribution; an entry
naming a distribution of this repository, e.g. ``lfm-retrieval[torch]``, installs its built wheel with those extras).
uv is pointed at the same package sources pip is configured with (``pip config list``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
RESOLUTIONS = {"highest": "highest", "lowest": "lowest-direct"}
ENTRY_POINT_GROUP = "lfm_retrieval.stores"
# What a base install must not bring in: the torch runtime's libraries (distribution name: module).
MODEL_LIBRARIES = {"torch": "torch", "transformers": "transformers", "sentence-transformers": "sentence_transformers"}
# The build and metadata tools, in their own venv (.venvs/check/tools) so the stacks stay as pinned.
TOOLS = ["build==1.6.1", "twine==7.0.0"]
# A user's torch-free install: these distributions together; scripts/check_torch_free.py runs in it. The
# only extra is Qdrant's engine in-process (qdrant-edge-py), which the qdrant+edge:// store needs.
TORCH_FREE = ["lfm-retrieval", "lfm-retrieval-pgvector", "lfm-retrieval-qdrant[edge]", "langchain-lfm"]
# Loaded into the quick tests' pytest (-p): at the end, where each named module was imported from.
ORIGIN_PLUGIN = """
import importlib, json, os

def pytest_sessionfinish(session, exitstatus):
    modules = os.environ["LFM_CHECK_MODULES"].split(",")
    origins = {m: getattr(importlib.import_module(m), "__file__", None) for m in modules}
    with open(os.environ["LFM_CHECK_ORIGINS"], "w") as out:
        json.dump(origins, out)
"""


@dataclass
class Distribution:
    """One installable distribution and what the check does with it (``[tool.lfm-retrieval.check]``)."""

    name: str
    path: Path
    requires: list[str]
    imports: list[str]
    tests: list[str]
    test_requires: list[str] = field(default_factory=list)
    extras: list[str] = field(default_factory=list)
    torch_stack: str = "latest"
    pytest_args: list[str] = field(default_factory=list)
    slow: bool = False  # starts a server or builds an index: scheduled first
    torch_free: bool = True  # the install (with its extras) brings in none of MODEL_LIBRARIES
    together: list[str] = field(default_factory=list)  # more of this repository's distributions (with extras)
    script: str = ""  # instead of pytest: this script, run with the venv's python and --server-python
    title: str = ""  # the label, where the name alone does not say what the entry installs

    @property
    def label(self) -> str:
        """``name``, ``name[extra]`` or the title: what the check reports and ``--only`` selects."""
        return self.title or (f"{self.name}[{','.join(self.extras)}]" if self.extras else self.name)


def read_distribution(path: Path) -> list[Distribution]:
    """The distribution at ``path`` and one more per ``[tool.lfm-retrieval.check.extra.<name>]`` table
    (an optional extra checked with its own quick tests, e.g. ``lfm-retrieval[ray]``)."""
    project_file = path / "pyproject.toml"
    data = tomllib.loads(project_file.read_text())
    project = data["project"]
    check = data.get("tool", {}).get("lfm-retrieval", {}).get("check")
    if check is None or not check.get("tests"):
        raise SystemExit(f"{project_file}: no [tool.lfm-retrieval.check] tests = [...]: name its quick tests")
    packages = data.get("tool", {}).get("hatch", {}).get("build", {}).get("targets", {}).get("wheel", {})
    base = Distribution(
        name=project["name"],
        path=path,
        requires=list(project.get("dependencies", [])),
        imports=check.get("imports") or [Path(p).name for p in packages.get("packages", [])],
        tests=check["tests"],
        test_requires=check.get("test-requires", []),
        torch_stack=check.get("torch-stack", "latest"),
        pytest_args=check.get("pytest-args", []),
        slow=check.get("slow", False),
    )
    base.torch_free = check.get("torch-free", not requires_model_library(base.requires))
    variants = [base]
    for extra, table in check.get("extra", {}).items():
        variants.append(
            Distribution(
                name=base.name,
                path=path,
                requires=base.requires + project.get("optional-dependencies", {}).get(extra, []),
                imports=base.imports + table.get("imports", []),
                tests=table["tests"],
                test_requires=table.get("test-requires", base.test_requires),
                extras=[extra],
                torch_stack=table.get("torch-stack", base.torch_stack),
                pytest_args=table.get("pytest-args", []),
                slow=table.get("slow", base.slow),
            )
        )
        variants[-1].torch_free = table.get("torch-free", not requires_model_library(variants[-1].requires))
    return variants


def requires_model_library(requires: list[str]) -> bool:
    """Whether these requirements name torch, transformers, sentence-transformers or the core's [torch] extra."""
    for line in requires:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        if name in MODEL_LIBRARIES or (name == "lfm-retrieval" and "torch" in req.extras):
            return True
    return False


def discover() -> list[Distribution]:
    """The core first, then every integration under integrations/ (a new one slots in by its pyproject)."""
    paths = [ROOT / "core", *sorted(p.parent for p in (ROOT / "integrations").glob("*/pyproject.toml"))]
    dists = [variant for path in paths for variant in read_distribution(path)]
    return [*dists, torch_free_install(dists)]


def torch_free_install(dists: list[Distribution]) -> Distribution:
    """The ``torch-free`` entry: TORCH_FREE installed together, checked end to end."""
    bases = {d.name: d for d in dists if not d.extras}
    names = [Requirement(r).name for r in TORCH_FREE]
    return Distribution(
        name=names[0],
        path=bases[names[0]].path,
        requires=[r for name in names for r in bases[name].requires],
        imports=[m for name in names for m in bases[name].imports],
        tests=[],
        together=TORCH_FREE[1:],
        script="scripts/check_torch_free.py",
        title="torch-free",
        slow=True,  # a server and a catalog job
    )


def stack_pins(stack: str) -> dict[str, str]:
    pins = {}
    for line in (ROOT / "stacks" / f"{stack}.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[canonicalize_name(name)] = version.strip()
    return pins


def from_wheel(name: str, extras: list[str] | set[str], wheels: dict[str, Path]) -> str:
    """A requirement on the built wheel of this repository's distribution ``name``, with ``extras``."""
    wheel = wheels.get(canonicalize_name(name))
    if wheel is None:
        raise SystemExit(f"no wheel was built for {name}")
    return f"{name}[{','.join(sorted(extras))}] @ {wheel.as_uri()}" if extras else f"{name} @ {wheel.as_uri()}"


def test_requirements(names: list[str], wheels: dict[str, Path]) -> list[str]:
    """``test-requires`` as install arguments: a distribution of this repository (``wheels``, by name)
    from its built wheel with its extras, the rest pinned from the latest stack."""
    ours, tools = [], []
    for name in names:
        req = Requirement(name)
        if canonicalize_name(req.name) in wheels:
            ours.append(from_wheel(req.name, req.extras, wheels))
        else:
            tools.append(name)
    return [*ours, *pinned(tools, "latest")]


def pinned(names: list[str], stack: str) -> list[str]:
    pins = stack_pins(stack)
    missing = [n for n in names if canonicalize_name(n) not in pins]
    if missing:
        raise SystemExit(f"test tools not pinned in stacks/{stack}.txt: {', '.join(missing)}")
    return [f"{n}=={pins[canonicalize_name(n)]}" for n in names]


def pip_sources() -> list[str]:
    """uv options for the sources and constraints pip is configured with here (find-links, extra indexes)."""
    out = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    ).stdout
    options: dict[str, list[str]] = {}
    for line in out.splitlines():
        match = re.match(r"^[^.]*\.([a-z-]+)='(.*)'$", line.strip())
        if match:
            options.setdefault(match[1], []).extend(match[2].split())
    args: list[str] = []
    for key, flag in (("index-url", "--index-url"), ("extra-index-url", "--extra-index-url"),
                      ("find-links", "--find-links"), ("constraint", "--constraint")):  # fmt: skip
        for value in dict.fromkeys(options.get(key, [])):
            args += [flag, value]
    # pip takes the best version across all its sources; uv's default stops at the first index.
    return [*args, "--index-strategy", "unsafe-best-match"]


def uv_env(sources: list[str]) -> dict[str, str]:
    """``pip_sources()`` as uv's environment variables, for the isolated build environments uv makes."""
    names = {"--index-url": "UV_INDEX_URL", "--extra-index-url": "UV_EXTRA_INDEX_URL", "--find-links": "UV_FIND_LINKS",
             "--constraint": "UV_CONSTRAINT", "--index-strategy": "UV_INDEX_STRATEGY"}  # fmt: skip
    values: dict[str, list[str]] = {}
    for flag, value in zip(sources[::2], sources[1::2], strict=True):
        values.setdefault(names[flag], []).append(value)
    return {key: ("," if key == "UV_FIND_LINKS" else " ").join(found) for key, found in values.items()}


def tools_python(sources: list[str], logs: Path) -> Path:
    """.venvs/check/tools with TOOLS (build, twine) at their pinned versions: its python."""
    venv = ROOT / ".venvs" / "check" / "tools"
    python = venv / "bin" / "python"
    wanted = {canonicalize_name(n): v for n, _, v in (t.partition("==") for t in TOOLS)}
    if python.exists() and all(installed(python).get(n) == v for n, v in wanted.items()):
        return python
    log = logs / "tools.log"
    log.unlink(missing_ok=True)
    shutil.rmtree(venv, ignore_errors=True)
    if run([str(uv()), "venv", "-q", "-p", sys.executable, str(venv)], log) or run(
        [str(uv()), "pip", "install", "-p", str(python), *sources, *TOOLS], log
    ):
        raise SystemExit(f"installing {', '.join(TOOLS)} failed: {last_line(log)} (see {log})")
    return python


def build(dist: Distribution, tools: Path, env: dict[str, str], out: Path, logs: Path) -> Path | str:
    """``python -m build`` (the sdist, then the wheel from it) and ``twine check --strict`` on both:
    the wheel's path, or what failed in one line."""
    log = logs / f"build-{canonicalize_name(dist.name)}.log"
    log.unlink(missing_ok=True)
    folder = out / canonicalize_name(dist.name)
    if run([str(tools), "-m", "build", "--installer", "uv", "--outdir", str(folder), str(dist.path)], log, env=env):
        return f"building {dist.name} failed: {last_line(log)} (see {log})"
    files = sorted(folder.iterdir())
    if run([str(tools), "-m", "twine", "check", "--strict", *map(str, files)], log, env=env):
        return f"twine check --strict failed for {dist.name}: {last_line(log)} (see {log})"
    wheels = [f for f in files if f.suffix == ".whl"]
    return wheels[0] if len(wheels) == 1 else f"building {dist.name} made {len(wheels)} wheels (see {log})"


def run(cmd: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path = ROOT) -> int:
    with log.open("a") as out:
        out.write(f"$ {shlex.join(cmd)}\n")
        out.flush()
        return subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd, check=False).returncode


# Run in the venv after the base install: import the distribution, load its store entry points and,
# for a torch-free one, name any model library that came along. argv: distributions, modules, torch-free.
IMPORT_CHECK = f"""
import importlib, importlib.metadata as md, importlib.util, sys, traceback
dists, modules, torch_free = sys.argv[1].split(","), sys.argv[2].split(","), sys.argv[3] == "1"
try:
    for module in modules:
        importlib.import_module(module)
    points = [ep for d in dists for ep in md.distribution(d).entry_points if ep.group == {ENTRY_POINT_GROUP!r}]
    for ep in points:
        ep.load()
except Exception:
    traceback.print_exc()
    print("".join(traceback.format_exception_only(*sys.exc_info()[:2])).strip().splitlines()[-1])
    raise SystemExit(1)
loaded = [m for m in {sorted(MODEL_LIBRARIES.values())!r} if m in sys.modules]
if torch_free and loaded:
    print(f"importing {{', '.join(modules)}} imported {{', '.join(loaded)}}")
    raise SystemExit(1)
probe = torch_free and importlib.util.find_spec("torch") is None
if probe:  # a model without the torch runtime: one line naming the extra, whatever the encoder
    from lfm_retrieval import ColBERTEncoder, DenseEncoder
    from lfm_retrieval.errors import ModelLoadError
    for encoder in (DenseEncoder, ColBERTEncoder):
        try:
            encoder("LiquidAI/LFM2.5-Embedding-350M")
        except ModelLoadError as exc:
            if "lfm-retrieval[torch]" not in str(exc) or len(str(exc).splitlines()) != 1:
                print(f"{{encoder.__name__}} without torch: {{exc!r}} is not one line naming lfm-retrieval[torch]")
                raise SystemExit(1)
        else:
            print(f"{{encoder.__name__}} loaded a model without torch installed")
            raise SystemExit(1)
print(f"imported {{', '.join(modules)}}; {{len(points)}} store entry point(s); model libraries: {{loaded or 'none'}}"
      + ("; without torch an encoder names lfm-retrieval[torch]" if probe else ""))
"""


def installed(python: Path) -> dict[str, str]:
    """Canonical name -> version of what the venv holds."""
    out = subprocess.run(
        [str(uv()), "pip", "freeze", "-p", str(python)], capture_output=True, text=True, check=True
    ).stdout
    return {canonicalize_name(n): v for n, _, v in (line.partition("==") for line in out.splitlines()) if v}


def model_libraries_in(python: Path) -> str:
    """'' when the venv holds none of MODEL_LIBRARIES, else which, and what required each."""
    found = [name for name in MODEL_LIBRARIES if name in installed(python)]
    why = []
    for name in found:
        show = subprocess.run([str(uv()), "pip", "show", "-p", str(python), name], capture_output=True, text=True)
        by = next(
            (line.split(":", 1)[1].strip() for line in show.stdout.splitlines() if line.startswith("Required-by:")), ""
        )
        why.append(f"{name} (required by {by or 'nothing: a direct requirement'})")
    return ", ".join(why)


def resolved_versions(python: Path, dist: Distribution, core: Distribution) -> str:
    versions = installed(python)
    names = dict.fromkeys(
        canonicalize_name(Requirement(r).name) for r in [*core.requires, *dist.requires, *MODEL_LIBRARIES]
    )
    return " ".join(f"{n}=={versions[n]}" for n in names if n in versions)


def last_line(log: Path) -> str:
    lines = log.read_text().rstrip().splitlines() if log.exists() else []
    return lines[-1].strip() if lines else ""


PYTEST_SUMMARY = re.compile(r"\b\d+ (passed|failed|errors?|skipped|deselected)\b.* in [\d.]+s")


def pytest_summary(log: Path) -> str:
    """pytest's closing summary line (clients may log after it, e.g. gRPC's GOAWAY notices), else the last line."""
    lines = log.read_text().rstrip().splitlines() if log.exists() else []
    return next((line.strip() for line in reversed(lines) if PYTEST_SUMMARY.search(line)), last_line(log))


def uv() -> Path:
    found = Path(sys.executable).parent / "uv"
    return found if found.exists() else Path(shutil.which("uv") or "uv")


def check(
    dist: Distribution,
    core: Distribution,
    built: dict[str, Path | str],
    resolution: str,
    sources: list[str],
    logs: Path,
) -> tuple[bool, str]:
    """Make the venv, install the wheels, check no model library came in, import, install the test tools,
    test (or run the entry's script) and check where the tests imported the distribution from;
    (passed, one-line summary)."""
    ours = {canonicalize_name(Requirement(n).name) for n in [core.name, dist.name, *dist.together]}
    ours |= {canonicalize_name(Requirement(r).name) for r in dist.test_requires} & set(built)
    if failed := [built[n] for n in sorted(ours) if not isinstance(built[n], Path)]:
        return False, str(failed[0])
    wheels = {n: w for n, w in built.items() if isinstance(w, Path)}
    slug = f"{dist.label.replace('[', '+').replace(']', '').replace(',', '+')}-{resolution}"
    venv = ROOT / ".venvs" / "check" / slug
    log = logs / f"{slug}.log"
    log.unlink(missing_ok=True)
    shutil.rmtree(venv, ignore_errors=True)
    python = venv / "bin" / "python"
    if run([str(uv()), "venv", "-q", "-p", sys.executable, str(venv)], log):
        return False, f"venv failed (see {log})"
    torch = pinned(["torch"], dist.torch_stack)
    overrides = logs / f"{slug}.overrides.txt"
    overrides.write_text("\n".join(torch) + "\n")
    # the wheels, as direct references: what a dependency on lfm-retrieval resolves to, whatever an index holds
    packages = [from_wheel(dist.name, dist.extras, wheels)]
    packages += [from_wheel(r.name, r.extras, wheels) for r in map(Requirement, dist.together)]
    if dist.name != core.name:
        packages.insert(0, from_wheel(core.name, [], wheels))
    install = [str(uv()), "pip", "install", "-p", str(python), "--resolution", RESOLUTIONS[resolution], *sources]
    install += ["--override", str(overrides)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    # The distribution as a user installs it: nothing from the test requirements yet.
    if run([*install, *packages], log):
        return False, f"install failed: {last_line(log)} (see {log})"
    if run([str(uv()), "pip", "check", "-p", str(python)], log):
        return False, f"inconsistent environment: {last_line(log)} (see {log})"
    if dist.torch_free and (came := model_libraries_in(python)):
        return False, f"{dist.label} installs a model library without the [torch] extra: {came} (see {log})"
    free = "1" if dist.torch_free else "0"
    names = ",".join([dist.name, *(Requirement(r).name for r in dist.together)])
    if run([str(python), "-c", IMPORT_CHECK, names, ",".join(dist.imports), free], log, env=env):
        return False, f"import failed: {last_line(log)} (see {log})"
    if dist.script:  # the entry's own end-to-end script instead of pytest, run outside the source trees
        with tempfile.TemporaryDirectory(prefix=f"check-{slug}-") as cwd:
            script = [str(python), str(ROOT / dist.script), "--server-python", sys.executable]
            passed = run(script, log, env=env, cwd=Path(cwd)) == 0
        return (
            passed,
            f"{last_line(log)}{'' if passed else f' (see {log})'}\n    {resolved_versions(python, dist, core)}",
        )
    if run([*install, *packages, *test_requirements(dist.test_requires, wheels)], log):
        return False, f"installing the test requirements failed: {last_line(log)} (see {log})"
    if run([str(uv()), "pip", "check", "-p", str(python)], log):
        return False, f"inconsistent environment with the test requirements: {last_line(log)} (see {log})"
    versions = resolved_versions(python, dist, core)
    with tempfile.TemporaryDirectory(prefix=f"check-{slug}-") as basetemp:
        plugin, origins = Path(basetemp) / "lfm_check_origins.py", Path(basetemp) / "origins.json"
        plugin.write_text(ORIGIN_PLUGIN)
        test_env = dict(
            env, PYTHONPATH=basetemp, LFM_CHECK_MODULES=",".join(dist.imports), LFM_CHECK_ORIGINS=str(origins)
        )
        pytest = ["-q", "-p", "no:cacheprovider", "-p", plugin.stem, "--durations=3", f"--basetemp={basetemp}/t"]
        code = run([str(python), "-m", "pytest", *pytest, *dist.pytest_args, *dist.tests], log, env=test_env)
        elsewhere = not_from_venv(json.loads(origins.read_text()) if origins.exists() else {}, venv, dist.imports)
    passed = code == 0
    summary = pytest_summary(log)
    if passed and not re.search(r"\b\d+ passed\b", summary):
        return False, f"tests ran nothing: {summary} (see {log})\n    {versions}"
    if elsewhere:
        return False, f"the tests did not import the installed wheel: {elsewhere} (see {log})\n    {versions}"
    return passed, f"{summary.strip('= ')}{'' if passed else f' (see {log})'}\n    {versions}"


def not_from_venv(origins: dict[str, str | None], venv: Path, modules: list[str]) -> str:
    """'' when every module in ``modules`` was imported from the venv's site-packages, else which came from where."""
    wrong = []
    for module in modules:
        origin = origins.get(module)
        path = Path(origin).resolve() if origin else None
        if path is None or not path.is_relative_to(venv.resolve()) or "site-packages" not in path.parts:
            wrong.append(f"{module} from {origin or 'nowhere (not recorded)'}")
    return ", ".join(wrong)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolution", choices=[*RESOLUTIONS, "both"], default="both")
    parser.add_argument("--only", nargs="*", help="distribution names (default: all)")
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("LFM_CHECK_JOBS", "2")),
                        help="entries at a time (default 2, or LFM_CHECK_JOBS)")  # fmt: skip
    args = parser.parse_args()
    os.environ.setdefault("UV_CACHE_DIR", str(ROOT / ".venvs" / "uv-cache"))  # shared by every venv: hardlinks
    dists = discover()
    core = dists[0]
    chosen = [d for d in dists if not args.only or d.label in args.only]
    if args.only and len(chosen) != len(args.only):
        raise SystemExit(f"unknown distribution in {args.only}; known: {', '.join(d.label for d in dists)}")
    resolutions = list(RESOLUTIONS) if args.resolution == "both" else [args.resolution]
    sources = pip_sources()
    logs = ROOT / ".venvs" / "check" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    print(f"== per-distribution check ({uv_version()}; sources: {' '.join(sources)})", flush=True)
    failed: list[str] = []
    started = time.monotonic()
    tools = tools_python(sources, logs)
    # every distribution the chosen entries install, built once: sdist, wheel from it, twine check
    needed = {canonicalize_name(Requirement(n).name) for d in chosen for n in [core.name, d.name, *d.together]}
    needed |= {canonicalize_name(Requirement(r).name) for d in chosen for r in d.test_requires}
    to_build = [d for d in dists if not d.extras and not d.title and canonicalize_name(d.name) in needed]
    env = dict(os.environ, **uv_env(sources), PATH=f"{uv().parent}{os.pathsep}{os.environ.get('PATH', '')}")
    out = Path(tempfile.mkdtemp(prefix="lfm-dist-"))
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        built = dict(zip((canonicalize_name(d.name) for d in to_build),
                         pool.map(lambda d: build(d, tools, env, out, logs), to_build), strict=True))  # fmt: skip
    for name, result in built.items():
        print(f"{'built' if isinstance(result, Path) else 'FAIL'} {name}: {result}", flush=True)
    print(f"== built and checked {len(built)} distributions in {time.monotonic() - started:.0f}s", flush=True)
    entries = [(dist, resolution) for dist in sorted(chosen, key=lambda d: not d.slow) for resolution in resolutions]

    def one(dist: Distribution, resolution: str) -> None:
        t0 = time.monotonic()
        try:
            ok, summary = check(dist, core, built, resolution, sources, logs)
        except BaseException as exc:  # e.g. SystemExit for an unpinned test tool: in a thread it would pass unseen
            ok, summary = False, f"the check itself failed: {type(exc).__name__}: {exc}"
        verdict = "PASS" if ok else "FAIL"
        sys.stdout.write(f"{verdict} {dist.label} [{resolution}] {time.monotonic() - t0:.0f}s: {summary}\n")
        sys.stdout.flush()
        if not ok:
            failed.append(f"{dist.label} [{resolution}]")

    run_apart(entries, one, args.jobs)
    shutil.rmtree(out, ignore_errors=True)
    print(f"== per-distribution check: {len(failed)} failed of {len(entries)} with {args.jobs} at a time "
          f"in {time.monotonic() - started:.0f}s{': ' + ', '.join(failed) if failed else ''}")  # fmt: skip
    return 1 if failed else 0


def run_apart(entries: list[tuple[Distribution, str]], one: Callable[[Distribution, str], None], jobs: int) -> None:
    """``one(dist, resolution)`` for every entry, ``jobs`` at a time in entry order, never two entries
    of one distribution at once (the same server twice, and the two slowest entries side by side).
    Written here: concurrent.futures has no notion of entries that must not overlap."""
    pending, running = list(entries), set()
    ready = threading.Condition()

    def worker() -> None:
        while True:
            with ready:
                while pending and all(d.label in running for d, _ in pending):
                    ready.wait()
                if not pending:
                    return
                entry = next(e for e in pending if e[0].label not in running)
                pending.remove(entry)
                running.add(entry[0].label)
            try:
                one(*entry)
            finally:
                with ready:
                    running.discard(entry[0].label)
                    ready.notify_all()

    threads = [threading.Thread(target=worker) for _ in range(max(1, jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def uv_version() -> str:
    return subprocess.run([str(uv()), "--version"], capture_output=True, text=True, check=False).stdout.strip()


if __name__ == "__main__":
    sys.exit(main())
