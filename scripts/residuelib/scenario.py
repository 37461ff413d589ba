"""Scenarios: the metadata of each scenario file and the verdict on one
interpreter from its control and protected runs."""

import os

from .needles import BASE_FORMS
from .paths import SCENARIO_DIR

class Scenario:
    """Metadata of one scenario file, read with ast (never executed in the
    scanner: scenarios run only in the child). Module-level constants:

    FORMS          forms searched for besides BASE_FORMS (e.g. "int")
    DERIVED        derived values to search for: ("hmac", hash, msg),
                   ("pbkdf2", hash, salt, iterations) or ("dtoa", n)
    KEEP           True: the result stays alive, copies must be found
    CONTROL_FORMS  forms the control run must find (default: any copy)
    CONTROL_WHERE  categories the control run must find copies in
    NEEDS          the secret.protections() keys a protected run needs
                   to find nothing (default: ("heap",))
    REQUIRES       modules the scenario imports that an interpreter may
                   lack (third-party packages): where one is missing the
                   child runs nothing and the run is n/a
    """

    FIELDS = {"FORMS": (), "DERIVED": (), "KEEP": False, "NEEDS": ("heap",),
              "CONTROL_FORMS": (), "CONTROL_WHERE": (), "REQUIRES": ()}

    def __init__(self, path):
        import ast
        self.path = path
        self.name = os.path.splitext(os.path.basename(path))[0]
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        doc = ast.get_docstring(tree) or ""
        self.title = doc.strip().splitlines()[0] if doc.strip() else ""
        values = dict(self.FIELDS)
        for node in tree.body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 \
                    and isinstance(node.targets[0], ast.Name) \
                    and node.targets[0].id in self.FIELDS:
                values[node.targets[0].id] = ast.literal_eval(node.value)
        self.forms = tuple(BASE_FORMS) + tuple(
            f for f in values["FORMS"] if f not in BASE_FORMS)
        self.derived = tuple(tuple(d) for d in values["DERIVED"])
        self.keep = bool(values["KEEP"])
        self.needs = tuple(values["NEEDS"])
        self.control_forms = tuple(values["CONTROL_FORMS"])
        self.control_where = tuple(values["CONTROL_WHERE"])
        self.requires = tuple(values["REQUIRES"])

    def control_missing(self, rec):
        """What a control record lacks of what this scenario must leave:
        [] when it proves something."""
        if not rec or rec.get("copies") is None:
            return ["a run"]
        if not rec["copies"]:
            return ["any copy"]
        missing = ["%s copies" % f for f in self.control_forms
                   if not rec["by_form"].get(f)]
        missing += ["copies in %s" % c for c in self.control_where
                    if not rec["by_category"].get(c)]
        return missing

    def __repr__(self):
        return "Scenario(%s)" % self.name


def scenarios(directory=SCENARIO_DIR, names=None):
    """The scenarios in directory (every NAME.py not starting with _)."""
    found = {}
    for fn in sorted(os.listdir(directory)):
        if fn.endswith(".py") and not fn.startswith("_"):
            sc = Scenario(os.path.join(directory, fn))
            found[sc.name] = sc
    if not names:
        return list(found.values())
    missing = [n for n in names if n not in found]
    if missing:
        raise ValueError("no such scenario: %s (have: %s)"
                         % (", ".join(missing), ", ".join(found)))
    return [found[n] for n in names]


def verdict(scenario, control, protected):
    """One scenario's verdict on one interpreter from its two records."""
    if control is not None and control.get("status") == "n/a":
        return "n/a (needs %s)" % ", ".join(control.get("missing") or ["?"])
    if control is None or control.get("copies") is None:
        return "error" if control else "not run"
    p = protected.get("copies") if protected else None
    if protected is not None and protected.get("status") == "error":
        return "error"
    if scenario.keep:
        found = control["copies"] and (p is None or p)
        return "live: found" if found else "FAIL: live copy not found"
    missing = scenario.control_missing(control)
    if missing:
        return "proves nothing (no %s)" % ", ".join(missing)
    if p is None:
        return "control only"
    return "meets §3" if p == 0 else "FAILS §3"
