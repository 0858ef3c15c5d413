# The C core is built by cffi in out-of-line API mode; metadata lives in pyproject.toml.
from setuptools import setup

# The module uses the stable ABI (cffi builds _native.abi3.so): tag the wheel so.
setup(cffi_modules=["pybackprop/_ffi_build.py:ffibuilder"],
      options={"bdist_wheel": {"py_limited_api": "cp39"}})
