"""One progress line per build step; the step's output in a log file.

`./run build` prints, per step (fetch, patch, configure, make, install, per
variant), one line with its elapsed time; the full output goes to
cpython-build/logs/NAME-STEP.log. On failure the last lines of that log and
its path are printed. VERBOSE=1 (`./run build -v`) shows the full output
instead, as the commands write it.
"""

import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
LOGS = os.path.join(HERE, "logs")
TAIL = 40


def verbose():
    return os.environ.get("VERBOSE", "") not in ("", "0")


def log_path(label, step):
    os.makedirs(LOGS, exist_ok=True)
    return os.path.join(LOGS, "%s-%s.log" % (label, step))


def _show(path):
    """The path as seen from the repository's top, where ./run runs."""
    try:
        return os.path.relpath(path, os.path.dirname(HERE))
    except ValueError:
        return path


class Step:
    """with Step("experiment", "make") as s: s.run(cmd, cwd)

    Prints "experiment   make ..." and, when the block ends, the elapsed
    time; commands run in it write to the step's log (one log per step,
    appended to by each command)."""

    def __init__(self, label, step, note=""):
        self.label, self.step, self.note = label, step, note
        self.log = log_path(label, step)

    def __enter__(self):
        self.t0 = time.monotonic()
        with open(self.log, "w") as f:
            f.write("# %s: %s, started %s\n"
                    % (self.label, self.step, time.strftime("%F %T")))
        if verbose():
            print("== %s: %s" % (self.label, self.step), flush=True)
        else:
            sys.stdout.write("%-18s %-10s " % (self.label, self.step))
            sys.stdout.flush()
        return self

    def __exit__(self, typ, value, tb):
        dt = time.monotonic() - self.t0
        if typ is None:
            extra = ("  " + self.note) if self.note else ""
            if verbose():
                print("== %s: %s done in %.1f s%s"
                      % (self.label, self.step, dt, extra), flush=True)
            else:
                print("%7.1f s%s" % (dt, extra), flush=True)
        elif not verbose() and typ is not SystemExit:
            print("failed after %.1f s" % dt, flush=True)
        return False

    def say(self, text):
        """Record text in the log (and show it when verbose)."""
        with open(self.log, "a") as f:
            f.write(text.rstrip("\n") + "\n")
        if verbose():
            print(text, flush=True)

    def run(self, cmd, cwd=None, env=None):
        line = "+ (cd %s && %s)" % (cwd or os.getcwd(), " ".join(cmd))
        self.say(line)
        if verbose():
            r = subprocess.run(cmd, cwd=cwd, env=env)
        else:
            with open(self.log, "a") as f:
                r = subprocess.run(cmd, cwd=cwd, env=env, stdout=f,
                                   stderr=subprocess.STDOUT)
        if r.returncode != 0:
            self.fail("`%s` failed in %s (exit %d)"
                      % (" ".join(cmd), cwd or os.getcwd(), r.returncode))

    def fail(self, message):
        dt = time.monotonic() - self.t0
        if not verbose():
            print("FAILED after %.1f s" % dt, flush=True)
            with open(self.log, errors="replace") as f:
                lines = f.readlines()[-TAIL:]
            sys.stdout.write("---- last %d lines of %s\n" % (len(lines),
                                                            _show(self.log)))
            sys.stdout.write("".join(lines))
            sys.stdout.write("----\n")
        sys.stdout.flush()
        sys.exit("error: %s: %s: %s\nfull log: %s"
                 % (self.label, self.step, message, _show(self.log)))
