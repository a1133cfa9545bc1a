"""Build configuration beyond pyproject.toml: the optional C accelerator.

``civic._speedups`` is optional: where no C compiler is available the build goes on without
it and civic uses its pure-Python decoders, which define the behaviour either way.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "civic._speedups",
            sources=["civic/_speedups.c"],
            optional=True,
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        )
    ]
)
