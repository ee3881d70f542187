"""koe_devkit: koe on one machine without Docker (`make run`) and the tests' helpers.
A development package: the runtime image installs none of it, and no runtime package
imports it (tests/test_package_boundaries.py)."""
