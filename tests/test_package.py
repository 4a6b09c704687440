"""The package as users get it: importing it leaves JAX's configuration alone, its version is
the one declared in pyproject.toml, and its API reference site builds in strict mode (no
warnings) with an entry for every public name."""

import os
import pathlib
import re
import subprocess
import sys

import hh_jax as hh

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_docs_build_strict(tmp_path):
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARNING" not in done.stderr, done.stderr
    page = (tmp_path / "site" / "api" / "simulate" / "index.html").read_text()
    assert "Integrate a membrane" in page  # the docstring itself, not only a heading


def test_every_public_name_has_a_reference_entry():
    documented = set()
    for page in (ROOT / "docs" / "api").glob("*.md"):
        documented |= set(re.findall(r"^::: hh_jax\.(\w+)", page.read_text(), re.MULTILINE))
    public = {name for name in dir(hh) if not name.startswith("_")}
    modules = {"plotting", "presets"}  # documented as whole modules
    missing = sorted(public - documented - {n for n in public if type(getattr(hh, n)).__name__ == "module"} | (modules - documented))
    assert not missing, f"public names missing from docs/api/*.md: {missing}"


def test_import_leaves_jax_config_alone():
    code = "import jax; before = jax.config.jax_enable_x64; import hh_jax; assert jax.config.jax_enable_x64 == before == False"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_version_is_declared_once():
    declared = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.MULTILINE).group(1)
    assert hh.__version__ == declared
