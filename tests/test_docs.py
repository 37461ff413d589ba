"""What a reader is shown works: the README's example runs as written,
`help(secret)` points to no page that does not exist, the user docs' links
lead to files that exist, and they carry no internal bookkeeping."""

import glob
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT, interpreter

USER_DOCS = sorted([os.path.join(ROOT, n) for n in
                    ("README.md", "SECURITY.md", "CHANGELOG.md", "LICENSE")]
                   + glob.glob(os.path.join(ROOT, "docs", "*.md")))


def readme_example():
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    m = re.search(r"^```python\n(.*?)^```", text, re.S | re.M)
    assert m, "the README has no python example"
    return m.group(1)


def test_readme_example_runs_as_written():
    r = subprocess.run([sys.executable, "-c", readme_example()],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "verified; erasure on this platform: True" in r.stdout


def test_readme_example_control_without_the_experiment():
    # The same code on the pristine interpreter stops at `import secret`:
    # the test above runs the example, not something else.
    if not os.path.exists(interpreter("pristine")):
        pytest.skip("no pristine interpreter")
    r = subprocess.run([interpreter("pristine"), "-c", readme_example()],
                       capture_output=True, text=True)
    assert r.returncode != 0
    assert "ImportError" in r.stderr and "runtimesecret" in r.stderr


def test_help_secret_links_to_no_missing_page():
    code = (
        "import pydoc, json, secret\n"
        "d = pydoc.TextDoc()\n"
        "print(d.getdocloc(secret))\n"
        "print(d.getdocloc(json))\n"
        "print('docs.python.org' in pydoc.render_doc(secret,"
        " renderer=pydoc.plaintext))\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDOCS"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, env=env)
    assert r.returncode == 0, r.stderr
    ours, control, in_text = r.stdout.split("\n")[:3]
    assert ours == "None"
    # Control: a standard module still gets its library reference page.
    assert control.startswith("https://docs.python.org/") \
        and control.endswith("/json.html"), control
    assert in_text == "False"


def test_user_docs_links_exist():
    missing = []
    for path in USER_DOCS:
        with open(path) as f:
            text = f.read()
        text = re.sub(r"```.*?```", "", text, flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            rel = target.split("#", 1)[0]
            full = os.path.normpath(os.path.join(os.path.dirname(path), rel))
            if not os.path.exists(full):
                missing.append("%s: %s" % (os.path.relpath(path, ROOT),
                                           target))
    assert not missing, missing


BOOKKEEPING = re.compile(r"(?<![/\w])(issue|session)s? ?#?\d+",
                         re.IGNORECASE)


def test_user_docs_carry_no_internal_bookkeeping():
    found = []
    for path in USER_DOCS:
        with open(path) as f:
            for n, line in enumerate(f, 1):
                for m in BOOKKEEPING.finditer(line):
                    found.append("%s:%d: %s" % (os.path.relpath(path, ROOT),
                                                n, m.group(0)))
    assert not found, "\n".join(found)
    # Control: the pattern finds what it is for.
    assert BOOKKEEPING.search("as issue 21 asked, in session 6")
