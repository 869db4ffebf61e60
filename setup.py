"""Everything is configured in pyproject.toml; this file only adds the committed results.

The ``results/`` folder (the ``medium`` evidence the chapters read, a few MB of JSON) ships inside the
package as ``pixelbook/_results`` so that a notebook run on Colab, where pixelbook is pip-installed
without its repository, finds the same numbers as a clone. pyproject.toml cannot list a mapped package
next to an automatic package search, hence this file.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["pixelbook*"]) + ["pixelbook._results"],
    package_dir={"pixelbook._results": "results"},
    package_data={"pixelbook._results": ["*/*.json"]},
)
