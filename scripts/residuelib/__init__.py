"""Residue scanner: look for a secret where an attacker would (spec §5).

Runs a scenario in a child interpreter, then reads the child's whole
address space through /proc/PID/mem (and, with --core, a core dump taken
with gcore) and counts the copies of a random secret it finds, in every
form the scenario can leave, attributing each copy to a mapping (heap,
thread stacks, alternate signal stack, secret heap, other anonymous,
file-backed) and, in a core, to named registers. scripts/residue.py is the
command; docs/residue.md explains its output.

One job a module:

  needles   the secret and its forms, never held whole (below)
  maps      the target's mappings; which one an address is in
  scan      reading a live process through /proc/PID/mem
  coredump  taking a core, reading its segments and registers
  child     running a child that plants the secret, scanning it
  scenario  the scenario files and the verdict on their runs
  matrix    running scenarios on interpreters: the report dict
  report    the table and the chart of a report
  cli       the command line
  paths     where the harness, scenarios and interpreters are

Runs with any Python 3.9+; only --plot needs matplotlib. Tests import this
package (tests/test_residue_*.py) so they use the same code; what it
exports below is its API.

The scanner never holds the secret, or a form of it, as one contiguous
plaintext copy: it writes the secret to the child's file in two halves,
derives each form half by half, and keeps a form as its first half in
clear (what it searches for) plus its second half XOR-masked (what it
verifies a hit with). Memory read from the target goes into buffers that
are zeroed after use. Only derived values (HMAC, PBKDF2) exist whole, for
a moment, when computed. Scanning its own process finds nothing.
"""

from .child import ChildError, run_child
from .cli import main
from .coredump import (EM_AARCH64, EM_X86_64, CoreFile, RegHit,
                       register_hits, scan_core, take_core)
from .maps import (CATEGORIES, Labeler, Mapping, read_maps,
                   thread_stack_pointers)
from .matrix import probe, run_matrix, run_scenario
from .needles import BASE_FORMS, REG_MIN, Needle, Secret
from .paths import (DEFAULT_PYTHONS, HARNESS, INSTALL, RESIDUE_DIR, ROOT,
                    SCENARIO_DIR)
from .report import STACK_CATEGORIES, plot, table
from .scan import PAGE, Hit, Scan, scan_process
from .scenario import Scenario, scenarios, verdict

__all__ = [
    "BASE_FORMS", "CATEGORIES", "DEFAULT_PYTHONS", "EM_AARCH64", "EM_X86_64",
    "HARNESS", "INSTALL", "PAGE", "REG_MIN", "RESIDUE_DIR", "ROOT",
    "SCENARIO_DIR", "STACK_CATEGORIES", "ChildError", "CoreFile", "Hit",
    "Labeler", "Mapping", "Needle", "RegHit", "Scan", "Scenario", "Secret",
    "main", "plot", "probe", "read_maps", "register_hits", "run_child",
    "run_matrix", "run_scenario", "scan_core", "scan_process", "scenarios",
    "table", "take_core", "thread_stack_pointers", "verdict",
]
