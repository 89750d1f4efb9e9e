"""Metadata lives in setup.cfg; this file only ships ``pyserini_llama.pth`` into site-packages.

The .pth line installs the import hook (the top-level module ``pyserini_llama_hook``) that lets the unmodified Pyserini CLIs
find our encoders; setuptools has no declarative way to place a file at the top of site-packages.
"""
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

PTH = "pyserini_llama.pth"


class BuildPyWithPth(build_py):
    def run(self):
        super().run()
        shutil.copy(os.path.join(os.path.dirname(os.path.abspath(__file__)), PTH),
                    os.path.join(self.build_lib, PTH))

    def get_outputs(self, include_bytecode=True):
        return super().get_outputs(include_bytecode) + [os.path.join(self.build_lib, PTH)]


setup(cmdclass={"build_py": BuildPyWithPth})
