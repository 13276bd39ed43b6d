"""Build step that puts the shipped default model and the embedded data inside the package.

The repository keeps ``data/`` and ``models/default/`` at its top level (their only committed copy).  When a wheel
is built, :class:`BuildPyWithShippedData` copies them into ``bayes_optlaws/_shipped/`` of the build tree, so an
installed package finds them through ``importlib.resources`` (``bayes_optlaws/paths.py``).  Editable installs
copy nothing: ``paths.py`` then finds the repository's own folders.  Everything else is in ``pyproject.toml``.
"""

from pathlib import Path

from setuptools import setup
from setuptools.errors import FileError
from setuptools.command.build_py import build_py

#: repository folders shipped inside the package, relative to the repository root (and to ``_shipped/``)
SHIPPED = ("data/grid", "data/examples", "data/specs", "models/default")
PACKAGE_DATA_DIR = Path("bayes_optlaws") / "_shipped"


class BuildPyWithShippedData(build_py):
    """``build_py`` plus a copy of :data:`SHIPPED` into ``<build_lib>/bayes_optlaws/_shipped/``."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):   # editable install: paths.py reads the repository itself
            return
        for folder in SHIPPED:
            if not Path(folder).is_dir():
                raise FileError(f"{folder}/ is missing from this source tree; it is shipped inside the package: "
                                "restore it from the repository before building")
            self.copy_tree(folder, str(Path(self.build_lib) / PACKAGE_DATA_DIR / folder))


setup(cmdclass={"build_py": BuildPyWithShippedData})
