# The C core is built by cffi in out-of-line API mode; metadata lives in pyproject.toml.
import os
from concurrent.futures import ThreadPoolExecutor

from setuptools import setup
from setuptools.command.build_ext import build_ext


class parallel_build_ext(build_ext):
    """Compiles one extension's C sources in parallel (PYBACKPROP_BUILD_JOBS, default: every
    CPU); setuptools' own --parallel only builds several extensions at once."""

    def build_extension(self, ext):
        compiler = self.compiler
        serial, whole = compiler._compile, compiler.compile
        jobs = int(os.environ.get("PYBACKPROP_BUILD_JOBS", "0")) or os.cpu_count() or 1
        calls = []

        def compile_all(*args, **kwargs):  # compile() queues one _compile call per object
            objects = whole(*args, **kwargs)
            with ThreadPoolExecutor(jobs) as pool:
                list(pool.map(lambda call: serial(*call), calls))
            calls.clear()
            return objects

        compiler._compile = lambda *call: calls.append(call)
        compiler.compile = compile_all
        try:
            super().build_extension(ext)
        finally:
            del compiler._compile, compiler.compile


# The module uses the stable ABI (cffi builds _native.abi3.so): tag the wheel so.
setup(cffi_modules=["pybackprop/_ffi_build.py:ffibuilder"],
      cmdclass={"build_ext": parallel_build_ext},
      options={"bdist_wheel": {"py_limited_api": "cp39"}})
