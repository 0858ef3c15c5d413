# The C core is built by cffi in out-of-line API mode; metadata lives in pyproject.toml.
from setuptools import setup

setup(cffi_modules=["pybackprop/_ffi_build.py:ffibuilder"])
