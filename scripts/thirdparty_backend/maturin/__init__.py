"""Stand-in for maturin's build backend, for `pip download` only.

pip prepares an sdist's metadata before it keeps the file; maturin would
run `cargo metadata`, which needs the crates' index. This reads the sdist's
PKG-INFO instead. scripts/thirdparty_suites.py puts it on PYTHONPATH with
--no-build-isolation for that one download; it never builds anything.
"""

import os


def get_requires_for_build_wheel(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory,
                                     config_settings=None):
    with open("PKG-INFO") as f:
        pkg = f.read()
    fields = dict(line.split(":", 1) for line in pkg.splitlines()
                  if line[:1].isalpha() and ":" in line)
    name = fields["Name"].strip().replace("-", "_")
    d = "%s-%s.dist-info" % (name, fields["Version"].strip())
    os.makedirs(os.path.join(metadata_directory, d))
    with open(os.path.join(metadata_directory, d, "METADATA"), "w") as f:
        f.write(pkg)
    return d


def build_wheel(wheel_directory, config_settings=None,
                metadata_directory=None):
    raise RuntimeError("stand-in backend: download only")
